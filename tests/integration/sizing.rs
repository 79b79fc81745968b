//! Waypoint sizing (issue 15): the check's per-waypoint report and recommendation, and
//! `oc ambient-waypoint --size` applying it through the Gateway's parametersRef, which the
//! simulated gateway controller honours on every reconcile as Istio's does.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use oc_ambient_common::check::ids;
use oc_ambient_simulator::SimulatedCluster;
use serde_json::{Value, json};

use crate::check_live::run_check;
use crate::support::{accepting_windows, enable, eventually, text, waypoint};

fn api(client: &kube::Client, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(client.clone(), "bookinfo", &ApiResource::from_gvk_with_plural(&gvk, plural))
}

fn sizing_findings(report: &Value) -> Vec<Value> {
    report["findings"].as_array().unwrap().iter().filter(|f| f["id"] == ids::WAYPOINT_SIZING).cloned().collect()
}

fn assert_ok(output: &std::process::Output) {
    assert_eq!(output.status.code(), Some(0), "{}", text(output));
}

/// (replicas, PodDisruptionBudget present) of the waypoint's generated objects.
async fn generated(client: &kube::Client, name: &str) -> (Option<i64>, bool) {
    let deployment = api(client, "apps", "v1", "Deployment", "deployments").get_opt(name).await.unwrap();
    let budget =
        api(client, "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets").get_opt(name).await.unwrap();
    (deployment.and_then(|d| d.data["spec"]["replicas"].as_i64()), budget.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_waypoint_is_sized_through_its_parameters_and_stays_sized() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    assert_ok(&enable(&kubeconfig, state.path(), &["--yes"]));
    assert_ok(&enable(&kubeconfig, state.path(), &["bookinfo", "--until", "sidecar-hbone", "--yes"]));
    assert_ok(&waypoint(&kubeconfig, state.path(), &["bookinfo", "--until", "deployed", "--yes"]));

    // Reported: one replica, no budget, what it serves, and the recommendation with its reasons.
    let (report, _) = run_check(&["-n", "bookinfo"], Some(&kubeconfig));
    let findings = sizing_findings(&report);
    assert_eq!(findings.len(), 1, "{report:#}");
    assert_eq!(findings[0]["severity"], "warn");
    let name = findings[0]["object"]["name"].as_str().unwrap().to_string();
    let message = findings[0]["message"].as_str().unwrap();
    assert!(message.contains("1 replicas") && message.contains("single point of failure"), "{message}");
    assert!(message.contains("PodDisruptionBudget none"), "{message}");
    let sizing = &report["namespaces"][0]["waypoints"][0];
    assert_eq!(sizing["replicas"], 1, "{sizing:#}");
    assert_eq!(sizing["recommendation"]["replicas"], 2);
    assert!(sizing["services"].as_array().unwrap().iter().any(|s| s == "reviews"), "{sizing:#}");
    assert!(sizing["endpoints"].as_u64().unwrap() >= 4, "bookinfo has at least 4 pods behind its Services: {sizing:#}");
    assert_eq!(generated(&client, &name).await, (Some(1), false));

    // Applied through the Gateway's parametersRef: the controller generates 2 replicas and a budget.
    let sized = waypoint(&kubeconfig, state.path(), &["bookinfo", "--step", "4", "--size", "--yes"]);
    assert_ok(&sized);
    eventually("the waypoint sized by its controller", Duration::from_secs(60), || async {
        (generated(&client, &name).await == (Some(2), true)).then_some(())
    })
    .await;

    // The rest of the migration up to Step 7, whose checkpoint passes with the sized waypoint.
    assert_ok(&waypoint(&kubeconfig, state.path(), &["bookinfo", "--until", "policies-migrated", "--yes"]));
    assert_ok(&enable(&kubeconfig, state.path(), &["bookinfo", "--until", "ambient-enrolled", "--yes"]));
    assert_ok(&accepting_windows(waypoint, &kubeconfig, state.path(), &["bookinfo", "--until", "active"]));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "7"], Some(&kubeconfig));
    assert_eq!(code, Some(0), "{report:#}");

    // A reconcile of the gateway controller (a change to the Gateway) keeps the sizing.
    let gateways = api(&client, "gateway.networking.k8s.io", "v1", "Gateway", "gateways");
    let touch = json!({"metadata": {"annotations": {"test.oc-ambient.io/reconcile": "1"}}});
    gateways.patch(&name, &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(generated(&client, &name).await, (Some(2), true), "the controller's reconcile keeps the parameters");
    let (report, _) = run_check(&["-n", "bookinfo"], Some(&kubeconfig));
    let findings = sizing_findings(&report);
    assert_eq!(findings.len(), 1, "{report:#}");
    assert_eq!(findings[0]["severity"], "pass", "{report:#}");
}
