//! The change engine: every mutating command runs its plan through here.
//!
//! A planner in the core computes a [`Plan`] from a snapshot with no I/O; this module does the
//! rest, in an order that makes every step safe to interrupt:
//!
//! 1. **Show** the plan (a table, or the stable `AmbientPlan` document with `-o json|yaml`).
//!    `--dry-run=client` stops here and sends no write.
//! 2. **Refuse** a plan with windows (differences no order avoids) that were not accepted by
//!    name (`--accept ID`), and ask for **consent**: a prompt on a terminal; `--yes` skips it;
//!    no terminal and no `--yes` refuses (exit 1). Machine output never prompts.
//! 3. **Check permissions** for every write of the plan (SelfSubjectAccessReview) before the
//!    first write, so a missing right is one line naming the verb and resource, not a half-applied
//!    migration.
//! 4. **Back up** (before the first write of a migration) and **journal** each action before it
//!    happens, locally and in the cluster ([`journal`]).
//! 5. **Apply** each action ([`apply`]), retrying what the server cannot serve now (429, 5xx, a
//!    lost connection) with backoff, and **wait** for its condition by watching ([`wait`]).
//!
//! A rerun after an interruption plans again from the cluster (the planners are idempotent: done
//! work is not planned again) and reads the journal: an action journalled as started is not
//! written again, only awaited, so no workload is restarted twice.
//!
//! A rollback is a plan like any other: its planner (`plan::rollback`) reads the journal's prior
//! states, and its actions (`undo:<id>`) are journalled the same way, so an interrupted rollback
//! resumes and a finished one is not repeated.

pub mod apply;
pub mod journal;
pub mod wait;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, DynamicObject, PostParams};

use self::journal::{Entry, EntryState, Journal};
use crate::change::Change;
use crate::cli::OutputFormat;
use crate::client::Connection;
use crate::error::{ApiError, Error, Request};
use crate::plan::{Action, Plan, Wait, accepts};
use crate::printer::Printer;
use crate::snapshot::Snapshot;

/// `--dry-run`, as kubectl spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DryRun {
    /// Apply for real.
    #[default]
    None,
    /// Print the plan; send no write.
    Client,
    /// Send every write with `dryRun=All`: the API server validates it and stores nothing.
    Server,
}

/// How the engine runs a plan (settings resolved once per command).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub dry_run: DryRun,
    pub yes: bool,
    pub accept: Vec<String>,
    pub timeout: Duration,
    /// `--concurrency`: namespaces whose actions run side by side ([`crate::plan::schedule`]).
    pub concurrency: usize,
    pub output: OutputFormat,
    /// Local journal and backup directory.
    pub state_dir: PathBuf,
}

/// The `--accept` pattern of the first window (`window:9:bookinfo:*`), for the refusal's hint.
fn accept_pattern(ids: &[String]) -> String {
    let first = ids.first().map(String::as_str).unwrap_or("window:STEP:NAMESPACE:N");
    first.rsplit_once(':').map_or_else(|| first.to_string(), |(prefix, _)| format!("{prefix}:*"))
}

/// Why the engine stopped before the plan was done.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "the plan changes outcomes between some of its actions ({}); review them in the plan and accept each with --accept ID (a trailing * accepts every id it begins: --accept '{}')",
        .0.join(", "),
        accept_pattern(.0)
    )]
    WindowsNotAccepted(Vec<String>),
    #[error("action {action}: still waiting after {timeout:?}: {missing}; rerun the same command to resume")]
    WaitTimedOut { action: String, timeout: Duration, missing: String },
    #[error("no consent: nothing was changed")]
    Declined,
    #[error(
        "no journal in the cluster (namespace {}) or in {}: the suite has nothing recorded to roll back; for a migration done by hand, give its backup with --from-backup FILE",
        journal::STATE_NAMESPACE, .0.display()
    )]
    NoJournal(PathBuf),
}

/// What every mutating command does with its planner's plan: gate it on `snapshot` (the state it
/// was planned from) against the outcomes of `reference` (a rollback's: the state before the
/// migration) or, without one, of the migration's baseline; refuse a `--step` a gate blocks, run
/// it, and say where it stopped.
pub async fn gate_and_run(
    connection: &Connection,
    printer: &Printer,
    snapshot: &Snapshot,
    reference: Option<&Snapshot>,
    mut plan: Plan,
    only_step: Option<u8>,
    options: &EngineOptions,
) -> Result<(), Error> {
    let read = match reference {
        Some(_) => None,
        None => baseline(connection, printer).await,
    };
    let rounds = crate::plan::schedule::rounds(&plan, options.concurrency);
    let baseline = reference.or(read.as_ref()).unwrap_or(snapshot);
    crate::plan::gate::gate_scheduled(baseline, snapshot, &mut plan, &rounds)?;
    plan.refuse_blocked_step(only_step)?;
    run(connection, printer, snapshot, &plan, &rounds, options).await?;
    report_stops(printer, &plan);
    Ok(())
}

/// The sidecar-era state the migration started from: the backup the first mutating run wrote
/// (it holds the whole snapshot that run read), read from the cluster so every machine gates
/// against the same baseline. None before the first run, or when it cannot be read (the start
/// state then stands for it, and a note says so).
async fn baseline(connection: &Connection, printer: &Printer) -> Option<Snapshot> {
    let text = match journal::read_backup(connection).await {
        Ok(text) => text?,
        Err(err) => {
            printer.note(&format!("the migration's baseline cannot be read ({err}); gating against the current state"));
            return None;
        }
    };
    match crate::snapshot::parse_documents(std::path::Path::new("the in-cluster backup"), &text) {
        Ok(objects) => Some(Snapshot::from_objects(objects)),
        Err(err) => {
            printer.note(&format!("the migration's baseline is unreadable ({err}); gating against the current state"));
            None
        }
    }
}

/// Shows `plan`, holds it to its windows and to consent, applies and awaits it, round by round
/// (`rounds`, from [`crate::plan::schedule::rounds`]: a round's actions are written, then awaited
/// together, and the next round starts when all of them are done). Returns when every action is
/// done (or, with a dry run, when it was shown or validated).
async fn run(
    connection: &Connection,
    printer: &Printer,
    snapshot: &Snapshot,
    plan: &Plan,
    rounds: &[Vec<usize>],
    options: &EngineOptions,
) -> Result<(), Error> {
    show(printer, plan, options.output)?;
    if plan.is_empty() || options.dry_run == DryRun::Client {
        return Ok(());
    }
    let unaccepted: Vec<String> =
        plan.windows.iter().map(|window| window.id.clone()).filter(|id| !accepts(&options.accept, id)).collect();
    if !unaccepted.is_empty() {
        return Err(EngineError::WindowsNotAccepted(unaccepted).into());
    }
    if options.dry_run == DryRun::None {
        consent(plan, options)?;
    }
    check_permissions(connection, plan).await?;
    let dry_run = options.dry_run == DryRun::Server;
    let mut journal = Journal::open(connection, &options.state_dir).await?;
    if !dry_run && journal.entries.is_empty() {
        let path =
            journal::write_backup(connection, &options.state_dir, &backup_objects(connection, snapshot, plan).await?)
                .await?;
        printer.note(&format!(
            "backup written to {} and to the cluster (namespace {})",
            path.display(),
            journal::STATE_NAMESPACE
        ));
    }
    let new_namespaces = created_namespaces(snapshot, plan);
    for round in rounds {
        let mut applied: Vec<&Action> = Vec::new();
        for action in round.iter().map(|&index| &plan.actions[index]) {
            let now = k8s_openapi::chrono::Utc::now().to_rfc3339();
            let in_new_namespace = action
                .change
                .target()
                .ok()
                .and_then(|target| target.namespace)
                .filter(|namespace| new_namespaces.contains(namespace));
            if let (true, Some(namespace)) = (dry_run, in_new_namespace) {
                printer.note(&format!(
                    "not validated: {} (namespace {namespace} is created by this plan, which a dry run does not do)",
                    action.description
                ));
                continue;
            }
            let resumed = !dry_run && restart_already_issued(connection, &journal, action).await?;
            if !dry_run && !resumed {
                let prior = match action.change.target() {
                    Ok(target) => with_retries(options.timeout, || apply::fetch(connection, &target)).await?,
                    Err(_) => None,
                };
                let entry = Entry {
                    action: action.id.clone(),
                    state: EntryState::Started,
                    at: now.clone(),
                    change: action.change.clone(),
                    prior,
                    accepted: options.accept.clone(),
                };
                journal.record(connection, entry).await?;
            }
            if !resumed {
                let spinner = printer.spinner(&action.description);
                let written =
                    with_retries(options.timeout, || apply::apply(connection, &action.change, dry_run, &now)).await;
                spinner.finish_and_clear();
                written?;
            }
            printer.note(&format!("{} {}", if dry_run { "validated:" } else { "done:" }, action.description));
            applied.push(action);
        }
        if dry_run {
            continue;
        }
        await_round(connection, printer, &applied, options.timeout).await?;
        for action in applied {
            let entry = Entry {
                action: action.id.clone(),
                state: EntryState::Done,
                at: k8s_openapi::chrono::Utc::now().to_rfc3339(),
                change: action.change.clone(),
                prior: None,
                accepted: Vec::new(),
            };
            journal.record(connection, entry).await?;
        }
    }
    Ok(())
}

/// Namespaces the plan creates: a server-side dry run cannot validate objects inside them.
fn created_namespaces(snapshot: &Snapshot, plan: &Plan) -> BTreeSet<String> {
    plan.actions
        .iter()
        .filter_map(|action| match &action.change {
            Change::Apply { object } => crate::change::ResourceRef::of(object).ok(),
            _ => None,
        })
        .filter(|target| target.kind == crate::kinds::Kind::Namespace)
        .filter(|target| snapshot.get(crate::kinds::Kind::Namespace, None, &target.name).is_none())
        .map(|target| target.name)
        .collect()
}

/// Sends a request again while the server cannot serve it now (429, 5xx, a lost connection, no
/// answer in time: a pooled connection left idle through a long wait can time out on its next
/// use), backing off exponentially from half a second to eight, until `timeout`. Every request of
/// the engine is idempotent (reads, server-side apply, merge patches with fixed values, deletes
/// that accept a 404), so sending one twice is safe. Anything else (a conflict, a denial, an
/// invalid object) is returned at once: a rerun re-reads the cluster and re-plans.
pub(crate) async fn with_retries<T, F, Fut>(timeout: Duration, mut send: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(500);
    loop {
        match send().await {
            Err(ApiError::Unavailable { .. } | ApiError::Failed { .. } | ApiError::Timeout { .. })
                if tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(8));
            }
            other => return other,
        }
    }
}

/// A restart journalled as started whose stamp the workload's template carries was issued by an
/// interrupted run: it is awaited, not issued again (a second restart would roll the workload
/// twice). One journalled but not carried (the run died, or the write failed, before it reached
/// the server) is issued again.
async fn restart_already_issued(connection: &Connection, journal: &Journal, action: &Action) -> Result<bool, ApiError> {
    let Change::Restart { target } = &action.change else { return Ok(false) };
    let Some(stamp) = journal.started_at(&action.id) else { return Ok(false) };
    let live = apply::fetch(connection, target).await?;
    let carried = live
        .as_ref()
        .and_then(|object| {
            object
                .data
                .pointer(&format!("/spec/template/metadata/annotations/{}", apply::RESTARTED_AT.replace('/', "~1")))
        })
        .and_then(serde_json::Value::as_str);
    Ok(carried == Some(stamp))
}

/// Says where the plan stopped short of the intent, and the command that moves past each stop.
fn report_stops(printer: &Printer, plan: &Plan) {
    for stop in &plan.stops {
        let namespace = stop.namespace.as_deref().map(|ns| format!("{ns}: ")).unwrap_or_default();
        let next = stop.next.as_deref().map(|next| format!("; next: {next}")).unwrap_or_default();
        printer.note(&format!("stopped at a gate: {namespace}{}{next}", stop.reason));
    }
}

/// Waits until the conditions of every action of a round hold, with one watch per kind for all
/// of them.
async fn await_round(
    connection: &Connection,
    printer: &Printer,
    actions: &[&Action],
    timeout: Duration,
) -> Result<(), Error> {
    let waits: Vec<(&str, &Wait)> =
        actions.iter().filter_map(|action| Some((action.id.as_str(), action.wait.as_ref()?))).collect();
    if waits.is_empty() {
        return Ok(());
    }
    let ids = waits.iter().map(|(id, _)| *id).collect::<Vec<_>>().join(", ");
    let words = match waits.as_slice() {
        [(_, wait)] => crate::render::wait_words(wait),
        _ => format!("{} actions are done ({ids})", waits.len()),
    };
    let spinner = printer.spinner(&format!("waiting until {words}"));
    let mut kinds: Vec<crate::kinds::Kind> = waits.iter().flat_map(|(_, wait)| wait.watched()).collect();
    kinds.sort_by_key(|kind| kind.name());
    kinds.dedup();
    // A cluster-scoped target (a Sail resource) is watched cluster-wide.
    let namespaces: Option<BTreeSet<String>> = waits.iter().map(|(_, wait)| wait_namespace(wait)).collect();
    let namespaces = namespaces.unwrap_or_default();
    let missing = |snapshot: &Snapshot| match waits.as_slice() {
        [(_, wait)] => wait.missing(snapshot),
        _ => waits.iter().find_map(|(id, wait)| Some(format!("{id}: {}", wait.missing(snapshot)?))),
    };
    let result = wait::until(connection, &kinds, &namespaces, timeout, missing).await;
    spinner.finish_and_clear();
    result.map_err(|missing| EngineError::WaitTimedOut { action: ids, timeout, missing }.into())
}

fn wait_namespace(wait: &Wait) -> Option<String> {
    match wait {
        Wait::RolledOut { target } | Wait::Healthy { target } | Wait::Programmed { target } => target.namespace.clone(),
        Wait::Redirected { namespace } => Some(namespace.clone()),
    }
}

fn show(printer: &Printer, plan: &Plan, output: OutputFormat) -> Result<(), Error> {
    let text = match output {
        OutputFormat::Table => crate::render::plan_table(plan, printer),
        OutputFormat::Json => serde_json::to_string_pretty(plan)?,
        OutputFormat::Yaml => serde_yaml_ng::to_string(plan)?,
    };
    printer.result(&text);
    Ok(())
}

/// A prompt on a terminal; `--yes` skips it; machine output and no terminal never prompt.
fn consent(plan: &Plan, options: &EngineOptions) -> Result<(), Error> {
    if options.yes {
        return Ok(());
    }
    let action = format!("{} ({} actions)", plan.command, plan.actions.len());
    let interactive =
        options.output == OutputFormat::Table && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        return Err(Error::ConsentRefused { action });
    }
    let confirmed = dialoguer::Confirm::new()
        .with_prompt(format!("Apply these {} changes to the cluster?", plan.actions.len()))
        .default(false)
        .interact()
        .unwrap_or(false);
    if confirmed { Ok(()) } else { Err(EngineError::Declined.into()) }
}

/// Asks the API server whether this identity may make every write of the plan, before the first.
async fn check_permissions(connection: &Connection, plan: &Plan) -> Result<(), ApiError> {
    let needed: BTreeSet<(String, String, String, Option<String>)> = plan
        .actions
        .iter()
        .filter_map(|action| apply::permission(&action.change))
        .map(|(verb, target)| {
            let info = target.kind.info();
            (verb.to_string(), info.group.to_string(), info.plural.to_string(), target.namespace.clone())
        })
        .collect();
    let reviews: Api<SelfSubjectAccessReview> = Api::all(connection.client.clone());
    for (verb, group, plural, namespace) in needed {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.clone()),
                    group: Some(group.clone()),
                    resource: Some(plural.clone()),
                    namespace: namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let resource = if group.is_empty() { plural.clone() } else { format!("{plural}.{group}") };
        let answer = reviews.create(&PostParams::default(), &review).await.map_err(|err| {
            ApiError::from_kube(err, Request::new("create", "selfsubjectaccessreviews.authorization.k8s.io"), None)
        })?;
        if !answer.status.is_some_and(|status| status.allowed) {
            return Err(ApiError::Forbidden {
                request: Box::new(Request::new(&verb, &resource).in_namespace(namespace.as_deref())),
            });
        }
    }
    Ok(())
}

/// What the backup holds: the snapshot the run planned from (so the backup is also the baseline
/// the gates and `oc ambient-check --baseline` compare with), every object Section 2.4 of the guide
/// names among it, plus every object the plan touches that the snapshot lacks. Secrets and
/// cluster metadata the migration never changes (CRDs, operators, nodes) are left out.
async fn backup_objects(
    connection: &Connection,
    snapshot: &Snapshot,
    plan: &Plan,
) -> Result<Vec<DynamicObject>, ApiError> {
    use crate::kinds::Kind;
    const NOT_BACKED_UP: [Kind; 6] = [
        Kind::Secret,
        Kind::CustomResourceDefinition,
        Kind::ClusterServiceVersion,
        Kind::Node,
        Kind::ClusterVersion,
        Kind::OperatorNetwork,
    ];
    let mut objects: Vec<DynamicObject> = crate::kinds::ALL
        .iter()
        .filter(|info| !NOT_BACKED_UP.contains(&info.kind))
        .flat_map(|info| snapshot.all(info.kind).iter().cloned())
        .collect();
    let listed: BTreeSet<_> = objects.iter().filter_map(|object| crate::change::ResourceRef::of(object).ok()).collect();
    for action in &plan.actions {
        let Ok(target) = action.change.target() else { continue };
        if listed.contains(&target) {
            continue;
        }
        objects.extend(apply::fetch(connection, &target).await?);
    }
    Ok(objects)
}
