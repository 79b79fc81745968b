//! A migration state overlay: which namespaces are enrolled in ambient, which have their waypoint
//! active, which still run sidecars. Applied to a snapshot it rewrites exactly the objects the
//! evaluator derives modes from (namespace labels, the `istio-proxy` container of pods), so the
//! guide's steps can be replayed on one configuration, and `--state FILE` can describe any
//! intermediate state.
//!
//! Every namespace named in any list is fully described by the state: a namespace listed only in
//! `enrolled` is ambient, without waypoint, without sidecars. Namespaces not named keep their labels.
//!
//! ```yaml
//! enrolled: [bookinfo]   # istio.io/dataplane-mode=ambient
//! waypoints: [bookinfo]  # istio.io/use-waypoint=<the namespace's waypoint Gateway>
//! sidecars: [bookinfo]   # injection on, and pods keep (or get) their istio-proxy container
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kube_core::{DynamicObject, ObjectMeta, TypeMeta};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::kinds::{ALL, Kind};
use crate::mesh::gateway_api::GatewaySpec;
use crate::mesh::labels::{
    DATAPLANE_AMBIENT, DATAPLANE_MODE, ISTIO_INJECTION, ISTIO_REV, PROXY_CONTAINER, USE_WAYPOINT, WAYPOINT_CLASS,
};
use crate::mesh::{ObjectRef, spec};

use crate::model::dataplane::{CONTAINER_FIELDS, is_proxy_container};
use crate::snapshot::Snapshot;

/// The waypoint name `use-waypoint` gets when the namespace has no waypoint Gateway (the label
/// then activates nothing, which is what the cluster would do).
pub const DEFAULT_WAYPOINT: &str = "waypoint";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationState {
    #[serde(default)]
    pub enrolled: BTreeSet<String>,
    #[serde(default)]
    pub waypoints: BTreeSet<String>,
    #[serde(default)]
    pub sidecars: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read migration state {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("migration state {path}: {message} (expected keys: enrolled, waypoints, sidecars; lists of namespaces)")]
    Invalid { path: PathBuf, message: String },
}

impl MigrationState {
    pub fn from_file(path: &Path) -> Result<Self, StateError> {
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Read { path: path.into(), source })?;
        let invalid = |message: String| StateError::Invalid { path: path.into(), message };
        let value: Value = serde_yaml_ng::from_str(&text).map_err(|err| invalid(err.to_string()))?;
        serde_json::from_value(value).map_err(|err| invalid(err.to_string()))
    }

    /// The end of the migration for `namespaces`: enrolled, without sidecars, and using their
    /// waypoint where `snapshot` has a waypoint Gateway in the namespace.
    pub fn fully_migrated(snapshot: &Snapshot, namespaces: &BTreeSet<String>) -> Self {
        let has_waypoint = |namespace: &String| {
            snapshot
                .in_namespace(Kind::Gateway, namespace)
                .any(|gateway| spec::<GatewaySpec>(gateway).is_ok_and(|spec| spec.gateway_class_name == WAYPOINT_CLASS))
        };
        MigrationState {
            enrolled: namespaces.clone(),
            waypoints: namespaces.iter().filter(|namespace| has_waypoint(namespace)).cloned().collect(),
            sidecars: BTreeSet::new(),
        }
    }

    /// Every namespace the state describes.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.enrolled.iter().chain(&self.waypoints).chain(&self.sidecars).cloned().collect()
    }

    /// The snapshot with this state's labels and sidecars; Namespace objects missing from the
    /// input are created.
    pub fn apply(&self, snapshot: &Snapshot) -> Snapshot {
        let described = self.namespaces();
        let mut missing = described.clone();
        let mut objects = Vec::new();
        for info in ALL {
            for object in snapshot.all(info.kind) {
                let mut object = object.clone();
                let namespace = object.metadata.namespace.clone().unwrap_or_default();
                match info.kind {
                    Kind::Namespace => {
                        let name = object.metadata.name.clone().unwrap_or_default();
                        if missing.remove(&name) {
                            self.relabel(snapshot, &name, &mut object);
                        }
                    }
                    Kind::Pod if described.contains(&namespace) => {
                        set_proxy_container(&mut object, self.sidecars.contains(&namespace));
                    }
                    _ => {}
                }
                objects.push(object);
            }
        }
        for name in missing {
            let mut namespace = DynamicObject {
                types: Some(TypeMeta { api_version: "v1".into(), kind: "Namespace".into() }),
                metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
                data: json!({}),
            };
            self.relabel(snapshot, &name, &mut namespace);
            objects.push(namespace);
        }
        Snapshot::from_objects(objects)
    }

    fn relabel(&self, snapshot: &Snapshot, name: &str, namespace: &mut DynamicObject) {
        let labels = namespace.metadata.labels.get_or_insert_with(BTreeMap::new);
        if self.enrolled.contains(name) {
            labels.insert(DATAPLANE_MODE.into(), DATAPLANE_AMBIENT.into());
        } else {
            labels.remove(DATAPLANE_MODE);
        }
        if self.waypoints.contains(name) {
            labels.insert(USE_WAYPOINT.into(), waypoint_name(snapshot, name));
        } else {
            labels.remove(USE_WAYPOINT);
        }
        if self.sidecars.contains(name) {
            if !labels.contains_key(ISTIO_REV) {
                labels.insert(ISTIO_INJECTION.into(), "enabled".into());
            }
        } else {
            labels.remove(ISTIO_REV);
            labels.remove(ISTIO_INJECTION);
        }
    }
}

/// `snapshot` with `added` objects (replacing any of the same kind, namespace and name),
/// without the `removed` ones, and with `labels` merged into the named objects: a configuration
/// change such as a conversion (its items, what they replace, its label changes).
pub fn with_changes(
    snapshot: &Snapshot,
    added: &[DynamicObject],
    removed: &[ObjectRef],
    labels: &[(ObjectRef, BTreeMap<String, String>)],
) -> Snapshot {
    let added_refs: BTreeSet<ObjectRef> = added.iter().map(ObjectRef::of).collect();
    let mut objects: Vec<DynamicObject> = ALL
        .iter()
        .flat_map(|info| snapshot.all(info.kind))
        .filter(|object| {
            let reference = ObjectRef::of(object);
            !added_refs.contains(&reference) && !removed.contains(&reference)
        })
        .cloned()
        .chain(added.iter().cloned())
        .collect();
    for object in &mut objects {
        let reference = ObjectRef::of(object);
        for (_, new_labels) in labels.iter().filter(|(target, _)| *target == reference) {
            object.metadata.labels.get_or_insert_with(BTreeMap::new).extend(new_labels.clone());
        }
    }
    Snapshot::from_objects(objects)
}

fn waypoint_name(snapshot: &Snapshot, namespace: &str) -> String {
    snapshot
        .in_namespace(Kind::Gateway, namespace)
        .find(|gateway| spec::<GatewaySpec>(gateway).is_ok_and(|spec| spec.gateway_class_name == WAYPOINT_CLASS))
        .and_then(|gateway| gateway.metadata.name.clone())
        .unwrap_or_else(|| DEFAULT_WAYPOINT.into())
}

/// Adds or removes the `istio-proxy` container of a pod, as a restart under the new injection
/// labels would.
fn set_proxy_container(pod: &mut DynamicObject, present: bool) {
    let Some(spec) = pod.data.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in CONTAINER_FIELDS {
        if let Some(containers) = spec.get_mut(field).and_then(Value::as_array_mut) {
            containers.retain(|container| !is_proxy_container(container));
        }
    }
    if present {
        let containers = spec.entry("containers").or_insert_with(|| json!([]));
        if let Some(containers) = containers.as_array_mut() {
            containers.push(json!({"name": PROXY_CONTAINER}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::equivalence::topology::{Mode, Topology};

    fn objects(yaml: &str) -> Snapshot {
        Snapshot::from_objects(crate::snapshot::parse_documents(Path::new("test.yaml"), yaml).unwrap())
    }

    const INPUT: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/rev: default}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {serviceAccountName: web, containers: [{name: web}, {name: istio-proxy}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template: {metadata: {labels: {app: api}}, spec: {containers: [{name: api}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shop-waypoint, namespace: shop}
spec: {gatewayClassName: istio-waypoint}
";

    fn modes(snapshot: &Snapshot) -> Vec<(String, Mode)> {
        Topology::from_snapshot(snapshot).workloads.iter().map(|w| (w.key(), w.mode)).collect()
    }

    #[test]
    fn the_input_runs_sidecars_and_the_state_moves_pods_and_templates() {
        let input = objects(INPUT);
        assert_eq!(modes(&input), vec![("shop/api".into(), Mode::Sidecar), ("shop/web".into(), Mode::Sidecar)]);

        let enrolled_with_sidecars = MigrationState {
            enrolled: ["shop".into()].into(),
            sidecars: ["shop".into()].into(),
            ..MigrationState::default()
        };
        let step6 = enrolled_with_sidecars.apply(&input);
        assert_eq!(modes(&step6)[0].1, Mode::Sidecar, "sidecars still own the traffic");

        let done = MigrationState {
            enrolled: ["shop".into()].into(),
            waypoints: ["shop".into()].into(),
            ..MigrationState::default()
        };
        let end = done.apply(&input);
        assert_eq!(modes(&end), vec![("shop/api".into(), Mode::Ambient), ("shop/web".into(), Mode::Ambient)]);
        let namespace = end.get(Kind::Namespace, None, "shop").unwrap();
        assert_eq!(crate::mesh::labels(namespace).get(USE_WAYPOINT).map(String::as_str), Some("shop-waypoint"));
        assert!(!crate::mesh::labels(namespace).contains_key(ISTIO_REV));

        let fully = MigrationState::fully_migrated(&input, &["shop".to_string()].into());
        assert_eq!(fully, done, "shop has a waypoint Gateway, so it is used");

        let nothing = MigrationState { enrolled: ["other".into()].into(), ..MigrationState::default() };
        let untouched = nothing.apply(&input);
        assert_eq!(modes(&untouched), modes(&input), "namespaces not named keep their state");
        assert!(untouched.get(Kind::Namespace, None, "other").is_some(), "a missing namespace is created");
    }

    #[test]
    fn state_files_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        std::fs::write(&good, "enrolled: [a]\nsidecars: [a, b]\n").unwrap();
        let state = MigrationState::from_file(&good).unwrap();
        assert_eq!(state.namespaces().len(), 2);
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "enroled: [a]\n").unwrap();
        let err = MigrationState::from_file(&bad).unwrap_err().to_string();
        assert!(err.contains("unknown field `enroled`"), "{err}");
        assert!(MigrationState::from_file(&dir.path().join("absent.yaml")).is_err());
    }
}
