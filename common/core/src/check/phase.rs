//! Where each namespace stands in the migration, and whether it needs a waypoint.
//!
//! A namespace is in the highest phase whose condition and all earlier ones hold; phases that
//! concern a waypoint hold trivially where none is needed. `inconsistent` means a sequencing
//! rule of the guide was broken (a later step done before an earlier one); the `sequence-*`
//! findings say which.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube_core::DynamicObject;
use serde::Serialize;

use super::facts::service_parents;
use super::{Finding, NamespaceReport, PodCounts, Scope, Severity, ids};
use crate::kinds::Kind;
use crate::mesh::authz::AuthorizationPolicySpec;
use crate::mesh::networking::{DestinationRuleSpec, VirtualServiceSpec, service_of_host};
use crate::mesh::{ObjectRef, spec};
use crate::model::dataplane::NamespaceMode;
use crate::model::identity::principal_in;
use crate::model::waypoint::DEFAULT_WAYPOINT;
use crate::model::{MeshModel, Pod};
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    NotMeshed,
    Sidecar,
    SidecarHbone,
    WaypointDeployed,
    PoliciesMigrated,
    AmbientEnrolled,
    WaypointActive,
    Ambient,
    Inconsistent,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::NotMeshed => "not-meshed",
            Phase::Sidecar => "sidecar",
            Phase::SidecarHbone => "sidecar-hbone",
            Phase::WaypointDeployed => "waypoint-deployed",
            Phase::PoliciesMigrated => "policies-migrated",
            Phase::AmbientEnrolled => "ambient-enrolled",
            Phase::WaypointActive => "waypoint-active",
            Phase::Ambient => "ambient",
            Phase::Inconsistent => "inconsistent",
        }
    }
}

/// The mesh model plus the decoded configuration the checks read, computed once per evaluation.
pub struct MeshContext<'a> {
    pub model: MeshModel<'a>,
    /// Namespaces of the control plane, CNI and ztunnel: not application namespaces.
    pub control_plane_namespaces: BTreeSet<String>,
    pub policies: Vec<(&'a DynamicObject, AuthorizationPolicySpec)>,
    /// Positions in `policies` by namespace: [`MeshContext::policies_in`] is asked once or more
    /// per namespace, and a scan of the mesh's policies each time made the check quadratic.
    policies_by_namespace: HashMap<String, Vec<usize>>,
    pub virtual_services: Vec<(&'a DynamicObject, VirtualServiceSpec)>,
    pub destination_rules: Vec<(&'a DynamicObject, DestinationRuleSpec)>,
    /// Objects whose spec does not decode, reported once, as failures: a check that cannot read
    /// an object cannot say the mesh is ready.
    pub invalid: Vec<Finding>,
    /// The control plane runs the ambient profile (Step 2 done), so restarted sidecars get HBONE;
    /// None when the input holds no Istio resources.
    pub ambient_control_plane: Option<bool>,
}

fn decode_all<'a, T: serde::de::DeserializeOwned + Default>(
    objects: impl Iterator<Item = &'a DynamicObject>,
    invalid: &mut Vec<Finding>,
) -> Vec<(&'a DynamicObject, T)> {
    let mut decoded = Vec::new();
    for object in objects {
        match spec::<T>(object) {
            Ok(value) => decoded.push((object, value)),
            Err(message) => invalid.push(
                Finding::new("invalid-object", Severity::Fail, Some(ObjectRef::of(object)), message)
                    .fix("fix or delete the object; the API server of a real cluster would have rejected it"),
            ),
        }
    }
    decoded
}

impl<'a> MeshContext<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        Self::build(snapshot, None)
    }

    /// The context of `namespace` alone (see [`MeshModel::of_namespace`]): what it says of
    /// `namespace` (its labels, pods, waypoints, policies, the VirtualServices and subset rules
    /// for its Services, hence its [`milestones`]) is what [`MeshContext::new`] says, and it
    /// knows nothing of the other namespaces (nor of their invalid objects). The planners ask
    /// about one namespace at a time, on a state that changes between the questions.
    pub fn of_namespace(snapshot: &'a Snapshot, namespace: &str) -> Self {
        Self::build(snapshot, Some(namespace))
    }

    fn build(snapshot: &'a Snapshot, only: Option<&str>) -> Self {
        let mut control_plane_namespaces = crate::mesh::infrastructure_namespaces(snapshot);
        control_plane_namespaces.remove(crate::mesh::OPERATORS_NAMESPACE);
        let ambient_control_plane = crate::model::dataplane::ambient_control_plane(snapshot);
        let mut invalid = Vec::new();
        // What a question about `only` reads: its own policies, and the routes and rules that
        // name its Services.
        let policies = match only {
            Some(namespace) => decode_all(snapshot.in_namespace(Kind::AuthorizationPolicy, namespace), &mut invalid),
            None => decode_all(snapshot.all(Kind::AuthorizationPolicy).iter(), &mut invalid),
        };
        let routing = |kind: Kind| -> Box<dyn Iterator<Item = &'a DynamicObject>> {
            match only {
                Some(namespace) => Box::new(snapshot.routing_into(kind, namespace)),
                None => Box::new(snapshot.all(kind).iter()),
            }
        };
        let mut policies_by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        for (position, (object, _)) in policies.iter().enumerate() {
            if let Some(namespace) = &object.metadata.namespace {
                policies_by_namespace.entry(namespace.clone()).or_default().push(position);
            }
        }
        let virtual_services = decode_all(routing(Kind::VirtualService), &mut invalid);
        let destination_rules = decode_all(routing(Kind::DestinationRule), &mut invalid);
        let model = match only {
            None => MeshModel::new(snapshot),
            Some(namespace) => MeshModel::of_namespace(snapshot, namespace),
        };
        MeshContext {
            model,
            control_plane_namespaces,
            policies,
            policies_by_namespace,
            virtual_services,
            destination_rules,
            invalid,
            ambient_control_plane,
        }
    }

    pub fn labels(&self, namespace: &str) -> NamespaceMode {
        self.model.namespace(namespace)
    }

    pub fn pods_in(&self, namespace: &str) -> &[Pod<'a>] {
        self.model.pods_in(namespace)
    }

    /// Application pods of a namespace (gateway and waypoint pods excluded).
    pub fn app_pods(&self, namespace: &str) -> impl Iterator<Item = &Pod<'a>> {
        self.pods_in(namespace).iter().filter(|pod| pod.gateway.is_none())
    }

    pub fn policies_in<'s>(
        &'s self,
        namespace: &'s str,
    ) -> impl Iterator<Item = &'s (&'a DynamicObject, AuthorizationPolicySpec)> + 's {
        let positions = self.policies_by_namespace.get(namespace).map(Vec::as_slice).unwrap_or_default();
        positions.iter().map(|position| &self.policies[*position])
    }

    /// Mesh VirtualServices routing a Service of `namespace`.
    pub fn virtual_services_for<'s>(
        &'s self,
        namespace: &'s str,
    ) -> impl Iterator<Item = &'s (&'a DynamicObject, VirtualServiceSpec)> + 's {
        self.virtual_services.iter().filter(move |(object, spec)| {
            let own = object.metadata.namespace.as_deref().unwrap_or_default();
            !spec.is_gateway_only()
                && spec.hosts.iter().any(|host| service_of_host(host, own).is_some_and(|(_, ns)| ns == namespace))
        })
    }

    /// DestinationRules with subsets for Services of `namespace`.
    pub fn subset_rules_for<'s>(
        &'s self,
        namespace: &'s str,
    ) -> impl Iterator<Item = &'s (&'a DynamicObject, DestinationRuleSpec)> + 's {
        self.destination_rules.iter().filter(move |(object, spec)| {
            let own = object.metadata.namespace.as_deref().unwrap_or_default();
            !spec.subsets.is_empty() && service_of_host(&spec.host, own).is_some_and(|(_, ns)| ns == namespace)
        })
    }

    /// The application pods a Service of `namespace` selects (none for a missing Service or one
    /// without a selector).
    pub fn pods_behind(&self, snapshot: &Snapshot, namespace: &str, service: &str) -> Vec<&Pod<'a>> {
        let selector: BTreeMap<String, String> = snapshot
            .get(Kind::Service, Some(namespace), service)
            .and_then(|object| object.data.pointer("/spec/selector").cloned())
            .and_then(|selector| serde_json::from_value(selector).ok())
            .unwrap_or_default();
        if selector.is_empty() {
            return Vec::new();
        }
        self.app_pods(namespace).filter(|pod| crate::mesh::selector_matches(&selector, pod.labels)).collect()
    }

    /// The SPIFFE principal of a service account (in the default trust domain where the input
    /// leaves it unknown: the check reports on principals, it does not generate them).
    pub fn principal(&self, namespace: &str, service_account: &str) -> String {
        principal_in(self.model.trust_domain.or_default(), namespace, service_account)
    }

    /// Why `namespace` needs a waypoint, as the report prints it.
    pub fn waypoint_reasons(&self, namespace: &str) -> Vec<String> {
        self.model.waypoint_reasons(namespace).iter().map(ToString::to_string).collect()
    }
}

/// Namespaces the report covers.
pub fn namespaces_in_scope(snapshot: &Snapshot, context: &MeshContext, scope: &Scope) -> Vec<String> {
    let mut known: BTreeSet<String> = context.model.described_namespaces().map(str::to_string).collect();
    for info in crate::kinds::ALL.iter().filter(|info| info.namespaced) {
        for object in snapshot.all(info.kind) {
            if let Some(namespace) = &object.metadata.namespace {
                known.insert(namespace.clone());
            }
        }
    }
    match scope {
        Scope::Only(names) => names.clone(),
        Scope::All => known.into_iter().collect(),
        Scope::Mesh => known
            .into_iter()
            .filter(|ns| !context.control_plane_namespaces.contains(ns))
            .filter(|ns| {
                let labels = context.labels(ns);
                labels.injection
                    || labels.ambient
                    || labels.use_waypoint.is_some()
                    || context.pods_in(ns).iter().any(|pod| pod.sidecar)
                    || MESH_CONFIG_KINDS.iter().any(|kind| snapshot.in_namespace(*kind, ns).next().is_some())
            })
            .collect(),
    }
}

const MESH_CONFIG_KINDS: &[Kind] = &[
    Kind::VirtualService,
    Kind::DestinationRule,
    Kind::AuthorizationPolicy,
    Kind::PeerAuthentication,
    Kind::RequestAuthentication,
    Kind::Telemetry,
    Kind::WasmPlugin,
    Kind::Sidecar,
    Kind::EnvoyFilter,
    Kind::WorkloadEntry,
];

/// The facts behind the phases of one namespace.
#[derive(Debug, Clone, Default)]
pub struct Milestones {
    pub meshed: bool,
    pub hbone: bool,
    pub waypoint_deployed: bool,
    pub policies_migrated: bool,
    pub enrolled: bool,
    pub waypoint_active: bool,
    pub sidecars_gone: bool,
    pub replaced_config_gone: bool,
}

pub fn milestones(snapshot: &Snapshot, context: &MeshContext, namespace: &str, waypoint_needed: bool) -> Milestones {
    let labels = context.labels(namespace);
    let app_pods: Vec<&Pod> = context.app_pods(namespace).collect();
    let waypoint_names: Vec<&str> =
        context.model.waypoints_in(namespace).map(|gateway| gateway.name.as_str()).collect();
    let waypoint_exists = !waypoint_names.is_empty();
    let active = labels.use_waypoint.as_deref().is_some_and(|name| waypoint_names.contains(&name));
    Milestones {
        meshed: labels.injection || labels.ambient || app_pods.iter().any(|pod| pod.sidecar),
        hbone: hbone_ready(context, &app_pods),
        waypoint_deployed: !waypoint_needed || waypoint_exists,
        policies_migrated: !waypoint_needed || policies_migrated(snapshot, context, namespace),
        enrolled: labels.ambient,
        waypoint_active: !waypoint_needed || active,
        sidecars_gone: !labels.injection && !app_pods.iter().any(|pod| pod.sidecar),
        replaced_config_gone: !context
            .policies_in(namespace)
            .any(|(_, p)| !p.uses_target_refs() && !p.l7_attributes().is_empty())
            && context.virtual_services_for(namespace).next().is_none(),
    }
}

/// Every sidecar has HBONE, and something shows ambient is on: the control plane's profile or,
/// when the input lacks it, an HBONE sidecar or a redirected pod. An empty namespace under an
/// unknown control plane has not reached this phase.
fn hbone_ready(context: &MeshContext, app_pods: &[&Pod]) -> bool {
    let mut sidecars = app_pods.iter().filter(|pod| pod.sidecar);
    let evidence = match context.ambient_control_plane {
        Some(ambient) => ambient,
        None => app_pods.iter().any(|pod| pod.hbone || pod.redirected),
    };
    evidence && sidecars.all(|pod| pod.hbone)
}

/// Every L7 selector policy has a targetRefs counterpart, every mesh VirtualService an HTTPRoute
/// for its hosts, and targetRefs policies come with selector-based bypass protection.
fn policies_migrated(snapshot: &Snapshot, context: &MeshContext, namespace: &str) -> bool {
    let target_ref_policies: Vec<&(&DynamicObject, AuthorizationPolicySpec)> =
        context.policies_in(namespace).filter(|(_, policy)| policy.uses_target_refs()).collect();
    let covered = |name: &str| {
        target_ref_policies.iter().any(|(object, _)| {
            object.metadata.name.as_deref() == Some(&format!("{name}-waypoint"))
                || crate::mesh::annotations(object)
                    .get(crate::mesh::labels::SOURCE_ANNOTATION)
                    .is_some_and(|source| source.split(',').any(|s| s.trim().ends_with(&format!("/{name}"))))
        })
    };
    let policies_ok = context.policies_in(namespace).all(|(object, policy)| {
        policy.uses_target_refs()
            || policy.l7_attributes().is_empty()
            || covered(object.metadata.name.as_deref().unwrap_or_default())
    });
    let routed_services: BTreeSet<String> =
        snapshot.in_namespace(Kind::HttpRoute, namespace).flat_map(service_parents).collect();
    let routes_ok = context.virtual_services_for(namespace).all(|(object, spec)| {
        let own = object.metadata.namespace.as_deref().unwrap_or_default();
        spec.hosts
            .iter()
            .filter_map(|host| service_of_host(host, own))
            .filter(|(_, ns)| *ns == namespace)
            .all(|(service, _)| routed_services.contains(service))
    });
    let protection_ok = unprotected(snapshot, context, namespace).is_empty();
    policies_ok && routes_ok && protection_ok
}

/// The principals the namespace's waypoints run as (see [`crate::model::waypoint`]); the
/// guide's `waypoint` when none is deployed yet.
pub fn waypoint_principals(context: &MeshContext, namespace: &str) -> Vec<String> {
    let accounts: Vec<&str> =
        context.model.waypoints_in(namespace).map(|gateway| gateway.service_account.as_str()).collect();
    let accounts = if accounts.is_empty() { vec![DEFAULT_WAYPOINT] } else { accounts };
    accounts.iter().map(|account| context.principal(namespace, account)).collect()
}

/// The pods behind each Service a targetRefs policy of `namespace` attaches to.
pub fn waypoint_guarded_pods<'c>(
    snapshot: &Snapshot,
    context: &'c MeshContext,
    namespace: &str,
) -> Vec<(String, Vec<&'c Pod<'c>>)> {
    let mut services: BTreeSet<String> = BTreeSet::new();
    for (_, policy) in context.policies_in(namespace).filter(|(_, policy)| policy.uses_target_refs()) {
        for target in policy.all_target_refs() {
            if target.kind == "Service" {
                services.insert(target.name.clone());
            }
        }
    }
    services
        .into_iter()
        .map(|service| {
            let pods = context.pods_behind(snapshot, namespace, &service);
            (service, pods)
        })
        .collect()
}

/// How a pod is protected from traffic that skips its waypoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// No selector-based DENY with `notPrincipals` selects the pod.
    Missing,
    /// Protected, but the waypoint's own principal is not exempt: the waypoint is denied too.
    DeniesWaypoint,
    Protected,
}

/// Correct bypass protection (AMBIENT-NOTES erratum 1) is a selector-based (or namespace-wide)
/// DENY, enforced by ztunnel on the pod, whose rule denies every source outside
/// `from.source.notPrincipals`, and those must include the waypoint.
pub fn protection_of(context: &MeshContext, pod: &Pod, waypoint_principals: &[String]) -> Protection {
    let mut best = Protection::Missing;
    for (_, policy) in context.policies_in(pod.namespace) {
        let selects =
            policy.selector_labels().is_none_or(|selector| crate::mesh::selector_matches(selector, pod.labels));
        if policy.action != crate::mesh::authz::Action::Deny || policy.uses_target_refs() || !selects {
            continue;
        }
        for rule in policy.rules() {
            for from in &rule.from {
                let exempt = &from.source.not_principals;
                if exempt.is_empty() {
                    continue;
                }
                if waypoint_principals.iter().any(|principal| exempt.contains(principal)) {
                    return Protection::Protected;
                }
                best = Protection::DeniesWaypoint;
            }
        }
    }
    best
}

/// Principals a pod's bypass protection exempts although no workload needs to skip the waypoint
/// with them any more: every pod running as that principal has left sidecar mode (gateways
/// excluded: an ingress gateway skips the waypoint legitimately). Such callers can address the pod
/// directly and skip the waypoint's policies, which the protection exists to prevent.
pub fn stale_exemptions(context: &MeshContext, pod: &Pod, waypoint_principals: &[String]) -> Vec<String> {
    let mut stale = Vec::new();
    for (_, policy) in context.policies_in(pod.namespace) {
        let selects =
            policy.selector_labels().is_none_or(|selector| crate::mesh::selector_matches(selector, pod.labels));
        if policy.action != crate::mesh::authz::Action::Deny || policy.uses_target_refs() || !selects {
            continue;
        }
        let exempt =
            policy.rules().iter().flat_map(|rule| rule.from.iter()).flat_map(|from| from.source.not_principals.iter());
        for principal in exempt.filter(|principal| !waypoint_principals.contains(principal)) {
            let callers: Vec<&Pod> = context
                .model
                .all_pods()
                .filter(|caller| &context.principal(caller.namespace, &caller.service_account) == principal)
                .collect();
            let left_sidecar_mode =
                !callers.is_empty() && callers.iter().all(|caller| !caller.sidecar && caller.gateway.is_none());
            if left_sidecar_mode && !stale.contains(principal) {
                stale.push(principal.clone());
            }
        }
    }
    stale
}

/// Pods behind waypoint-enforced Services that lack (correct) bypass protection, by Service.
pub fn unprotected(snapshot: &Snapshot, context: &MeshContext, namespace: &str) -> Vec<(String, String, Protection)> {
    let principals = waypoint_principals(context, namespace);
    waypoint_guarded_pods(snapshot, context, namespace)
        .into_iter()
        .flat_map(|(service, pods)| {
            let principals = &principals;
            pods.into_iter().filter_map(move |pod| match protection_of(context, pod, principals) {
                Protection::Protected => None,
                other => Some((service.clone(), pod.name.to_string(), other)),
            })
        })
        .collect()
}

/// The phase and counts of one namespace.
pub fn namespace_report(snapshot: &Snapshot, context: &MeshContext, namespace: &str) -> NamespaceReport {
    let reasons = context.waypoint_reasons(namespace);
    let needed = !reasons.is_empty();
    let facts = milestones(snapshot, context, namespace, needed);
    let pods = context.pods_in(namespace);
    let counts = PodCounts {
        total: pods.len(),
        sidecar: pods.iter().filter(|pod| pod.sidecar).count(),
        hbone: pods.iter().filter(|pod| pod.hbone).count(),
        ambient: pods.iter().filter(|pod| pod.redirected).count(),
    };
    let phase =
        if !sequencing(snapshot, context, namespace).is_empty() { Phase::Inconsistent } else { phase_of(&facts) };
    NamespaceReport {
        name: namespace.to_string(),
        phase,
        waypoint_needed: needed,
        waypoint_reasons: reasons,
        pods: counts,
        waypoints: super::sizing::waypoints(snapshot, context, namespace),
    }
}

/// The highest phase whose condition and all earlier ones hold.
pub fn phase_of(facts: &Milestones) -> Phase {
    let ladder = [
        (facts.meshed, Phase::Sidecar),
        (facts.hbone, Phase::SidecarHbone),
        (facts.waypoint_deployed, Phase::WaypointDeployed),
        (facts.policies_migrated, Phase::PoliciesMigrated),
        (facts.enrolled, Phase::AmbientEnrolled),
        (facts.waypoint_active, Phase::WaypointActive),
        (facts.sidecars_gone && facts.replaced_config_gone, Phase::Ambient),
    ];
    let mut phase = Phase::NotMeshed;
    for (holds, next) in ladder {
        if !holds {
            break;
        }
        phase = next;
    }
    phase
}

/// The guide's ordering rules, broken.
pub fn sequencing(snapshot: &Snapshot, context: &MeshContext, namespace: &str) -> Vec<Finding> {
    let labels = context.labels(namespace);
    let reference = Some(ObjectRef::new("Namespace", None, namespace));
    let mut findings = Vec::new();
    let without_hbone = context.app_pods(namespace).filter(|pod| pod.sidecar && !pod.hbone).count();
    if labels.ambient && without_hbone > 0 {
        findings.push(
            Finding::new(
                ids::SEQUENCE_AMBIENT_BEFORE_HBONE,
                Severity::Fail,
                reference.clone(),
                format!("{namespace} is enrolled in ambient but {without_hbone} sidecar pod(s) lack HBONE: ambient clients cannot reach them"),
            )
            .fix(format!("restart the workloads of {namespace} under the ambient control plane (Step 3), or remove the istio.io/dataplane-mode label")),
        );
    }
    if labels.use_waypoint.is_some() && !labels.ambient {
        findings.push(
            Finding::new(
                ids::SEQUENCE_WAYPOINT_BEFORE_AMBIENT,
                Severity::Fail,
                reference.clone(),
                format!("{namespace} has istio.io/use-waypoint but is not enrolled in ambient (Step 7 before Step 6)"),
            )
            .fix(format!(
                "remove istio.io/use-waypoint from {namespace} until it is labelled istio.io/dataplane-mode=ambient"
            )),
        );
    }
    let reasons = context.waypoint_reasons(namespace);
    let facts = milestones(snapshot, context, namespace, !reasons.is_empty());
    // Injection turned off for the namespace, or some workloads already running without a sidecar.
    let sidecars_removed = labels.ambient && (!labels.injection || context.app_pods(namespace).any(|pod| !pod.sidecar));
    if sidecars_removed && !facts.waypoint_active {
        findings.push(
            Finding::new(
                ids::SEQUENCE_SIDECARS_REMOVED_BEFORE_WAYPOINT,
                Severity::Fail,
                reference,
                format!(
                    "sidecars are being removed in {namespace} but its waypoint is not active, so nothing enforces: {}",
                    reasons.join("; ")
                ),
            )
            .fix(format!("re-enable injection in {namespace} and restart, or activate its waypoint (Step 7) first")),
        );
    }
    findings
}
