//! The mesh simulator against real control planes: each test starts its own (the scenarios write
//! cluster-scoped singletons), so there are few of these tests and each walks a whole story.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap fails the test, as allow-unwrap-in-tests intends"
)]

use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use oc_ambient_simulator::SimulatedCluster;
use oc_ambient_simulator::resources::api;
use serde_json::{Value, json};

use crate::support::{eventually, fixtures};

const SETTLE: Duration = Duration::from_secs(60);
const BOOKINFO_APPS: [&str; 4] = ["productpage", "details", "reviews", "ratings"];

async fn start(scenario: &str) -> SimulatedCluster {
    match SimulatedCluster::start(scenario).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("scenario {scenario} did not load: {err}"),
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> GroupVersionKind {
    GroupVersionKind::gvk(group, version, kind)
}

fn sail(kind: &str) -> GroupVersionKind {
    gvk("sailoperator.io", "v1", kind)
}

async fn get(client: &Client, gvk: &GroupVersionKind, namespace: Option<&str>, name: &str) -> DynamicObject {
    api(client, gvk, namespace).get(name).await.unwrap_or_else(|err| panic!("get {} {name}: {err}", gvk.kind))
}

fn condition_true(object: &DynamicObject, type_: &str) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == type_ && c["status"] == "True")
}

fn containers(pod: &Pod) -> Vec<String> {
    pod.spec.iter().flat_map(|spec| spec.containers.iter().map(|c| c.name.clone())).collect()
}

fn running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        && status
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|statuses| statuses.len() == containers(pod).len() && statuses.iter().all(|s| s.ready))
}

/// The parsed `PROXY_CONFIG` of a pod's `istio-proxy` container, if it has one.
fn proxy_config(pod: &Pod) -> Option<Value> {
    let proxy = pod.spec.as_ref()?.containers.iter().find(|c| c.name == "istio-proxy")?;
    let value = proxy.env.iter().flatten().find(|env| env.name == "PROXY_CONFIG")?.value.clone()?;
    Some(serde_json::from_str(&value).unwrap_or_else(|err| panic!("PROXY_CONFIG is not JSON ({err}): {value}")))
}

fn hbone(pod: &Pod) -> bool {
    proxy_config(pod).is_some_and(|config| config["proxyMetadata"]["ISTIO_META_ENABLE_HBONE"] == "true")
}

fn app(pod: &Pod) -> &str {
    pod.labels().get("app").map(String::as_str).unwrap_or_default()
}

/// The live (not terminating) pods of the bookinfo apps.
async fn app_pods(client: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bookinfo");
    let selector = format!("app in ({})", BOOKINFO_APPS.join(","));
    let listed = pods.list(&ListParams::default().labels(&selector)).await.unwrap().items;
    listed.into_iter().filter(|pod| pod.metadata.deletion_timestamp.is_none()).collect()
}

/// Restarts every Deployment of a namespace as `oc rollout restart` does.
async fn rollout_restart(client: &Client, namespace: &str, at: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}});
    for deployment in deployments.list(&ListParams::default()).await.expect("list deployments").items {
        deployments
            .patch(&deployment.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("restart a deployment");
    }
}

/// Waits until the six bookinfo app pods are Running and Ready and all satisfy `wanted`.
async fn bookinfo_pods_where(client: &Client, what: &str, wanted: impl Fn(&Pod) -> bool) -> Vec<Pod> {
    eventually(what, SETTLE, || async {
        let pods = app_pods(client).await;
        (pods.len() == 6 && pods.iter().all(|pod| running_and_ready(pod) && wanted(pod))).then_some(pods)
    })
    .await
}

/// The Deployment names of the upstream bookinfo manifest, sorted.
fn upstream_deployments() -> Vec<String> {
    let path = fixtures().join("samples/istio/samples/bookinfo/platform/kube/bookinfo.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut names: Vec<String> = serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|document| <Option<DynamicObject> as serde::Deserialize>::deserialize(document).ok().flatten())
        .filter(|object| object.types.as_ref().is_some_and(|types| types.kind == "Deployment"))
        .map(|object| object.name_any())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_sidecar_starts_where_the_guide_starts() {
    let started = Instant::now();
    let cluster = start("bookinfo-sidecar").await;
    // Printed outside the test harness's capture so every run shows it.
    let _ = writeln!(
        std::io::stderr(),
        "bookinfo-sidecar: control plane and scenario ready in {:.1?}, scenario loaded in {:.1?}",
        started.elapsed(),
        cluster.load_time()
    );
    let client = cluster.client().await.unwrap();

    let pods = app_pods(&client).await;
    let mut names: Vec<String> =
        pods.iter().map(|pod| pod.labels()["app"].clone() + "-" + &pod.labels()["version"]).collect();
    names.sort();
    assert_eq!(names, upstream_deployments(), "one pod per upstream bookinfo Deployment");
    for pod in &pods {
        assert!(running_and_ready(pod), "{} is not Running and Ready: {:?}", pod.name_any(), pod.status);
        assert_eq!(containers(pod), [app(pod), "istio-proxy"], "{}", pod.name_any());
        let validation =
            pod.spec.as_ref().unwrap().init_containers.iter().flatten().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(validation, ["istio-validation"]);
        assert!(proxy_config(pod).is_some() && !hbone(pod), "{} must not announce HBONE yet", pod.name_any());
        assert_eq!(
            pod.spec.as_ref().unwrap().service_account_name.as_deref(),
            Some(format!("bookinfo-{}", app(pod)).as_str())
        );
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let node_names: Vec<String> =
        nodes.list(&ListParams::default()).await.unwrap().items.iter().map(|n| n.name_any()).collect();
    assert_eq!(node_names, ["worker-0", "worker-1", "worker-2"]);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "bookinfo");
    let gateway = pods
        .list(&ListParams::default().labels("gateway.networking.k8s.io/gateway-name=bookinfo-gateway"))
        .await
        .unwrap()
        .items;
    assert_eq!(gateway.len(), 1);
    assert!(running_and_ready(&gateway[0]));
    assert_eq!(containers(&gateway[0]), ["istio-proxy"], "the gateway pod is a proxy, not a sidecar-injected app");
    assert!(!gateway[0].annotations().contains_key("sidecar.istio.io/status"));
    assert_eq!(gateway[0].spec.as_ref().unwrap().service_account_name.as_deref(), Some("bookinfo-gateway-istio"));
    let gtw =
        get(&client, &gvk("gateway.networking.k8s.io", "v1", "Gateway"), Some("bookinfo"), "bookinfo-gateway").await;
    assert!(condition_true(&gtw, "Programmed") && condition_true(&gtw, "Accepted"), "{:?}", gtw.data["status"]);
    assert_eq!(gtw.data["status"]["addresses"][0]["value"], "10.0.147.96");
    let route = get(&client, &gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"), Some("bookinfo"), "bookinfo").await;
    assert_eq!(route.data["status"]["parents"][0]["conditions"][0]["status"], "True");

    let istio = get(&client, &sail("Istio"), None, "default").await;
    assert_eq!(istio.data["status"]["state"], "Healthy");
    assert!(condition_true(&istio, "Ready"));
    assert!(istio.data["spec"]["version"].as_str().unwrap().starts_with("v1.27."));
    assert!(
        matches!(istio.data["spec"]["profile"].as_str(), None | Some("default")),
        "default profile: {:?}",
        istio.data["spec"]
    );
    assert_eq!(istio.data["status"]["revisions"], json!({"total": 1, "ready": 1, "inUse": 1}));
    assert_eq!(get(&client, &sail("IstioCNI"), None, "default").await.data["status"]["state"], "Healthy");

    let csv = get(
        &client,
        &gvk("operators.coreos.com", "v1alpha1", "ClusterServiceVersion"),
        Some("openshift-operators"),
        "servicemeshoperator3.v3.2.0",
    )
    .await;
    assert_eq!(
        (csv.data["spec"]["version"].as_str(), csv.data["status"]["phase"].as_str()),
        (Some("3.2.0"), Some("Succeeded"))
    );
    let version = get(&client, &gvk("config.openshift.io", "v1", "ClusterVersion"), None, "version").await;
    assert!(version.data["status"]["desired"]["version"].as_str().unwrap().starts_with("4.19."));
    let network = get(&client, &gvk("operator.openshift.io", "v1", "Network"), None, "cluster").await;
    assert_eq!(network.data["spec"]["defaultNetwork"]["type"], "OVNKubernetes");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert_eq!(
        namespaces.get("bookinfo").await.unwrap().labels().get("istio.io/rev").map(String::as_str),
        Some("default")
    );
    let count = |kind: &'static str, group: &'static str| {
        let client = client.clone();
        async move {
            let listed = api(&client, &gvk(group, "v1", kind), Some("bookinfo")).list(&ListParams::default()).await;
            listed.unwrap_or_else(|err| panic!("list {kind}: {err}")).items
        }
    };
    let policies = count("AuthorizationPolicy", "security.istio.io").await;
    let productpage = policies.iter().find(|p| p.name_any() == "productpage-viewer").expect("productpage policy");
    assert_eq!(
        productpage.data["spec"]["rules"][0]["from"][0]["source"]["principals"],
        json!(["cluster.local/ns/bookinfo/sa/bookinfo-gateway-istio"])
    );
    assert_eq!(policies.len(), 4);
    let subsets: Vec<usize> = count("DestinationRule", "networking.istio.io")
        .await
        .iter()
        .map(|d| d.data["spec"]["subsets"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(subsets.contains(&3), "reviews has v1/v2/v3 subsets: {subsets:?}");
    let services = count("VirtualService", "networking.istio.io").await;
    assert_eq!(services[0].data["spec"]["http"][0]["match"][0]["headers"]["end-user"]["exact"], "jason");
    let peer = count("PeerAuthentication", "security.istio.io").await;
    assert_eq!(peer[0].data["spec"]["mtls"]["mode"], "STRICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_follows_a_migration_walked_by_hand() {
    let cluster = start("bookinfo-sidecar").await;
    let client = cluster.client().await.unwrap();
    let sidecar_pods: Vec<String> = app_pods(&client).await.iter().map(|pod| pod.name_any()).collect();
    let namespaces: Api<Namespace> = Api::all(client.clone());

    // Step 2: ambient control plane, CNI and ztunnel.
    let istios = api(&client, &sail("Istio"), None);
    let profile = json!({"spec": {"profile": "ambient", "values": {"pilot": {"trustedZtunnelNamespace": "ztunnel"}}}});
    istios.patch("default", &PatchParams::default(), &Patch::Merge(&profile)).await.unwrap();
    api(&client, &sail("IstioCNI"), None)
        .patch("default", &PatchParams::default(), &Patch::Merge(json!({"spec": {"profile": "ambient"}})))
        .await
        .unwrap();
    let ztunnel_ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "ztunnel"}})).unwrap();
    namespaces.create(&PostParams::default(), &ztunnel_ns).await.unwrap();
    let ztunnel: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sailoperator.io/v1alpha1", "kind": "ZTunnel", "metadata": {"name": "default"},
        "spec": {"namespace": "ztunnel", "profile": "ambient"}}))
    .unwrap();
    api(&client, &gvk("sailoperator.io", "v1alpha1", "ZTunnel"), None)
        .create(&PostParams::default(), &ztunnel)
        .await
        .unwrap();
    let ztunnel_pods: Api<Pod> = Api::namespaced(client.clone(), "ztunnel");
    let nodes = eventually("a ready ztunnel pod on every node and ZTunnel Healthy", SETTLE, || async {
        let pods = ztunnel_pods.list(&ListParams::default()).await.ok()?.items;
        let mut nodes: Vec<String> =
            pods.iter().filter(|p| running_and_ready(p)).filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
        nodes.sort();
        let healthy =
            api(&client, &sail("ZTunnel"), None).get("default").await.ok()?.data["status"]["state"] == "Healthy";
        (healthy && pods.len() == 3).then_some(nodes)
    })
    .await;
    assert_eq!(nodes, ["worker-0", "worker-1", "worker-2"]);
    eventually("Istio Healthy with the ambient profile in its revision", SETTLE, || async {
        let istio = istios.get("default").await.ok()?;
        let revision = api(&client, &sail("IstioRevision"), None).get("default").await.ok()?;
        (istio.data["status"]["state"] == "Healthy"
            && istio.data["status"]["observedGeneration"] == json!(istio.metadata.generation)
            && revision.data["spec"]["values"]["profile"] == "ambient")
            .then_some(())
    })
    .await;
    let untouched = app_pods(&client).await;
    assert!(
        untouched.iter().all(|pod| sidecar_pods.contains(&pod.name_any()) && !hbone(pod)),
        "a profile change alone must not give running pods HBONE"
    );

    // Step 3: restart -> HBONE-capable sidecars.
    rollout_restart(&client, "bookinfo", "2026-01-01T00:00:00Z").await;
    let restarted = bookinfo_pods_where(&client, "restarted bookinfo pods with HBONE", |pod| {
        !sidecar_pods.contains(&pod.name_any()) && hbone(pod) && containers(pod).contains(&"istio-proxy".to_string())
    })
    .await;
    assert!(restarted.iter().all(|pod| !pod.annotations().contains_key("ambient.istio.io/redirection")));

    // Step 4: a waypoint.
    let waypoint: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "bookinfo", "labels": {"istio.io/waypoint-for": "service"}},
        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}))
    .unwrap();
    let gateways = api(&client, &gvk("gateway.networking.k8s.io", "v1", "Gateway"), Some("bookinfo"));
    gateways.create(&PostParams::default(), &waypoint).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bookinfo");
    eventually("the waypoint Deployment, a ready pod and Programmed", SETTLE, || async {
        let deployment = Api::<Deployment>::namespaced(client.clone(), "bookinfo").get_opt("waypoint").await.ok()??;
        let selector = ListParams::default().labels("gateway.networking.k8s.io/gateway-name=waypoint");
        let ready = pods.list(&selector).await.ok()?.items.iter().any(running_and_ready);
        let programmed = condition_true(&gateways.get("waypoint").await.ok()?, "Programmed");
        (ready && programmed && deployment.spec?.template.spec?.service_account_name.as_deref() == Some("waypoint"))
            .then_some(())
    })
    .await;

    // Step 5: istiod's ambient status on policies and on Services bound to the waypoint.
    let policies = api(&client, &gvk("security.istio.io", "v1", "AuthorizationPolicy"), Some("bookinfo"));
    let condition = |object: &DynamicObject, type_: &str| {
        object.data["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == type_).cloned()
    };
    let refused = eventually("the L7 ALLOW policy refused by ztunnel", SETTLE, || async {
        condition(&policies.get("productpage-viewer").await.ok()?, "ZtunnelAccepted")
    })
    .await;
    assert_eq!((refused["status"].as_str(), refused["reason"].as_str()), (Some("False"), Some("UnsupportedValue")));
    let targeted: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "reviews-waypoint", "namespace": "bookinfo"},
        "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}], "action": "ALLOW",
                 "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}))
    .unwrap();
    policies.create(&PostParams::default(), &targeted).await.unwrap();
    let unbound = eventually("the targetRefs policy not yet bound", SETTLE, || async {
        condition(&policies.get("reviews-waypoint").await.ok()?, "WaypointAccepted")
    })
    .await;
    assert_eq!(unbound["status"], "False", "{unbound}");
    let use_waypoint = json!({"metadata": {"labels": {"istio.io/use-waypoint": "waypoint"}}});
    namespaces.patch("bookinfo", &PatchParams::default(), &Patch::Merge(&use_waypoint)).await.unwrap();
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "bookinfo");
    eventually("reviews bound to the waypoint, and the targetRefs policy accepted", SETTLE, || async {
        let service = services.get("reviews").await.ok()?;
        let bound =
            service.status?.conditions?.iter().any(|c| c.type_ == "istio.io/WaypointBound" && c.status == "True");
        let accepted = condition(&policies.get("reviews-waypoint").await.ok()?, "WaypointAccepted")?;
        (bound && accepted["status"] == "True" && accepted["message"] == "bound to bookinfo/waypoint").then_some(())
    })
    .await;

    // Step 6: the namespace joins ambient; sidecar pods are left alone until they lose the sidecar.
    let ambient = json!({"metadata": {"labels": {"istio.io/dataplane-mode": "ambient"}}});
    namespaces.patch("bookinfo", &PatchParams::default(), &Patch::Merge(&ambient)).await.unwrap();
    let probe: Pod = serde_json::from_value(
        json!({"metadata": {"name": "no-sidecar", "labels": {"sidecar.istio.io/inject": "false"}},
        "spec": {"containers": [{"name": "app", "image": "app"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &probe).await.unwrap();
    eventually("the sidecar-free pod redirected", SETTLE, || async {
        let pod = pods.get("no-sidecar").await.ok()?;
        (pod.annotations().get("ambient.istio.io/redirection").map(String::as_str) == Some("enabled")).then_some(())
    })
    .await;
    assert!(
        app_pods(&client).await.iter().all(|pod| !pod.annotations().contains_key("ambient.istio.io/redirection")),
        "sidecar pods are not redirected"
    );

    namespaces
        .patch(
            "bookinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"istio.io/rev": null}}})),
        )
        .await
        .unwrap();
    rollout_restart(&client, "bookinfo", "2026-01-01T00:10:00Z").await;
    bookinfo_pods_where(&client, "bookinfo pods without sidecars, redirected by istio-cni", |pod| {
        containers(pod) == [app(pod)]
            && pod.annotations().get("ambient.istio.io/redirection").map(String::as_str) == Some("enabled")
    })
    .await;
    let waypoint_pods = pods
        .list(&ListParams::default().labels("gateway.networking.k8s.io/gateway-name=waypoint"))
        .await
        .unwrap()
        .items;
    assert!(
        waypoint_pods.iter().all(|pod| !pod.annotations().contains_key("ambient.istio.io/redirection")),
        "a waypoint is not redirected"
    );

    // Leaving ambient removes the redirection again.
    namespaces
        .patch(
            "bookinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"istio.io/dataplane-mode": null}}})),
        )
        .await
        .unwrap();
    bookinfo_pods_where(&client, "bookinfo pods no longer redirected", |pod| {
        !pod.annotations().contains_key("ambient.istio.io/redirection")
    })
    .await;

    // A version change reaches the revision and istiod's rollout, and the status follows.
    let upgrade = json!({"spec": {"version": "v1.27.9"}});
    istios.patch("default", &PatchParams::default(), &Patch::Merge(&upgrade)).await.unwrap();
    let istiod: Api<Deployment> = Api::namespaced(client.clone(), "istio-system");
    eventually("istiod rolled out at v1.27.9 and Istio Healthy at the new generation", SETTLE, || async {
        let istio = istios.get("default").await.ok()?;
        let revision = api(&client, &sail("IstioRevision"), None).get("default").await.ok()?;
        let image = istiod.get("istiod").await.ok()?.spec?.template.spec?.containers[0].image.clone()?;
        (revision.data["spec"]["version"] == "v1.27.9"
            && image.ends_with(":1.27.9")
            && istio.data["status"]["state"] == "Healthy"
            && istio.data["status"]["observedGeneration"] == json!(istio.metadata.generation))
        .then_some(())
    })
    .await;

    // A component made unhealthy through the fault switch, then healed.
    let ztunnels = api(&client, &sail("ZTunnel"), None);
    let ztunnel_state = || async { ztunnels.get("default").await.ok().map(|z| z.data["status"]["state"].clone()) };
    let fault = json!({"metadata": {"annotations": {"simulator.oc-ambient.io/fault": "not-ready"}}});
    ztunnels.patch("default", &PatchParams::default(), &Patch::Merge(&fault)).await.unwrap();
    eventually("ZTunnel NotReady", SETTLE, || async { (ztunnel_state().await? == "NotReady").then_some(()) }).await;
    let healed = json!({"metadata": {"annotations": {"simulator.oc-ambient.io/fault": null}}});
    ztunnels.patch("default", &PatchParams::default(), &Patch::Merge(&healed)).await.unwrap();
    eventually("ZTunnel Healthy again", SETTLE, || async { (ztunnel_state().await? == "Healthy").then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injector_is_a_real_webhook_with_istiods_failure_policy() {
    // One injected namespace (mesh-0000, istio.io/rev=default) and a running control plane.
    let mut cluster = start("large:1x1x1").await;
    let client = cluster.client().await.unwrap();
    let plain = cluster.plane().namespace(&client, "plain").await.unwrap();
    // Opt-outs: Opt::Annotation is seen only by the webhook, Opt::Label already by its objectSelector.
    #[derive(PartialEq)]
    enum Opt {
        In,
        OutByAnnotation,
        OutByLabel,
    }
    let pod = |name: &str, opt: Opt| -> Pod {
        let opt_out = json!({"sidecar.istio.io/inject": "false"});
        let annotations = if opt == Opt::OutByAnnotation { opt_out.clone() } else { json!({}) };
        let labels = if opt == Opt::OutByLabel { opt_out } else { json!({}) };
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "app"}]}}))
        .unwrap()
    };
    let injected: Api<Pod> = Api::namespaced(client.clone(), "mesh-0000");
    let created = injected.create(&PostParams::default(), &pod("direct", Opt::In)).await.unwrap();
    assert_eq!(containers(&created), ["app", "istio-proxy"]);
    assert!(created.annotations().contains_key("sidecar.istio.io/status"));
    let opted_out = injected.create(&PostParams::default(), &pod("opted-out", Opt::OutByAnnotation)).await.unwrap();
    assert_eq!(containers(&opted_out), ["app"]);
    let elsewhere: Api<Pod> = Api::namespaced(client.clone(), &plain);
    assert_eq!(containers(&elsewhere.create(&PostParams::default(), &pod("plain", Opt::In)).await.unwrap()), ["app"]);
    eventually("the direct pod Running with both containers ready", SETTLE, || async {
        injected.get("direct").await.ok().filter(running_and_ready)
    })
    .await;

    // istiod's other selectors: the legacy namespace label, and pod labels in a plain namespace.
    let legacy = cluster.plane().namespace(&client, "legacy").await.unwrap();
    let label = json!({"metadata": {"labels": {"istio-injection": "enabled"}}});
    Api::<Namespace>::all(client.clone()).patch(&legacy, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    let legacy_pods: Api<Pod> = Api::namespaced(client.clone(), &legacy);
    let by_namespace = eventually("injection in an istio-injection=enabled namespace", SETTLE, || async {
        legacy_pods.create(&PostParams { dry_run: true, ..Default::default() }, &pod("legacy", Opt::In)).await.ok()
    })
    .await;
    assert_eq!(containers(&by_namespace), ["app", "istio-proxy"]);
    for (name, pod_label) in
        [("by-revision", json!({"istio.io/rev": "default"})), ("by-inject", json!({"sidecar.istio.io/inject": "true"}))]
    {
        let mut labelled = pod(name, Opt::In);
        labelled.metadata.labels = serde_json::from_value(pod_label).unwrap();
        let created = elsewhere.create(&PostParams::default(), &labelled).await.unwrap();
        assert_eq!(containers(&created), ["app", "istio-proxy"], "{name}");
    }

    cluster.simulator().stop();
    let err = injected
        .create(&PostParams::default(), &pod("while-down", Opt::In))
        .await
        .expect_err("failurePolicy Fail rejects the pod");
    match err {
        kube::Error::Api(status) => assert!(status.message.contains("sidecar-injector.istio.io"), "{status:?}"),
        other => panic!("unexpected error: {other}"),
    }
    // Outside the webhook's selectors pods are still admitted, as with istiod down.
    elsewhere.create(&PostParams::default(), &pod("plain-while-down", Opt::In)).await.unwrap();
    injected.create(&PostParams::default(), &pod("labelled-out-while-down", Opt::OutByLabel)).await.unwrap();
    let annotated =
        injected.create(&PostParams::default(), &pod("annotated-out-while-down", Opt::OutByAnnotation)).await;
    assert!(annotated.is_err(), "an annotation opt-out still needs the webhook, as with istiod");
}

/// What distinguishes each variant from bookinfo-sidecar, checked on the loaded cluster.
async fn check_variant(name: &str, client: &Client) {
    let list = |group: &'static str, version: &'static str, kind: &'static str, namespace: Option<&'static str>| {
        let client = client.clone();
        async move { api(&client, &gvk(group, version, kind), namespace).list(&ListParams::default()).await.unwrap().items }
    };
    let bookinfo: Api<Pod> = Api::namespaced(client.clone(), "bookinfo");
    match name {
        "bookinfo-sidecar" => assert!(list("networking.istio.io", "v1", "WorkloadEntry", None).await.is_empty()),
        "blocker-workload-entry" => {
            assert_eq!(list("networking.istio.io", "v1", "WorkloadEntry", Some("bookinfo")).await.len(), 1)
        }
        "blocker-peer-authentication-disable" => {
            let modes: Vec<Value> = list("security.istio.io", "v1", "PeerAuthentication", Some("bookinfo"))
                .await
                .iter()
                .map(|p| p.data["spec"]["mtls"]["mode"].clone())
                .collect();
            assert!(modes.contains(&json!("DISABLE")), "{modes:?}");
        }
        "blocker-remote-secret" => {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), "istio-system");
            assert_eq!(
                secrets.list(&ListParams::default().labels("istio/multiCluster=true")).await.unwrap().items.len(),
                1
            );
        }
        "blocker-spiffe-csi" => {
            let pods = bookinfo.list(&ListParams::default().labels("app=spire-client")).await.unwrap().items;
            let volume = pods[0]
                .spec
                .as_ref()
                .unwrap()
                .volumes
                .iter()
                .flatten()
                .find_map(|v| v.csi.as_ref())
                .map(|csi| csi.driver.clone());
            assert_eq!(volume.as_deref(), Some("csi.spiffe.io"));
            assert!(running_and_ready(&pods[0]));
        }
        "openshift-4.18" => {
            let version = get(client, &gvk("config.openshift.io", "v1", "ClusterVersion"), None, "version").await;
            assert!(version.data["status"]["desired"]["version"].as_str().unwrap().starts_with("4.18."));
            let node = Api::<Node>::all(client.clone()).get("worker-0").await.unwrap();
            assert_eq!(node.status.unwrap().node_info.unwrap().kubelet_version, "v1.31.5");
        }
        "ossm-3.1" => {
            let csvs =
                list("operators.coreos.com", "v1alpha1", "ClusterServiceVersion", Some("openshift-operators")).await;
            assert_eq!(csvs[0].data["spec"]["version"], "3.1.0");
            let istio = get(client, &sail("Istio"), None, "default").await;
            assert!(istio.data["spec"]["version"].as_str().unwrap().starts_with("v1.26."));
            let pods = app_pods(client).await;
            let image = pods[0]
                .spec
                .as_ref()
                .unwrap()
                .containers
                .iter()
                .find(|c| c.name == "istio-proxy")
                .and_then(|c| c.image.clone());
            assert!(image.unwrap_or_default().ends_with(":1.26.2"));
        }
        "network-not-ovn" => {
            let network = get(client, &gvk("operator.openshift.io", "v1", "Network"), None, "cluster").await;
            assert_ne!(network.data["spec"]["defaultNetwork"]["type"], "OVNKubernetes");
        }
        "routing-via-host-off" => {
            let network = get(client, &gvk("operator.openshift.io", "v1", "Network"), None, "cluster").await;
            assert_eq!(
                network.data["spec"]["defaultNetwork"]["ovnKubernetesConfig"]["gatewayConfig"]["routingViaHost"],
                false
            );
        }
        "gateway-api-missing" => {
            assert!(client.list_api_group_resources("gateway.networking.k8s.io/v1").await.is_err());
            assert_eq!(app_pods(client).await.len(), 6);
        }
        "envoyfilter-and-sidecar" => {
            assert_eq!(list("networking.istio.io", "v1alpha3", "EnvoyFilter", Some("bookinfo")).await.len(), 1);
            assert_eq!(list("networking.istio.io", "v1", "Sidecar", Some("bookinfo")).await.len(), 1);
        }
        "half-migrated-wrong-order" => {
            let namespace = Api::<Namespace>::all(client.clone()).get("bookinfo").await.unwrap();
            assert_eq!(namespace.labels().get("istio.io/dataplane-mode").map(String::as_str), Some("ambient"));
            assert!(!namespace.labels().contains_key("istio.io/rev"));
            assert!(
                list("gateway.networking.k8s.io", "v1", "Gateway", Some("bookinfo"))
                    .await
                    .iter()
                    .all(|g| g.data["spec"]["gatewayClassName"] != "istio-waypoint")
            );
            let pods = bookinfo_pods_where(client, "settled half-migrated pods", |_| true).await;
            for pod in pods {
                let sidecar = containers(&pod).contains(&"istio-proxy".to_string());
                assert_eq!(sidecar, matches!(app(&pod), "productpage" | "details"), "{}", pod.name_any());
            }
            eventually("the sidecar-free pods redirected", SETTLE, || async {
                let pods = app_pods(client).await;
                pods.iter()
                    .filter(|p| matches!(app(p), "reviews" | "ratings"))
                    .all(|p| p.annotations().contains_key("ambient.istio.io/redirection"))
                    .then_some(())
            })
            .await;
        }
        "large" => {
            let pods = Api::<Pod>::all(client.clone())
                .list(&ListParams::default().labels("simulator.oc-ambient.io/scenario=large"))
                .await
                .unwrap()
                .items;
            assert_eq!(pods.len(), 20 * 5 * 2);
            assert!(pods.iter().all(|pod| running_and_ready(pod) && containers(pod) == ["app", "istio-proxy"]));
        }
        "ring" => {
            for namespace in ["ring-0", "ring-1"] {
                let pods =
                    Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default()).await.unwrap();
                assert_eq!(pods.items.len(), 2, "{namespace}: front and back");
                assert!(
                    pods.items
                        .iter()
                        .all(|pod| running_and_ready(pod) && containers(pod).contains(&"istio-proxy".to_string()))
                );
            }
            let policy = list("security.istio.io", "v1", "AuthorizationPolicy", Some("ring-0")).await;
            let back = policy.iter().find(|p| p.metadata.name.as_deref() == Some("back")).unwrap();
            assert_eq!(
                back.data["spec"]["rules"][0]["from"][0]["source"]["principals"][1], "cluster.local/ns/ring-1/sa/front",
                "the previous namespace calls in"
            );
        }
        other => panic!("no check for scenario {other}: add one"),
    }
    if name != "large" && name != "ring" {
        let pods = app_pods(client).await;
        assert_eq!(pods.len(), 6, "{name}: bookinfo runs");
        assert!(pods.iter().all(running_and_ready), "{name}: bookinfo pods ready");
    }
    let istio = get(client, &sail("Istio"), None, "default").await;
    assert_eq!(istio.data["status"]["state"], "Healthy", "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_loads_with_what_makes_it_different() {
    let names = oc_ambient_simulator::names();
    assert!(names.len() >= 13, "{names:?}");
    // Two at a time: each needs its own control plane, and the machine has two cores.
    let results: Vec<(String, Duration)> = futures::stream::iter(names)
        .map(|name| async move {
            let cluster = start(name).await;
            let client = cluster.client().await.unwrap();
            check_variant(name, &client).await;
            (name.to_string(), cluster.load_time())
        })
        .buffer_unordered(2)
        .collect()
        .await;
    for (name, took) in results {
        let _ = writeln!(std::io::stderr(), "scenario {name}: loaded in {took:.1?}");
    }
}
