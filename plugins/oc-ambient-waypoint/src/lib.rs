//! `oc ambient-waypoint`: Deploy waypoints, convert VirtualServices, DestinationRules and AuthorizationPolicies, activate waypoints and clean up.
//!
//! Conversion (`convert`) arrives with the translation engine; applying it arrives with the change engine.

use clap::Parser;
use oc_ambient_common::cli::GlobalArgs;
use oc_ambient_common::error::{Exit, Failure};

/// Deploy waypoints, convert VirtualServices, DestinationRules and AuthorizationPolicies, activate waypoints and clean up.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cli: Cli) -> Result<Exit, Failure> {
    oc_ambient_common::app::connect_then_refuse(&cli.global, "oc-ambient-waypoint", "waypoint deployment").await
}
