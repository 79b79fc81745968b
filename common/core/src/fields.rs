//! The fields the suite reads, and decoding that keeps only them.
//!
//! A cluster's objects are mostly bytes the suite never looks at: an injected pod carries its
//! volumes, probes, resources, image pull details and a long status of container states, and
//! every object carries `managedFields` and often a `last-applied-configuration` annotation (a copy
//! of itself). Held as JSON values, a cluster of 1,000 namespaces took 366 MiB for a read-only
//! check. [`Fields::Read`] decodes each object straight into the parts listed here and skips the
//! rest while parsing ([`ObjectSeed`], [`PageSeed`]), so the dropped parts are never built; a page
//! of a live list, or a document of a dump, is decoded one object at a time and never held twice.
//!
//! # What is kept ([`Fields::Read`])
//!
//! - Every kind: the whole object, except `metadata.managedFields` (server-side apply
//!   bookkeeping) and the annotation `kubectl.kubernetes.io/last-applied-configuration`.
//! - Pods (the bulk of any cluster): `metadata` (as above); `spec.nodeName`,
//!   `spec.serviceAccountName`, `spec.serviceAccount`; of each container and init container its
//!   `name`, `restartPolicy` and the `PROXY_CONFIG` and `ISTIO_META_ENABLE_HBONE` variables of its
//!   `env` (the proxy is found by name, a native sidecar by its restart policy, HBONE by those
//!   variables); of each volume its `csi.driver` (SPIRE); `status.phase` and the `Ready`
//!   condition's `type` and `status`.
//! - Deployments, StatefulSets and DaemonSets: `spec.replicas`, `spec.selector` and the pod
//!   template (its spec kept as a pod's spec is, plus each container's `resources`, which the
//!   waypoint's sizing reads), and the status counters without conditions.
//! - CustomResourceDefinitions: names, and of each version its `name` and `served` flag (offline
//!   input tells served versions from them); live, they are read as metadata only anyway.
//! - [`metadata_only`] kinds (Namespaces, Nodes, ServiceAccounts, Secrets, CRDs): a live read asks
//!   the API server for `PartialObjectMetadataList`, so their content does not even cross the wire.
//!
//! These are the reads of `model` (pods, workloads, namespace modes), `check` (blockers, ignored
//! configuration, ztunnel coverage, checkpoints), `plan::conditions`, `convert` and
//! `equivalence` (which read Services, policies and routes whole, and pods through the model).
//! `tests::check_reports_are_identical_on_full_and_pruned_snapshots` holds the check to the same
//! report on full and pruned snapshots of the examples and fixtures; a new read of a pod field
//! belongs in this list, or that test (given an input with the field) tells.
//!
//! # Why only the check prunes
//!
//! A pruned snapshot is for reading. The mutating plugins write their snapshot into the backup
//! (the baseline of later gates and the source of `--from-backup`) and compute objects to apply
//! from it, so they read [`Fields::All`]: an object written back must never be a pruned one.
//! The rollback restores prior states from the journal, which the engine reads per object, whole.

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::kinds::Kind;
use crate::mesh::labels::{ENABLE_HBONE, PROXY_CONFIG_ENV};

/// How much of each object to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fields {
    /// Whole objects (for plugins that back up or write back what they read).
    #[default]
    All,
    /// The fields the suite reads (see the module docs): for the read-only check.
    Read,
}

/// Which part of a JSON value to keep.
#[derive(Debug)]
pub enum Keep {
    /// The whole value.
    All,
    /// Of an object, the listed fields (each filtered by its own rule), and every other field only
    /// if `others` says so. Applied to each element of an array; scalars are kept as they are.
    Fields { listed: &'static [(&'static str, Keep)], others: bool },
    /// Nothing (a listed field to drop from an object whose other fields are kept).
    Nothing,
    /// Of an array, the elements whose `field` is one of `values`, each filtered by `keep` (the
    /// environment variables the suite reads among dozens, the one condition it reads).
    Matching { field: &'static str, values: &'static [&'static str], keep: &'static Keep },
}

impl Keep {
    /// The rule for field `name` of an object, None to skip it.
    fn field(&self, name: &str) -> Option<&Keep> {
        match self {
            Keep::All => Some(&Keep::All),
            Keep::Nothing => None,
            Keep::Fields { listed, others } => match listed.iter().find(|(field, _)| *field == name) {
                Some((_, Keep::Nothing)) => None,
                Some((_, keep)) => Some(keep),
                None => others.then_some(&Keep::All),
            },
            Keep::Matching { keep, .. } => keep.field(name),
        }
    }

    /// Whether an element of an array this rule filters is kept.
    fn keeps_element(&self, element: &Value) -> bool {
        match self {
            Keep::Matching { field, values, .. } => {
                element.get(field).and_then(Value::as_str).is_some_and(|value| values.contains(&value))
            }
            _ => true,
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

const ANNOTATIONS: Keep = Keep::Fields { listed: &[(LAST_APPLIED, Keep::Nothing)], others: true };

const METADATA: Keep =
    Keep::Fields { listed: &[("managedFields", Keep::Nothing), ("annotations", ANNOTATIONS)], others: true };

const PROXY_ENV: Keep = Keep::Matching { field: "name", values: &[PROXY_CONFIG_ENV, ENABLE_HBONE], keep: &Keep::All };

const CONTAINER: Keep =
    Keep::Fields { listed: &[("name", Keep::All), ("env", PROXY_ENV), ("restartPolicy", Keep::All)], others: false };

/// A controller's template container also keeps its `resources` (the waypoint's sizing reads them).
const TEMPLATE_CONTAINER: Keep = Keep::Fields {
    listed: &[("name", Keep::All), ("env", PROXY_ENV), ("restartPolicy", Keep::All), ("resources", Keep::All)],
    others: false,
};

const CSI_VOLUMES: Keep = Keep::Fields {
    listed: &[("csi", Keep::Fields { listed: &[("driver", Keep::All)], others: false })],
    others: false,
};

const POD_SPEC: Keep = Keep::Fields {
    listed: &[
        ("nodeName", Keep::All),
        ("serviceAccountName", Keep::All),
        ("serviceAccount", Keep::All),
        ("containers", CONTAINER),
        ("initContainers", CONTAINER),
        ("volumes", CSI_VOLUMES),
    ],
    others: false,
};

const TEMPLATE_SPEC: Keep = Keep::Fields {
    listed: &[
        ("nodeName", Keep::All),
        ("serviceAccountName", Keep::All),
        ("serviceAccount", Keep::All),
        ("containers", TEMPLATE_CONTAINER),
        ("initContainers", TEMPLATE_CONTAINER),
        ("volumes", CSI_VOLUMES),
    ],
    others: false,
};

const CONDITION: Keep = Keep::Fields { listed: &[("type", Keep::All), ("status", Keep::All)], others: false };

const POD: Keep = Keep::Fields {
    listed: &[
        ("metadata", METADATA),
        ("spec", POD_SPEC),
        (
            "status",
            Keep::Fields {
                listed: &[
                    ("phase", Keep::All),
                    ("conditions", Keep::Matching { field: "type", values: &["Ready"], keep: &CONDITION }),
                ],
                others: false,
            },
        ),
    ],
    others: true,
};

const CONTROLLER: Keep = Keep::Fields {
    listed: &[
        ("metadata", METADATA),
        (
            "spec",
            Keep::Fields {
                listed: &[
                    ("replicas", Keep::All),
                    ("selector", Keep::All),
                    ("template", Keep::Fields { listed: &[("spec", TEMPLATE_SPEC)], others: true }),
                ],
                others: false,
            },
        ),
        ("status", Keep::Fields { listed: &[("conditions", Keep::Nothing)], others: true }),
    ],
    others: true,
};

/// A CronJob's pod template is that of the Jobs it creates.
const CRON_JOB: Keep = Keep::Fields {
    listed: &[
        ("metadata", METADATA),
        (
            "spec",
            Keep::Fields {
                listed: &[(
                    "jobTemplate",
                    Keep::Fields {
                        listed: &[(
                            "spec",
                            Keep::Fields {
                                listed: &[(
                                    "template",
                                    Keep::Fields { listed: &[("spec", TEMPLATE_SPEC)], others: true },
                                )],
                                others: false,
                            },
                        )],
                        others: true,
                    },
                )],
                others: false,
            },
        ),
    ],
    others: true,
};

const CUSTOM_RESOURCE_DEFINITION: Keep = Keep::Fields {
    listed: &[
        ("metadata", METADATA),
        (
            "spec",
            Keep::Fields {
                listed: &[(
                    "versions",
                    Keep::Fields { listed: &[("name", Keep::All), ("served", Keep::All)], others: false },
                )],
                others: true,
            },
        ),
    ],
    others: true,
};

const OBJECT: Keep = Keep::Fields { listed: &[("metadata", METADATA)], others: true };

const METADATA_ONLY: Keep =
    Keep::Fields { listed: &[("apiVersion", Keep::All), ("kind", Keep::All), ("metadata", METADATA)], others: false };

/// The rule for objects of `kind` (None: a kind the suite does not read, kept whole so that the
/// snapshot can name it in its notes).
pub fn keep(kind: Option<Kind>, fields: Fields) -> &'static Keep {
    match (fields, kind) {
        (Fields::All, _) | (Fields::Read, None) => &Keep::All,
        (Fields::Read, Some(Kind::Pod)) => &POD,
        (Fields::Read, Some(Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::Job)) => &CONTROLLER,
        (Fields::Read, Some(Kind::CronJob)) => &CRON_JOB,
        (Fields::Read, Some(Kind::CustomResourceDefinition)) => &CUSTOM_RESOURCE_DEFINITION,
        (Fields::Read, Some(kind)) if metadata_only(kind, fields) => &METADATA_ONLY,
        (Fields::Read, Some(_)) => &OBJECT,
    }
}

/// Kinds of which the suite reads names, labels and annotations only, so a live read lists them as
/// `PartialObjectMetadataList`. CRDs always: their schemas are megabytes, and live discovery, not
/// the CRD, says which versions are served.
pub fn metadata_only(kind: Kind, fields: Fields) -> bool {
    match fields {
        Fields::All => kind == Kind::CustomResourceDefinition,
        Fields::Read => {
            matches!(
                kind,
                Kind::CustomResourceDefinition | Kind::Namespace | Kind::Node | Kind::ServiceAccount | Kind::Secret
            )
        }
    }
}

/// Removes from `value` what `keep` does not keep (for values already decoded whole).
pub fn prune(value: &mut Value, keep: &Keep) {
    match value {
        Value::Object(map) => {
            if matches!(keep, Keep::All) {
                return;
            }
            map.retain(|name, child| match keep.field(name) {
                Some(rule) => {
                    prune(child, rule);
                    true
                }
                None => false,
            });
        }
        Value::Array(items) => {
            items.retain(|item| keep.keeps_element(item));
            items.iter_mut().for_each(|item| prune(item, keep));
        }
        _ => {}
    }
}

/// Decodes one value keeping only what `keep` keeps; the skipped parts are parsed past, never
/// built.
#[derive(Clone, Copy)]
pub struct PrunedSeed(pub &'static Keep);

impl<'de> DeserializeSeed<'de> for PrunedSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::All => Value::deserialize(deserializer),
            _ => deserializer.deserialize_any(self),
        }
    }
}

/// The scalar visits shared by [`PrunedSeed`] and [`ObjectSeed`]: scalars are kept as they are.
macro_rules! keep_scalars {
    () => {
        fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
            Ok(Value::Bool(value))
        }
        fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
            Ok(Value::from(value))
        }
        fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
            Ok(Value::from(value))
        }
        fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
            Ok(Value::from(value))
        }
        fn visit_str<E>(self, value: &str) -> Result<Value, E> {
            Ok(Value::String(value.to_string()))
        }
        fn visit_string<E>(self, value: String) -> Result<Value, E> {
            Ok(Value::String(value))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            self.deserialize(deserializer)
        }
    };
}

impl<'de> Visitor<'de> for PrunedSeed {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    keep_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            if self.0.keeps_element(&item) {
                items.push(item);
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            match self.0.field(&name) {
                Some(rule) => {
                    let value = map.next_value_seed(PrunedSeed(rule))?;
                    kept.insert(name, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }
}

/// Decodes a document or list item whose kind it learns from its own `apiVersion` and `kind`: the
/// fields after them are pruned while parsing (`kubectl` and the API server write those two
/// first); fields before them are decoded whole and pruned once the kind is known. A list's
/// `items` are decoded item by item the same way, so a `kind: List` dump is pruned as it is read.
#[derive(Clone, Copy)]
pub struct ObjectSeed(pub Fields);

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Fields::All => Value::deserialize(deserializer),
            Fields::Read => deserializer.deserialize_any(self),
        }
    }
}

/// A sequence of [`ObjectSeed`] items (a list's `items`).
struct ItemsSeed(Fields);

impl<'de> DeserializeSeed<'de> for ItemsSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a list of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ObjectSeed(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        PrunedSeed(&Keep::All).visit_map(map)
    }

    keep_scalars!();
}

impl<'de> Visitor<'de> for ObjectSeed {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a Kubernetes object")
    }

    keep_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        PrunedSeed(&Keep::All).visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        // Set once apiVersion and kind are both read (or a field after them is reached).
        let mut rule: Option<&'static Keep> = None;
        let mut decoded_whole = false;
        while let Some(name) = map.next_key::<String>()? {
            let is_type = name == "apiVersion" || name == "kind";
            if rule.is_none() && !is_type && object.contains_key("apiVersion") && object.contains_key("kind") {
                rule = Some(keep(kind_of(&object), self.0));
            }
            let value = match rule {
                Some(rule) => match rule.field(&name) {
                    Some(field_rule) => map.next_value_seed(PrunedSeed(field_rule))?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                },
                None if name == "items" => map.next_value_seed(ItemsSeed(self.0))?,
                None => {
                    decoded_whole |= !is_type;
                    map.next_value::<Value>()?
                }
            };
            object.insert(name, value);
        }
        let mut value = Value::Object(object);
        if decoded_whole && let Value::Object(object) = &value {
            let rule = keep(kind_of(object), self.0);
            prune(&mut value, rule);
        }
        Ok(value)
    }
}

fn kind_of(object: &Map<String, Value>) -> Option<Kind> {
    let text = |field: &str| object.get(field).and_then(Value::as_str).unwrap_or_default();
    Kind::from_type(text("apiVersion"), text("kind"))
}

/// One page of a live list, decoded item by item into pruned values.
pub struct Page {
    pub items: Vec<Value>,
    /// The token of the next page; None on the last.
    pub continue_token: Option<String>,
}

/// Decodes a list response body (`{"metadata": {"continue": ...}, "items": [...]}`) whose items are
/// objects of one kind (list items of built-in kinds carry no `apiVersion` and `kind`, so the rule
/// is given, not read from them).
pub struct PageSeed(pub &'static Keep);

impl<'de> DeserializeSeed<'de> for PageSeed {
    type Value = Page;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Page, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed {
    type Value = Page;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a Kubernetes list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page, A::Error> {
        #[derive(Deserialize, Default)]
        struct ListMeta {
            #[serde(default, rename = "continue")]
            continue_token: Option<String>,
        }
        let mut page = Page { items: Vec::new(), continue_token: None };
        while let Some(name) = map.next_key::<String>()? {
            match name.as_str() {
                "metadata" => page.continue_token = map.next_value::<ListMeta>()?.continue_token,
                "items" => page.items = map.next_value_seed(ItemsOf(self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        page.continue_token = page.continue_token.filter(|token| !token.is_empty());
        Ok(page)
    }
}

/// The `items` of a [`PageSeed`], each pruned by one rule (`null` is an empty list).
struct ItemsOf(&'static Keep);

impl<'de> DeserializeSeed<'de> for ItemsOf {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Value>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsOf {
    type Value = Vec<Value>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a list of objects")
    }

    fn visit_unit<E>(self) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(PrunedSeed(self.0))? {
            items.push(item);
        }
        Ok(items)
    }
}

/// Decodes a list response body of objects of `kind`, keeping `fields` of each.
pub fn decode_page(body: &[u8], kind: Kind, fields: Fields) -> Result<Page, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let page = PageSeed(keep(Some(kind), fields)).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::json;

    use super::*;
    use crate::check::{Options, Scope, evaluate};
    use crate::snapshot::{InputLimits, Snapshot, parse_documents_within};

    /// An injected pod as the API server returns it, with what the suite never reads.
    fn injected_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "reviews-v1-abc", "namespace": "shop", "labels": {"app": "reviews"},
                "annotations": {"sidecar.istio.io/status": "{}", LAST_APPLIED: "{\"big\": true}"},
                "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
                "ownerReferences": [{"kind": "ReplicaSet", "name": "reviews-v1-5d", "uid": "u", "apiVersion": "apps/v1"}]
            },
            "spec": {
                "nodeName": "node-1", "serviceAccountName": "reviews",
                "containers": [
                    {"name": "reviews", "image": "reviews:1", "resources": {"limits": {"cpu": "1"}},
                     "env": [{"name": "LOG_DIR", "value": "/tmp"}],
                     "readinessProbe": {"httpGet": {"path": "/"}}, "ports": [{"containerPort": 9080}]},
                    {"name": "istio-proxy", "image": "proxyv2", "args": ["proxy", "sidecar"],
                     "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                             {"name": "PROXY_CONFIG", "value": "{\"proxyMetadata\":{\"ISTIO_META_ENABLE_HBONE\":\"true\"}}"}]}
                ],
                "initContainers": [{"name": "istio-init", "image": "proxyv2", "restartPolicy": "Never"}],
                "volumes": [{"name": "token", "projected": {"sources": []}},
                            {"name": "spiffe", "csi": {"driver": "csi.spiffe.io", "readOnly": true}}],
                "tolerations": [{"key": "x"}]
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "PodScheduled", "status": "True"},
                               {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "containerStatuses": [{"name": "reviews", "ready": true}]
            }
        })
    }

    fn pruned_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "reviews-v1-abc", "namespace": "shop", "labels": {"app": "reviews"},
                "annotations": {"sidecar.istio.io/status": "{}"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "reviews-v1-5d", "uid": "u", "apiVersion": "apps/v1"}]
            },
            "spec": {
                "nodeName": "node-1", "serviceAccountName": "reviews",
                "containers": [
                    {"name": "reviews", "env": []},
                    {"name": "istio-proxy",
                     "env": [{"name": "PROXY_CONFIG", "value": "{\"proxyMetadata\":{\"ISTIO_META_ENABLE_HBONE\":\"true\"}}"}]}
                ],
                "initContainers": [{"name": "istio-init", "restartPolicy": "Never"}],
                "volumes": [{}, {"csi": {"driver": "csi.spiffe.io"}}]
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        })
    }

    #[test]
    fn a_pod_keeps_exactly_the_fields_the_suite_reads_whether_pruned_while_parsing_or_after() {
        let text = injected_pod().to_string();
        let rule = keep(Some(Kind::Pod), Fields::Read);
        let streamed = PrunedSeed(rule).deserialize(&mut serde_json::Deserializer::from_str(&text)).unwrap();
        assert_eq!(streamed, pruned_pod());
        let mut after = injected_pod();
        prune(&mut after, rule);
        assert_eq!(after, pruned_pod());
        let whole = PrunedSeed(keep(Some(Kind::Pod), Fields::All))
            .deserialize(&mut serde_json::Deserializer::from_str(&text))
            .unwrap();
        assert_eq!(whole, injected_pod(), "Fields::All keeps everything");
    }

    #[test]
    fn documents_are_pruned_by_their_own_kind_wherever_it_appears() {
        // The kind first (as kubectl writes it), last (fields before it are pruned afterwards), and
        // inside a List whose `items` come before its own `kind`.
        let pod = injected_pod();
        let mut kind_last = Map::new();
        for (name, value) in pod.as_object().unwrap().iter().rev() {
            kind_last.insert(name.clone(), value.clone());
        }
        let list = format!(r#"{{"apiVersion": "v1", "items": [{pod}], "kind": "List"}}"#);
        for text in [pod.to_string(), Value::Object(kind_last).to_string(), list] {
            let mut deserializer = serde_json::Deserializer::from_str(&text);
            let mut value = ObjectSeed(Fields::Read).deserialize(&mut deserializer).unwrap();
            if let Some(items) = value.get_mut("items") {
                value = items[0].take();
            }
            assert_eq!(value, pruned_pod(), "{text}");
        }
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "managedFields": []},
                             "spec": {"ports": [{"port": 80}]}});
        let value = ObjectSeed(Fields::Read).deserialize(&mut serde_json::Deserializer::from_str(&service.to_string()));
        assert_eq!(
            value.unwrap(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                                          "spec": {"ports": [{"port": 80}]}})
        );
    }

    #[test]
    fn a_list_page_is_decoded_item_by_item_with_its_continue_token() {
        let mut item = injected_pod();
        let object = item.as_object_mut().unwrap();
        object.remove("apiVersion");
        object.remove("kind");
        let body = format!(r#"{{"kind": "PodList", "metadata": {{"continue": "next"}}, "items": [{item}, {item}]}}"#);
        let page = decode_page(body.as_bytes(), Kind::Pod, Fields::Read).unwrap();
        assert_eq!(page.continue_token.as_deref(), Some("next"));
        let mut expected = pruned_pod();
        expected.as_object_mut().unwrap().retain(|name, _| name != "apiVersion" && name != "kind");
        assert_eq!(page.items, vec![expected.clone(), expected]);
        let last = decode_page(br#"{"metadata": {"continue": ""}, "items": null}"#, Kind::Pod, Fields::Read).unwrap();
        assert!(last.items.is_empty() && last.continue_token.is_none());
    }

    /// Every YAML file of the examples and the shared fixtures' samples.
    fn inputs() -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if matches!(path.extension().and_then(|ext| ext.to_str()), Some("yaml" | "yml")) {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"), &mut files);
        walk(&crate::fixtures_dir().join("samples"), &mut files);
        files.sort();
        files
    }

    fn snapshot(path: &Path, text: &str, fields: Fields) -> Option<Snapshot> {
        let objects = parse_documents_within(path, text, &InputLimits::default(), fields).ok()?;
        let mut snapshot = Snapshot::from_objects(objects);
        snapshot.default_namespace("default");
        Some(snapshot)
    }

    #[test]
    fn check_reports_are_identical_on_full_and_pruned_snapshots() {
        let files = inputs();
        assert!(files.len() > 50, "the examples and the fixtures' samples are there: {}", files.len());
        let (mut compared, mut with_pods, mut full_bytes, mut pruned_bytes) = (0, 0, 0, 0);
        for path in &files {
            let text = std::fs::read_to_string(path).unwrap();
            let (Some(full), Some(pruned)) = (snapshot(path, &text, Fields::All), snapshot(path, &text, Fields::Read))
            else {
                continue;
            };
            compared += 1;
            with_pods += usize::from(!full.all(Kind::Pod).is_empty() || !full.all(Kind::Deployment).is_empty());
            for kind in crate::kinds::ALL.iter().map(|info| info.kind) {
                full_bytes += serde_json::to_string(full.all(kind)).unwrap().len();
                pruned_bytes += serde_json::to_string(pruned.all(kind)).unwrap().len();
            }
            for step in std::iter::once(None).chain((1..=9).map(Some)) {
                let options = Options { scope: Scope::All, step, baseline: None };
                let (full_report, pruned_report) = (evaluate(&full, &options), evaluate(&pruned, &options));
                assert_eq!(
                    serde_json::to_value(&full_report).unwrap(),
                    serde_json::to_value(&pruned_report).unwrap(),
                    "{} (step {step:?})",
                    path.display()
                );
            }
            let options = Options { scope: Scope::All, step: None, baseline: Some(full.clone()) };
            let with_baseline = Options { baseline: Some(pruned.clone()), ..options.clone() };
            assert_eq!(
                serde_json::to_value(evaluate(&full, &options)).unwrap(),
                serde_json::to_value(evaluate(&pruned, &with_baseline)).unwrap(),
                "{} against itself as the baseline",
                path.display()
            );
        }
        assert!(compared > 50 && with_pods > 5, "{compared} inputs compared, {with_pods} with workloads");
        assert!(pruned_bytes < full_bytes, "pruning drops something: {pruned_bytes} of {full_bytes} bytes");
    }
}
