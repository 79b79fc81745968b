//! Plans: what a mutating command will do, as values, computed with no I/O.
//!
//! A planner reads a [`Snapshot`](crate::snapshot::Snapshot) and the user's intent and returns a
//! [`Plan`]: ordered [`Action`]s, each a [`Change`] of the shared vocabulary with the condition to
//! wait for once it is applied ([`Wait`]). The change engine (in `oc-ambient-common`) shows the
//! plan, asks for consent, journals and applies each action, then waits for its condition by
//! watching the cluster; [`Wait::missing`] is the pure half of that wait, evaluated on each new
//! snapshot of the objects it names, as kube-runtime splits `Condition<K>` from its waiter.
//!
//! Gates live here too: a plan whose intermediate states break one of the guide's sequencing
//! rules, or change an outcome the verifier can see, is refused, or carries the [`Window`] it
//! cannot avoid so the user can accept it by name.

use serde::Serialize;

use crate::change::{Change, ResourceRef};

mod conditions;
pub mod enable;
pub mod gate;
pub mod rollback;
pub mod schedule;
pub mod waypoint;

pub use enable::{EnableIntent, Until, plan_enable};
pub use gate::{gate, gate_against};

/// A plan document (`-o json|yaml` prints it as is; its shape is stable).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// `AmbientPlan`.
    pub kind: &'static str,
    /// The command that made the plan (`enable`, `waypoint`, `rollback`).
    pub command: String,
    pub actions: Vec<Action>,
    /// Differences the plan cannot avoid, each to be accepted by its id before the plan runs.
    pub windows: Vec<Window>,
    /// Where the plan stops short of what was asked, and what to run next.
    pub stops: Vec<Stop>,
    /// The actions (by id) that run at once, round by round, when some do (`--concurrency`);
    /// absent: one at a time, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Vec<String>>,
}

impl Plan {
    pub fn new(command: &str) -> Self {
        Plan {
            kind: "AmbientPlan",
            command: command.into(),
            actions: Vec::new(),
            windows: Vec::new(),
            stops: Vec::new(),
            rounds: Vec::new(),
        }
    }

    /// Nothing to do (the cluster is already where the intent asks).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// `--step N` asks for that step: when the plan holds none of its actions because a gate
    /// stopped it, that is a refusal (exit 1) naming the gate, not a stop on the way.
    pub fn refuse_blocked_step(&self, only_step: Option<u8>) -> Result<(), PlanError> {
        let Some(step) = only_step else { return Ok(()) };
        match self.stops.first() {
            Some(stop) if !self.actions.iter().any(|action| action.step == step) => Err(PlanError::Refused {
                rule: format!("the gate before step {step}"),
                after: "the current state".into(),
                reason: format!("{}; next: {}", stop.reason, stop.next.as_deref().unwrap_or("see the guide")),
                requests: Vec::new(),
            }),
            _ => Ok(()),
        }
    }

    /// The changes in order, for [`crate::change::simulate`] and the verifier.
    pub fn changes(&self) -> Vec<Change> {
        self.actions.iter().map(|action| action.change.clone()).collect()
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// Stable and unique within the plan (`step3:restart:Deployment/bookinfo/reviews-v1`): the
    /// journal records actions by id, so a rerun recognises what is done.
    pub id: String,
    /// The guide's step this action belongs to (2 to 9); for a rollback, the step it undoes (0
    /// when it restores a backup, which records no steps).
    pub step: u8,
    /// One line for people.
    pub description: String,
    pub change: Change,
    /// What must hold before the next action starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    /// The namespace whose migration this action belongs to, when it changes only that
    /// namespace's objects: actions of different lanes may run at once (`--concurrency`, see
    /// [`schedule`]). None: the action runs alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
}

/// A condition on the cluster, awaited after an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "until", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Wait {
    /// A Deployment, StatefulSet or DaemonSet finished rolling out: its pods all run the current
    /// template and are ready.
    RolledOut { target: ResourceRef },
    /// A Sail resource (Istio, IstioCNI, ZTunnel) reports `Ready=True` for its current generation.
    Healthy { target: ResourceRef },
    /// Every application pod of the namespace is redirected to ztunnel by the CNI.
    Redirected { namespace: String },
    /// A Gateway is `Programmed=True` and its pods are ready.
    Programmed { target: ResourceRef },
}

impl Wait {
    /// The objects whose changes can satisfy the condition (what the waiter watches).
    pub fn watched(&self) -> Vec<crate::kinds::Kind> {
        use crate::kinds::Kind;
        match self {
            Wait::RolledOut { target } => vec![target.kind, Kind::Pod],
            Wait::Healthy { target } => vec![target.kind],
            Wait::Redirected { .. } => vec![Kind::Pod],
            Wait::Programmed { target } => vec![target.kind, Kind::Pod],
        }
    }
}

/// Whether one of the `--accept` values names `id`: exactly, or as a prefix ending in `*`
/// (`window:9:bookinfo:*` accepts every window of that step and namespace). A window is a
/// reviewed risk, so a bare `*` is not a pattern: it names nothing.
pub fn accepts(patterns: &[String], id: &str) -> bool {
    patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) if !prefix.is_empty() => id.starts_with(prefix),
        _ => pattern == id,
    })
}

/// A difference in outcomes that no order of the actions avoids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// What `--accept` names.
    pub id: String,
    /// The action after which it opens, and the one after which it closes.
    pub opens_after: String,
    pub closes_after: String,
    pub description: String,
    /// The requests whose outcome changes meanwhile, in the verifier's words.
    pub requests: Vec<String>,
}

/// Where a plan stops short of the intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stop {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub reason: String,
    /// The command that moves past the stop, when the suite has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Why no plan can be made for the intent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("namespace {namespace} not found")]
    NamespaceNotFound { namespace: String },
    #[error("no Istio resource: the control plane must be installed by the Sail operator before migrating")]
    NoIstio,
    #[error("step {step} is not one this command performs (it performs steps 2, 3, 6 and 9)")]
    StepNotApplicable { step: u8 },
    /// The translator could not convert the namespace faithfully and the losses were not
    /// accepted; nothing is planned for it. Each entry ends with the id `--accept` takes.
    #[error(
        "{namespace} cannot be converted faithfully, so its policies and routes are not migrated: {}; to migrate without these, accept each by its id (--accept ID)",
        unsupported.join("; ")
    )]
    Unfaithful { namespace: String, unsupported: Vec<String> },
    /// A gate refused the plan: an intermediate state breaks a sequencing rule of the guide.
    #[error("plan refused by {rule} after {after}: {reason}{}", requests_suffix(requests))]
    Refused { rule: String, after: String, reason: String, requests: Vec<String> },
}

fn requests_suffix(requests: &[String]) -> String {
    if requests.is_empty() { String::new() } else { format!(" (affects: {})", requests.join("; ")) }
}

#[cfg(test)]
mod scoped_tests;
#[cfg(test)]
mod tests;
