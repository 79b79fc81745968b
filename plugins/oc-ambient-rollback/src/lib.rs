//! `oc ambient-rollback`: Back out any migration step, or all of them, exactly, from what the suite recorded.
//!
//! The journal-driven rollback arrives with the change engine in a later issue; this version connects and changes nothing.

use clap::Parser;
use oc_ambient_common::cli::GlobalArgs;
use oc_ambient_common::error::{Error, Exit};

/// Back out any migration step, or all of them, exactly, from what the suite recorded.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cli: Cli) -> Result<Exit, Error> {
    oc_ambient_common::app::connect_then_refuse(&cli.global, "oc-ambient-rollback", "rollback").await
}
