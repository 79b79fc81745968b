//! Gates: replay a plan action by action and judge every state it passes through.
//!
//! A plan is judged by its intermediate states, not only its end: the guide's sequencing rules
//! (`sequence-*`, decided by [`crate::check::phase::sequencing`]) are about what may not be true
//! at any moment, and a rolling migration changes outcomes on the way even when the end state is
//! equivalent. After each action the gate simulates the state ([`crate::change::simulate`]; a
//! restart re-admits the pods) and
//!
//! - refuses the plan when a sequencing rule newly fails in a namespace the plan touches (a rule
//!   already broken before the plan is the check's to report, not this plan's to refuse);
//! - runs the verifier against the original snapshot on the touched namespaces: every request
//!   whose outcome differs unexpectedly opens a [`Window`] at that action, closed after the first
//!   later action where the difference is gone (`end` when it outlasts the plan). Requests that
//!   open and close together in one namespace share a window, so the user accepts few, named ids.
//!
//! A migration runs as several plans (the suite's commands take turns), so outcomes are compared
//! with the sidecar-era baseline, not with the state a plan starts from ([`gate_against`]): a
//! difference an earlier plan opened and announced is not this plan's window, and this plan
//! closing it is not a change either. Without a baseline the start state stands for it.
//!
//! One verification per action keeps the cost linear in the plan's length; the scope is the
//! touched namespaces only, as the verifier's cost grows with sources times destinations.
//!
//! A plan run with `--concurrency` reaches more states: within a round ([`super::schedule`]) its
//! actions finish in any order. [`gate_scheduled`] judges every one of them (2^n - 1 for a round
//! of n), which is what makes running namespaces side by side as safe as one action at a time,
//! at the price of more verifications.

use std::collections::{BTreeMap, BTreeSet};

use super::{Plan, PlanError, Window};
use crate::change::{Change, apply_in_place};
use crate::check::Severity;
use crate::check::phase::{MeshContext, sequencing};
use crate::equivalence::verify;
use crate::snapshot::Snapshot;

/// Checks `plan` on `original`, the state it starts from, taken as the baseline too (see the
/// module docs): an error names the broken rule; the windows found replace `plan.windows`.
pub fn gate(original: &Snapshot, plan: &mut Plan) -> Result<(), PlanError> {
    gate_against(original, original, plan)
}

/// Checks `plan`, which starts from `start`, with outcomes compared to `baseline` (the migration's
/// sidecar era; for a rollback, the state before the migration): differences already there at
/// `start` are the earlier plans' and open no window while they last.
pub fn gate_against(baseline: &Snapshot, start: &Snapshot, plan: &mut Plan) -> Result<(), PlanError> {
    let one_at_a_time = super::schedule::rounds(plan, 1);
    gate_scheduled(baseline, start, plan, &one_at_a_time)
}

/// [`gate_against`] for a plan run in `rounds` (from [`super::schedule::rounds`]): within a round
/// the actions finish in any order, so every state where some of them are done is judged (2^n - 1
/// states for a round of n); a difference seen in any of them opens a window at the round's last
/// action. Rounds of one action are the plan's order, judged as [`gate_against`] does.
pub fn gate_scheduled(
    baseline: &Snapshot,
    start: &Snapshot,
    plan: &mut Plan,
    rounds: &[Vec<usize>],
) -> Result<(), PlanError> {
    let namespaces = touched_namespaces(&plan.changes());
    let broken_before = broken_rules(start, &namespaces);
    let differing = |state: &Snapshot| -> BTreeMap<String, String> {
        if namespaces.is_empty() {
            return BTreeMap::new();
        }
        let verification = verify(baseline, state, Some(&namespaces));
        verification
            .unexpected()
            .flat_map(|difference| difference.requests())
            .map(|request| (request.to_string(), request.destination.namespace.clone()))
            .collect()
    };
    let refuse_new_failure = |state: &Snapshot, after: &str| -> Result<(), PlanError> {
        let context = MeshContext::new(state);
        for namespace in &namespaces {
            let findings = sequencing(state, &context, namespace);
            let new_failure = findings.into_iter().find(|finding| {
                finding.severity == Severity::Fail && !broken_before.contains(&(finding.id, namespace.clone()))
            });
            if let Some(finding) = new_failure {
                return Err(PlanError::Refused {
                    rule: finding.id.to_string(),
                    after: after.to_string(),
                    reason: finding.message,
                    requests: Vec::new(),
                });
            }
        }
        Ok(())
    };
    let mut earlier: BTreeMap<String, String> =
        if std::ptr::eq(baseline, start) { BTreeMap::new() } else { differing(start) };
    let mut state = start.clone();
    // Request (as printed) -> (namespace, index of the action that opened its difference).
    let mut open: BTreeMap<String, (String, usize)> = BTreeMap::new();
    // (opened at, closed at, namespace) -> requests.
    let mut closed: BTreeMap<(usize, Option<usize>, String), Vec<String>> = BTreeMap::new();
    for round in rounds {
        let Some(&index) = round.last() else { continue };
        // Differences seen only while part of the round is done (none for a round of one action).
        let mut passing = BTreeMap::new();
        for subset in 1..(1usize << round.len()).saturating_sub(1) {
            let done: Vec<&super::Action> = round
                .iter()
                .enumerate()
                .filter(|(bit, _)| subset & (1 << bit) != 0)
                .map(|(_, &action)| &plan.actions[action])
                .collect();
            let mut partial = state.clone();
            for action in &done {
                let _refused = apply_in_place(&mut partial, &action.change);
            }
            let ids: Vec<&str> = done.iter().map(|action| action.id.as_str()).collect();
            refuse_new_failure(&partial, &ids.join(" and "))?;
            passing.extend(differing(&partial));
        }
        for &action in round {
            // A refused change leaves the state as it was, as `simulate` does.
            let _refused = apply_in_place(&mut state, &plan.actions[action].change);
        }
        let ids: Vec<&str> = round.iter().map(|&action| plan.actions[action].id.as_str()).collect();
        refuse_new_failure(&state, &ids.join(" and "))?;
        let mut now = differing(&state);
        earlier.retain(|request, _| now.contains_key(request));
        now.retain(|request, _| !earlier.contains_key(request));
        // A difference while the round runs that its end undoes opens and closes with the round
        // (one already open closes at the round's end below).
        for (request, namespace) in passing {
            if !now.contains_key(&request) && !open.contains_key(&request) && !earlier.contains_key(&request) {
                closed.entry((index, Some(index), namespace)).or_default().push(request);
            }
        }
        open.retain(|request, (namespace, opened)| {
            let still = now.contains_key(request);
            if !still {
                closed.entry((*opened, Some(index), namespace.clone())).or_default().push(request.clone());
            }
            still
        });
        for (request, namespace) in now {
            open.entry(request).or_insert((namespace, index));
        }
    }
    for (request, (namespace, opened)) in open {
        closed.entry((opened, None, namespace)).or_default().push(request);
    }
    plan.windows = windows(plan, closed);
    plan.rounds = if rounds.iter().any(|round| round.len() > 1) {
        rounds.iter().map(|round| round.iter().map(|&i| plan.actions[i].id.clone()).collect()).collect()
    } else {
        Vec::new()
    };
    Ok(())
}

/// Namespaces whose objects the changes touch (a Namespace counts as its own).
fn touched_namespaces(changes: &[Change]) -> BTreeSet<String> {
    changes
        .iter()
        .filter_map(|change| change.target().ok())
        .filter_map(|target| target.owning_namespace().map(str::to_string))
        .collect()
}

fn broken_rules(snapshot: &Snapshot, namespaces: &BTreeSet<String>) -> BTreeSet<(&'static str, String)> {
    let context = MeshContext::new(snapshot);
    namespaces
        .iter()
        .flat_map(|namespace| {
            sequencing(snapshot, &context, namespace).into_iter().map(|finding| (finding.id, namespace.clone()))
        })
        .collect()
}

/// Windows with stable ids: `window:<step>:<namespace>:<n>`, numbered per step and namespace
/// in the order they open.
fn windows(plan: &Plan, closed: BTreeMap<(usize, Option<usize>, String), Vec<String>>) -> Vec<Window> {
    let mut numbers: BTreeMap<(u8, String), usize> = BTreeMap::new();
    closed
        .into_iter()
        .map(|((opened, closes, namespace), mut requests)| {
            requests.sort();
            let opener = &plan.actions[opened];
            let number = numbers.entry((opener.step, namespace.clone())).or_default();
            *number += 1;
            let closes_after = closes.map_or_else(|| "end".to_string(), |index| plan.actions[index].id.clone());
            let until = match closes {
                Some(index) => format!("until {}", plan.actions[index].id),
                None => "past the end of the plan".to_string(),
            };
            Window {
                id: format!("window:{}:{namespace}:{number}", opener.step),
                opens_after: opener.id.clone(),
                closes_after,
                description: format!(
                    "{} request(s) to {namespace} change outcome from {} {until}",
                    requests.len(),
                    opener.id
                ),
                requests,
            }
        })
        .collect()
}
