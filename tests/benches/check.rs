//! Benchmark: `oc-ambient-check` on the simulator's `large` scenario, side by side with the
//! floor, the guide's Step 1 validation script, and `kubectl get -o json` of the same kinds, all
//! against the same control plane; then the start-up time of each plugin's `--help` and the
//! binaries' sizes.
//!
//! It prints wall time, API requests and peak memory (max RSS of the process tree, from wait4)
//! for each size. Run with `make bench` (release binaries), or
//! `cargo bench -p oc-ambient-tests --bench check -- 100x5x2 1000x5x2`.
//!
//! - The floor is the list calls the check makes (the same discovery, version probe, page size,
//!   concurrency and parameters: `live::ListCall`), sent by this program re-run as a child
//!   (`--floor KUBECONFIG`) that reads each page's continue token and discards the bytes: what any
//!   client must pay to read what the check reads.
//! - The guide's script is read from `../shared/spec/sidecar-to-ambient-migration-guide.md` (the
//!   "Step 1 Validation Checkpoint" block) and runs with `oc` mapped to kubectl v1.34.
//! - `kubectl get KINDS -A -o json --chunk-size=500` reads every served kind the check reads
//!   (whole objects; Secrets without the check's label selector) into /dev/null.
//!
//! kubectl's requests are counted from its `-v=6` request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark prints its table itself: it is not plugin output, which goes through the printer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use oc_ambient_common::kinds::ALL;
use oc_ambient_common::live::{self, ListCall, ListScope, LoadOptions};
use oc_ambient_simulator::SimulatedCluster;

struct Measurement {
    wall: Duration,
    requests: usize,
    peak_rss_kib: i64,
    exit: i32,
}

/// Runs a command to completion through a launcher (this program re-run with `--spawn`), which
/// reports the command's peak RSS: the max RSS of its process tree, from wait4. Measured from here,
/// a child would start from this process's own peak (the simulator's, hundreds of MiB): Linux
/// carries the high-water mark of the memory a child is spawned from across its exec. The
/// launcher is a few MiB, which is then the floor of every figure.
fn measure(command: &Command) -> (Measurement, String, String) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut launcher = Command::new(std::env::current_exe().unwrap());
    launcher.arg("--spawn").arg(report.path()).arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => launcher.env(key, value),
            None => launcher.env_remove(key),
        };
    }
    let started = Instant::now();
    let output = launcher.output().expect("spawn the launcher");
    let wall = started.elapsed();
    let text = std::fs::read_to_string(report.path()).unwrap();
    let mut fields = text.split_whitespace().map(|field| field.parse::<i64>().unwrap());
    let (peak_rss_kib, exit) = (fields.next().unwrap(), fields.next().unwrap() as i32);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (Measurement { wall, requests: 0, peak_rss_kib, exit }, stdout, stderr)
}

/// The launcher of [`measure`]: runs `program`, waits for it and writes `MAXRSS_KIB EXIT` to `report`.
#[allow(unsafe_code)]
fn spawn_and_report(report: &Path, program: &str, args: &[String]) {
    let child = Command::new(program).args(args).spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    // The child is reaped by wait4 below, which also reports its resource usage.
    drop(child);
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter, and pid is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::wait4(pid, &mut status, 0, &mut usage);
    }
    let exit = std::process::ExitStatus::from_raw(status).code().unwrap_or(-1);
    std::fs::write(report, format!("{} {exit}", usage.ru_maxrss)).unwrap();
}

/// The run of median wall time of `runs` (the machine is shared: one run can be an outlier).
fn median(runs: usize, mut run: impl FnMut() -> (Measurement, String, String)) -> (Measurement, String, String) {
    let mut results: Vec<_> = (0..runs).map(|_| run()).collect();
    results.sort_by_key(|(measurement, _, _)| measurement.wall);
    results.swap_remove(runs / 2)
}

fn guide_step1_script() -> String {
    let guide = oc_ambient_testenv::workspace_root().join("../shared/spec/sidecar-to-ambient-migration-guide.md");
    let text = std::fs::read_to_string(&guide).expect("the guide beside the checkout");
    let start = text.find("**Step 1 Validation Checkpoint:**").expect("Step 1 checkpoint");
    let block = &text[start..];
    let code = &block[block.find("```bash").expect("bash block") + 7..];
    code[..code.find("```").expect("end of block")].to_string()
}

/// A directory with `oc` and `kubectl` that log every request (kubectl -v=6) to `log`.
fn oc_shim(dir: &Path, log: &Path) -> PathBuf {
    let kubectl = oc_ambient_testenv::binary::kubectl_dir().expect("kubectl").join("kubectl");
    let shim = format!("#!/bin/sh\nexec {} -v=6 \"$@\" 2>>{}\n", kubectl.display(), log.display());
    for name in ["oc", "kubectl"] {
        let path = dir.join(name);
        std::fs::write(&path, &shim).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    }
    dir.to_path_buf()
}

const PLUGINS: [&str; 4] = ["oc-ambient-check", "oc-ambient-enable", "oc-ambient-waypoint", "oc-ambient-rollback"];

fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| oc_ambient_testenv::workspace_root().join("target"));
    let path = target.join("release").join(name);
    assert!(path.exists(), "{} missing: run `cargo build --release --bins` (make bench does)", path.display());
    path
}

/// Flags as the check gets them from its command line (`--kubeconfig`, quiet).
fn global_args(kubeconfig: &Path) -> oc_ambient_common::cli::GlobalArgs {
    oc_ambient_common::cli::GlobalArgs {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        context: None,
        namespace: None,
        output: oc_ambient_common::cli::OutputFormat::Json,
        color: oc_ambient_common::cli::ColorChoice::Never,
        verbose: 0,
        quiet: true,
        request_timeout: oc_ambient_common::client::DEFAULT_TIMEOUT,
    }
}

/// The floor client (run as a child process): the check's connection, discovery and list calls
/// with its page size and concurrency; each page's bytes are scanned for the continue token and
/// dropped. Prints its request count.
fn floor(kubeconfig: &Path) {
    #[derive(serde::Deserialize)]
    struct Head {
        metadata: Meta,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "continue")]
        continue_token: Option<String>,
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let printer = oc_ambient_common::printer::Printer::plain();
        let connection = oc_ambient_common::client::connect(&global_args(kubeconfig), &printer).await.unwrap();
        let served = live::discover(&connection).await.unwrap();
        let options = LoadOptions::for_check(ListScope::AllNamespaces);
        let calls: Vec<ListCall> = ALL
            .iter()
            .filter_map(|info| Some(ListCall::new(info, live::served_version(info, &served)?, None, &options)))
            .collect();
        let connection = &connection;
        futures::stream::iter(calls)
            .for_each_concurrent(options.concurrency, |call| async move {
                let mut token: Option<String> = None;
                loop {
                    let text = connection.client.request_text(call.page(token.as_deref()).unwrap()).await.unwrap();
                    token = serde_json::from_str::<Head>(&text).unwrap().metadata.continue_token;
                    if token.as_deref().is_none_or(str::is_empty) {
                        break;
                    }
                }
            })
            .await;
        eprintln!("floor: {} requests", connection.requests());
    });
}

/// The resources `kubectl get` names for the kinds the check reads that the server serves.
fn served_resources(runtime: &tokio::runtime::Runtime, kubeconfig: &Path) -> Vec<String> {
    runtime.block_on(async {
        let printer = oc_ambient_common::printer::Printer::plain();
        let connection = oc_ambient_common::client::connect(&global_args(kubeconfig), &printer).await.unwrap();
        let served = live::discover(&connection).await.unwrap();
        ALL.iter().filter(|info| live::served_version(info, &served).is_some()).map(|info| info.resource()).collect()
    })
}

/// kubectl's requests, from its `-v=6` log (one round_trippers line per request).
fn kubectl_requests(log: &Path) -> usize {
    let count = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("round_trippers") && line.contains("https://"))
        .count();
    let _ = std::fs::remove_file(log);
    count
}

/// `--help` of each release binary: the median of 20 runs (after one warm-up), and its size.
fn startup() {
    println!("| binary | size | `--help` (median of 20) |");
    println!("|---|---|---|");
    for name in PLUGINS {
        let binary = release_binary(name);
        let mut times: Vec<Duration> = (0..21)
            .map(|_| {
                let started = Instant::now();
                let status = Command::new(&binary).arg("--help").stdout(Stdio::null()).status().unwrap();
                assert!(status.success(), "{name} --help");
                started.elapsed()
            })
            .skip(1)
            .collect();
        times.sort();
        let size = std::fs::metadata(&binary).unwrap().len();
        println!(
            "| {name} | {:.1} MiB | {:.1} ms |",
            size as f64 / 1048576.0,
            times[times.len() / 2].as_secs_f64() * 1000.0
        );
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, kubeconfig] if flag == "--floor" => return floor(Path::new(kubeconfig)),
        [flag, report, program, args @ ..] if flag == "--spawn" => {
            return spawn_and_report(Path::new(report), program, args);
        }
        _ => {}
    }
    let sizes: Vec<String> = args.into_iter().filter(|arg| !arg.starts_with('-')).collect();
    let sizes = if sizes.is_empty() { vec!["100x5x2".to_string(), "1000x5x2".to_string()] } else { sizes };
    startup();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("| size (ns x svc x pods) | objects | tool | wall | API requests | peak RSS | exit |");
    println!("|---|---|---|---|---|---|---|");
    for size in sizes {
        let cluster = runtime.block_on(SimulatedCluster::start(&format!("large:{size}"))).expect("large scenario");
        let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
        eprintln!("loaded large:{size} in {:.1}s", cluster.load_time().as_secs_f64());

        // Every tool runs RUNS times (the median is shown), after one unmeasured floor run that
        // warms the API server's caches and connections for all of them alike.
        const RUNS: usize = 3;
        let mut floor_command = Command::new(std::env::current_exe().unwrap());
        floor_command.arg("--floor").arg(&kubeconfig);
        measure(&floor_command);
        let (mut floor, _, stderr) = median(RUNS, || measure(&floor_command));
        floor.requests = stderr
            .lines()
            .find_map(|line| line.strip_prefix("floor: ")?.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("floor client failed: {stderr}"));

        let mut check_command = Command::new(release_binary("oc-ambient-check"));
        check_command.arg("--kubeconfig").arg(&kubeconfig).args(["-v", "-o", "json"]);
        let (mut check, _, stderr) = median(RUNS, || measure(&check_command));
        let objects = stderr
            .lines()
            .find_map(|line| {
                line.strip_prefix("read ").and_then(|rest| rest.split_whitespace().next()).map(str::to_string)
            })
            .unwrap_or_else(|| "?".into());
        check.requests = stderr
            .lines()
            .find_map(|line| {
                line.split(" in ").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|n| n.parse().ok())
            })
            .unwrap_or(0);

        let scratch = tempfile::tempdir().unwrap();
        let log = scratch.path().join("requests.log");
        let bin = oc_shim(scratch.path(), &log);
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let with_kubectl = |script: String| {
            let mut command = Command::new("bash");
            command.arg("-c").arg(script).env("PATH", &path).env("KUBECONFIG", &kubeconfig);
            let (mut measurement, stdout, stderr) = measure(&command);
            measurement.requests = kubectl_requests(&log);
            (measurement, stdout, stderr)
        };
        let (script, _, _) = median(RUNS, || with_kubectl(guide_step1_script()));
        let resources = served_resources(&runtime, &kubeconfig).join(",");
        let get = format!("kubectl get {resources} -A -o json --chunk-size=500 >/dev/null");
        let (kubectl, _, _) = median(RUNS, || with_kubectl(get.clone()));

        let check_tool = format!(
            "oc-ambient-check (full assessment; {:.2}x the floor's wall)",
            check.wall.as_secs_f64() / floor.wall.as_secs_f64()
        );
        for (tool, m) in [
            ("floor client (the check's list calls, bytes discarded)", &floor),
            (check_tool.as_str(), &check),
            ("guide Step 1 script (oc = kubectl)", &script),
            ("kubectl get (same kinds) -A -o json", &kubectl),
        ] {
            println!(
                "| {size} | {objects} | {tool} | {:.2}s | {} | {:.1} MiB | {} |",
                m.wall.as_secs_f64(),
                m.requests,
                m.peak_rss_kib as f64 / 1024.0,
                m.exit
            );
        }
        drop(cluster);
    }
}
