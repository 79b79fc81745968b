//! The journal's entries, as values: what the change engine recorded about each action it ran.
//!
//! The engine (in `oc-ambient-common`) writes and reads the journal; the rollback planner reads
//! its entries to undo exactly what was done, so the entry type lives in the pure core and the
//! I/O stays at the edge.
//!
//! An action id starts with the step it belongs to (`step3:restart:Deployment/bookinfo/x`); a
//! rollback journals its own actions as `undo:<id of the undone action>`, so a rerun sees what a
//! rollback already undid and a second rollback has nothing left to do.

use kube_core::DynamicObject;
use serde::{Deserialize, Serialize};

use crate::change::Change;

/// The namespace the suite keeps its journal and backups in (never rolled back).
pub const STATE_NAMESPACE: &str = "oc-ambient";
/// Prefix of the id of an action that undoes a journalled one.
pub const UNDO_PREFIX: &str = "undo:";
/// Joins the ids of several actions one undo reverses (see [`merge_per_object`]).
pub const UNDO_JOIN: char = '+';

/// What happened to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryState {
    /// About to be applied: the prior state is recorded; the write may or may not have happened.
    Started,
    /// Applied, and its wait condition held.
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The plan action's id.
    pub action: String,
    pub state: EntryState,
    /// RFC 3339.
    pub at: String,
    pub change: Change,
    /// The object the change touches as it was before (None when it did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<DynamicObject>,
    /// Differences the user accepted for this run (`--accept`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<String>,
}

/// The guide's step of an action id (`step3:...` is 3); None for an undo or a foreign id.
pub fn step_of(action: &str) -> Option<u8> {
    action.strip_prefix("step")?.split(':').next()?.parse().ok()
}

/// One migration action the journal says was started and no finished rollback has undone.
#[derive(Debug, Clone, PartialEq)]
pub struct Outstanding {
    pub action: String,
    pub step: u8,
    pub change: Change,
    /// The object before the action first ran (None when it did not exist).
    pub prior: Option<DynamicObject>,
}

/// The migration actions still in force, in the order they first started. An action started
/// twice (a rerun after an interruption, or a later plan writing the same object again) counts
/// once, with the prior state of its first start (the state before the tool touched the object)
/// and the change of its last (what the tool wrote last); one whose undo finished since is gone,
/// so actions of a later migration are undone by the next rollback and nothing twice.
pub fn outstanding(entries: &[Entry]) -> Vec<Outstanding> {
    let mut found: Vec<Outstanding> = Vec::new();
    for entry in entries {
        if let Some(undone) = entry.action.strip_prefix(UNDO_PREFIX) {
            if entry.state == EntryState::Done {
                let undone: Vec<&str> = undone.split(UNDO_JOIN).collect();
                found.retain(|action| !undone.contains(&action.action.as_str()));
            }
            continue;
        }
        let Some(step) = step_of(&entry.action) else { continue };
        if entry.state != EntryState::Started {
            continue;
        }
        match found.iter_mut().find(|action| action.action == entry.action) {
            Some(earlier) => earlier.change = entry.change.clone(),
            None => found.push(Outstanding {
                action: entry.action.clone(),
                step,
                change: entry.change.clone(),
                prior: entry.prior.clone(),
            }),
        }
    }
    found
}

/// `actions` (in start order) with the actions of one step that wrote one object merged into one:
/// the prior state of the first (what was there before the step touched it), the change of the
/// last, and the ids joined with [`UNDO_JOIN`]. One undo then restores the object as it was,
/// rather than replaying each write backwards (Step 9 pins a policy, then deletes it: it is
/// re-created as it was before the pin). Writes of different steps stay apart, so each is undone
/// in its step's turn. Restarts are never merged: each is its own rollout.
pub fn merge_per_object(actions: Vec<Outstanding>) -> Vec<Outstanding> {
    let mut merged: Vec<Outstanding> = Vec::new();
    for action in actions {
        let target = action.change.target().ok().filter(|_| !matches!(action.change, Change::Restart { .. }));
        let earlier = target.as_ref().and_then(|target| {
            merged.iter().position(|other| {
                other.step == action.step
                    && !matches!(other.change, Change::Restart { .. })
                    && other.change.target().ok().as_ref() == Some(target)
            })
        });
        match earlier {
            Some(position) => {
                let first = merged.remove(position);
                merged.push(Outstanding {
                    action: format!("{}{UNDO_JOIN}{}", first.action, action.action),
                    step: first.step,
                    change: action.change,
                    prior: first.prior,
                });
            }
            None => merged.push(action),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_of_one_object_in_one_step_are_undone_as_one_and_journalled_as_both() {
        let policy = |selector: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "viewer", "namespace": "shop"}, "spec": {"selector": {"matchLabels": {"app": selector}}}}))
            .unwrap()
        };
        let target = ResourceRef::of(&policy("a")).unwrap();
        let pin = Outstanding {
            action: "step9:pin:p".into(),
            step: 9,
            change: Change::Apply { object: policy("pinned") },
            prior: Some(policy("a")),
        };
        let delete = Outstanding {
            action: "step9:delete:p".into(),
            step: 9,
            change: Change::Delete { target: target.clone(), uid: None, resource_version: None },
            prior: Some(policy("pinned")),
        };
        let created = Outstanding { action: "step5:apply:p".into(), step: 5, change: pin.change.clone(), prior: None };
        let merged = merge_per_object(vec![created.clone(), pin, delete]);
        assert_eq!(merged.len(), 2, "step 5's write stays apart");
        assert_eq!(merged[1].action, "step9:pin:p+step9:delete:p");
        assert_eq!(merged[1].prior, Some(policy("a")), "the state before the pin");
        assert!(matches!(merged[1].change, Change::Delete { .. }));
        // The undo's id names both, so both are done once it is.
        let entry = |action: &str, state: EntryState| Entry {
            action: action.into(),
            state,
            at: String::new(),
            change: Change::Delete { target: target.clone(), uid: None, resource_version: None },
            prior: None,
            accepted: Vec::new(),
        };
        let journal = [
            entry("step9:pin:p", EntryState::Started),
            entry("step9:delete:p", EntryState::Started),
            entry("undo:step9:pin:p+step9:delete:p", EntryState::Done),
        ];
        assert!(outstanding(&journal).is_empty());
    }
    use crate::change::ResourceRef;
    use crate::kinds::Kind;

    fn entry(action: &str, state: EntryState, prior: Option<&str>) -> Entry {
        let target = ResourceRef::new(Kind::Namespace, None, "bookinfo");
        let prior = prior.map(|name| {
            serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "bookinfo", "labels": {"seen": name}}}))
            .unwrap()
        });
        Entry {
            action: action.into(),
            state,
            at: String::new(),
            change: Change::Restart { target },
            prior,
            accepted: Vec::new(),
        }
    }

    #[test]
    fn an_action_started_twice_counts_once_with_its_first_prior_state() {
        let entries = [
            entry("step6:label:Namespace/bookinfo", EntryState::Started, Some("first")),
            entry("step6:label:Namespace/bookinfo", EntryState::Started, Some("second")),
            entry("step6:label:Namespace/bookinfo", EntryState::Done, None),
        ];
        let found = outstanding(&entries);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].step, 6);
        assert_eq!(
            crate::mesh::labels(found[0].prior.as_ref().unwrap()).get("seen").map(String::as_str),
            Some("first")
        );
    }

    #[test]
    fn only_a_finished_undo_takes_an_action_out() {
        let started = [
            entry("step7:label:Namespace/bookinfo", EntryState::Started, None),
            entry("undo:step7:label:Namespace/bookinfo", EntryState::Started, None),
        ];
        assert_eq!(outstanding(&started).len(), 1, "an interrupted undo is still to do");
        let mut done = started.to_vec();
        done.push(entry("undo:step7:label:Namespace/bookinfo", EntryState::Done, None));
        assert_eq!(outstanding(&done), Vec::new());
        assert_eq!(step_of("step9:restart:Deployment/a/b"), Some(9));
        assert_eq!(step_of("undo:step9:x"), None);
    }
}
