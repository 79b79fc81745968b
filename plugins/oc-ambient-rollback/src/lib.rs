//! `oc ambient-rollback`: back out migration steps, or all of them, exactly, from what the suite
//! recorded.
//!
//! The journal (read from the cluster, so it works from any machine, else from the local state
//! directory) says what each action changed and what was there before; the core's rollback
//! planner undoes it in reverse, and the plan runs through the same change engine as the
//! migration: gated against the state before the migration, shown first, dry run, consent,
//! permission check, journal (so an interrupted rollback resumes and a finished one is not
//! repeated), waits. Without a journal, `--from-backup` restores a backup instead.

use std::path::PathBuf;

use clap::{ArgGroup, Parser};
use oc_ambient_common::cli::{ChangeArgs, GlobalArgs};
use oc_ambient_common::engine::EngineError;
use oc_ambient_common::engine::journal::Journal;
use oc_ambient_common::error::{Error, Exit};
use oc_ambient_common::kinds::Kind;
use oc_ambient_common::plan::PlanError;
use oc_ambient_common::plan::rollback::{RollbackIntent, RollbackSource, plan_rollback};
use oc_ambient_common::snapshot::InputLimits;

/// Back out migration steps: the steps after N (--to-step N), or every step (--all), in the
/// namespaces given (without NAMESPACE: every namespace and the cluster-wide setup of Step 2).
///
/// Labels, patched fields and deleted objects come back as they were before the migration; what
/// the migration created is deleted (the journal proves it, never a name); workloads are restarted
/// where their sidecar changes. An object edited since the migration is reported and left alone
/// unless accepted with --accept edit:<Kind/namespace/name>. Exit codes as for oc ambient-enable:
/// 0 done, 1 refused (a gate, a window not accepted, no consent), 2 could not finish (rerun the
/// same command to resume).
///
/// Examples:
///   oc ambient-rollback --all --dry-run             # show the complete rollback
///   oc ambient-rollback bookinfo --to-step 5 --yes  # back to policies migrated, sidecars kept
///   oc ambient-rollback bookinfo --all --from-backup backup.yaml --yes   # a migration by hand
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
#[command(group(ArgGroup::new("how-far").required(true).args(["to_step", "all"])))]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Namespaces to roll back (default: every namespace, and the cluster).
    #[arg(value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// Undo the steps after step N (1 to 8), leaving the namespaces in that step's phase.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub to_step: Option<u8>,
    /// Undo every step: back to the state before the migration.
    #[arg(long)]
    pub all: bool,
    /// Restore this backup (the engine's backup.yaml, or any `oc get -o yaml` dump) instead of
    /// undoing the journal: for a migration the suite did not record.
    #[arg(long, value_name = "FILE")]
    pub from_backup: Option<PathBuf>,
}

pub async fn run(cli: Cli) -> Result<Exit, Error> {
    let oc_ambient_common::live::Session { printer, connection, snapshot } =
        oc_ambient_common::live::open_session(&cli.global).await?;
    if let Some(namespace) = cli.namespaces.iter().find(|ns| snapshot.get(Kind::Namespace, None, ns).is_none()) {
        return Err(PlanError::NamespaceNotFound { namespace: namespace.clone() }.into());
    }
    let options = cli.change.options(cli.global.output, &connection.server);
    let intent =
        RollbackIntent { namespaces: cli.namespaces.clone(), to_step: cli.to_step, accept: cli.change.accept.clone() };
    let rollback = match &cli.from_backup {
        Some(path) => {
            let backup = oc_ambient_common::input::read_snapshot(
                std::slice::from_ref(path),
                &InputLimits::default(),
                oc_ambient_common::fields::Fields::All,
            )?;
            let objects: Vec<_> = backup.kinds().flat_map(|(kind, _)| backup.all(kind).iter().cloned()).collect();
            plan_rollback(&snapshot, RollbackSource::Backup(&objects), &intent)
        }
        None => {
            let journal = Journal::open(&connection, &options.state_dir).await?;
            if journal.entries.is_empty() {
                return Err(EngineError::NoJournal(options.state_dir.clone()).into());
            }
            plan_rollback(&snapshot, RollbackSource::Journal(&journal.entries), &intent)
        }
    };
    oc_ambient_common::engine::gate_and_run(
        &connection,
        &printer,
        &snapshot,
        Some(&rollback.reference),
        rollback.plan,
        None,
        &options,
    )
    .await?;
    printer.detail(&format!("{} API requests", connection.requests()));
    Ok(Exit::Success)
}
