//! Bookinfo through the migration, and the mistakes the verifier must catch.
//!
//! The input is the `bookinfo-sidecar` scenario: the Istio sample manifests (read from the shared
//! fixtures, never copied) in namespace `bookinfo` with sidecar injection, the reviews
//! VirtualService (jason to v2, everyone else to v1), the DestinationRules, the Gateway API ingress,
//! and the scenario's selector AuthorizationPolicies generated here.

use std::collections::BTreeMap;
use std::path::Path;

use kube_core::DynamicObject;
use serde_json::json;

use super::evaluate::{Address, HttpRequest, Request, Target};
use super::state::MigrationState;
use super::synthetic::{BOOKINFO_CALLERS, bookinfo_selector_policies};
use super::topology::Topology;
use super::verify::{Class, Verification, verify, verify_change};
use crate::change::{Change, ResourceRef, simulate};
use crate::kinds::Kind;
use crate::snapshot::{Snapshot, parse_documents};

const NS: &str = "bookinfo";
const GATEWAY_SA: &str = "cluster.local/ns/bookinfo/sa/bookinfo-gateway-istio";
const WAYPOINT_SA: &str = "cluster.local/ns/bookinfo/sa/waypoint";

fn fixture(relative: &str) -> Vec<DynamicObject> {
    let path = crate::fixtures_dir().join("samples/istio/samples/bookinfo").join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("fixture {}: {err}", path.display()));
    let mut objects = parse_documents(&path, &text).unwrap();
    for object in &mut objects {
        object.metadata.namespace.get_or_insert_with(|| NS.to_string());
    }
    objects
}

fn yaml(text: &str) -> Vec<DynamicObject> {
    parse_documents(Path::new("test.yaml"), text).unwrap()
}

fn object(value: serde_json::Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

fn policy(name: &str, spec: serde_json::Value) -> DynamicObject {
    object(json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": NS}, "spec": spec,
    }))
}

fn policy_ref(name: &str) -> ResourceRef {
    ResourceRef::new(Kind::AuthorizationPolicy, Some(NS), name)
}

fn is(object: &DynamicObject, reference: &ResourceRef) -> bool {
    ResourceRef::of(object).as_ref() == Ok(reference)
}

fn caller_principal(service_account: &str) -> String {
    format!("cluster.local/ns/{NS}/sa/{service_account}")
}

pub(crate) fn sidecar_era() -> Vec<DynamicObject> {
    let mut objects =
        yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo, labels: {istio.io/rev: default}}");
    for file in [
        "platform/kube/bookinfo.yaml",
        "platform/kube/bookinfo-versions.yaml",
        "networking/destination-rule-all.yaml",
        "networking/virtual-service-reviews-test-v2.yaml",
        "gateway-api/bookinfo-gateway.yaml",
    ] {
        objects.extend(fixture(file));
    }
    objects.extend(bookinfo_selector_policies(NS));
    objects
}

/// A conversion by its parts, which the tests below edit: objects applied, labels set, objects
/// deleted.
#[derive(Default)]
struct Edit {
    added: Vec<DynamicObject>,
    labels: Vec<Change>,
    removed: Vec<ResourceRef>,
}

impl Edit {
    /// The parts of a list of changes.
    fn of(changes: Vec<Change>) -> Self {
        let mut edit = Edit::default();
        for change in changes {
            match change {
                Change::Apply { object } => edit.added.push(object),
                Change::Delete { target, .. } => edit.removed.push(target),
                labels @ Change::SetLabels { .. } => edit.labels.push(labels),
                Change::Restart { target } => panic!("a conversion restarts nothing, not {target}"),
                restore @ Change::Replace { .. } => panic!("a conversion restores nothing, not {restore}"),
            }
        }
        edit
    }

    fn changes(&self) -> Vec<Change> {
        let applies = self.added.iter().map(|object| Change::Apply { object: object.clone() });
        let deletes = self.removed.iter().map(|target| Change::Delete {
            target: target.clone(),
            uid: None,
            resource_version: None,
        });
        applies.chain(self.labels.iter().cloned()).chain(deletes).collect()
    }
}

fn on(edit: &Edit, input: &Snapshot) -> Snapshot {
    let simulation = simulate(input, &edit.changes());
    assert_eq!(simulation.refused, Vec::new());
    simulation.snapshot
}

/// How the hand-written conversion protects pods against callers that skip the waypoint.
#[derive(Clone, Copy, PartialEq)]
enum Protection {
    /// While sidecars remain: exempt the waypoint and every legitimate skipper (the ingress
    /// gateway before its Service's waypoint is active, sidecar clients).
    DuringMigration,
    /// Sidecars gone, the ingress gateway routed through the waypoint: only the waypoint.
    Final,
    /// The guide's Step 5.3 as written: targetRefs and a condition key that does not exist.
    GuideStep53,
}

fn version_services(app: &str) -> Vec<String> {
    let versions: &[&str] = if app == "reviews" { &["v1", "v2", "v3"] } else { &["v1"] };
    versions.iter().map(|version| format!("{app}-{version}")).collect()
}

fn target_refs(services: &[String]) -> serde_json::Value {
    services.iter().map(|name| json!({"kind": "Service", "group": "", "name": name})).collect()
}

fn protections(protection: Protection) -> Vec<DynamicObject> {
    BOOKINFO_CALLERS
        .iter()
        .map(|(app, caller, _)| {
            let name = format!("{app}-ztunnel-protection");
            match protection {
                Protection::GuideStep53 => policy(
                    &name,
                    json!({"targetRefs": target_refs(&[app.to_string()]), "action": "DENY",
                           "rules": [{"when": [{"key": "source.workload_name", "notValues": ["waypoint"]}]}]}),
                ),
                Protection::DuringMigration | Protection::Final => {
                    let mut exempt = vec![WAYPOINT_SA.to_string()];
                    if protection == Protection::DuringMigration {
                        exempt.push(caller_principal(caller));
                    }
                    policy(
                        &name,
                        json!({"selector": {"matchLabels": {"app": app}}, "action": "DENY",
                               "rules": [{"from": [{"source": {"notPrincipals": exempt}}]}]}),
                    )
                }
            }
        })
        .collect()
}

/// The waypoint-enforced copies of the scenario's policies, attached to the app's Service and,
/// unless `main_service_only` (the guide's Step 5.2 literally), to its version Services as well.
fn waypoint_policies(main_service_only: bool) -> Vec<DynamicObject> {
    BOOKINFO_CALLERS
        .iter()
        .map(|(app, caller, methods)| {
            let mut services = vec![app.to_string()];
            if !main_service_only {
                services.extend(version_services(app));
            }
            policy(
                &format!("{app}-waypoint"),
                json!({"targetRefs": target_refs(&services), "action": "ALLOW", "rules": [{
                    "from": [{"source": {"principals": [caller_principal(caller)]}}],
                    "to": [{"operation": {"methods": methods}}],
                }]}),
            )
        })
        .collect()
}

const WAYPOINT: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: bookinfo, labels: {istio.io/waypoint-for: service}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
";

const REVIEWS_ROUTE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: bookinfo}
spec:
  parentRefs: [{group: '', kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - backendRefs: [{name: reviews-v1, port: 9080}]
";

/// What the sidecar-era objects become, by hand, until the translation engine lands: the
/// waypoint, the reviews HTTPRoute, waypoint policies, the bypass protection, productpage's
/// selector policy admitting the waypoint while productpage's sidecar enforces it, and the ingress
/// gateway routed through the waypoint.
fn hand_conversion(protection: Protection) -> Edit {
    let mut added = yaml(WAYPOINT);
    added.extend(yaml(REVIEWS_ROUTE));
    added.extend(waypoint_policies(false));
    added.extend(protections(protection));
    added.push(policy(
        "productpage-viewer",
        json!({"selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW", "rules": [{
            "from": [{"source": {"principals": [GATEWAY_SA, WAYPOINT_SA]}}],
            "to": [{"operation": {"methods": ["GET", "POST"]}}],
        }]}),
    ));
    // Every Service in front of productpage's pods: the gateway may use any of them.
    let labels = ["productpage", "productpage-v1"]
        .iter()
        .map(|service| {
            let labels = BTreeMap::from([("istio.io/ingress-use-waypoint".to_string(), Some("true".to_string()))]);
            Change::SetLabels { target: ResourceRef::new(Kind::Service, Some(NS), service), labels }
        })
        .collect();
    Edit { added, labels, removed: Vec::new() }
}

/// The sidecar-era objects the conversion supersedes, deleted in the clean-up.
fn replaced() -> Vec<ResourceRef> {
    let mut replaced = vec![ResourceRef::new(Kind::VirtualService, Some(NS), "reviews")];
    for app in ["productpage", "reviews", "ratings", "details"] {
        replaced.push(ResourceRef::new(Kind::DestinationRule, Some(NS), app));
        replaced.push(policy_ref(&format!("{app}-viewer")));
    }
    replaced
}

/// The end of the migration: the conversion without its transitional parts, the replaced objects
/// deleted.
fn final_change(mut change: Edit, replaced: Vec<ResourceRef>) -> Edit {
    change.added.retain(|object| !replaced.iter().any(|reference| is(object, reference)));
    change.removed = replaced;
    change
}

fn state(enrolled: bool, waypoints: bool, sidecars: bool) -> MigrationState {
    let namespace = || [NS.to_string()].into();
    MigrationState {
        enrolled: if enrolled { namespace() } else { Default::default() },
        waypoints: if waypoints { namespace() } else { Default::default() },
        sidecars: if sidecars { namespace() } else { Default::default() },
    }
}

struct Stages {
    start: Snapshot,
    step5: Snapshot,
    step6: Snapshot,
    step7: Snapshot,
    /// Steps 8 and 9 as one change: sidecars go and the replaced objects with them.
    end: Snapshot,
}

fn stages(input: &Snapshot, during: &Edit, end: &Edit) -> Stages {
    let converted = on(during, input);
    Stages {
        start: state(false, false, true).apply(input),
        step5: state(false, false, true).apply(&converted),
        step6: state(true, false, true).apply(&converted),
        step7: state(true, true, true).apply(&converted),
        end: state(true, true, false).apply(&on(end, input)),
    }
}

fn bookinfo_stages() -> Stages {
    let input = Snapshot::from_objects(sidecar_era());
    let end = final_change(hand_conversion(Protection::Final), replaced());
    stages(&input, &hand_conversion(Protection::DuringMigration), &end)
}

/// The unexpected differences, the first few in words (a failing test should stay readable).
fn unexpected(verification: &Verification) -> Vec<String> {
    let mut lines: Vec<String> = verification
        .unexpected()
        .take(5)
        .map(|d| format!("{} {}: {}", d.class.word(), d.request, d.explanation()))
        .collect();
    let total = verification.unexpected().count();
    if total > lines.len() {
        lines.push(format!("... {} unexpected in all", total));
    }
    lines
}

fn find<'a>(verification: &'a Verification, class: Class, request: &str) -> Option<&'a super::Difference> {
    verification.differences.iter().find(|d| d.class == class && d.requests().any(|r| r.to_string() == request))
}

#[test]
fn bookinfo_keeps_every_outcome_through_the_migration() {
    let stages = bookinfo_stages();
    for (name, stage) in
        [("start", &stages.start), ("step 5", &stages.step5), ("step 6", &stages.step6), ("step 7", &stages.step7)]
    {
        let verification = verify(&stages.start, stage, None);
        assert!(verification.requests > 1000, "{name}: only {} requests", verification.requests);
        assert!(
            verification.differences.is_empty(),
            "{name}: {:#?}",
            verification.differences.iter().take(5).map(|d| d.request.to_string()).collect::<Vec<_>>()
        );
    }
    let end = verify(&stages.start, &stages.end, None);
    assert_eq!(unexpected(&end), Vec::<String>::new());
    assert!(!end.differences.is_empty(), "pod-address traffic to protected pods changes, as intended");
    for difference in &end.differences {
        assert_eq!(difference.request.destination.address, Address::Pod, "{}", difference.request);
        assert_eq!(difference.class, Class::Tightened);
    }
    let gateway_to_pod = "bookinfo/bookinfo-gateway -> pod bookinfo/productpage-v1:9080 GET /productpage";
    let difference =
        find(&end, Class::Tightened, gateway_to_pod).expect("gateway to the productpage pod is now refused");
    assert!(
        difference.expected && difference.explanation().contains("productpage-ztunnel-protection"),
        "{}",
        difference.explanation()
    );
}

#[test]
fn the_guides_literal_order_cleans_up_while_sidecars_still_route() {
    // Step 8 before Step 9: sidecar clients skip the waypoint, so deleting the selector policies
    // leaves them unchecked. Their routes survive: Istio gives sidecars the HTTPRoutes attached to
    // the Service once no VirtualService is older (in the route's namespace, even before; see
    // `route`), here for a client in the namespace and one from another namespace alike.
    let mut objects = sidecar_era();
    objects.extend(yaml(LEGACY_CLIENT));
    let input = Snapshot::from_objects(objects);
    let mut step8 = hand_conversion(Protection::DuringMigration);
    step8.removed = replaced();
    step8.added.retain(|object| !step8.removed.iter().any(|reference| is(object, reference)));
    let after = state(true, true, true).apply(&on(&step8, &input));
    let verification = verify(&state(false, false, true).apply(&input), &after, None);
    for client in [PRODUCTPAGE, "legacy/sleep"] {
        let request = Request {
            source: client.into(),
            destination: Target { address: SVC, namespace: NS.into(), name: "reviews".into(), port: 9080 },
            http: Some(HttpRequest { method: "GET".into(), path: "/".into(), headers: BTreeMap::new() }),
        };
        let routed = Topology::from_snapshot(&after).evaluate(&request).explanation;
        assert!(routed.contains("HTTPRoute bookinfo/reviews"), "{routed}");
        assert!(
            find(&verification, Class::Rerouted, &request.to_string()).is_none(),
            "{:#?}",
            unexpected(&verification)
        );
    }
    let loosened =
        find(&verification, Class::Loosened, "bookinfo/productpage-v1 -> svc bookinfo/reviews:9080 DELETE /");
    assert!(loosened.is_some_and(|d| !d.expected), "{:#?}", unexpected(&verification));
}

struct Row {
    stage: fn(&Stages) -> &Snapshot,
    source: &'static str,
    address: Address,
    name: &'static str,
    method: &'static str,
    path: &'static str,
    header: Option<(&'static str, &'static str)>,
    allowed: bool,
    backend: &'static [&'static str],
}

fn start(stages: &Stages) -> &Snapshot {
    &stages.start
}
fn step7(stages: &Stages) -> &Snapshot {
    &stages.step7
}
fn end(stages: &Stages) -> &Snapshot {
    &stages.end
}

const SVC: Address = Address::Service;
const POD: Address = Address::Pod;
const GW: &str = "bookinfo/bookinfo-gateway";
const PRODUCTPAGE: &str = "bookinfo/productpage-v1";
const RATINGS: &str = "bookinfo/ratings-v1";
const OUTSIDE: &str = super::evaluate::OUTSIDE_CLIENT;
const JASON: Option<(&str, &str)> = Some(("end-user", "jason"));

#[rustfmt::skip]
const TRUTH: &[Row] = &[
    Row { stage: end, source: GW, address: SVC, name: "productpage", method: "GET", path: "/productpage", header: None, allowed: true, backend: &["bookinfo/productpage-v1"] },
    Row { stage: end, source: GW, address: SVC, name: "productpage", method: "POST", path: "/login", header: None, allowed: true, backend: &["bookinfo/productpage-v1"] },
    Row { stage: end, source: GW, address: SVC, name: "productpage", method: "DELETE", path: "/productpage", header: None, allowed: false, backend: &["bookinfo/productpage-v1"] },
    Row { stage: end, source: PRODUCTPAGE, address: SVC, name: "reviews", method: "GET", path: "/reviews/0", header: JASON, allowed: true, backend: &["bookinfo/reviews-v2"] },
    Row { stage: end, source: PRODUCTPAGE, address: SVC, name: "reviews", method: "GET", path: "/reviews/0", header: None, allowed: true, backend: &["bookinfo/reviews-v1"] },
    Row { stage: end, source: PRODUCTPAGE, address: SVC, name: "reviews", method: "POST", path: "/reviews/0", header: None, allowed: false, backend: &["bookinfo/reviews-v1"] },
    Row { stage: end, source: RATINGS, address: SVC, name: "reviews", method: "GET", path: "/reviews/0", header: None, allowed: false, backend: &["bookinfo/reviews-v1"] },
    Row { stage: end, source: RATINGS, address: SVC, name: "reviews-v2", method: "GET", path: "/", header: None, allowed: false, backend: &["bookinfo/reviews-v2"] },
    Row { stage: end, source: PRODUCTPAGE, address: SVC, name: "reviews-v3", method: "GET", path: "/", header: None, allowed: true, backend: &["bookinfo/reviews-v3"] },
    Row { stage: end, source: "bookinfo/reviews-v1", address: SVC, name: "ratings", method: "GET", path: "/ratings/0", header: None, allowed: true, backend: &["bookinfo/ratings-v1"] },
    Row { stage: end, source: "bookinfo/reviews-v2", address: SVC, name: "ratings", method: "DELETE", path: "/ratings/0", header: None, allowed: false, backend: &["bookinfo/ratings-v1"] },
    Row { stage: end, source: PRODUCTPAGE, address: SVC, name: "details", method: "GET", path: "/details/0", header: None, allowed: true, backend: &["bookinfo/details-v1"] },
    Row { stage: end, source: "bookinfo/details-v1", address: SVC, name: "productpage", method: "GET", path: "/", header: None, allowed: false, backend: &["bookinfo/productpage-v1"] },
    Row { stage: end, source: PRODUCTPAGE, address: SVC, name: "productpage", method: "GET", path: "/", header: None, allowed: false, backend: &["bookinfo/productpage-v1"] },
    Row { stage: end, source: OUTSIDE, address: SVC, name: "productpage", method: "GET", path: "/productpage", header: None, allowed: false, backend: &["bookinfo/productpage-v1"] },
    Row { stage: end, source: OUTSIDE, address: POD, name: "productpage-v1", method: "GET", path: "/productpage", header: None, allowed: false, backend: &["bookinfo/productpage-v1"] },
    Row { stage: start, source: GW, address: POD, name: "productpage-v1", method: "GET", path: "/productpage", header: None, allowed: true, backend: &["bookinfo/productpage-v1"] },
    Row { stage: start, source: PRODUCTPAGE, address: SVC, name: "reviews", method: "GET", path: "/reviews/0", header: None, allowed: true, backend: &["bookinfo/reviews-v1"] },
    Row { stage: start, source: GW, address: SVC, name: "productpage", method: "DELETE", path: "/productpage", header: None, allowed: false, backend: &["bookinfo/productpage-v1"] },
    Row { stage: step7, source: PRODUCTPAGE, address: SVC, name: "reviews", method: "GET", path: "/reviews/0", header: JASON, allowed: true, backend: &["bookinfo/reviews-v2"] },
    Row { stage: step7, source: RATINGS, address: SVC, name: "reviews", method: "GET", path: "/reviews/0", header: None, allowed: false, backend: &["bookinfo/reviews-v1"] },
    Row { stage: step7, source: GW, address: SVC, name: "productpage", method: "GET", path: "/productpage", header: None, allowed: true, backend: &["bookinfo/productpage-v1"] },
];

/// Pod-address traffic to a protected pod, under a protection narrowed to the waypoint once the
/// sidecars are gone (the engine's protection still exempts the sidecar-era callers).
#[rustfmt::skip]
const NARROWED_PROTECTION: &[Row] = &[
    Row { stage: end, source: GW, address: POD, name: "productpage-v1", method: "GET", path: "/productpage", header: None, allowed: false, backend: &["bookinfo/productpage-v1"] },
    Row { stage: end, source: PRODUCTPAGE, address: POD, name: "reviews-v2", method: "GET", path: "/reviews/0", header: None, allowed: false, backend: &["bookinfo/reviews-v2"] },
];

#[test]
fn bookinfo_truth_table() {
    assert!(TRUTH.len() + NARROWED_PROTECTION.len() >= 20);
    let stages = bookinfo_stages();
    check_rows(&stages, TRUTH);
    check_rows(&stages, NARROWED_PROTECTION);
}

#[test]
fn bookinfo_truth_table_with_the_engines_conversion() {
    assert!(TRUTH.len() >= 20);
    let input = Snapshot::from_objects(sidecar_era());
    let converted = converted_by_the_engine(&input);
    let during = Edit { added: converted.added.clone(), ..Edit::default() };
    check_rows(&stages(&input, &during, &converted), TRUTH);
}

fn check_rows(stages: &Stages, rows: &[Row]) {
    for row in rows {
        let topology = Topology::from_snapshot((row.stage)(stages));
        let request = Request {
            source: row.source.into(),
            destination: Target { address: row.address, namespace: NS.into(), name: row.name.into(), port: 9080 },
            http: Some(HttpRequest {
                method: row.method.into(),
                path: row.path.into(),
                headers: row.header.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
            }),
        };
        let outcome = topology.evaluate(&request);
        assert_eq!(outcome.allowed, row.allowed, "{request}: {}", outcome.explanation);
        assert_eq!(outcome.backend, row.backend, "{request}: {}", outcome.explanation);
    }
}

#[test]
fn step7_sidecar_clients_skip_the_waypoint_and_ingress_goes_through_it() {
    let topology = Topology::from_snapshot(&bookinfo_stages().step7);
    let request = |source: &str, name: &str| Request {
        source: source.into(),
        destination: Target { address: SVC, namespace: NS.into(), name: name.into(), port: 9080 },
        http: Some(HttpRequest { method: "GET".into(), path: "/".into(), headers: BTreeMap::new() }),
    };
    // The sidecar routes by the HTTPRoute of its own namespace, not the older VirtualService: the
    // "consumer override" of Istio 1.27 (see `route`).
    let sidecar_client = topology.evaluate(&request(PRODUCTPAGE, "reviews")).explanation;
    assert!(
        sidecar_client.contains("HTTPRoute bookinfo/reviews") && !sidecar_client.contains("via waypoint"),
        "{sidecar_client}"
    );
    let ingress = topology.evaluate(&request(GW, "productpage")).explanation;
    assert!(ingress.contains("via waypoint bookinfo/waypoint") && ingress.contains(WAYPOINT_SA), "{ingress}");
}

/// A sidecar client from a namespace that is not migrated yet.
const LEGACY_CLIENT: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: legacy, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep, namespace: legacy}
spec:
  selector: {matchLabels: {app: sleep}}
  template:
    metadata: {labels: {app: sleep}}
    spec: {serviceAccountName: sleep, containers: [{name: sleep}]}
";

#[test]
fn the_guides_step_5_3_protection_lets_skippers_through() {
    let mut objects = sidecar_era();
    objects.extend(yaml(LEGACY_CLIENT));
    let input = Snapshot::from_objects(objects);
    let before = state(false, false, true).apply(&input);
    let with = |protection| {
        let end = final_change(hand_conversion(protection), replaced());
        verify(&before, &state(true, true, false).apply(&on(&end, &input)), None)
    };
    let sidecar_client = "legacy/sleep -> svc bookinfo/reviews:9080 GET /";
    let pod_address = "bookinfo/ratings-v1 -> pod bookinfo/reviews-v1:9080 GET /";

    let guide = with(Protection::GuideStep53);
    for request in [sidecar_client, pod_address] {
        let difference = find(&guide, Class::Loosened, request);
        assert!(difference.is_some_and(|d| !d.expected), "{request} not caught: {:#?}", unexpected(&guide));
    }
    assert!(
        guide
            .notes
            .iter()
            .any(|note| note.contains("reviews-ztunnel-protection") && note.contains("source.workload_name"))
    );

    let correct = with(Protection::Final);
    assert_eq!(unexpected(&correct), Vec::<String>::new(), "the selector-based protection keeps them out");
}

#[test]
fn an_l4_allow_without_the_waypoint_principal_denies_after() {
    // ratings admits reviews at L4 only: ztunnel keeps enforcing it, and sees the waypoint.
    let l4_only = policy(
        "ratings-viewer",
        json!({"selector": {"matchLabels": {"app": "ratings"}}, "action": "ALLOW",
               "rules": [{"from": [{"source": {"principals": [caller_principal("bookinfo-reviews")]}}]}]}),
    );
    let mut objects = sidecar_era();
    objects.retain(|object| !is(object, &policy_ref("ratings-viewer")));
    objects.push(l4_only.clone());
    let input = Snapshot::from_objects(objects);
    let before = state(false, false, true).apply(&input);
    let kept = |with_waypoint: bool| {
        let mut replaced = replaced();
        replaced.retain(|reference| *reference != policy_ref("ratings-viewer"));
        let mut end = final_change(hand_conversion(Protection::Final), replaced);
        let mut principals = vec![caller_principal("bookinfo-reviews")];
        if with_waypoint {
            principals.push(WAYPOINT_SA.into());
        }
        end.added.push(policy(
            "ratings-viewer",
            json!({"selector": {"matchLabels": {"app": "ratings"}}, "action": "ALLOW",
                   "rules": [{"from": [{"source": {"principals": principals}}]}]}),
        ));
        verify(&before, &state(true, true, false).apply(&on(&end, &input)), None)
    };
    let request = "bookinfo/reviews-v1 -> svc bookinfo/ratings:9080 GET /";
    let missing = kept(false);
    let difference = find(&missing, Class::Tightened, request).expect("the waypoint is refused at ztunnel");
    assert!(
        difference
            .explanation()
            .contains(&format!("no ALLOW policy matched (bookinfo/ratings-viewer) as {WAYPOINT_SA}")),
        "{}",
        difference.explanation()
    );
    assert!(find(&kept(true), Class::Tightened, request).is_none(), "admitting the waypoint fixes it");
}

#[test]
fn a_version_service_widens_a_policy_attached_to_the_main_service_only() {
    let input = Snapshot::from_objects(sidecar_era());
    let mut end = final_change(hand_conversion(Protection::Final), replaced());
    end.added.retain(|object| !object.metadata.name.as_deref().is_some_and(|name| name.ends_with("-waypoint")));
    end.added.extend(waypoint_policies(true));
    let verification =
        verify(&state(false, false, true).apply(&input), &state(true, true, false).apply(&on(&end, &input)), None);
    let request = "bookinfo/ratings-v1 -> svc bookinfo/reviews-v2:9080 GET /";
    assert!(
        find(&verification, Class::Loosened, request).is_some_and(|d| !d.expected),
        "{:#?}",
        unexpected(&verification)
    );
    assert!(find(&verification, Class::Loosened, "bookinfo/ratings-v1 -> svc bookinfo/reviews:9080 GET /").is_none());
}

#[test]
fn gateway_api_precedence_reorders_a_virtual_service() {
    // The VirtualService sends jason to v2 first; Gateway API ranks the longer path prefix higher.
    let virtual_service = yaml(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /reviews}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]",
    );
    let literal_route = yaml(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: bookinfo}
spec:
  parentRefs: [{group: '', kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /reviews}}]
    backendRefs: [{name: reviews-v3, port: 9080}]
  - backendRefs: [{name: reviews-v1, port: 9080}]",
    );
    let mut objects = sidecar_era();
    objects.retain(|object| !is(object, &ResourceRef::new(Kind::VirtualService, Some(NS), "reviews")));
    objects.extend(virtual_service);
    let input = Snapshot::from_objects(objects);
    let mut end = final_change(hand_conversion(Protection::Final), replaced());
    end.added.extend(literal_route);
    let verification =
        verify(&state(false, false, true).apply(&input), &state(true, true, false).apply(&on(&end, &input)), None);
    let request = "bookinfo/productpage-v1 -> svc bookinfo/reviews:9080 GET /reviews end-user=jason";
    let difference = find(&verification, Class::Rerouted, request).expect("jason now lands on v3");
    assert_eq!(
        (difference.before.backend.as_slice(), difference.after.backend.as_slice()),
        (&["bookinfo/reviews-v2".to_string()][..], &["bookinfo/reviews-v3".to_string()][..])
    );
    assert!(!difference.expected);
}

#[test]
fn target_refs_policies_without_a_waypoint_enforce_nothing() {
    let input = Snapshot::from_objects(sidecar_era());
    let change = Edit { added: waypoint_policies(false), removed: replaced(), labels: Vec::new() };
    let verification =
        verify(&state(false, false, true).apply(&input), &state(true, true, false).apply(&on(&change, &input)), None);
    let difference = find(&verification, Class::Loosened, "bookinfo/ratings-v1 -> svc bookinfo/reviews:9080 GET /")
        .expect("nobody enforces reviews-waypoint");
    assert!(
        !difference.expected && !difference.after.explanation.contains("waypoint"),
        "{}",
        difference.after.explanation
    );
}

#[test]
fn a_waypoint_activated_on_a_namespace_that_is_not_enrolled_is_caught() {
    // Waypoint active and pods restarted without sidecars, but the namespace never enrolled: the
    // pods are outside the mesh, so clients skip the waypoint and nothing enforces anything.
    let stages = bookinfo_stages();
    let input = Snapshot::from_objects(sidecar_era());
    let converted = on(&hand_conversion(Protection::DuringMigration), &input);
    let wrong_order = state(false, true, false).apply(&converted);
    let verification = verify(&stages.start, &wrong_order, None);
    let difference = find(&verification, Class::Loosened, "bookinfo/ratings-v1 -> svc bookinfo/reviews:9080 GET /")
        .expect("reviews is open to anyone");
    assert!(
        difference.after.explanation.contains("outside-mesh client") && !difference.expected,
        "{}",
        difference.explanation()
    );
    // The same labels once the namespace is enrolled keep every outcome (the end of the migration).
    assert_eq!(unexpected(&verify(&stages.start, &stages.end, None)), Vec::<String>::new());
}

#[test]
fn the_report_is_stable_json() {
    let stages = bookinfo_stages();
    let verification = verify(&stages.start, &stages.end, Some(&[NS.to_string()].into()));
    let document = serde_json::to_value(&verification).unwrap();
    assert_eq!(document["kind"], "AmbientEquivalence");
    assert_eq!(document["evaluated"].as_u64(), Some(verification.evaluated as u64));
    assert_eq!(document["requests"].as_u64(), Some(verification.requests as u64));
    let first = &document["differences"][0];
    assert_eq!(first["class"], "tightened");
    assert_eq!(first["expected"], true);
    assert_eq!(first["before"]["allowed"], true);
    assert_eq!(first["request"]["destination"]["address"], "pod");
    assert_eq!(first["sources"][0], first["request"]["source"], "the representative comes first");
    assert!(verification.is_equivalent());
}

#[test]
fn a_change_is_verified_at_the_end_of_the_migration_unless_a_state_says_otherwise() {
    let input = Snapshot::from_objects(sidecar_era());
    let end = final_change(hand_conversion(Protection::Final), replaced());
    let at_the_end = verify_change(&input, end.changes(), &[NS.to_string()], None);
    assert!(at_the_end.is_equivalent(), "{:#?}", unexpected(&at_the_end));
    assert!(at_the_end.differences.iter().all(|d| d.expected) && !at_the_end.differences.is_empty());

    // A dump without the Namespace object is taken as the sidecar era, and says so.
    let mut objects = sidecar_era();
    objects.retain(|object| !is(object, &ResourceRef::new(Kind::Namespace, None, NS)));
    let undescribed = verify_change(&Snapshot::from_objects(objects), end.changes(), &[NS.to_string()], None);
    assert_eq!(undescribed.differing_requests(), at_the_end.differing_requests());
    assert!(
        undescribed.notes.iter().any(|note| note.contains("taken as injecting sidecars")),
        "{:?}",
        undescribed.notes
    );

    // The end-state protection while sidecars still enforce it refuses the sidecar clients.
    let with_sidecars = verify_change(&input, end.changes(), &[NS.to_string()], Some(&state(true, true, true)));
    assert!(!with_sidecars.is_equivalent());
    assert!(
        find(&with_sidecars, Class::Tightened, "bookinfo/productpage-v1 -> svc bookinfo/reviews:9080 GET /").is_some()
    );
}

#[test]
fn a_caller_known_only_by_a_policy_principal_is_exercised() {
    // reviews also admits a caller from a namespace the input does not hold; it keeps its sidecar,
    // so it skips the waypoint and meets the bypass protection, which does not exempt it.
    let partner = "cluster.local/ns/partner/sa/client";
    let mut objects = sidecar_era();
    objects.retain(|object| !is(object, &policy_ref("reviews-viewer")));
    objects.push(policy(
        "reviews-viewer",
        json!({"selector": {"matchLabels": {"app": "reviews"}}, "action": "ALLOW", "rules": [{
            "from": [{"source": {"principals": [caller_principal("bookinfo-productpage"), partner]}}],
            "to": [{"operation": {"methods": ["GET"]}}],
        }]}),
    ));
    let input = Snapshot::from_objects(objects);
    let end = final_change(hand_conversion(Protection::Final), replaced());
    let verification =
        verify(&state(false, false, true).apply(&input), &state(true, true, false).apply(&on(&end, &input)), None);
    let request = format!("{partner} -> svc bookinfo/reviews:9080 GET /");
    let difference = find(&verification, Class::Tightened, &request).expect("the partner is refused after");
    assert!(
        difference.before.allowed && difference.explanation().contains("sidecar client"),
        "{}",
        difference.explanation()
    );
}

/// The translation engine's real output for the scenario.
fn converted_by_the_engine(input: &Snapshot) -> Edit {
    let options = crate::convert::ConvertOptions { namespaces: vec![NS.to_string()], ..Default::default() };
    let conversion = crate::convert::convert(input, &options);
    assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
    Edit::of(conversion.changes())
}

#[test]
fn the_engines_conversion_keeps_every_outcome_until_the_sidecars_go() {
    let input = Snapshot::from_objects(sidecar_era());
    let converted = converted_by_the_engine(&input);
    assert!(!converted.added.is_empty() && !converted.removed.is_empty());
    // Steps 5 to 7 add the objects; labels and clean-up go with the sidecars (see below).
    let during = Edit { added: converted.added.clone(), ..Edit::default() };
    let stages = stages(&input, &during, &converted);
    for (name, stage) in [("step 5", &stages.step5), ("step 6", &stages.step6), ("step 7", &stages.step7)] {
        let verification = verify(&stages.start, stage, None);
        assert_eq!(unexpected(&verification), Vec::<String>::new(), "{name}");
    }
    // `istio.io/ingress-use-waypoint` while productpage keeps its sidecar: the sidecar sees the
    // waypoint's identity, which the sidecar-era policy does not admit.
    let labelled_early = state(true, true, true).apply(&on(&Edit { removed: Vec::new(), ..converted }, &input));
    let verification = verify(&stages.start, &labelled_early, None);
    let refused = find(
        &verification,
        Class::Tightened,
        "bookinfo/bookinfo-gateway -> svc bookinfo/productpage:9080 GET /productpage",
    );
    assert!(
        refused.is_some_and(|d| d.after.explanation.contains("sidecar denies")),
        "{:#?}",
        unexpected(&verification)
    );
}

#[test]
fn the_engines_end_state_keeps_every_outcome_once_step_9_narrows_the_protections() {
    // The engine's bypass protection exempts the sidecar-era callers, which is right while they
    // skip the waypoint with their sidecars; once they are ambient, the exemption would let them
    // reach the pods directly with methods the waypoint refuses. Step 9 narrows it.
    let input = Snapshot::from_objects(sidecar_era());
    let converted = converted_by_the_engine(&input);
    let stages = stages(&input, &Edit::default(), &converted);
    let wide = verify(&stages.start, &stages.end, None);
    let bypass = find(&wide, Class::Loosened, "bookinfo/productpage-v1 -> pod bookinfo/reviews-v1:9080 DELETE /");
    assert!(
        bypass.is_some_and(|d| !d.expected && d.after.explanation.contains("ztunnel allows")),
        "{:#?}",
        unexpected(&wide)
    );

    let narrowing: Vec<Change> =
        crate::convert::narrowed_protections(&stages.end).into_iter().map(|object| Change::Apply { object }).collect();
    assert!(!narrowing.is_empty());
    let narrowed = simulate(&stages.end, &narrowing).snapshot;
    assert_eq!(unexpected(&verify(&stages.start, &narrowed, None)), Vec::<String>::new());
    assert!(crate::convert::narrowed_protections(&narrowed).is_empty(), "narrowing is idempotent");
    // `convert --verify` simulates the same end state.
    let verified = verify_change(&input, converted.changes(), &[NS.to_string()], None);
    assert_eq!(unexpected(&verified), Vec::<String>::new());
}
