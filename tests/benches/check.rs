//! Benchmark: `oc-ambient-check` on the simulator's `large` scenario, side by side with the
//! guide's Step 1 validation script run with kubectl against the same control plane.
//!
//! It prints wall time, API requests and peak memory (max RSS of the process tree, from wait4)
//! for each size. Run with `make bench` (release binaries), or
//! `cargo bench -p oc-ambient-tests --bench check -- 100x5x2 1000x5x2`.
//!
//! The guide's script is read from `../shared/spec/sidecar-to-ambient-migration-guide.md` (the
//! "Step 1 Validation Checkpoint" block) and runs with `oc` mapped to kubectl v1.34; kubectl's
//! requests are counted from its `-v=6` request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark prints its table itself: it is not plugin output, which goes through the printer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oc_ambient_simulator::SimulatedCluster;

struct Measurement {
    wall: Duration,
    requests: usize,
    peak_rss_kib: i64,
    exit: i32,
}

/// Runs a command to completion and reads its peak RSS (self and waited-for descendants).
#[allow(unsafe_code)]
fn measure(command: &mut Command) -> (Measurement, String, String) {
    use std::io::Read;
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
    // The child is reaped by wait4 below, which also reports its resource usage.
    drop(child);
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter, and pid is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::wait4(pid, &mut status, 0, &mut usage);
    }
    let wall = started.elapsed();
    let exit = std::process::ExitStatus::from_raw(status).code().unwrap_or(-1);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (Measurement { wall, requests: 0, peak_rss_kib: usage.ru_maxrss, exit }, stdout, stderr)
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

fn release_binary(name: &str) -> PathBuf {
    let path = oc_ambient_testenv::workspace_root().join("target/release").join(name);
    assert!(path.exists(), "{} missing: run `cargo build --release --bins` (make bench does)", path.display());
    path
}

fn main() {
    let sizes: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let sizes = if sizes.is_empty() { vec!["100x5x2".to_string(), "1000x5x2".to_string()] } else { sizes };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("| size (ns x svc x pods) | objects | tool | wall | API requests | peak RSS | exit |");
    println!("|---|---|---|---|---|---|---|");
    for size in sizes {
        let cluster = runtime.block_on(SimulatedCluster::start(&format!("large:{size}"))).expect("large scenario");
        let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
        eprintln!("loaded large:{size} in {:.1}s", cluster.load_time().as_secs_f64());

        let (mut check, _, stderr) = measure(
            Command::new(release_binary("oc-ambient-check"))
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["-v", "-o", "json"]),
        );
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
        let (mut script, _, _) = measure(
            Command::new("bash").arg("-c").arg(guide_step1_script()).env("PATH", path).env("KUBECONFIG", &kubeconfig),
        );
        // kubectl -v=6 logs one round_trippers line per request it sends.
        script.requests = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("round_trippers") && line.contains("https://"))
            .count();

        for (tool, m) in
            [("oc-ambient-check (full assessment)", &check), ("guide Step 1 script (oc = kubectl)", &script)]
        {
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
