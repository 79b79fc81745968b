//! The evaluator's view of a snapshot: who runs where, in which data-plane mode, behind which
//! Services and waypoints, under which policies and routes.
//!
//! Everything is derived from the objects alone (see the module docs of [`super`] for the rules),
//! once, so that evaluating a request is a series of lookups. Objects that do not decode are left
//! out and named in [`Topology::notes`]; bad input never stops an evaluation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kube_core::DynamicObject;
use serde_json::Value;

use crate::kinds::Kind;
use crate::mesh::authz::{AuthorizationPolicySpec, is_valid_condition_key};
use crate::mesh::gateway_api::HttpRouteSpec;
use crate::mesh::labels::{DATAPLANE_NONE, GATEWAY_NAME, INGRESS_USE_WAYPOINT, USE_WAYPOINT, USE_WAYPOINT_NAMESPACE};
use crate::mesh::networking::{DestinationRuleSpec, VirtualServiceSpec, service_of_host};
use crate::mesh::{ObjectRef, labels, selector_matches, spec};
use crate::model::MeshModel;
use crate::model::dataplane::NamespaceMode;
use crate::model::identity::principal_in;
use crate::snapshot::Snapshot;

use super::authorize::RuleMatch;
use super::jwt::{JwtRule, RequestAuthenticationSpec};

/// Policies without selector or targetRefs in this namespace apply to every workload of the mesh.
pub const ROOT_NAMESPACE: &str = "istio-system";

pub use crate::model::waypoint::INGRESS_CLASS;
pub use crate::model::{Mode, Workload};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u32,
    /// The pod port: a named target port resolves to the container port of that name on the
    /// Service's pods (see [`resolve_named_target_ports`]), else to the Service port.
    pub target_port: u32,
    /// The name of a named `targetPort`.
    pub target_port_name: Option<String>,
    pub app_protocol: Option<String>,
}

impl ServicePort {
    /// Istio's protocol selection: declared by name prefix or appProtocol; an undeclared port is
    /// sniffed, and HTTP clients are detected as HTTP, so only declared non-HTTP ports are TCP.
    pub fn is_http(&self) -> bool {
        let declared = self.app_protocol.as_deref().unwrap_or(&self.name).to_ascii_lowercase();
        !["tcp", "tls", "mongo", "mysql", "redis", "https"].iter().any(|prefix| declared.starts_with(prefix))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// None for a Service without selector (its endpoints are managed elsewhere).
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Vec<ServicePort>,
    /// `clusterIP: None`: clients resolve it to pod addresses, so no Service waypoint applies.
    pub headless: bool,
}

impl Service {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn port(&self, port: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|candidate| candidate.port == port)
    }

    pub fn selects(&self, workload: &Workload) -> bool {
        workload.namespace == self.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|selector| !selector.is_empty() && selector_matches(selector, &workload.labels))
    }
}

/// A waypoint Gateway (class `istio-waypoint`), as the mesh model reads it.
pub use crate::model::waypoint::Gateway as Waypoint;

/// A decoded object with the name reports use.
#[derive(Debug, Clone)]
pub struct Named<T> {
    pub namespace: String,
    pub name: String,
    /// RFC 3339 text sorts chronologically; Gateway API breaks precedence ties by age.
    pub created: String,
    pub spec: T,
}

impl<T> Named<T> {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// An AuthorizationPolicy, and whether the API server would have accepted it.
#[derive(Debug, Clone)]
pub struct Policy {
    pub policy: Named<AuthorizationPolicySpec>,
    /// Why admission rejects the policy (an invalid condition key, say); a rejected policy does
    /// not exist on the cluster and enforces nothing.
    pub rejected: Option<String>,
    /// The rules compiled for evaluation, once per policy rather than per request.
    pub rules: Vec<RuleMatch>,
}

impl Policy {
    pub fn new(policy: Named<AuthorizationPolicySpec>, rejected: Option<String>) -> Self {
        let rules = policy.spec.rules().iter().map(RuleMatch::new).collect();
        Policy { policy, rejected, rules }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// The mesh's trust domain (the model's), or the default where the input leaves it unknown.
    pub trust_domain: String,
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Application workloads: sources of requests and pod-address destinations.
    pub(super) workloads: Vec<Workload>,
    pub(super) ingress_gateways: Vec<Workload>,
    pub services: BTreeMap<(String, String), Service>,
    pub waypoints: BTreeMap<(String, String), Waypoint>,
    pub(super) policies: Vec<Policy>,
    pub virtual_services: Vec<Named<VirtualServiceSpec>>,
    pub destination_rules: Vec<Named<DestinationRuleSpec>>,
    pub http_routes: Vec<Named<HttpRouteSpec>>,
    pub request_authentications: Vec<Named<RequestAuthenticationSpec>>,
    /// Objects left out, and why.
    pub notes: Vec<String>,
    /// The objects among them whose spec could not be read: their rules were dropped from the
    /// evaluation, so no verdict built on it may say "equivalent" (see [`super::Verification::dropped`]).
    pub dropped: Vec<String>,
    /// Lookups built once (workloads and policies do not change after construction): workload
    /// and gateway keys, workloads and policies by namespace.
    by_key: HashMap<String, usize>,
    workloads_in: HashMap<String, Vec<usize>>,
    policies_in: HashMap<String, Vec<usize>>,
    /// By the Service they concern (namespace, then name): VirtualServices by host, HTTPRoutes by
    /// parent (oldest first), DestinationRules by host. Evaluating a request looks its routes up
    /// instead of scanning every route of the mesh.
    virtual_services_for: ServiceIndex,
    http_routes_for: ServiceIndex,
    destination_rules_for: ServiceIndex,
    /// The principals of every waypoint, for recognising a bypass protection.
    waypoint_principals: HashSet<String>,
    /// Named container ports by workload key, for named `targetPort`s.
    named_container_ports: HashMap<String, BTreeMap<String, u32>>,
}

/// Positions by Service namespace, then name; looked up without allocating a key.
type ServiceIndex = HashMap<String, HashMap<String, Vec<usize>>>;

fn index_position(index: &mut ServiceIndex, (name, namespace): (&str, &str), position: usize) {
    let positions = index.entry(namespace.to_string()).or_default().entry(name.to_string()).or_default();
    if positions.last() != Some(&position) {
        positions.push(position);
    }
}

fn positions<'a>(index: &'a ServiceIndex, service: &Service) -> &'a [usize] {
    index.get(&service.namespace).and_then(|names| names.get(&service.name)).map(Vec::as_slice).unwrap_or_default()
}

impl Topology {
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let model = MeshModel::new(snapshot);
        let mut topology =
            Topology { trust_domain: model.trust_domain.or_default().to_string(), ..Topology::default() };
        for namespace in snapshot.all(Kind::Namespace) {
            let name = namespace.metadata.name.clone().unwrap_or_default();
            topology.namespace_labels.insert(name, labels(namespace).clone());
        }
        topology.read_gateways(&model);
        topology.workloads = model.workloads().iter().filter(|workload| workload.gateway.is_none()).cloned().collect();
        for (position, workload) in topology.workloads.iter().enumerate() {
            topology.workloads_in.entry(workload.namespace.clone()).or_default().push(position);
        }
        let unlabelled: BTreeSet<&str> = topology
            .workloads
            .iter()
            .map(|workload| workload.namespace.as_str())
            .filter(|namespace| !topology.namespace_labels.contains_key(*namespace))
            .collect();
        for namespace in unlabelled {
            topology.notes.push(format!(
                "namespace {namespace} is not in the input: its labels are unknown, so pod templates there are taken as \
                 injected by nothing and enrolled nowhere (add the Namespace object, or describe it with --state)"
            ));
        }
        for object in snapshot.all(Kind::Service) {
            let service = read_service(object);
            topology.services.insert((service.namespace.clone(), service.name.clone()), service);
        }
        topology.resolve_named_target_ports(snapshot);
        for mut named in topology.decode::<AuthorizationPolicySpec>(snapshot, Kind::AuthorizationPolicy) {
            own_principals(&mut named.spec, &model.trust_domain);
            let rejected = rejection(&named.spec);
            topology.policies.push(Policy::new(named, rejected));
        }
        topology.virtual_services = topology.decode(snapshot, Kind::VirtualService);
        topology.destination_rules = topology.decode(snapshot, Kind::DestinationRule);
        topology.http_routes = topology.decode(snapshot, Kind::HttpRoute);
        topology.request_authentications = topology.decode(snapshot, Kind::RequestAuthentication);
        topology
            .http_routes
            .sort_by(|a, b| (&a.created, &a.namespace, &a.name).cmp(&(&b.created, &b.namespace, &b.name)));
        topology.index();
        topology
    }

    fn index(&mut self) {
        for (position, workload) in self.workloads.iter().chain(&self.ingress_gateways).enumerate() {
            self.by_key.insert(workload.key(), position);
        }
        for (position, policy) in self.policies.iter().enumerate() {
            self.policies_in.entry(policy.policy.namespace.clone()).or_default().push(position);
        }
        for (position, vs) in self.virtual_services.iter().enumerate() {
            for service in vs.spec.hosts.iter().filter_map(|host| service_of_host(host, &vs.namespace)) {
                index_position(&mut self.virtual_services_for, service, position);
            }
        }
        for (position, route) in self.http_routes.iter().enumerate() {
            for parent in route.spec.parent_refs.iter().filter(|parent| parent.is_service()) {
                let namespace = parent.namespace.as_deref().unwrap_or(&route.namespace);
                index_position(&mut self.http_routes_for, (&parent.name, namespace), position);
            }
        }
        for (position, rule) in self.destination_rules.iter().enumerate() {
            if let Some(service) = service_of_host(&rule.spec.host, &rule.namespace) {
                index_position(&mut self.destination_rules_for, service, position);
            }
        }
        self.waypoint_principals = self.waypoints.values().map(|waypoint| self.principal_of(waypoint)).collect();
    }

    /// The VirtualServices with a host that is `service`, in input order.
    pub fn virtual_services_for<'a>(
        &'a self,
        service: &Service,
    ) -> impl Iterator<Item = &'a Named<VirtualServiceSpec>> {
        positions(&self.virtual_services_for, service).iter().map(|position| &self.virtual_services[*position])
    }

    /// The HTTPRoutes with `service` as a parent (any port), oldest first.
    pub fn http_routes_for<'a>(&'a self, service: &Service) -> impl Iterator<Item = &'a Named<HttpRouteSpec>> {
        positions(&self.http_routes_for, service).iter().map(|position| &self.http_routes[*position])
    }

    /// The DestinationRules whose host is `service`, in input order.
    pub fn destination_rules_for<'a>(
        &'a self,
        service: &Service,
    ) -> impl Iterator<Item = &'a Named<DestinationRuleSpec>> {
        positions(&self.destination_rules_for, service).iter().map(|position| &self.destination_rules[*position])
    }

    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    pub fn ingress_gateways(&self) -> &[Workload] {
        &self.ingress_gateways
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Policies of one namespace.
    pub fn policies_in(&self, namespace: &str) -> impl Iterator<Item = &Policy> {
        self.policies_in.get(namespace).into_iter().flatten().map(|position| &self.policies[*position])
    }

    fn decode<T: serde::de::DeserializeOwned + Default>(&mut self, snapshot: &Snapshot, kind: Kind) -> Vec<Named<T>> {
        let mut decoded = Vec::new();
        for object in snapshot.all(kind) {
            match spec::<T>(object) {
                Ok(spec) => decoded.push(Named {
                    namespace: object.metadata.namespace.clone().unwrap_or_default(),
                    name: object.metadata.name.clone().unwrap_or_default(),
                    created: object
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|time| time.0.to_string())
                        .unwrap_or_default(),
                    spec,
                }),
                Err(err) => {
                    self.notes.push(format!("left out of the evaluation: {err}"));
                    self.dropped.push(err.to_string());
                }
            }
        }
        decoded
    }

    fn read_gateways(&mut self, model: &MeshModel) {
        for gateway in model.gateways() {
            if gateway.is_waypoint() {
                self.waypoints.insert((gateway.namespace.clone(), gateway.name.clone()), gateway.clone());
            } else if gateway.class == INGRESS_CLASS {
                self.ingress_gateways.push(Workload {
                    namespace: gateway.namespace.clone(),
                    name: gateway.name.clone(),
                    source: ObjectRef::new("Gateway", Some(&gateway.namespace), &gateway.name),
                    service_account: gateway.service_account.clone(),
                    labels: BTreeMap::from([(GATEWAY_NAME.to_string(), gateway.name.clone())]),
                    mode: Mode::IngressGateway,
                    gateway: Some(gateway.name.clone()),
                    principal: Some(self.principal_of(gateway)),
                });
            }
        }
    }

    /// A named `targetPort` is the container port of that name on each pod: policies at the pod
    /// (sidecar, ztunnel) see that number, a waypoint sees the Service port. Where the Service's
    /// pods disagree on the number, or do not declare it, the Service port stands in, and the
    /// notes say so.
    fn resolve_named_target_ports(&mut self, snapshot: &Snapshot) {
        let sources: HashMap<&ObjectRef, String> =
            self.workloads.iter().map(|workload| (&workload.source, workload.key())).collect();
        for info in crate::kinds::ALL.iter().filter(|info| info.namespaced) {
            for object in snapshot.all(info.kind) {
                if let Some(key) = sources.get(&ObjectRef::of(object)) {
                    self.named_container_ports.insert(key.clone(), container_ports(object));
                }
            }
        }
        let mut services = std::mem::take(&mut self.services);
        for service in services.values_mut() {
            let notes = self.resolve_target_ports(service);
            self.notes.extend(notes);
        }
        self.services = services;
    }

    /// Resolves the named target ports of `service` against its pods (see
    /// [`Self::resolve_named_target_ports`]); what cannot be resolved is returned as notes.
    pub fn resolve_target_ports(&self, service: &mut Service) -> Vec<String> {
        let mut notes = Vec::new();
        let endpoints: Vec<String> = self.endpoints(service).map(Workload::key).collect();
        for port in &mut service.ports {
            let Some(name) = &port.target_port_name else { continue };
            let numbers: BTreeSet<Option<u32>> = endpoints
                .iter()
                .map(|key| self.named_container_ports.get(key).and_then(|ports| ports.get(name)).copied())
                .collect();
            match numbers.iter().collect::<Vec<_>>().as_slice() {
                [Some(number)] => port.target_port = *number,
                [] => {}
                _ => notes.push(format!(
                    "Service {}/{}: targetPort {name} is not one container port on all its pods; the Service port \
                     {} stands in for it",
                    service.namespace, service.name, port.port
                )),
            }
        }
        notes
    }

    /// A client known only by a principal (`cluster.local/ns/NS/sa/SA`) that a policy names and no
    /// workload of the input has: a caller from outside the input. It has an identity, so it is in
    /// the mesh: ambient where its namespace is enrolled, else a sidecar client.
    pub fn principal_client(&self, principal: &str) -> Option<Workload> {
        let rest = principal.strip_prefix(&self.trust_domain)?.strip_prefix("/ns/")?;
        let (namespace, account) = rest.split_once("/sa/")?;
        if namespace.is_empty() || account.is_empty() || account.contains('/') || principal.contains('*') {
            return None;
        }
        let namespace_mode = self.namespace_labels.get(namespace).map(NamespaceMode::of_labels).unwrap_or_default();
        let mode = if namespace_mode.ambient { Mode::Ambient } else { Mode::Sidecar };
        Some(Workload {
            source: ObjectRef::new("ServiceAccount", Some(namespace), account),
            namespace: namespace.into(),
            name: format!("sa/{account}"),
            service_account: account.into(),
            labels: BTreeMap::new(),
            mode,
            gateway: None,
            principal: Some(principal.to_string()),
        })
    }

    pub fn workload(&self, key: &str) -> Option<&Workload> {
        let position = *self.by_key.get(key)?;
        self.workloads.get(position).or_else(|| self.ingress_gateways.get(position - self.workloads.len()))
    }

    /// An application workload (not a gateway) by key: what a pod address names.
    pub fn application_workload(&self, key: &str) -> Option<&Workload> {
        self.by_key.get(key).and_then(|position| self.workloads.get(*position))
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&(namespace.to_string(), name.to_string()))
    }

    /// The workloads behind a Service.
    pub fn endpoints<'a>(&'a self, service: &'a Service) -> impl Iterator<Item = &'a Workload> + 'a {
        let positions = self.workloads_in.get(&service.namespace).map(Vec::as_slice).unwrap_or_default();
        positions.iter().map(|position| &self.workloads[*position]).filter(move |workload| service.selects(workload))
    }

    /// The waypoint a Service uses, if any: `istio.io/use-waypoint` on the Service, else on its
    /// namespace (`none` opts out), naming a waypoint Gateway that exists and serves Service
    /// traffic. A label naming no waypoint activates nothing, and a headless Service has no
    /// address for a waypoint to capture.
    pub fn waypoint_of(&self, service: &Service) -> Option<&Waypoint> {
        if service.headless {
            return None; // no VIP to capture: traffic goes to pod addresses
        }
        let namespace_labels = self.namespace_labels.get(&service.namespace);
        let (name, waypoint_namespace) = match service.labels.get(USE_WAYPOINT) {
            Some(name) => (name, service.labels.get(USE_WAYPOINT_NAMESPACE)),
            None => {
                let labels = namespace_labels?;
                (labels.get(USE_WAYPOINT)?, labels.get(USE_WAYPOINT_NAMESPACE))
            }
        };
        if name == DATAPLANE_NONE {
            return None;
        }
        let waypoint_namespace = waypoint_namespace.cloned().unwrap_or_else(|| service.namespace.clone());
        self.waypoints.get(&(waypoint_namespace, name.clone())).filter(|waypoint| waypoint.serves_services())
    }

    /// The jwtRules that validate tokens at a workload's own proxy: its namespace's and the root
    /// namespace's RequestAuthentications without targetRefs whose selector (if any) matches.
    pub fn workload_jwt_rules(&self, workload: &Workload) -> Vec<&JwtRule> {
        self.request_authentications
            .iter()
            .filter(|ra| ra.namespace == workload.namespace || ra.namespace == ROOT_NAMESPACE)
            .filter(|ra| !ra.spec.uses_target_refs())
            .filter(|ra| ra.spec.selector_labels().is_none_or(|selector| selector_matches(selector, &workload.labels)))
            .flat_map(|ra| &ra.spec.jwt_rules)
            .collect()
    }

    /// The jwtRules that validate tokens at a waypoint for `service`: RequestAuthentications whose
    /// targetRefs name the Service or the waypoint Gateway.
    pub fn waypoint_jwt_rules(&self, service: &Service, waypoint: &Waypoint) -> Vec<&JwtRule> {
        self.request_authentications
            .iter()
            .filter(|ra| {
                ra.spec.target_refs().any(|target| {
                    let namespace = target.namespace.as_deref().unwrap_or(&ra.namespace);
                    let names_service = target.kind == "Service"
                        && matches!(target.group.as_str(), "" | "core")
                        && (namespace, target.name.as_str()) == (service.namespace.as_str(), service.name.as_str());
                    let names_waypoint = target.kind == "Gateway"
                        && (namespace, target.name.as_str()) == (waypoint.namespace.as_str(), waypoint.name.as_str());
                    names_service || names_waypoint
                })
            })
            .flat_map(|ra| &ra.spec.jwt_rules)
            .collect()
    }

    pub fn ingress_uses_waypoint(service: &Service) -> bool {
        service.labels.get(INGRESS_USE_WAYPOINT).map(String::as_str) == Some("true")
    }

    /// The identity ztunnel sees behind a gateway: its service account in the mesh's trust domain.
    pub fn principal_of(&self, gateway: &Waypoint) -> String {
        principal_in(&self.trust_domain, &gateway.namespace, &gateway.service_account)
    }

    pub fn is_waypoint_principal(&self, principal: &str) -> bool {
        self.waypoint_principals.contains(principal)
    }
}

/// Rewrites the principals a policy names in the trust domain's aliases, or in `cluster.local`, to
/// the mesh's trust domain, as istiod does when it builds the proxies' configuration (see
/// [`crate::model::identity::TrustDomain::own_principal`]): workloads only ever present the mesh's
/// own trust domain, so this is what makes such a principal match them.
fn own_principals(spec: &mut AuthorizationPolicySpec, trust_domain: &crate::model::identity::TrustDomain) {
    let rewrite = |principals: &mut Vec<String>| {
        for principal in principals.iter_mut() {
            *principal = trust_domain.own_principal(principal);
        }
    };
    for rule in spec.rules.iter_mut().flatten() {
        for from in &mut rule.from {
            rewrite(&mut from.source.principals);
            rewrite(&mut from.source.not_principals);
        }
        for condition in rule.when.iter_mut().filter(|condition| condition.key == "source.principal") {
            rewrite(&mut condition.values);
            rewrite(&mut condition.not_values);
        }
    }
}

/// Admission rejects an AuthorizationPolicy with an unknown condition key (the guide's Step 5.3
/// `source.workload_name`), so such a policy never reaches a proxy.
fn rejection(spec: &AuthorizationPolicySpec) -> Option<String> {
    let invalid: Vec<&str> = spec
        .rules()
        .iter()
        .flat_map(|rule| rule.when.iter())
        .map(|condition| condition.key.as_str())
        .filter(|key| !is_valid_condition_key(key))
        .collect();
    (!invalid.is_empty()).then(|| format!("invalid condition key {}", invalid.join(", ")))
}

/// The named container ports of a pod or of a controller's pod template.
fn container_ports(object: &DynamicObject) -> BTreeMap<String, u32> {
    let spec = object.data.get("spec");
    let pod_spec = ["/template/spec", "/jobTemplate/spec/template/spec", ""]
        .iter()
        .filter_map(|pointer| spec.and_then(|spec| spec.pointer(pointer)))
        .find(|pod_spec| pod_spec.get("containers").is_some());
    let containers = pod_spec.and_then(|pod_spec| pod_spec.get("containers")).and_then(Value::as_array);
    containers
        .into_iter()
        .flatten()
        .flat_map(|container| container.get("ports").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|port| {
            let name = port.get("name").and_then(Value::as_str)?;
            let number = port.get("containerPort").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok())?;
            Some((name.to_string(), number))
        })
        .collect()
}

pub fn read_service(object: &DynamicObject) -> Service {
    let spec = object.data.get("spec").cloned().unwrap_or(Value::Null);
    let selector = spec.get("selector").and_then(|selector| serde_json::from_value(selector.clone()).ok());
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|port| {
                    let number = port.get("port").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok())?;
                    let target_port = port
                        .get("targetPort")
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(number);
                    Some(ServicePort {
                        name: port.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                        port: number,
                        target_port,
                        target_port_name: port.get("targetPort").and_then(Value::as_str).map(str::to_string),
                        app_protocol: port.get("appProtocol").and_then(Value::as_str).map(str::to_string),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Service {
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
        labels: labels(object).clone(),
        selector,
        ports,
        headless: spec.get("clusterIP").and_then(Value::as_str) == Some("None"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled, istio.io/use-waypoint: wp}}
---
apiVersion: v1
kind: Pod
metadata:
  name: api-7d9f-abcde
  namespace: shop
  labels: {app: api, pod-template-hash: 7d9f}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api-7d9f, uid: x}]
spec: {serviceAccountName: api, containers: [{name: api}, {name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: api-7d9f-fghij
  namespace: shop
  labels: {app: api, pod-template-hash: 7d9f}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api-7d9f, uid: x}]
spec: {serviceAccountName: api, containers: [{name: api}, {name: istio-proxy}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template: {metadata: {labels: {app: api}}, spec: {containers: [{name: api}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: shop}
spec:
  selector: {matchLabels: {app: batch}}
  template: {metadata: {labels: {app: batch}, annotations: {sidecar.istio.io/inject: 'false'}}, spec: {containers: [{name: b}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: wp-1, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: wp}}
spec: {containers: [{name: istio-proxy}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api}, ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp-db, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: api-direct, namespace: shop, labels: {istio.io/use-waypoint: none}}
spec: {selector: {app: api}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: elsewhere, namespace: unknown}
spec:
  selector: {matchLabels: {app: e}}
  template: {metadata: {labels: {app: e}}, spec: {containers: [{name: e}]}}
";

    #[test]
    fn workloads_modes_services_and_waypoints_come_from_the_objects() {
        let objects = crate::snapshot::parse_documents(std::path::Path::new("t.yaml"), CLUSTER).unwrap();
        let topology = Topology::from_snapshot(&Snapshot::from_objects(objects));
        let workloads: Vec<(String, Mode)> = topology.workloads().iter().map(|w| (w.key(), w.mode)).collect();
        assert_eq!(
            workloads,
            vec![
                ("shop/api".into(), Mode::Sidecar),
                ("shop/batch".into(), Mode::OutsideMesh),
                ("unknown/elsewhere".into(), Mode::OutsideMesh)
            ],
            "replicas are one workload, the Deployment with pods is not repeated, the waypoint pod is no workload"
        );
        assert_eq!(
            topology.workload("shop/api").and_then(Workload::principal).as_deref(),
            Some("cluster.local/ns/shop/sa/api")
        );
        let api = topology.service("shop", "api").unwrap();
        assert_eq!(api.port(80).map(|port| (port.target_port, port.is_http())), Some((8080, true)));
        assert_eq!(api.port(5432).map(ServicePort::is_http), Some(false));
        assert_eq!(
            topology.waypoint_of(api).map(|w| topology.principal_of(w)).as_deref(),
            Some("cluster.local/ns/shop/sa/wp")
        );
        assert!(topology.waypoint_of(topology.service("shop", "api-direct").unwrap()).is_none(), "opted out");
        assert_eq!(topology.endpoints(api).count(), 1);
        assert!(
            topology.notes.iter().any(|note| note.contains("namespace unknown is not in the input")),
            "{:?}",
            topology.notes
        );
    }

    #[test]
    fn malformed_objects_are_noted_and_never_stop_an_evaluation() {
        let objects = crate::snapshot::parse_documents(
            std::path::Path::new("bad.yaml"),
            "
apiVersion: v1
kind: Service
metadata: {name: odd, namespace: ns}
spec: {selector: 7, ports: [{port: http}, {port: -1}, {name: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, labels: {app: odd}}
spec: {containers: istio-proxy, serviceAccountName: [a]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: ns}
spec: {action: SOMETIMES, rules: 3}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: ns}
spec: {hosts: [odd], http: [{match: [{uri: {glob: '*'}}]}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: ns}
spec: {parentRefs: [{kind: Service}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: ns}
spec: {template: 5}
",
        )
        .unwrap();
        let snapshot = Snapshot::from_objects(objects);
        let topology = Topology::from_snapshot(&snapshot);
        assert_eq!(
            topology.notes.iter().filter(|note| note.contains("left out of the evaluation")).count(),
            3,
            "{:#?}",
            topology.notes
        );
        assert!(
            topology.service("ns", "odd").is_some_and(|service| service.ports.is_empty() && service.selector.is_none())
        );
        let verification = crate::equivalence::verify(&snapshot, &snapshot, None);
        assert!(verification.differences.is_empty());
    }
}
