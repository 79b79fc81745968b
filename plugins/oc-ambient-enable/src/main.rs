use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: oc_ambient_enable::Cli = oc_ambient_common::app::parse("oc-ambient-enable");
    oc_ambient_common::app::run(cli.global.verbose, oc_ambient_enable::run(cli))
}
