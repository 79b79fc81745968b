//! Named starting points for tests and demos, each loaded onto a fresh control plane with the
//! simulator running, and waited for until the cluster looks settled (pods Running, CRs Healthy).
//!
//! `bookinfo-sidecar` is the migration guide's starting point, built from the upstream manifests
//! in the shared fixtures (never hand-copied); the variants add one feature the checks must find.
//! `large` generates a mesh of a given size for benchmarks: `large` or `large:NSxSVCxPODS`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use oc_ambient_testenv::CrdSet;
use serde_json::{Value, json};

use crate::Error;
use crate::cni::REDIRECTION_ANNOTATION;
use crate::gateway::{INGRESS_CLASS, generated_name};
use crate::injector::PROXY_CONTAINER;
use crate::platform::{self, Platform};
use crate::resources::{api, apply, create_or_apply, from_json, gvk_of};
use crate::sail::Component;

/// The namespace of the bookinfo application.
pub const BOOKINFO: &str = "bookinfo";
/// The label every object of the `large` scenario carries.
pub const LARGE_LABEL: &str = "simulator.oc-ambient.io/scenario";
const CONCURRENCY: usize = 32;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The name and purpose of every fixed scenario, plus `large`.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("bookinfo-sidecar", "the migration guide's starting point: OpenShift 4.19, OSSM 3.2.0, bookinfo with sidecars"),
    ("blocker-workload-entry", "bookinfo-sidecar plus a WorkloadEntry (a VM workload)"),
    ("blocker-peer-authentication-disable", "bookinfo-sidecar plus a PeerAuthentication with mode DISABLE"),
    ("blocker-remote-secret", "bookinfo-sidecar plus a multicluster remote secret"),
    ("blocker-spiffe-csi", "bookinfo-sidecar plus a pod with a SPIFFE CSI volume (SPIRE identity)"),
    ("openshift-4.18", "bookinfo-sidecar on OpenShift 4.18"),
    ("ossm-3.1", "bookinfo-sidecar on OSSM 3.1.0 with Istio 1.26"),
    ("network-not-ovn", "bookinfo-sidecar on a cluster whose network is not OVN-Kubernetes"),
    ("routing-via-host-off", "bookinfo-sidecar with OVN-Kubernetes routingViaHost false"),
    ("gateway-api-missing", "bookinfo-sidecar without the Gateway API CRDs (and so without the gateway)"),
    ("envoyfilter-and-sidecar", "bookinfo-sidecar plus an EnvoyFilter and a Sidecar resource"),
    (
        "half-migrated-wrong-order",
        "ambient control plane; bookinfo labelled ambient with sidecars removed from some workloads before any waypoint exists",
    ),
    ("large", "a generated mesh for benchmarks: large or large:NAMESPACESxSERVICESxPODS"),
    (
        "ring",
        "ring:N namespaces (default 2) of Deployments with sidecars, each calling the next: cross-namespace L7 policies",
    ),
];

/// The names of the scenarios ([`SCENARIOS`]).
pub fn names() -> Vec<&'static str> {
    SCENARIOS.iter().map(|(name, _)| *name).collect()
}

/// The size of the `large` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub namespaces: usize,
    pub services: usize,
    pub pods: usize,
}

impl Default for Size {
    fn default() -> Self {
        Size { namespaces: 20, services: 5, pods: 2 }
    }
}

/// One thing a variant adds to, or changes in, bookinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    WorkloadEntry,
    PeerAuthenticationDisable,
    RemoteSecret,
    SpiffeCsiPod,
    EnvoyFilterAndSidecar,
    HalfMigrated,
}

/// What runs on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    Bookinfo { gateway: bool, extras: Vec<Extra> },
    Large(Size),
    Ring(usize),
}

/// A loadable scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub crds: CrdSet,
    pub platform: Platform,
    /// `spec.version` of the `Istio` and `IstioCNI` resources.
    pub istio_version: String,
    pub workload: Workload,
}

impl Scenario {
    /// The scenario called `name`; `large:NSxSVCxPODS` sets the size of `large`.
    pub fn named(name: &str) -> Result<Scenario, Error> {
        let bookinfo = |extras: Vec<Extra>| Workload::Bookinfo { gateway: true, extras };
        let mut scenario = Scenario {
            name: name.to_string(),
            crds: CrdSet::All,
            platform: Platform::default(),
            istio_version: "v1.27.3".into(),
            workload: bookinfo(vec![]),
        };
        match name {
            "bookinfo-sidecar" => {}
            "blocker-workload-entry" => scenario.workload = bookinfo(vec![Extra::WorkloadEntry]),
            "blocker-peer-authentication-disable" => {
                scenario.workload = bookinfo(vec![Extra::PeerAuthenticationDisable])
            }
            "blocker-remote-secret" => scenario.workload = bookinfo(vec![Extra::RemoteSecret]),
            "blocker-spiffe-csi" => scenario.workload = bookinfo(vec![Extra::SpiffeCsiPod]),
            "openshift-4.18" => scenario.platform.openshift_version = "4.18.22".into(),
            "ossm-3.1" => {
                scenario.platform.ossm_version = "3.1.0".into();
                scenario.istio_version = "v1.26.2".into();
            }
            "network-not-ovn" => scenario.platform.network_type = "OpenShiftSDN".into(),
            "routing-via-host-off" => scenario.platform.routing_via_host = false,
            "gateway-api-missing" => {
                scenario.crds = CrdSet::WithoutGatewayApi;
                scenario.workload = Workload::Bookinfo { gateway: false, extras: vec![] };
            }
            "envoyfilter-and-sidecar" => scenario.workload = bookinfo(vec![Extra::EnvoyFilterAndSidecar]),
            "half-migrated-wrong-order" => scenario.workload = bookinfo(vec![Extra::HalfMigrated]),
            _ if name == "ring" || name.starts_with("ring:") => {
                let count = name.strip_prefix("ring:").map_or(Some(RING_DEFAULT), |n| n.parse().ok());
                let count = count
                    .filter(|count| *count >= 2)
                    .ok_or_else(|| Error::Invalid(format!("{name}: expected ring or ring:N with N of at least 2")))?;
                scenario.workload = Workload::Ring(count);
            }
            _ => match name.strip_prefix("large") {
                Some("") => scenario.workload = Workload::Large(Size::default()),
                Some(size) => scenario.workload = Workload::Large(parse_size(size.trim_start_matches(':'))?),
                None => {
                    return Err(Error::Invalid(format!("unknown scenario {name:?}; known: {}", names().join(", "))));
                }
            },
        }
        Ok(scenario)
    }

    /// Loads the scenario through `client` (the simulator must be running) and waits until the
    /// cluster has settled.
    pub async fn load(&self, client: &Client) -> Result<(), Error> {
        platform::install(client, &self.platform).await?;
        let ambient =
            matches!(&self.workload, Workload::Bookinfo { extras, .. } if extras.contains(&Extra::HalfMigrated));
        self.install_control_plane(client, ambient).await?;
        match &self.workload {
            Workload::Bookinfo { gateway, extras } => load_bookinfo(client, *gateway, extras).await?,
            Workload::Large(size) => load_large(client, *size).await?,
            Workload::Ring(count) => load_ring(client, *count).await?,
        }
        tracing::info!("scenario {} loaded", self.name);
        Ok(())
    }

    async fn install_control_plane(&self, client: &Client, ambient: bool) -> Result<(), Error> {
        let mut namespaces = vec!["istio-system", "istio-cni"];
        if ambient {
            namespaces.push("ztunnel");
        }
        for name in namespaces {
            apply(client, &namespace(name, json!({}))?).await?;
        }
        let version = &self.istio_version;
        let mut istio = json!({
            "apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
            "spec": {"version": version, "namespace": "istio-system", "updateStrategy": {"type": "InPlace"}},
        });
        let mut cni = json!({"apiVersion": "sailoperator.io/v1", "kind": "IstioCNI", "metadata": {"name": "default"}, "spec": {"version": version, "namespace": "istio-cni"}});
        let mut components = vec![Component::Istio, Component::IstioCni];
        if ambient {
            istio["spec"]["profile"] = json!("ambient");
            istio["spec"]["values"] = json!({"pilot": {"trustedZtunnelNamespace": "ztunnel"}});
            cni["spec"]["profile"] = json!("ambient");
            let ztunnel = json!({"apiVersion": "sailoperator.io/v1", "kind": "ZTunnel", "metadata": {"name": "default"}, "spec": {"version": version, "namespace": "ztunnel"}});
            apply(client, &from_json("ztunnel", ztunnel)?).await?;
            components.push(Component::ZTunnel);
        }
        apply(client, &from_json("istio", istio)?).await?;
        apply(client, &from_json("istio cni", cni)?).await?;
        for component in components {
            let resources = api(client, &component.gvk(), None);
            wait_for(&format!("{} default Healthy", component.kind()), SETTLE_TIMEOUT, || async {
                Ok(resources
                    .get_opt("default")
                    .await?
                    .is_some_and(|object| object.data["status"]["state"] == "Healthy"))
            })
            .await?;
        }
        Ok(())
    }
}

fn parse_size(text: &str) -> Result<Size, Error> {
    let numbers: Vec<usize> =
        text.split('x').map(|part| part.parse().ok().filter(|n| *n > 0)).collect::<Option<_>>().unwrap_or_default();
    match numbers.as_slice() {
        [namespaces] => Ok(Size { namespaces: *namespaces, ..Size::default() }),
        [namespaces, services, pods] => Ok(Size { namespaces: *namespaces, services: *services, pods: *pods }),
        _ => Err(Error::Invalid(format!(
            "large:{text}: expected large:NAMESPACES or large:NAMESPACESxSERVICESxPODS with positive numbers"
        ))),
    }
}

/// Polls `probe` until it is true; fails naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, Error>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = probe().await;
        if matches!(last, Ok(true)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let detail = last.err().map(|err| format!(" (last error: {err})")).unwrap_or_default();
            return Err(Error::Timeout(format!("{what}{detail}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn namespace(name: &str, labels: Value) -> Result<DynamicObject, Error> {
    from_json(
        "namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
    )
}

/// Every document of a manifest in the fixtures, placed in `namespace`.
fn manifests(relative: &str, namespace: &str) -> Result<Vec<DynamicObject>, Error> {
    let path = oc_ambient_testenv::fixtures_dir().join(relative);
    parse_manifests(&path, namespace)
}

fn parse_manifests(path: &Path, namespace: &str) -> Result<Vec<DynamicObject>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| Error::Io { what: format!("read {}", path.display()), source })?;
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Option<DynamicObject> = serde::Deserialize::deserialize(document)
            .map_err(|err| Error::Invalid(format!("{}: {err}", path.display())))?;
        if let Some(mut object) = value {
            object.metadata.namespace = Some(namespace.to_string());
            objects.push(object);
        }
    }
    Ok(objects)
}

/// Creates (or applies) objects concurrently, retrying while the cluster catches up (a namespace's default
/// service account or a just-created namespace not there yet).
async fn apply_all(client: &Client, objects: Vec<DynamicObject>) -> Result<(), Error> {
    let results: Vec<Result<(), Error>> = futures::stream::iter(objects)
        .map(|object| async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match create_or_apply(client, &object).await {
                    Ok(_) => return Ok(()),
                    Err(Error::Kube(kube::Error::Api(status)))
                        if matches!(status.code, 403 | 404 | 409 | 500) && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(err) => {
                        return Err(Error::Invalid(format!(
                            "apply {} {}: {err}",
                            gvk_of(&object).map(|gvk| gvk.kind).unwrap_or_default(),
                            object.name_any()
                        )));
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Waits until a dry-run pod in `namespace` comes back injected: the API server then calls the
/// injector for this namespace (its webhook configuration is loaded with some delay).
async fn wait_for_injection(client: &Client, namespace: &str) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let probe: Pod = from_json(
        "probe pod",
        json!({"metadata": {"name": "injection-probe"}, "spec": {"containers": [{"name": "probe", "image": "probe"}]}}),
    )?;
    wait_for(&format!("sidecar injection in {namespace}"), SETTLE_TIMEOUT, || async {
        let created = pods.create(&PostParams { dry_run: true, ..Default::default() }, &probe).await?;
        Ok(created.spec.is_some_and(|spec| spec.containers.iter().any(|container| container.name == PROXY_CONTAINER)))
    })
    .await
}

/// Waits until every Deployment of `namespace` has rolled out and no pod is left terminating.
async fn wait_for_rollouts(client: &Client, namespace: &str) -> Result<(), Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    wait_for(&format!("the deployments of {namespace} rolled out"), SETTLE_TIMEOUT, || async {
        let listed = deployments.list(&ListParams::default()).await?.items;
        let mut wanted = 0;
        for deployment in &listed {
            let replicas = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
            let status = deployment.status.clone().unwrap_or_default();
            let done = status.observed_generation >= deployment.metadata.generation
                && status.updated_replicas == Some(replicas)
                && status.available_replicas == Some(replicas)
                && status.replicas == Some(replicas);
            if !done {
                return Ok(false);
            }
            wanted += replicas;
        }
        let running = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .count();
        Ok(!listed.is_empty() && usize::try_from(wanted).is_ok_and(|wanted| wanted == running))
    })
    .await
}

/// The service account of each bookinfo app, read from the Deployments of the manifests.
fn service_accounts(objects: &[DynamicObject]) -> BTreeMap<String, String> {
    objects
        .iter()
        .filter(|object| object.types.as_ref().is_some_and(|types| types.kind == "Deployment"))
        .filter_map(|deployment| {
            let template = &deployment.data["spec"]["template"];
            let app = template["metadata"]["labels"]["app"].as_str()?;
            let account = template["spec"]["serviceAccountName"].as_str()?;
            Some((app.to_string(), account.to_string()))
        })
        .collect()
}

/// The guide's selector-based policies: productpage from the ingress gateway (GET, POST),
/// details and reviews from productpage (GET), ratings from reviews (GET).
fn bookinfo_policies(accounts: &BTreeMap<String, String>) -> Result<Vec<DynamicObject>, Error> {
    let gateway_account = generated_name("bookinfo-gateway", INGRESS_CLASS);
    let principal = |account: &str| format!("cluster.local/ns/{BOOKINFO}/sa/{account}");
    let caller = |app: &str| {
        accounts
            .get(app)
            .map(|account| principal(account))
            .ok_or_else(|| Error::Invalid(format!("bookinfo has no {app} deployment")))
    };
    let rules = [
        ("productpage", principal(&gateway_account), vec!["GET", "POST"]),
        ("details", caller("productpage")?, vec!["GET"]),
        ("reviews", caller("productpage")?, vec!["GET"]),
        ("ratings", caller("reviews")?, vec!["GET"]),
    ];
    rules
        .into_iter()
        .map(|(app, from, methods)| {
            from_json("authorization policy", json!({
                "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": format!("{app}-viewer"), "namespace": BOOKINFO},
                "spec": {"selector": {"matchLabels": {"app": app}}, "action": "ALLOW",
                         "rules": [{"from": [{"source": {"principals": [from]}}], "to": [{"operation": {"methods": methods}}]}]},
            }))
        })
        .collect()
}

fn extra_objects(extra: Extra) -> Result<Vec<Value>, Error> {
    Ok(match extra {
        Extra::WorkloadEntry => vec![json!({
            "apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry", "metadata": {"name": "details-vm", "namespace": BOOKINFO},
            "spec": {"address": "192.168.100.10", "labels": {"app": "details", "version": "vm"}, "serviceAccount": "bookinfo-details"},
        })],
        Extra::PeerAuthenticationDisable => vec![json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "ratings-plaintext", "namespace": BOOKINFO},
            "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "mtls": {"mode": "DISABLE"}},
        })],
        Extra::RemoteSecret => vec![json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "istio-remote-secret-east", "namespace": "istio-system",
                         "labels": {"istio/multiCluster": "true"}, "annotations": {"networking.istio.io/cluster": "east"}},
            "stringData": {"east": "apiVersion: v1\nkind: Config\nclusters:\n- name: east\n  cluster:\n    server: https://api.east.example.com:6443\n"},
        })],
        Extra::SpiffeCsiPod => vec![json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spire-client", "namespace": BOOKINFO, "labels": {"app": "spire-client"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "spire-client"}}, "template": {
                "metadata": {"labels": {"app": "spire-client", "version": "v1"}},
                "spec": {"containers": [{"name": "client", "image": "registry.access.redhat.com/ubi9/ubi-minimal", "volumeMounts": [{"name": "spiffe-workload-api", "mountPath": "/spiffe-workload-api", "readOnly": true}]}],
                         "volumes": [{"name": "spiffe-workload-api", "csi": {"driver": "csi.spiffe.io", "readOnly": true}}]}}},
        })],
        Extra::EnvoyFilterAndSidecar => vec![
            json!({
                "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": {"name": "reviews-lua", "namespace": BOOKINFO},
                "spec": {"workloadSelector": {"labels": {"app": "reviews"}}, "configPatches": [{"applyTo": "HTTP_FILTER",
                    "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}}},
                    "patch": {"operation": "INSERT_BEFORE", "value": {"name": "envoy.lua", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua", "inlineCode": "function envoy_on_request(handle) end"}}}}]},
            }),
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "default", "namespace": BOOKINFO},
                "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]},
            }),
        ],
        Extra::HalfMigrated => vec![],
    })
}

async fn load_bookinfo(client: &Client, gateway: bool, extras: &[Extra]) -> Result<(), Error> {
    let half_migrated = extras.contains(&Extra::HalfMigrated);
    apply(client, &namespace(BOOKINFO, json!({"istio.io/rev": "default"}))?).await?;
    wait_for_injection(client, BOOKINFO).await?;
    let samples = "samples/istio/samples/bookinfo";
    let mut objects = manifests(&format!("{samples}/platform/kube/bookinfo.yaml"), BOOKINFO)?;
    objects.extend(manifests(&format!("{samples}/platform/kube/bookinfo-versions.yaml"), BOOKINFO)?);
    objects.extend(manifests(&format!("{samples}/networking/destination-rule-all.yaml"), BOOKINFO)?);
    objects.extend(manifests(&format!("{samples}/networking/virtual-service-reviews-test-v2.yaml"), BOOKINFO)?);
    if gateway {
        objects.extend(manifests(&format!("{samples}/gateway-api/bookinfo-gateway.yaml"), BOOKINFO)?);
    }
    let policies = bookinfo_policies(&service_accounts(&objects))?;
    objects.extend(policies);
    objects.push(from_json("peer authentication", json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": BOOKINFO},
        "spec": {"mtls": {"mode": "STRICT"}},
    }))?);
    for extra in extras {
        for value in extra_objects(*extra)? {
            objects.push(from_json("scenario extra", value)?);
        }
    }
    apply_all(client, objects).await?;
    wait_for_rollouts(client, BOOKINFO).await?;
    if gateway {
        let gateways = api(
            client,
            &kube::core::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
            Some(BOOKINFO),
        );
        wait_for("bookinfo-gateway Programmed", SETTLE_TIMEOUT, || async {
            let gateway = gateways.get("bookinfo-gateway").await?;
            Ok(gateway.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Programmed" && c["status"] == "True"))
        })
        .await?;
    }
    if half_migrated {
        migrate_in_the_wrong_order(client).await?;
    }
    Ok(())
}

/// Takes sidecars away from ratings and the reviews versions before any waypoint exists: the
/// namespace moves to ambient and only those deployments restart.
async fn migrate_in_the_wrong_order(client: &Client) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = json!({"metadata": {"labels": {"istio.io/rev": null, "istio.io/dataplane-mode": "ambient"}}});
    namespaces.patch(BOOKINFO, &PatchParams::default(), &Patch::Merge(labels)).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), BOOKINFO);
    let restarted = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": crate::kubelet::now()}}}}});
    for name in ["ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"] {
        deployments.patch(name, &PatchParams::default(), &Patch::Merge(&restarted)).await?;
    }
    wait_for_rollouts(client, BOOKINFO).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), BOOKINFO);
    wait_for("istio-cni redirecting the pods that lost their sidecars", SETTLE_TIMEOUT, || async {
        Ok(pods.list(&ListParams::default()).await?.items.iter().all(|pod| {
            let sidecar = pod.spec.iter().flat_map(|spec| &spec.containers).any(|c| c.name == PROXY_CONTAINER);
            sidecar || pod.annotations().get(REDIRECTION_ANNOTATION).is_some_and(|value| value == "enabled")
        }))
    })
    .await
}

fn large_namespace(index: usize) -> String {
    format!("mesh-{index:04}")
}

/// The objects of one namespace of the `large` scenario: per service a Service and its pods,
/// with a DestinationRule for every second service, a VirtualService for every third, and an
/// AuthorizationPolicy per service (L7 for every fourth).
fn large_namespace_objects(index: usize, size: Size) -> Result<Vec<DynamicObject>, Error> {
    let ns = large_namespace(index);
    let mut values = Vec::new();
    for service in 0..size.services {
        let app = format!("svc-{service}");
        let labels = json!({"app": app, "version": "v1", LARGE_LABEL: "large"});
        values.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080}]}}));
        for pod in 0..size.pods {
            values.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{app}-{pod}"), "namespace": ns, "labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1", "ports": [{"containerPort": 8080}]}]}}));
        }
        if service % 2 == 0 {
            values.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": app, "namespace": ns},
                "spec": {"host": app, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}));
        }
        if service % 3 == 0 {
            values.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": app, "namespace": ns},
                "spec": {"hosts": [app], "http": [{"route": [{"destination": {"host": app, "subset": "v1"}}], "timeout": "5s", "retries": {"attempts": 2}}]}}));
        }
        let mut rule = json!({"from": [{"source": {"namespaces": [ns]}}]});
        if service % 4 == 0 {
            rule["to"] = json!([{"operation": {"methods": ["GET"]}}]);
        }
        values.push(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": app, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": app}}, "action": "ALLOW", "rules": [rule]}}));
    }
    values.into_iter().map(|value| from_json("large scenario object", value)).collect()
}

async fn load_large(client: &Client, size: Size) -> Result<(), Error> {
    let namespaces: Vec<DynamicObject> = (0..size.namespaces)
        .map(|index| namespace(&large_namespace(index), json!({"istio.io/rev": "default", LARGE_LABEL: "large"})))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    apply_all(client, namespaces).await?;
    wait_for_injection(client, &large_namespace(0)).await?;
    tracing::info!("large: {} namespaces in {:.1?}", size.namespaces, started.elapsed());
    let mut objects = Vec::new();
    for index in 0..size.namespaces {
        objects.extend(large_namespace_objects(index, size)?);
    }
    let count = objects.len();
    apply_all(client, objects).await?;
    tracing::info!("large: {count} objects applied after {:.1?}", started.elapsed());
    let expected = size.namespaces * size.services * size.pods;
    let pods: Api<Pod> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{LARGE_LABEL}=large"));
    wait_for(&format!("{expected} pods of the large scenario Running"), SETTLE_TIMEOUT * 5, || async {
        // Counting names first keeps the many polls of a large mesh cheap.
        if pods.list_metadata(&selector).await?.items.len() < expected {
            return Ok(false);
        }
        let listed = pods.list(&selector).await?;
        Ok(listed
            .items
            .iter()
            .filter(|pod| pod.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Running"))
            .count()
            == expected)
    })
    .await?;
    tracing::info!("large: {expected} pods Running after {:.1?}", started.elapsed());
    Ok(())
}

/// The namespaces of `ring` without a count.
const RING_DEFAULT: usize = 2;

/// The name of the `index`-th namespace of the `ring` scenario.
pub fn ring_namespace(index: usize) -> String {
    format!("ring-{index}")
}

/// One namespace of the `ring` scenario: Deployments `front` and `back` (own service accounts,
/// sidecars injected) behind Services of the same names; `back` admits GET and POST from its own
/// namespace's `front` and from the previous namespace's (L7: a waypoint is needed), `front`
/// admits its own namespace and the next one's (L4); a VirtualService sends `x-canary: yes` to
/// `back`'s subset v1. So every namespace serves, and calls into, its neighbours.
fn ring_namespace_objects(index: usize, count: usize) -> Result<Vec<DynamicObject>, Error> {
    let ns = ring_namespace(index);
    let previous = ring_namespace((index + count - 1) % count);
    let next = ring_namespace((index + 1) % count);
    let mut values = Vec::new();
    for app in ["front", "back"] {
        let labels = json!({"app": app, "version": "v1"});
        values.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": app, "namespace": ns}}));
        values.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080}]}}));
        values.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("{app}-v1"), "namespace": ns, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                "spec": {"serviceAccountName": app, "containers": [{"name": app, "image": format!("registry.example/{app}:1"), "ports": [{"containerPort": 8080}]}]}}}}));
    }
    let principal = |namespace: &str| format!("cluster.local/ns/{namespace}/sa/front");
    values.push(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "back", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "back"}}, "action": "ALLOW", "rules": [{
            "from": [{"source": {"principals": [principal(&ns), principal(&previous)]}}],
            "to": [{"operation": {"methods": ["GET", "POST"]}}]}]}}));
    values.push(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "front", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "front"}}, "action": "ALLOW", "rules": [{
            "from": [{"source": {"namespaces": [ns.clone(), next]}}]}]}}));
    values.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "back", "namespace": ns},
        "spec": {"host": "back", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}));
    values.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "back", "namespace": ns},
        "spec": {"hosts": ["back"], "http": [
            {"match": [{"headers": {"x-canary": {"exact": "yes"}}}], "route": [{"destination": {"host": "back", "subset": "v1"}}]},
            {"route": [{"destination": {"host": "back"}}]}]}}));
    values.into_iter().map(|value| from_json("ring scenario object", value)).collect()
}

async fn load_ring(client: &Client, count: usize) -> Result<(), Error> {
    let namespaces: Vec<DynamicObject> = (0..count)
        .map(|index| namespace(&ring_namespace(index), json!({"istio.io/rev": "default"})))
        .collect::<Result<_, _>>()?;
    apply_all(client, namespaces).await?;
    wait_for_injection(client, &ring_namespace(0)).await?;
    let mut objects = Vec::new();
    for index in 0..count {
        objects.extend(ring_namespace_objects(index, count)?);
    }
    apply_all(client, objects).await?;
    for index in 0..count {
        wait_for_rollouts(client, &ring_namespace(index)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_resolves_and_unknown_names_are_errors() {
        for name in names() {
            assert_eq!(Scenario::named(name).unwrap().name, name);
        }
        assert!(Scenario::named("bookinfo").is_err());
        assert!(Scenario::named("large:0").is_err());
        assert!(Scenario::named("ring:1").is_err() && Scenario::named("ring:x").is_err());
        assert_eq!(Scenario::named("ring").unwrap().workload, Workload::Ring(2));
        assert_eq!(Scenario::named("ring:5").unwrap().workload, Workload::Ring(5));
        assert!(Scenario::named("large:3x").is_err());
        assert_eq!(
            Scenario::named("large:1000x3x1").unwrap().workload,
            Workload::Large(Size { namespaces: 1000, services: 3, pods: 1 })
        );
        assert_eq!(Scenario::named("gateway-api-missing").unwrap().crds, CrdSet::WithoutGatewayApi);
    }

    #[test]
    fn bookinfo_policies_use_the_service_accounts_of_the_manifests() {
        let objects = manifests("samples/istio/samples/bookinfo/platform/kube/bookinfo.yaml", BOOKINFO).unwrap();
        let accounts = service_accounts(&objects);
        assert_eq!(accounts["productpage"], "bookinfo-productpage");
        let policies = bookinfo_policies(&accounts).unwrap();
        let sources: Vec<(&str, &str)> = policies
            .iter()
            .map(|policy| {
                (
                    policy.data["spec"]["selector"]["matchLabels"]["app"].as_str().unwrap(),
                    policy.data["spec"]["rules"][0]["from"][0]["source"]["principals"][0].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            sources,
            [
                ("productpage", "cluster.local/ns/bookinfo/sa/bookinfo-gateway-istio"),
                ("details", "cluster.local/ns/bookinfo/sa/bookinfo-productpage"),
                ("reviews", "cluster.local/ns/bookinfo/sa/bookinfo-productpage"),
                ("ratings", "cluster.local/ns/bookinfo/sa/bookinfo-reviews"),
            ]
        );
        assert_eq!(policies[0].data["spec"]["rules"][0]["to"][0]["operation"]["methods"], json!(["GET", "POST"]));
    }

    #[test]
    fn the_large_mesh_has_policies_in_proportion() {
        let objects = large_namespace_objects(7, Size { namespaces: 8, services: 12, pods: 2 }).unwrap();
        let count = |kind: &str| objects.iter().filter(|o| o.types.as_ref().unwrap().kind == kind).count();
        assert_eq!(
            (
                count("Service"),
                count("Pod"),
                count("DestinationRule"),
                count("VirtualService"),
                count("AuthorizationPolicy")
            ),
            (12, 24, 6, 4, 12)
        );
        assert!(objects.iter().all(|o| o.metadata.namespace.as_deref() == Some("mesh-0007")));
    }
}
