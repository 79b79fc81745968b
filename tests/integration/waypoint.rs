//! `oc-ambient-waypoint NAMESPACE` against the simulated cluster (issue 11): dry runs, consent,
//! permissions, unsupported conversions accepted by id, API faults, interruption and resume, and
//! hand edits, with the same engine rules as `oc-ambient-enable` (see `enable.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use oc_ambient_simulator::SimulatedCluster;
use oc_ambient_testenv::faults::{Action, Fault};
use serde_json::{Value, json};

use crate::check_live::run_check;
use crate::support::{KindPath, eventually, journal, resource_versions, settled_resource_versions, text, waypoint};

/// Every kind Steps 4 and 5 write, and where the engine keeps its journal and backup.
const WRITTEN: [KindPath<'static>; 8] = [
    ("gateway.networking.k8s.io", "v1", "Gateway", "gateways"),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    ("security.istio.io", "v1", "AuthorizationPolicy", "authorizationpolicies"),
    ("networking.istio.io", "v1", "VirtualService", "virtualservices"),
    ("networking.istio.io", "v1", "DestinationRule", "destinationrules"),
    ("", "v1", "Service", "services"),
    ("", "v1", "Namespace", "namespaces"),
    ("", "v1", "ConfigMap", "configmaps"),
];

async fn versions(client: &kube::Client) -> BTreeMap<String, String> {
    resource_versions(client, &WRITTEN).await
}

async fn settled_versions(client: &kube::Client) -> BTreeMap<String, String> {
    settled_resource_versions(client, &WRITTEN).await
}

fn api(client: &kube::Client, (group, version, kind, plural): KindPath<'_>, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

fn is_write(method: &http::Method) -> bool {
    ![http::Method::GET, http::Method::HEAD, http::Method::OPTIONS].contains(method)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waypoint_dry_runs_consent_and_permissions_write_nothing() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let proxy = cluster.plane().fault_proxy().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    let before = settled_versions(&client).await;

    // Client side: the plan, and not one write request on the wire.
    let planned = waypoint(proxy.kubeconfig(), state.path(), &["bookinfo", "--dry-run=client", "-o", "json"]);
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let steps: Vec<u64> = plan["actions"].as_array().unwrap().iter().filter_map(|a| a["step"].as_u64()).collect();
    assert!(steps.contains(&4) && steps.contains(&5), "{plan:#}");
    assert!(!proxy.requests().is_empty(), "the plan was made through the proxy");
    let writes: Vec<String> =
        proxy.requests().iter().filter(|r| is_write(&r.method)).map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(writes, Vec::<String>::new(), "--dry-run=client sends no write");

    // Server side: every write validated, none stored.
    let server = waypoint(&kubeconfig, state.path(), &["bookinfo", "--dry-run=server", "--yes"]);
    assert_eq!(server.status.code(), Some(0), "{}", text(&server));
    assert!(stderr(&server).contains("validated: deploy the waypoint"), "{}", text(&server));
    assert_eq!(versions(&client).await, before, "--dry-run=server stores nothing");

    // No terminal and no --yes: refused, exit 1, nothing written.
    let refused = waypoint(&kubeconfig, state.path(), &["bookinfo"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(stderr(&refused).contains("--yes"), "{}", text(&refused));
    assert_eq!(versions(&client).await, before, "a refusal writes nothing");

    // The view-only identity: one line naming the missing permission, before any write.
    let viewer = waypoint(&kubeconfig, state.path(), &["bookinfo", "--context", "viewer", "--yes"]);
    assert_eq!(viewer.status.code(), Some(2), "{}", text(&viewer));
    let errors: Vec<String> = stderr(&viewer).lines().filter(|l| l.starts_with("error:")).map(str::to_string).collect();
    assert_eq!(errors.len(), 1, "{}", text(&viewer));
    assert!(errors[0].contains("forbidden") && errors[0].contains("patch"), "{}", text(&viewer));
    assert_eq!(versions(&client).await, before, "a denied identity writes nothing");
}

/// A VirtualService with fault injection, which Gateway API cannot express.
fn faulty_virtual_service() -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "details", "namespace": "bookinfo"},
        "spec": {"hosts": ["details"], "http": [{"fault": {"abort": {"httpStatus": 500, "percentage": {"value": 1}}},
            "route": [{"destination": {"host": "details"}}]}]}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_feature_refuses_step_5_until_accepted_by_id_and_the_journal_records_it() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let virtual_services = api(&client, WRITTEN[3], "bookinfo");
    virtual_services.create(&PostParams::default(), &faulty_virtual_service()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let before = settled_versions(&client).await;

    let id = "unsupported:VirtualService/bookinfo/details:spec.http[0].fault";
    let refused = waypoint(&kubeconfig, state.path(), &["bookinfo", "--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(stderr(&refused).contains(id) && stderr(&refused).contains("--accept"), "{}", text(&refused));
    assert_eq!(versions(&client).await, before, "a refused conversion writes nothing");
    assert!(journal(state.path()).is_empty());

    let accepted = waypoint(&kubeconfig, state.path(), &["bookinfo", "--yes", "--accept", id]);
    assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "5"], Some(&kubeconfig));
    assert_eq!(code, Some(0), "{report:#}");
    let entries = journal(state.path());
    assert!(!entries.is_empty());
    let recorded = |entry: &Value| entry["accepted"].as_array().is_some_and(|ids| ids.iter().any(|a| a == id));
    assert!(entries.iter().filter(|e| e["state"] == "started").all(recorded), "{entries:#?}");
    // The VirtualService that was not converted whole is not a replaced object: kept.
    assert!(virtual_services.get_opt("details").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waypoint_survives_throttling_and_server_errors_and_stops_at_a_conflict() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let proxy = cluster.plane().fault_proxy().await.unwrap();
    let patch = http::Method::PATCH;
    proxy.inject(Fault::new(Action::throttle(1), r"/gateways/waypoint\?").unwrap().method(patch.clone()));
    proxy.inject(Fault::new(Action::status(500), r"/httproutes/reviews\?").unwrap().method(patch.clone()).times(2));
    proxy.inject(
        Fault::new(Action::Drop, r"/authorizationpolicies/reviews-viewer-waypoint\?").unwrap().method(patch.clone()),
    );
    proxy.inject(
        Fault::new(Action::status(409), r"/authorizationpolicies/ratings-ztunnel-protection\?").unwrap().method(patch),
    );
    let state = tempfile::tempdir().unwrap();
    let args = ["bookinfo", "--yes", "--until", "policies-migrated"];
    let stopped = waypoint(proxy.kubeconfig(), state.path(), &args);
    assert_eq!(stopped.status.code(), Some(2), "a conflict is not retried: {}", text(&stopped));
    assert!(stderr(&stopped).contains("re-plan"), "{}", text(&stopped));
    let faulted: Vec<_> = proxy.requests().into_iter().filter(|r| r.fault.is_some()).collect();
    assert_eq!(faulted.len(), 5, "every injected fault was met: {faulted:#?}");

    let rerun = waypoint(proxy.kubeconfig(), state.path(), &args);
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "5"], Some(cluster.plane().kubeconfig()));
    assert_eq!(code, Some(0), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_step_5_resumes_without_writing_anything_twice() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let proxy = cluster.plane().fault_proxy().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    // One write of Step 5 hangs, so the run is killed in the middle of the step. (Rules match
    // the path with its query: a server-side apply ends its name with `?fieldManager=`.)
    let hung = r"/authorizationpolicies/details-ztunnel-protection\?";
    proxy.inject(Fault::new(Action::Delay(Duration::from_secs(600)), hung).unwrap().method(http::Method::PATCH));
    let state = tempfile::tempdir().unwrap();
    let args = ["bookinfo", "--yes", "--until", "policies-migrated"];

    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("oc-ambient-waypoint"));
    command.arg("--kubeconfig").arg(proxy.kubeconfig()).arg("--state-dir").arg(state.path()).args(args);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let action = "step5:apply:AuthorizationPolicy/bookinfo/details-ztunnel-protection";
    eventually("Step 5 reaches the hung write", Duration::from_secs(180), || async {
        journal(state.path()).iter().any(|e| e["action"] == action && e["state"] == "started").then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let before_kill = journal(state.path());
    let done: Vec<&str> =
        before_kill.iter().filter(|e| e["state"] == "done").filter_map(|e| e["action"].as_str()).collect();
    assert!(done.iter().any(|id| id.starts_with("step5:")), "some of Step 5 was done: {done:?}");
    assert!(!done.contains(&action), "killed in the middle of Step 5, at the hung write");

    let resumed = waypoint(&kubeconfig, state.path(), &args);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let (report, code) = run_check(&["-n", "bookinfo", "--step", "5"], Some(&kubeconfig));
    assert_eq!(code, Some(0), "{report:#}");
    let after_kill = &journal(state.path())[before_kill.len()..];
    let again: Vec<&str> = after_kill
        .iter()
        .filter(|e| e["state"] == "started")
        .filter_map(|e| e["action"].as_str())
        .filter(|id| done.contains(id))
        .collect();
    assert_eq!(again, Vec::<&str>::new(), "nothing done before the interruption is written again");
    assert!(after_kill.iter().any(|e| e["action"] == action && e["state"] == "done"), "the hung write is finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_place_is_a_no_op_and_a_hand_edit_is_reported_not_overwritten() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    let deployed = waypoint(&kubeconfig, state.path(), &["bookinfo", "--yes", "--until", "policies-migrated"]);
    assert_eq!(deployed.status.code(), Some(0), "{}", text(&deployed));

    let again = waypoint(&kubeconfig, state.path(), &["bookinfo", "--yes", "--step", "4", "-o", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let plan: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(plan["actions"], json!([]), "the waypoint is in place: {plan:#}");

    let routes = api(&client, WRITTEN[1], "bookinfo");
    let edit = json!({"spec": {"rules": [{"backendRefs": [{"name": "reviews-v3", "port": 9080}]}]}});
    routes.patch("reviews", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    let edited = routes.get("reviews").await.unwrap().metadata.resource_version;
    let rerun = waypoint(&kubeconfig, state.path(), &["bookinfo", "--yes", "-o", "json"]);
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    let plan: Value = serde_json::from_slice(&rerun.stdout).unwrap();
    let ids: Vec<&str> = plan["actions"].as_array().unwrap().iter().filter_map(|a| a["id"].as_str()).collect();
    assert!(!ids.contains(&"step5:apply:HTTPRoute/bookinfo/reviews"), "{ids:?}");
    let reported =
        plan["stops"].as_array().unwrap().iter().filter_map(|stop| stop["reason"].as_str()).any(|reason| {
            reason.starts_with("HTTPRoute bookinfo/reviews differs") && reason.contains("not overwritten")
        });
    assert!(reported, "{plan:#}");
    // Asked for alone, the step is refused with the same report.
    let step5 = waypoint(&kubeconfig, state.path(), &["bookinfo", "--yes", "--step", "5"]);
    assert_eq!(step5.status.code(), Some(1), "{}", text(&step5));
    assert!(stderr(&step5).contains("HTTPRoute bookinfo/reviews differs"), "{}", text(&step5));
    assert_eq!(routes.get("reviews").await.unwrap().metadata.resource_version, edited, "the edit is kept");
}
