//! What the conversion works with: the namespaces in scope, which of them use a waypoint and
//! which one, the mesh trust domain, and the workloads the input shows.
//!
//! A namespace uses a waypoint when the user names it (`-n`), or when the input shows it needs L7
//! processing, following the guide's decision framework (2.1.2): an existing waypoint or
//! `istio.io/use-waypoint` label, a selector AuthorizationPolicy with L7 attributes, a mesh
//! VirtualService or HTTPRoute on one of its Services, or L7 extensions (RequestAuthentication,
//! Telemetry, WasmPlugin). Everything else stays ztunnel-only and is not touched.
//!
//! The facts come from the mesh model ([`crate::model`]), which the check and the evaluator read
//! too: the waypoint decision, workloads and their sidecars, gateways and their identities, and
//! the trust domain (`--trust-domain`, else the Istio resource, else `cluster.local` with a
//! warning, since an offline dump often lacks the cluster-scoped Istio resource). An unknown
//! trust domain is reported, and everything that needs a principal is then refused, not guessed.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube_core::DynamicObject;
use serde_json::{Map, Value, json};

use super::bypass::SidecarCallers;
use super::objects::{generated, invalid_name};
use super::policies::{NamespaceServices, input_targetable_services};
use super::services::{DestinationRules, SubsetRouters, subset_routers};
use super::{ConvertOptions, Report};
use crate::equivalence::topology::Topology;
use crate::kinds::Kind;
use crate::mesh::labels::{
    DATAPLANE_NONE, USE_WAYPOINT, USE_WAYPOINT_NAMESPACE, WAYPOINT_CLASS, WAYPOINT_FOR, WAYPOINT_PORT,
};
use crate::mesh::networking::VirtualServiceSpec;
use crate::mesh::{ObjectRef, labels, selector_matches, spec};
use crate::model::MeshModel;
pub use crate::model::Workload;
use crate::model::identity::{DEFAULT_TRUST_DOMAIN, TrustDomain, TrustDomainProblem, TrustDomainSource};
use crate::model::waypoint::{DEFAULT_WAYPOINT, ISTIO_GATEWAY_LABEL};
use crate::snapshot::Snapshot;

/// What a conversion reads of the whole mesh, whatever namespaces it converts: the model, its
/// indexes, the decoded VirtualServices and the evaluator's topology. Built once per snapshot
/// ([`super::Converter`]): the waypoint planner converts namespace after namespace of one
/// snapshot, and rebuilding these for each made planning quadratic in the namespaces.
pub struct MeshIndex<'a> {
    pub snapshot: &'a Snapshot,
    pub model: MeshModel<'a>,
    /// Positions of each namespace's workloads in the model's list, so that the rules, which ask
    /// once per policy or Service, do not scan the whole mesh each time.
    workloads_by_namespace: HashMap<String, Vec<usize>>,
    /// Positions of the workloads carrying each label, by (namespace, key, value): a selector's
    /// workloads are found from one of its labels instead of testing every workload.
    workloads_by_label: HashMap<(String, String, String), Vec<usize>>,
    /// The VirtualServices with their specs decoded once: the route and subset rules both read
    /// them, and a huge one took seconds per decoding.
    virtual_services: Vec<(&'a DynamicObject, Result<VirtualServiceSpec, String>)>,
    /// What the rules build of the whole input, once, when they first need it.
    topology: OnceCell<Topology>,
    targetable_services: OnceCell<HashMap<String, NamespaceServices>>,
    destination_rules: OnceCell<DestinationRules>,
    subset_routers: OnceCell<SubsetRouters>,
    sidecar_callers: OnceCell<SidecarCallers>,
    ingress_gateway_principals: OnceCell<BTreeSet<String>>,
}

impl<'a> MeshIndex<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot) -> Self {
        let model = MeshModel::new(snapshot);
        let mut workloads_by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        let mut workloads_by_label: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
        for (position, workload) in model.workloads().iter().enumerate() {
            workloads_by_namespace.entry(workload.namespace.clone()).or_default().push(position);
            for (key, value) in &workload.labels {
                let label = (workload.namespace.clone(), key.clone(), value.clone());
                workloads_by_label.entry(label).or_default().push(position);
            }
        }
        let virtual_services =
            snapshot.all(Kind::VirtualService).iter().map(|vs| (vs, spec::<VirtualServiceSpec>(vs))).collect();
        MeshIndex {
            snapshot,
            model,
            workloads_by_namespace,
            workloads_by_label,
            virtual_services,
            topology: OnceCell::new(),
            targetable_services: OnceCell::new(),
            destination_rules: OnceCell::new(),
            subset_routers: OnceCell::new(),
            sidecar_callers: OnceCell::new(),
            ingress_gateway_principals: OnceCell::new(),
        }
    }
}

/// The conversion's view of the mesh: the index of the whole mesh, the namespaces in scope and
/// their waypoints.
pub struct Mesh<'a> {
    pub snapshot: &'a Snapshot,
    pub model: &'a MeshModel<'a>,
    index: &'a MeshIndex<'a>,
    scope: BTreeSet<String>,
    /// Namespaces that use a waypoint, with the waypoint's name.
    waypoints: BTreeMap<String, String>,
}

impl<'a> Mesh<'a> {
    pub(crate) fn new(index: &'a MeshIndex<'a>, options: &ConvertOptions, report: &mut Report) -> Self {
        let (snapshot, model) = (index.snapshot, &index.model);
        report_trust_domain(&model.trust_domain, report);
        let scope: BTreeSet<String> = if options.namespaces.is_empty() {
            all_namespaces(snapshot)
        } else {
            options.namespaces.iter().cloned().collect()
        };
        let mut mesh = Mesh { snapshot, model, index, scope, waypoints: BTreeMap::new() };
        let explicit = !options.namespaces.is_empty();
        for namespace in mesh.scope.clone() {
            if explicit || mesh.model.needs_waypoint(&namespace) {
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

    /// The evaluator's view of the input (see [`Topology::from_snapshot`]), built once per index.
    pub fn topology(&self) -> &'a Topology {
        self.index.topology.get_or_init(|| Topology::from_snapshot(self.snapshot))
    }

    /// The input's Services policies can target, by namespace, built once per index.
    pub(crate) fn input_targetable_services(&self) -> &'a HashMap<String, NamespaceServices> {
        self.index.targetable_services.get_or_init(|| input_targetable_services(self.snapshot))
    }

    /// The input's DestinationRules by host, built once per index.
    pub(crate) fn destination_rules(&self) -> &'a DestinationRules {
        self.index.destination_rules.get_or_init(|| DestinationRules::new(self.snapshot))
    }

    /// The VirtualServices routing to subsets of each host, built once per index.
    pub(crate) fn subset_routers(&self) -> &'a SubsetRouters {
        self.index.subset_routers.get_or_init(|| subset_routers(self))
    }

    /// The workloads that run a sidecar, by principal, built once per index.
    pub(crate) fn sidecar_callers(&self) -> &'a SidecarCallers {
        self.index.sidecar_callers.get_or_init(|| SidecarCallers::new(self.model))
    }

    /// Every VirtualService of the input, with its spec or why it does not decode.
    pub fn virtual_services(&self) -> &[(&'a DynamicObject, Result<VirtualServiceSpec, String>)] {
        &self.index.virtual_services
    }

    /// The namespaces converted.
    pub fn scope(&self) -> impl Iterator<Item = &str> {
        self.scope.iter().map(String::as_str)
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
        self.model.principal(namespace, service_account)
    }

    /// The principal of the waypoint of `namespace` (see [`MeshModel::waypoint_principal`]).
    pub fn waypoint_principal(&self, namespace: &str) -> Option<String> {
        self.model.waypoint_principal(namespace, self.waypoint(namespace)?)
    }

    /// The principal of the waypoint the Service `name` of `namespace` uses: the one its own
    /// `istio.io/use-waypoint` label names (in `istio.io/use-waypoint-namespace`, else its own
    /// namespace), else its namespace's. ztunnel at its pods sees that identity.
    pub fn service_waypoint_principal(&self, namespace: &str, name: &str) -> Option<String> {
        let own = self.service(namespace, name).map(labels).and_then(|labels| {
            let waypoint = labels.get(USE_WAYPOINT).filter(|waypoint| *waypoint != DATAPLANE_NONE)?;
            Some((waypoint, labels.get(USE_WAYPOINT_NAMESPACE).map_or(namespace, String::as_str)))
        });
        match own {
            Some((waypoint, waypoint_namespace)) => self.model.waypoint_principal(waypoint_namespace, waypoint),
            None => self.waypoint_principal(namespace),
        }
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

    /// The workloads of `namespace`, in the model's order.
    pub fn workloads_in<'s>(&'s self, namespace: &str) -> impl Iterator<Item = &'s Workload> + 's {
        let workloads = self.model.workloads();
        let positions = self.index.workloads_by_namespace.get(namespace).map(Vec::as_slice).unwrap_or_default();
        positions.iter().map(move |position| &workloads[*position])
    }

    /// Positions in [`Mesh::workloads`] of the workloads of `namespace` that `selector` selects
    /// (all of them for an empty selector), in the model's order.
    pub fn selected_positions(&self, namespace: &str, selector: &BTreeMap<String, String>) -> Vec<usize> {
        let candidates = match selector.iter().next() {
            None => self.index.workloads_by_namespace.get(namespace),
            Some((key, value)) => {
                self.index.workloads_by_label.get(&(namespace.to_string(), key.clone(), value.clone()))
            }
        };
        let workloads = self.model.workloads();
        let candidates = candidates.map(Vec::as_slice).unwrap_or_default();
        candidates.iter().copied().filter(|position| selector_matches(selector, &workloads[*position].labels)).collect()
    }

    /// The workloads of `namespace` that `selector` selects, in the model's order.
    pub fn selected<'s>(
        &'s self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'s Workload> + 's {
        let workloads = self.model.workloads();
        self.selected_positions(namespace, selector).into_iter().map(move |position| &workloads[position])
    }

    pub fn workloads(&self) -> &[Workload] {
        self.model.workloads()
    }

    /// Principals of the ingress gateways the input shows: Gateway API gateways other than
    /// waypoints, and workloads labelled `istio: ingressgateway` (built once per index).
    pub fn ingress_gateway_principals(&self) -> &'a BTreeSet<String> {
        self.index.ingress_gateway_principals.get_or_init(|| {
            let gateways = self.model.gateways().iter().filter(|gateway| !gateway.is_waypoint());
            let classic = self.model.workloads().iter().filter(|workload| {
                workload.labels.get(ISTIO_GATEWAY_LABEL).map(String::as_str) == Some("ingressgateway")
            });
            gateways
                .filter_map(|gateway| self.principal(&gateway.namespace, &gateway.service_account))
                .chain(classic.filter_map(|workload| self.principal(&workload.namespace, &workload.service_account)))
                .collect()
        })
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
        let existing: Vec<&str> = self.model.waypoints_in(namespace).map(|gateway| gateway.name.as_str()).collect();
        match existing.as_slice() {
            [only] => only.to_string(),
            _ => DEFAULT_WAYPOINT.to_string(),
        }
    }
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

/// `clusterIP: None`: the Service's name resolves to its pods' addresses, so traffic to it never
/// passes a Service waypoint (Istio's waypoints capture a Service's cluster IP).
pub fn is_headless(service: &DynamicObject) -> bool {
    service.data.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None")
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

fn all_namespaces(snapshot: &Snapshot) -> BTreeSet<String> {
    crate::kinds::ALL
        .iter()
        .filter(|info| info.namespaced)
        .flat_map(|info| snapshot.all(info.kind))
        .filter_map(|object| object.metadata.namespace.clone())
        .collect()
}

/// Says what the input leaves uncertain about the trust domain: assumed (warning) or unknown
/// (unsupported, and nothing that needs a principal is generated).
fn report_trust_domain(trust_domain: &TrustDomain, report: &mut Report) {
    let mesh_ref = ObjectRef::new("Istio", None, "*");
    match &trust_domain.problem {
        Some(TrustDomainProblem::Conflict(domains)) => report.unsupported(
            &mesh_ref,
            "spec.values.meshConfig.trustDomain",
            format!(
                "the Istio resources name different trust domains ({}): pass --trust-domain; \
                 nothing that needs a principal is generated",
                domains.join(", ")
            ),
        ),
        Some(TrustDomainProblem::Invalid(domain)) => report.unsupported(
            &mesh_ref,
            "spec.values.meshConfig.trustDomain",
            format!("{domain:?} is not a valid trust domain; nothing that needs a principal is generated"),
        ),
        None if trust_domain.source == TrustDomainSource::Inferred => report.warn(
            &mesh_ref,
            format!(
                "the input holds no Istio resource: trust domain {} inferred from the principals the \
                 AuthorizationPolicies name; pass --trust-domain if the mesh uses another",
                trust_domain.or_default()
            ),
        ),
        None if trust_domain.source == TrustDomainSource::Assumed => report.warn(
            &mesh_ref,
            format!(
                "the input holds no Istio resource: assuming trust domain {DEFAULT_TRUST_DOMAIN}; \
                 pass --trust-domain if the mesh uses another"
            ),
        ),
        None => {}
    }
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
  selector: {matchLabels: {app: reviews, version: v1}}
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-5c9d-abc
  namespace: shop
  labels: {app: reviews, version: v1, pod-template-hash: 5c9d}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: reviews-v1-5c9d, uid: u}]
spec: {serviceAccountName: reviews, containers: [{name: app}]}
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
        let index = MeshIndex::new(&snapshot);
        let mesh = Mesh::new(&index, &ConvertOptions::default(), &mut Report::default());
        let found = mesh.workloads();
        let names: Vec<&str> = found.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, vec!["legacy", "reviews-v1"], "the pod stands for its Deployment, which has pods");
        assert!(found[0].has_sidecar());
        assert_eq!(found[0].service_account, "default");
        assert_eq!(found[1].service_account, "reviews");
        assert!(!found[1].has_sidecar());
    }

    #[test]
    fn trust_domain_comes_from_the_flag_the_istio_resource_or_the_default_with_a_warning() {
        let snapshot = snapshot_of(APP);
        let mut report = Report::default();
        let index = MeshIndex::new(&snapshot);
        let mesh = Mesh::new(&index, &ConvertOptions::default(), &mut report);
        assert_eq!(mesh.principal("n", "s").as_deref(), Some("cluster.local/ns/n/sa/s"));
        assert_eq!(report.warnings.len(), 0, "from_objects marks the Istio kind listed: no Istio resource at all");

        let mut offline = Snapshot::new(crate::snapshot::Source::Memory);
        objects(APP).into_iter().for_each(|o| {
            offline.insert(o);
        });
        let mut report = Report::default();
        let index = MeshIndex::new(&offline);
        let mesh = Mesh::new(&index, &ConvertOptions::default(), &mut report);
        assert_eq!(mesh.principal("n", "s").as_deref(), Some("cluster.local/ns/n/sa/s"));
        assert!(
            report.warnings.first().unwrap().message.contains("assuming trust domain cluster.local"),
            "{:?}",
            report.warnings
        );

        let istio = "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: default}\nspec: {values: {meshConfig: {trustDomain: corp.example}}}";
        let with_istio = snapshot_of(istio);
        let index = MeshIndex::new(&with_istio);
        let mesh = Mesh::new(&index, &ConvertOptions::default(), &mut Report::default());
        assert_eq!(mesh.principal("ns", "sa").as_deref(), Some("corp.example/ns/ns/sa/sa"));

        let mut flagged = with_istio.clone();
        flagged.trust_domain = Some("flag.example".into());
        let index = MeshIndex::new(&flagged);
        let mesh = Mesh::new(&index, &ConvertOptions::default(), &mut Report::default());
        assert_eq!(mesh.principal("ns", "sa").as_deref(), Some("flag.example/ns/ns/sa/sa"));
    }

    #[test]
    fn an_unknown_trust_domain_leaves_principals_unknown() {
        let two = "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: a}\nspec: {values: {meshConfig: {trustDomain: a.example}}}
---
apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: b}\nspec: {}";
        let snapshot = snapshot_of(two);
        let mut report = Report::default();
        let index = MeshIndex::new(&snapshot);
        let mesh = Mesh::new(&index, &ConvertOptions::default(), &mut report);
        assert_eq!(mesh.principal("ns", "sa"), None);
        assert!(
            report.unsupported.first().unwrap().reason.contains("a.example, cluster.local"),
            "{:?}",
            report.unsupported
        );

        let mut flagged = snapshot.clone();
        flagged.trust_domain = Some("bad domain/x".into());
        let mut report = Report::default();
        assert_eq!(
            Mesh::new(&MeshIndex::new(&flagged), &ConvertOptions::default(), &mut report).principal("ns", "sa"),
            None
        );
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
        let index = MeshIndex::new(&snapshot);
        let mesh = Mesh::new(&index, &ConvertOptions::default(), &mut Report::default());
        assert_eq!(mesh.waypoint_namespaces().collect::<Vec<_>>(), vec!["shop"]);
        assert_eq!(mesh.waypoint_principal("shop").as_deref(), Some("cluster.local/ns/shop/sa/waypoint"));
        let gateway = mesh.waypoint_gateway_to_emit("shop", &mut Report::default()).expect("no waypoint in the input");
        assert_eq!(gateway.data.pointer("/spec/listeners/0/port"), Some(&json!(15008)));
        assert_eq!(labels(&gateway).get(WAYPOINT_FOR).map(String::as_str), Some("service"));

        let options = ConvertOptions { namespaces: vec!["calm".into()], waypoint: Some("wp".into()) };
        let index = MeshIndex::new(&snapshot);
        let mesh = Mesh::new(&index, &options, &mut Report::default());
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
        let index = MeshIndex::new(&snapshot);
        let mesh = Mesh::new(&index, &ConvertOptions::default(), &mut Report::default());
        assert_eq!(mesh.waypoint("shop"), Some("wp"));
        assert_eq!(mesh.waypoint_principal("shop").as_deref(), Some("cluster.local/ns/shop/sa/wp-sa"));
        let mut report = Report::default();
        assert!(mesh.waypoint_gateway_to_emit("shop", &mut report).is_none());
        assert_eq!(report.unsupported_count(), 0);
        assert_eq!(
            mesh.ingress_gateway_principals().iter().collect::<Vec<_>>(),
            vec!["cluster.local/ns/edge/sa/ingress-istio"]
        );
    }
}
