//! The check, the translator and the evaluator agree on the facts the model decides: one test
//! per disagreement the three former models had. Each builds a small mesh, asks all three, and
//! (where the conversion is involved) checks the converted state with the check and the verifier.

use std::collections::BTreeSet;

use crate::change::{Change, simulate};
use crate::check::{self, Options, Scope, Severity};
use crate::convert::{ConvertOptions, convert};
use crate::equivalence::verify::verify_change;
use crate::equivalence::{Address, HttpRequest, MigrationState, Request, Target, Topology};
use crate::mesh::ObjectRef;
use crate::model::{MeshModel, Mode};
use crate::snapshot::{Snapshot, parse_documents};

fn snapshot_of(yaml: &str) -> Snapshot {
    Snapshot::from_objects(parse_documents(std::path::Path::new("model-test.yaml"), yaml).expect("valid test input"))
}

/// A sidecar-era namespace: `web` calls `api`, which admits only `web`'s principal and only GET.
fn shop(trust_domain: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio-injection: enabled}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec: {{serviceAccountName: api, containers: [{{name: app}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{serviceAccountName: web, containers: [{{name: app}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec: {{selector: {{app: api}}, ports: [{{name: http, port: 8080}}]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api-readers, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: [{trust_domain}/ns/shop/sa/web]}}}}]
    to: [{{operation: {{methods: [GET]}}}}]
{extra}"
    )
}

const CORP_ISTIO: &str = "---
apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: default}
spec: {namespace: istio-system, values: {meshConfig: {trustDomain: corp.example}}}
";

fn get(source: &str, method: &str) -> Request {
    Request {
        source: source.into(),
        destination: Target { address: Address::Service, namespace: "shop".into(), name: "api".into(), port: 8080 },
        http: Some(HttpRequest { method: method.into(), path: "/".into(), headers: Default::default() }),
    }
}

/// Converts `input`, then checks that the verifier finds no unexpected difference once the
/// converted objects are in force (Step 7: enrolled, waypoint active, sidecars still there), and
/// that the check finds nothing wrong with the converted objects there. (The end state needs the
/// bypass protection narrowed as the sidecars go, which is Step 9's plan, not the conversion's.)
fn assert_conversion_agrees(input: &Snapshot) {
    let conversion = convert(input, &ConvertOptions::default());
    assert!(conversion.is_faithful(), "{}", conversion.report_text());
    // The sidecar-era objects stay until the sidecars go (clean-up belongs with Step 9).
    let changes: Vec<Change> =
        conversion.changes().into_iter().filter(|change| !matches!(change, Change::Delete { .. })).collect();
    let shop = BTreeSet::from(["shop".to_string()]);
    let step7 = MigrationState { enrolled: shop.clone(), waypoints: shop.clone(), sidecars: shop };
    let verification = verify_change(input, changes.clone(), &["shop".to_string()], Some(&step7));
    let unexpected: Vec<String> = verification
        .unexpected()
        .map(|d| format!("{} {}: {} -> {}", d.class.word(), d.request, d.before.explanation, d.after.explanation))
        .collect();
    assert!(unexpected.is_empty(), "the verifier sees unexpected differences: {unexpected:#?}");

    let converted = simulate(input, &changes).snapshot;
    let state = step7.apply(&converted);
    let report = check::evaluate(&state, &Options { scope: Scope::All, ..Options::default() });
    let generated: BTreeSet<ObjectRef> = conversion.items.iter().map(ObjectRef::of).collect();
    let about_generated: Vec<String> = report
        .findings
        .iter()
        .filter(|f| matches!(f.severity, Severity::Fail | Severity::Warn))
        .filter(|f| f.object.as_ref().is_some_and(|object| generated.contains(object)))
        .map(|f| format!("{} {:?}: {}", f.id, f.object, f.message))
        .collect();
    assert!(about_generated.is_empty(), "the check objects to what convert generated: {about_generated:#?}");
}

#[test]
fn a_trust_domain_from_the_istio_resource_is_everyones() {
    let input = snapshot_of(&(shop("corp.example", CORP_ISTIO)));
    let model = MeshModel::new(&input);
    let topology = Topology::from_snapshot(&input);
    let context = check::phase::MeshContext::new(&input);
    let web = "corp.example/ns/shop/sa/web";
    assert_eq!(model.principal("shop", "web").as_deref(), Some(web));
    assert_eq!(topology.workload("shop/web").and_then(|w| w.principal()).as_deref(), Some(web));
    assert_eq!(context.principal("shop", "web"), web);
    assert!(topology.evaluate(&get("shop/web", "GET")).allowed, "the sidecar admits web's principal");
    assert!(!topology.evaluate(&get("shop/web", "POST")).allowed);
    assert_conversion_agrees(&input);
}

#[test]
fn a_trust_domain_given_as_a_flag_is_everyones() {
    let mut input = snapshot_of(&shop("flag.example", ""));
    input.trust_domain = Some("flag.example".into());
    let topology = Topology::from_snapshot(&input);
    assert_eq!(topology.trust_domain, "flag.example");
    assert!(topology.evaluate(&get("shop/web", "GET")).allowed);
    assert_eq!(check::phase::MeshContext::new(&input).principal("shop", "web"), "flag.example/ns/shop/sa/web");
    assert_conversion_agrees(&input);
}

#[test]
fn a_waypoint_runs_as_its_service_account_override_for_everyone() {
    let waypoint = "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: shop
  labels: {istio.io/waypoint-for: service}
  annotations: {gateway.istio.io/service-account: wp-sa}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
";
    let input = snapshot_of(&shop("cluster.local", waypoint));
    let expected = "cluster.local/ns/shop/sa/wp-sa";
    assert_eq!(MeshModel::new(&input).waypoint_principal("shop", "waypoint").as_deref(), Some(expected));
    let topology = Topology::from_snapshot(&input);
    assert_eq!(topology.waypoints.values().map(|w| topology.principal_of(w)).collect::<Vec<_>>(), vec![expected]);
    let context = check::phase::MeshContext::new(&input);
    assert_eq!(check::phase::waypoint_principals(&context, "shop"), vec![expected]);
    assert_conversion_agrees(&input);
}

#[test]
fn an_init_container_without_restart_policy_always_is_no_sidecar_for_anyone() {
    let pod = "---
apiVersion: v1
kind: Pod
metadata: {name: batch, namespace: shop, labels: {app: batch}}
spec: {containers: [{name: app}], initContainers: [{name: istio-proxy}]}
status: {phase: Running}
";
    let input = snapshot_of(&shop("cluster.local", pod));
    let model = MeshModel::new(&input);
    let context = check::phase::MeshContext::new(&input);
    assert!(!context.pods_in("shop").iter().any(|pod| pod.sidecar), "check: no sidecar");
    let topology = Topology::from_snapshot(&input);
    assert_eq!(topology.workload("shop/batch").map(|w| w.mode), Some(Mode::OutsideMesh), "evaluator");
    let mesh = model.workloads_in("shop").find(|w| w.name == "batch").map(|w| w.has_sidecar());
    assert_eq!(mesh, Some(false), "translator");
    let report = check::evaluate(&input, &Options { scope: Scope::All, ..Options::default() });
    let counts = &report.namespaces.iter().find(|ns| ns.name == "shop").map(|ns| ns.pods.clone());
    assert_eq!(counts.as_ref().map(|c| (c.total, c.sidecar)), Some((1, 0)));
}

#[test]
fn injection_disabled_beside_a_revision_label_injects_nothing_for_anyone() {
    let input =
        snapshot_of(&shop("cluster.local", "").replace(
            "labels: {istio-injection: enabled}",
            "labels: {istio-injection: disabled, istio.io/rev: default}",
        ));
    let model = MeshModel::new(&input);
    assert!(!model.namespace("shop").injection);
    assert!(model.workloads_in("shop").all(|w| !w.has_sidecar()), "translator: templates get no sidecar");
    let topology = Topology::from_snapshot(&input);
    assert!(topology.workloads().iter().all(|w| w.mode == Mode::OutsideMesh), "evaluator");
    assert!(!check::phase::MeshContext::new(&input).labels("shop").injection, "check");
}

#[test]
fn the_waypoint_decision_is_one() {
    // An L7 policy on an ingress gateway is enforced by the gateway itself; a VirtualService for
    // a Service that does not exist routes nothing. Neither needs a waypoint, for anyone.
    let input = snapshot_of(
        "apiVersion: v1
kind: Namespace
metadata: {name: edge, labels: {istio-injection: enabled}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-paths, namespace: edge}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{to: [{operation: {paths: [/public/*]}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ghost, namespace: edge}
spec: {hosts: [ghost], http: [{route: [{destination: {host: ghost}}]}]}
",
    );
    let report = check::evaluate(&input, &Options { scope: Scope::All, ..Options::default() });
    let edge = report.namespaces.iter().find(|ns| ns.name == "edge").expect("edge is reported");
    assert!(!edge.waypoint_needed, "check: {:?}", edge.waypoint_reasons);
    let conversion = convert(&input, &ConvertOptions::default());
    assert!(
        !conversion.items.iter().any(|item| ObjectRef::of(item).kind == "Gateway"),
        "convert deploys no waypoint: {}",
        conversion.report_text()
    );
}
