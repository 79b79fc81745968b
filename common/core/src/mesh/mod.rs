//! Typed views of the Istio and Gateway API objects the suite reasons about.
//!
//! Checks, the translation engine and the equivalence evaluator all read the same fields; one
//! set of types keeps them agreeing on what, say, "an L7 attribute" is. Fields the suite does not
//! model are kept in `extra` maps so nothing is silently dropped: the translation engine reports
//! them as unsupported instead of losing them.
//!
//! Decode through `serde_json::Value` (as [`spec`] does), never straight from YAML: serde_yaml_ng
//! reads externally tagged enums such as `{exact: jason}` only from YAML tags.

pub mod authz;
pub mod gateway_api;
pub mod labels;
pub mod monitoring;
pub mod networking;

use std::collections::BTreeMap;

use kube_core::DynamicObject;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A reference to an object, as findings and reports print it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef { kind: kind.into(), namespace: namespace.map(str::to_string), name: name.into() }
    }

    pub fn of(object: &DynamicObject) -> Self {
        ObjectRef {
            kind: object.types.as_ref().map(|types| types.kind.clone()).unwrap_or_default(),
            namespace: object.metadata.namespace.clone(),
            name: object.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Decodes an object's `spec` into a typed spec; a missing spec decodes as the default.
pub fn spec<T: DeserializeOwned + Default>(object: &DynamicObject) -> Result<T, String> {
    match object.data.get("spec") {
        None | Some(serde_json::Value::Null) => Ok(T::default()),
        Some(spec) => T::deserialize(spec).map_err(|err| format!("{}: invalid spec: {err}", ObjectRef::of(object))),
    }
}

/// Labels of an object (empty when none).
pub fn labels(object: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    object.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// The Service sends ingress gateways' requests through its waypoint
/// (`istio.io/ingress-use-waypoint=true`).
pub fn ingress_uses_waypoint(service: &DynamicObject) -> bool {
    labels(service).get(labels::INGRESS_USE_WAYPOINT).map(String::as_str) == Some("true")
}

/// Annotations of an object (empty when none).
pub fn annotations(object: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    object.metadata.annotations.as_ref().unwrap_or(&EMPTY)
}

/// True when every `selector` label is present with the same value in `labels` (an empty
/// selector matches everything, as Kubernetes and Istio `matchLabels` do).
pub fn selector_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// Decodes YAML text through JSON values (see the module docs); for tests and embedded examples.
#[cfg(test)]
pub(crate) fn from_yaml<T: DeserializeOwned>(text: &str) -> T {
    let value: serde_json::Value = serde_yaml_ng::from_str(text).expect("valid YAML");
    serde_json::from_value(value).expect("valid object")
}

/// The namespace OLM installs cluster-wide operators (OSSM's CSV) into.
pub const OPERATORS_NAMESPACE: &str = "openshift-operators";

/// Namespaces holding cluster-level mesh facts: the control plane, CNI and ztunnel namespaces the
/// Sail resources name, and the operators' namespace.
pub fn infrastructure_namespaces(snapshot: &crate::snapshot::Snapshot) -> std::collections::BTreeSet<String> {
    use crate::kinds::Kind;
    let mut namespaces = std::collections::BTreeSet::from([OPERATORS_NAMESPACE.to_string()]);
    for kind in [Kind::Istio, Kind::IstioCni, Kind::ZTunnel] {
        for object in snapshot.all(kind) {
            if let Some(namespace) = object.data.pointer("/spec/namespace").and_then(serde_json::Value::as_str) {
                namespaces.insert(namespace.to_string());
            }
        }
    }
    namespaces
}
