//! The pure core of oc-ambient: everything that decides, nothing that does I/O.
//!
//! Every plugin follows one shape: load a [`snapshot::Snapshot`] of the cluster (live, or offline
//! from YAML dumps), compute findings or a plan from it with pure functions, then render or apply.
//! This crate is the middle part. It depends on no client, async runtime, terminal or CLI crate
//! (kube-core rather than kube, as kube splits its types from its client), so the compiler, not
//! a convention, keeps I/O at the edges; `tests/pure.rs` checks the dependency tree. The shared
//! library `oc-ambient-common` re-exports it next to the client, the loaders and the printer.

pub mod change;
pub mod check;
pub mod convert;
pub mod duration;
pub mod equivalence;
pub mod fields;
pub mod journal;
pub mod kinds;
pub mod mesh;
pub mod model;
pub mod parallel;
pub mod plan;
pub mod snapshot;

/// The shared fixtures for unit tests: `$OC_AMBIENT_FIXTURES`, else `../shared/fixtures` beside
/// the checkout (the test ground's rule, without depending on the test ground).
#[cfg(test)]
pub(crate) fn fixtures_dir() -> std::path::PathBuf {
    match std::env::var_os("OC_AMBIENT_FIXTURES") {
        Some(dir) => dir.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}
