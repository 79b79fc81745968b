//! Helpers shared by the integration tests.

use std::time::{Duration, Instant};

use oc_ambient_testenv::ControlPlane;

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
