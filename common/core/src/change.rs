//! The vocabulary of change: what the suite does to a cluster, as values.
//!
//! The translator emits [`Change`]s, the migration-state overlay is a list of them, the verifier
//! evaluates a snapshot after [`simulate`] applied them, and the change engine plans, journals,
//! applies and rolls back the same values. One vocabulary keeps what is verified and what is
//! applied the same thing.
//!
//! A change names what it touches with a typed [`ResourceRef`] (a kind of the table in
//! [`crate::kinds`], never a free string), so every target can be fetched, backed up and restored.
//! Both serialize as stable, tagged JSON for the plan document and the journal.
//!
//! [`simulate`] is the model of the API server the verifier trusts. An `Apply` is a server-side
//! apply: the object may be partial (apiVersion, kind, name and only the fields the suite owns),
//! and it is merged into its namesake: maps (labels, spec, values) recursively, every other value
//! (strings, numbers, lists) replaced, which is what server-side apply does for fields of a
//! single manager and atomic lists. It simplifies in two places: ownership by other managers is
//! not tracked (a field the suite stops sending is kept, not removed), and a restart re-admits
//! the existing pods of a workload in place (same names) instead of rolling out new ones, with
//! the sidecar the injector would give them now (HBONE under an ambient control plane). A change
//! the server would refuse (a precondition that does not hold, a target that does not exist) is
//! not applied and is recorded as a [`Refusal`]; the following changes still run, so one stale
//! change does not hide what the others do.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kube_core::DynamicObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kinds::Kind;
use crate::mesh::{ObjectRef, annotations, labels};
use crate::model::dataplane::{
    NamespaceMode, ambient_control_plane, controls, injected_proxy, injects, set_injected_labels, set_proxy_container,
    template_metadata,
};
use crate::snapshot::Snapshot;

/// A typed reference to one object of a kind the suite knows.
///
/// JSON: `{"kind": "AuthorizationPolicy", "group": "security.istio.io", "namespace": "bookinfo",
/// "name": "x"}` (the kind by its Kubernetes name and API group, `""` for core; no namespace for
/// cluster-scoped objects).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "WireRef", try_from = "WireRef")]
pub struct ResourceRef {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

/// Why an object or a JSON reference does not name a resource the suite knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceRefError {
    #[error("{kind} (group {group:?}) is not a kind oc-ambient knows")]
    UnknownKind { group: String, kind: String },
    #[error("{} without metadata.name", kind.name())]
    Unnamed { kind: Kind },
}

impl ResourceRef {
    pub fn new(kind: Kind, namespace: Option<&str>, name: &str) -> Self {
        ResourceRef { kind, namespace: namespace.map(str::to_string), name: name.to_string() }
    }

    /// The namespace the object belongs to: its own, or for a Namespace, the one it is; None for
    /// other cluster-scoped objects.
    pub fn owning_namespace(&self) -> Option<&str> {
        match self.kind {
            Kind::Namespace => Some(&self.name),
            _ => self.namespace.as_deref(),
        }
    }

    /// The reference of an object, by its `apiVersion`, `kind`, namespace and name.
    pub fn of(object: &DynamicObject) -> Result<Self, ResourceRefError> {
        let (api_version, kind_name) =
            object.types.as_ref().map(|types| (types.api_version.as_str(), types.kind.as_str())).unwrap_or_default();
        let group = api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("");
        let kind = Kind::from_group_kind(group, kind_name)
            .ok_or_else(|| ResourceRefError::UnknownKind { group: group.into(), kind: kind_name.into() })?;
        let name = object.metadata.name.as_deref().ok_or(ResourceRefError::Unnamed { kind })?;
        Ok(ResourceRef::new(kind, object.metadata.namespace.as_deref(), name))
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.kind.name(), self.name),
            None => write!(f, "{} {}", self.kind.name(), self.name),
        }
    }
}

/// Findings and reports print references; a resource prints the same way.
impl From<&ResourceRef> for ObjectRef {
    fn from(reference: &ResourceRef) -> Self {
        ObjectRef::new(reference.kind.name(), reference.namespace.as_deref(), &reference.name)
    }
}

/// The JSON form of a [`ResourceRef`].
#[derive(Serialize, Deserialize)]
struct WireRef {
    kind: String,
    group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    name: String,
}

impl From<ResourceRef> for WireRef {
    fn from(reference: ResourceRef) -> Self {
        let info = reference.kind.info();
        WireRef {
            kind: info.name.into(),
            group: info.group.into(),
            namespace: reference.namespace,
            name: reference.name,
        }
    }
}

impl TryFrom<WireRef> for ResourceRef {
    type Error = ResourceRefError;

    fn try_from(wire: WireRef) -> Result<Self, Self::Error> {
        let kind = Kind::from_group_kind(&wire.group, &wire.kind)
            .ok_or(ResourceRefError::UnknownKind { group: wire.group, kind: wire.kind })?;
        Ok(ResourceRef { kind, namespace: wire.namespace, name: wire.name })
    }
}

/// One change to a cluster.
///
/// JSON: tagged by `action` (`apply`, `replace`, `delete`, `setLabels`, `restart`), fields in camelCase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Change {
    /// Creates the object, or server-side applies it over its namesake (field manager `oc-ambient`):
    /// the object may be partial, and is merged (see the module docs).
    Apply { object: DynamicObject },
    /// Restores an existing object: its labels, annotations and every top-level field of `object`
    /// but metadata and status are set to exactly these (a field absent from `object`'s maps is
    /// removed), the rest of the object is kept. Server-side apply cannot remove a field another
    /// manager owns, so a rollback writes back what was there with an update, under a
    /// `resourceVersion` precondition when the plan saw the object (a conflict means it changed
    /// since: re-plan, never overwrite). With the precondition, `object`'s `metadata.generation`
    /// is the generation the plan saw: a change of status alone since then is not a conflict.
    Replace {
        object: DynamicObject,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_version: Option<String>,
    },
    /// Deletes the object when it is still the one the plan saw: the server refuses the delete
    /// when a given `uid` or `resourceVersion` no longer matches. Deleting what is gone does nothing.
    Delete {
        target: ResourceRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_version: Option<String>,
    },
    /// Sets labels of an existing object; a `null` value removes the label.
    SetLabels { target: ResourceRef, labels: BTreeMap<String, Option<String>> },
    /// Restarts a Deployment, StatefulSet or DaemonSet (a rollout), or recreates a bare Pod: the
    /// pods are admitted again, so they get or lose the sidecar by the labels of that moment.
    Restart { target: ResourceRef },
}

impl Change {
    /// The object the change touches; fails only for an `Apply` of an object of an unknown kind
    /// or without a name.
    pub fn target(&self) -> Result<ResourceRef, ResourceRefError> {
        match self {
            Change::Apply { object } | Change::Replace { object, .. } => ResourceRef::of(object),
            Change::Delete { target, .. } | Change::SetLabels { target, .. } | Change::Restart { target } => {
                Ok(target.clone())
            }
        }
    }
}

/// One line for people: `apply HTTPRoute ns/x`, `label Namespace ns a=b c-`, ...
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Apply { object } => match ResourceRef::of(object) {
                Ok(target) => write!(f, "apply {target}"),
                Err(err) => write!(f, "apply ({err})"),
            },
            Change::Replace { object, .. } => match ResourceRef::of(object) {
                Ok(target) => write!(f, "restore {target}"),
                Err(err) => write!(f, "restore ({err})"),
            },
            Change::Delete { target, .. } => write!(f, "delete {target}"),
            Change::SetLabels { target, labels } => {
                write!(f, "label {target}")?;
                for (key, value) in labels {
                    match value {
                        Some(value) => write!(f, " {key}={value}")?,
                        None => write!(f, " {key}-")?,
                    }
                }
                Ok(())
            }
            Change::Restart { target } => write!(f, "restart {target}"),
        }
    }
}

/// Why the API server would refuse a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    #[error("{0}")]
    Invalid(ResourceRefError),
    #[error("{target} does not exist")]
    NotFound { target: ResourceRef },
    #[error("{target}: precondition {field} {expected} does not hold (found {found:?})")]
    Precondition { target: ResourceRef, field: &'static str, expected: String, found: Option<String> },
    #[error("{target} cannot be restarted (only Deployments, StatefulSets, DaemonSets and Pods)")]
    NotRestartable { target: ResourceRef },
    #[error("the applied object does not merge into its namesake: {message}")]
    Unmergeable { message: String },
}

/// A change [`simulate`] did not apply, by its position in the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change {index} ({change}) refused: {reason}")]
pub struct Refusal {
    pub index: usize,
    pub change: String,
    pub reason: RefusalReason,
}

/// The snapshot after the changes, and the changes the server would have refused.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub snapshot: Snapshot,
    pub refused: Vec<Refusal>,
}

/// `snapshot` after `changes`, in order (see the module docs for what is simplified). Coverage,
/// source and notes are those of `snapshot`.
pub fn simulate(snapshot: &Snapshot, changes: &[Change]) -> Simulation {
    let mut result = snapshot.clone();
    let refused = apply_all(&mut result, changes);
    Simulation { snapshot: result, refused }
}

/// [`simulate`] without the copy: `snapshot` after `changes`, changed in place; returns the
/// changes refused. For callers that need only the changed state, since a copy of a large
/// mesh's snapshot is hundreds of MiB.
pub fn apply_all(snapshot: &mut Snapshot, changes: &[Change]) -> Vec<Refusal> {
    apply_each(snapshot, changes.iter().map(Cow::Borrowed))
}

/// [`apply_all`] of changes it may consume: an applied object that does not exist yet is moved
/// into the snapshot, not copied. The check's verdict applies some 15,000 emitted objects at
/// 1,000 namespaces; copied, they would be held twice.
pub fn apply_all_owned(snapshot: &mut Snapshot, changes: Vec<Change>) -> Vec<Refusal> {
    apply_each(snapshot, changes.into_iter().map(Cow::Owned))
}

fn apply_each<'c>(snapshot: &mut Snapshot, changes: impl Iterator<Item = Cow<'c, Change>>) -> Vec<Refusal> {
    let mut refused = Vec::new();
    let mut deletions = Deletions::default();
    for (index, change) in changes.enumerate() {
        if let Change::Delete { target, uid, resource_version } = &*change {
            if let Err(reason) = deletions.mark(snapshot, target, uid, resource_version) {
                refused.push(Refusal { index, change: change.to_string(), reason });
            }
            continue;
        }
        deletions.carry_out(snapshot);
        let change = match change {
            Cow::Owned(Change::Apply { object }) => match new_object_kind(snapshot, &object) {
                Some(kind) => {
                    snapshot.push_object(kind, object);
                    continue;
                }
                None => Cow::Owned(Change::Apply { object }),
            },
            change => change,
        };
        if let Err(reason) = apply_in_place(snapshot, &change) {
            refused.push(Refusal { index, change: change.to_string(), reason });
        }
    }
    deletions.carry_out(snapshot);
    refused
}

/// The kind of `object` when it names no object of the snapshot, so that applying it adds it as
/// it is.
fn new_object_kind(snapshot: &Snapshot, object: &DynamicObject) -> Option<Kind> {
    let target = ResourceRef::of(object).ok()?;
    snapshot.position(target.kind, target.namespace.as_deref(), &target.name).is_none().then_some(target.kind)
}

/// Deletions [`simulate`] has judged but not carried out yet, by kind, so that a run of them
/// removes each kind's objects in one pass (see [`Snapshot::remove_objects`]). They are carried
/// out before any other change, so every change sees the state one-at-a-time deletion would
/// leave.
#[derive(Default)]
struct Deletions(BTreeMap<Kind, BTreeSet<usize>>);

impl Deletions {
    fn mark(
        &mut self,
        snapshot: &mut Snapshot,
        target: &ResourceRef,
        uid: &Option<String>,
        resource_version: &Option<String>,
    ) -> Result<(), RefusalReason> {
        let found = snapshot.position(target.kind, target.namespace.as_deref(), &target.name);
        if found.is_some_and(|position| self.0.get(&target.kind).is_some_and(|marked| marked.contains(&position))) {
            // Deleted already: one at a time, this deletion would find a duplicate of the key,
            // or nothing.
            self.carry_out(snapshot);
        }
        if let Some(position) = deletable(snapshot, target, uid, resource_version)? {
            self.0.entry(target.kind).or_default().insert(position);
        }
        Ok(())
    }

    fn carry_out(&mut self, snapshot: &mut Snapshot) {
        for (kind, positions) in std::mem::take(&mut self.0) {
            snapshot.remove_objects(kind, &positions.into_iter().collect::<Vec<_>>());
        }
    }
}

/// Where the object a deletion of `target` removes is, once its preconditions hold; None when
/// there is none (deleting what is gone is not refused).
fn deletable(
    snapshot: &Snapshot,
    target: &ResourceRef,
    uid: &Option<String>,
    resource_version: &Option<String>,
) -> Result<Option<usize>, RefusalReason> {
    let Some(position) = snapshot.position(target.kind, target.namespace.as_deref(), &target.name) else {
        return Ok(None);
    };
    let metadata = &snapshot.all(target.kind)[position].metadata;
    precondition(target, "uid", uid, &metadata.uid)?;
    precondition(target, "resourceVersion", resource_version, &metadata.resource_version)?;
    Ok(Some(position))
}

/// `snapshot` after one `change`, changed in place (what [`simulate`] does for each change): the
/// planners and the gate step through a plan action by action, and a copy of the whole snapshot
/// per action made them quadratic in a plan over many namespaces. A refused change leaves
/// `snapshot` as it was.
pub fn apply_in_place(snapshot: &mut Snapshot, change: &Change) -> Result<(), RefusalReason> {
    match change {
        Change::Apply { object } => {
            let target = ResourceRef::of(object).map_err(RefusalReason::Invalid)?;
            match find_mut(snapshot, &target) {
                Ok(existing) => *existing = server_side_apply(existing, object)?,
                Err(_) => snapshot.push_object(target.kind, object.clone()),
            }
        }
        Change::Replace { object, resource_version } => {
            let target = ResourceRef::of(object).map_err(RefusalReason::Invalid)?;
            let existing = find_mut(snapshot, &target)?;
            precondition(&target, "resourceVersion", resource_version, &existing.metadata.resource_version)?;
            *existing = replaced(existing, object);
        }
        Change::Delete { target, uid, resource_version } => {
            if let Some(position) = deletable(snapshot, target, uid, resource_version)? {
                snapshot.remove_objects(target.kind, &[position]);
            }
        }
        Change::SetLabels { target, labels } => {
            let object = find_mut(snapshot, target)?;
            let current = object.metadata.labels.get_or_insert_with(BTreeMap::new);
            for (key, value) in labels {
                match value {
                    Some(value) => current.insert(key.clone(), value.clone()),
                    None => current.remove(key),
                };
            }
        }
        Change::Restart { target } => restart(snapshot, target)?,
    }
    Ok(())
}

/// `existing` with the labels, annotations and top-level fields of `restored` (see
/// [`Change::Replace`]): what the API server stores after that update.
pub fn replaced(existing: &DynamicObject, restored: &DynamicObject) -> DynamicObject {
    let mut result = existing.clone();
    result.metadata.labels = restored.metadata.labels.clone().filter(|labels| !labels.is_empty());
    result.metadata.annotations = restored.metadata.annotations.clone().filter(|annotations| !annotations.is_empty());
    if let (Some(into), Some(from)) = (result.data.as_object_mut(), restored.data.as_object()) {
        for (key, value) in from.iter().filter(|(key, _)| key.as_str() != "status") {
            into.insert(key.clone(), value.clone());
        }
    }
    result
}

/// `applied` merged into `existing`: maps recursively, other values replaced.
fn server_side_apply(existing: &DynamicObject, applied: &DynamicObject) -> Result<DynamicObject, RefusalReason> {
    let to_value = |object: &DynamicObject| serde_json::to_value(object).unwrap_or(Value::Null);
    let mut merged = to_value(existing);
    merge(&mut merged, to_value(applied));
    serde_json::from_value(merged).map_err(|err| RefusalReason::Unmergeable { message: err.to_string() })
}

/// Merges `from` into `into` the way server-side apply merges an applied object: maps recursively,
/// every other value replaced.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (into, from) => *into = from,
    }
}

fn precondition(
    target: &ResourceRef,
    field: &'static str,
    expected: &Option<String>,
    found: &Option<String>,
) -> Result<(), RefusalReason> {
    match expected {
        Some(expected) if Some(expected) != found.as_ref() => Err(RefusalReason::Precondition {
            target: target.clone(),
            field,
            expected: expected.clone(),
            found: found.clone(),
        }),
        _ => Ok(()),
    }
}

fn find_mut<'a>(snapshot: &'a mut Snapshot, target: &ResourceRef) -> Result<&'a mut DynamicObject, RefusalReason> {
    let not_found = || RefusalReason::NotFound { target: target.clone() };
    let position = snapshot.position(target.kind, target.namespace.as_deref(), &target.name).ok_or_else(not_found)?;
    snapshot.objects_mut(target.kind).get_mut(position).ok_or_else(not_found)
}

/// Re-admits the pods of a workload under the current labels of its namespace: a controller's
/// pods get its template's spec, a bare pod keeps its own; either gets the proxy exactly when the
/// injector would add it now, with HBONE when the control plane runs the ambient profile. A controller without pods in the snapshot needs nothing: the
/// evaluator admits its template whenever it evaluates.
fn restart(snapshot: &mut Snapshot, target: &ResourceRef) -> Result<(), RefusalReason> {
    let hbone = ambient_control_plane(snapshot).unwrap_or(false);
    let proxy = |present: bool| present.then(|| injected_proxy(hbone));
    let namespace_mode = target
        .namespace
        .as_deref()
        .and_then(|namespace| snapshot.get(Kind::Namespace, None, namespace))
        .map(NamespaceMode::of)
        .unwrap_or_default();
    match target.kind {
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => {
            let controller = find_mut(snapshot, target)?.clone();
            let template = controller.data.pointer("/spec/template").cloned().unwrap_or(Value::Null);
            let (template_labels, template_annotations) = template_metadata(&template);
            let mut pod_spec = template.get("spec").cloned().unwrap_or_else(|| Value::Object(Default::default()));
            let injected = injects(&namespace_mode, &template_labels, &template_annotations);
            set_proxy_container(&mut pod_spec, proxy(injected));
            // Only its namespace's pods: a restart in a plan over many namespaces looks at its own.
            let own: Vec<usize> = match controller.metadata.namespace.as_deref() {
                Some(namespace) => snapshot.namespace_positions(Kind::Pod, namespace).to_vec(),
                None => (0..snapshot.all(Kind::Pod).len())
                    .filter(|position| snapshot.all(Kind::Pod)[*position].metadata.namespace.is_none())
                    .collect(),
            };
            let pods = snapshot.objects_mut(Kind::Pod);
            for position in own {
                let pod = &mut pods[position];
                if !controls(&controller, pod) {
                    continue;
                }
                let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
                labels.extend(template_labels.clone());
                set_injected_labels(labels, injected);
                if let Some(data) = pod.data.as_object_mut() {
                    data.insert("spec".into(), pod_spec.clone());
                }
            }
        }
        Kind::Pod => {
            let pod = find_mut(snapshot, target)?;
            let sidecar = injects(&namespace_mode, labels(pod), annotations(pod));
            set_injected_labels(pod.metadata.labels.get_or_insert_with(BTreeMap::new), sidecar);
            if let Some(pod_spec) = pod.data.get_mut("spec") {
                set_proxy_container(pod_spec, proxy(sidecar));
            }
        }
        _ => return Err(RefusalReason::NotRestartable { target: target.clone() }),
    }
    Ok(())
}

/// True when every field of `wanted` is in `existing` with the same value (maps compared
/// recursively, lists element by element): applying `wanted` would change nothing. Fields the API
/// server defaulted (a route's `weight: 1`, a parentRef's `group`) are in `existing` only, so
/// they do not count as a difference.
pub fn holds(existing: &Value, wanted: &Value) -> bool {
    match (existing, wanted) {
        (Value::Object(existing), Value::Object(wanted)) => {
            wanted.iter().all(|(key, value)| existing.get(key).is_some_and(|current| holds(current, value)))
        }
        (Value::Array(existing), Value::Array(wanted)) => {
            existing.len() == wanted.len() && existing.iter().zip(wanted).all(|(current, value)| holds(current, value))
        }
        (existing, wanted) => existing == wanted,
    }
}

#[cfg(test)]
mod tests;
