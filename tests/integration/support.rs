//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use oc_ambient_testenv::ControlPlane;
use serde_json::Value;

/// The shared control plane; a failure to start it fails the test with the reason.
pub fn plane() -> &'static ControlPlane {
    match ControlPlane::shared() {
        Ok(plane) => plane,
        Err(err) => panic!("the test control plane did not start: {err}"),
    }
}

/// Polls `probe` until it returns Some, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plugin binary. `cargo test` does not build other packages' binaries, so `make test` runs
/// `cargo build --workspace --bins` first; do the same before `cargo test -p oc-ambient-tests`.
pub fn plugin(name: &str) -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin(name).unwrap_or_else(|err| panic!("{name} not built: {err}"))
}

/// The shared fixtures directory (`$OC_AMBIENT_FIXTURES` or `../shared/fixtures`).
pub fn fixtures() -> std::path::PathBuf {
    oc_ambient_testenv::fixtures_dir()
}

/// `oc-ambient-enable` with the test's kubeconfig and state directory.
pub fn enable(kubeconfig: &Path, state_dir: &Path, args: &[&str]) -> Output {
    run_plugin("oc-ambient-enable", kubeconfig, state_dir, args)
}

/// `oc-ambient-waypoint` with the test's kubeconfig and state directory.
pub fn waypoint(kubeconfig: &Path, state_dir: &Path, args: &[&str]) -> Output {
    run_plugin("oc-ambient-waypoint", kubeconfig, state_dir, args)
}

/// A mutating plugin with the test's kubeconfig and its own state directory.
pub fn run_plugin(name: &str, kubeconfig: &Path, state_dir: &Path, args: &[&str]) -> Output {
    plugin(name)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--timeout", "3m"])
        .args(args)
        .output()
        .unwrap()
}

/// A connection as the plugins make it, to read what the engine stored in the cluster.
pub async fn connect(kubeconfig: std::path::PathBuf) -> oc_ambient_common::client::Connection {
    let args = oc_ambient_common::cli::GlobalArgs {
        kubeconfig: Some(kubeconfig),
        context: None,
        namespace: None,
        output: oc_ambient_common::cli::OutputFormat::Table,
        color: oc_ambient_common::cli::ColorChoice::Never,
        verbose: 0,
        quiet: true,
        request_timeout: Duration::from_secs(30),
    };
    oc_ambient_common::client::connect(&args, &oc_ambient_common::printer::Printer::plain()).await.unwrap()
}

/// A plugin run's exit code and output, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// (group, version, kind, plural) of a kind to read.
pub type KindPath<'a> = (&'a str, &'a str, &'a str, &'a str);

/// resourceVersion of every object of `kinds` (`Kind namespace/name` -> version): equal before
/// and after a command when it stored nothing.
pub async fn resource_versions(client: &kube::Client, kinds: &[KindPath<'_>]) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (group, version, kind, plural) in kinds {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural));
        for object in api.list(&ListParams::default()).await.unwrap() {
            let key = format!(
                "{kind} {}/{}",
                object.metadata.namespace.unwrap_or_default(),
                object.metadata.name.unwrap_or_default()
            );
            found.insert(key, object.metadata.resource_version.unwrap_or_default());
        }
    }
    found
}

/// [`resource_versions`] once the simulator has stopped writing status (a fresh cluster's
/// controllers, or rollouts just finished, settle for a while): the same for two reads a second
/// apart, within half a minute. A "nothing was written" assertion needs this baseline, or a late
/// status write by the simulator reads as a write by the command under test.
pub async fn settled_resource_versions(client: &kube::Client, kinds: &[KindPath<'_>]) -> BTreeMap<String, String> {
    let mut last = resource_versions(client, kinds).await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = resource_versions(client, kinds).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the simulated cluster keeps writing: {last:?}");
}

/// Runs `command` with `args` and --yes, accepting every window its plan names (read from a
/// client-side dry run first), as a user who reviewed them would.
pub fn accepting_windows(
    command: fn(&Path, &Path, &[&str]) -> Output,
    kubeconfig: &Path,
    state: &Path,
    args: &[&str],
) -> Output {
    accepting_announced_windows(command, kubeconfig, state, args).0
}

/// [`accepting_windows`], also returning the requests the accepted windows announced.
pub fn accepting_announced_windows(
    command: fn(&Path, &Path, &[&str]) -> Output,
    kubeconfig: &Path,
    state: &Path,
    args: &[&str],
) -> (Output, std::collections::BTreeSet<String>) {
    let planned = command(kubeconfig, state, &[args, &["--dry-run", "-o", "json"]].concat());
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let windows = window_ids(&plan);
    eprintln!("{args:?}: accepting {} window(s): {windows:?}", windows.len());
    let mut all = args.to_vec();
    all.push("--yes");
    for id in &windows {
        all.extend(["--accept", id.as_str()]);
    }
    (command(kubeconfig, state, &all), announced_requests(&plan))
}

/// The requests the windows of a plan (its JSON) announce.
pub fn announced_requests(plan: &Value) -> std::collections::BTreeSet<String> {
    plan["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|window| window["requests"].as_array().cloned().unwrap_or_default())
        .filter_map(|request| request.as_str().map(str::to_string))
        .collect()
}

/// Windows the plan names, from its JSON.
pub fn window_ids(plan: &Value) -> Vec<String> {
    plan["windows"].as_array().into_iter().flatten().filter_map(|w| w["id"].as_str().map(str::to_string)).collect()
}

/// The journal the engine keeps in the state directory (empty when there is none yet).
pub fn journal(state_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(state_dir.join("journal.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Incompressible text of the given length, from a xorshift generator seeded with `seed`: gzip
/// cannot shrink it, so a document made of it really needs several ConfigMaps.
pub fn noise(mut seed: u64) -> impl FnMut(usize) -> String {
    move |length| {
        (0..length)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect()
    }
}

/// How many ConfigMaps of the suite's state namespace are named `<prefix>N` (chunks of the
/// journal or of the backup).
pub async fn state_chunks(connection: &oc_ambient_common::client::Connection, prefix: &str) -> usize {
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(connection.client.clone(), "oc-ambient")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|cm| cm.metadata.name.as_deref().is_some_and(|name| name.starts_with(prefix)))
        .count()
}
