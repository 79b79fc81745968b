//! `oc ambient-enable`: the control plane, CNI and ztunnel to ambient (Step 2), sidecars restarted
//! for HBONE (Step 3), namespaces enrolled (Step 6) and sidecars removed (Step 9), each namespace
//! as far as the guide's gates allow.
//!
//! The plan comes from the core's planner on one snapshot of the cluster, is gated there (the
//! sequencing rules and the verifier on every intermediate state), and runs through the change
//! engine (plan shown, dry run, consent, permission check, backup, journal, waits, resume).

use clap::{Parser, ValueEnum};
use oc_ambient_common::cli::{ChangeArgs, GlobalArgs};
use oc_ambient_common::error::{Error, Exit};
use oc_ambient_common::plan::enable::{EnableIntent, Until, plan_enable};

/// Move a mesh to ambient mode: without NAMESPACE, the cluster (Step 2); with namespaces, each as
/// far as the gates allow (Steps 3, 6 and 9), stopping where a waypoint step comes first.
///
/// Nothing changes without a plan shown first and consent (a prompt on a terminal, or --yes).
/// Exit codes: 0 done (or stopped at a gate, which is printed with the next command), 1 refused
/// (a gate, a window not accepted, no consent), 2 could not finish (access, API, a wait timed out;
/// rerun the same command to resume).
///
/// Examples:
///   oc ambient-enable --dry-run                 # show Step 2's plan
///   oc ambient-enable --yes                     # Step 2
///   oc ambient-enable bookinfo --yes            # Steps 3, 6 and 9 for bookinfo, as far as allowed
///   oc ambient-enable bookinfo --until sidecar-hbone -o json --dry-run
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Namespaces to move forward.
    #[arg(value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// Stop once the namespaces reach this phase.
    #[arg(long, value_enum, value_name = "PHASE")]
    pub until: Option<UntilPhase>,
    /// Run only this step of the guide.
    #[arg(long, value_name = "N", value_parser = ["2", "3", "6", "9"])]
    pub step: Option<String>,
    /// The namespace ztunnel runs in (Step 2).
    #[arg(long, value_name = "NS", default_value = "ztunnel")]
    pub ztunnel_namespace: String,
    /// Step 2 also creates a PodMonitor (monitoring.coreos.com/v1) scraping ztunnel, journalled
    /// like every change so rollback removes it.
    #[arg(long)]
    pub monitoring: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UntilPhase {
    SidecarHbone,
    AmbientEnrolled,
    Ambient,
}

pub async fn run(cli: Cli) -> Result<Exit, Error> {
    let oc_ambient_common::live::Session { printer, connection, snapshot } =
        oc_ambient_common::live::open_session(&cli.global).await?;
    let intent = EnableIntent {
        namespaces: cli.namespaces.clone(),
        until: match cli.until.unwrap_or(UntilPhase::Ambient) {
            UntilPhase::SidecarHbone => Until::SidecarHbone,
            UntilPhase::AmbientEnrolled => Until::AmbientEnrolled,
            UntilPhase::Ambient => Until::Ambient,
        },
        only_step: cli.step.as_deref().and_then(|step| step.parse().ok()),
        ztunnel_namespace: cli.ztunnel_namespace.clone(),
        monitoring: cli.monitoring,
    };
    let plan = plan_enable(&snapshot, &intent)?;
    let options = cli.change.options(cli.global.output, &connection.server);
    oc_ambient_common::engine::gate_and_run(&connection, &printer, &snapshot, None, plan, intent.only_step, &options)
        .await?;
    printer.detail(&format!("{} API requests", connection.requests()));
    Ok(Exit::Success)
}
