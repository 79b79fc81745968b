use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: oc_ambient_check::Cli = oc_ambient_common::app::parse("oc-ambient-check");
    oc_ambient_common::app::run(cli.global.verbose, oc_ambient_check::run(cli))
}
