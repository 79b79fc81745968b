//! `oc ambient-check --bundle` (issue 15) against the simulated cluster, whose kubelets serve
//! container logs to the real API server: the archive unpacked and read as a support engineer
//! would, as admin and as the view-only identity.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use oc_ambient_simulator::SimulatedCluster;
use serde_json::json;

use crate::support::{enable, plugin, text, waypoint};

/// A remote secret of a multi-cluster mesh: the one kind of Secret the check reads.
const SECRET_VALUE: &str = "c2VjcmV0LXRva2VuLXZhbHVl";

/// Every file of the archive at `path`, by name.
fn unpack(path: &Path) -> BTreeMap<String, String> {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name, text);
    }
    files
}

fn bundle(kubeconfig: &Path, path: &Path, extra: &[&str]) -> std::process::Output {
    plugin("oc-ambient-check")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", "bookinfo", "--bundle"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap()
}

fn has_log(files: &BTreeMap<String, String>, component: &str) -> bool {
    files.iter().any(|(name, text)| {
        name.starts_with(&format!("logs/{component}/")) && text.ends_with("simulated log line 200\n")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_holds_logs_of_every_component_the_report_and_no_secret_value() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    for (command, args) in [
        (enable as fn(&Path, &Path, &[&str]) -> std::process::Output, &["--yes"][..]),
        (enable, &["bookinfo", "--until", "sidecar-hbone", "--yes"]),
        (waypoint, &["bookinfo", "--until", "deployed", "--yes"]),
    ] {
        let output = command(&kubeconfig, state.path(), args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    }
    let secret: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "istio-remote-secret-east", "namespace": "istio-system", "labels": {"istio/multiCluster": "true"}},
        "data": {"token": SECRET_VALUE}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "istio-system").create(&PostParams::default(), &secret).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.tar.gz");
    let output = bundle(&kubeconfig, &path, &[]);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&path.display().to_string()), "{}", text(&output));
    let files = unpack(&path);
    for component in ["istiod", "ztunnel", "istio-cni", "waypoint", "application"] {
        assert!(has_log(&files, component), "no {component} log in {:?}", files.keys().collect::<Vec<_>>());
    }
    let tail = files.iter().find(|(name, _)| name.starts_with("logs/istiod/")).unwrap().1;
    assert_eq!(tail.lines().count(), 200, "the tail the API server relayed from the kubelet");
    for name in ["summary.txt", "report.json", "snapshot.yaml", "versions.json", "journal.json", "events/bookinfo.yaml"]
    {
        assert!(files.contains_key(name), "{name} missing from {:?}", files.keys().collect::<Vec<_>>());
    }
    let report: serde_json::Value = serde_json::from_str(&files["report.json"]).unwrap();
    assert_eq!(report["kind"], "AmbientCheckReport");
    assert!(files["snapshot.yaml"].contains("istio-remote-secret-east"), "the Secret is listed");
    assert!(files.values().all(|text| !text.contains(SECRET_VALUE)), "no Secret value anywhere in the bundle");
    let summary = &files["summary.txt"];
    // The check reads Secrets as metadata only: their values never leave the API server.
    assert!(summary.contains("Secret istio-system/istio-remote-secret-east: no values"), "{summary}");
    assert!(summary.contains("nothing: everything was collected"), "{summary}");

    // The view-only identity reads less, and the summary says what.
    let viewer_path = dir.path().join("viewer.tar.gz");
    let output = bundle(&kubeconfig, &viewer_path, &["--context", "viewer"]);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", text(&output));
    let files = unpack(&viewer_path);
    let summary = &files["summary.txt"];
    let gaps = summary.split("Not collected:").nth(1).unwrap();
    assert!(gaps.contains("secrets"), "the viewer may not list Secrets: {summary}");
    assert!(has_log(&files, "application"), "pods/log is part of view: {summary}");
}
