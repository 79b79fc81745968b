//! The rollback planner on bookinfo migrated in memory: the migration's plans are "run" as the
//! engine runs them (each action journalled with the prior state of its target, then simulated),
//! and the rollback must bring back what was there.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::change::simulate;
use crate::check::phase::{MeshContext, Phase, namespace_report};
use crate::journal::EntryState;
use crate::model::Pod;
use crate::plan::enable::{EnableIntent, Until, plan_enable};
use crate::plan::gate::gate_against;
use crate::plan::tests::{NS, bookinfo, object};
use crate::plan::waypoint::{WaypointIntent, WaypointUntil, plan_waypoint};

/// A cluster and its journal, as the change engine leaves them.
struct Cluster {
    state: Snapshot,
    journal: Vec<Entry>,
}

impl Cluster {
    fn new() -> Self {
        Cluster { state: bookinfo(false), journal: Vec::new() }
    }

    /// Journals and applies every action of `plan`, as the engine does.
    fn run(&mut self, plan: &Plan) {
        for action in &plan.actions {
            let target = action.change.target().unwrap();
            let prior = self.state.get(target.kind, target.namespace.as_deref(), &target.name).cloned();
            let entry = |state, prior| Entry {
                action: action.id.clone(),
                state,
                at: "2026-01-01T00:00:00Z".into(),
                change: action.change.clone(),
                prior,
                accepted: Vec::new(),
            };
            self.journal.push(entry(EntryState::Started, prior));
            let simulation = simulate(&self.state, std::slice::from_ref(&action.change));
            assert_eq!(simulation.refused, Vec::new(), "{}", action.id);
            self.state = simulation.snapshot;
            self.journal.push(entry(EntryState::Done, None));
        }
    }

    /// The migration up to `last` (2, 3, 5, 6, 7 or 9), by the suite's planners.
    fn migrate(&mut self, last: u8) {
        for step in [2, 3, 5, 6, 7, 9].into_iter().filter(|step| *step <= last) {
            let plan = plan_up_to(&self.state, step);
            assert!(plan.actions.iter().any(|action| action.step == step), "step {step}: {plan:#?}");
            self.run(&plan);
        }
    }

    fn rollback(&self, to_step: Option<u8>, accept: &[&str]) -> Rollback {
        let intent = RollbackIntent {
            namespaces: Vec::new(),
            to_step,
            accept: accept.iter().map(|id| id.to_string()).collect(),
        };
        plan_rollback(&self.state, RollbackSource::Journal(&self.journal), &intent)
    }
}

/// The plan of the suite's command that takes bookinfo to `step` from where it is.
fn plan_up_to(state: &Snapshot, step: u8) -> Plan {
    let enable = |until| EnableIntent { namespaces: vec![NS.into()], until, ..EnableIntent::default() };
    let waypoint = |until| WaypointIntent { namespaces: vec![NS.into()], until, ..WaypointIntent::default() };
    match step {
        2 => plan_enable(state, &EnableIntent::default()),
        3 => plan_enable(state, &enable(Until::SidecarHbone)),
        5 => plan_waypoint(state, &waypoint(WaypointUntil::PoliciesMigrated)),
        6 => plan_enable(state, &enable(Until::AmbientEnrolled)),
        7 => plan_waypoint(state, &waypoint(WaypointUntil::Active)),
        _ => plan_enable(state, &enable(Until::Ambient)),
    }
    .unwrap()
}

/// What the acceptance compares: every object's labels, annotations and fields (status aside),
/// and for pods whether they have a sidecar and whether it speaks HBONE.
fn content(snapshot: &Snapshot) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    for (kind, _) in snapshot.kinds() {
        for object in snapshot.all(kind) {
            let key = format!("{} {}", kind.name(), crate::snapshot::display_name(object));
            let value = if kind == Kind::Pod {
                let pod = Pod::of(object);
                json!({"sidecar": pod.sidecar, "hbone": pod.hbone})
            } else {
                let mut data = object.data.clone();
                data.as_object_mut().map(|map| map.remove("status"));
                // The API server stores no empty map of labels or annotations.
                let labels = object.metadata.labels.clone().filter(|labels| !labels.is_empty());
                let annotations = object.metadata.annotations.clone().filter(|annotations| !annotations.is_empty());
                json!({"labels": labels, "annotations": annotations, "data": data})
            };
            found.insert(key, value);
        }
    }
    found
}

/// The objects whose content differs, with both versions.
fn differences(found: &BTreeMap<String, Value>, wanted: &BTreeMap<String, Value>) -> Vec<String> {
    found
        .keys()
        .chain(wanted.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|key| found.get(*key) != wanted.get(*key))
        .map(|key| format!("{key}:\n  found  {:?}\n  wanted {:?}", found.get(key), wanted.get(key)))
        .collect()
}

fn phase(snapshot: &Snapshot) -> Phase {
    namespace_report(snapshot, &MeshContext::new(snapshot), NS).phase
}

fn after(snapshot: &Snapshot, plan: &Plan) -> Snapshot {
    let simulation = simulate(snapshot, &plan.changes());
    assert_eq!(simulation.refused, Vec::new());
    simulation.snapshot
}

#[test]
fn rolling_back_everything_restores_the_sidecar_era_after_any_step() {
    for last in [2, 3, 5, 6, 7, 9] {
        let mut cluster = Cluster::new();
        let original = content(&cluster.state);
        cluster.migrate(last);
        assert_ne!(content(&cluster.state), original, "step {last} changed something");
        let rollback = cluster.rollback(None, &[]);
        assert_eq!(rollback.plan.stops, Vec::new(), "step {last}");
        let back = content(&after(&cluster.state, &rollback.plan));
        assert_eq!(differences(&back, &original), Vec::<String>::new(), "after step {last}");
        assert_eq!(content(&rollback.reference), original, "the reference is the state before the migration");
    }
}

#[test]
fn undo_order_brings_sidecars_and_policies_back_before_the_waypoint_goes() {
    let mut cluster = Cluster::new();
    cluster.migrate(9);
    let rollback = cluster.rollback(None, &[]);
    let ids: Vec<&str> = rollback.plan.actions.iter().map(|action| action.id.as_str()).collect();
    let position =
        |prefix: &str| ids.iter().position(|id| id.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {ids:#?}"));
    let last = |prefix: &str| ids.iter().rposition(|id| id.starts_with(prefix)).unwrap();
    // The sidecar-era policies and the injection label come back before any pod regains its sidecar.
    assert!(last("undo:step9:delete:") < position("undo:step9:restart:"), "{ids:#?}");
    assert!(last("undo:step9:label:") < position("undo:step9:restart:"), "{ids:#?}");
    // Sidecars are back before the waypoint policies, the bypass protection and the waypoint go.
    assert!(last("undo:step9:restart:") < position("undo:step5:"), "{ids:#?}");
    assert!(last("undo:step5:") < position("undo:step4:"), "{ids:#?}");
    // HBONE restarts come after the control plane left the ambient profile.
    assert!(last("undo:step2:") < position("undo:step3:restart:"), "{ids:#?}");
    // The gates pass against the state before the migration.
    let mut plan = rollback.plan.clone();
    gate_against(&rollback.reference, &cluster.state, &mut plan).unwrap();
}

#[test]
fn a_rollback_journalled_done_leaves_nothing_to_undo() {
    let mut cluster = Cluster::new();
    cluster.migrate(6);
    let first = cluster.rollback(None, &[]);
    cluster.run(&first.plan);
    let second = cluster.rollback(None, &[]);
    assert_eq!(second.plan.actions, Vec::new());
    // A migration after the rollback is undone by the next one, and only it.
    cluster.migrate(3);
    let third = cluster.rollback(None, &[]);
    assert!(third.plan.actions.iter().all(|action| action.step <= 3), "{:#?}", third.plan.actions);
    assert!(!third.plan.actions.is_empty());
}

#[test]
fn to_step_leaves_each_namespace_in_the_phase_of_that_step() {
    let mut at_step_5 = Cluster::new();
    at_step_5.migrate(5);
    let expected = phase(&at_step_5.state);
    assert_eq!(expected, Phase::PoliciesMigrated);
    let mut cluster = Cluster::new();
    cluster.migrate(9);
    let rollback = cluster.rollback(Some(5), &[]);
    assert!(rollback.plan.actions.iter().all(|action| action.step > 5));
    assert_eq!(phase(&after(&cluster.state, &rollback.plan)), expected);
}

#[test]
fn to_step_2_says_the_sidecars_keep_hbone() {
    let mut cluster = Cluster::new();
    cluster.migrate(3);
    let rollback = cluster.rollback(Some(2), &[]);
    assert_eq!(rollback.plan.actions, Vec::new());
    assert!(rollback.plan.stops.iter().any(|stop| stop.reason.contains("keep HBONE")), "{:#?}", rollback.plan.stops);
}

#[test]
fn a_users_edit_after_the_migration_is_left_alone_unless_accepted() {
    let mut cluster = Cluster::new();
    cluster.migrate(5);
    let route = cluster
        .state
        .all(Kind::HttpRoute)
        .iter()
        .find(|route| labels(route).contains_key(MANAGED_BY))
        .map(|route| ResourceRef::of(route).unwrap())
        .expect("Step 5 created an HTTPRoute");
    let mut edited = cluster.state.get(route.kind, route.namespace.as_deref(), &route.name).unwrap().clone();
    edited.data["spec"]["rules"] = json!([{"backendRefs": [{"name": "edited", "port": 9080}]}]);
    cluster.state = simulate(&cluster.state, &[Change::Apply { object: edited }]).snapshot;

    let rollback = cluster.rollback(None, &[]);
    let id = format!("edit:{}", reference_id(&route));
    assert!(
        rollback.plan.stops.iter().any(|stop| stop.next.as_deref().is_some_and(|next| next.contains(&id))),
        "{route}: {:#?}\n{:#?}",
        rollback.plan.stops,
        cluster.state.get(route.kind, route.namespace.as_deref(), &route.name)
    );
    let targets: Vec<ResourceRef> = rollback.plan.actions.iter().filter_map(|a| a.change.target().ok()).collect();
    assert!(!targets.contains(&route), "the edited route is not deleted");

    let accepted = cluster.rollback(None, &[&id]);
    assert!(
        accepted.plan.actions.iter().any(|a| matches!(&a.change, Change::Delete { target, .. } if *target == route))
    );
}

#[test]
fn restoring_patched_fields_removes_what_was_absent_and_keeps_the_rest() {
    let prior = object(json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
        "spec": {"version": "v1.27.0", "values": {"global": {"x": 1}}}}));
    let applied = object(json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
        "spec": {"profile": "ambient", "values": {"pilot": {"trustedZtunnelNamespace": "ztunnel"}}}}));
    let mut live = prior.clone();
    crate::change::merge(&mut live.data, applied.data.clone());
    live.data["spec"]["version"] = json!("v1.27.3");
    let restored = restore_fields(&live, &applied, &prior);
    assert_eq!(restored.data["spec"], json!({"version": "v1.27.3", "values": {"global": {"x": 1}}}));
}

#[test]
fn from_a_backup_only_what_the_suite_made_is_deleted() {
    let original = bookinfo(false);
    let backup: Vec<DynamicObject> =
        original.kinds().flat_map(|(kind, _)| original.all(kind).iter().cloned()).collect();
    // A migration by hand: the translator's output applied, the namespace enrolled, and an
    // object the user made meanwhile.
    let mut cluster = Cluster::new();
    cluster.migrate(6);
    let own = object(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "users-own", "namespace": NS}, "spec": {"action": "ALLOW", "rules": [{}]}}));
    let state = simulate(&cluster.state, &[Change::Apply { object: own }]).snapshot;
    let intent = RollbackIntent { namespaces: vec![NS.into()], ..RollbackIntent::default() };
    let rollback = plan_rollback(&state, RollbackSource::Backup(&backup), &intent);
    let back = after(&state, &rollback.plan);
    assert!(back.get(Kind::AuthorizationPolicy, Some(NS), "users-own").is_some(), "the user's object survives");
    let generated = |snapshot: &Snapshot| {
        snapshot
            .kinds()
            .flat_map(|(kind, _)| snapshot.all(kind).iter())
            .filter(|object| labels(object).get(MANAGED_BY).is_some())
            .filter(|object| object.metadata.namespace.as_deref() == Some(NS))
            .count()
    };
    assert!(generated(&state) > 3);
    assert_eq!(generated(&back), 0, "{:#?}", rollback.plan.actions);
    let namespace = |snapshot: &Snapshot| labels(snapshot.get(Kind::Namespace, None, NS).unwrap()).clone();
    assert_eq!(namespace(&back), namespace(&original));
    // Every pod has its sidecar again.
    assert!(back.in_namespace(Kind::Pod, NS).map(Pod::of).all(|pod| pod.sidecar));
    // Planning again from there finds nothing to do.
    let again = plan_rollback(&back, RollbackSource::Backup(&backup), &intent);
    assert_eq!(again.plan.actions, Vec::new(), "{:#?}", again.plan.actions);
}

/// Acceptance 3 on the largest rollback: at every intermediate state, each request the verifier
/// finds answered differently from the state before the migration is in a window the gated plan
/// names, open at that action.
#[test]
fn every_difference_on_the_way_back_is_announced() {
    let mut cluster = Cluster::new();
    cluster.migrate(9);
    let rollback = cluster.rollback(Some(5), &[]);
    let mut plan = rollback.plan.clone();
    gate_against(&rollback.reference, &cluster.state, &mut plan).unwrap();
    assert!(!plan.windows.is_empty(), "undoing Step 9 passes through differences");
    let index_of = |id: &str| plan.actions.iter().position(|action| action.id == id);
    let namespaces = BTreeSet::from([NS.to_string()]);
    let mut state = cluster.state.clone();
    for (index, action) in plan.actions.iter().enumerate() {
        state = simulate(&state, std::slice::from_ref(&action.change)).snapshot;
        let verification = crate::equivalence::verify(&rollback.reference, &state, Some(&namespaces));
        for request in verification.unexpected().flat_map(|difference| difference.requests()) {
            let request = request.to_string();
            let announced = plan.windows.iter().any(|window| {
                let opens = index_of(&window.opens_after).unwrap();
                let closes = index_of(&window.closes_after).unwrap_or(usize::MAX);
                opens <= index && index < closes && window.requests.contains(&request)
            });
            assert!(announced, "after {}: {request} is not announced", action.id);
        }
    }
}
