//! The plan of `oc ambient-enable`: the guide's Steps 2, 3, 6 and 9, the ones that change the
//! data plane rather than the mesh configuration (Steps 4, 5, 7 and 8 are `oc ambient-waypoint`'s).
//!
//! The planner works on a projected state: it starts from the snapshot and simulates each action
//! as it adds it ([`crate::change::apply_in_place`]), so a later step sees what an earlier one did (Step 3
//! restarts under the ambient control plane Step 2 sets up, Step 6 finds the HBONE sidecars Step 3
//! gives). Every action is planned only when the projected state still needs it, which makes a
//! plan idempotent: planning the state it leads to plans nothing, and a namespace already past a
//! step gets nothing for it.
//!
//! The preconditions the guide states as sequencing rules are decided with the check's own
//! functions ([`crate::check::phase`]): where one does not hold and the suite's other command must
//! act first (a waypoint to deploy, policies to migrate), the plan stops for that namespace with a
//! [`Stop`] naming the command, rather than failing. The gates ([`super::gate`]) then replay the
//! plan to find what the verifier sees change on the way.
//!
//! Step 2 applies partial objects, meant for server-side apply with field manager `oc-ambient`:
//! only the fields the migration owns (profile, trusted ztunnel namespace), so the rest of the
//! user's Istio is kept without the planner copying it.

use std::collections::{BTreeMap, BTreeSet};

use kube_core::DynamicObject;
use serde_json::{Value, json};

use super::{Action, Plan, PlanError, Stop, Wait};
use crate::change::{Change, ResourceRef, apply_in_place, holds, merge};
use crate::check::ids;
use crate::check::phase::{MeshContext, milestones};
use crate::convert::{ConvertOptions, convert, narrowed_protections};
use crate::kinds::Kind;
use crate::mesh::authz::AuthorizationPolicySpec;
use crate::mesh::labels::{DATAPLANE_AMBIENT, DATAPLANE_MODE, ISTIO_INJECTION, ISTIO_REV, TLS_MODE, TLS_MODE_ISTIO};
use crate::mesh::{selector_matches, spec};
use crate::model::dataplane::{ambient_control_plane, controls};
use crate::model::{MeshModel, Pod};
use crate::snapshot::Snapshot;

/// The steps `oc ambient-enable` performs.
pub const ENABLE_STEPS: [u8; 4] = [2, 3, 6, 9];

/// What the user asked `oc ambient-enable` for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnableIntent {
    /// Application namespaces to migrate; none: only the cluster setup (Step 2).
    pub namespaces: Vec<String>,
    pub until: Until,
    /// `--step N`: only that step.
    pub only_step: Option<u8>,
    /// Where ZTunnel runs (`ztunnel` by default).
    pub ztunnel_namespace: String,
    /// `--monitoring`: Step 2 also creates the PodMonitor that scrapes ztunnel.
    pub monitoring: bool,
}

impl Default for EnableIntent {
    fn default() -> Self {
        EnableIntent {
            namespaces: Vec::new(),
            until: Until::default(),
            only_step: None,
            ztunnel_namespace: "ztunnel".into(),
            monitoring: false,
        }
    }
}

/// How far to take the namespaces (`--until`), named after the phase reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Until {
    /// Sidecars restarted with HBONE (Step 3).
    SidecarHbone,
    /// Namespaces labelled for ambient (Step 6), sidecars kept.
    AmbientEnrolled,
    /// Sidecars removed (Step 9).
    #[default]
    Ambient,
}

impl Until {
    fn last_step(self) -> u8 {
        match self {
            Until::SidecarHbone => 3,
            Until::AmbientEnrolled => 6,
            Until::Ambient => 9,
        }
    }
}

/// The plan of `oc ambient-enable` for `intent` (see the module docs). The plan is not gated yet:
/// run [`super::gate::gate`] on it before showing it.
pub fn plan_enable(snapshot: &Snapshot, intent: &EnableIntent) -> Result<Plan, PlanError> {
    if let Some(step) = intent.only_step.filter(|step| !ENABLE_STEPS.contains(step)) {
        return Err(PlanError::StepNotApplicable { step });
    }
    if snapshot.knows(Kind::Namespace) {
        let missing = intent.namespaces.iter().find(|ns| snapshot.get(Kind::Namespace, None, ns).is_none());
        if let Some(namespace) = missing {
            return Err(PlanError::NamespaceNotFound { namespace: namespace.clone() });
        }
    }
    let wanted = |step: u8| match intent.only_step {
        Some(only) => only == step,
        None => step <= intent.until.last_step(),
    };
    let mut planner = Planner { plan: Plan::new("enable"), state: snapshot.clone(), lane: None };
    if wanted(2) {
        planner.cluster_setup(&intent.ztunnel_namespace)?;
        if intent.monitoring {
            let monitor = crate::mesh::monitoring::ztunnel_pod_monitor(&intent.ztunnel_namespace);
            planner.monitor(2, monitor, "scrape ztunnel's metrics");
        }
    }
    for namespace in &intent.namespaces {
        planner.lane = Some(namespace.clone());
        let steps: [(u8, NamespaceStep); 3] =
            [(3, Planner::hbone_restarts), (6, Planner::enroll), (9, Planner::remove_sidecars)];
        for (_, step) in steps.iter().filter(|(number, _)| wanted(*number)) {
            if let Err(stop) = step(&mut planner, namespace) {
                planner.plan.stops.push(stop);
                break;
            }
        }
    }
    Ok(planner.plan)
}

/// One of the per-namespace steps; `Err` stops the namespace there.
type NamespaceStep = fn(&mut Planner, &str) -> Result<(), Stop>;

/// The plan so far and the state it leads to. A step returns `Err(Stop)` when the namespace
/// cannot go further in this plan.
pub(super) struct Planner {
    pub(super) plan: Plan,
    pub(super) state: Snapshot,
    /// The namespace being planned (None for cluster-wide steps): the lane of the actions planned
    /// for it ([`super::schedule`]).
    pub(super) lane: Option<String>,
}

impl Planner {
    pub(super) fn push(&mut self, step: u8, verb: &str, description: String, change: Change, wait: Option<Wait>) {
        let target = change.target().map(|target| reference_id(&target)).unwrap_or_default();
        let id = format!("step{step}:{verb}:{target}");
        self.push_action(Action { id, step, description, change, wait, lane: None });
    }

    /// Adds `action` in the current lane unless it changes a cluster-scoped object, and projects
    /// the state past it.
    pub(super) fn push_action(&mut self, mut action: Action) {
        let namespaced = action.change.target().is_ok_and(|target| target.owning_namespace().is_some());
        action.lane = self.lane.clone().filter(|_| namespaced);
        // A change the server would refuse leaves the projected state as it was; the gate finds
        // what that means for the plan.
        let _refused = apply_in_place(&mut self.state, &action.change);
        self.plan.actions.push(action);
    }

    /// `--monitoring`: applies a PodMonitor the suite generates (as every generated object, not
    /// over a hand edit), or stops when prometheus-operator's API is not served.
    pub(super) fn monitor(&mut self, step: u8, monitor: DynamicObject, purpose: &str) {
        if !matches!(self.state.coverage(Kind::PodMonitor), crate::snapshot::Coverage::Listed) {
            self.plan.stops.push(Stop {
                namespace: monitor.metadata.namespace.clone(),
                reason: "--monitoring: PodMonitors (monitoring.coreos.com/v1) are not served or not readable here: no monitor is created".into(),
                next: None,
            });
            return;
        }
        super::waypoint::apply_unless_held(self, step, Change::Apply { object: monitor }, purpose);
    }

    /// Restarts one workload and waits for its rollout, so at most one is in flight.
    fn restart(&mut self, step: u8, target: ResourceRef, why: &str) {
        let description = format!("restart {target} {why}");
        let wait = Some(Wait::RolledOut { target: target.clone() });
        self.push(step, "restart", description, Change::Restart { target }, wait);
    }

    /// Step 2: the control plane, the CNI and ztunnel in ambient mode.
    fn cluster_setup(&mut self, ztunnel_namespace: &str) -> Result<(), PlanError> {
        let istio = control_plane(&self.state)?.clone();
        let version = istio.data.pointer("/spec/version").cloned();
        let istio_fields = json!({"spec": {"profile": "ambient",
            "values": {"pilot": {"trustedZtunnelNamespace": ztunnel_namespace}}}});
        self.ensure(
            Kind::Istio,
            Some(&istio),
            "default",
            istio_fields,
            json!({}),
            "ambient profile, trusted ztunnel namespace",
        );

        let cni = self.state.all(Kind::IstioCni).first().cloned();
        let new_cni = json!({"spec": {"namespace": "istio-cni", "version": version}});
        self.ensure(
            Kind::IstioCni,
            cni.as_ref(),
            "default",
            json!({"spec": {"profile": "ambient"}}),
            new_cni,
            "ambient profile",
        );

        let namespace = self.state.get(Kind::Namespace, None, ztunnel_namespace).cloned();
        let labels = discovery_labels(&istio);
        let namespace_fields = if labels.is_empty() { json!({}) } else { json!({"metadata": {"labels": labels}}) };
        self.ensure(
            Kind::Namespace,
            namespace.as_ref(),
            ztunnel_namespace,
            namespace_fields,
            json!({}),
            "ztunnel's namespace",
        );

        let ztunnel = self.state.all(Kind::ZTunnel).first().cloned();
        // Sail's v1 ZTunnel has no profile (it is always ambient); v1alpha1, the guide's, needs one.
        let ztunnel_api = ztunnel
            .as_ref()
            .and_then(|object| object.types.as_ref())
            .map(|types| types.api_version.clone())
            .unwrap_or_else(|| api_version_to_create(&self.state, Kind::ZTunnel));
        let profile = ztunnel_api.ends_with("/v1alpha1").then_some("ambient");
        let ztunnel_fields = json!({"spec": {"namespace": ztunnel_namespace, "profile": profile, "version": version}});
        self.ensure(Kind::ZTunnel, ztunnel.as_ref(), "default", ztunnel_fields, json!({}), "ztunnel on every node");
        Ok(())
    }

    /// Applies `fields` to `existing` (or creates the object with `fields` and `created_with`)
    /// unless it already holds them; Sail resources are then awaited until healthy.
    fn ensure(
        &mut self,
        kind: Kind,
        existing: Option<&DynamicObject>,
        default_name: &str,
        fields: Value,
        created_with: Value,
        purpose: &str,
    ) {
        let fields = without_nulls(fields);
        let name = existing.and_then(|object| object.metadata.name.clone()).unwrap_or_else(|| default_name.into());
        let api_version = existing
            .and_then(|object| object.types.as_ref())
            .map(|types| types.api_version.clone())
            .unwrap_or_else(|| api_version_to_create(&self.state, kind));
        let mut object = json!({"apiVersion": api_version, "kind": kind.name(), "metadata": {"name": name}});
        merge(&mut object, fields);
        if let Some(existing) = existing {
            if holds(&serde_json::to_value(existing).unwrap_or(Value::Null), &object) {
                return;
            }
        } else {
            merge(&mut object, without_nulls(created_with));
        }
        // Cannot fail: apiVersion, kind and metadata.name are set above, the rest is free-form.
        let Ok(object) = serde_json::from_value::<DynamicObject>(object) else { return };
        let target = ResourceRef::new(kind, None, &name);
        let wait = (kind != Kind::Namespace).then(|| Wait::Healthy { target: target.clone() });
        let verb = if existing.is_some() { "apply" } else { "create" };
        self.push(2, "apply", format!("{verb} {target}: {purpose}"), Change::Apply { object }, wait);
    }

    /// Step 3: restart, one at a time, the workloads whose sidecars do not speak HBONE yet.
    fn hbone_restarts(&mut self, namespace: &str) -> Result<(), Stop> {
        let targets = restart_targets(&self.state, namespace, |pod| pod.sidecar && !pod.hbone);
        if targets.is_empty() {
            return Ok(());
        }
        if ambient_control_plane(&self.state) != Some(true) {
            return Err(stop(
                namespace,
                "the control plane does not run the ambient profile yet (Step 2)",
                "oc ambient-enable",
            ));
        }
        for target in targets {
            self.restart(3, target, "so its sidecars speak HBONE");
        }
        Ok(())
    }

    /// Step 6: label the namespace for ambient, once every sidecar speaks HBONE and, where a
    /// waypoint is needed, it is deployed with the policies migrated.
    fn enroll(&mut self, namespace: &str) -> Result<(), Stop> {
        let context = MeshContext::of_namespace(&self.state, namespace);
        if context.labels(namespace).ambient {
            return Ok(());
        }
        let without_hbone = context.app_pods(namespace).filter(|pod| pod.sidecar && !pod.hbone).count();
        if without_hbone > 0 {
            let reason = format!(
                "{without_hbone} sidecar pod(s) of {namespace} lack HBONE: enrolling now breaks {}",
                ids::SEQUENCE_AMBIENT_BEFORE_HBONE
            );
            return Err(stop(namespace, &reason, &format!("oc ambient-enable {namespace} --step 3")));
        }
        if context.model.needs_waypoint(namespace) {
            let facts = milestones(&self.state, &context, namespace, true);
            if !facts.waypoint_deployed || !facts.policies_migrated {
                let missing = if facts.waypoint_deployed { "its policies migrated" } else { "its waypoint deployed" };
                let reason = format!(
                    "{namespace} needs a waypoint ({}) and does not have {missing} yet (Steps 4 and 5)",
                    context.waypoint_reasons(namespace).join("; ")
                );
                return Err(stop(namespace, &reason, &format!("oc ambient-waypoint {namespace}")));
            }
        }
        let labels = BTreeMap::from([(DATAPLANE_MODE.to_string(), Some(DATAPLANE_AMBIENT.to_string()))]);
        let target = ResourceRef::new(Kind::Namespace, None, namespace);
        let description = format!("enroll {namespace} in ambient (its sidecars keep their traffic until Step 9)");
        let wait = Some(Wait::Redirected { namespace: namespace.into() });
        self.push(6, "label", description, Change::SetLabels { target, labels }, wait);
        Ok(())
    }

    /// Step 9: stop injecting, restart every workload without its sidecar, then delete the
    /// sidecar-era objects the conversion replaced (left in place they deny or misroute).
    ///
    /// Workloads go callees first ([`callees_first`]): a sidecar caller of a restarted callee still
    /// reaches it (the protection exempts it, without the waypoint's L7 checks until it moves too),
    /// where the other order has an ambient caller reach, through the waypoint, a callee whose
    /// sidecar-era policy does not admit the waypoint: an outage of the calls that matter.
    ///
    /// Before the first restart, each replaced selector policy is pinned to the pods that keep
    /// their sidecar until their rollout (the injector's `security.istio.io/tlsMode` label), so the
    /// new ambient pods are never under it: an L7 ALLOW there would deny everything at ztunnel.
    ///
    /// Each rollout is followed at once by what it makes wrong: the bypass protections (in any
    /// namespace) stop exempting a principal whose last sidecar it took away, and the replaced
    /// selector policies that now select only ambient pods go. Between the rollout and those
    /// actions the gate finds a window (pod-address requests from the restarted callers pass the
    /// protection; an L7 ALLOW denies all at ztunnel); no order avoids it, since one principal
    /// names old and new pods alike, so it is kept to one rollout and announced.
    fn remove_sidecars(&mut self, namespace: &str) -> Result<(), Stop> {
        let context = MeshContext::of_namespace(&self.state, namespace);
        if !context.labels(namespace).ambient {
            let reason =
                format!("{namespace} is not enrolled in ambient (Step 6): without sidecars it would leave the mesh");
            return Err(stop(namespace, &reason, &format!("oc ambient-enable {namespace} --until ambient-enrolled")));
        }
        if context.model.needs_waypoint(namespace)
            && !milestones(&self.state, &context, namespace, true).waypoint_active
        {
            let reason = format!("{namespace} needs its waypoint active before its sidecars go (Step 7)");
            return Err(stop(namespace, &reason, &format!("oc ambient-waypoint {namespace}")));
        }
        let namespace_object = self.state.get(Kind::Namespace, None, namespace);
        let injection: BTreeMap<String, Option<String>> = [ISTIO_INJECTION, ISTIO_REV]
            .into_iter()
            .filter(|label| namespace_object.is_some_and(|object| crate::mesh::labels(object).contains_key(*label)))
            .map(|label| (label.to_string(), None))
            .collect();
        if !injection.is_empty() {
            let target = ResourceRef::new(Kind::Namespace, None, namespace);
            let description = format!("stop injecting sidecars in {namespace}");
            self.push(9, "label", description, Change::SetLabels { target, labels: injection }, None);
        }
        let options = ConvertOptions { namespaces: vec![namespace.to_string()], waypoint: None };
        let conversion = convert(&self.state, &options);
        let mut ingress_labels = super::waypoint::ingress_labels_wanted(&conversion);
        let mut replaced = conversion.replaces;
        for target in &replaced {
            self.pin_to_sidecar_pods(target);
        }
        for target in callees_first(&self.state, namespace, &workload_pods(&self.state, namespace, |pod| pod.sidecar)) {
            self.restart(9, target.clone(), "without its sidecar");
            for change in super::waypoint::ingress_labels_due(&self.state, &mut ingress_labels) {
                let description = format!(
                    "{change}: the ingress gateway's requests go through the waypoint now that no sidecar serves it"
                );
                self.push(9, "label", description, change, None);
            }
            self.narrow_protections(&target);
            // A selector policy ztunnel now enforces on its pods (an L7 ALLOW denies all there)
            // goes right after their restart, so the window it leaves lasts one rollout.
            let (due, later): (Vec<ResourceRef>, Vec<ResourceRef>) =
                replaced.into_iter().partition(|target| self.selects_only_ambient_pods(target));
            replaced = later;
            due.into_iter().for_each(|target| self.delete_replaced(9, target, "wrong once sidecars are gone"));
        }
        // What sidecar clients still read (routes, subsets, namespace-wide policies) goes last.
        replaced.into_iter().for_each(|target| self.delete_replaced(9, target, "wrong once sidecars are gone"));
        Ok(())
    }

    /// Narrows the bypass protections the restart of `restarted` made too wide.
    fn narrow_protections(&mut self, restarted: &ResourceRef) {
        for mut protection in narrowed_protections(&self.state) {
            let Ok(target) = ResourceRef::of(&protection) else { continue };
            // What the suite applied, so `oc ambient-waypoint` does not take it for a hand edit.
            let owned = super::waypoint::owned_fields(&protection);
            super::waypoint::record_applied(&mut protection, &owned);
            let id = format!("step9:narrow:{}:after:{}", reference_id(&target), reference_id(restarted));
            let description =
                format!("narrow {target}: callers that lost their sidecar with {restarted} are no longer exempt");
            self.push_action(Action {
                id,
                step: 9,
                description,
                change: Change::Apply { object: protection },
                wait: None,
                lane: None,
            });
        }
    }

    /// Adds the injector's label to the selector of `target`, a replaced selector
    /// AuthorizationPolicy, when every sidecar pod it selects carries that label (else pinning
    /// would drop some of them, and the policy is left as it is).
    fn pin_to_sidecar_pods(&mut self, target: &ResourceRef) {
        if target.kind != Kind::AuthorizationPolicy {
            return;
        }
        let namespace = target.namespace.as_deref().unwrap_or_default();
        let Some(policy) = self.state.get(target.kind, Some(namespace), &target.name) else { return };
        let Ok(spec) = spec::<AuthorizationPolicySpec>(policy) else { return };
        let Some(selector) = spec.selector_labels().filter(|selector| !selector.contains_key(TLS_MODE)) else { return };
        let all_marked = self
            .state
            .in_namespace(Kind::Pod, namespace)
            .map(Pod::of)
            .filter(|pod| pod.is_live() && selector_matches(selector, pod.labels))
            .all(|pod| pod.sidecar && pod.labels.get(TLS_MODE).map(String::as_str) == Some(TLS_MODE_ISTIO));
        if !all_marked {
            return;
        }
        let mut pinned = selector.clone();
        pinned.insert(TLS_MODE.into(), TLS_MODE_ISTIO.into());
        let api_version = policy
            .types
            .as_ref()
            .map_or_else(|| Kind::AuthorizationPolicy.info().api_version(), |types| types.api_version.clone());
        let object = json!({"apiVersion": api_version, "kind": "AuthorizationPolicy",
            "metadata": {"name": target.name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": pinned}}});
        // Cannot fail: apiVersion, kind and metadata.name are set.
        let Ok(object) = serde_json::from_value::<DynamicObject>(object) else { return };
        let description = format!("pin {target} to the pods that still have a sidecar, until it is deleted");
        self.push(9, "pin", description, Change::Apply { object }, None);
    }

    /// Deletes a replaced object as the plan saw it (uid and resourceVersion as preconditions; only
    /// the uid when an earlier action of the plan writes it, which gives it a version the plan
    /// cannot know).
    pub(super) fn delete_replaced(&mut self, step: u8, target: ResourceRef, why: &str) {
        let Some(object) = self.state.get(target.kind, target.namespace.as_deref(), &target.name) else { return };
        let written = self.plan.actions.iter().any(|action| action.change.target().is_ok_and(|t| t == target));
        let uid = object.metadata.uid.clone();
        let resource_version = object.metadata.resource_version.clone().filter(|_| !written);
        let description = format!("delete {target}: replaced for ambient, {why}");
        self.push(step, "delete", description, Change::Delete { target, uid, resource_version }, None);
    }

    /// `target` is a selector AuthorizationPolicy whose pods all run without a sidecar now.
    fn selects_only_ambient_pods(&self, target: &ResourceRef) -> bool {
        let namespace = target.namespace.as_deref().unwrap_or_default();
        let policy = self.state.get(target.kind, Some(namespace), &target.name);
        let spec = policy.filter(|_| target.kind == Kind::AuthorizationPolicy).map(spec::<AuthorizationPolicySpec>);
        let Some(Ok(spec)) = spec else { return false };
        let Some(selector) = spec.selector_labels() else { return false };
        let mut selected = self
            .state
            .in_namespace(Kind::Pod, namespace)
            .map(Pod::of)
            .filter(|pod| pod.is_live() && selector_matches(selector, pod.labels))
            .peekable();
        selected.peek().is_some() && selected.all(|pod| !pod.sidecar)
    }
}

fn stop(namespace: &str, reason: &str, next: &str) -> Stop {
    Stop { namespace: Some(namespace.into()), reason: reason.into(), next: Some(next.into()) }
}

/// `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects.
pub(super) fn reference_id(target: &ResourceRef) -> String {
    match &target.namespace {
        Some(namespace) => format!("{}/{namespace}/{}", target.kind.name(), target.name),
        None => format!("{}/{}", target.kind.name(), target.name),
    }
}

/// The Istio resource to migrate: `default` when there are several.
fn control_plane(snapshot: &Snapshot) -> Result<&DynamicObject, PlanError> {
    let istios = snapshot.all(Kind::Istio);
    istios
        .iter()
        .find(|istio| istio.metadata.name.as_deref() == Some("default"))
        .or_else(|| istios.first())
        .ok_or(PlanError::NoIstio)
}

/// The labels of the mesh's first `discoverySelectors` entry with `matchLabels`: the ztunnel
/// namespace needs them for istiod to see it.
fn discovery_labels(istio: &DynamicObject) -> BTreeMap<String, String> {
    let selectors = istio.data.pointer("/spec/values/meshConfig/discoverySelectors").and_then(Value::as_array);
    selectors
        .into_iter()
        .flatten()
        .filter_map(|selector| selector.get("matchLabels").cloned())
        .filter_map(|labels| serde_json::from_value::<BTreeMap<String, String>>(labels).ok())
        .find(|labels| !labels.is_empty())
        .unwrap_or_default()
}

/// The version to create `kind` in: the first the cluster serves among those the suite knows
/// (`v1` before `v1alpha1`), the preferred one when the input cannot tell.
fn api_version_to_create(snapshot: &Snapshot, kind: Kind) -> String {
    let info = kind.info();
    let served = snapshot.served_versions(kind).unwrap_or_default();
    let version = info.versions.iter().find(|version| served.iter().any(|served| served == *version));
    match version {
        Some(version) if !info.group.is_empty() => format!("{}/{version}", info.group),
        _ => info.api_version(),
    }
}

/// `value` without the null fields (an unknown version is not sent, rather than sent as null).
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        other => other,
    }
}

/// The controllers (or bare pods) of the live application pods of `namespace` that `select`
/// picks, in a stable order.
pub(super) fn restart_targets(
    snapshot: &Snapshot,
    namespace: &str,
    select: impl Fn(&Pod) -> bool,
) -> BTreeSet<ResourceRef> {
    workload_pods(snapshot, namespace, select).into_keys().collect()
}

/// [`restart_targets`] with the pods of each.
fn workload_pods<'s>(
    snapshot: &'s Snapshot,
    namespace: &'s str,
    select: impl Fn(&Pod) -> bool,
) -> BTreeMap<ResourceRef, Vec<Pod<'s>>> {
    let controllers: Vec<(Kind, &DynamicObject)> = [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet]
        .into_iter()
        .flat_map(|kind| snapshot.in_namespace(kind, namespace).map(move |object| (kind, object)))
        .collect();
    let mut targets: BTreeMap<ResourceRef, Vec<Pod>> = BTreeMap::new();
    let pods = snapshot.in_namespace(Kind::Pod, namespace).map(Pod::of);
    for pod in pods.filter(|pod| pod.is_live() && pod.gateway.is_none() && select(pod)) {
        let target = match controllers.iter().find(|(_, controller)| controls(controller, pod.object)) {
            Some((kind, controller)) => {
                ResourceRef::new(*kind, Some(namespace), controller.metadata.name.as_deref().unwrap_or_default())
            }
            None => ResourceRef::new(Kind::Pod, Some(namespace), pod.name),
        };
        targets.entry(target).or_default().push(pod);
    }
    targets
}

/// The workloads of `targets` in restart order: a workload goes after every other one whose
/// selector AuthorizationPolicies admit its principal (its callees), by name where the policies
/// do not tell (or tell a cycle).
fn callees_first(snapshot: &Snapshot, namespace: &str, targets: &BTreeMap<ResourceRef, Vec<Pod>>) -> Vec<ResourceRef> {
    let model = MeshModel::of_namespace(snapshot, namespace);
    let policies: Vec<AuthorizationPolicySpec> = snapshot
        .in_namespace(Kind::AuthorizationPolicy, namespace)
        .filter_map(|policy| spec::<AuthorizationPolicySpec>(policy).ok())
        .filter(|policy| policy.action == crate::mesh::authz::Action::Allow)
        .collect();
    let principals = |pods: &[Pod]| -> BTreeSet<String> {
        pods.iter().filter_map(|pod| model.principal(namespace, &pod.service_account)).collect()
    };
    // target -> the principals its selector policies admit (its callers), computed once.
    let admitted: BTreeMap<&ResourceRef, BTreeSet<&String>> = targets
        .iter()
        .map(|(target, pods)| {
            let selects =
                |selector: &BTreeMap<String, String>| pods.iter().any(|pod| selector_matches(selector, pod.labels));
            let callers = policies
                .iter()
                .filter(|policy| policy.selector_labels().is_some_and(selects))
                .flat_map(|policy| policy.rules().iter().flat_map(|rule| rule.principals()))
                .collect();
            (target, callers)
        })
        .collect();
    // target -> the targets it calls (restarted before it).
    let mut waits: BTreeMap<&ResourceRef, BTreeSet<&ResourceRef>> = BTreeMap::new();
    for (caller, caller_pods) in targets {
        let own = principals(caller_pods);
        let callees = admitted
            .iter()
            .filter(|(callee, callers)| **callee != caller && callers.iter().any(|p| own.contains(*p)))
            .map(|(callee, _)| *callee)
            .collect();
        waits.insert(caller, callees);
    }
    let mut order = Vec::new();
    while !waits.is_empty() {
        let ready = waits.iter().find(|(_, callees)| callees.is_empty()).map(|(target, _)| *target);
        let next = ready.unwrap_or_else(|| *waits.keys().next().expect("not empty"));
        waits.remove(next);
        waits.values_mut().for_each(|callees| {
            callees.remove(next);
        });
        order.push(next.clone());
    }
    order
}
