use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = oc_ambient_waypoint::parse();
    oc_ambient_common::app::run(cli.global.verbose, oc_ambient_waypoint::run(cli))
}
