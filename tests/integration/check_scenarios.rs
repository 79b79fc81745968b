//! `oc-ambient-check` against the simulated OpenShift Service Mesh scenarios: the guide's
//! starting point, every variant's finding, live and offline agreement, and each step's
//! checkpoint as the migration is walked by hand through the API.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use oc_ambient_simulator::SimulatedCluster;
use serde_json::{Value, json};

use crate::check_live::{comparable, dump, run_check};

async fn start(scenario: &str) -> SimulatedCluster {
    SimulatedCluster::start(scenario).await.unwrap_or_else(|err| panic!("scenario {scenario}: {err}"))
}

fn findings<'a>(report: &'a Value, id: &str) -> Vec<&'a str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .filter_map(|f| f["severity"].as_str())
        .collect()
}

/// Live report, then the same on a dump of the cluster written through the API; on that dump the
/// check and the translator must agree (issue 9, acceptance 2).
async fn live_and_offline(cluster: &SimulatedCluster, args: &[&str]) -> (Value, Option<i32>) {
    let (live, code) = run_check(args, Some(cluster.plane().kubeconfig()));
    let dir = tempfile::tempdir().unwrap();
    dump(&cluster.client().await.unwrap(), dir.path()).await;
    let snapshot =
        oc_ambient_common::input::read_snapshot(&[dir.path().to_path_buf()], &Default::default(), Default::default())
            .unwrap();
    let agreement = crate::agreement::between_check_and_convert(&snapshot);
    assert!(agreement.namespaces > 0, "the dump holds namespaces");
    assert!(agreement.disagreements.is_empty(), "{:#?}", agreement.disagreements);
    let mut offline_args = args.to_vec();
    offline_args.extend(["--from-dir", dir.path().to_str().unwrap()]);
    let (offline, offline_code) = run_check(&offline_args, None);
    assert_eq!(comparable(&live), comparable(&offline), "live and offline disagree");
    assert_eq!(code, offline_code);
    (live, code)
}

/// `convert` without files reads the live cluster, and converts it as it converts a dump of it.
fn convert_live_equals_convert_of_a_dump(cluster: &SimulatedCluster, dump_dir: &std::path::Path) {
    let run = |extra: &[&str]| {
        let output = crate::support::plugin("oc-ambient-waypoint")
            .args(["convert", "-n", "bookinfo", "-o", "json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.code().is_some_and(|code| code < 2), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let live = run(&["--kubeconfig", cluster.plane().kubeconfig().to_str().unwrap()]);
    let offline = run(&["--from-dir", dump_dir.to_str().unwrap()]);
    assert!(live["items"].as_array().is_some_and(|items| !items.is_empty()), "{live:#}");
    assert_eq!(live, offline, "convert live and convert of a dump differ");
}

#[tokio::test]
async fn bookinfo_sidecar_is_ready_in_phase_sidecar_with_its_conversion_work() {
    let cluster = start("bookinfo-sidecar").await;
    let dir = tempfile::tempdir().unwrap();
    dump(&cluster.client().await.unwrap(), dir.path()).await;
    convert_live_equals_convert_of_a_dump(&cluster, dir.path());
    let (report, code) = live_and_offline(&cluster, &[]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ready"], true);
    let bookinfo =
        report["namespaces"].as_array().unwrap().iter().find(|ns| ns["name"] == "bookinfo").expect("bookinfo");
    assert_eq!(bookinfo["phase"], "sidecar");
    assert_eq!(bookinfo["waypointNeeded"], true);
    let reasons: Vec<&str> = bookinfo["waypointReasons"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(reasons.iter().any(|r| r.contains("VirtualService bookinfo/reviews")), "{reasons:?}");
    assert!(reasons.iter().filter(|r| r.contains("AuthorizationPolicy")).count() >= 4, "{reasons:?}");
    assert_eq!(report["cluster"]["openshift"].as_str().map(|v| v.starts_with("4.19")), Some(true));
    assert_eq!(report["cluster"]["istioProfile"], "default");
    assert!(!findings(&report, "virtualservice-conversion").is_empty());
    assert!(findings(&report, "destinationrule-subsets").len() >= 4, "one per DestinationRule with subsets");
    assert!(findings(&report, "authz-needs-waypoint").len() >= 4, "one per L7 policy");
    assert!(findings(&report, "l7-allow-deny-all").iter().all(|s| *s == "warn"));
}

#[tokio::test]
async fn every_scenario_variant_produces_its_finding_live_and_offline() {
    let expectations: &[(&str, &[(&str, &str)])] = &[
        ("blocker-workload-entry", &[("vm-workloads", "fail")]),
        ("blocker-peer-authentication-disable", &[("peerauthentication-disable", "fail")]),
        ("blocker-remote-secret", &[("multicluster", "fail")]),
        ("blocker-spiffe-csi", &[("spire", "fail")]),
        ("openshift-4.18", &[("openshift-version", "fail")]),
        ("ossm-3.1", &[("ossm-operator-version", "fail"), ("istio-version", "fail")]),
        ("network-not-ovn", &[("cni-type", "fail")]),
        ("routing-via-host-off", &[("ovn-routing-via-host", "fail")]),
        ("gateway-api-missing", &[("gateway-api-crds", "fail")]),
        ("envoyfilter-and-sidecar", &[("envoyfilter", "warn"), ("sidecar-resource", "warn")]),
        ("half-migrated-wrong-order", &[("sequence-sidecars-removed-before-waypoint", "fail")]),
    ];
    for (scenario, expected) in expectations {
        let cluster = start(scenario).await;
        let (report, code) = live_and_offline(&cluster, &[]).await;
        for (id, severity) in *expected {
            assert_eq!(findings(&report, id), vec![*severity], "{scenario}: {id}\n{report:#}");
        }
        let fails = expected.iter().any(|(_, severity)| *severity == "fail");
        assert_eq!(code, Some(if fails { 1 } else { 0 }), "{scenario}");
        if *scenario == "half-migrated-wrong-order" {
            let bookinfo = report["namespaces"].as_array().unwrap().iter().find(|ns| ns["name"] == "bookinfo").unwrap();
            assert_eq!(bookinfo["phase"], "inconsistent");
        }
    }
}

fn dynamic(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Runs `--step N` until it reports `ready` (the simulator needs a moment to follow), or panics.
async fn step_passes(cluster: &SimulatedCluster, step: u8) {
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let mut last = Value::Null;
    for _ in 0..120 {
        let (report, code) = run_check(&["-n", "bookinfo", "--step", &step.to_string()], Some(&kubeconfig));
        if code == Some(0) {
            return;
        }
        last = report;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("step {step} never passed: {last:#}");
}

fn step_fails(cluster: &SimulatedCluster, step: u8) {
    let (report, code) =
        run_check(&["-n", "bookinfo", "--step", &step.to_string()], Some(cluster.plane().kubeconfig()));
    assert_eq!(code, Some(1), "step {step} must fail before its work is done: {report:#}");
}

async fn label_namespace(client: &kube::Client, labels: Value) {
    let patch = json!({"metadata": {"labels": labels}});
    Api::<Namespace>::all(client.clone())
        .patch("bookinfo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn restart_deployments(client: &kube::Client, stamp: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bookinfo");
    let patch =
        json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}});
    for deployment in deployments.list(&ListParams::default()).await.unwrap() {
        let name = deployment.metadata.name.unwrap();
        if deployment.metadata.labels.unwrap_or_default().contains_key("gateway.networking.k8s.io/gateway-name") {
            continue;
        }
        deployments.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
}

/// The guide, walked by hand through the API: each step's checkpoint fails before the step's work
/// and passes after it, and the end state is a ready, fully ambient namespace.
#[tokio::test]
async fn each_step_checkpoint_follows_the_migration_walked_by_hand() {
    let cluster = start("bookinfo-sidecar").await;
    let client = cluster.client().await.unwrap();

    step_passes(&cluster, 1).await;

    step_fails(&cluster, 2);
    let istio = dynamic(&client, "sailoperator.io", "v1", "Istio", "istios", None);
    let ambient = json!({"spec": {"profile": "ambient", "values": {"pilot": {"trustedZtunnelNamespace": "ztunnel"}}}});
    istio.patch("default", &PatchParams::default(), &Patch::Merge(&ambient)).await.unwrap();
    let cni = dynamic(&client, "sailoperator.io", "v1", "IstioCNI", "istiocnis", None);
    cni.patch("default", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"profile": "ambient"}})))
        .await
        .unwrap();
    let ztunnel_ns = Namespace {
        metadata: kube::api::ObjectMeta { name: Some("ztunnel".into()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&Default::default(), &ztunnel_ns).await.unwrap();
    let ztunnel: DynamicObject = serde_json::from_value(json!({"apiVersion": "sailoperator.io/v1", "kind": "ZTunnel",
        "metadata": {"name": "default"}, "spec": {"namespace": "ztunnel", "profile": "ambient"}}))
    .unwrap();
    dynamic(&client, "sailoperator.io", "v1", "ZTunnel", "ztunnels", None)
        .create(&Default::default(), &ztunnel)
        .await
        .unwrap();
    step_passes(&cluster, 2).await;

    step_fails(&cluster, 3);
    restart_deployments(&client, "step-3").await;
    step_passes(&cluster, 3).await;

    step_fails(&cluster, 4);
    let waypoint: DynamicObject = serde_json::from_value(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "bookinfo", "labels": {"istio.io/waypoint-for": "service"}},
        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})).unwrap();
    dynamic(&client, "gateway.networking.k8s.io", "v1", "Gateway", "gateways", Some("bookinfo"))
        .create(&Default::default(), &waypoint)
        .await
        .unwrap();
    step_passes(&cluster, 4).await;

    step_fails(&cluster, 5);
    let dir = tempfile::tempdir().unwrap();
    dump(&client, dir.path()).await;
    let converted = crate::support::plugin("oc-ambient-waypoint")
        .args(["convert", "--from-dir", dir.path().to_str().unwrap(), "-o", "yaml"])
        .output()
        .unwrap();
    assert!(converted.status.success(), "convert: {}", String::from_utf8_lossy(&converted.stderr));
    let text = String::from_utf8_lossy(&converted.stdout).to_string();
    let objects = oc_ambient_common::snapshot::parse_documents(std::path::Path::new("convert"), &text).unwrap();
    oc_ambient_testenv::objects::apply_all(&client, &objects).await.unwrap();
    step_passes(&cluster, 5).await;

    step_fails(&cluster, 6);
    label_namespace(&client, json!({"istio.io/dataplane-mode": "ambient"})).await;
    step_passes(&cluster, 6).await;

    step_fails(&cluster, 7);
    label_namespace(&client, json!({"istio.io/use-waypoint": "waypoint"})).await;
    step_passes(&cluster, 7).await;

    step_fails(&cluster, 8);
    let (report, _) = run_check(&["-n", "bookinfo", "--step", "8"], Some(cluster.plane().kubeconfig()));
    let leftover =
        report["findings"].as_array().unwrap().iter().find(|f| f["id"] == "replaced-config-removed").unwrap().clone();
    let vs = dynamic(&client, "networking.istio.io", "v1", "VirtualService", "virtualservices", Some("bookinfo"));
    let dr = dynamic(&client, "networking.istio.io", "v1", "DestinationRule", "destinationrules", Some("bookinfo"));
    let ap =
        dynamic(&client, "security.istio.io", "v1", "AuthorizationPolicy", "authorizationpolicies", Some("bookinfo"));
    for item in leftover["message"].as_str().unwrap().trim_start_matches("still present: ").split(", ") {
        let (kind, rest) = item.split_once(' ').unwrap();
        let name = rest.rsplit('/').next().unwrap();
        let api = match kind {
            "VirtualService" => &vs,
            "DestinationRule" => &dr,
            _ => &ap,
        };
        api.delete(name, &Default::default()).await.unwrap();
    }
    step_passes(&cluster, 8).await;

    step_fails(&cluster, 9);
    let patch = json!({"metadata": {"labels": {"istio.io/rev": null, "istio-injection": null}}});
    Api::<Namespace>::all(client.clone())
        .patch("bookinfo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    restart_deployments(&client, "step-9").await;
    step_passes(&cluster, 9).await;

    // The protection generated at Step 5 exempts callers that had sidecars then; without them
    // they would skip the waypoint by addressing pods directly. The check says so, and narrowing
    // the protection to the waypoint and the ingress gateway fixes it.
    let (report, code) = run_check(&["-n", "bookinfo"], Some(cluster.plane().kubeconfig()));
    assert_eq!(code, Some(1));
    assert!(findings(&report, "bypass-protection-too-wide").iter().all(|s| *s == "fail"));
    assert!(!findings(&report, "bypass-protection-too-wide").is_empty(), "{report:#}");
    for policy in ap.list(&ListParams::default().labels("app.kubernetes.io/managed-by=oc-ambient")).await.unwrap() {
        let mut rules = policy.data["spec"]["rules"].clone();
        let Some(first) = rules.pointer_mut("/0/from/0/source/notPrincipals").and_then(Value::as_array_mut) else {
            continue;
        };
        first.retain(|principal| {
            principal.as_str().is_some_and(|p| p.ends_with("/sa/waypoint") || p.ends_with("/sa/bookinfo-gateway-istio"))
        });
        let patch = json!({"spec": {"rules": rules}});
        ap.patch(&policy.metadata.name.unwrap(), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    let (report, code) = run_check(&["-n", "bookinfo"], Some(cluster.plane().kubeconfig()));
    assert_eq!(report["namespaces"][0]["phase"], "ambient", "{report:#}");
    assert_eq!(code, Some(0), "{report:#}");
}
