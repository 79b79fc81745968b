//! The core is pure by construction: no client, async runtime, terminal or CLI crate may enter
//! its (normal) dependency tree. Cargo itself lists the tree, so an added dependency that pulls
//! one in, directly or through another crate, fails here and in CI.

use std::process::Command;

/// Crates that do I/O or talk to a terminal, and the layer they belong to instead.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "kube",
    "kube-client",
    "kube-runtime",
    "hyper",
    "clap",
    "owo-colors",
    "indicatif",
    "dialoguer",
    "tracing-subscriber",
];

#[test]
fn the_core_depends_on_no_client_runtime_or_terminal_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "-p", "oc-ambient-core", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let packages: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(packages.contains(&"oc-ambient-core") && packages.contains(&"kube-core"), "unexpected tree: {tree}");
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|name| packages.contains(name)).collect();
    assert!(found.is_empty(), "the pure core depends on {found:?}:\n{tree}");
}
