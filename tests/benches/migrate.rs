//! Benchmark: a whole migration of many namespaces with the release plugins against the
//! simulator's `ring:N` scenario (N namespaces of two Deployments each, every namespace calling
//! the next under an L7 policy), one command per step for all namespaces at once, as a platform
//! team would run it.
//!
//! It prints, per command, wall time and API requests (the plugins' own count, `-v`), and per
//! namespace; then how many outcomes of the sidecar era the end state changes
//! (`oc-ambient-check -A --baseline`), which must be none. Run with
//! `cargo build --release --bins && cargo bench -p oc-ambient-tests --bench migrate -- 50
//! [--concurrency N] [--pod-startup SECONDS]` (CI runs it at a smoke size); `--concurrency N` is
//! passed to every command, so N namespaces roll out at once; `--pod-startup` makes every
//! simulated pod take that long to become Ready, as real ones do (none by default). Windows the plans announce are accepted by prefix (`window:*`):
//! the bench measures the run, the integration tests review the windows.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark prints its table itself: it is not plugin output, which goes through the printer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oc_ambient_simulator::SimulatedCluster;
use oc_ambient_simulator::scenario::ring_namespace;

fn release_binary(name: &str) -> PathBuf {
    let path = oc_ambient_testenv::workspace_root().join("target/release").join(name);
    assert!(path.exists(), "{} missing: run `cargo build --release --bins`", path.display());
    path
}

/// Runs one plugin with `-v`; returns wall seconds and the API requests it reports.
fn run(binary: &str, kubeconfig: &Path, state: &Path, args: &[String]) -> (f64, usize) {
    let started = Instant::now();
    let output = Command::new(release_binary(binary))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--state-dir")
        .arg(state)
        .args(["-v", "--timeout", "10m"])
        .args(args)
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{binary} {args:?} failed:\n{stderr}");
    let requests = stderr
        .lines()
        .find_map(|line| line.strip_suffix(" API requests").and_then(|n| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{binary} printed no request count:\n{stderr}"));
    (wall, requests)
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        let position = arguments.iter().position(|argument| argument == name)?;
        arguments.get(position + 1).cloned()
    };
    let concurrency = option("--concurrency").unwrap_or_else(|| "1".into());
    let startup: f64 = option("--pod-startup").and_then(|seconds| seconds.parse().ok()).unwrap_or(0.0);
    let sizes: Vec<usize> = arguments
        .iter()
        .enumerate()
        .filter(|(position, _)| *position == 0 || !arguments[position - 1].starts_with("--"))
        .filter_map(|(_, argument)| argument.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![50] } else { sizes };
    println!("concurrency {concurrency}, pods start in {startup}s\n");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("| namespaces | command | wall | API requests | requests per namespace |");
    println!("|---|---|---|---|---|");
    for count in sizes {
        let cluster = runtime
            .block_on(SimulatedCluster::start_with(&format!("ring:{count}"), Duration::from_secs_f64(startup)))
            .expect("ring scenario");
        eprintln!("loaded ring:{count} in {:.1}s", cluster.load_time().as_secs_f64());
        let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
        let state = tempfile::tempdir().unwrap();
        let namespaces: Vec<String> = (0..count).map(ring_namespace).collect();
        let accept = ["--accept".to_string(), "window:*".to_string()];
        let yes = ["--yes".to_string(), "--concurrency".to_string(), concurrency.clone()];
        let with = |parts: &[&[String]]| parts.concat();
        let commands: [(&str, &str, Vec<String>); 6] = [
            ("Step 2", "oc-ambient-enable", yes.to_vec()),
            ("Step 3", "oc-ambient-enable", with(&[&namespaces, &yes, &accept])),
            ("Steps 4, 5", "oc-ambient-waypoint", with(&[&namespaces, &yes, &accept])),
            ("Step 6", "oc-ambient-enable", with(&[&namespaces, &yes, &accept])),
            ("Step 7", "oc-ambient-waypoint", with(&[&namespaces, &yes, &accept])),
            ("Steps 9, 8", "oc-ambient-enable", with(&[&namespaces, &yes, &accept])),
        ];
        let (mut total_wall, mut total_requests) = (0.0, 0);
        for (steps, binary, args) in commands {
            let (wall, requests) = run(binary, &kubeconfig, state.path(), &args);
            total_wall += wall;
            total_requests += requests;
            let per_namespace = requests as f64 / count as f64;
            println!("| {count} | {steps}: {binary} | {wall:.1}s | {requests} | {per_namespace:.1} |");
        }
        let per_namespace = total_requests as f64 / count as f64;
        println!("| {count} | whole migration | {total_wall:.1}s | {total_requests} | {per_namespace:.1} |");

        let backup = state.path().join("backup.yaml");
        let output = Command::new(release_binary("oc-ambient-check"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-A", "-o", "json", "--baseline"])
            .arg(&backup)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the check's report");
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        let differences: Vec<&str> = findings
            .iter()
            .filter(|f| f["id"] == "policy-equivalence" && f["severity"] == "fail")
            .filter_map(|f| f["message"].as_str())
            .collect();
        let ambient =
            report["namespaces"].as_array().into_iter().flatten().filter(|ns| ns["phase"] == "ambient").count();
        println!(
            "\nring:{count}: {ambient} of {count} namespaces ambient; {} outcome differences from the sidecar era",
            differences.len()
        );
        for difference in differences.iter().take(5) {
            eprintln!("  {}", difference.chars().take(300).collect::<String>());
        }
        // ztunnel, which Step 2 adds, has no counterpart in the backup: its requests are not
        // compared, so the migration of every namespace leaves no difference at all.
        assert!(differences.is_empty(), "the migration changed outcomes of the sidecar era");
    }
}
