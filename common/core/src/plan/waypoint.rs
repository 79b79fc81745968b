//! The plan of `oc ambient-waypoint NAMESPACE...`: the L7 half of the migration (Steps 4, 5, 7).
//!
//! - **Step 4** deploys the namespace's waypoint (the translator's Gateway: class
//!   `istio-waypoint`, listener `mesh` on 15008 HBONE, `istio.io/waypoint-for: service`) and
//!   waits until it is programmed and its pods are ready. Nothing uses it yet.
//! - **Step 5** applies the translator's output for the namespace next to the sidecar-era
//!   configuration, which stays in force for sidecar clients: version Services, HTTPRoutes,
//!   waypoint policies, the waypoint principal in L4 policies, bypass protection, label changes.
//!   A conversion that is not faithful stops the plan with the translator's report.
//! - **Step 7** activates the waypoint (`istio.io/use-waypoint` on the namespace), once the
//!   namespace is enrolled (Step 6, `oc ambient-enable`); before that it is a stop naming the
//!   command.
//!
//! What the translator generates is the same object whether planned from the sidecar era or
//! from a later state, so a rerun plans only what is missing or differs. A namespace the model
//! says needs no waypoint is told so, and nothing is deployed for it.

use serde_json::Value;

use super::enable::Planner;
use super::{Plan, PlanError, Stop, Wait};
use crate::change::{Change, ResourceRef, holds};
use crate::convert::{ConvertOptions, convert};
use crate::kinds::Kind;
use crate::mesh::labels::{USE_WAYPOINT, WAYPOINT_CLASS};
use crate::model::MeshModel;
use crate::snapshot::Snapshot;

/// What the user asked `oc ambient-waypoint` for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaypointIntent {
    pub namespaces: Vec<String>,
    /// The waypoint's name (default: the namespace's, else `waypoint`).
    pub name: Option<String>,
    pub until: WaypointUntil,
    /// `--step N`: only that step (4, 5 or 7).
    pub only_step: Option<u8>,
}

/// How far to take the namespaces (`--until`), named after the phase reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaypointUntil {
    Deployed,
    PoliciesMigrated,
    #[default]
    Active,
}

impl WaypointUntil {
    fn last_step(self) -> u8 {
        match self {
            WaypointUntil::Deployed => 4,
            WaypointUntil::PoliciesMigrated => 5,
            WaypointUntil::Active => 7,
        }
    }
}

/// The plan for `intent` (not gated yet: run [`super::gate::gate`] on it).
pub fn plan_waypoint(snapshot: &Snapshot, intent: &WaypointIntent) -> Result<Plan, PlanError> {
    if let Some(step) = intent.only_step.filter(|step| ![4, 5, 7].contains(step)) {
        return Err(PlanError::StepNotApplicable { step });
    }
    for namespace in &intent.namespaces {
        if snapshot.get(Kind::Namespace, None, namespace).is_none() {
            return Err(PlanError::NamespaceNotFound { namespace: namespace.clone() });
        }
    }
    let wanted = |step: u8| intent.only_step.map_or(step <= intent.until.last_step(), |only| only == step);
    let mut planner = Planner { plan: Plan::new("waypoint"), state: snapshot.clone() };
    for namespace in &intent.namespaces {
        if !MeshModel::new(&planner.state).needs_waypoint(namespace) {
            planner.plan.stops.push(Stop {
                namespace: Some(namespace.clone()),
                reason: format!("{namespace} needs no waypoint: nothing in it needs L7 processing"),
                next: Some(format!("oc ambient-enable {namespace}")),
            });
            continue;
        }
        let options = ConvertOptions { namespaces: vec![namespace.clone()], waypoint: intent.name.clone() };
        let conversion = convert(snapshot, &options);
        if !conversion.is_faithful() {
            return Err(PlanError::Unfaithful {
                namespace: namespace.clone(),
                unsupported: conversion
                    .unsupported
                    .iter()
                    .map(|entry| format!("{} {}: {}", entry.object, entry.field, entry.reason))
                    .collect(),
            });
        }
        let (gateways, others): (Vec<Change>, Vec<Change>) = conversion
            .changes()
            .into_iter()
            .filter(|change| !matches!(change, Change::Delete { .. }))
            .partition(|change| matches!(change, Change::Apply { object } if is_waypoint(object)));
        if wanted(4) {
            for change in gateways {
                apply_unless_held(&mut planner, 4, change, "deploy the waypoint");
            }
        }
        if wanted(5) {
            for change in others {
                apply_unless_held(&mut planner, 5, change, "migrate");
            }
        }
        if wanted(7)
            && let Err(stop) = activate(&mut planner, namespace, intent.name.as_deref())
        {
            planner.plan.stops.push(stop);
        }
    }
    Ok(planner.plan)
}

fn is_waypoint(object: &kube_core::DynamicObject) -> bool {
    object.data.pointer("/spec/gatewayClassName").and_then(Value::as_str) == Some(WAYPOINT_CLASS)
}

/// Adds `change` unless the projected state already holds it.
fn apply_unless_held(planner: &mut Planner, step: u8, change: Change, purpose: &str) {
    let Ok(target) = change.target() else { return };
    let existing = planner.state.get(target.kind, target.namespace.as_deref(), &target.name);
    let held = match (&change, existing) {
        (Change::Apply { object }, Some(existing)) => holds(
            &serde_json::to_value(existing).unwrap_or(Value::Null),
            &serde_json::json!({"metadata": {"labels": object.metadata.labels}, "spec": object.data.get("spec")}),
        ),
        (Change::SetLabels { labels, .. }, Some(existing)) => labels.iter().all(|(key, value)| {
            existing.metadata.labels.as_ref().and_then(|current| current.get(key)) == value.as_ref()
        }),
        _ => false,
    };
    if held {
        return;
    }
    let wait = match &change {
        Change::Apply { object } if is_waypoint(object) => Some(Wait::Programmed { target: target.clone() }),
        _ => None,
    };
    let verb = if matches!(change, Change::SetLabels { .. }) { "label" } else { "apply" };
    planner.push(step, verb, format!("{purpose}: {change}"), change, wait);
}

/// Step 7: `istio.io/use-waypoint` on the namespace, once it is enrolled in ambient.
fn activate(planner: &mut Planner, namespace: &str, name: Option<&str>) -> Result<(), Stop> {
    let model = MeshModel::new(&planner.state);
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
