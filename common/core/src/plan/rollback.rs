//! The plan of `oc ambient-rollback`: undo journalled migration steps, or restore a backup.
//!
//! **From the journal** (the normal case). Every action the change engine ran is journalled with
//! the object it touched as it was before ([`crate::journal::Entry::prior`]). The planner takes
//! the actions still in force ([`crate::journal::outstanding`]) of the steps after the target
//! step, in the namespaces asked for, and undoes them step by step, the latest step first:
//!
//! - labels the tool set go back to their prior values (or away);
//! - an object the tool created (no prior) is deleted, with the live object's uid as a
//!   precondition: the journal, not a name, proves the tool made it;
//! - an object the tool patched (the Istio profile, an L4 policy given the waypoint principal) has
//!   exactly the fields the tool set restored to their prior values, absent ones removed, with a
//!   [`Change::Replace`] under the live resourceVersion, so every other field stays as it is;
//! - an object the tool deleted (a sidecar-era policy in Step 9) is created again from its prior
//!   state, without what the API server assigns (uid, resourceVersion, managedFields, status);
//! - a workload the tool restarted is restarted again once the labels it was restarted under are
//!   back, and awaited: within a step, restarts come after the step's other undos (the injection
//!   label and the sidecar-era policies return before any pod regains its sidecar). Step 3's
//!   restarts only gave sidecars HBONE; restarting again changes nothing while the control plane
//!   stays ambient, so they are issued after Step 2 is undone, and otherwise named as a stop.
//!
//! Undoing the latest step first keeps the guide's order in reverse: sidecars come back (Step 9)
//! before the waypoint is deactivated (7), the namespace leaves ambient (6), the waypoint
//! policies, routes and bypass protection go (5) and the waypoint goes (4).
//!
//! A user's edit made after the tool's change (the live object no longer holds what the journal
//! says the tool wrote, or a deleted object came back different) is not overwritten: the object
//! is left as it is and the plan names it as a stop, to be accepted with `--accept edit:<ref>`.
//!
//! **From a backup** (a migration done by hand, no journal): objects of the backed-up kinds that
//! differ from the backup are restored, the missing ones created, namespace labels set back,
//! workloads whose sidecar the restored labels change restarted, and objects carrying the
//! suite's `app.kubernetes.io/managed-by` label that the backup does not hold deleted. Nothing
//! is deleted by its name: an object the user created during the migration survives.
//!
//! Like the other planners, this one works on a projected state (each action simulated as it is
//! added), which decides what still needs undoing and what the edit check compares against; a
//! rollback of a rollback's end state plans nothing. The plan is returned with its reference:
//! the state the complete rollback leads to, the state before the migration, which the gates
//! judge every intermediate state against ([`super::gate::gate_against`]).

use std::collections::{BTreeMap, BTreeSet};

use kube_core::DynamicObject;
use serde_json::{Map, Value, json};

use super::enable::{Planner, reference_id, restart_targets};
use super::{Action, Plan, Stop, Wait};
use crate::change::{Change, ResourceRef, holds};
use crate::journal::{Entry, Outstanding, STATE_NAMESPACE, UNDO_PREFIX, merge_per_object, outstanding};
use crate::kinds::Kind;
use crate::mesh::labels::{MANAGED_BY, MANAGED_BY_VALUE};
use crate::mesh::{annotations, labels};
use crate::model::dataplane::{NamespaceMode, ambient_control_plane, injects};
use crate::snapshot::Snapshot;

/// The step whose restarts only gave sidecars HBONE (see the module docs).
const HBONE_STEP: u8 = 3;

/// What the user asked `oc ambient-rollback` for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackIntent {
    /// Namespaces to roll back; none: every namespace and the cluster-wide setup.
    pub namespaces: Vec<String>,
    /// Undo the steps after this one (`--to-step N`); `None` (`--all`): every step.
    pub to_step: Option<u8>,
    /// `--accept` ids: `edit:<Kind/namespace/name>` overwrites a user's edit.
    pub accept: Vec<String>,
}

/// What the rollback undoes.
#[derive(Debug, Clone, Copy)]
pub enum RollbackSource<'a> {
    /// The engine's journal entries, in the order written.
    Journal(&'a [Entry]),
    /// The objects of a backup (`--from-backup`), for a migration with no journal.
    Backup(&'a [DynamicObject]),
}

/// A rollback plan and the state it is judged against.
#[derive(Debug, Clone)]
pub struct Rollback {
    pub plan: Plan,
    /// The state before the migration, as the complete rollback of these namespaces reaches it.
    pub reference: Snapshot,
}

/// The plan of `oc ambient-rollback` (see the module docs); not gated yet: run
/// [`super::gate::gate_against`] with the reference.
pub fn plan_rollback(snapshot: &Snapshot, source: RollbackSource<'_>, intent: &RollbackIntent) -> Rollback {
    let (plan, end) = build(snapshot, source, intent);
    let reference = match intent.to_step {
        None => end,
        Some(_) => build(snapshot, source, &RollbackIntent { to_step: None, ..intent.clone() }).1,
    };
    Rollback { plan, reference }
}

fn build(snapshot: &Snapshot, source: RollbackSource<'_>, intent: &RollbackIntent) -> (Plan, Snapshot) {
    let mut undo = Undo {
        planner: Planner { plan: Plan::new("rollback"), state: snapshot.clone(), lane: None },
        intent,
        written: BTreeSet::new(),
    };
    match source {
        RollbackSource::Journal(entries) => undo.journal(entries),
        RollbackSource::Backup(objects) => undo.backup(objects),
    }
    (undo.planner.plan, undo.planner.state)
}

struct Undo<'a> {
    planner: Planner,
    intent: &'a RollbackIntent,
    /// Objects this plan already writes: a later write of one carries no resourceVersion
    /// precondition (the first bumps it).
    written: BTreeSet<ResourceRef>,
}

impl Undo<'_> {
    fn in_scope(&self, target: &ResourceRef) -> bool {
        let namespace = target.owning_namespace();
        if namespace == Some(STATE_NAMESPACE) {
            return false;
        }
        self.intent.namespaces.is_empty()
            || namespace.is_some_and(|namespace| self.intent.namespaces.iter().any(|wanted| wanted == namespace))
    }

    fn live(&self, target: &ResourceRef) -> Option<&DynamicObject> {
        self.planner.state.get(target.kind, target.namespace.as_deref(), &target.name)
    }

    /// Adds an action whose id is `undo:` and the id of what it undoes (journalled, a rerun and a
    /// second rollback recognise it).
    fn push(&mut self, id: &str, step: u8, description: String, change: Change, wait: Option<Wait>) {
        if let Ok(target) = change.target() {
            self.written.insert(target);
        }
        let id = format!("{UNDO_PREFIX}{id}");
        self.planner.push_action(Action { id, step, description, change, wait, lane: None });
    }

    /// The live resourceVersion as a precondition, unless this plan writes the object before.
    fn precondition(&self, target: &ResourceRef) -> Option<String> {
        if self.written.contains(target) {
            return None;
        }
        self.live(target).and_then(|object| object.metadata.resource_version.clone())
    }

    /// Leaves an edited object alone unless its edit is accepted; true when it may be written.
    fn edit_accepted(&mut self, target: &ResourceRef, step: u8, what: &str) -> bool {
        let id = format!("edit:{}", reference_id(target));
        if super::accepts(&self.intent.accept, &id) {
            return true;
        }
        self.planner.plan.stops.push(Stop {
            namespace: target
                .namespace
                .clone()
                .or_else(|| (target.kind == Kind::Namespace).then(|| target.name.clone())),
            reason: format!("{target} was changed after step {step} of the migration ({what}): left as it is"),
            next: Some(format!("review it, then rerun with --accept {id} to restore it anyway")),
        });
        false
    }

    fn journal(&mut self, entries: &[Entry]) {
        let undone = |action: &Outstanding| self.intent.to_step.is_none_or(|to| action.step > to);
        let actions: Vec<Outstanding> = merge_per_object(
            outstanding(entries)
                .into_iter()
                .filter(|action| undone(action))
                .filter(|action| action.change.target().is_ok_and(|target| self.in_scope(&target)))
                .collect(),
        );
        let steps: BTreeSet<u8> = actions.iter().map(|action| action.step).collect();
        let mut hbone_restarts = Vec::new();
        for &step in steps.iter().rev() {
            let mut restarts = Vec::new();
            for action in actions.iter().rev().filter(|action| action.step == step) {
                match &action.change {
                    Change::Restart { target } => restarts.insert(0, (action.action.clone(), target.clone())),
                    _ => self.undo_one(action),
                }
            }
            if step == HBONE_STEP {
                hbone_restarts = restarts;
            } else {
                restarts.into_iter().for_each(|(id, target)| self.restart(&id, step, target, "with its labels back"));
            }
        }
        if hbone_restarts.is_empty() {
            return;
        }
        if ambient_control_plane(&self.planner.state) == Some(true) {
            let namespaces: BTreeSet<String> =
                hbone_restarts.iter().filter_map(|(_, target)| target.namespace.clone()).collect();
            for namespace in namespaces {
                self.planner.plan.stops.push(Stop {
                    reason: format!(
                        "{namespace}'s sidecars keep HBONE: the control plane stays in the ambient profile (Step 2 is not rolled back), and a restart would give them the same sidecar"
                    ),
                    namespace: Some(namespace),
                    next: Some("oc ambient-rollback --all".into()),
                });
            }
            return;
        }
        for (id, target) in hbone_restarts {
            self.restart(&id, HBONE_STEP, target, "so its sidecars leave HBONE");
        }
    }

    fn restart(&mut self, id: &str, step: u8, target: ResourceRef, why: &str) {
        if self.live(&target).is_none() {
            return;
        }
        let wait = Some(Wait::RolledOut { target: target.clone() });
        self.push(id, step, format!("restart {target} {why}"), Change::Restart { target }, wait);
    }

    /// Undoes one journalled action other than a restart.
    fn undo_one(&mut self, action: &Outstanding) {
        let Ok(target) = action.change.target() else { return };
        let (id, step) = (action.action.as_str(), action.step);
        let live = self.live(&target).cloned();
        match (&action.change, &action.prior, live) {
            (Change::SetLabels { labels: written, .. }, prior, Some(live)) => {
                let current = labels(&live);
                if written.iter().any(|(key, value)| current.get(key) != value.as_ref())
                    && !self.edit_accepted(&target, step, "its labels differ from what the tool set")
                {
                    return;
                }
                let before = prior.as_ref().map(labels).cloned().unwrap_or_default();
                let restore: BTreeMap<String, Option<String>> = written
                    .keys()
                    .filter(|key| current.get(*key) != before.get(*key))
                    .map(|key| (key.clone(), before.get(key).cloned()))
                    .collect();
                if !restore.is_empty() {
                    let change = Change::SetLabels { target: target.clone(), labels: restore };
                    self.push(id, step, format!("{change} (as before step {step})"), change, None);
                }
            }
            (Change::Apply { object }, None, Some(live)) => {
                if !holds(&to_value(&live), &written_fields(object))
                    && !self.edit_accepted(&target, step, "it differs from what the tool created")
                {
                    return;
                }
                let uid = live.metadata.uid.clone();
                let change = Change::Delete { target: target.clone(), uid, resource_version: None };
                self.push(id, step, format!("delete {target}: created by step {step}"), change, None);
            }
            (Change::Apply { object }, Some(prior), Some(live)) => {
                if !holds(&to_value(&live), &written_fields(object))
                    && !self.edit_accepted(&target, step, "it no longer holds what the tool applied")
                {
                    return;
                }
                let restored = restore_fields(&live, object, prior);
                self.replace(id, step, &target, restored, "the fields step {step} set back to their prior values");
            }
            (Change::Apply { .. } | Change::Replace { .. }, Some(prior), None) => {
                if !self.edit_accepted(&target, step, "it was deleted since") {
                    return;
                }
                self.recreate(id, step, &target, prior);
            }
            (Change::Replace { .. }, Some(prior), Some(live)) => {
                self.replace(id, step, &target, merge_into(&live, prior), "as before step {step}");
            }
            (Change::Delete { .. }, Some(prior), None) => self.recreate(id, step, &target, prior),
            (Change::Delete { .. }, Some(prior), Some(live)) => {
                if same_content(&live, prior)
                    || !self.edit_accepted(&target, step, "it was deleted by the tool and created again since")
                {
                    return;
                }
                self.replace(id, step, &target, merge_into(&live, prior), "as before step {step}");
            }
            // Nothing to undo: the object is gone (or never was), or the action created nothing.
            _ => {}
        }
    }

    /// Restores `target` to `restored` (a whole object) unless it is already so.
    fn replace(&mut self, id: &str, step: u8, target: &ResourceRef, restored: DynamicObject, purpose: &str) {
        let Some(live) = self.live(target) else { return };
        if same_content(live, &restored) {
            return;
        }
        let resource_version = self.precondition(target);
        let mut restored = restored;
        restored.metadata.generation = live.metadata.generation.filter(|_| resource_version.is_some());
        let wait = is_sail(target.kind).then(|| Wait::Healthy { target: target.clone() });
        let description = format!("restore {target}: {}", purpose.replace("{step}", &step.to_string()));
        self.push(id, step, description, Change::Replace { object: restored, resource_version }, wait);
    }

    fn recreate(&mut self, id: &str, step: u8, target: &ResourceRef, prior: &DynamicObject) {
        let object = stripped(prior);
        let wait = is_sail(target.kind).then(|| Wait::Healthy { target: target.clone() });
        self.push(id, step, format!("create {target} again, as before step {step}"), Change::Apply { object }, wait);
    }

    /// `--from-backup`: restore what differs from the backup (see the module docs).
    fn backup(&mut self, objects: &[DynamicObject]) {
        let backed_up: BTreeMap<ResourceRef, &DynamicObject> = objects
            .iter()
            .filter_map(|object| ResourceRef::of(object).ok().map(|target| (target, object)))
            .filter(|(target, _)| self.in_scope(target) && RESTORED_KINDS.contains(&target.kind))
            .collect();
        let (control_plane, configuration): (Vec<_>, Vec<_>) =
            backed_up.iter().partition(|(target, _)| is_sail(target.kind) || target.kind == Kind::Namespace);
        for (target, object) in configuration {
            self.restore_backed_up(target, object);
        }
        let mut namespaces = Vec::new();
        for (target, object) in control_plane.iter().filter(|(target, _)| target.kind == Kind::Namespace) {
            let Some(live) = self.live(target) else { continue };
            let (current, wanted) = (labels(live), labels(object));
            let restore: BTreeMap<String, Option<String>> = current
                .keys()
                .chain(wanted.keys())
                .filter(|key| current.get(*key) != wanted.get(*key))
                .map(|key| (key.clone(), wanted.get(key).cloned()))
                .collect();
            if !restore.is_empty() {
                let change = Change::SetLabels { target: (*target).clone(), labels: restore };
                let id = format!("backup:label:{}", reference_id(target));
                self.push(&id, 0, format!("{change} (as in the backup)"), change, None);
                namespaces.push(target.name.clone());
            }
        }
        for namespace in &namespaces {
            let mode =
                self.planner.state.get(Kind::Namespace, None, namespace).map(NamespaceMode::of).unwrap_or_default();
            let targets = restart_targets(&self.planner.state, namespace, |pod| {
                pod.sidecar != injects(&mode, pod.labels, annotations(pod.object))
            });
            for target in targets {
                let id = format!("backup:restart:{}", reference_id(&target));
                self.restart(&id, 0, target, "so its sidecar matches its namespace's labels again");
            }
        }
        self.delete_generated(&backed_up);
        for (target, object) in control_plane.iter().filter(|(target, _)| target.kind != Kind::Namespace) {
            self.restore_backed_up(target, object);
        }
    }

    fn restore_backed_up(&mut self, target: &ResourceRef, object: &DynamicObject) {
        let id = format!("backup:restore:{}", reference_id(target));
        match self.live(target).cloned() {
            None => self.recreate(&id, 0, target, object),
            Some(live) => self.replace(&id, 0, target, merge_into(&live, object), "as in the backup"),
        }
    }

    /// Deletes what carries the suite's managed-by label and the backup does not hold; objects a
    /// controller owns go with their owner.
    fn delete_generated(&mut self, backed_up: &BTreeMap<ResourceRef, &DynamicObject>) {
        let generated: Vec<(ResourceRef, Option<String>)> = self
            .planner
            .state
            .kinds()
            .flat_map(|(kind, _)| self.planner.state.all(kind).iter())
            .filter(|object| labels(object).get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE))
            .filter(|object| object.metadata.owner_references.as_ref().is_none_or(Vec::is_empty))
            .filter_map(|object| ResourceRef::of(object).ok().map(|target| (target, object.metadata.uid.clone())))
            .filter(|(target, _)| self.in_scope(target) && !backed_up.contains_key(target))
            .collect();
        // Policies and routes before the waypoint they name.
        let (gateways, others): (Vec<_>, Vec<_>) =
            generated.into_iter().partition(|(target, _)| target.kind == Kind::Gateway);
        for (target, uid) in others.into_iter().chain(gateways) {
            let id = format!("backup:delete:{}", reference_id(&target));
            let change = Change::Delete { target: target.clone(), uid, resource_version: None };
            self.push(&id, 0, format!("delete {target}: made by oc-ambient, not in the backup"), change, None);
        }
    }
}

/// The kinds `--from-backup` restores: what the guide's Section 2.4 backs up, and the mesh
/// objects a migration adds next to them. Workloads are not restored from a backup (their
/// template carries restart stamps); they are restarted where their sidecar changes.
const RESTORED_KINDS: [Kind; 9] = [
    Kind::Namespace,
    Kind::Istio,
    Kind::IstioCni,
    Kind::VirtualService,
    Kind::DestinationRule,
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
    Kind::PeerAuthentication,
    Kind::Service,
];

/// Kinds the Sail operator reconciles: awaited until healthy once restored.
fn is_sail(kind: Kind) -> bool {
    matches!(kind, Kind::Istio | Kind::IstioCni | Kind::ZTunnel)
}

fn to_value(object: &DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// What an applied object sets: its labels, annotations and fields, without the identifying ones.
fn written_fields(object: &DynamicObject) -> Value {
    let mut value = to_value(object);
    if let Some(map) = value.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        let metadata = json!({"labels": object.metadata.labels, "annotations": object.metadata.annotations});
        map.insert("metadata".into(), without_nulls(metadata));
    }
    value
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        other => other,
    }
}

/// `live` with exactly the fields `applied` sets put back to their values in `prior` (removed
/// where `prior` has none, with the maps that held only them).
fn restore_fields(live: &DynamicObject, applied: &DynamicObject, prior: &DynamicObject) -> DynamicObject {
    let mut result = to_value(live);
    let written = written_fields(applied);
    let before = to_value(prior);
    if let (Some(result), Some(written)) = (result.as_object_mut(), written.as_object()) {
        restore_map(result, written, before.as_object());
    }
    serde_json::from_value(result).unwrap_or_else(|_| live.clone())
}

fn restore_map(result: &mut Map<String, Value>, written: &Map<String, Value>, prior: Option<&Map<String, Value>>) {
    for (key, value) in written {
        let before = prior.and_then(|prior| prior.get(key));
        let nested = value.as_object().filter(|map| !map.is_empty());
        match (nested, result.get_mut(key)) {
            (Some(written), Some(Value::Object(current))) if before.is_none_or(Value::is_object) => {
                restore_map(current, written, before.and_then(Value::as_object));
                if current.is_empty() && before.is_none() {
                    result.remove(key);
                }
            }
            _ => match before {
                Some(before) => {
                    result.insert(key.clone(), before.clone());
                }
                None => {
                    result.remove(key);
                }
            },
        }
    }
}

/// `live` with the labels, annotations and fields of `wanted` (a prior state or a backup), its
/// server-assigned metadata kept.
fn merge_into(live: &DynamicObject, wanted: &DynamicObject) -> DynamicObject {
    crate::change::replaced(live, &stripped(wanted))
}

/// True when `live` has the labels, annotations and fields (status aside) of `wanted`.
fn same_content(live: &DynamicObject, wanted: &DynamicObject) -> bool {
    let content = |object: &DynamicObject| {
        let mut data = object.data.clone();
        if let Some(map) = data.as_object_mut() {
            map.remove("status");
        }
        (
            object.metadata.labels.clone().unwrap_or_default(),
            object.metadata.annotations.clone().unwrap_or_default(),
            data,
        )
    };
    let (live_labels, live_annotations, live_data) = content(live);
    let (labels, annotations, data) = content(wanted);
    live_labels == labels && live_annotations == annotations && live_data == data
}

/// `object` as it can be created again: without what the API server assigns.
pub fn stripped(object: &DynamicObject) -> DynamicObject {
    let mut object = object.clone();
    let metadata = &mut object.metadata;
    metadata.uid = None;
    metadata.resource_version = None;
    metadata.managed_fields = None;
    metadata.creation_timestamp = None;
    metadata.generation = None;
    metadata.deletion_timestamp = None;
    metadata.deletion_grace_period_seconds = None;
    if let Some(data) = object.data.as_object_mut() {
        data.remove("status");
    }
    object
}

#[cfg(test)]
mod tests;
