//! `oc ambient-enable`: Move the control plane, CNI and ztunnel to ambient, restart sidecars for HBONE, enrol namespaces and remove sidecars.
//!
//! The change engine (plan, dry-run, consent, backup, journal, gates, resume) arrives in a later issue; this version connects and changes nothing.

use clap::Parser;
use oc_ambient_common::cli::GlobalArgs;
use oc_ambient_common::error::{Error, Exit};

/// Move the control plane, CNI and ztunnel to ambient, restart sidecars for HBONE, enrol namespaces and remove sidecars.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cli: Cli) -> Result<Exit, Error> {
    oc_ambient_common::app::connect_then_refuse(&cli.global, "oc-ambient-enable", "the ambient enablement engine").await
}
