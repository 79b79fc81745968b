//! `oc ambient-check`: read-only readiness, blockers, policy traps and migration phase.

use clap::Parser;
use oc_ambient_common::cli::{AllNamespaces, GlobalArgs};
use oc_ambient_common::error::{Exit, Failure};

/// Check a mesh before and after each step of the sidecar-to-ambient migration. Never changes anything.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub all: AllNamespaces,
}

pub async fn run(cli: Cli) -> Result<Exit, Failure> {
    oc_ambient_common::app::connect_then_refuse(&cli.global, "oc-ambient-check", "the check catalogue").await
}
