//! The control plane is real: controllers run, CRD schemas validate, RBAC denies, deletion cascades.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use crate::support::{eventually, plane};

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

#[tokio::test]
async fn deployment_gets_replicaset_and_pods_from_the_controller_manager() {
    let plane = plane();
    let client = plane.client().await.unwrap();
    let ns = plane.namespace(&client, "cp-deploy").await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment("web")).await.unwrap();

    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let rs = eventually("a ReplicaSet owned by the Deployment", Duration::from_secs(30), || async {
        replicasets.list(&ListParams::default()).await.ok()?.items.into_iter().next()
    })
    .await;
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Deployment", "web"));

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let count = eventually("two Pods from the ReplicaSet", Duration::from_secs(30), || async {
        let listed = pods.list(&ListParams::default()).await.ok()?;
        (listed.items.len() == 2).then_some(listed.items.len())
    })
    .await;
    assert_eq!(count, 2);
}

#[tokio::test]
async fn istio_crd_validation_rejects_selector_with_target_refs_on_server_dry_run() {
    let plane = plane();
    let client = plane.client().await.unwrap();
    let ns = plane.namespace(&client, "cp-crd").await.unwrap();
    let gvk = GroupVersionKind::gvk("security.istio.io", "v1", "AuthorizationPolicy");
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ApiResource::from_gvk(&gvk));
    let mut policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "both"},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
            "action": "ALLOW",
            "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]
        }
    }))
    .unwrap();
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    let err = api.create(&dry_run, &policy).await.expect_err("selector + targetRefs must be rejected");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("targetRef"), "message names the rule: {}", status.message);
        }
        other => panic!("expected a validation error, got {other}"),
    }
    // The same policy with only a selector is valid: the rejection above is the rule, not noise.
    policy.data["spec"].as_object_mut().unwrap().remove("targetRefs");
    api.create(&dry_run, &policy).await.expect("a selector-only policy passes validation");
    assert!(api.get_opt("both").await.unwrap().is_none(), "dry-run persisted nothing");
}

#[tokio::test]
async fn view_only_identity_is_denied_a_patch_but_may_read() {
    let plane = plane();
    let admin = plane.client().await.unwrap();
    let ns = plane.namespace(&admin, "cp-rbac").await.unwrap();
    Api::<Deployment>::namespaced(admin, &ns).create(&PostParams::default(), &deployment("ro")).await.unwrap();

    let viewer = plane.viewer_client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(viewer.clone(), &ns);
    assert!(deployments.get("ro").await.is_ok(), "view grants get");
    let patch = Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}}));
    match deployments.patch("ro", &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other:?}"),
    }
    let gvk = GroupVersionKind::gvk("security.istio.io", "v1", "AuthorizationPolicy");
    let policies: Api<DynamicObject> = Api::namespaced_with(viewer, &ns, &ApiResource::from_gvk(&gvk));
    assert!(policies.list(&ListParams::default()).await.is_ok(), "mesh CRDs are readable by the viewer");
}

#[tokio::test]
async fn deleting_a_namespace_cascades() {
    let plane = plane();
    let client = plane.client().await.unwrap();
    let ns = plane.namespace(&client, "cp-cascade").await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment("gone")).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("pods to exist", Duration::from_secs(30), || async {
        (!pods.list(&ListParams::default()).await.ok()?.items.is_empty()).then_some(())
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &Default::default()).await.unwrap();
    // Pods have no kubelet to confirm their deletion; the namespace controller deletes them and
    // the namespace disappears once everything inside it is gone.
    eventually("the namespace and everything in it to be deleted", Duration::from_secs(60), || async {
        let gone = namespaces.get_opt(&ns).await.ok()?.is_none();
        let deployments_left = deployments.list(&ListParams::default()).await.ok()?.items.len();
        (gone && deployments_left == 0).then_some(())
    })
    .await;
}

/// Runs the probe, which starts a control plane and then ends as `mode` says.
fn probe(mode: &str) -> (std::path::PathBuf, Vec<u32>, std::process::Child) {
    use std::io::BufRead;
    let binary = assert_cmd::cargo::cargo_bin("testenv-probe");
    let mut child = std::process::Command::new(binary)
        .arg(mode)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let dir = lines.next().unwrap().unwrap().strip_prefix("dir=").unwrap().into();
    let pids =
        lines.next().unwrap().unwrap().strip_prefix("pids=").unwrap().split(',').map(|p| p.parse().unwrap()).collect();
    (dir, pids, child)
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes: its parent (the init reaper) has not waited yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[test]
fn nothing_outlives_a_test_process_that_exits_panics_or_is_killed() {
    for mode in ["exit", "panic"] {
        let (dir, pids, mut child) = probe(mode);
        assert_eq!(pids.len(), 3, "etcd, kube-apiserver, kube-controller-manager");
        let status = child.wait().unwrap();
        assert_eq!(status.success(), mode == "exit", "{mode}");
        assert!(pids.iter().all(|pid| !alive(*pid)), "{mode}: control plane processes left: {pids:?}");
        assert!(!dir.exists(), "{mode}: {} left behind", dir.display());
    }
    let (dir, pids, mut child) = probe("hang");
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel signals at once, but a big process can take a moment to exit under load.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|pid| alive(*pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pids.iter().all(|pid| !alive(*pid)), "SIGKILL: PDEATHSIG must take the children down: {pids:?}");
    // The killed process's directory goes at the next control-plane start.
    let (_, _, mut next) = probe("exit");
    next.wait().unwrap();
    assert!(!dir.exists(), "stale {} removed by the next start", dir.display());
}

/// `make cluster SCENARIO=bookinfo-sidecar`: the kubeconfig path, then `ready`; the cluster is
/// usable by the plugins; SIGTERM stops it.
#[test]
fn make_cluster_prints_ready_serves_the_plugins_and_stops_on_sigterm() {
    use std::io::BufRead;
    let binary = assert_cmd::cargo::cargo_bin("oc-ambient-cluster");
    let mut child = std::process::Command::new(binary)
        .args(["--scenario", "bookinfo-sidecar"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let kubeconfig = std::path::PathBuf::from(lines.next().unwrap().unwrap());
    assert_eq!(kubeconfig, oc_ambient_testenv::workspace_root().join(".testenv/kubeconfig"));
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    let check = crate::support::plugin("oc-ambient-check")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-n", "bookinfo", "-o", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["namespaces"][0]["phase"], "sidecar", "{report:#}");

    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean stop: {status}");
    let after = crate::support::plugin("oc-ambient-check")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--request-timeout", "2s"])
        .output()
        .unwrap();
    assert_eq!(after.status.code(), Some(2), "the API server is gone after SIGTERM");
}
