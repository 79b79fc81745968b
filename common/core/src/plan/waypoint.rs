//! The plan of `oc ambient-waypoint NAMESPACE...`: the L7 half of the migration (Steps 4, 5, 7, 8).
//!
//! - **Step 4** deploys the namespace's waypoint (the translator's Gateway: class
//!   `istio-waypoint`, listener `mesh` on 15008 HBONE, `istio.io/waypoint-for: service`) and
//!   waits until it is programmed and its pods are ready. Nothing uses it yet.
//! - **Step 5** applies the translator's output for the namespace next to the sidecar-era
//!   configuration, which stays in force for sidecar clients: version Services, HTTPRoutes,
//!   waypoint policies, the waypoint principal in L4 policies, bypass protection, label changes.
//!   A conversion that is not faithful stops the plan with the translator's report, unless every
//!   loss is accepted by its id (`unsupported:<Kind>/<ns>/<name>:<field>`, `--accept`).
//!   Istio 1.27 applies an HTTPRoute whose parent is a Service to sidecar clients too, and to
//!   those of the route's own namespace ahead of the VirtualService (see
//!   [`crate::equivalence::route`]): the plan keeps the translator's order (version Services
//!   before the HTTPRoutes that name them), so that from the moment a route exists it routes
//!   those clients exactly as the VirtualService did, and the gate checks this on every state.
//! - **Step 7** activates the waypoint (`istio.io/use-waypoint` on the namespace), once the
//!   namespace is enrolled (Step 6, `oc ambient-enable`); before that it is a stop naming the
//!   command.
//! - **Step 8** deletes the sidecar-era objects the conversion superseded
//!   ([`crate::convert::Conversion::replaces`]) that no sidecar reads any more: a VirtualService or
//!   DestinationRule is read by every sidecar of a namespace it is exported to, a selector
//!   AuthorizationPolicy by the sidecars of the pods it selects. What a sidecar still reads is kept
//!   and named in a stop: Step 9 (`oc ambient-enable`) deletes it with the sidecars, workload by
//!   workload. The gate then holds every deletion to the verifier (no outcome may change).
//!
//! What the translator generates is the same object whether planned from the sidecar era or
//! from a later state, so a rerun plans only what is missing or differs. Every object applied
//! carries what was applied ([`APPLIED`]): an existing object that no longer holds it (edited by
//! hand, or not made by this tool) is reported in a stop and never overwritten. A namespace the
//! model says needs no waypoint is told so, and nothing is deployed for it.

use std::collections::BTreeSet;

use kube_core::DynamicObject;
use serde_json::{Value, json};

use super::enable::Planner;
use super::{Plan, PlanError, Stop, Wait};
use crate::change::{Change, ResourceRef, holds};
use crate::check::phase::{MeshContext, milestones};
use crate::convert::{Conversion, ConvertOptions, Converter, convert};
use crate::equivalence::topology::ROOT_NAMESPACE;
use crate::kinds::Kind;
use crate::mesh::authz::AuthorizationPolicySpec;
use crate::mesh::labels::{INGRESS_USE_WAYPOINT, USE_WAYPOINT, WAYPOINT_CLASS};
use crate::mesh::{selector_matches, spec};
use crate::model::{MeshModel, Pod};
use crate::snapshot::Snapshot;

/// The annotation recording what the suite applied to a generated object (its labels and spec,
/// as JSON): a later run tells its own earlier output from a hand edit by it.
pub const APPLIED: &str = "oc-ambient.io/applied";

/// What the user asked `oc ambient-waypoint` for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaypointIntent {
    pub namespaces: Vec<String>,
    /// The waypoint's name (default: the namespace's, else `waypoint`).
    pub name: Option<String>,
    pub until: WaypointUntil,
    /// `--step N`: only that step (4, 5, 7 or 8).
    pub only_step: Option<u8>,
    /// `--accept ID`: the ids of unsupported conversions the user accepts losing.
    pub accepted: Vec<String>,
    /// `--monitoring`: Step 4 also creates the PodMonitor that scrapes each waypoint.
    pub monitoring: bool,
    /// `--size`: Step 4 sets the sizing recommendation ([`crate::check::sizing`]) through the
    /// Gateway's `spec.infrastructure.parametersRef`.
    pub size: bool,
}

/// How far to take the namespaces (`--until`), named after the phase reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaypointUntil {
    Deployed,
    PoliciesMigrated,
    Active,
    #[default]
    Cleaned,
}

impl WaypointUntil {
    fn last_step(self) -> u8 {
        match self {
            WaypointUntil::Deployed => 4,
            WaypointUntil::PoliciesMigrated => 5,
            WaypointUntil::Active => 7,
            WaypointUntil::Cleaned => 8,
        }
    }
}

/// The steps `oc ambient-waypoint` performs.
pub const WAYPOINT_STEPS: [u8; 4] = [4, 5, 7, 8];

/// The plan for `intent` (not gated yet: run [`super::gate::gate`] on it).
pub fn plan_waypoint(snapshot: &Snapshot, intent: &WaypointIntent) -> Result<Plan, PlanError> {
    if let Some(step) = intent.only_step.filter(|step| !WAYPOINT_STEPS.contains(step)) {
        return Err(PlanError::StepNotApplicable { step });
    }
    for namespace in &intent.namespaces {
        if snapshot.get(Kind::Namespace, None, namespace).is_none() {
            return Err(PlanError::NamespaceNotFound { namespace: namespace.clone() });
        }
    }
    let wanted = |step: u8| intent.only_step.map_or(step <= intent.until.last_step(), |only| only == step);
    let mut planner = Planner { plan: Plan::new("waypoint"), state: snapshot.clone(), lane: None };
    // Every namespace is converted from `snapshot`: what the conversions read of the whole mesh
    // is built once.
    let converter = std::cell::OnceCell::new();
    for namespace in &intent.namespaces {
        planner.lane = Some(namespace.clone());
        if !MeshModel::of_namespace(&planner.state, namespace).needs_waypoint(namespace) {
            planner.plan.stops.push(Stop {
                namespace: Some(namespace.clone()),
                reason: format!("{namespace} needs no waypoint: nothing in it needs L7 processing"),
                next: Some(format!("oc ambient-enable {namespace}")),
            });
            continue;
        }
        if wanted(4) || wanted(5) {
            let converter = converter.get_or_init(|| Converter::new(snapshot));
            migrate(&mut planner, converter, namespace, intent, &wanted)?;
        }
        let later: [(u8, NamespaceStep); 2] = [(7, activate), (8, clean_up)];
        for (_, step) in later.iter().filter(|(number, _)| wanted(*number)) {
            if let Err(stop) = step(&mut planner, namespace, intent.name.as_deref()) {
                planner.plan.stops.push(stop);
                break;
            }
        }
    }
    Ok(planner.plan)
}

/// Step 7 or 8 for one namespace; `Err` stops the namespace there.
type NamespaceStep = fn(&mut Planner, &str, Option<&str>) -> Result<(), Stop>;

/// Steps 4 and 5: the translator's output for `namespace`, computed from the snapshot the user's
/// objects are in (the `converter`'s), refused when a loss is not accepted.
fn migrate(
    planner: &mut Planner,
    converter: &Converter,
    namespace: &str,
    intent: &WaypointIntent,
    wanted: &dyn Fn(u8) -> bool,
) -> Result<(), PlanError> {
    let options = ConvertOptions { namespaces: vec![namespace.to_string()], waypoint: intent.name.clone() };
    let conversion = converter.convert(&options);
    let snapshot = converter.snapshot();
    let refused: Vec<String> = conversion
        .unsupported
        .iter()
        .filter(|entry| !super::accepts(&intent.accepted, &entry.id))
        .map(|entry| format!("{} {}: {} [{}]", entry.object, entry.field, entry.reason, entry.id))
        .collect();
    if !refused.is_empty() {
        return Err(PlanError::Unfaithful { namespace: namespace.to_string(), unsupported: refused });
    }
    let (mut gateways, others): (Vec<Change>, Vec<Change>) = conversion
        .changes()
        .into_iter()
        .filter(|change| !matches!(change, Change::Delete { .. }))
        .partition(|change| matches!(change, Change::Apply { object } if is_waypoint(object)));
    let emitted: BTreeSet<String> = gateways
        .iter()
        .filter_map(|change| match change {
            Change::Apply { object } => object.metadata.name.clone(),
            _ => None,
        })
        .collect();
    let deployed: Vec<&DynamicObject> = snapshot
        .in_namespace(Kind::Gateway, namespace)
        .filter(|gateway| {
            is_waypoint(gateway) && !gateway.metadata.name.as_ref().is_some_and(|name| emitted.contains(name))
        })
        .collect();
    let waypoints: Vec<String> =
        emitted.iter().cloned().chain(deployed.iter().filter_map(|gateway| gateway.metadata.name.clone())).collect();
    if intent.size {
        // A deployed waypoint is sized through the same apply as a new one: the whole Gateway as
        // the suite applied it, plus the parametersRef (server-side apply of a partial object
        // would drop the fields the suite applied before).
        gateways.extend(deployed.into_iter().map(|gateway| Change::Apply { object: as_applied(gateway) }));
        gateways = gateways.into_iter().flat_map(|change| sized(&planner.state, change)).collect();
    }
    for (step, changes, purpose) in [(4, gateways, "deploy the waypoint"), (5, others, "migrate")] {
        if wanted(step) {
            for change in changes {
                if let Some(change) = without_early_ingress_label(&planner.state, change) {
                    apply_unless_held(planner, step, change, purpose);
                }
            }
        }
    }
    if wanted(4) && intent.monitoring {
        for waypoint in waypoints {
            let monitor = crate::mesh::monitoring::waypoint_pod_monitor(namespace, &waypoint);
            planner.monitor(4, monitor, "scrape the waypoint's metrics");
        }
    }
    Ok(())
}

/// `change` without `istio.io/ingress-use-waypoint` on a Service whose pods still run sidecars
/// (None when that label was all it set). Once the waypoint is active (Step 7) the label sends
/// the ingress gateway through it, and a destination sidecar then sees the waypoint's identity,
/// which its sidecar-era policies do not admit: the application's front door would be shut from
/// Step 7 until Step 9. Step 9 sets the label right after the Service's last sidecar pod goes
/// ([`ingress_labels_due`]).
fn without_early_ingress_label(state: &Snapshot, change: Change) -> Option<Change> {
    match change {
        Change::SetLabels { target, mut labels }
            if target.kind == Kind::Service && labels.contains_key(INGRESS_USE_WAYPOINT) =>
        {
            let service = state.get(Kind::Service, target.namespace.as_deref(), &target.name);
            if service.is_some_and(|service| serves_sidecar_pods(state, service)) {
                labels.remove(INGRESS_USE_WAYPOINT);
            }
            (!labels.is_empty()).then_some(Change::SetLabels { target, labels })
        }
        Change::Apply { mut object } if is_labelled_service(&object) && serves_sidecar_pods(state, &object) => {
            object.metadata.labels.as_mut().map(|labels| labels.remove(INGRESS_USE_WAYPOINT));
            Some(Change::Apply { object })
        }
        other => Some(other),
    }
}

fn is_labelled_service(object: &DynamicObject) -> bool {
    object.types.as_ref().is_some_and(|types| types.kind == "Service") && crate::mesh::ingress_uses_waypoint(object)
}

/// Some running pod selected by `service` has a sidecar.
fn serves_sidecar_pods(state: &Snapshot, service: &DynamicObject) -> bool {
    let selector = crate::convert::scope::service_selector(service);
    if selector.is_empty() {
        return false;
    }
    let namespace = service.metadata.namespace.as_deref();
    state
        .in_namespace(Kind::Pod, namespace.unwrap_or_default())
        .map(Pod::of)
        .any(|pod| pod.is_live() && pod.sidecar && selector_matches(&selector, pod.labels))
}

/// The Services the translator labels `istio.io/ingress-use-waypoint` in `conversion`.
pub(super) fn ingress_labels_wanted(conversion: &Conversion) -> BTreeSet<ResourceRef> {
    let labelled = conversion.items.iter().filter(|object| is_labelled_service(object));
    let set = conversion.label_changes.iter().filter(|change| change.labels.contains_key(INGRESS_USE_WAYPOINT));
    labelled.filter_map(|object| ResourceRef::of(object).ok()).chain(set.map(|change| change.object.clone())).collect()
}

/// The labels of `wanted` that no sidecar pod stands in the way of any more (see
/// [`without_early_ingress_label`]), taken out of `wanted`: what Step 9 sets after a rollout.
pub(super) fn ingress_labels_due(state: &Snapshot, wanted: &mut BTreeSet<ResourceRef>) -> Vec<Change> {
    let due: Vec<ResourceRef> = wanted
        .iter()
        .filter(|target| {
            state
                .get(Kind::Service, target.namespace.as_deref(), &target.name)
                .is_some_and(|service| !serves_sidecar_pods(state, service))
        })
        .cloned()
        .collect();
    let label = || [(INGRESS_USE_WAYPOINT.to_string(), Some("true".to_string()))].into();
    due.into_iter()
        .filter_map(|target| {
            wanted.remove(&target);
            let service = state.get(Kind::Service, target.namespace.as_deref(), &target.name)?;
            let labelled = crate::mesh::ingress_uses_waypoint(service);
            (!labelled).then(|| Change::SetLabels { target, labels: label() })
        })
        .collect()
}

/// The object to apply again for `existing`: its labels, annotations (but what was applied) and
/// spec.
fn as_applied(existing: &DynamicObject) -> DynamicObject {
    let mut annotations = existing.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(APPLIED);
    DynamicObject {
        types: existing.types.clone(),
        metadata: kube_core::ObjectMeta {
            name: existing.metadata.name.clone(),
            namespace: existing.metadata.namespace.clone(),
            labels: existing.metadata.labels.clone(),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..kube_core::ObjectMeta::default()
        },
        data: json!({"spec": existing.data.get("spec")}),
    }
}

/// `--size`: the waypoint Gateway `change` preceded by the ConfigMap of its recommended sizing,
/// which the Gateway names in `spec.infrastructure.parametersRef`. Istio's gateway deployment
/// controller merges the `deployment` key into the Deployment it generates and makes a
/// PodDisruptionBudget of the `podDisruptionBudget` key, at every reconcile (a direct edit of the
/// generated Deployment is overwritten by the next one). Replicas are left to an existing
/// autoscaler, and a PodDisruptionBudget that exists already is not doubled.
fn sized(state: &Snapshot, change: Change) -> Vec<Change> {
    let Change::Apply { mut object } = change else { return vec![change] };
    let (Some(namespace), Some(name)) = (object.metadata.namespace.clone(), object.metadata.name.clone()) else {
        return vec![Change::Apply { object }];
    };
    let context = MeshContext::new(state);
    let sizing = crate::check::sizing::sizing(state, &context, &namespace, &name);
    let recommendation = &sizing.recommendation;
    let mut deployment = json!({"spec": {"template": {"spec": {"containers": [{"name": crate::mesh::labels::PROXY_CONTAINER,
        "resources": {"requests": recommendation.requests, "limits": recommendation.limits}}]}}}});
    if sizing.horizontal_pod_autoscaler.is_none() {
        deployment["spec"]["replicas"] = json!(recommendation.replicas);
    }
    let mut data = serde_json::Map::new();
    data.insert("deployment".into(), Value::String(yaml_text(&deployment)));
    if let Some(min_available) = recommendation.pod_disruption_budget_min_available {
        data.insert(
            "podDisruptionBudget".into(),
            Value::String(yaml_text(&json!({"spec": {"minAvailable": min_available}}))),
        );
    }
    let parameters_name = format!("{name}-{PARAMETERS_SUFFIX}");
    let source = crate::mesh::ObjectRef::new("Gateway", Some(&namespace), &name);
    let mut parameters = crate::convert::objects::generated(
        Kind::ConfigMap,
        &namespace,
        &parameters_name,
        &[source],
        [("data".to_string(), Value::Object(data))].into_iter().collect(),
    );
    parameters.metadata.labels.get_or_insert_default().insert(GATEWAY_PARAMETERS.into(), "true".into());
    object.data["spec"]["infrastructure"] =
        json!({"parametersRef": {"group": "", "kind": "ConfigMap", "name": parameters_name}});
    vec![Change::Apply { object: parameters }, Change::Apply { object }]
}

/// The label of the parameter ConfigMaps the suite writes (the only ConfigMaps it lists).
pub const GATEWAY_PARAMETERS: &str = "oc-ambient.io/gateway-parameters";
const PARAMETERS_SUFFIX: &str = "parameters";

/// YAML text of a value (the form Istio reads from the parameters ConfigMap).
fn yaml_text(value: &Value) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_default()
}

fn is_waypoint(object: &DynamicObject) -> bool {
    object.data.pointer("/spec/gatewayClassName").and_then(Value::as_str) == Some(WAYPOINT_CLASS)
}

/// The fields of a generated object the suite owns: its labels and spec.
pub(super) fn owned_fields(object: &DynamicObject) -> Value {
    // A ConfigMap has `data` where other objects have `spec`.
    let mut owned = match object.data.get("data") {
        Some(data) if object.data.get("spec").is_none() => json!({"data": data}),
        _ => json!({"spec": object.data.get("spec")}),
    };
    if let Some(labels) = &object.metadata.labels {
        owned["metadata"] = json!({"labels": labels});
    }
    owned
}

/// Adds `change` unless the projected state already holds it. An existing object that differs
/// is updated only when it still holds what the suite applied before (the translator's output
/// changed); otherwise it was edited by hand, or made by someone else, and a stop reports it.
pub(super) fn apply_unless_held(planner: &mut Planner, step: u8, change: Change, purpose: &str) {
    let Ok(target) = change.target() else { return };
    let existing = planner.state.get(target.kind, target.namespace.as_deref(), &target.name);
    let change = match (change, existing) {
        (Change::Apply { mut object }, Some(existing)) => {
            let current = serde_json::to_value(existing).unwrap_or(Value::Null);
            let owned = owned_fields(&object);
            if holds(&current, &owned) {
                return;
            }
            let applied = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(APPLIED))
                .and_then(|text| serde_json::from_str::<Value>(text).ok());
            if !applied.is_some_and(|applied| holds(&current, &applied)) {
                planner.plan.stops.push(Stop {
                    namespace: target.namespace.clone(),
                    reason: format!(
                        "{target} differs from the translator's output and was changed since oc-ambient applied it (or was not created by it): it is not overwritten"
                    ),
                    next: Some(format!(
                        "compare with `oc ambient-waypoint convert -n {}`; delete {target} to have it recreated",
                        target.namespace.as_deref().unwrap_or_default()
                    )),
                });
                return;
            }
            record_applied(&mut object, &owned);
            Change::Apply { object }
        }
        (Change::Apply { mut object }, None) => {
            let owned = owned_fields(&object);
            record_applied(&mut object, &owned);
            Change::Apply { object }
        }
        (Change::SetLabels { target, labels }, Some(existing)) => {
            let current = existing.metadata.labels.as_ref();
            if labels.iter().all(|(key, value)| current.and_then(|labels| labels.get(key)) == value.as_ref()) {
                return;
            }
            Change::SetLabels { target, labels }
        }
        (other, _) => other,
    };
    let wait = match &change {
        Change::Apply { object } if is_waypoint(object) => Some(Wait::Programmed { target: target.clone() }),
        _ => None,
    };
    let verb = if matches!(change, Change::SetLabels { .. }) { "label" } else { "apply" };
    planner.push(step, verb, format!("{purpose}: {change}"), change, wait);
}

pub(super) fn record_applied(object: &mut DynamicObject, owned: &Value) {
    object.metadata.annotations.get_or_insert_default().insert(APPLIED.to_string(), owned.to_string());
}

/// Step 7: `istio.io/use-waypoint` on the namespace, once it is enrolled in ambient.
fn activate(planner: &mut Planner, namespace: &str, name: Option<&str>) -> Result<(), Stop> {
    let model = MeshModel::of_namespace(&planner.state, namespace);
    let mode = model.namespace(namespace);
    let waypoint = name
        .map(str::to_string)
        .or_else(|| mode.use_waypoint.clone())
        .or_else(|| model.waypoints_in(namespace).next().map(|gateway| gateway.name.clone()))
        .unwrap_or_else(|| crate::model::waypoint::DEFAULT_WAYPOINT.to_string());
    if mode.use_waypoint.as_deref() == Some(waypoint.as_str()) {
        return Ok(());
    }
    if !mode.ambient {
        return Err(Stop {
            namespace: Some(namespace.into()),
            reason: format!(
                "{namespace} is not enrolled in ambient yet: activating its waypoint first breaks sequence-waypoint-before-ambient (Step 6 comes first)"
            ),
            next: Some(format!("oc ambient-enable {namespace} --until ambient-enrolled")),
        });
    }
    let target = ResourceRef::new(Kind::Namespace, None, namespace);
    let labels = [(USE_WAYPOINT.to_string(), Some(waypoint.clone()))].into();
    let change = Change::SetLabels { target, labels };
    planner.push(7, "label", format!("activate waypoint {waypoint} for {namespace}"), change, None);
    Ok(())
}

/// Step 8: delete what the conversion replaced and no sidecar reads any more (see the module
/// docs); a stop names what is kept and why.
fn clean_up(planner: &mut Planner, namespace: &str, name: Option<&str>) -> Result<(), Stop> {
    let context = MeshContext::of_namespace(&planner.state, namespace);
    if !milestones(&planner.state, &context, namespace, true).waypoint_active {
        return Err(Stop {
            namespace: Some(namespace.into()),
            reason: format!(
                "{namespace}'s waypoint is not active (Step 7): the sidecar-era configuration is all that serves it"
            ),
            next: Some(format!("oc ambient-waypoint {namespace} --step 7")),
        });
    }
    let options = ConvertOptions { namespaces: vec![namespace.to_string()], waypoint: name.map(str::to_string) };
    let replaced = convert(&planner.state, &options).replaces;
    // Deleting routes, subsets and policies moves no pod: who reads what is decided once.
    let model = MeshModel::new(&planner.state);
    let (unread, kept): (Vec<_>, Vec<_>) = replaced
        .into_iter()
        .filter_map(|target| {
            let object = planner.state.get(target.kind, target.namespace.as_deref(), &target.name)?;
            let readers = sidecar_readers(&model, target.kind, object);
            Some((target, readers))
        })
        .partition(|(_, readers)| readers.is_empty());
    let kept: Vec<String> = kept
        .into_iter()
        .map(|(target, readers)| format!("{target} (read by the sidecars of {})", summary(&readers)))
        .collect();
    for (target, _) in unread {
        planner.delete_replaced(8, target, "read by no sidecar");
    }
    if kept.is_empty() {
        return Ok(());
    }
    Err(Stop {
        namespace: Some(namespace.into()),
        reason: format!(
            "kept {} sidecar-era object(s) that sidecars still read: {}; Step 9 deletes them as the sidecars go",
            kept.len(),
            kept.join(", ")
        ),
        next: Some(format!("oc ambient-enable {namespace}")),
    })
}

/// The workloads (`namespace/name`) whose sidecars read `object` of `kind`: for a
/// VirtualService or DestinationRule, every sidecar of a namespace it is exported to; for a
/// selector or namespace-wide AuthorizationPolicy, the sidecars of the pods it applies to.
fn sidecar_readers(model: &MeshModel, kind: Kind, object: &DynamicObject) -> BTreeSet<String> {
    let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
    let sidecars = model.all_pods().filter(|pod| pod.sidecar && pod.gateway.is_none());
    let readers: Box<dyn Fn(&Pod) -> bool> = match kind {
        Kind::VirtualService | Kind::DestinationRule => {
            let export_to: Vec<String> = object
                .data
                .pointer("/spec/exportTo")
                .and_then(|value| serde_json::from_value(value.clone()).ok())
                .unwrap_or_default();
            Box::new(move |pod: &Pod| exported_to(&export_to, namespace, pod.namespace))
        }
        Kind::AuthorizationPolicy => {
            let Ok(policy) = spec::<AuthorizationPolicySpec>(object) else { return BTreeSet::new() };
            Box::new(move |pod: &Pod| {
                (namespace == ROOT_NAMESPACE || pod.namespace == namespace)
                    && policy.selector_labels().is_none_or(|selector| selector_matches(selector, pod.labels))
            })
        }
        _ => return BTreeSet::new(),
    };
    sidecars.filter(|pod| readers(pod)).map(|pod| format!("{}/{}", pod.namespace, pod.workload())).collect()
}

/// Istio's `exportTo`: empty or `*` is every namespace, `.` the object's own, `~` none.
fn exported_to(export_to: &[String], namespace: &str, reader: &str) -> bool {
    export_to.is_empty() || export_to.iter().any(|to| to == "*" || to == reader || (to == "." && namespace == reader))
}

/// At most three names, then how many more.
fn summary(names: &BTreeSet<String>) -> String {
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    match names.len().saturating_sub(shown.len()) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests;
