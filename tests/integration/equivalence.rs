//! `oc-ambient-waypoint convert --verify` and `--state` on the bookinfo-sidecar scenario: the
//! upstream sample manifests (read from the fixtures, never copied), the namespace with sidecar
//! injection and the scenario's selector policies (generated).

use std::path::{Path, PathBuf};

use oc_ambient_common::equivalence::synthetic::bookinfo_selector_policies;
use serde_json::Value;

use crate::support::plugin;

const BOOKINFO_FILES: &[&str] = &[
    "platform/kube/bookinfo.yaml",
    "platform/kube/bookinfo-versions.yaml",
    "networking/destination-rule-all.yaml",
    "networking/virtual-service-reviews-test-v2.yaml",
    "gateway-api/bookinfo-gateway.yaml",
];

/// `-f` arguments for the scenario; the generated part is written into `dir`.
fn scenario_args(dir: &Path) -> Vec<String> {
    let mut generated =
        String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo, labels: {istio.io/rev: default}}\n");
    for policy in bookinfo_selector_policies("bookinfo") {
        generated.push_str("---\n");
        generated.push_str(&serde_yaml_ng::to_string(&policy).unwrap());
    }
    let generated_path = dir.join("scenario.yaml");
    std::fs::write(&generated_path, generated).unwrap();
    let samples = oc_ambient_testenv::fixtures_dir().join("samples/istio/samples/bookinfo");
    let mut paths: Vec<PathBuf> = BOOKINFO_FILES.iter().map(|file| samples.join(file)).collect();
    paths.push(generated_path);
    let mut args = vec!["convert".to_string(), "-n".into(), "bookinfo".into(), "--verify".into()];
    for path in paths {
        args.push("-f".into());
        args.push(path.display().to_string());
    }
    args
}

fn run(args: &[String]) -> (Option<i32>, String, String) {
    let output = plugin("oc-ambient-waypoint").args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

fn differences<'a>(document: &'a Value, class: &str, source: &str, destination: &str) -> Vec<&'a Value> {
    document["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["class"] == class
                && d["sources"].as_array().is_some_and(|sources| sources.iter().any(|s| s == source))
                && d["request"]["destination"]["name"] == destination
        })
        .collect()
}

#[test]
fn convert_verify_prints_the_equivalence_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = scenario_args(dir.path());
    args.extend(["-o".into(), "json".into()]);
    let (code, stdout, stderr) = run(&args);
    let document: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}\n{stderr}"));
    assert_eq!(document["kind"], "AmbientEquivalence");
    assert!(document["requests"].as_u64().unwrap() > 1000, "{}", document["requests"]);
    assert!(document["evaluated"].as_u64().unwrap() <= document["requests"].as_u64().unwrap(), "{stdout}");
    let unexpected = document["differences"].as_array().unwrap().iter().filter(|d| d["expected"] == false).count();
    assert_eq!(code, Some(if unexpected == 0 { 0 } else { 1 }), "{stderr}");
    for difference in document["differences"].as_array().unwrap() {
        assert!(["loosened", "tightened", "rerouted"].contains(&difference["class"].as_str().unwrap()), "{difference}");
        for side in ["before", "after"] {
            assert!(difference[side]["allowed"].is_boolean() && difference[side]["backend"].is_array(), "{difference}");
        }
    }
}

#[test]
fn convert_verify_with_a_state_file_evaluates_an_intermediate_step() {
    // The clean-up (the replaced objects deleted) while every pod keeps its sidecar: sidecar
    // clients skip the waypoint and their destinations' sidecars lose the selector policies. The
    // routes survive: Istio 1.27 gives the sidecars of the namespace its HTTPRoutes.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, "sidecars: [bookinfo]\n").unwrap();
    let mut args = scenario_args(dir.path());
    args.extend(["--state".into(), state.display().to_string(), "-o".into(), "json".into()]);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, Some(1), "{stderr}");
    let document: Value = serde_json::from_str(&stdout).unwrap();
    let rerouted = differences(&document, "rerouted", "bookinfo/productpage-v1", "reviews");
    assert!(rerouted.is_empty(), "{stdout}");
    let loosened = differences(&document, "loosened", "bookinfo/productpage-v1", "reviews");
    assert!(loosened.iter().any(|d| d["expected"] == false), "{stdout}");
}

#[test]
fn convert_verify_prints_a_table_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stdout, stderr) = run(&scenario_args(dir.path()));
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.contains("requests evaluated") && summary.contains("unexpected"), "{stdout}\n{stderr}");
}

#[test]
fn a_bad_state_file_is_an_error_and_state_needs_verify() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(&state, "enroled: [bookinfo]\n").unwrap();
    let mut args = scenario_args(dir.path());
    args.extend(["--state".into(), state.display().to_string()]);
    let (code, _, stderr) = run(&args);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown field `enroled`") && stderr.contains("expected keys"), "{stderr}");

    let mut without_verify = scenario_args(dir.path());
    without_verify.retain(|arg| arg != "--verify");
    without_verify.extend(["--state".into(), state.display().to_string()]);
    let (code, _, stderr) = run(&without_verify);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--verify"), "{stderr}");
}
