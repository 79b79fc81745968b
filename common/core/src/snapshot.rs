//! A snapshot of the cluster objects the suite reads, from a live cluster or from files.
//!
//! Checks, conversion and planning are pure functions of a [`Snapshot`]. The snapshot also records,
//! per kind, whether the source could tell us about it at all ([`Coverage`]): an offline dump that
//! holds no AuthorizationPolicies says nothing about whether the cluster has some, and checks must
//! report that instead of guessing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kube_core::DynamicObject;
use serde::Serialize;
use serde::de::DeserializeSeed;
use serde_json::Value;

use crate::fields::{Fields, ObjectSeed};
use crate::kinds::Kind;
use crate::mesh::networking::service_of_host;

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

/// (kind name, namespace, name) of an object another controller rewrites ([`Snapshot::controlled`]).
pub type ControlledKey = (String, Option<String>, String);

/// (namespace, name) within a kind: what [`Snapshot::get`] looks up.
type ObjectKey = (Option<String>, Option<String>);

#[derive(Debug, Clone)]
pub struct Snapshot {
    objects: BTreeMap<Kind, Vec<DynamicObject>>,
    /// Position of the first object of each key in its kind's list, by kind, so that lookups by
    /// name are constant time (checks and the translator make one per object, which a scan made
    /// quadratic) and a removal renumbers only its kind.
    /// Kept up to date by [`Snapshot::insert`]; built on the next lookup after an in-place change.
    index: OnceLock<HashMap<Kind, HashMap<ObjectKey, usize>>>,
    /// Positions of each kind's objects by namespace, ascending, so that a namespace's objects
    /// are found without scanning the kind (the planners ask once per namespace, which a scan
    /// made quadratic). Built on the first such lookup, then kept up to date like `index`.
    by_namespace: OnceLock<HashMap<Kind, HashMap<String, Vec<usize>>>>,
    /// The VirtualServices and DestinationRules by the namespaces of the Services their hosts
    /// name ([`Snapshot::routing_into`]). Built on the first such lookup, dropped when an object
    /// of either kind is added, removed or handed out for change.
    routing: OnceLock<Routing>,
    coverage: BTreeMap<Kind, Coverage>,
    pub source: Source,
    /// Served kinds and versions, when known (live discovery, or CRDs in the input).
    pub served: Option<Served>,
    /// Notes about the input that are not findings (ignored documents, skipped kinds).
    pub notes: Vec<String>,
    /// The mesh's trust domain as the user gave it (`--trust-domain`): a fact about the input
    /// that overrides its Istio resources (see [`crate::model::identity`]).
    pub trust_domain: Option<String>,
    /// Objects a controller of a kind the suite does not otherwise read rewrites at run time:
    /// (kind, namespace, name) to the controller, in words. An Argo Rollout names its
    /// VirtualServices, DestinationRule and canary/stable Services; the translator leaves them as
    /// they are (see `convert::unchanged`).
    pub controlled: BTreeMap<ControlledKey, String>,
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
    #[error(
        "{path}: document {document}: nested deeper than {limit} levels; refused unparsed (raise with --max-depth)"
    )]
    TooDeep { path: PathBuf, document: usize, limit: usize },
    #[error(
        "{path}: document {document} is larger than {limit} bytes; refused unparsed (raise with --max-document-bytes)"
    )]
    DocumentTooLarge { path: PathBuf, document: usize, limit: usize },
    #[error("{path}: the input holds more than {limit} objects (raise with --max-objects)")]
    TooManyObjects { path: PathBuf, limit: usize },
    #[error("{inputs}: no Kubernetes object in the input (it is empty, or holds only document separators or comments)")]
    NoObjects { inputs: String },
}

/// Bounds on offline input, so that hostile or mistaken files are refused in time linear in their
/// size instead of exhausting time or memory. The YAML parser takes time quadratic in the depth of
/// nested flow collections (`[[[[...`), so depth is measured by a linear pre-scan before the parser
/// sees the text. The defaults are far above what a real cluster's dump holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Deepest nesting of flow collections (`[`, `{`) in one document.
    pub max_depth: usize,
    /// Largest single YAML or JSON document (a `kind: List` dump is one document).
    pub max_document_bytes: usize,
    /// Most objects in the whole input, after flattening lists.
    pub max_objects: usize,
}

impl InputLimits {
    pub const DEFAULT_MAX_DEPTH: usize = 100;
    pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 512 * 1024 * 1024;
    pub const DEFAULT_MAX_OBJECTS: usize = 500_000;
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_document_bytes: Self::DEFAULT_MAX_DOCUMENT_BYTES,
            max_objects: Self::DEFAULT_MAX_OBJECTS,
        }
    }
}

impl Snapshot {
    /// An empty snapshot in which the given kinds are known to be complete.
    pub fn new(source: Source) -> Self {
        Snapshot {
            objects: BTreeMap::new(),
            index: OnceLock::new(),
            by_namespace: OnceLock::new(),
            routing: OnceLock::new(),
            coverage: BTreeMap::new(),
            source,
            served: None,
            notes: Vec::new(),
            trust_domain: None,
            controlled: BTreeMap::new(),
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
            Some(kind) if !kind.info().list_selector.is_none_or(|selector| selected(selector, &object)) => {
                self.notes.push(format!(
                    "ignored {kind_name} {}: oc-ambient reads only those labelled {}",
                    display_name(&object),
                    kind.info().list_selector.unwrap_or_default()
                ));
                None
            }
            Some(kind) => {
                self.push_object(kind, object);
                Some(kind)
            }
            None => {
                self.notes.push(format!(
                    "ignored {kind_name} ({api_version}) {}: not a kind oc-ambient reads",
                    display_name(&object)
                ));
                self.controlled.extend(argo_rollout_targets(&api_version, &kind_name, &object));
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

    /// Objects of a kind, for changing them in place (the change simulator). The caller changes
    /// no name or namespace, and adds and removes objects only with [`Snapshot::push_object`] and
    /// [`Snapshot::remove_objects`]: the index by name stays valid, so a plan of thousands of
    /// actions does not rebuild it after each one.
    pub(crate) fn objects_mut(&mut self, kind: Kind) -> &mut [DynamicObject] {
        self.routing_changes(kind);
        self.objects.entry(kind).or_default()
    }

    /// Where the first object of `kind` named `name` in `namespace` is in its kind's list.
    pub(crate) fn position(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<usize> {
        let index = self.index.get_or_init(|| {
            let mut index = HashMap::new();
            for (kind, objects) in &self.objects {
                let by_kind: &mut HashMap<ObjectKey, usize> = index.entry(*kind).or_default();
                for (position, object) in objects.iter().enumerate() {
                    by_kind.entry(object_key(object)).or_insert(position);
                }
            }
            index
        });
        index.get(&kind)?.get(&(namespace.map(str::to_string), Some(name.to_string()))).copied()
    }

    /// Adds an object of a known kind at the end of its list (the change simulator's create).
    pub(crate) fn push_object(&mut self, kind: Kind, object: DynamicObject) {
        self.routing_changes(kind);
        let objects = self.objects.entry(kind).or_default();
        if let Some(index) = self.index.get_mut() {
            index.entry(kind).or_default().entry(object_key(&object)).or_insert(objects.len());
        }
        if let (Some(by_namespace), Some(namespace)) = (self.by_namespace.get_mut(), &object.metadata.namespace) {
            by_namespace.entry(kind).or_default().entry(namespace.clone()).or_default().push(objects.len());
        }
        objects.push(object);
    }

    /// Removes the objects at `positions` (ascending, each once) of `kind`'s list, keeping the
    /// order of the others, in one pass: each removal shifts the rest of the list, so a change
    /// set deleting many objects one at a time was quadratic. Positions past the end are ignored.
    pub(crate) fn remove_objects(&mut self, kind: Kind, positions: &[usize]) {
        self.routing_changes(kind);
        let objects = self.objects.entry(kind).or_default();
        let Some(first) = positions.first().copied().filter(|first| *first < objects.len()) else {
            return;
        };
        let mut at = first;
        let removed: Vec<DynamicObject> = objects
            .extract_if(first.., |_| {
                let remove = positions.binary_search(&at).is_ok();
                at += 1;
                remove
            })
            .collect();
        let objects = &self.objects[&kind];
        // A kept object moves down by the number of removed ones before it.
        let moved = |at: usize| at - positions.partition_point(|removed| *removed < at);
        if let Some(by_kind) = self.by_namespace.get_mut().and_then(|by_namespace| by_namespace.get_mut(&kind)) {
            for in_namespace in by_kind.values_mut() {
                in_namespace.retain(|at| positions.binary_search(at).is_err());
                in_namespace.iter_mut().for_each(|at| *at = moved(*at));
            }
        }
        // Another object of a removed key (input may hold duplicates) takes its place in the
        // index: rebuilt on the next lookup, as rare as duplicates are. A duplicate shares the
        // namespace, so only that namespace's objects are looked at when they are indexed.
        let by_namespace = self.by_namespace.get().and_then(|by_namespace| by_namespace.get(&kind));
        let duplicated = |removed: &DynamicObject| {
            let same_key = |object: &DynamicObject| {
                object.metadata.name == removed.metadata.name && object.metadata.namespace == removed.metadata.namespace
            };
            match (by_namespace, &removed.metadata.namespace) {
                (Some(by_kind), Some(namespace)) => {
                    by_kind.get(namespace).is_some_and(|at| at.iter().any(|at| same_key(&objects[*at])))
                }
                _ => objects.iter().any(same_key),
            }
        };
        if removed.iter().any(duplicated) {
            self.index.take();
        } else if let Some(by_kind) = self.index.get_mut().and_then(|index| index.get_mut(&kind)) {
            for object in &removed {
                by_kind.remove(&object_key(object));
            }
            by_kind.values_mut().for_each(|at| *at = moved(*at));
        }
    }

    /// The objects of `kind` in `namespace`, in the kind's order.
    pub fn in_namespace<'a>(
        &'a self,
        kind: Kind,
        namespace: &str,
    ) -> impl Iterator<Item = &'a DynamicObject> + use<'a> {
        let objects = self.all(kind);
        self.namespace_positions(kind, namespace).iter().map(move |position| &objects[*position])
    }

    /// Positions in the kind's list of the objects of `kind` in `namespace`, ascending.
    pub(crate) fn namespace_positions(&self, kind: Kind, namespace: &str) -> &[usize] {
        let by_namespace = self.by_namespace.get_or_init(|| {
            let mut by_namespace: HashMap<Kind, HashMap<String, Vec<usize>>> = HashMap::new();
            for (kind, objects) in &self.objects {
                let by_kind = by_namespace.entry(*kind).or_default();
                for (position, object) in objects.iter().enumerate() {
                    if let Some(namespace) = &object.metadata.namespace {
                        by_kind.entry(namespace.clone()).or_default().push(position);
                    }
                }
            }
            by_namespace
        });
        let positions = by_namespace.get(&kind).and_then(|by_kind| by_kind.get(namespace));
        positions.map(Vec::as_slice).unwrap_or_default()
    }

    /// The VirtualServices (`kind` VirtualService, by `spec.hosts`) or DestinationRules (by
    /// `spec.host`) that name a Service of `namespace` (as [`service_of_host`] resolves a host
    /// against the object's namespace), and those whose host field is missing or no string (list),
    /// which only decoding tells: a superset of what a reader of `namespace` decodes, in the kind's
    /// order. Any other kind: all its objects. The per-namespace views of the planners read this
    /// instead of every route of the mesh for each namespace.
    pub fn routing_into<'a>(
        &'a self,
        kind: Kind,
        namespace: &str,
    ) -> impl Iterator<Item = &'a DynamicObject> + use<'a> {
        let objects = self.all(kind);
        self.routing_positions(kind, [namespace]).into_iter().map(move |position| &objects[position])
    }

    /// Positions in the kind's list of [`Snapshot::routing_into`] any of `namespaces`, ascending.
    pub(crate) fn routing_positions<'n>(
        &self,
        kind: Kind,
        namespaces: impl IntoIterator<Item = &'n str>,
    ) -> Vec<usize> {
        if routing_field(kind).is_none() {
            return (0..self.all(kind).len()).collect();
        }
        let routing = self.routing.get_or_init(|| Routing::new(self));
        let named = namespaces.into_iter().flat_map(|namespace| {
            routing.by_namespace.get(&(kind, namespace.to_string())).map(Vec::as_slice).unwrap_or_default()
        });
        let undecided = routing.undecided.get(&kind).map(Vec::as_slice).unwrap_or_default();
        let mut positions: Vec<usize> = named.chain(undecided).copied().collect();
        positions.sort_unstable();
        positions.dedup();
        positions
    }

    fn routing_changes(&mut self, kind: Kind) {
        if routing_field(kind).is_some() {
            self.routing.take();
        }
    }

    /// The first object of `kind` named `name` in `namespace` (None for cluster-scoped kinds).
    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<&DynamicObject> {
        self.all(kind).get(self.position(kind, namespace, name)?)
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
        self.index.take();
        self.by_namespace.take();
        self.routing.take();
        for (kind, objects) in &mut self.objects {
            if !kind.info().namespaced {
                continue;
            }
            for object in objects.iter_mut().filter(|object| object.metadata.namespace.is_none()) {
                object.metadata.namespace = Some(namespace.to_string());
            }
        }
        self.controlled = std::mem::take(&mut self.controlled)
            .into_iter()
            .map(|((kind, object_namespace, name), by)| {
                ((kind, object_namespace.or_else(|| Some(namespace.to_string())), name), by)
            })
            .collect();
    }
}

/// The objects an Argo Rollout's canary strategy names, which its controller rewrites at run
/// time (weights, subset labels, selectors): see
/// <https://argoproj.github.io/argo-rollouts/features/traffic-management/istio/>.
fn argo_rollout_targets(api_version: &str, kind: &str, object: &DynamicObject) -> Vec<(ControlledKey, String)> {
    if kind != "Rollout" || !api_version.starts_with("argoproj.io/") {
        return Vec::new();
    }
    let rollout = format!("Argo Rollout {}", object.metadata.name.as_deref().unwrap_or_default());
    let canary = object.data.pointer("/spec/strategy/canary");
    let istio = canary.and_then(|canary| canary.pointer("/trafficRouting/istio"));
    let name_at = |value: Option<&Value>, pointer: &str| {
        value.and_then(|value| value.pointer(pointer)).and_then(Value::as_str).map(str::to_string)
    };
    let mut named: Vec<(&str, String)> = Vec::new();
    named.extend(name_at(istio, "/virtualService/name").map(|name| ("VirtualService", name)));
    let services = istio.and_then(|istio| istio.get("virtualServices")).and_then(Value::as_array);
    named.extend(
        services.into_iter().flatten().filter_map(|vs| name_at(Some(vs), "/name")).map(|n| ("VirtualService", n)),
    );
    named.extend(name_at(istio, "/destinationRule/name").map(|name| ("DestinationRule", name)));
    named.extend(name_at(canary, "/canaryService").map(|name| ("Service", name)));
    named.extend(name_at(canary, "/stableService").map(|name| ("Service", name)));
    named
        .into_iter()
        .map(|(kind, name)| ((kind.to_string(), object.metadata.namespace.clone(), name), rollout.clone()))
        .collect()
}

/// The host field of the kinds [`Snapshot::routing_into`] indexes.
fn routing_field(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::VirtualService => Some("hosts"),
        Kind::DestinationRule => Some("host"),
        _ => None,
    }
}

/// Positions of the routing objects by (kind, namespace of a Service a host names), and of those
/// whose host field does not say (see [`Snapshot::routing_into`]).
#[derive(Debug, Clone, Default)]
struct Routing {
    by_namespace: HashMap<(Kind, String), Vec<usize>>,
    undecided: HashMap<Kind, Vec<usize>>,
}

impl Routing {
    fn new(snapshot: &Snapshot) -> Self {
        let mut routing = Routing::default();
        for kind in [Kind::VirtualService, Kind::DestinationRule] {
            let Some(field) = routing_field(kind) else { continue };
            for (position, object) in snapshot.all(kind).iter().enumerate() {
                let own = object.metadata.namespace.as_deref().unwrap_or_default();
                let hosts: Option<Vec<&str>> = match object.data.get("spec").and_then(|spec| spec.get(field)) {
                    Some(Value::String(host)) => Some(vec![host.as_str()]),
                    Some(Value::Array(hosts)) => hosts.iter().map(Value::as_str).collect(),
                    _ => None,
                };
                let Some(hosts) = hosts else {
                    routing.undecided.entry(kind).or_default().push(position);
                    continue;
                };
                let mut namespaces: Vec<&str> = hosts
                    .iter()
                    .filter_map(|host| service_of_host(host, own))
                    .map(|(_, namespace)| namespace)
                    .collect();
                namespaces.sort_unstable();
                namespaces.dedup();
                for namespace in namespaces {
                    routing.by_namespace.entry((kind, namespace.to_string())).or_default().push(position);
                }
            }
        }
        routing
    }
}

fn object_key(object: &DynamicObject) -> ObjectKey {
    (object.metadata.namespace.clone(), object.metadata.name.clone())
}

/// True when `object` carries every `key=value` of a list selector (what the live loader asks
/// the API server for, so offline input reads the same objects).
fn selected(selector: &str, object: &DynamicObject) -> bool {
    let labels = object.metadata.labels.as_ref();
    selector.split(',').all(|requirement| match requirement.split_once('=') {
        Some((key, value)) => {
            labels.and_then(|labels| labels.get(key.trim())).map(String::as_str) == Some(value.trim())
        }
        None => false,
    })
}

/// `namespace/name` or `name`.
pub fn display_name(object: &DynamicObject) -> String {
    let name = object.metadata.name.as_deref().unwrap_or("<unnamed>");
    match object.metadata.namespace.as_deref() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Parses a YAML or JSON stream into whole objects, flattening `kind: List` (and `*List`)
/// documents, within the default [`InputLimits`].
pub fn parse_documents(path: &Path, text: &str) -> Result<Vec<DynamicObject>, InputError> {
    parse_documents_within(path, text, &InputLimits::default(), Fields::All)
}

/// [`parse_documents`] within `limits`: depth and document size are checked before parsing. Each
/// object is decoded keeping `fields` of it (see [`crate::fields`]), one document, and one item of
/// a list, at a time.
pub fn parse_documents_within(
    path: &Path,
    text: &str,
    limits: &InputLimits,
    fields: Fields,
) -> Result<Vec<DynamicObject>, InputError> {
    prescan(text, limits).map_err(|exceeded| match exceeded {
        Exceeded::Depth { document } => {
            InputError::TooDeep { path: path.to_path_buf(), document, limit: limits.max_depth }
        }
        Exceeded::Bytes { document } => {
            InputError::DocumentTooLarge { path: path.to_path_buf(), document, limit: limits.max_document_bytes }
        }
    })?;
    if let Some(objects) = parse_json_stream(path, text, limits, fields) {
        return objects;
    }
    let mut objects = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document_number = index + 1;
        let value = ObjectSeed(fields).deserialize(document).map_err(|err| InputError::Parse {
            path: path.to_path_buf(),
            document: document_number,
            message: err.to_string(),
        })?;
        flatten(path, document_number, value, &mut objects)?;
        if objects.len() > limits.max_objects {
            return Err(InputError::TooManyObjects { path: path.to_path_buf(), limit: limits.max_objects });
        }
    }
    Ok(objects)
}

/// Input that is JSON (`oc get -o json`, a must-gather's JSON files: one or more concatenated
/// values) parsed as JSON, which takes a fraction of the YAML parser's time and memory on large
/// documents; None when the text is not entirely JSON, for the YAML parser (a superset) to read and
/// report on.
fn parse_json_stream(
    path: &Path,
    text: &str,
    limits: &InputLimits,
    fields: Fields,
) -> Option<Result<Vec<DynamicObject>, InputError>> {
    if !text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    let values = match fields {
        Fields::All => json_values::<Value>(text)?,
        Fields::Read => json_values::<ReadDocument>(text)?,
    };
    let mut objects = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        if let Err(err) = flatten(path, index + 1, value, &mut objects) {
            return Some(Err(err));
        }
        if objects.len() > limits.max_objects {
            return Some(Err(InputError::TooManyObjects { path: path.to_path_buf(), limit: limits.max_objects }));
        }
    }
    Some(Ok(objects))
}

/// Every value of a JSON stream, None if any is not JSON.
fn json_values<T: serde::de::DeserializeOwned + Into<Value>>(text: &str) -> Option<Vec<Value>> {
    serde_json::Deserializer::from_str(text).into_iter::<T>().map(|value| value.ok().map(Into::into)).collect()
}

/// A document decoded with [`Fields::Read`] (a stream of JSON values takes a type, not a seed).
struct ReadDocument(Value);

impl<'de> serde::Deserialize<'de> for ReadDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ObjectSeed(Fields::Read).deserialize(deserializer).map(ReadDocument)
    }
}

impl From<ReadDocument> for Value {
    fn from(document: ReadDocument) -> Value {
        document.0
    }
}

/// Which limit of [`prescan`] a document exceeds.
#[derive(Debug, PartialEq, Eq)]
enum Exceeded {
    Depth { document: usize },
    Bytes { document: usize },
}

/// One linear pass over the text: the size of each document and the depth of its flow collections.
///
/// Documents end at a `---` line, which YAML treats as a marker even inside block scalars. Comments
/// are skipped; brackets inside quoted strings are counted, which can only overestimate the depth
/// (so hostile input cannot hide nesting from the scan behind a quote the parser does not see).
fn prescan(text: &str, limits: &InputLimits) -> Result<(), Exceeded> {
    let mut document = 1;
    let mut document_start = 0;
    let mut has_content = false;
    let mut depth = 0usize;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let is_marker =
            line.strip_prefix("---").is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if is_marker {
            if has_content {
                document += 1;
            }
            document_start = offset + line.len();
            has_content = false;
            depth = 0;
        }
        offset += line.len();
        if offset.saturating_sub(document_start) > limits.max_document_bytes {
            return Err(Exceeded::Bytes { document });
        }
        let body = if is_marker { &line[3..] } else { line };
        let mut previous_is_space = true;
        for byte in body.bytes() {
            match byte {
                b'#' if previous_is_space => break,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limits.max_depth {
                        return Err(Exceeded::Depth { document });
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            has_content |= !byte.is_ascii_whitespace();
            previous_is_space = byte.is_ascii_whitespace();
        }
    }
    Ok(())
}

fn flatten(path: &Path, document: usize, value: Value, out: &mut Vec<DynamicObject>) -> Result<(), InputError> {
    let not_object =
        |reason: &str| InputError::NotAnObject { path: path.to_path_buf(), document, reason: reason.to_string() };
    match value {
        Value::Null => Ok(()),
        Value::Object(mut map) => {
            let is_list = map.get("kind").and_then(Value::as_str).is_some_and(|kind| kind.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array);
            if is_list {
                if let Some(Value::Array(items)) = map.remove("items") {
                    for item in items {
                        flatten(path, document, item, out)?;
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

    /// The change simulator adds and removes objects in place; lookups by name must find what is
    /// there after every change, duplicates included, without a rebuild hiding a stale index.
    #[test]
    fn lookups_by_name_and_namespace_follow_objects_pushed_and_removed_in_place() {
        let service = |namespace: &str, name: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": namespace}}))
            .unwrap()
        };
        // What a scan of the kind finds, in its order.
        let assert_namespaces_follow = |snapshot: &Snapshot| {
            for namespace in ["a", "b", "c"] {
                let found: Vec<&DynamicObject> = snapshot.in_namespace(Kind::Service, namespace).collect();
                let scanned: Vec<&DynamicObject> = snapshot
                    .all(Kind::Service)
                    .iter()
                    .filter(|object| object.metadata.namespace.as_deref() == Some(namespace))
                    .collect();
                assert_eq!(found, scanned, "{namespace}");
            }
        };
        let mut snapshot = Snapshot::from_objects(vec![service("a", "one"), service("a", "two"), service("b", "one")]);
        assert_eq!(snapshot.position(Kind::Service, Some("b"), "one"), Some(2));
        assert_namespaces_follow(&snapshot);
        snapshot.remove_objects(Kind::Service, &[0]);
        assert_namespaces_follow(&snapshot);
        assert!(snapshot.get(Kind::Service, Some("a"), "one").is_none());
        assert_eq!(snapshot.get(Kind::Service, Some("b"), "one").unwrap().metadata.namespace.as_deref(), Some("b"));
        assert_eq!(snapshot.position(Kind::Service, Some("a"), "two"), Some(0));
        snapshot.push_object(Kind::Service, service("a", "one"));
        assert_eq!(snapshot.position(Kind::Service, Some("a"), "one"), Some(2));
        snapshot.push_object(Kind::Service, service("c", "three"));
        snapshot.insert(service("b", "four"));
        assert_namespaces_follow(&snapshot);
        snapshot.remove_objects(Kind::Service, &[1]);
        assert_namespaces_follow(&snapshot);
        // A duplicate of a key takes its place when the first is removed.
        snapshot.push_object(Kind::Service, service("a", "two"));
        snapshot.remove_objects(Kind::Service, &[0]);
        assert_eq!(snapshot.position(Kind::Service, Some("a"), "two"), Some(3));
        assert_eq!(snapshot.all(Kind::Service).len(), 4);
        assert_namespaces_follow(&snapshot);
    }

    #[test]
    fn routes_and_rules_are_found_by_the_namespaces_their_hosts_name_after_any_change() {
        let object = |value: Value| -> DynamicObject { serde_json::from_value(value).unwrap() };
        let route = |name: &str, hosts: Value| {
            object(serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name, "namespace": "a"}, "spec": {"hosts": hosts}}))
        };
        let mut snapshot = Snapshot::from_objects(vec![
            route("local", serde_json::json!(["web"])),
            route("remote", serde_json::json!(["api.b.svc.cluster.local", "*.example.com"])),
            route("odd", serde_json::json!("web")),
            object(serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": "hostless", "namespace": "c"}, "spec": {}})),
        ]);
        let names = |snapshot: &Snapshot, kind: Kind, namespace: &str| -> Vec<String> {
            snapshot.routing_into(kind, namespace).filter_map(|object| object.metadata.name.clone()).collect()
        };
        assert_eq!(names(&snapshot, Kind::VirtualService, "a"), ["local", "odd"], "a string is read as one host");
        assert_eq!(names(&snapshot, Kind::VirtualService, "b"), ["remote"]);
        assert_eq!(names(&snapshot, Kind::DestinationRule, "z"), ["hostless"], "a missing host is left to decoding");
        // A route changed in place, added or removed is found where it names now.
        snapshot.objects_mut(Kind::VirtualService)[0].data["spec"]["hosts"] = serde_json::json!(["web.b"]);
        assert_eq!(names(&snapshot, Kind::VirtualService, "a"), ["odd"]);
        assert_eq!(names(&snapshot, Kind::VirtualService, "b"), ["local", "remote"]);
        snapshot.remove_objects(Kind::VirtualService, &[1]);
        snapshot.push_object(Kind::VirtualService, route("late", serde_json::json!(["web"])));
        assert_eq!(names(&snapshot, Kind::VirtualService, "a"), ["odd", "late"]);
        assert_eq!(names(&snapshot, Kind::VirtualService, "b"), ["local"]);
    }

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
    #[allow(clippy::print_stderr)] // the test prints the figure it measures
    fn deep_nesting_is_refused_before_parsing_in_linear_time() {
        let path = Path::new("deep.yaml");
        let depth = 200_000;
        for text in ["[".repeat(depth) + &"]".repeat(depth), r#"{"a":"#.repeat(depth) + "1" + &"}".repeat(depth)] {
            let started = std::time::Instant::now();
            let err = parse_documents(path, &text).unwrap_err();
            let elapsed = started.elapsed();
            eprintln!("{depth}-deep document refused in {:.3} ms", elapsed.as_secs_f64() * 1000.0);
            assert!(matches!(err, InputError::TooDeep { document: 1, limit: 100, .. }), "{err}");
            assert!(elapsed.as_secs() < 5, "the pre-scan is linear: {elapsed:?}");
        }
        let second = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\n---\nx: {}", "[".repeat(101));
        assert!(matches!(parse_documents(path, &second), Err(InputError::TooDeep { document: 2, .. })));
    }

    #[test]
    fn the_depth_limit_counts_flow_nesting_per_document_and_skips_comments() {
        let limits = InputLimits { max_depth: 3, ..InputLimits::default() };
        let three = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {x: '[y]'}}  # [[[[[\n";
        let streamed = format!("{three}---\n{three}---\n{three}");
        assert_eq!(parse_documents_within(Path::new("x"), &streamed, &limits, Fields::All).unwrap().len(), 3);
        let four = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {x: '[[y]]'}}\n";
        assert!(matches!(
            parse_documents_within(Path::new("x"), four, &limits, Fields::All),
            Err(InputError::TooDeep { limit: 3, .. })
        ));
    }

    #[test]
    fn documents_and_objects_beyond_their_limits_are_refused() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n";
        let two = format!("{pod}---\n{pod}");
        let small = InputLimits { max_document_bytes: pod.len(), max_objects: 1, ..InputLimits::default() };
        let err = parse_documents_within(Path::new("x"), &two, &small, Fields::All).unwrap_err();
        assert!(matches!(err, InputError::TooManyObjects { limit: 1, .. }), "{err}");
        let err =
            parse_documents_within(Path::new("x"), &format!("{pod}  extra: 1\n"), &small, Fields::All).unwrap_err();
        assert!(matches!(err, InputError::DocumentTooLarge { document: 1, .. }), "{err}");
        assert!(err.to_string().contains("--max-document-bytes"), "the error names the flag that raises the limit");
    }

    #[test]
    fn json_streams_and_lists_are_read_as_json_and_anything_else_as_yaml() {
        let pod = |name: &str| format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}}}}"#);
        let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{},{}]}}"#, pod("a"), pod("b"));
        let stream = format!("{list}\n{}", pod("c"));
        let names = |text: &str| -> Vec<String> {
            let objects = parse_documents(Path::new("x.json"), text).unwrap();
            objects.into_iter().filter_map(|object| object.metadata.name).collect()
        };
        assert_eq!(names(&stream), ["a", "b", "c"]);
        // Not JSON as a whole (a comment, a YAML separator): the YAML parser reads it.
        assert_eq!(names(&format!("{}\n# comment\n", pod("d"))), ["d"]);
        assert_eq!(names(&format!("{}\n---\n{}", pod("e"), pod("f"))), ["e", "f"]);
        let err = parse_documents(Path::new("x.json"), &format!("{}\n[1]", pod("g"))).unwrap_err();
        assert!(matches!(err, InputError::NotAnObject { document: 2, .. }), "{err}");
        let limits = InputLimits { max_objects: 2, ..InputLimits::default() };
        let err = parse_documents_within(Path::new("x.json"), &stream, &limits, Fields::All).unwrap_err();
        assert!(matches!(err, InputError::TooManyObjects { limit: 2, .. }), "{err}");
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
