//! A snapshot of the cluster objects the suite reads, from a live cluster or from files.
//!
//! Checks, conversion and planning are pure functions of a [`Snapshot`]. The snapshot also records,
//! per kind, whether the source could tell us about it at all ([`Coverage`]): an offline dump that
//! holds no AuthorizationPolicies says nothing about whether the cluster has some, and checks must
//! report that instead of guessing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube_core::DynamicObject;
use serde::Serialize;
use serde_json::Value;

use crate::kinds::Kind;

/// What the source could say about one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "detail")]
pub enum Coverage {
    /// Listed completely (possibly empty).
    Listed,
    /// Offline input holds no object of this kind; the cluster may still have some.
    NotInInput,
    /// The API server does not serve this kind (CRD not installed).
    NotServed,
    /// Listing was refused; the detail names the verb and resource.
    Forbidden(String),
}

/// Served versions of each (group, kind), from discovery.
pub type Served = BTreeMap<(String, String), Vec<String>>;

/// Where a snapshot came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    Live { server: String },
    Files { paths: Vec<PathBuf> },
    Memory,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    objects: BTreeMap<Kind, Vec<DynamicObject>>,
    coverage: BTreeMap<Kind, Coverage>,
    pub source: Source,
    /// Served kinds and versions, when known (live discovery, or CRDs in the input).
    pub served: Option<Served>,
    /// Notes about the input that are not findings (ignored documents, skipped kinds).
    pub notes: Vec<String>,
    /// The mesh's trust domain as the user gave it (`--trust-domain`): a fact about the input
    /// that overrides its Istio resources (see [`crate::model::identity`]).
    pub trust_domain: Option<String>,
}

/// Failures to read offline input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: document {document}: invalid YAML or JSON: {message}")]
    Parse { path: PathBuf, document: usize, message: String },
    #[error("{path}: document {document}: not a Kubernetes object ({reason})")]
    NotAnObject { path: PathBuf, document: usize, reason: String },
    #[error("{path}: no YAML or JSON files found")]
    Empty { path: PathBuf },
}

impl Snapshot {
    /// An empty snapshot in which the given kinds are known to be complete.
    pub fn new(source: Source) -> Self {
        Snapshot {
            objects: BTreeMap::new(),
            coverage: BTreeMap::new(),
            source,
            served: None,
            notes: Vec::new(),
            trust_domain: None,
        }
    }

    /// Builds an in-memory snapshot from objects; every kind of the table counts as listed.
    pub fn from_objects(objects: impl IntoIterator<Item = DynamicObject>) -> Self {
        let mut snapshot = Snapshot::new(Source::Memory);
        for info in crate::kinds::ALL {
            snapshot.set_coverage(info.kind, Coverage::Listed);
        }
        for object in objects {
            snapshot.insert(object);
        }
        snapshot
    }

    /// Adds an object; objects of kinds the suite does not know are ignored and reported in notes.
    pub fn insert(&mut self, object: DynamicObject) -> Option<Kind> {
        let (api_version, kind_name) = match &object.types {
            Some(types) => (types.api_version.clone(), types.kind.clone()),
            None => (String::new(), String::new()),
        };
        match Kind::from_type(&api_version, &kind_name) {
            Some(kind) => {
                self.objects.entry(kind).or_default().push(object);
                Some(kind)
            }
            None => {
                self.notes.push(format!(
                    "ignored {kind_name} ({api_version}) {}: not a kind oc-ambient reads",
                    display_name(&object)
                ));
                None
            }
        }
    }

    /// Adds an object read from input and marks its kind listed: the input speaks for that kind.
    pub fn insert_listed(&mut self, object: DynamicObject) {
        if let Some(kind) = self.insert(object) {
            self.set_coverage(kind, Coverage::Listed);
        }
    }

    pub fn set_coverage(&mut self, kind: Kind, coverage: Coverage) {
        self.coverage.insert(kind, coverage);
    }

    pub fn coverage(&self, kind: Kind) -> &Coverage {
        self.coverage.get(&kind).unwrap_or(&Coverage::NotInInput)
    }

    /// True when the snapshot can answer questions about `kind` (listed completely).
    pub fn knows(&self, kind: Kind) -> bool {
        matches!(self.coverage(kind), Coverage::Listed)
    }

    pub fn all(&self, kind: Kind) -> &[DynamicObject] {
        self.objects.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Objects of a kind, for changing them in place (the change simulator); the caller keeps
    /// every object of the list of that kind.
    pub(crate) fn objects_mut(&mut self, kind: Kind) -> &mut Vec<DynamicObject> {
        self.objects.entry(kind).or_default()
    }

    pub fn in_namespace<'a>(&'a self, kind: Kind, namespace: &'a str) -> impl Iterator<Item = &'a DynamicObject> + 'a {
        self.all(kind).iter().filter(move |object| object.metadata.namespace.as_deref() == Some(namespace))
    }

    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<&DynamicObject> {
        self.all(kind).iter().find(|object| {
            object.metadata.name.as_deref() == Some(name) && object.metadata.namespace.as_deref() == namespace
        })
    }

    /// Objects of a kind decoded into a typed struct (core kinds from k8s-openapi, say). Objects that
    /// do not decode are skipped and noted by the caller through the returned error list.
    pub fn typed<T: serde::de::DeserializeOwned>(&self, kind: Kind) -> (Vec<T>, Vec<String>) {
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for object in self.all(kind) {
            match serde_json::to_value(object).and_then(serde_json::from_value::<T>) {
                Ok(value) => ok.push(value),
                Err(err) => errors.push(format!("{} {}: {err}", kind.name(), display_name(object))),
            }
        }
        (ok, errors)
    }

    /// Every kind with at least one object, and every kind marked listed.
    pub fn kinds(&self) -> impl Iterator<Item = (Kind, &Coverage)> {
        self.coverage.iter().map(|(kind, coverage)| (*kind, coverage))
    }

    /// The versions the cluster serves of `kind`: from discovery, else from its
    /// CustomResourceDefinition when the input lists CRDs; None when the input cannot tell.
    pub fn served_versions(&self, kind: Kind) -> Option<Vec<String>> {
        let info = kind.info();
        if let Some(served) = &self.served {
            return Some(served.get(&(info.group.to_string(), info.name.to_string())).cloned().unwrap_or_default());
        }
        if !self.knows(Kind::CustomResourceDefinition) {
            return None;
        }
        let crd = self.get(Kind::CustomResourceDefinition, None, &info.resource());
        let versions = crd.and_then(|crd| crd.data.pointer("/spec/versions")).and_then(Value::as_array);
        Some(
            versions
                .into_iter()
                .flatten()
                .filter(|version| version.get("served").and_then(Value::as_bool) == Some(true))
                .filter_map(|version| version.get("name").and_then(Value::as_str).map(str::to_string))
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.objects.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts namespaced objects that name no namespace into `namespace`, as `kubectl apply -n NS`
    /// does with manifests such as the upstream samples. Cluster-scoped kinds are left alone.
    pub fn default_namespace(&mut self, namespace: &str) {
        for (kind, objects) in &mut self.objects {
            if !kind.info().namespaced {
                continue;
            }
            for object in objects.iter_mut().filter(|object| object.metadata.namespace.is_none()) {
                object.metadata.namespace = Some(namespace.to_string());
            }
        }
    }
}

/// `namespace/name` or `name`.
pub fn display_name(object: &DynamicObject) -> String {
    let name = object.metadata.name.as_deref().unwrap_or("<unnamed>");
    match object.metadata.namespace.as_deref() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Parses a YAML or JSON stream into objects, flattening `kind: List` (and `*List`) documents.
pub fn parse_documents(path: &Path, text: &str) -> Result<Vec<DynamicObject>, InputError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document_number = index + 1;
        let value = <Value as serde::Deserialize>::deserialize(document).map_err(|err| InputError::Parse {
            path: path.to_path_buf(),
            document: document_number,
            message: err.to_string(),
        })?;
        flatten(path, document_number, value, &mut objects)?;
    }
    Ok(objects)
}

fn flatten(path: &Path, document: usize, value: Value, out: &mut Vec<DynamicObject>) -> Result<(), InputError> {
    let not_object =
        |reason: &str| InputError::NotAnObject { path: path.to_path_buf(), document, reason: reason.to_string() };
    match value {
        Value::Null => Ok(()),
        Value::Object(map) => {
            let is_list = map.get("kind").and_then(Value::as_str).is_some_and(|kind| kind.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array);
            if is_list {
                if let Some(Value::Array(items)) = map.get("items") {
                    for item in items {
                        flatten(path, document, item.clone(), out)?;
                    }
                }
                return Ok(());
            }
            if !map.get("apiVersion").is_some_and(Value::is_string) {
                return Err(not_object("no apiVersion"));
            }
            if !map.get("kind").is_some_and(Value::is_string) {
                return Err(not_object("no kind"));
            }
            let object: DynamicObject =
                serde_json::from_value(Value::Object(map)).map_err(|err| not_object(&err.to_string()))?;
            out.push(object);
            Ok(())
        }
        _ => Err(not_object("a document must be a mapping")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_without_a_namespace_get_the_default_one() {
        let objects = parse_documents(
            Path::new("x.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n}",
        )
        .unwrap();
        let mut snapshot = Snapshot::from_objects(objects);
        snapshot.default_namespace("bookinfo");
        assert!(snapshot.get(Kind::Service, Some("bookinfo"), "a").is_some());
        assert!(snapshot.get(Kind::Namespace, None, "n").is_some(), "cluster-scoped objects stay unnamespaced");
    }

    #[test]
    fn bad_documents_are_named_by_file_and_position() {
        let path = Path::new("dump.yaml");
        let err = parse_documents(path, "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: [").unwrap_err();
        assert!(matches!(err, InputError::Parse { document: 2, .. }), "{err}");
        let err = parse_documents(path, "just: text\n").unwrap_err();
        assert_eq!(err.to_string(), "dump.yaml: document 1: not a Kubernetes object (no apiVersion)");
        let err = parse_documents(path, "- a\n- b\n").unwrap_err();
        assert!(err.to_string().contains("must be a mapping"));
    }

    #[test]
    fn json_input_is_accepted() {
        let objects = parse_documents(
            Path::new("x.json"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"}}"#,
        )
        .unwrap();
        assert_eq!(objects.len(), 1);
    }
}
