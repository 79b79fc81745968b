use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: oc_ambient_rollback::Cli = oc_ambient_common::app::parse("oc-ambient-rollback");
    oc_ambient_common::app::run(cli.global.verbose, oc_ambient_rollback::run(cli))
}
