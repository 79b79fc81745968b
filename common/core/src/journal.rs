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
                found.retain(|action| action.action != undone);
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

#[cfg(test)]
mod tests {
    use super::*;
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
