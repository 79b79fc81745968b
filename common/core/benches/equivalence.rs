//! The verifier on generated meshes of the `large` scenario's shape: the class-based verifier and,
//! where it is asked for or the mesh is small, the exhaustive one, with wall and CPU time,
//! representative requests evaluated, requests covered and peak memory.
//!
//! `cargo bench -p oc-ambient-core --bench equivalence -- [--exhaustive] [NSxSVCxPODS ...]`
//! (default 20x5x2, the simulator's `large`). The exhaustive verifier runs on meshes of at most
//! [`SMALL_MESH_SERVICES`] Services unless `--exhaustive` is given. Peak memory (VmHWM) is reset
//! before each verifier where the kernel allows it, so it is that verifier's peak on top of the
//! generated mesh already held; run one size per invocation for a clean figure.

// A benchmark prints its figures itself: it is not plugin output, which goes through the printer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod support;

#[global_allocator]
static HEAP: support::heap::Counting = support::heap::Counting;

use std::process::ExitCode;
use std::time::Instant;

use oc_ambient_core::equivalence::synthetic::{MeshSize, generate};
use oc_ambient_core::equivalence::{Verification, verify, verify_exhaustive};

/// The exhaustive verifier runs unasked on meshes of at most this many Services (20x5x2).
const SMALL_MESH_SERVICES: usize = 100;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `--exhaustive` is ours; everything else is a size.
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let exhaustive = arguments.iter().any(|argument| argument == "--exhaustive");
    let sizes: Vec<&String> = arguments.iter().filter(|argument| !argument.starts_with("--")).collect();
    let sizes: Result<Vec<MeshSize>, String> =
        if sizes.is_empty() { Ok(vec![MeshSize::default()]) } else { sizes.iter().map(|a| a.parse()).collect() };
    let sizes = match sizes {
        Ok(sizes) => sizes,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    for size in sizes {
        run(size, exhaustive || size.namespaces * size.services <= SMALL_MESH_SERVICES);
    }
    ExitCode::SUCCESS
}

fn run(size: MeshSize, exhaustive: bool) {
    let (before, after) = generate(size).into_migration();
    let name = format!("{}x{}x{}", size.namespaces, size.services, size.pods);
    println!(
        "size {name}: {} objects before, {} after, held in {:.1} MiB of heap (resident {})",
        before.len(),
        after.len(),
        support::heap::start_phase() as f64 / (1024.0 * 1024.0),
        support::resident_memory().unwrap_or_else(|| "unknown".into())
    );
    let classes = measure(&name, "classes", || verify(&before, &after, None));
    if exhaustive {
        let reference = measure(&name, "exhaustive", || verify_exhaustive(&before, &after, None));
        if reference.notes.iter().all(|note| !note.contains("deterministic sample")) {
            assert_eq!(classes.requests, reference.requests, "both cover every request");
            assert_eq!(classes.differing_requests(), reference.differing_requests(), "both find the same differences");
        }
    }
}

fn measure(size: &str, verifier: &str, run: impl FnOnce() -> Verification) -> Verification {
    let reset = support::reset_peak_memory();
    let held = support::heap::start_phase();
    let cpu = support::cpu_seconds();
    let started = Instant::now();
    let verification = run();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu.zip(support::cpu_seconds()).map(|(start, end)| format!("{:.2}s", end - start));
    let sampled = verification.notes.iter().filter(|note| note.contains("deterministic sample")).count();
    println!(
        "  {size} {verifier:<10}: {seconds:.2}s wall, {} cpu; {} representative requests evaluated, {} requests covered \
         ({}); {} differing requests in {} differences ({} unexpected); peak memory {}{}, of which the verifier's \
         heap {:.1} MiB at its peak and {:.1} MiB for the report it returns",
        cpu.as_deref().unwrap_or("unknown"),
        verification.evaluated,
        verification.requests,
        if sampled == 0 { "all".to_string() } else { format!("sampled in {sampled} namespaces") },
        verification.differing_requests(),
        verification.differences.len(),
        verification.unexpected_requests(),
        support::peak_memory().unwrap_or_else(|| "unknown".into()),
        if reset { "" } else { " (whole process)" },
        (support::heap::peak() - held) as f64 / (1024.0 * 1024.0),
        (support::heap::in_use() - held) as f64 / (1024.0 * 1024.0),
    );
    verification
}
