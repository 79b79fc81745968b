//! The check's own work, pure (no cluster): `check::evaluate` of the whole assessment on a
//! generated running cluster, then its JSON report. This is what the live check spends after its
//! list calls, which is what stands between it and the floor client in `tests/benches/check.rs`;
//! measured apart, it shows whether that work grows linearly with namespaces.
//!
//! `cargo bench -p oc-ambient-core --bench assess -- [NSxSVCxPODS ...]` (default 250x3x1 and
//! 1000x3x1, the check bench's shape). The input is `synthetic::running_cluster`: the sidecar era,
//! so the assessment includes the conversion's verdict over the whole mesh (converted, simulated
//! and verified), its largest part.

// A benchmark prints its figures itself: it is not plugin output, which goes through the printer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::process::ExitCode;
use std::time::Instant;

use oc_ambient_core::check::{Options, Scope, evaluate};
use oc_ambient_core::equivalence::synthetic::{MeshSize, running_cluster};
use oc_ambient_core::snapshot::Snapshot;

/// Runs per size; the median is shown.
const RUNS: usize = 3;

fn main() -> ExitCode {
    let sizes: Vec<String> = std::env::args().skip(1).filter(|argument| !argument.starts_with("--")).collect();
    let sizes = if sizes.is_empty() { vec!["250x3x1".to_string(), "1000x3x1".to_string()] } else { sizes };
    let sizes: Result<Vec<MeshSize>, String> = sizes.iter().map(|size| size.parse()).collect();
    match sizes {
        Ok(sizes) => {
            sizes.into_iter().for_each(run);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn run(size: MeshSize) {
    let snapshot = Snapshot::from_objects(running_cluster(size));
    let options = Options { scope: Scope::All, step: None, baseline: None };
    let mut runs: Vec<(f64, f64, usize)> = (0..RUNS)
        .map(|_| {
            let cpu = support::cpu_seconds();
            let started = Instant::now();
            let report = evaluate(&snapshot, &options);
            let bytes = serde_json::to_vec(&report).map_or(0, |json| json.len());
            let wall = started.elapsed().as_secs_f64();
            let cpu = cpu.zip(support::cpu_seconds()).map_or(f64::NAN, |(start, end)| end - start);
            (cpu, wall, bytes)
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (cpu, wall, bytes) = runs[RUNS / 2];
    println!(
        "{}x{}x{}: {} objects; evaluate and render: {cpu:.2}s cpu ({wall:.2}s wall), {:.2} ms cpu per namespace; \
         report {bytes} bytes; peak memory {}",
        size.namespaces,
        size.services,
        size.pods,
        snapshot.len(),
        cpu * 1000.0 / size.namespaces as f64,
        support::peak_memory().unwrap_or_else(|| "unknown".into()),
    );
}
