//! The enable planner and its gates on bookinfo (the equivalence tests' sidecar-era input, with
//! one running pod per Deployment) and on small hand-written snapshots.

use std::collections::BTreeMap;
use std::path::Path;

use kube_core::DynamicObject;
use serde_json::{Value, json};

use super::*;
use crate::change::simulate;
use crate::check::ids;
use crate::convert::{ConvertOptions, convert};
use crate::kinds::Kind;
use crate::model::dataplane::{injected_proxy, set_proxy_container};
use crate::snapshot::{Snapshot, parse_documents};

pub(super) const NS: &str = "bookinfo";

pub(super) fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

pub(super) fn yaml(text: &str) -> Vec<DynamicObject> {
    parse_documents(Path::new("test.yaml"), text).unwrap()
}

fn istio(profile: Option<&str>) -> DynamicObject {
    let mut istio = json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
        "spec": {"version": "v1.27.0", "namespace": "istio-system", "updateStrategy": {"type": "InPlace"},
            "values": {"meshConfig": {"discoverySelectors": [{"matchLabels": {"istio-discovery": "enabled"}}]}}}});
    if let Some(profile) = profile {
        istio["spec"]["profile"] = json!(profile);
    }
    object(istio)
}

fn cni() -> DynamicObject {
    object(json!({"apiVersion": "sailoperator.io/v1", "kind": "IstioCNI", "metadata": {"name": "default"},
        "spec": {"version": "v1.27.0", "namespace": "istio-cni"}}))
}

/// A running, ready pod of each Deployment, with a sidecar (HBONE or not) where the namespace injects.
fn pods_of(objects: &[DynamicObject], hbone: bool) -> Vec<DynamicObject> {
    let injecting = |namespace: &str| {
        objects.iter().any(|object| {
            object.types.as_ref().is_some_and(|types| types.kind == "Namespace")
                && object.metadata.name.as_deref() == Some(namespace)
                && crate::model::dataplane::NamespaceMode::of(object).injection
        })
    };
    let deployments =
        objects.iter().filter(|object| object.types.as_ref().is_some_and(|types| types.kind == "Deployment"));
    deployments
        .map(|deployment| {
            let name = deployment.metadata.name.clone().unwrap();
            let namespace = deployment.metadata.namespace.clone().unwrap();
            let template = &deployment.data["spec"]["template"];
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!("5d8f");
            let mut spec = template["spec"].clone();
            let sidecar = injecting(&namespace) && labels.get("sidecar.istio.io/inject") != Some(&json!("false"));
            if sidecar {
                labels["security.istio.io/tlsMode"] = json!("istio");
            }
            set_proxy_container(&mut spec, sidecar.then(|| injected_proxy(hbone)));
            object(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-5d8f-x"), "namespace": namespace, "labels": labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-5d8f"),
                        "uid": "rs"}]},
                "spec": spec,
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
        })
        .collect()
}

/// Bookinfo in the sidecar era, running, on a control plane of the default profile.
pub(super) fn bookinfo(hbone: bool) -> Snapshot {
    let mut objects = crate::equivalence::tests::sidecar_era();
    objects.extend(pods_of(&objects, hbone));
    objects.extend([istio(None), cni()]);
    Snapshot::from_objects(objects)
}

/// `snapshot` after Step 2.
pub(super) fn ambient_ready(snapshot: &Snapshot) -> Snapshot {
    after(snapshot, &plan_enable(snapshot, &EnableIntent::default()).unwrap())
}

/// Bookinfo after `oc ambient-waypoint`'s Steps 4 and 5: the conversion applied.
fn converted(snapshot: &Snapshot) -> Snapshot {
    let conversion = convert(snapshot, &ConvertOptions { namespaces: vec![NS.into()], waypoint: None });
    let applies: Vec<Change> =
        conversion.changes().into_iter().filter(|change| !matches!(change, Change::Delete { .. })).collect();
    let simulation = simulate(snapshot, &applies);
    assert_eq!(simulation.refused, Vec::new());
    simulation.snapshot
}

pub(super) fn intent(namespaces: &[&str], until: Until, only_step: Option<u8>) -> EnableIntent {
    EnableIntent {
        namespaces: namespaces.iter().map(|ns| ns.to_string()).collect(),
        until,
        only_step,
        ..EnableIntent::default()
    }
}

pub(super) fn ids_of(plan: &Plan) -> Vec<&str> {
    plan.actions.iter().map(|action| action.id.as_str()).collect()
}

pub(super) fn after(snapshot: &Snapshot, plan: &Plan) -> Snapshot {
    let simulation = simulate(snapshot, &plan.changes());
    assert_eq!(simulation.refused, Vec::new());
    simulation.snapshot
}

pub(super) fn set_labels(kind: Kind, name: &str, labels: &[(&str, Option<&str>)]) -> Change {
    let namespace = (kind != Kind::Namespace).then_some(NS);
    let labels = labels.iter().map(|(key, value)| (key.to_string(), value.map(str::to_string))).collect();
    Change::SetLabels { target: ResourceRef::new(kind, namespace, name), labels }
}

pub(super) fn plan_of(changes: Vec<Change>) -> Plan {
    let mut plan = Plan::new("test");
    for (index, change) in changes.into_iter().enumerate() {
        plan.actions.push(Action {
            id: format!("a{index}"),
            step: 6,
            description: String::new(),
            change,
            wait: None,
            lane: None,
        });
    }
    plan
}

#[test]
fn step_2_sets_up_ambient_on_a_default_profile_mesh_and_its_json_is_stable() {
    let plan = plan_enable(&bookinfo(false), &EnableIntent::default()).unwrap();
    assert_eq!(
        ids_of(&plan),
        [
            "step2:apply:Istio/default",
            "step2:apply:IstioCNI/default",
            "step2:apply:Namespace/ztunnel",
            "step2:apply:ZTunnel/default"
        ]
    );
    insta::assert_json_snapshot!(plan);
}

#[test]
fn step_2_keeps_what_it_does_not_own_and_plans_nothing_once_done() {
    let snapshot = bookinfo(false);
    let plan = plan_enable(&snapshot, &EnableIntent::default()).unwrap();
    let state = after(&snapshot, &plan);
    let istio = state.get(Kind::Istio, None, "default").unwrap();
    assert_eq!(istio.data["spec"]["updateStrategy"]["type"], "InPlace", "a partial apply keeps the rest");
    assert_eq!(istio.data["spec"]["values"]["pilot"]["trustedZtunnelNamespace"], "ztunnel");
    let namespace = state.get(Kind::Namespace, None, "ztunnel").unwrap();
    assert_eq!(crate::mesh::labels(namespace).get("istio-discovery").map(String::as_str), Some("enabled"));
    assert!(plan_enable(&state, &EnableIntent::default()).unwrap().is_empty());
}

#[test]
fn an_ambient_ready_cluster_needs_no_step_2() {
    let ready = yaml(
        "apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: default}
spec: {version: v1.27.0, profile: ambient, values: {pilot: {trustedZtunnelNamespace: zt}}}
---
apiVersion: sailoperator.io/v1
kind: IstioCNI
metadata: {name: default}
spec: {profile: ambient}
---
apiVersion: v1
kind: Namespace
metadata: {name: zt}
---
apiVersion: sailoperator.io/v1alpha1
kind: ZTunnel
metadata: {name: default}
spec: {namespace: zt, profile: ambient, version: v1.27.0}",
    );
    let intent = EnableIntent { ztunnel_namespace: "zt".into(), ..EnableIntent::default() };
    assert_eq!(plan_enable(&Snapshot::from_objects(ready), &intent).unwrap(), Plan::new("enable"));
}

#[test]
fn a_new_ztunnel_uses_the_version_the_cluster_serves() {
    let mut snapshot = Snapshot::from_objects([istio(Some("ambient")), cni()]);
    snapshot.served = Some(BTreeMap::from([(("sailoperator.io".into(), "ZTunnel".into()), vec!["v1alpha1".into()])]));
    let plan = plan_enable(&snapshot, &EnableIntent::default()).unwrap();
    let Change::Apply { object } = &plan.actions.last().unwrap().change else { panic!("an apply") };
    assert_eq!(object.types.as_ref().unwrap().api_version, "sailoperator.io/v1alpha1");
}

#[test]
fn step_3_restarts_exactly_the_workloads_without_hbone() {
    let mut snapshot = ambient_ready(&bookinfo(false));
    let already =
        simulate(&snapshot, &[Change::Restart { target: ResourceRef::new(Kind::Deployment, Some(NS), "ratings-v1") }]);
    snapshot = already.snapshot;
    let plan = plan_enable(&snapshot, &intent(&[NS], Until::SidecarHbone, Some(3))).unwrap();
    assert_eq!(
        ids_of(&plan),
        [
            "step3:restart:Deployment/bookinfo/details-v1",
            "step3:restart:Deployment/bookinfo/productpage-v1",
            "step3:restart:Deployment/bookinfo/reviews-v1",
            "step3:restart:Deployment/bookinfo/reviews-v2",
            "step3:restart:Deployment/bookinfo/reviews-v3",
        ]
    );
    assert!(plan.actions.iter().all(|action| matches!(action.wait, Some(Wait::RolledOut { .. }))));
    assert!(plan_enable(&after(&snapshot, &plan), &intent(&[NS], Until::SidecarHbone, Some(3))).unwrap().is_empty());
}

#[test]
fn step_3_waits_for_the_ambient_control_plane() {
    let snapshot = bookinfo(false);
    let alone = plan_enable(&snapshot, &intent(&[NS], Until::SidecarHbone, Some(3))).unwrap();
    assert!(alone.is_empty());
    assert_eq!(alone.stops[0].next.as_deref(), Some("oc ambient-enable"));
    // With Step 2 in the same plan, the restarts follow it.
    let together = plan_enable(&snapshot, &intent(&[NS], Until::SidecarHbone, None)).unwrap();
    assert_eq!(together.actions.iter().filter(|action| action.step == 3).count(), 6);
    assert_eq!(together.actions[0].step, 2);
}

#[test]
fn step_6_stops_while_sidecars_lack_hbone() {
    let plan = plan_enable(&ambient_ready(&bookinfo(false)), &intent(&[NS], Until::AmbientEnrolled, Some(6))).unwrap();
    assert!(plan.is_empty());
    assert!(plan.stops[0].reason.contains(ids::SEQUENCE_AMBIENT_BEFORE_HBONE), "{:?}", plan.stops);
    assert_eq!(plan.stops[0].next.as_deref(), Some("oc ambient-enable bookinfo --step 3"));
}

#[test]
fn step_6_stops_until_the_waypoint_is_deployed_and_policies_migrated() {
    let plan = plan_enable(&ambient_ready(&bookinfo(true)), &intent(&[NS], Until::AmbientEnrolled, None)).unwrap();
    assert!(plan.is_empty());
    assert_eq!(
        plan.stops,
        [Stop {
            namespace: Some(NS.into()),
            reason: plan.stops[0].reason.clone(),
            next: Some("oc ambient-waypoint bookinfo".into())
        }]
    );
    assert!(plan.stops[0].reason.contains("its waypoint deployed"), "{}", plan.stops[0].reason);
}

#[test]
fn step_6_enrolls_a_converted_namespace_with_hbone_sidecars() {
    let snapshot = converted(&ambient_ready(&bookinfo(true)));
    let plan = plan_enable(&snapshot, &intent(&[NS], Until::AmbientEnrolled, None)).unwrap();
    assert_eq!(ids_of(&plan), ["step6:label:Namespace/bookinfo"]);
    assert_eq!(plan.actions[0].wait, Some(Wait::Redirected { namespace: NS.into() }));
    assert_eq!(plan.stops, []);
}

#[test]
fn step_9_needs_the_active_waypoint_then_removes_sidecars_and_replaced_config() {
    let enrolled = after(
        &converted(&ambient_ready(&bookinfo(true))),
        &plan_of(vec![set_labels(Kind::Namespace, NS, &[("istio.io/dataplane-mode", Some("ambient"))])]),
    );
    let waiting = plan_enable(&enrolled, &intent(&[NS], Until::Ambient, None)).unwrap();
    assert!(waiting.is_empty());
    assert_eq!(waiting.stops[0].next.as_deref(), Some("oc ambient-waypoint bookinfo"));

    let active = after(
        &enrolled,
        &plan_of(vec![set_labels(Kind::Namespace, NS, &[("istio.io/use-waypoint", Some("waypoint"))])]),
    );
    let plan = plan_enable(&active, &intent(&[NS], Until::Ambient, None)).unwrap();
    assert_eq!(plan.actions[0].id, "step9:label:Namespace/bookinfo");
    assert_eq!(plan.actions.iter().filter(|action| action.id.starts_with("step9:restart:")).count(), 6);
    let deleted: Vec<&str> = plan.actions.iter().filter_map(|action| action.id.strip_prefix("step9:delete:")).collect();
    assert!(deleted.contains(&"VirtualService/bookinfo/reviews"), "{deleted:?}");
    let end = after(&active, &plan);
    let context = crate::check::phase::MeshContext::new(&end);
    assert_eq!(crate::check::phase::namespace_report(&end, &context, NS).phase, crate::check::phase::Phase::Ambient);
    assert!(plan_enable(&end, &intent(&[NS], Until::Ambient, None)).unwrap().is_empty());
}

#[test]
fn the_whole_plan_is_idempotent() {
    let snapshot = converted(&bookinfo(false));
    let plan = plan_enable(&snapshot, &intent(&[NS], Until::AmbientEnrolled, None)).unwrap();
    assert_eq!(plan.actions.iter().map(|action| action.step).collect::<Vec<_>>(), [2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 6]);
    assert!(plan_enable(&after(&snapshot, &plan), &intent(&[NS], Until::AmbientEnrolled, None)).unwrap().is_empty());
}

#[test]
fn intents_the_planner_cannot_serve_are_errors() {
    let snapshot = bookinfo(false);
    assert_eq!(
        plan_enable(&snapshot, &intent(&[NS], Until::Ambient, Some(5))),
        Err(PlanError::StepNotApplicable { step: 5 })
    );
    assert_eq!(
        plan_enable(&snapshot, &intent(&["shop"], Until::Ambient, None)),
        Err(PlanError::NamespaceNotFound { namespace: "shop".into() })
    );
    let no_istio = Snapshot::from_objects(crate::equivalence::tests::sidecar_era());
    assert_eq!(plan_enable(&no_istio, &EnableIntent::default()), Err(PlanError::NoIstio));
}

/// A namespace with one sidecar workload without HBONE behind a Service, and an L7 policy that
/// needs a waypoint.
const SMALL: &str = "
apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: default}
spec: {profile: ambient}
---
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: api}}
  template: {metadata: {labels: {app: api}}, spec: {containers: [{name: api}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: bookinfo, labels: {app: api}}
spec: {containers: [{name: api}, {name: istio-proxy}]}
status: {phase: Running, conditions: [{type: Ready, status: 'True'}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: bookinfo}
spec: {selector: {app: api}, ports: [{name: http, port: 8080}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-get, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: api}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
";

fn refused_rule(snapshot: &Snapshot, changes: Vec<Change>) -> String {
    match gate(snapshot, &mut plan_of(changes)) {
        Err(PlanError::Refused { rule, after, .. }) => format!("{rule} after {after}"),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn the_gate_refuses_enrolling_before_hbone() {
    let snapshot = Snapshot::from_objects(yaml(SMALL));
    let enroll = set_labels(Kind::Namespace, NS, &[("istio.io/dataplane-mode", Some("ambient"))]);
    assert_eq!(refused_rule(&snapshot, vec![enroll.clone()]), "sequence-ambient-before-hbone after a0");
    // Restarted first under the ambient control plane, the same label passes.
    let restart = Change::Restart { target: ResourceRef::new(Kind::Deployment, Some(NS), "api") };
    assert_eq!(gate(&snapshot, &mut plan_of(vec![restart, enroll])), Ok(()));
}

#[test]
fn the_gate_judges_every_order_in_which_a_round_can_finish() {
    let snapshot = Snapshot::from_objects(yaml(SMALL));
    let restart = Change::Restart { target: ResourceRef::new(Kind::Deployment, Some(NS), "api") };
    let enroll = set_labels(Kind::Namespace, NS, &[("istio.io/dataplane-mode", Some("ambient"))]);
    // In the plan's order the restart comes first and the label passes; in one round the label
    // can land first.
    let mut plan = plan_of(vec![restart, enroll]);
    assert_eq!(gate::gate_scheduled(&snapshot, &snapshot, &mut plan.clone(), &[vec![0], vec![1]]), Ok(()));
    match gate::gate_scheduled(&snapshot, &snapshot, &mut plan, &[vec![0, 1]]) {
        Err(PlanError::Refused { rule, after, .. }) => {
            assert_eq!((rule.as_str(), after.as_str()), ("sequence-ambient-before-hbone", "a1"));
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_difference_only_while_a_round_runs_is_a_window_of_that_round() {
    let snapshot = Snapshot::from_objects(yaml(SMALL));
    let policy = ResourceRef::new(Kind::AuthorizationPolicy, Some(NS), "api-get");
    let original = snapshot.get(Kind::AuthorizationPolicy, Some(NS), "api-get").cloned().unwrap();
    let delete = Change::Delete { target: policy, uid: None, resource_version: None };
    let label = set_labels(Kind::Deployment, "api", &[("team", Some("a"))]);
    let mut plan = plan_of(vec![label, delete, Change::Apply { object: original }]);
    // One at a time, the policy is gone between a1 and a2; with a1 and a2 in one round, while
    // only a1 is done.
    gate::gate_scheduled(&snapshot, &snapshot, &mut plan, &[vec![0], vec![1, 2]]).unwrap();
    let windows: Vec<(&str, &str)> =
        plan.windows.iter().map(|window| (window.opens_after.as_str(), window.closes_after.as_str())).collect();
    assert_eq!(windows, vec![("a2", "a2")]);
    assert!(!plan.windows[0].requests.is_empty());
    assert_eq!(plan.rounds, vec![vec!["a0".to_string()], vec!["a1".to_string(), "a2".to_string()]]);
    gate::gate_scheduled(&snapshot, &snapshot, &mut plan, &[vec![0], vec![1], vec![2]]).unwrap();
    let windows: Vec<(&str, &str)> =
        plan.windows.iter().map(|window| (window.opens_after.as_str(), window.closes_after.as_str())).collect();
    assert_eq!(windows, vec![("a1", "a2")]);
    assert!(plan.rounds.is_empty());
}

#[test]
fn the_gate_refuses_a_waypoint_before_ambient() {
    let snapshot = Snapshot::from_objects(yaml(SMALL));
    let use_waypoint = set_labels(Kind::Namespace, NS, &[("istio.io/use-waypoint", Some("waypoint"))]);
    assert_eq!(refused_rule(&snapshot, vec![use_waypoint]), "sequence-waypoint-before-ambient after a0");
}

#[test]
fn the_gate_refuses_removing_sidecars_before_the_waypoint() {
    let snapshot = Snapshot::from_objects(yaml(SMALL));
    let restart = Change::Restart { target: ResourceRef::new(Kind::Deployment, Some(NS), "api") };
    let enroll = set_labels(Kind::Namespace, NS, &[("istio.io/dataplane-mode", Some("ambient"))]);
    let stop_injecting = set_labels(Kind::Namespace, NS, &[("istio-injection", None)]);
    assert_eq!(
        refused_rule(&snapshot, vec![restart, enroll, stop_injecting]),
        "sequence-sidecars-removed-before-waypoint after a2"
    );
}

#[test]
fn the_gate_opens_a_window_where_an_outcome_changes_and_closes_it_when_restored() {
    let snapshot = Snapshot::from_objects(yaml(SMALL));
    let policy = ResourceRef::new(Kind::AuthorizationPolicy, Some(NS), "api-get");
    let original = snapshot.get(Kind::AuthorizationPolicy, Some(NS), "api-get").cloned().unwrap();
    let delete = Change::Delete { target: policy, uid: None, resource_version: None };
    let label = set_labels(Kind::Deployment, "api", &[("team", Some("a"))]);
    let mut plan = plan_of(vec![delete, label, Change::Apply { object: original }]);
    gate(&snapshot, &mut plan).unwrap();
    assert_eq!(plan.windows.len(), 1, "{:?}", plan.windows);
    let window = &plan.windows[0];
    assert_eq!(
        (window.id.as_str(), window.opens_after.as_str(), window.closes_after.as_str()),
        ("window:6:bookinfo:1", "a0", "a2")
    );
    assert!(!window.requests.is_empty());
}

#[test]
fn bookinfo_plans_pass_the_gates_and_name_their_windows() {
    let snapshot = converted(&bookinfo(false));
    let mut enrolling = plan_enable(&snapshot, &intent(&[NS], Until::AmbientEnrolled, None)).unwrap();
    gate(&snapshot, &mut enrolling).unwrap();
    assert_eq!(enrolling.windows, [], "Steps 2 to 6 keep every outcome");

    let enrolled = after(&snapshot, &enrolling);
    let use_waypoint = set_labels(Kind::Namespace, NS, &[("istio.io/use-waypoint", Some("waypoint"))]);
    let active = after(&enrolled, &plan_of(vec![use_waypoint]));
    let mut removal = plan_enable(&active, &intent(&[NS], Until::Ambient, None)).unwrap();
    gate_against(&snapshot, &active, &mut removal).unwrap();
    assert!(!removal.windows.is_empty(), "an L7 selector policy denies all at ztunnel until it is deleted");
    let ids: Vec<&str> = removal.windows.iter().map(|window| window.id.as_str()).collect();
    let expected: Vec<String> = (1..=ids.len()).map(|n| format!("window:9:bookinfo:{n}")).collect();
    assert_eq!(ids, expected);
    // Callees go first and the replaced selector policies are pinned to the sidecar pods first:
    // no window denies what the sidecar era allowed; what remains are sidecar callers reaching
    // restarted callees past the waypoint, each until the caller's own restart and narrowing.
    let ids = ids_of(&removal);
    let position = |id: &str| ids.iter().position(|other| *other == id).unwrap_or_else(|| panic!("{id} in {ids:?}"));
    let first_restart = ids.iter().position(|id| id.starts_with("step9:restart:")).unwrap();
    assert!(position("step9:pin:AuthorizationPolicy/bookinfo/reviews-viewer") < first_restart);
    assert!(
        position("step9:restart:Deployment/bookinfo/reviews-v3")
            < position("step9:restart:Deployment/bookinfo/productpage-v1")
    );
    assert!(
        position("step9:restart:Deployment/bookinfo/ratings-v1")
            < position("step9:restart:Deployment/bookinfo/reviews-v1")
    );
    for window in &removal.windows {
        assert_ne!(window.closes_after, "end", "{window:?}");
        assert!(
            window.requests.iter().all(|request| !request.contains(" GET ")),
            "GET was allowed throughout: {window:?}"
        );
    }
    let end = after(&active, &removal);
    let unexpected: Vec<String> =
        crate::equivalence::verify(&snapshot, &end, None).unexpected().map(|d| d.request.to_string()).collect();
    assert_eq!(unexpected, Vec::<String>::new(), "the migrated bookinfo keeps every outcome of the sidecar era");
}

#[test]
fn a_step_asked_for_and_blocked_by_a_gate_is_refused() {
    let mut plan = Plan::new("enable");
    plan.stops.push(Stop { namespace: Some("shop".into()), reason: "not enrolled".into(), next: Some("next".into()) });
    let refused = plan.refuse_blocked_step(Some(9)).unwrap_err();
    assert!(matches!(&refused, PlanError::Refused { reason, .. } if reason.contains("not enrolled")), "{refused}");
    assert_eq!(plan.refuse_blocked_step(None), Ok(()), "without --step a stop is not a refusal");
}

#[test]
fn accept_takes_exact_ids_and_prefixes_ending_in_a_star() {
    let patterns = vec!["window:9:bookinfo:*".to_string(), "unsupported:VirtualService/shop/cart:mirror".to_string()];
    assert!(accepts(&patterns, "window:9:bookinfo:1"));
    assert!(accepts(&patterns, "window:9:bookinfo:12"));
    assert!(!accepts(&patterns, "window:9:shop:1"));
    assert!(!accepts(&patterns, "window:7:bookinfo:1"));
    assert!(accepts(&patterns, "unsupported:VirtualService/shop/cart:mirror"));
    assert!(!accepts(&patterns, "unsupported:VirtualService/shop/cart:mirrorPercentage"));
    // A bare star is not a review of anything.
    assert!(!accepts(&["*".to_string()], "window:9:bookinfo:1"));
}

#[test]
fn step_2_with_monitoring_creates_the_ztunnel_pod_monitor_unless_the_api_is_not_served() {
    let snapshot = Snapshot::from_objects([istio(Some("ambient")), cni()]);
    let intent = EnableIntent { monitoring: true, ..EnableIntent::default() };
    let plan = plan_enable(&snapshot, &intent).unwrap();
    let last = plan.actions.last().unwrap();
    assert_eq!(last.step, 2);
    let Change::Apply { object } = &last.change else { panic!("an apply") };
    assert_eq!(object.types.as_ref().unwrap().kind, "PodMonitor");
    assert!(crate::mesh::monitoring::selects(object, "ztunnel", &crate::mesh::monitoring::ztunnel_pod_labels()));
    assert!(plan.stops.is_empty());

    let mut unserved = snapshot.clone();
    unserved.set_coverage(Kind::PodMonitor, crate::snapshot::Coverage::NotServed);
    let plan = plan_enable(&unserved, &intent).unwrap();
    assert!(plan.actions.iter().all(|action| !action.id.contains("PodMonitor")));
    assert_eq!(plan.stops.len(), 1, "{:?}", plan.stops);
    assert!(plan.stops[0].reason.contains("not served"), "{}", plan.stops[0].reason);
}
