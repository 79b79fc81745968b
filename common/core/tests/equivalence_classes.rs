//! The class-based verifier against the exhaustive one (issue 14): on random meshes (policies
//! ALLOW and DENY on principals, namespaces, service accounts, methods, paths and ports, through
//! selectors, namespace-wide, the root namespace and waypoints; data-plane modes and waypoints of
//! any migration state; VirtualServices with header and `sourceLabels` matches, `exportTo`, subsets,
//! HTTPRoutes in the Service's namespace and in others), both must report the same differences,
//! request for request, and cover the same number of requests.
//!
//! CI runs 16 cases; `PROPTEST_CASES=N` runs more.

use std::collections::BTreeSet;

use oc_ambient_core::equivalence::state::MigrationState;
use oc_ambient_core::equivalence::{Verification, verify, verify_exhaustive};
use oc_ambient_core::snapshot::Snapshot;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::Config;
use serde_json::{Value, json};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(16);
    Config { cases, ..Config::default() }
}

const NAMESPACES: &[&str] = &["ns-a", "ns-b", "ns-c"];
/// Where policies may live: the mesh's namespaces and the root namespace.
const POLICY_NAMESPACES: &[&str] = &["ns-a", "ns-b", "ns-c", "istio-system"];
const APPS: &[&str] = &["web", "api", "db"];
const ACCOUNTS: &[&str] = &["web", "api", "shared"];
const TIERS: &[&str] = &["front", "back"];

fn object(value: Value) -> kube_core::DynamicObject {
    serde_json::from_value(value).expect("a generated object")
}

/// An application Deployment: (app, service account, tier label, opted out of injection).
type App = (&'static str, &'static str, &'static str, bool);

fn namespace_apps() -> impl Strategy<Value = Vec<App>> {
    prop::collection::vec((select(APPS), select(ACCOUNTS), select(TIERS), prop::bool::weighted(0.15)), 1..=3)
}

/// A value a policy's source field names: existing principals, a waypoint's, a caller outside
/// the input, prefixes, suffixes and `*`.
fn principal_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (select(NAMESPACES), select(&["web", "api", "shared", "waypoint", "ingress-istio"][..]))
            .prop_map(|(ns, sa)| format!("cluster.local/ns/{ns}/sa/{sa}")),
        1 => Just("cluster.local/ns/partner/sa/client".to_string()),
        1 => select(NAMESPACES).prop_map(|ns| format!("cluster.local/ns/{ns}/*")),
        1 => Just("*".to_string()),
        1 => Just("*/sa/api".to_string()),
    ]
}

fn namespace_pattern() -> impl Strategy<Value = String> {
    prop_oneof![4 => select(NAMESPACES).prop_map(str::to_string), 1 => Just("ns-*".to_string()), 1 => Just("*".to_string())]
}

fn source() -> impl Strategy<Value = Value> {
    let principals = || prop::collection::vec(principal_pattern(), 1..=2);
    let namespaces = || prop::collection::vec(namespace_pattern(), 1..=2);
    let account = (select(NAMESPACES), select(ACCOUNTS)).prop_map(|(ns, sa)| format!("{ns}/{sa}"));
    prop_oneof![
        principals().prop_map(|values| json!({"principals": values})),
        principals().prop_map(|values| json!({"notPrincipals": values})),
        namespaces().prop_map(|values| json!({"namespaces": values})),
        namespaces().prop_map(|values| json!({"notNamespaces": values})),
        account.prop_map(|value| json!({"serviceAccounts": [value]})),
    ]
}

fn operation() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(&["GET", "POST"][..]).prop_map(|method| json!({"methods": [method]})),
        Just(json!({"paths": ["/admin*"]})),
        Just(json!({"notPaths": ["/public"]})),
        select(&["80", "5432"][..]).prop_map(|port| json!({"ports": [port]})),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(NAMESPACES).prop_map(|ns| json!({"key": "source.namespace", "values": [ns]})),
        principal_pattern().prop_map(|principal| json!({"key": "source.principal", "notValues": [principal]})),
        Just(json!({"key": "request.headers[x-user]", "values": ["admin"]})),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    (prop::option::of(source()), prop::option::of(operation()), prop::option::of(condition())).prop_map(
        |(source, operation, condition)| {
            let mut rule = json!({});
            if let Some(source) = source {
                rule["from"] = json!([{"source": source}]);
            }
            if let Some(operation) = operation {
                rule["to"] = json!([{"operation": operation}]);
            }
            if let Some(condition) = condition {
                rule["when"] = json!([condition]);
            }
            rule
        },
    )
}

/// A policy's spec without its name: on pods by selector, namespace-wide, or on a Service or the
/// waypoint by targetRefs.
fn policy() -> impl Strategy<Value = (&'static str, Value)> {
    let attachment = prop_oneof![
        select(APPS).prop_map(|app| json!({"selector": {"matchLabels": {"app": app}}})),
        Just(json!({})),
        select(APPS).prop_map(|app| json!({"targetRefs": [{"kind": "Service", "group": "", "name": app}]})),
        Just(json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]})),
    ];
    (select(POLICY_NAMESPACES), select(&["ALLOW", "DENY"][..]), attachment, prop::collection::vec(rule(), 1..=2))
        .prop_map(|(namespace, action, mut spec, rules)| {
            spec["action"] = json!(action);
            spec["rules"] = json!(rules);
            (namespace, spec)
        })
}

/// A route object: a VirtualService, a DestinationRule or an HTTPRoute.
fn route() -> impl Strategy<Value = Value> {
    let virtual_service = (
        select(&["ns-a", "ns-a", "ns-b"][..]),
        select(&["web", "web", "api"][..]),
        0..3_u8,
        select(&["*", ".", "ns-b"][..]),
        select(APPS),
        any::<bool>(),
    )
        .prop_map(|(ns, host, matching, export, destination, subset)| {
            let matches = match matching {
                0 => json!([{"headers": {"x-canary": {"exact": "true"}}}]),
                1 => json!([{"sourceLabels": {"tier": "front"}}]),
                _ => json!([{"uri": {"prefix": "/admin"}}]),
            };
            let mut target = json!({"host": destination});
            if subset {
                target["subset"] = json!("front");
            }
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": format!("vs-{host}"), "namespace": ns, "creationTimestamp": "2025-01-01T00:00:00Z"},
                   "spec": {"hosts": [format!("{host}.{ns}.svc.cluster.local")], "exportTo": [export],
                            "http": [{"match": matches, "route": [{"destination": target}]},
                                     {"route": [{"destination": {"host": host}}]}]}})
        });
    let destination_rule = (select(NAMESPACES), select(APPS)).prop_map(|(ns, app)| {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": format!("dr-{app}"), "namespace": ns},
               "spec": {"host": app, "subsets": [{"name": "front", "labels": {"tier": "front"}}]}})
    });
    // Routes favour one host, so that tables for it meet: a sidecar then picks one by namespace.
    let host_namespace = select(&["ns-a", "ns-a", "ns-b"][..]);
    let host_app = select(&["web", "web", "api"][..]);
    let http_route = (select(NAMESPACES), host_namespace, host_app, select(APPS), any::<bool>()).prop_map(
        |(route_ns, service_ns, app, backend, by_header)| {
            let matches =
                if by_header { json!([{"headers": [{"name": "x-canary", "value": "true"}]}]) } else { json!([]) };
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                   "metadata": {"name": format!("route-{service_ns}-{app}"), "namespace": route_ns,
                                "creationTimestamp": "2025-06-01T00:00:00Z"},
                   "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": app, "namespace": service_ns}],
                            "rules": [{"matches": matches,
                                       "backendRefs": [{"name": backend, "namespace": service_ns, "port": 80}]}]}})
        },
    );
    prop_oneof![virtual_service, destination_rule, http_route]
}

fn state() -> impl Strategy<Value = MigrationState> {
    let some = || subsequence(NAMESPACES, 0..=NAMESPACES.len());
    (some(), some(), some()).prop_map(|(enrolled, waypoints, sidecars)| MigrationState {
        enrolled: enrolled.into_iter().map(str::to_string).collect(),
        waypoints: waypoints.into_iter().map(str::to_string).collect(),
        sidecars: sidecars.into_iter().map(str::to_string).collect(),
    })
}

/// The objects every configuration shares: namespaces (injecting or not), Deployments, Services
/// (some asking ingress traffic to use the waypoint), a waypoint per namespace and maybe an
/// ingress gateway.
fn workloads(apps: &[Vec<App>], injecting: &[bool], ingress_use_waypoint: &[bool], ingress: bool) -> Vec<Value> {
    let mut objects = Vec::new();
    for (index, ns) in NAMESPACES.iter().enumerate() {
        let labels = if injecting[index] { json!({"istio-injection": "enabled"}) } else { json!({}) };
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}));
        objects.push(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": ns},
            "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}));
        let mut seen = BTreeSet::new();
        for (app, account, tier, opted_out) in apps[index].iter().filter(|(app, ..)| seen.insert(*app)) {
            let annotations = if *opted_out { json!({"sidecar.istio.io/inject": "false"}) } else { json!({}) };
            objects.push(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": ns},
                "spec": {"selector": {"matchLabels": {"app": app}},
                         "template": {"metadata": {"labels": {"app": app, "tier": tier}, "annotations": annotations},
                                      "spec": {"serviceAccountName": account, "containers": [{"name": "app"}]}}}}),
            );
            let port = if *app == "db" {
                json!({"name": "tcp-db", "port": 5432})
            } else {
                json!({"name": "http", "port": 80})
            };
            let labels =
                if ingress_use_waypoint[index] { json!({"istio.io/ingress-use-waypoint": "true"}) } else { json!({}) };
            objects.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": app, "namespace": ns, "labels": labels},
                "spec": {"selector": {"app": app}, "ports": [port]}}));
        }
    }
    if ingress {
        objects.push(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "ingress", "namespace": "ns-a"},
            "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}));
    }
    objects
}

/// One configuration: the shared objects, its policies (named by position) and routes (the last
/// of a name wins), in a migration state.
fn configuration(shared: &[Value], policies: &[(&str, Value)], routes: &[Value], state: &MigrationState) -> Snapshot {
    let mut objects: Vec<Value> = shared.to_vec();
    for (index, (namespace, spec)) in policies.iter().enumerate() {
        objects.push(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": format!("policy-{index}"), "namespace": namespace}, "spec": spec}));
    }
    objects.extend(routes.iter().cloned());
    state.apply(&Snapshot::from_objects(objects.into_iter().map(object)))
}

/// Every differing request with its outcomes and class, as a comparable line.
fn expanded(verification: &Verification) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for difference in &verification.differences {
        for request in difference.requests() {
            let line = format!(
                "{request} | {} {:?} -> {} {:?} | {}{}",
                difference.before.allowed,
                difference.before.backend,
                difference.after.allowed,
                difference.after.backend,
                difference.class.word(),
                if difference.expected { " (expected)" } else { "" }
            );
            assert!(lines.insert(line), "a request is reported twice: {request}");
        }
    }
    lines
}

fn mesh() -> impl Strategy<Value = (Snapshot, Snapshot, Option<BTreeSet<String>>)> {
    let shared = (
        prop::collection::vec(namespace_apps(), NAMESPACES.len()),
        prop::collection::vec(prop::bool::weighted(0.8), NAMESPACES.len()),
        prop::collection::vec(prop::bool::weighted(0.3), NAMESPACES.len()),
        any::<bool>(),
    );
    let side = || (prop::collection::vec(policy(), 0..=5), prop::collection::vec(route(), 0..=4), state());
    let scope = prop::option::of(subsequence(NAMESPACES, 1..=2));
    (shared, side(), side(), scope).prop_map(
        |((apps, injecting, ingress_use_waypoint, ingress), before, after, scope)| {
            let shared: Vec<Value> = workloads(&apps, &injecting, &ingress_use_waypoint, ingress);
            // The after side keeps some of the before side's policies, as a migration does.
            let kept: Vec<(&str, Value)> = before.0.iter().take(2).cloned().chain(after.0).collect();
            (
                configuration(&shared, &before.0, &before.1, &before.2),
                configuration(&shared, &kept, &after.1, &after.2),
                scope.map(|namespaces| namespaces.into_iter().map(str::to_string).collect()),
            )
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn classes_report_what_every_request_reports((before, after, scope) in mesh()) {
        let exhaustive = verify_exhaustive(&before, &after, scope.as_ref());
        let classes = verify(&before, &after, scope.as_ref());
        prop_assert_eq!(exhaustive.evaluated, exhaustive.requests, "the reference evaluates every request");
        prop_assert_eq!(classes.requests, exhaustive.requests, "the classes cover every request exactly once");
        prop_assert!(classes.evaluated <= exhaustive.evaluated);
        prop_assert_eq!(classes.differing_requests(), exhaustive.differing_requests());
        prop_assert_eq!(expanded(&classes), expanded(&exhaustive));
    }
}
