//! The verifier on a generated mesh of the `large` scenario's shape: requests evaluated per
//! second and peak memory.
//!
//! `cargo bench -p oc-ambient-common --bench equivalence -- [NSxSVCxPODS ...]` (default 20x5x2,
//! the simulator's `large`). Each size runs in a fresh process when given alone; peak memory
//! (VmHWM) covers the whole process, so run one size per invocation for a clean figure.

// A benchmark prints its figures itself: it is not plugin output, which goes through the printer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::process::ExitCode;
use std::time::Instant;

use oc_ambient_core::change::simulate;
use oc_ambient_core::equivalence::state::MigrationState;
use oc_ambient_core::equivalence::synthetic::{MeshSize, generate, namespace_name};
use oc_ambient_core::equivalence::verify;
use oc_ambient_core::snapshot::Snapshot;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; everything else is a size.
    let arguments: Vec<String> = std::env::args().skip(1).filter(|argument| !argument.starts_with("--")).collect();
    let sizes: Result<Vec<MeshSize>, String> = if arguments.is_empty() {
        Ok(vec![MeshSize::default()])
    } else {
        arguments.iter().map(|a| a.parse()).collect()
    };
    let sizes = match sizes {
        Ok(sizes) => sizes,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    for size in sizes {
        run(size);
    }
    ExitCode::SUCCESS
}

fn run(size: MeshSize) {
    let mesh = generate(size);
    let before = Snapshot::from_objects(mesh.sidecar_era.clone());
    let namespaces: std::collections::BTreeSet<String> = (0..size.namespaces).map(namespace_name).collect();
    let migrated = MigrationState { enrolled: namespaces.clone(), waypoints: namespaces, sidecars: Default::default() };
    let after = migrated.apply(&simulate(&before, &mesh.changes()).snapshot);
    let started = Instant::now();
    let verification = verify(&before, &after, None);
    let seconds = started.elapsed().as_secs_f64();
    // Each request is evaluated twice (before and after).
    let evaluations = 2.0 * verification.evaluated as f64;
    println!(
        "size {}x{}x{}: {} objects, {} requests in {:.2}s: {:.0} requests/s ({:.0} evaluations/s), {} differences ({} unexpected), peak memory {}",
        size.namespaces,
        size.services,
        size.pods,
        before.len(),
        verification.evaluated,
        seconds,
        verification.evaluated as f64 / seconds,
        evaluations / seconds,
        verification.differences.len(),
        verification.unexpected().count(),
        support::peak_memory().unwrap_or_else(|| "unknown".into()),
    );
}
