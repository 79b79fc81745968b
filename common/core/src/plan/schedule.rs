//! Which actions of a plan run at once (`--concurrency N`): rounds of actions in different
//! namespaces, at most one per namespace, so at most one rollout per namespace is in flight.
//!
//! The planners emit a plan in an order that is safe one action at a time, and the gate has
//! verified the states of that order. Running namespaces side by side reaches other states: any
//! subset of a round's actions may be done while the rest are not. So a schedule is only as safe
//! as the gate that judged it: [`super::gate::gate_scheduled`] verifies every subset state of
//! every round, and the engine runs a round's actions, waits for all of them, and only then starts
//! the next round (a barrier), so no other state is reached.
//!
//! An action's lane ([`super::Action::lane`]) is the namespace the planner was migrating when it
//! planned the action (a bypass protection of another namespace, narrowed after a rollout of this
//! one, is in this one's lane: it must follow that rollout). An action without a lane (the
//! cluster-wide Step 2, a cluster-scoped object, every rollback action) is a barrier that runs
//! alone. Actions move only within a run of the plan in which each lane's actions are contiguous;
//! where a plan returns to a lane, the run is cut and the plan's order kept across the cut. Within
//! a run, an object two lanes write is written in the plan's order (the planner computed each write
//! from the state that order leads to): the later writer's lane waits, a round at a time, until the
//! earlier write's round is done.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Range;

use super::Plan;
use crate::change::ResourceRef;

/// The plan's actions, by index, in rounds of at most `concurrency` actions of distinct lanes.
/// With a concurrency of 1 (or 0) every action is a round of its own: the plan's order.
pub fn rounds(plan: &Plan, concurrency: usize) -> Vec<Vec<usize>> {
    let lanes: Vec<Option<String>> = plan.actions.iter().map(|action| action.lane.clone()).collect();
    if concurrency <= 1 {
        return (0..lanes.len()).map(|index| vec![index]).collect();
    }
    let targets: Vec<Option<ResourceRef>> = plan.actions.iter().map(|action| action.change.target().ok()).collect();
    let mut rounds = Vec::new();
    for run in contiguous_runs(&lanes) {
        rounds.extend(interleave(&lanes, &targets, run, concurrency));
    }
    rounds
}

/// Splits the actions into runs (index ranges) in which every lane's actions are contiguous; a
/// barrier (no lane) is a run of its own.
fn contiguous_runs(lanes: &[Option<String>]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut left: BTreeSet<&str> = BTreeSet::new();
    for (index, lane) in lanes.iter().enumerate() {
        let previous = index.checked_sub(1).and_then(|previous| lanes[previous].as_deref());
        let cut = match lane.as_deref() {
            None => true,
            Some(lane) => previous != Some(lane) && left.contains(lane),
        };
        if cut && index > start {
            runs.push(start..index);
            start = index;
            left.clear();
        }
        if let Some(previous) = previous.filter(|previous| index > start && Some(*previous) != lane.as_deref()) {
            left.insert(previous);
        }
        if lane.is_none() {
            runs.push(index..index + 1);
            start = index + 1;
            left.clear();
        }
    }
    if start < lanes.len() {
        runs.push(start..lanes.len());
    }
    runs
}

/// Rounds for one run: up to `concurrency` lanes active at once, each giving its next action to
/// every round unless that action writes an object an earlier action of another lane writes and
/// that one's round is not done yet; a lane that is done makes room for the next one in plan order.
/// The earliest active lane always moves (what it waits for is in lanes before it, all done), so
/// every round holds an action.
fn interleave(
    lanes: &[Option<String>],
    targets: &[Option<ResourceRef>],
    run: Range<usize>,
    concurrency: usize,
) -> Vec<Vec<usize>> {
    // For each action, the earlier actions of other lanes that write its object.
    let mut writers: HashMap<&ResourceRef, Vec<usize>> = HashMap::new();
    let mut after: HashMap<usize, Vec<usize>> = HashMap::new();
    for index in run.clone() {
        let Some(target) = targets[index].as_ref() else { continue };
        let earlier = writers.entry(target).or_default();
        after.insert(index, earlier.iter().copied().filter(|&other| lanes[other] != lanes[index]).collect());
        earlier.push(index);
    }
    let mut queues: Vec<VecDeque<usize>> = Vec::new();
    for index in run {
        match queues.last_mut() {
            Some(queue) if queue.back().is_some_and(|last| lanes[*last] == lanes[index]) => queue.push_back(index),
            _ => queues.push(VecDeque::from([index])),
        }
    }
    let mut waiting: VecDeque<VecDeque<usize>> = queues.into();
    let mut active: Vec<VecDeque<usize>> = Vec::new();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    let mut rounds = Vec::new();
    loop {
        while active.len() < concurrency {
            match waiting.pop_front() {
                Some(queue) => active.push(queue),
                None => break,
            }
        }
        if active.is_empty() {
            return rounds;
        }
        let ready = |index: &usize| after.get(index).is_none_or(|earlier| earlier.iter().all(|e| done.contains(e)));
        let mut round: Vec<usize> = Vec::new();
        for queue in &mut active {
            if queue.front().is_some_and(ready) {
                round.extend(queue.pop_front());
            }
        }
        if round.is_empty() {
            // Cannot happen (see above); taking the earliest lane's action keeps a bug from
            // hanging the engine, at the cost of the order it would have kept.
            round.extend(active.first_mut().and_then(VecDeque::pop_front));
        }
        round.sort_unstable();
        done.extend(round.iter().copied());
        rounds.push(round);
        active.retain(|queue| !queue.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Change;
    use crate::kinds::Kind;
    use crate::plan::Action;

    fn plan_of(targets: &[(Kind, Option<&str>, &str)]) -> Plan {
        let mut plan = Plan::new("test");
        for (position, (kind, namespace, name)) in targets.iter().enumerate() {
            plan.actions.push(Action {
                id: format!("a{position}"),
                step: 3,
                description: String::new(),
                change: Change::Restart { target: ResourceRef::new(*kind, *namespace, name) },
                wait: None,
                lane: namespace.map(str::to_string).or_else(|| (*kind == Kind::Namespace).then(|| name.to_string())),
            });
        }
        plan
    }

    proptest::proptest! {
        /// On random plans: every action runs once; a round holds at most `concurrency` actions,
        /// one per lane; a lane's actions, and two lanes' writes to one object, keep the plan's
        /// order; a lane-less action runs alone.
        #[test]
        fn rounds_keep_every_order_the_plan_relies_on(
            actions in proptest::collection::vec((0usize..4, 0usize..3, proptest::bool::weighted(0.1)), 0..40),
            concurrency in 1usize..5,
        ) {
            let namespaces = ["a", "b", "c", "d"];
            let names = ["x", "y", "z"];
            let mut plan = plan_of(&[]);
            for (position, (lane, object, barrier)) in actions.iter().enumerate() {
                let target = if *barrier {
                    ResourceRef::new(Kind::Istio, None, "default")
                } else {
                    ResourceRef::new(Kind::Deployment, Some(namespaces[*object % 4]), names[*object])
                };
                plan.actions.push(Action {
                    id: format!("a{position}"),
                    step: 9,
                    description: String::new(),
                    change: Change::Restart { target },
                    wait: None,
                    lane: (!barrier).then(|| namespaces[*lane].to_string()),
                });
            }
            let rounds = rounds(&plan, concurrency);
            let mut every: Vec<usize> = rounds.concat();
            every.sort_unstable();
            proptest::prop_assert_eq!(every, (0..plan.actions.len()).collect::<Vec<_>>());
            let round_of: HashMap<usize, usize> =
                rounds.iter().enumerate().flat_map(|(r, round)| round.iter().map(move |&i| (i, r))).collect();
            for round in &rounds {
                proptest::prop_assert!(!round.is_empty() && round.len() <= concurrency.max(1));
                let lanes: BTreeSet<_> = round.iter().map(|&i| plan.actions[i].lane.clone()).collect();
                proptest::prop_assert_eq!(lanes.len(), round.len());
                proptest::prop_assert!(round.len() == 1 || lanes.iter().all(Option::is_some));
            }
            for (i, first) in plan.actions.iter().enumerate() {
                for (j, second) in plan.actions.iter().enumerate().skip(i + 1) {
                    let same_lane = first.lane.is_some() && first.lane == second.lane;
                    let same_object = first.change.target().ok() == second.change.target().ok();
                    let barrier = first.lane.is_none() || second.lane.is_none();
                    if same_lane || same_object || barrier {
                        proptest::prop_assert!(round_of[&i] < round_of[&j], "a{} and a{} out of order: {:?}", i, j, rounds);
                    }
                }
            }
        }
    }

    #[test]
    fn one_at_a_time_keeps_the_plan_order() {
        let plan = plan_of(&[(Kind::Deployment, Some("a"), "x"), (Kind::Deployment, Some("b"), "y")]);
        assert_eq!(rounds(&plan, 1), vec![vec![0], vec![1]]);
    }

    #[test]
    fn namespaces_run_side_by_side_one_action_each_per_round() {
        let plan = plan_of(&[
            (Kind::Deployment, Some("a"), "x1"),
            (Kind::Deployment, Some("a"), "x2"),
            (Kind::Deployment, Some("b"), "y1"),
            (Kind::Namespace, None, "c"),
            (Kind::Deployment, Some("c"), "z1"),
            (Kind::Deployment, Some("d"), "w1"),
        ]);
        // a, b and c start together; d takes b's place once b is done.
        assert_eq!(rounds(&plan, 3), vec![vec![0, 2, 3], vec![1, 4, 5]]);
        assert_eq!(rounds(&plan, 2), vec![vec![0, 2], vec![1, 3], vec![4, 5]]);
    }

    #[test]
    fn an_action_without_a_lane_is_a_barrier() {
        let plan = plan_of(&[
            (Kind::Deployment, Some("a"), "x"),
            (Kind::Istio, None, "default"),
            (Kind::Deployment, Some("b"), "y"),
            (Kind::Deployment, Some("c"), "z"),
        ]);
        assert_eq!(rounds(&plan, 4), vec![vec![0], vec![1], vec![2, 3]]);
    }

    #[test]
    fn a_lane_the_plan_returns_to_cuts_the_run_there() {
        let plan = plan_of(&[
            (Kind::Deployment, Some("a"), "x1"),
            (Kind::Deployment, Some("b"), "y1"),
            (Kind::Deployment, Some("a"), "x2"),
            (Kind::Deployment, Some("c"), "z"),
            (Kind::Deployment, Some("b"), "y2"),
        ]);
        // a comes back after b: b's first action and a's first may swap, a's second waits for
        // both; from there on each lane is contiguous again.
        assert_eq!(rounds(&plan, 4), vec![vec![0, 1], vec![2, 3, 4]]);
    }

    #[test]
    fn an_object_two_lanes_write_is_written_in_the_plans_order() {
        let mut plan = plan_of(&[
            (Kind::Deployment, Some("a"), "x1"),
            (Kind::AuthorizationPolicy, Some("c"), "protect"),
            (Kind::Deployment, Some("b"), "y1"),
            (Kind::AuthorizationPolicy, Some("c"), "protect"),
            (Kind::Deployment, Some("d"), "w1"),
        ]);
        // a's lane narrows c's protection after x1, and so does b's after y1: b's write waits a
        // round for a's, while d goes on.
        plan.actions[1].lane = Some("a".into());
        plan.actions[3].lane = Some("b".into());
        assert_eq!(rounds(&plan, 4), vec![vec![0, 2, 4], vec![1], vec![3]]);
    }

    #[test]
    fn the_planners_put_what_they_plan_for_a_namespace_in_its_lane_but_cluster_objects() {
        let mut planner = crate::plan::enable::Planner {
            plan: Plan::new("test"),
            state: crate::snapshot::Snapshot::new(crate::snapshot::Source::Memory),
            lane: Some("a".into()),
        };
        for (kind, namespace, name) in [
            (Kind::Deployment, Some("a"), "x"),
            (Kind::AuthorizationPolicy, Some("b"), "protect"),
            (Kind::Istio, None, "default"),
        ] {
            let target = ResourceRef::new(kind, namespace, name);
            planner.push(9, "restart", String::new(), Change::Restart { target }, None);
        }
        let labels = [("istio.io/dataplane-mode".to_string(), Some("ambient".to_string()))].into();
        let target = ResourceRef::new(Kind::Namespace, None, "a");
        planner.push(6, "label", String::new(), Change::SetLabels { target, labels }, None);
        let lanes: Vec<Option<&str>> = planner.plan.actions.iter().map(|action| action.lane.as_deref()).collect();
        assert_eq!(lanes, vec![Some("a"), Some("a"), None, Some("a")]);
        assert_eq!(rounds(&planner.plan, 2), vec![vec![0], vec![1], vec![2], vec![3]]);
    }
}
