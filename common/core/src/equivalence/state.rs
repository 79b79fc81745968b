//! A migration state overlay: which namespaces are enrolled in ambient, which have their waypoint
//! active, which still run sidecars. It becomes [`Change`]s on exactly what the evaluator derives
//! modes from (namespace labels, then restarts that re-admit the pods), so the guide's steps can be
//! replayed on one configuration, and `--state FILE` can describe any intermediate state.
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

use crate::change::{Change, ResourceRef, apply_all};
use crate::kinds::Kind;
use crate::mesh::gateway_api::GatewaySpec;
use crate::mesh::labels::{
    DATAPLANE_AMBIENT, DATAPLANE_MODE, ISTIO_INJECTION, ISTIO_REV, USE_WAYPOINT, WAYPOINT_CLASS,
};
use crate::mesh::spec;
use crate::model::dataplane::controls;
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

    /// The changes that bring `snapshot` to this state: the labels of every described namespace
    /// (a Namespace missing from `snapshot` is created), then a restart of every workload in them,
    /// so pods get or lose their sidecar under the new labels.
    pub fn changes(&self, snapshot: &Snapshot) -> Vec<Change> {
        let described = self.namespaces();
        let mut changes = Vec::new();
        for name in &described {
            let target = ResourceRef::new(Kind::Namespace, None, name);
            match snapshot.get(Kind::Namespace, None, name) {
                Some(namespace) => {
                    let labels = self.label_changes(snapshot, name, crate::mesh::labels(namespace));
                    if !labels.is_empty() {
                        changes.push(Change::SetLabels { target, labels });
                    }
                }
                None => {
                    let labels = self.label_changes(snapshot, name, &BTreeMap::new());
                    let labels = labels.into_iter().filter_map(|(key, value)| Some((key, value?))).collect();
                    let namespace = DynamicObject {
                        types: Some(TypeMeta { api_version: "v1".into(), kind: "Namespace".into() }),
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(labels),
                            ..ObjectMeta::default()
                        },
                        data: json!({}),
                    };
                    changes.push(Change::Apply { object: namespace });
                }
            }
        }
        for name in &described {
            let controllers: Vec<&DynamicObject> = [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet]
                .into_iter()
                .flat_map(|kind| snapshot.in_namespace(kind, name))
                .collect();
            let bare_pods = snapshot
                .in_namespace(Kind::Pod, name)
                .filter(|pod| !controllers.iter().any(|controller| controls(controller, pod)));
            for workload in controllers.iter().copied().chain(bare_pods) {
                if let Ok(target) = ResourceRef::of(workload) {
                    changes.push(Change::Restart { target });
                }
            }
        }
        changes
    }

    /// `snapshot` in this state. Its changes target only objects of `snapshot`, so none is refused.
    pub fn apply(&self, snapshot: &Snapshot) -> Snapshot {
        let mut copy = snapshot.clone();
        self.apply_in_place(&mut copy);
        copy
    }

    /// [`MigrationState::apply`] without a copy of `snapshot`.
    pub fn apply_in_place(&self, snapshot: &mut Snapshot) {
        let changes = self.changes(snapshot);
        apply_all(snapshot, &changes);
    }

    /// The label changes that give namespace `name` (labelled `current`) this state; labels
    /// already right are left out.
    fn label_changes(
        &self,
        snapshot: &Snapshot,
        name: &str,
        current: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Option<String>> {
        let mut desired: BTreeMap<String, Option<String>> = BTreeMap::new();
        desired.insert(DATAPLANE_MODE.into(), self.enrolled.contains(name).then(|| DATAPLANE_AMBIENT.into()));
        desired.insert(USE_WAYPOINT.into(), self.waypoints.contains(name).then(|| waypoint_name(snapshot, name)));
        if !self.sidecars.contains(name) {
            desired.insert(ISTIO_REV.into(), None);
            desired.insert(ISTIO_INJECTION.into(), None);
        } else if !current.contains_key(ISTIO_REV) {
            desired.insert(ISTIO_INJECTION.into(), Some("enabled".into()));
        }
        desired.retain(|key, value| current.get(key) != value.as_ref());
        desired
    }
}

fn waypoint_name(snapshot: &Snapshot, namespace: &str) -> String {
    snapshot
        .in_namespace(Kind::Gateway, namespace)
        .find(|gateway| spec::<GatewaySpec>(gateway).is_ok_and(|spec| spec.gateway_class_name == WAYPOINT_CLASS))
        .and_then(|gateway| gateway.metadata.name.clone())
        .unwrap_or_else(|| DEFAULT_WAYPOINT.into())
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
