//! What the conversion works with: the namespaces in scope, which of them use a waypoint and
//! which one, the mesh trust domain, and the workloads the input shows.
//!
//! A namespace uses a waypoint when the user names it (`-n`), or when the input shows it needs L7
//! processing, following the guide's decision framework (2.1.2): an existing waypoint or
//! `istio.io/use-waypoint` label, a selector AuthorizationPolicy with L7 attributes, a mesh
//! VirtualService or HTTPRoute on one of its Services, or L7 extensions (RequestAuthentication,
//! Telemetry, WasmPlugin). Everything else stays ztunnel-only and is not touched.
//!
//! Identities are SPIFFE principals `<trust domain>/ns/<namespace>/sa/<service account>`; the
//! trust domain comes from `--trust-domain`, else the Istio resource's
//! `values.meshConfig.trustDomain`, else `cluster.local` with a warning (an offline dump often
//! lacks the cluster-scoped Istio resource). Conflicting Istio resources leave it unknown, and
//! everything that needs a principal is then reported instead of guessed.

use std::collections::{BTreeMap, BTreeSet};

use kube_core::DynamicObject;
use serde_json::{Map, Value, json};

use super::objects::{generated, invalid_name, is_generated};
use super::{ConvertOptions, Report};
use crate::kinds::Kind;
use crate::mesh::authz::AuthorizationPolicySpec;
use crate::mesh::labels::{
    DATAPLANE_AMBIENT, DATAPLANE_MODE, GATEWAY_NAME, ISTIO_INJECTION, ISTIO_REV, PROXY_CONTAINER, SIDECAR_INJECT,
    USE_WAYPOINT, WAYPOINT_CLASS, WAYPOINT_FOR, WAYPOINT_PORT,
};
use crate::mesh::networking::{VirtualServiceSpec, service_of_host};
use crate::mesh::{ObjectRef, annotations, labels, selector_matches, spec};
use crate::snapshot::Snapshot;

/// The trust domain when nothing says otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// The waypoint name when nothing says otherwise (the guide's).
pub const DEFAULT_WAYPOINT: &str = "waypoint";
/// Istio's annotation overriding a gateway's service account.
pub const GATEWAY_SERVICE_ACCOUNT: &str = "gateway.istio.io/service-account";
/// Pod annotation the injector sets on pods it gave a sidecar.
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";

/// A workload as policies see it: the labels of its pods and their service account.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    pub object: &'a DynamicObject,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// The input shows the pods run a sidecar (an `istio-proxy` container, the injector's status
    /// annotation, or injection enabled on the namespace).
    pub has_sidecar: bool,
}

impl Workload<'_> {
    pub fn reference(&self) -> ObjectRef {
        ObjectRef::of(self.object)
    }
}

/// The conversion's view of the mesh.
pub struct Mesh<'a> {
    pub snapshot: &'a Snapshot,
    /// None when the input does not determine it (conflicting Istio resources).
    pub trust_domain: Option<String>,
    scope: BTreeSet<String>,
    /// Namespaces that use a waypoint, with the waypoint's name.
    waypoints: BTreeMap<String, String>,
    workloads: Vec<Workload<'a>>,
}

impl<'a> Mesh<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot, options: &ConvertOptions, report: &mut Report) -> Self {
        let trust_domain = trust_domain(snapshot, options, report);
        let scope: BTreeSet<String> = if options.namespaces.is_empty() {
            all_namespaces(snapshot)
        } else {
            options.namespaces.iter().cloned().collect()
        };
        let workloads = workloads(snapshot);
        let mut mesh = Mesh { snapshot, trust_domain, scope, waypoints: BTreeMap::new(), workloads };
        let explicit = !options.namespaces.is_empty();
        for namespace in mesh.scope.clone() {
            if explicit || mesh.needs_waypoint(&namespace) {
                let name = mesh.waypoint_name(&namespace, options.waypoint.as_deref());
                if let Some(reason) = invalid_name(&name, false) {
                    report.unsupported(&ObjectRef::new("Namespace", None, &namespace), "waypoint", reason);
                    continue;
                }
                mesh.waypoints.insert(namespace, name);
            }
        }
        mesh
    }

    /// True when `namespace` is converted at all.
    pub fn in_scope(&self, namespace: &str) -> bool {
        self.scope.contains(namespace)
    }

    pub fn waypoint_namespaces(&self) -> impl Iterator<Item = &str> {
        self.waypoints.keys().map(String::as_str)
    }

    /// The waypoint of `namespace`, when it uses one.
    pub fn waypoint(&self, namespace: &str) -> Option<&str> {
        self.waypoints.get(namespace).map(String::as_str)
    }

    /// `<trust domain>/ns/<namespace>/sa/<service account>`, when the trust domain is known.
    pub fn principal(&self, namespace: &str, service_account: &str) -> Option<String> {
        self.trust_domain.as_ref().map(|td| format!("{td}/ns/{namespace}/sa/{service_account}"))
    }

    /// The principal of the waypoint of `namespace`: its service account is its name unless the
    /// input's Gateway overrides it.
    pub fn waypoint_principal(&self, namespace: &str) -> Option<String> {
        let name = self.waypoint(namespace)?;
        let account = self
            .snapshot
            .get(Kind::Gateway, Some(namespace), name)
            .and_then(|gateway| annotations(gateway).get(GATEWAY_SERVICE_ACCOUNT).cloned())
            .unwrap_or_else(|| name.to_string());
        self.principal(namespace, &account)
    }

    /// The waypoint Gateway of `namespace` when the input does not hold it yet (the guide's Step
    /// 4.2 Gateway). An input Gateway of that name that is no service waypoint is reported.
    pub(crate) fn waypoint_gateway_to_emit(&self, namespace: &str, report: &mut Report) -> Option<DynamicObject> {
        let name = self.waypoint(namespace)?;
        if let Some(existing) = self.snapshot.get(Kind::Gateway, Some(namespace), name) {
            let class = existing.data.pointer("/spec/gatewayClassName").and_then(Value::as_str);
            let serves = labels(existing).get(WAYPOINT_FOR).map(String::as_str);
            if class != Some(WAYPOINT_CLASS) {
                report.unsupported(
                    &ObjectRef::of(existing),
                    "spec.gatewayClassName",
                    format!("the waypoint name {name:?} is taken by a Gateway that is not of class {WAYPOINT_CLASS}"),
                );
            } else if matches!(serves, Some("workload" | "none")) {
                report.unsupported(
                    &ObjectRef::of(existing),
                    format!("metadata.labels[{WAYPOINT_FOR}]"),
                    "this waypoint does not handle Service traffic, which the converted routes and policies need",
                );
            }
            return None;
        }
        let Value::Object(body) = json!({
            "spec": {
                "gatewayClassName": WAYPOINT_CLASS,
                "listeners": [{"name": "mesh", "port": WAYPOINT_PORT, "protocol": "HBONE"}],
            }
        }) else {
            return None;
        };
        let mut gateway =
            generated(Kind::Gateway, namespace, name, &[ObjectRef::new("Namespace", None, namespace)], body);
        gateway.metadata.labels.get_or_insert_with(BTreeMap::new).insert(WAYPOINT_FOR.into(), "service".into());
        Some(gateway)
    }

    /// A Service of the input (generated ones included).
    pub fn service(&self, namespace: &str, name: &str) -> Option<&'a DynamicObject> {
        self.snapshot.get(Kind::Service, Some(namespace), name)
    }

    pub fn workloads_in<'s>(&'s self, namespace: &'s str) -> impl Iterator<Item = &'s Workload<'a>> + 's {
        self.workloads.iter().filter(move |workload| workload.namespace == namespace)
    }

    pub fn workloads(&self) -> &[Workload<'a>] {
        &self.workloads
    }

    /// Principals of the ingress gateways the input shows: Gateway API gateways other than
    /// waypoints (Istio names their service account `<gateway>-<class>`), and workloads labelled
    /// `istio: ingressgateway`.
    pub fn ingress_gateway_principals(&self) -> BTreeSet<String> {
        let mut principals = BTreeSet::new();
        for gateway in self.snapshot.all(Kind::Gateway) {
            let class = gateway.data.pointer("/spec/gatewayClassName").and_then(Value::as_str).unwrap_or_default();
            if class == WAYPOINT_CLASS || class.is_empty() {
                continue;
            }
            let (Some(namespace), Some(name)) = (&gateway.metadata.namespace, &gateway.metadata.name) else {
                continue;
            };
            let account =
                annotations(gateway).get(GATEWAY_SERVICE_ACCOUNT).cloned().unwrap_or_else(|| format!("{name}-{class}"));
            principals.extend(self.principal(namespace, &account));
        }
        for workload in &self.workloads {
            let classic = workload.labels.get(ISTIO_GATEWAY_LABEL).map(String::as_str) == Some("ingressgateway");
            let gateway_pod = workload.labels.get(GATEWAY_NAME).is_some_and(|name| {
                self.snapshot
                    .get(Kind::Gateway, Some(&workload.namespace), name)
                    .and_then(|gateway| gateway.data.pointer("/spec/gatewayClassName"))
                    .and_then(Value::as_str)
                    != Some(WAYPOINT_CLASS)
            });
            if classic || gateway_pod {
                principals.extend(self.principal(&workload.namespace, &workload.service_account));
            }
        }
        principals
    }

    fn waypoint_name(&self, namespace: &str, requested: Option<&str>) -> String {
        if let Some(name) = requested {
            return name.to_string();
        }
        let labelled = self
            .snapshot
            .get(Kind::Namespace, None, namespace)
            .and_then(|ns| labels(ns).get(USE_WAYPOINT))
            .filter(|name| name.as_str() != "none");
        if let Some(name) = labelled {
            return name.clone();
        }
        let existing: Vec<&str> = self
            .snapshot
            .in_namespace(Kind::Gateway, namespace)
            .filter(|gateway| {
                gateway.data.pointer("/spec/gatewayClassName").and_then(Value::as_str) == Some(WAYPOINT_CLASS)
            })
            .filter_map(|gateway| gateway.metadata.name.as_deref())
            .collect();
        match existing.as_slice() {
            [only] => only.to_string(),
            _ => DEFAULT_WAYPOINT.to_string(),
        }
    }

    /// The guide's decision framework (see the module docs).
    fn needs_waypoint(&self, namespace: &str) -> bool {
        let snapshot = self.snapshot;
        let labelled = snapshot
            .get(Kind::Namespace, None, namespace)
            .and_then(|ns| labels(ns).get(USE_WAYPOINT))
            .is_some_and(|name| name != "none");
        let has_waypoint = snapshot.in_namespace(Kind::Gateway, namespace).any(|gateway| {
            gateway.data.pointer("/spec/gatewayClassName").and_then(Value::as_str) == Some(WAYPOINT_CLASS)
        });
        let l7_policy = snapshot.in_namespace(Kind::AuthorizationPolicy, namespace).any(|policy| {
            !is_generated(policy)
                && spec::<AuthorizationPolicySpec>(policy).is_ok_and(|spec| {
                    let gateway_policy = spec.selector_labels().is_some_and(is_gateway);
                    !spec.uses_target_refs() && !gateway_policy && !spec.l7_attributes().is_empty()
                })
        });
        let l7_extension = [Kind::RequestAuthentication, Kind::WasmPlugin, Kind::Telemetry]
            .into_iter()
            .any(|kind| snapshot.in_namespace(kind, namespace).any(|object| !is_generated(object)));
        let routed = snapshot.all(Kind::VirtualService).iter().any(|vs| {
            let vs_namespace = vs.metadata.namespace.as_deref().unwrap_or_default();
            spec::<VirtualServiceSpec>(vs).is_ok_and(|spec| {
                !spec.is_gateway_only()
                    && spec.hosts.iter().any(|host| {
                        service_of_host(host, vs_namespace).is_some_and(|(name, ns)| {
                            ns == namespace && snapshot.get(Kind::Service, Some(ns), name).is_some()
                        })
                    })
            })
        });
        let mesh_route = snapshot.in_namespace(Kind::HttpRoute, namespace).any(|route| {
            route.data.pointer("/spec/parentRefs").and_then(Value::as_array).is_some_and(|parents| {
                parents.iter().any(|parent| parent.get("kind").and_then(Value::as_str) == Some("Service"))
            })
        });
        labelled || has_waypoint || l7_policy || l7_extension || routed || mesh_route
    }
}

/// The label Istio's classic gateway deployments carry (`ingressgateway`, `egressgateway`, ...).
pub const ISTIO_GATEWAY_LABEL: &str = "istio";

/// True for labels of gateway pods (ingress, egress, east-west, waypoint): proxies that enforce
/// their own selector policies, in ambient as with sidecars.
pub fn is_gateway(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key(GATEWAY_NAME) || labels.get(ISTIO_GATEWAY_LABEL).is_some_and(|value| value.ends_with("gateway"))
}

/// `spec.selector` of a Service (empty when it selects nothing itself).
pub fn service_selector(service: &DynamicObject) -> BTreeMap<String, String> {
    service
        .data
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|selector| {
            selector.iter().filter_map(|(key, value)| value.as_str().map(|v| (key.clone(), v.to_string()))).collect()
        })
        .unwrap_or_default()
}

/// `spec.ports` of a Service.
pub fn service_ports(service: &DynamicObject) -> Vec<Map<String, Value>> {
    service
        .data
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| ports.iter().filter_map(|port| port.as_object().cloned()).collect())
        .unwrap_or_default()
}

/// True when `service` selects the pods of `workload`.
pub fn selects(service: &DynamicObject, workload: &Workload) -> bool {
    let selector = service_selector(service);
    !selector.is_empty()
        && service.metadata.namespace.as_deref() == Some(workload.namespace.as_str())
        && selector_matches(&selector, &workload.labels)
}

fn all_namespaces(snapshot: &Snapshot) -> BTreeSet<String> {
    crate::kinds::ALL
        .iter()
        .filter(|info| info.namespaced)
        .flat_map(|info| snapshot.all(info.kind))
        .filter_map(|object| object.metadata.namespace.clone())
        .collect()
}

fn trust_domain(snapshot: &Snapshot, options: &ConvertOptions, report: &mut Report) -> Option<String> {
    let mesh_ref = ObjectRef::new("Istio", None, "*");
    let chosen = match &options.trust_domain {
        Some(domain) => domain.clone(),
        None => {
            let domains: BTreeSet<String> = snapshot
                .all(Kind::Istio)
                .iter()
                .map(|istio| {
                    istio
                        .data
                        .pointer("/spec/values/meshConfig/trustDomain")
                        .and_then(Value::as_str)
                        .unwrap_or(DEFAULT_TRUST_DOMAIN)
                        .to_string()
                })
                .collect();
            match domains.len() {
                0 => {
                    if !snapshot.knows(Kind::Istio) {
                        report.warn(
                            &mesh_ref,
                            format!(
                                "the input holds no Istio resource: assuming trust domain {DEFAULT_TRUST_DOMAIN}; \
                                 pass --trust-domain if the mesh uses another"
                            ),
                        );
                    }
                    DEFAULT_TRUST_DOMAIN.to_string()
                }
                1 => domains.into_iter().next().unwrap_or_default(),
                _ => {
                    let listed: Vec<String> = domains.into_iter().collect();
                    report.unsupported(
                        &mesh_ref,
                        "spec.values.meshConfig.trustDomain",
                        format!(
                            "the Istio resources name different trust domains ({}): pass --trust-domain; \
                             nothing that needs a principal is generated",
                            listed.join(", ")
                        ),
                    );
                    return None;
                }
            }
        }
    };
    let valid = !chosen.is_empty()
        && chosen.len() <= 255
        && chosen.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Some(chosen)
    } else {
        report.unsupported(
            &mesh_ref,
            "spec.values.meshConfig.trustDomain",
            format!("{chosen:?} is not a valid trust domain; nothing that needs a principal is generated"),
        );
        None
    }
}

/// Workloads from Deployments, StatefulSets and DaemonSets (their pod templates) and from Pods.
/// Pods owned by a controller are skipped in namespaces whose controllers the input holds, so
/// each workload counts once.
fn workloads(snapshot: &Snapshot) -> Vec<Workload<'_>> {
    let injected_namespaces: BTreeSet<&str> = snapshot
        .all(Kind::Namespace)
        .iter()
        .filter(|ns| {
            let labels = labels(ns);
            let injected =
                labels.get(ISTIO_INJECTION).map(String::as_str) == Some("enabled") || labels.contains_key(ISTIO_REV);
            injected && labels.get(DATAPLANE_MODE).map(String::as_str) != Some(DATAPLANE_AMBIENT)
        })
        .filter_map(|ns| ns.metadata.name.as_deref())
        .collect();
    let mut found = Vec::new();
    let mut controlled_namespaces = BTreeSet::new();
    for kind in [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet] {
        for object in snapshot.all(kind) {
            let Some(namespace) = object.metadata.namespace.clone() else { continue };
            let Some(template) = object.data.pointer("/spec/template") else { continue };
            let labels = string_map(template.pointer("/metadata/labels"));
            let opted_out = labels.get(SIDECAR_INJECT).map(String::as_str) == Some("false")
                || string_map(template.pointer("/metadata/annotations")).get(SIDECAR_INJECT).map(String::as_str)
                    == Some("false");
            let has_sidecar = has_proxy_container(template.get("spec"))
                || (injected_namespaces.contains(namespace.as_str()) && !opted_out);
            controlled_namespaces.insert(namespace.clone());
            found.push(Workload {
                object,
                service_account: service_account(template.get("spec")),
                namespace,
                labels,
                has_sidecar,
            });
        }
    }
    for pod in snapshot.all(Kind::Pod) {
        let Some(namespace) = pod.metadata.namespace.clone() else { continue };
        let owned = pod.metadata.owner_references.as_ref().is_some_and(|owners| !owners.is_empty());
        if owned && controlled_namespaces.contains(&namespace) {
            continue;
        }
        let has_sidecar = has_proxy_container(pod.data.get("spec")) || annotations(pod).contains_key(SIDECAR_STATUS);
        found.push(Workload {
            object: pod,
            service_account: service_account(pod.data.get("spec")),
            namespace,
            labels: labels(pod).clone(),
            has_sidecar,
        });
    }
    found
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| map.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

fn service_account(pod_spec: Option<&Value>) -> String {
    pod_spec
        .and_then(|spec| spec.get("serviceAccountName").or_else(|| spec.get("serviceAccount")))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .unwrap_or("default")
        .to_string()
}

fn has_proxy_container(pod_spec: Option<&Value>) -> bool {
    ["containers", "initContainers"].iter().any(|field| {
        pod_spec.and_then(|spec| spec.get(*field)).and_then(Value::as_array).is_some_and(|containers| {
            containers.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER))
        })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Objects from YAML documents, for the tests of every rule.
    pub(crate) fn objects(yaml: &str) -> Vec<DynamicObject> {
        crate::snapshot::parse_documents(std::path::Path::new("test.yaml"), yaml).expect("valid test input")
    }

    pub(crate) fn snapshot_of(yaml: &str) -> Snapshot {
        Snapshot::from_objects(objects(yaml))
    }

    const APP: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {serviceAccountName: reviews, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1-abc, namespace: shop, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: x, uid: u}]}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy, namespace: shop, labels: {app: legacy}, annotations: {sidecar.istio.io/status: '{}'}}
spec: {containers: [{name: app}, {name: istio-proxy}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
";

    #[test]
    fn workloads_count_once_and_sidecars_are_recognised() {
        let snapshot = snapshot_of(APP);
        let found = workloads(&snapshot);
        let names: Vec<String> = found.iter().map(|w| w.reference().name).collect();
        assert_eq!(names, vec!["reviews-v1", "legacy"], "the owned pod is represented by its Deployment");
        assert_eq!(found[0].service_account, "reviews");
        assert!(!found[0].has_sidecar);
        assert!(found[1].has_sidecar);
        assert_eq!(found[1].service_account, "default");
    }

    #[test]
    fn trust_domain_comes_from_the_flag_the_istio_resource_or_the_default_with_a_warning() {
        let snapshot = snapshot_of(APP);
        let mut report = Report::default();
        let mesh = Mesh::new(&snapshot, &ConvertOptions::default(), &mut report);
        assert_eq!(mesh.trust_domain.as_deref(), Some("cluster.local"));
        assert_eq!(report.warnings.len(), 0, "from_objects marks the Istio kind listed: no Istio resource at all");

        let mut offline = Snapshot::new(crate::snapshot::Source::Memory);
        objects(APP).into_iter().for_each(|o| {
            offline.insert(o);
        });
        let mut report = Report::default();
        let mesh = Mesh::new(&offline, &ConvertOptions::default(), &mut report);
        assert_eq!(mesh.trust_domain.as_deref(), Some("cluster.local"));
        assert!(report.warnings[0].message.contains("assuming trust domain cluster.local"), "{:?}", report.warnings);

        let istio = "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: default}\nspec: {values: {meshConfig: {trustDomain: corp.example}}}";
        let with_istio = snapshot_of(istio);
        let mesh = Mesh::new(&with_istio, &ConvertOptions::default(), &mut Report::default());
        assert_eq!(mesh.principal("ns", "sa").as_deref(), Some("corp.example/ns/ns/sa/sa"));

        let options = ConvertOptions { trust_domain: Some("flag.example".into()), ..Default::default() };
        let mesh = Mesh::new(&with_istio, &options, &mut Report::default());
        assert_eq!(mesh.trust_domain.as_deref(), Some("flag.example"));
    }

    #[test]
    fn an_unknown_trust_domain_leaves_principals_unknown() {
        let two = "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: a}\nspec: {values: {meshConfig: {trustDomain: a.example}}}
---
apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: b}\nspec: {}";
        let snapshot = snapshot_of(two);
        let mut report = Report::default();
        let mesh = Mesh::new(&snapshot, &ConvertOptions::default(), &mut report);
        assert_eq!(mesh.trust_domain, None);
        assert_eq!(mesh.principal("ns", "sa"), None);
        assert!(report.unsupported[0].reason.contains("a.example, cluster.local"), "{:?}", report.unsupported);

        let options = ConvertOptions { trust_domain: Some("bad domain/x".into()), ..Default::default() };
        let mut report = Report::default();
        assert_eq!(Mesh::new(&snapshot, &options, &mut report).trust_domain, None);
        assert_eq!(report.unsupported_count(), 1);
    }

    #[test]
    fn namespaces_use_a_waypoint_when_named_or_when_the_input_needs_one() {
        let input = format!(
            "{APP}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec: {{hosts: [reviews], http: [{{route: [{{destination: {{host: reviews}}}}]}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: quiet, namespace: calm}}
spec: {{selector: {{app: quiet}}}}
"
        );
        let snapshot = snapshot_of(&input);
        let mesh = Mesh::new(&snapshot, &ConvertOptions::default(), &mut Report::default());
        assert_eq!(mesh.waypoint_namespaces().collect::<Vec<_>>(), vec!["shop"]);
        assert_eq!(mesh.waypoint_principal("shop").as_deref(), Some("cluster.local/ns/shop/sa/waypoint"));
        let gateway = mesh.waypoint_gateway_to_emit("shop", &mut Report::default()).expect("no waypoint in the input");
        assert_eq!(gateway.data.pointer("/spec/listeners/0/port"), Some(&json!(15008)));
        assert_eq!(labels(&gateway).get(WAYPOINT_FOR).map(String::as_str), Some("service"));

        let options =
            ConvertOptions { namespaces: vec!["calm".into()], waypoint: Some("wp".into()), ..Default::default() };
        let mesh = Mesh::new(&snapshot, &options, &mut Report::default());
        assert_eq!(mesh.waypoint_namespaces().collect::<Vec<_>>(), vec!["calm"]);
        assert_eq!(mesh.waypoint("calm"), Some("wp"));
        assert!(!mesh.in_scope("shop"));
    }

    #[test]
    fn an_existing_waypoint_is_reused_and_not_emitted_again() {
        let input = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop, labels: {istio.io/waypoint-for: service}, annotations: {gateway.istio.io/service-account: wp-sa}}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: edge}
spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}";
        let snapshot = snapshot_of(input);
        let mesh = Mesh::new(&snapshot, &ConvertOptions::default(), &mut Report::default());
        assert_eq!(mesh.waypoint("shop"), Some("wp"));
        assert_eq!(mesh.waypoint_principal("shop").as_deref(), Some("cluster.local/ns/shop/sa/wp-sa"));
        let mut report = Report::default();
        assert!(mesh.waypoint_gateway_to_emit("shop", &mut report).is_none());
        assert_eq!(report.unsupported_count(), 0);
        assert_eq!(
            mesh.ingress_gateway_principals().into_iter().collect::<Vec<_>>(),
            vec!["cluster.local/ns/edge/sa/ingress-istio"]
        );
    }
}
