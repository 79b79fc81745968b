//! The one picture of the mesh that the check, the translator and the evaluator all read.
//!
//! Built once from a [`Snapshot`]: the trust domain and where it came from ([`identity`]), each
//! namespace's data-plane labels, each live pod's facts, the workloads (pods grouped by their
//! controller, and pod templates of controllers without pods), the gateways and waypoints with the
//! identity they run as, and why each namespace needs a waypoint ([`waypoint`]). The rules that
//! decide a pod's data plane live in [`dataplane`], once.
//!
//! These facts used to be derived three times, by the check, the translator and the evaluator,
//! and the three disagreed on trust domains, waypoint identities, native sidecars, injection
//! labels and the waypoint decision. What is specific to one consumer (the check's readiness
//! counts, the evaluator's Services and routes) stays with it; what is a fact of the mesh is here.

pub mod dataplane;
pub mod identity;
pub mod waypoint;

use crate::equivalence::topology::ROOT_NAMESPACE;
use std::collections::{BTreeMap, BTreeSet};

use kube_core::DynamicObject;
use serde_json::Value;

use self::dataplane::{
    NamespaceMode, controller_selector, enrolled, hbone_enabled, injects, is_ztunnel, proxy_container, service_account,
    template_metadata, without_hashes, workload_name_of_pod,
};
use self::identity::TrustDomain;
use self::waypoint::{CLASSIC_INGRESS_GATEWAY, Gateway, ISTIO_GATEWAY_LABEL, WaypointReason, is_gateway};
use crate::kinds::Kind;
use crate::mesh::authz::AuthorizationPolicySpec;
use crate::mesh::gateway_api::{HttpRouteSpec, ParentRef};
use crate::mesh::labels::{AMBIENT_REDIRECTION, GATEWAY_NAME, SIDECAR_INJECT};
use crate::mesh::networking::{VirtualServiceSpec, service_of_host};
use crate::mesh::{ObjectRef, annotations, labels, selector_matches, spec};
use crate::snapshot::Snapshot;

/// How a workload's traffic is handled, derived per workload (not per namespace), so that every
/// intermediate state of a migration can be described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// An `istio-proxy` container owns the pod's traffic, even in an ambient namespace.
    Sidecar,
    /// Enrolled in ambient and without sidecar: ztunnel owns the pod's traffic.
    Ambient,
    /// An ingress gateway: a Gateway API gateway (class `istio`), or a classic gateway deployment
    /// (`istio: ingressgateway`): its own Envoy, not captured by ztunnel. It routes by the
    /// VirtualServices bound to its Gateway, never by the mesh-bound ones (`gateways` absent or
    /// `mesh`) that a sidecar reads.
    IngressGateway,
    /// No proxy at all: plaintext, no identity.
    OutsideMesh,
}

/// A workload as policies and requests see it: the pods of one controller (or one pod template
/// that will become pods), with one service account, one set of labels and one data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    /// The pod or controller it was read from.
    pub source: ObjectRef,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub mode: Mode,
    /// The Gateway API gateway whose pod this is (`gateway.networking.k8s.io/gateway-name`).
    pub gateway: Option<String>,
    /// The principal policies see; None outside the mesh (no mTLS, no identity) or when the trust
    /// domain is unknown.
    pub principal: Option<String>,
}

impl Workload {
    /// `namespace/name`, how requests and reports name the workload.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn principal(&self) -> Option<String> {
        self.principal.clone()
    }

    pub fn has_sidecar(&self) -> bool {
        self.mode == Mode::Sidecar
    }
}

/// The facts of one pod the check reports on.
#[derive(Debug, Clone)]
pub struct Pod<'a> {
    pub object: &'a DynamicObject,
    pub namespace: &'a str,
    pub name: &'a str,
    /// An `istio-proxy` container, or a native sidecar (see [`dataplane::proxy_container`]).
    pub sidecar: bool,
    /// The sidecar's proxy config enables HBONE.
    pub hbone: bool,
    /// Phase Running and condition Ready.
    pub ready: bool,
    /// The CNI redirects its traffic to ztunnel.
    pub redirected: bool,
    /// Pod of a Gateway API gateway (ingress gateway or waypoint).
    pub gateway: Option<&'a str>,
    pub node: Option<&'a str>,
    pub service_account: String,
    pub labels: &'a BTreeMap<String, String>,
}

impl<'a> Pod<'a> {
    pub fn of(object: &'a DynamicObject) -> Self {
        let pod_spec = object.data.get("spec").unwrap_or(&Value::Null);
        let proxy = proxy_container(pod_spec);
        let status = object.data.get("status");
        let phase = status.and_then(|s| s.get("phase")).and_then(Value::as_str);
        let ready_condition =
            status.and_then(|s| s.get("conditions")).and_then(Value::as_array).into_iter().flatten().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            });
        let pod_labels = labels(object);
        Pod {
            object,
            namespace: object.metadata.namespace.as_deref().unwrap_or_default(),
            name: object.metadata.name.as_deref().unwrap_or_default(),
            sidecar: proxy.is_some(),
            hbone: proxy.is_some_and(hbone_enabled),
            ready: phase == Some("Running") && ready_condition,
            redirected: annotations(object).get(AMBIENT_REDIRECTION).map(String::as_str) == Some("enabled"),
            gateway: pod_labels.get(GATEWAY_NAME).map(String::as_str),
            node: pod_spec.get("nodeName").and_then(Value::as_str),
            service_account: service_account(pod_spec),
            labels: pod_labels,
        }
    }

    /// Finished pods (Succeeded/Failed) and pods being deleted do not count.
    pub fn is_live(&self) -> bool {
        let phase = self.object.data.pointer("/status/phase").and_then(Value::as_str);
        self.object.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
    }

    /// The controller the pod belongs to, for grouping (see [`dataplane::workload_name_of_pod`]).
    pub fn workload(&self) -> String {
        workload_name_of_pod(self.object)
    }
}

/// The mesh, as the snapshot shows it.
pub struct MeshModel<'a> {
    pub snapshot: &'a Snapshot,
    pub trust_domain: TrustDomain,
    /// The one namespace this model describes ([`MeshModel::of_namespace`]); None: the mesh.
    only: Option<String>,
    namespaces: BTreeMap<String, NamespaceMode>,
    /// Live pods, by namespace.
    pods: BTreeMap<String, Vec<Pod<'a>>>,
    /// Every workload, gateway pods included, sorted by key.
    workloads: Vec<Workload>,
    gateways: Vec<Gateway>,
    reasons: BTreeMap<String, Vec<WaypointReason>>,
}

impl<'a> MeshModel<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        Self::build(snapshot, None)
    }

    /// The model of `namespace` alone: what it says of `namespace` (labels, pods, workloads,
    /// gateways, waypoint reasons; the trust domain is the mesh's) is what [`MeshModel::new`]
    /// says, and it knows nothing of the other namespaces. Built from that namespace's objects
    /// (and the VirtualServices naming its Services), so a planner that asks about one
    /// namespace at a time does not model the whole mesh each time, which made planning
    /// quadratic in the namespaces.
    pub fn of_namespace(snapshot: &'a Snapshot, namespace: &str) -> Self {
        Self::build(snapshot, Some(namespace.to_string()))
    }

    fn build(snapshot: &'a Snapshot, only: Option<String>) -> Self {
        let trust_domain = TrustDomain::resolve(snapshot);
        let in_scope = |namespace: &str| only.as_deref().is_none_or(|only| only == namespace);
        let namespaces: BTreeMap<String, NamespaceMode> = snapshot
            .all(Kind::Namespace)
            .iter()
            .filter_map(|ns| Some((ns.metadata.name.clone()?, ns)))
            .filter(|(name, _)| in_scope(name))
            .map(|(name, ns)| (name, NamespaceMode::of(ns)))
            .collect();
        let mut pods: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for pod in objects_in(snapshot, Kind::Pod, only.as_deref()).map(Pod::of).filter(Pod::is_live) {
            pods.entry(pod.namespace.to_string()).or_default().push(pod);
        }
        let gateways = objects_in(snapshot, Kind::Gateway, only.as_deref()).filter_map(Gateway::of).collect();
        let mut model = MeshModel {
            snapshot,
            trust_domain,
            only,
            namespaces,
            pods,
            workloads: Vec::new(),
            gateways,
            reasons: BTreeMap::new(),
        };
        model.workloads = model.read_workloads();
        model.reasons = model.read_waypoint_reasons();
        model
    }

    /// The data-plane labels of a namespace (none for a namespace the input does not hold).
    pub fn namespace(&self, name: &str) -> NamespaceMode {
        self.namespaces.get(name).cloned().unwrap_or_default()
    }

    /// Namespaces the input holds a Namespace object for.
    pub fn described_namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(String::as_str)
    }

    pub fn pods_in(&self, namespace: &str) -> &[Pod<'a>] {
        self.pods.get(namespace).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn all_pods(&self) -> impl Iterator<Item = &Pod<'a>> {
        self.pods.values().flatten()
    }

    /// Every workload, gateway pods included.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    pub fn workloads_in<'s>(&'s self, namespace: &'s str) -> impl Iterator<Item = &'s Workload> + 's {
        self.workloads.iter().filter(move |workload| workload.namespace == namespace)
    }

    /// Gateway API gateways of every class.
    pub fn gateways(&self) -> &[Gateway] {
        &self.gateways
    }

    pub fn waypoints_in<'s>(&'s self, namespace: &'s str) -> impl Iterator<Item = &'s Gateway> + 's {
        self.gateways.iter().filter(move |gateway| gateway.is_waypoint() && gateway.namespace == namespace)
    }

    pub fn gateway(&self, namespace: &str, name: &str) -> Option<&Gateway> {
        self.gateways.iter().find(|gateway| gateway.namespace == namespace && gateway.name == name)
    }

    /// `<trust domain>/ns/<namespace>/sa/<service account>`, when the trust domain is known.
    pub fn principal(&self, namespace: &str, service_account: &str) -> Option<String> {
        self.trust_domain.principal(namespace, service_account)
    }

    /// The principal of the waypoint `name` of `namespace`: the service account of the deployed
    /// Gateway, or the Gateway's name for one not deployed yet.
    pub fn waypoint_principal(&self, namespace: &str, name: &str) -> Option<String> {
        let account = self.gateway(namespace, name).map_or(name, |gateway| gateway.service_account.as_str());
        self.principal(namespace, account)
    }

    /// Why `namespace` needs a waypoint, sorted; empty when it does not.
    pub fn waypoint_reasons(&self, namespace: &str) -> &[WaypointReason] {
        self.reasons.get(namespace).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn needs_waypoint(&self, namespace: &str) -> bool {
        !self.waypoint_reasons(namespace).is_empty()
    }

    /// Pods (grouped per controller, replicas deduplicated), and the pod templates of controllers
    /// none of whose pods are in the snapshot (an offline manifest has Deployments but no Pods).
    fn read_workloads(&self) -> Vec<Workload> {
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for pod in self.all_pods() {
            let namespace_mode = self.namespace(pod.namespace);
            let pod_spec = pod.object.data.get("spec").unwrap_or(&Value::Null);
            let sidecar = pod.sidecar && !is_ztunnel(pod_spec, pod.labels);
            let mode = mode_of(sidecar, enrolled(&namespace_mode, pod.labels));
            let workload = self.workload(
                pod.namespace,
                pod.workload(),
                ObjectRef::of(pod.object),
                pod.service_account.clone(),
                without_hashes(pod.labels.clone()),
                mode,
            );
            if seen.insert((workload.key(), workload.service_account.clone(), workload.labels.clone(), mode)) {
                found.push(workload);
            }
        }
        for kind in [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet, Kind::Job, Kind::CronJob] {
            for controller in objects_in(self.snapshot, kind, self.only.as_deref()) {
                let namespace = controller.metadata.namespace.clone().unwrap_or_default();
                if self.pods_in(&namespace).iter().any(|pod| owns(kind, controller, pod)) {
                    continue;
                }
                let pointer = if kind == Kind::CronJob { "/spec/jobTemplate/spec/template" } else { "/spec/template" };
                let template = controller.data.pointer(pointer).unwrap_or(&Value::Null);
                let pod_spec = template.get("spec").unwrap_or(&Value::Null);
                let (mut pod_labels, pod_annotations) = template_metadata(template);
                let namespace_mode = self.namespace(&namespace);
                let sidecar = (proxy_container(pod_spec).is_some()
                    || injects(&namespace_mode, &pod_labels, &pod_annotations))
                    && !is_ztunnel(pod_spec, &pod_labels);
                let mode = mode_of(sidecar, enrolled(&namespace_mode, &pod_labels));
                // The opt-out travels with the labels, so a later state change re-admits the
                // template the way the injector would.
                if let Some(inject) = pod_annotations.get(SIDECAR_INJECT) {
                    pod_labels.entry(SIDECAR_INJECT.to_string()).or_insert_with(|| inject.clone());
                }
                found.push(self.workload(
                    &namespace,
                    controller.metadata.name.clone().unwrap_or_default(),
                    ObjectRef::of(controller),
                    service_account(pod_spec),
                    pod_labels,
                    mode,
                ));
            }
        }
        found.sort_by_key(Workload::key);
        found
    }

    fn workload(
        &self,
        namespace: &str,
        name: String,
        source: ObjectRef,
        service_account: String,
        labels: BTreeMap<String, String>,
        mode: Mode,
    ) -> Workload {
        // A classic ingress gateway's pod has an `istio-proxy` container (injected with the
        // `gateway` template) but is no sidecar: it routes by the routes bound to its Gateway.
        let classic_ingress = labels.get(ISTIO_GATEWAY_LABEL).map(String::as_str) == Some(CLASSIC_INGRESS_GATEWAY);
        let mode = if mode == Mode::Sidecar && classic_ingress { Mode::IngressGateway } else { mode };
        let principal = if mode == Mode::OutsideMesh { None } else { self.principal(namespace, &service_account) };
        Workload {
            namespace: namespace.to_string(),
            gateway: labels.get(GATEWAY_NAME).cloned(),
            name,
            source,
            service_account,
            labels,
            mode,
            principal,
        }
    }

    fn read_waypoint_reasons(&self) -> BTreeMap<String, Vec<WaypointReason>> {
        let (snapshot, only) = (self.snapshot, self.only.as_deref());
        let mut reasons: BTreeMap<String, BTreeSet<WaypointReason>> = BTreeMap::new();
        let mut add = |namespace: &str, reason: WaypointReason| {
            if only.is_none_or(|only| only == namespace) {
                reasons.entry(namespace.to_string()).or_default().insert(reason);
            }
        };
        // The objects of `kind` that can give a reason to their own namespace.
        let own = |kind: Kind| objects_in(snapshot, kind, only);
        for object in own(Kind::AuthorizationPolicy) {
            let Ok(policy) = spec::<AuthorizationPolicySpec>(object) else { continue };
            let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
            if policy.uses_target_refs() {
                add(namespace, WaypointReason::TargetRefsPolicy(ObjectRef::of(object)));
            } else if !policy.selector_labels().is_some_and(is_gateway) && namespace != ROOT_NAMESPACE {
                // A mesh-wide policy is converted per namespace: the root namespace needs no waypoint.
                let attributes = policy.l7_attributes();
                if !attributes.is_empty() {
                    add(namespace, WaypointReason::L7Policy { policy: ObjectRef::of(object), attributes });
                }
            }
        }
        let services_known = snapshot.knows(Kind::Service);
        // A VirtualService of any namespace can route a Service of `only`.
        let virtual_services: Box<dyn Iterator<Item = &DynamicObject>> = match only {
            Some(namespace) => Box::new(snapshot.routing_into(Kind::VirtualService, namespace)),
            None => Box::new(snapshot.all(Kind::VirtualService).iter()),
        };
        for object in virtual_services {
            let Ok(route) = spec::<VirtualServiceSpec>(object) else { continue };
            if route.is_gateway_only() {
                continue;
            }
            let own = object.metadata.namespace.as_deref().unwrap_or_default();
            for (service, namespace) in route.hosts.iter().filter_map(|host| service_of_host(host, own)) {
                if !services_known || snapshot.get(Kind::Service, Some(namespace), service).is_some() {
                    add(namespace, WaypointReason::VirtualService(ObjectRef::of(object)));
                }
            }
        }
        for object in own(Kind::HttpRoute) {
            let service_parent =
                spec::<HttpRouteSpec>(object).is_ok_and(|route| route.parent_refs.iter().any(ParentRef::is_service));
            if service_parent {
                add(
                    object.metadata.namespace.as_deref().unwrap_or_default(),
                    WaypointReason::MeshRoute(ObjectRef::of(object)),
                );
            }
        }
        for kind in [Kind::RequestAuthentication, Kind::Telemetry, Kind::WasmPlugin] {
            for object in own(kind) {
                let mesh_wide = object.metadata.namespace.as_deref() == Some(ROOT_NAMESPACE)
                    && object.data.pointer("/spec/targetRefs").is_none();
                if mesh_wide {
                    continue; // mesh-wide defaults, not a reason for a waypoint in the root namespace
                }
                add(
                    object.metadata.namespace.as_deref().unwrap_or_default(),
                    WaypointReason::Extension(ObjectRef::of(object)),
                );
            }
        }
        for (namespace, mode) in &self.namespaces {
            if let Some(name) = &mode.use_waypoint {
                add(namespace, WaypointReason::Labelled(name.clone()));
            }
        }
        for waypoint in self.gateways.iter().filter(|gateway| gateway.is_waypoint()) {
            add(&waypoint.namespace, WaypointReason::Deployed(waypoint.name.clone()));
        }
        reasons.into_iter().map(|(namespace, reasons)| (namespace, reasons.into_iter().collect())).collect()
    }
}

/// The objects of `kind` in `only` (an object without a namespace counts for the empty one),
/// or all of them.
fn objects_in<'s>(
    snapshot: &'s Snapshot,
    kind: Kind,
    only: Option<&str>,
) -> Box<dyn Iterator<Item = &'s DynamicObject> + 's> {
    match only {
        Some(namespace) if !namespace.is_empty() => Box::new(snapshot.in_namespace(kind, namespace)),
        Some(_) => Box::new(
            snapshot
                .all(kind)
                .iter()
                .filter(|object| object.metadata.namespace.as_deref().unwrap_or_default().is_empty()),
        ),
        None => Box::new(snapshot.all(kind).iter()),
    }
}

/// The label the Job controller puts on a Job's pods, naming the Job.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Whether `pod` is one of `controller`'s: selected by a Deployment's, StatefulSet's or
/// DaemonSet's selector; labelled with a Job's name (its selector is generated by the API server,
/// so a manifest has none); of a Job named after a CronJob (`<cronjob>-<schedule time>`).
fn owns(kind: Kind, controller: &DynamicObject, pod: &Pod) -> bool {
    let name = controller.metadata.name.as_deref().unwrap_or_default();
    let job = pod.labels.get(JOB_NAME_LABEL).or_else(|| pod.labels.get(LEGACY_JOB_NAME_LABEL));
    match kind {
        Kind::Job => job.is_some_and(|job| job == name),
        Kind::CronJob => job
            .and_then(|job| job.strip_prefix(name)?.strip_prefix('-'))
            .is_some_and(|suffix| !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_digit())),
        _ => {
            let selector = controller_selector(controller);
            !selector.is_empty() && selector_matches(&selector, pod.labels)
        }
    }
}

fn mode_of(sidecar: bool, enrolled: bool) -> Mode {
    match (sidecar, enrolled) {
        (true, _) => Mode::Sidecar,
        (false, true) => Mode::Ambient,
        (false, false) => Mode::OutsideMesh,
    }
}

#[cfg(test)]
mod tests;
