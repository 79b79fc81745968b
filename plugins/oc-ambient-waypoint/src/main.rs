use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: oc_ambient_waypoint::Cli = oc_ambient_common::app::parse("oc-ambient-waypoint");
    oc_ambient_common::app::run(cli.global.verbose, oc_ambient_waypoint::run(cli))
}
