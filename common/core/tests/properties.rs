//! Property tests over hostile input (issue 17): random and mutated Kubernetes objects go through
//! the loader, the check, the translator and the verifier, which must never panic and must answer
//! within time limits; an object whose spec does not decode must keep the check from "ready".
//!
//! The objects start from a generated mesh of the `large` scenario's shape (so that the rules have
//! something to convert) and from random objects of every kind the suite reads, then have values
//! replaced by random JSON of any type, keys removed, and fields of other kinds spliced in.
//!
//! CI runs a few cases (`PROPTEST_CASES`, default 16 per property); the full run is
//! `PROPTEST_CASES=10000 cargo test --release -p oc-ambient-core --test properties` (BENCHMARKS.md).

use std::path::Path;
use std::time::{Duration, Instant};

use kube_core::DynamicObject;
use oc_ambient_core::check::{self, Options, Scope};
use oc_ambient_core::convert::{ConvertOptions, convert};
use oc_ambient_core::equivalence::synthetic::{MeshSize, bookinfo_selector_policies, generate};
use oc_ambient_core::equivalence::verify::verify_change;
use oc_ambient_core::fields::Fields;
use oc_ambient_core::snapshot::{InputLimits, Snapshot, parse_documents, parse_documents_within};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

/// Cases per property: small in CI, `PROPTEST_CASES=N` for a full run.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(16);
    Config { cases, ..Config::default() }
}

/// Each entry point on one small input must answer within this (debug builds on a shared machine;
/// a release build takes milliseconds).
const LIMIT: Duration = Duration::from_secs(20);

/// Kinds the suite reads, with field names their specs use, so that random specs hit the decoders.
const KINDS: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "Pod"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("security.istio.io/v1", "RequestAuthentication"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("sailoperator.io/v1", "Istio"),
    ("sailoperator.io/v1", "ZTunnel"),
];

const FIELDS: &[&str] = &[
    "spec",
    "selector",
    "matchLabels",
    "labels",
    "hosts",
    "http",
    "match",
    "route",
    "destination",
    "host",
    "subset",
    "subsets",
    "name",
    "port",
    "ports",
    "targetPort",
    "rules",
    "from",
    "to",
    "when",
    "source",
    "operation",
    "principals",
    "notPrincipals",
    "namespaces",
    "paths",
    "methods",
    "key",
    "values",
    "action",
    "targetRefs",
    "parentRefs",
    "backendRefs",
    "matches",
    "headers",
    "exact",
    "prefix",
    "uri",
    "weight",
    "gatewayClassName",
    "listeners",
    "containers",
    "serviceAccountName",
    "template",
    "metadata",
    "gateways",
    "trafficPolicy",
    "version",
];

const WORDS: &[&str] = &[
    "shop",
    "reviews",
    "v1",
    "v2",
    "ALLOW",
    "DENY",
    "CUSTOM",
    "GET",
    "/api*",
    "*",
    "",
    "istio-proxy",
    "waypoint",
    "cluster.local/ns/shop/sa/reviews",
    "reviews.shop.svc.cluster.local",
    "istio-waypoint",
    "Service",
    "HBONE",
    "request.headers[x-user]",
    "source.principal",
    "mesh",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![4 => proptest::sample::select(WORDS).prop_map(str::to_string), 1 => "[a-z*/.-]{0,12}"]
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![4 => proptest::sample::select(FIELDS).prop_map(str::to_string), 1 => "[a-zA-Z]{1,8}"]
}

/// Any JSON value, nested a few levels, its keys mostly field names the decoders know.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A random object of a kind the suite reads, with colliding names and namespaces.
fn random_object() -> impl Strategy<Value = Value> {
    let metadata = (
        proptest::sample::select(&["reviews", "ratings", "waypoint", "shop"][..]),
        proptest::option::of(proptest::sample::select(&["shop", "mesh-0000", "istio-system"][..])),
        proptest::collection::btree_map(field_name(), word(), 0..3),
    );
    (proptest::sample::select(KINDS), metadata, json_value()).prop_map(|((api, kind), (name, ns, labels), spec)| {
        json!({"apiVersion": api, "kind": kind,
               "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec})
    })
}

/// A change to an object: a value anywhere replaced by random JSON, or a key removed.
#[derive(Debug, Clone)]
enum Mutation {
    Replace { path: Vec<usize>, value: Value },
    Remove { path: Vec<usize> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let path = proptest::collection::vec(any::<usize>(), 1..7);
    prop_oneof![
        (path.clone(), json_value()).prop_map(|(path, value)| Mutation::Replace { path, value }),
        path.prop_map(|path| Mutation::Remove { path }),
    ]
}

/// Follows `path` (each step picks a child by index modulo the children) and applies the change
/// at the end. The object keeps its apiVersion and kind, so it still reaches the rules.
fn mutate(object: &mut Value, mutation: &Mutation) {
    let (Mutation::Replace { path, .. } | Mutation::Remove { path }) = mutation;
    let mut current = object;
    for (depth, step) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let next: Option<&mut Value> = match current {
            Value::Object(map) if !map.is_empty() => {
                let mut keys: Vec<String> =
                    map.keys().filter(|k| *k != "apiVersion" && *k != "kind").cloned().collect();
                if keys.is_empty() {
                    return;
                }
                let key = keys.swap_remove(step % keys.len());
                if last {
                    apply(map, key, mutation);
                    return;
                }
                map.get_mut(&key)
            }
            Value::Array(items) if !items.is_empty() => {
                let index = step % items.len();
                if last {
                    match mutation {
                        Mutation::Replace { value, .. } => items[index] = value.clone(),
                        Mutation::Remove { .. } => {
                            items.remove(index);
                        }
                    }
                    return;
                }
                items.get_mut(index)
            }
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
}

fn apply(map: &mut Map<String, Value>, key: String, mutation: &Mutation) {
    match mutation {
        Mutation::Replace { value, .. } => {
            map.insert(key, value.clone());
        }
        Mutation::Remove { .. } => {
            map.remove(&key);
        }
    }
}

/// The generated mesh (two namespaces) plus the bookinfo policies, as JSON.
fn seed_objects() -> Vec<Value> {
    let mesh = generate(MeshSize { namespaces: 2, services: 4, pods: 1 });
    let objects = mesh.sidecar_era.into_iter().chain(bookinfo_selector_policies("mesh-0000"));
    objects.map(|object| serde_json::to_value(object).unwrap_or_default()).collect()
}

/// Seed objects with mutations, plus random objects.
fn hostile_input() -> impl Strategy<Value = Vec<Value>> {
    let seeds = seed_objects();
    let count = seeds.len();
    (
        proptest::collection::vec((0..count, mutation()), 0..12),
        proptest::collection::vec(random_object(), 0..8),
        proptest::sample::subsequence((0..count).collect::<Vec<_>>(), 0..=count),
    )
        .prop_map(move |(mutations, random, kept)| {
            let mut objects = seeds.clone();
            for (index, mutation) in &mutations {
                mutate(&mut objects[*index], mutation);
            }
            let mut chosen: Vec<Value> = kept.into_iter().map(|index| objects[index].clone()).collect();
            chosen.extend(random);
            chosen
        })
}

/// The objects as a multi-document YAML stream, the way a dump reaches the tools.
fn to_yaml(objects: &[Value]) -> String {
    objects.iter().map(|object| serde_yaml_ng::to_string(object).unwrap_or_default()).collect::<Vec<_>>().join("---\n")
}

fn timed<T>(what: &str, run: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = run();
    let elapsed = started.elapsed();
    assert!(elapsed < LIMIT, "{what} took {elapsed:?}");
    result
}

proptest! {
    #![proptest_config(config())]

    /// Random text, brackets and separators included: parsed or refused, within the limits.
    #[test]
    fn the_loader_refuses_or_parses_any_text(text in "([-\\[\\]{}:,'\" #a-z0-9\n]|---\n|apiVersion: v1\n|kind: Pod\n){0,400}") {
        let limits = InputLimits { max_depth: 20, max_document_bytes: 1024, max_objects: 16 };
        for fields in [Fields::All, Fields::Read] {
            let parsed = timed("parse", || parse_documents_within(Path::new("random.yaml"), &text, &limits, fields));
            if let Ok(objects) = parsed {
                prop_assert!(objects.len() <= limits.max_objects);
            }
        }
    }

    /// Hostile objects through every entry point: no panic, each within the time limit, and the
    /// translator's output renders.
    #[test]
    fn hostile_objects_never_panic_the_check_the_translator_or_the_verifier(objects in hostile_input()) {
        let text = to_yaml(&objects);
        let parsed = timed("parse", || parse_documents(Path::new("hostile.yaml"), &text));
        // A mutation may remove metadata.name or make a document a non-object: a clear refusal.
        let Ok(parsed) = parsed else { return Ok(()) };
        let snapshot = Snapshot::from_objects(parsed);
        let options = Options { scope: Scope::All, ..Options::default() };
        timed("check", || check::evaluate(&snapshot, &options));
        let conversion = timed("convert", || convert(&snapshot, &ConvertOptions::default()));
        prop_assert!(conversion.to_yaml_stream().is_ok());
        prop_assert!(!conversion.report_text().is_empty());
        timed("verify", || verify_change(&snapshot, conversion.changes(), &[], None));
    }

    /// An AuthorizationPolicy, VirtualService or DestinationRule whose spec does not decode is a
    /// failure: the check never says such a mesh is ready.
    #[test]
    fn an_undecodable_spec_is_never_ready(
        kind in proptest::sample::select(&["AuthorizationPolicy", "VirtualService", "DestinationRule"][..]),
        field in proptest::sample::select(&["rules", "hosts", "http", "subsets", "action", "selector"][..]),
        value in prop_oneof![any::<i64>().prop_map(|n| json!(n)), any::<bool>().prop_map(|b| json!(b))],
        others in hostile_input(),
    ) {
        let api = if kind == "AuthorizationPolicy" { "security.istio.io/v1" } else { "networking.istio.io/v1" };
        // Each of these fields is a list, a string or a mapping in every one of the three kinds
        // that has it; a number or a boolean never decodes.
        let spec = match (kind, field) {
            ("AuthorizationPolicy", "rules" | "action" | "selector") | ("VirtualService", "hosts" | "http")
            | ("DestinationRule", "subsets") => json!({field: value}),
            (_, _) => json!({"hosts": value.clone(), "rules": value.clone(), "subsets": value, "host": 7}),
        };
        let broken = json!({"apiVersion": api, "kind": kind, "metadata": {"name": "broken", "namespace": "shop"},
                            "spec": spec});
        let mut objects: Vec<DynamicObject> =
            others.into_iter().filter_map(|object| serde_json::from_value(object).ok()).collect();
        objects.push(serde_json::from_value(broken).map_err(|err| TestCaseError::fail(err.to_string()))?);
        let report = check::evaluate(&Snapshot::from_objects(objects), &Options::default());
        prop_assert!(!report.ready, "an undecodable {kind} left the mesh ready");
        prop_assert!(report.findings.iter().any(|finding| finding.id == "invalid-object"));
    }
}
