//! `oc-ambient-enable` against the simulated cluster (issue 10): Step 2 and Step 3 as the user
//! runs them, the waypoint gate, dry runs, consent, permissions and the backup.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use oc_ambient_simulator::SimulatedCluster;
use serde_json::Value;

use crate::check_live::run_check;
use crate::support::{
    KindPath, accepting_announced_windows, connect, enable, resource_versions, settled_resource_versions, text,
    waypoint,
};

/// The kinds a plan for Step 2 and 3 writes.
const WRITTEN: [KindPath<'static>; 6] = [
    ("sailoperator.io", "v1", "Istio", "istios"),
    ("sailoperator.io", "v1", "IstioCNI", "istiocnis"),
    ("sailoperator.io", "v1", "ZTunnel", "ztunnels"),
    ("", "v1", "Namespace", "namespaces"),
    ("apps", "v1", "Deployment", "deployments"),
    ("", "v1", "ConfigMap", "configmaps"),
];

/// resourceVersion of every object of the kinds a plan for Step 2 and 3 writes.
pub(crate) async fn versions(client: &kube::Client) -> BTreeMap<String, String> {
    resource_versions(client, &WRITTEN).await
}

/// [`versions`] once the simulator has stopped writing status: the baseline of "nothing written".
pub(crate) async fn settled_versions(client: &kube::Client) -> BTreeMap<String, String> {
    settled_resource_versions(client, &WRITTEN).await
}

// The simulator runs in this process: the plugin runs block one thread, so the simulator needs others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_walks_steps_2_and_3_and_stops_at_the_waypoint_gate() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    let before = settled_versions(&client).await;

    // A client-side dry run prints the plan and writes nothing; so does a server-side one.
    let planned = enable(&kubeconfig, state.path(), &["--dry-run=client", "-o", "json"]);
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    assert_eq!(plan["kind"], "AmbientPlan");
    assert!(plan["actions"].as_array().is_some_and(|actions| actions.iter().any(|a| a["step"] == 2)), "{plan:#}");
    let server = enable(&kubeconfig, state.path(), &["--dry-run=server", "--yes"]);
    assert_eq!(server.status.code(), Some(0), "{}", text(&server));
    assert_eq!(versions(&client).await, before, "a dry run stores nothing");

    // No terminal and no --yes: refused, exit 1, nothing written.
    let refused = enable(&kubeconfig, state.path(), &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"), "{}", text(&refused));
    assert_eq!(versions(&client).await, before, "a refusal writes nothing");

    // The view-only identity: one line naming the missing permission, before any write.
    let viewer = enable(&kubeconfig, state.path(), &["--context", "viewer", "--yes"]);
    assert_eq!(viewer.status.code(), Some(2), "{}", text(&viewer));
    let stderr = String::from_utf8_lossy(&viewer.stderr);
    let line = stderr.lines().find(|line| line.starts_with("error:")).unwrap_or_default();
    assert!(line.contains("forbidden") && line.contains("patch"), "{}", text(&viewer));
    assert_eq!(versions(&client).await, before, "a denied identity writes nothing");

    // Step 2.
    let step2 = enable(&kubeconfig, state.path(), &["--yes"]);
    assert_eq!(step2.status.code(), Some(0), "{}", text(&step2));
    let (report, code) = run_check(&["--step", "2"], Some(&kubeconfig));
    assert_eq!(code, Some(0), "{report:#}");

    // The backup holds what Section 2.4 names, locally and in the cluster alike.
    let local = std::fs::read_to_string(state.path().join("backup.yaml")).unwrap();
    for kind in [
        "kind: Istio\n",
        "kind: IstioCNI\n",
        "kind: AuthorizationPolicy\n",
        "kind: VirtualService\n",
        "kind: DestinationRule\n",
        "kind: Namespace\n",
    ] {
        assert!(local.contains(kind), "the backup holds {kind}");
    }
    let connection = connect(kubeconfig.clone()).await;
    let in_cluster = oc_ambient_common::engine::journal::read_backup(&connection).await.unwrap();
    assert_eq!(in_cluster.as_deref(), Some(local.as_str()), "the in-cluster backup matches the local one");

    // Rerunning Step 2 plans nothing.
    let again = enable(&kubeconfig, state.path(), &["--yes", "-o", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let plan: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(plan["actions"].as_array().map(Vec::len), Some(0), "{plan:#}");

    // Step 3 for bookinfo, then the waypoint gate names the next command.
    let bookinfo = enable(&kubeconfig, state.path(), &["bookinfo", "--yes"]);
    assert_eq!(bookinfo.status.code(), Some(0), "{}", text(&bookinfo));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "3"], Some(&kubeconfig));
    assert_eq!(code, Some(0), "{report:#}");
    assert!(String::from_utf8_lossy(&bookinfo.stderr).contains("oc ambient-waypoint bookinfo"), "{}", text(&bookinfo));
    let journal = std::fs::read_to_string(state.path().join("journal.json")).unwrap();
    let entries: Vec<Value> = serde_json::from_str(&journal).unwrap();
    let restarts = entries.iter().filter(|e| e["state"] == "started" && e["change"]["action"] == "restart").count();
    assert!(restarts >= 6, "every bookinfo workload restarted once: {restarts}");
}

/// The cluster as it stood after each action the engine finished: a task that reads the local
/// journal and loads a snapshot whenever an action is marked done. The test slows every journal
/// write down (the fault proxy delays them), so the cluster holds still between an action's
/// `done` and the next action's write for longer than a load takes.
struct Recorder {
    states: std::sync::Arc<std::sync::Mutex<Vec<(String, oc_ambient_common::snapshot::Snapshot)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    fn start(kubeconfig: std::path::PathBuf, state: &Path) -> Recorder {
        let journal = state.join("journal.json");
        let states = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = states.clone();
        let task = tokio::spawn(async move {
            let connection = connect(kubeconfig).await;
            let mut seen = 0;
            loop {
                let done: Vec<String> = std::fs::read_to_string(&journal)
                    .ok()
                    .and_then(|text| serde_json::from_str::<Vec<Value>>(&text).ok())
                    .unwrap_or_default()
                    .iter()
                    .filter(|entry| entry["state"] == "done")
                    .filter_map(|entry| entry["action"].as_str().map(str::to_string))
                    .collect();
                if done.len() > seen {
                    let options = oc_ambient_common::live::LoadOptions::default();
                    let snapshot = oc_ambient_common::live::load(&connection, &options).await.unwrap();
                    recorded.lock().unwrap().push((done[done.len() - 1].clone(), snapshot));
                    seen = done.len();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Recorder { states, task }
    }

    fn stop(self) -> Vec<(String, oc_ambient_common::snapshot::Snapshot)> {
        self.task.abort();
        std::mem::take(&mut *self.states.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_migrates_bookinfo_to_ambient_step_by_step() {
    use oc_ambient_testenv::faults::{Action, Fault};
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let admin = cluster.plane().kubeconfig().to_path_buf();
    let proxy = cluster.plane().fault_proxy().await.unwrap();
    let slow_journal = Fault::new(Action::Delay(Duration::from_millis(1500)), "/configmaps/oc-ambient-journal")
        .unwrap()
        .method(http::Method::PATCH)
        .times(usize::MAX);
    proxy.inject(slow_journal);
    let kubeconfig = proxy.kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    // Issue 11, acceptance 3: each step's checkpoint fails right before the step and passes after.
    let checkpoint = |step: &str| run_check(&["-n", "bookinfo", "--step", step], Some(&admin)).1;
    let fails_before = |steps: &[&str]| {
        for step in steps {
            assert_eq!(checkpoint(step), Some(1), "the Step {step} checkpoint fails before the step");
        }
    };
    let passes_after = |steps: &[&str]| {
        for step in steps {
            assert_eq!(checkpoint(step), Some(0), "the Step {step} checkpoint passes after the step");
        }
    };
    let recorder = Recorder::start(admin.clone(), state.path());
    fails_before(&["2", "3"]);
    let first = enable(&kubeconfig, state.path(), &["bookinfo", "--yes"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(String::from_utf8_lossy(&first.stderr).contains("oc ambient-waypoint bookinfo"), "{}", text(&first));
    passes_after(&["2", "3"]);
    fails_before(&["4", "5"]);

    // Steps 4 and 5 with oc-ambient-waypoint, which then stops: the namespace is not enrolled.
    let preview = waypoint(&kubeconfig, state.path(), &["convert", "-n", "bookinfo", "-o", "json"]);
    let expected: Value = serde_json::from_slice(&preview.stdout).unwrap();
    let migrated = waypoint(&kubeconfig, state.path(), &["bookinfo", "--yes"]);
    assert_eq!(migrated.status.code(), Some(0), "{}", text(&migrated));
    assert!(String::from_utf8_lossy(&migrated.stderr).contains("oc ambient-enable bookinfo"), "{}", text(&migrated));
    passes_after(&["4", "5"]);
    // What Steps 4 and 5 created is what the translator previewed: names, labels, specs.
    let items = expected["items"].as_array().unwrap();
    assert!(items.len() > 5, "{expected:#}");
    for item in items {
        let object: DynamicObject = serde_json::from_value(item.clone()).unwrap();
        let target = oc_ambient_common::change::ResourceRef::of(&object).unwrap();
        let live = oc_ambient_common::engine::apply::fetch(&connect(admin.clone()).await, &target)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{target} was not created"));
        assert_eq!(live.metadata.labels, object.metadata.labels, "{target}: labels");
        let (live_spec, wanted_spec) = (&live.data["spec"], &object.data["spec"]);
        assert!(
            oc_ambient_common::change::holds(live_spec, wanted_spec),
            "{target}: spec\nlive: {live_spec:#}\nwanted: {wanted_spec:#}"
        );
    }

    // Step 6, then the gate before Step 9: the waypoint is not active yet.
    fails_before(&["6"]);
    let enrolled = enable(&kubeconfig, state.path(), &["bookinfo", "--yes"]);
    assert_eq!(enrolled.status.code(), Some(0), "{}", text(&enrolled));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "6"], Some(&admin));
    assert_eq!(code, Some(0), "{report:#}");
    assert!(String::from_utf8_lossy(&enrolled.stderr).contains("oc ambient-waypoint bookinfo"), "{}", text(&enrolled));

    // Step 7 with oc-ambient-waypoint, then Step 9 with the windows the plan names accepted.
    // Step 8 comes with it and keeps what the sidecars still read, naming Step 9.
    fails_before(&["7"]);
    let (activated, mut announced) = accepting_announced_windows(waypoint, &kubeconfig, state.path(), &["bookinfo"]);
    assert_eq!(activated.status.code(), Some(0), "{}", text(&activated));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "7"], Some(&admin));
    assert_eq!(code, Some(0), "{report:#}");
    let stderr = String::from_utf8_lossy(&activated.stderr);
    assert!(stderr.contains("sidecars still read") && stderr.contains("next: oc ambient-enable bookinfo"), "{stderr}");
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "8"], Some(&admin));
    assert_eq!(code, Some(1), "the replaced configuration is still there: {report:#}");
    fails_before(&["9"]);
    let (finished, step9_windows) = accepting_announced_windows(enable, &kubeconfig, state.path(), &["bookinfo"]);
    assert_eq!(finished.status.code(), Some(0), "{}", text(&finished));
    announced.extend(step9_windows);
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "9"], Some(&admin));
    assert_eq!(code, Some(0), "{report:#}");
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "8"], Some(&admin));
    assert_eq!(code, Some(0), "{report:#}");
    // Nothing is left for Step 8: a no-op.
    let cleaned = waypoint(&kubeconfig, state.path(), &["bookinfo", "--step", "8", "--yes", "-o", "json"]);
    assert_eq!(cleaned.status.code(), Some(0), "{}", text(&cleaned));
    let plan: Value = serde_json::from_slice(&cleaned.stdout).unwrap();
    assert_eq!(plan["actions"], serde_json::json!([]), "{plan:#}");

    // Acceptance 1: the end is the sidecar era's outcomes, judged against the backup.
    let backup = state.path().join("backup.yaml");
    let (report, _) = run_check(&["-n", "bookinfo", "--baseline", &backup.display().to_string()], Some(&admin));
    let bookinfo = report["namespaces"].as_array().unwrap().iter().find(|ns| ns["name"] == "bookinfo").unwrap();
    assert_eq!(bookinfo["phase"], "ambient", "{report:#}");
    let equivalence: Vec<&Value> =
        report["findings"].as_array().unwrap().iter().filter(|f| f["id"] == "policy-equivalence").collect();
    assert!(!equivalence.is_empty(), "the baseline was compared: {report:#}");
    assert!(equivalence.iter().all(|f| f["severity"] != "fail"), "{equivalence:#?}");

    // Acceptance 2: no state the run passed through differs from the baseline but as announced.
    let states = recorder.stop();
    let baseline_text = std::fs::read_to_string(&backup).unwrap();
    let baseline = oc_ambient_common::snapshot::Snapshot::from_objects(
        oc_ambient_common::snapshot::parse_documents(&backup, &baseline_text).unwrap(),
    );
    let done = states.len();
    assert!(done > 25, "a state after every action: {done}");
    let scope = BTreeSet::from(["bookinfo".to_string()]);
    let mut unannounced = Vec::new();
    for (action, snapshot) in &states {
        let verification = oc_ambient_common::equivalence::verify(&baseline, snapshot, Some(&scope));
        for difference in verification.unexpected() {
            for request in difference.requests().filter(|request| !announced.contains(&request.to_string())) {
                unannounced.push(format!("after {action}: {request} ({})", difference.explanation()));
            }
        }
    }
    assert!(unannounced.is_empty(), "{} unannounced differences:\n{}", unannounced.len(), unannounced.join("\n"));
}

/// ReplicaSets per bookinfo Deployment: one, plus one per rollout restart.
pub(crate) async fn replica_sets(client: &kube::Client) -> BTreeMap<String, usize> {
    let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), "bookinfo");
    let mut count = BTreeMap::new();
    for set in sets.list(&ListParams::default()).await.unwrap() {
        let owner =
            set.metadata.owner_references.unwrap_or_default().first().map(|o| o.name.clone()).unwrap_or_default();
        *count.entry(owner).or_insert(0) += 1;
    }
    count.retain(|name, _| !name.contains("gateway"));
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_survives_throttling_server_errors_and_dropped_connections() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let proxy = cluster.plane().fault_proxy().await.unwrap();
    use oc_ambient_testenv::faults::{Action, Fault};
    let patch = http::Method::PATCH;
    proxy.inject(Fault::new(Action::throttle(1), "/deployments/details-v1").unwrap().method(patch.clone()));
    proxy.inject(Fault::new(Action::status(500), "/deployments/ratings-v1").unwrap().method(patch.clone()).times(2));
    proxy.inject(Fault::new(Action::Drop, "/deployments/reviews-v2").unwrap().method(patch.clone()));
    proxy.inject(Fault::new(Action::status(503), "/istios/default").unwrap().method(patch));
    let state = tempfile::tempdir().unwrap();
    let run = enable(proxy.kubeconfig(), state.path(), &["bookinfo", "--yes", "--until", "sidecar-hbone"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "3"], Some(cluster.plane().kubeconfig()));
    assert_eq!(code, Some(0), "{report:#}");
    let faulted: Vec<_> = proxy.requests().into_iter().filter(|r| r.fault.is_some()).collect();
    assert_eq!(faulted.len(), 5, "every injected fault was met: {faulted:#?}");
    assert!(replica_sets(&client).await.values().all(|count| *count == 2), "each Deployment restarted once");
}

/// Bookinfo after Step 2, and Step 3 started in the background as a user runs it (`stdio` for
/// its output): the scene of the interruption tests.
async fn step_3_running(
    stdio: fn() -> std::process::Stdio,
) -> (SimulatedCluster, kube::Client, std::path::PathBuf, tempfile::TempDir, std::process::Child) {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    let step2 = enable(&kubeconfig, state.path(), &["--yes"]);
    assert_eq!(step2.status.code(), Some(0), "{}", text(&step2));
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("oc-ambient-enable"));
    command.arg("--kubeconfig").arg(&kubeconfig).arg("--state-dir").arg(state.path());
    command.args(["bookinfo", "--yes", "--until", "sidecar-hbone", "--timeout", "3m"]);
    command.stdout(stdio()).stderr(stdio());
    let child = command.spawn().unwrap();
    (cluster, client, kubeconfig, state, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_killed_during_step_3_resumes_without_restarting_twice() {
    let (_cluster, client, kubeconfig, state, mut child) = step_3_running(std::process::Stdio::null).await;
    let journal = state.path().join("journal.json");
    let restarted = || {
        std::fs::read_to_string(&journal)
            .ok()
            .and_then(|text| serde_json::from_str::<Vec<Value>>(&text).ok())
            .map(|entries| {
                entries.iter().filter(|e| e["change"]["action"] == "restart" && e["state"] == "started").count()
            })
            .unwrap_or(0)
    };
    crate::support::eventually("two restarts journalled", Duration::from_secs(120), || async {
        (restarted() >= 2).then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_after = restarted();

    let resumed = enable(&kubeconfig, state.path(), &["bookinfo", "--yes", "--until", "sidecar-hbone"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "3"], Some(&kubeconfig));
    assert_eq!(code, Some(0), "{report:#}");
    let sets = replica_sets(&client).await;
    assert!(
        sets.values().all(|count| *count == 2),
        "no Deployment restarted twice (killed after {killed_after}): {sets:?}"
    );
    assert!(sets.len() >= 6, "{sets:?}");
}

/// Acceptance 4 with the API server restarted in the middle of Step 3: the run rides it out
/// (writes retried, watches re-listed), and no Deployment is restarted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_rides_out_an_api_server_restart_during_step_3() {
    let (cluster, client, kubeconfig, state, child) = step_3_running(std::process::Stdio::piped).await;
    let journal = state.path().join("journal.json");
    crate::support::eventually("a restart journalled", Duration::from_secs(120), || async {
        let text = std::fs::read_to_string(&journal).ok()?;
        let entries: Vec<Value> = serde_json::from_str(&text).ok()?;
        entries.iter().any(|e| e["change"]["action"] == "restart" && e["state"] == "done").then_some(())
    })
    .await;
    cluster.plane().restart_apiserver().await.unwrap();
    let run = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "3"], Some(&kubeconfig));
    assert_eq!(code, Some(0), "{report:#}");
    let client = cluster.client().await.unwrap_or(client);
    let sets = replica_sets(&client).await;
    assert!(sets.values().all(|count| *count == 2), "no Deployment restarted twice: {sets:?}");
    assert!(sets.len() >= 6, "{sets:?}");
}

/// Acceptance 6 on a generated mesh: the backup of the `large` scenario (the whole snapshot the
/// run planned from) is over 1 MiB, holds every kind Section 2.4 names and every pod, and the
/// cluster's copy is the same document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_of_a_large_mesh_is_whole_locally_and_in_the_cluster() {
    let cluster = SimulatedCluster::start("large:30x5x2").await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    let step2 = enable(&kubeconfig, state.path(), &["--yes"]);
    assert_eq!(step2.status.code(), Some(0), "{}", text(&step2));
    let path = state.path().join("backup.yaml");
    let local = std::fs::read_to_string(&path).unwrap();
    assert!(local.len() > 1024 * 1024, "the backup is {} bytes", local.len());
    let objects = oc_ambient_common::snapshot::parse_documents(&path, &local).unwrap();
    let count = |kind: &str| objects.iter().filter(|o| o.types.as_ref().is_some_and(|t| t.kind == kind)).count();
    assert!(count("Pod") >= 300 && count("Namespace") >= 30 && count("Istio") == 1, "{}", objects.len());
    assert_eq!(count("Secret"), 0, "no Secret is copied into ConfigMaps");
    let connection = connect(kubeconfig).await;
    let in_cluster = oc_ambient_common::engine::journal::read_backup(&connection).await.unwrap();
    assert_eq!(in_cluster.as_deref(), Some(local.as_str()), "the in-cluster backup matches the local one");
}

/// A backup larger than a Kubernetes object can hold is split across ConfigMaps and reads back
/// byte for byte (the local file and the cluster's copy are the same document).
#[tokio::test]
async fn a_backup_over_one_mebibyte_is_split_and_reads_back_whole() {
    let plane = crate::support::plane();
    let connection = connect(plane.kubeconfig().to_path_buf()).await;
    // Incompressible content: gzip cannot shrink it below a chunk.
    let mut noise = crate::support::noise(0x9e37_79b9_7f4a_7c15);
    let objects: Vec<DynamicObject> = (0..24)
        .map(|index| {
            serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("big-{index}"), "namespace": "backup-test"},
                "data": {"noise": noise(100 * 1024)}}))
            .unwrap()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = oc_ambient_common::engine::journal::write_backup(&connection, dir.path(), &objects).await.unwrap();
    let local = std::fs::read_to_string(&path).unwrap();
    assert!(local.len() > 2 * 1024 * 1024, "the backup is {} bytes", local.len());
    let in_cluster = oc_ambient_common::engine::journal::read_backup(&connection).await.unwrap();
    assert_eq!(in_cluster.as_deref(), Some(local.as_str()));
    let chunks = crate::support::state_chunks(&connection, "oc-ambient-backup-").await;
    assert!(chunks >= 3, "{chunks} ConfigMaps");
}

/// The guide's order is a gate: a step asked for before its prerequisites is refused with the
/// rule, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_asked_for_out_of_order_are_refused_and_write_nothing() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    let before = settled_versions(&client).await;
    for (step, rule) in [("6", "sequence-ambient-before-hbone"), ("9", "not enrolled in ambient")] {
        let refused = enable(&kubeconfig, state.path(), &["bookinfo", "--step", step, "--yes"]);
        assert_eq!(refused.status.code(), Some(1), "step {step}: {}", text(&refused));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("refused") && stderr.contains(rule), "step {step}: {}", text(&refused));
    }
    assert_eq!(versions(&client).await, before, "a refused step writes nothing");
}

/// A conflict is never overwritten: the run stops saying to re-plan, and the rerun (which plans
/// again from the cluster) finishes, issuing the restart the conflict refused and no other twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_stops_the_run_and_a_rerun_finishes_it() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let proxy = cluster.plane().fault_proxy().await.unwrap();
    use oc_ambient_testenv::faults::{Action, Fault};
    proxy.inject(Fault::new(Action::status(409), "/deployments/productpage-v1").unwrap().method(http::Method::PATCH));
    let state = tempfile::tempdir().unwrap();
    let args = ["bookinfo", "--yes", "--until", "sidecar-hbone"];
    let stopped = enable(proxy.kubeconfig(), state.path(), &args);
    assert_eq!(stopped.status.code(), Some(2), "{}", text(&stopped));
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("re-plan"), "{}", text(&stopped));
    let rerun = enable(proxy.kubeconfig(), state.path(), &args);
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "3"], Some(cluster.plane().kubeconfig()));
    assert_eq!(code, Some(0), "{report:#}");
    let sets = replica_sets(&client).await;
    assert!(sets.values().all(|count| *count == 2), "each Deployment restarted exactly once: {sets:?}");
}
