//! The common `main` of every plugin: parse flags under the name the user typed, run the command
//! on a tokio runtime, print a failure as one line on stderr, and map the outcome to an exit code.
//!
//! The failure line goes through [`Printer::error`] on a plain printer: a failure can happen
//! before the command has built its printer from the flags, and the line shows whatever `-q` says.

use std::future::Future;
use std::process::ExitCode;

use clap::{Arg, Command, CommandFactory, FromArgMatches};
use clap_complete::Shell;

use crate::cli::current_invocation;
use crate::error::{Error, Exit, chain_line};
use crate::printer::Printer;

/// Parses the command line with `--help` and usage showing the invocation the user typed
/// (`oc ambient-check`, `kubectl ambient-check`, or the binary name).
pub fn parse<T: CommandFactory + FromArgMatches>(binary: &str) -> T {
    let name = current_invocation(binary);
    let mut command = with_completion(T::command()).bin_name(name.clone()).name(name.clone());
    print_completion_if_asked(&mut command, binary);
    let matches = command.get_matches_mut();
    T::from_arg_matches(&matches).unwrap_or_else(|err| err.format(&mut command).exit())
}

/// Adds `--completion SHELL`, which prints a completion script instead of running the command.
/// Documented in `--help` like any flag, but answered before parsing ([`print_completion_if_asked`]),
/// so no required argument of the command gets in its way.
pub fn with_completion(command: Command) -> Command {
    command.arg(
        Arg::new(COMPLETION)
            .long(COMPLETION)
            .value_name("SHELL")
            .value_parser(clap::value_parser!(Shell))
            .exclusive(true)
            .help("Print a completion script for SHELL (bash, zsh, fish, ...) and exit; see README")
            .help_heading("Shell completion"),
    )
}

const COMPLETION: &str = "completion";

/// Started as `kubectl_complete-<plugin>`, answers kubectl's completion request
/// ([`crate::complete`]). With `--completion SHELL` as the only flag: prints the script for the executable the shell runs
/// (the name this binary was invoked under: `oc-ambient-check`, `kubectl-ambient_check`, ...) and
/// exits. Anything else (an unknown shell, other arguments) is left to clap, which says what is
/// wrong.
pub fn print_completion_if_asked(command: &mut Command, binary: &str) {
    crate::complete::answer_if_asked(command);
    let args: Vec<String> = std::env::args().collect();
    let shell = match args.as_slice() {
        [_, flag, value] if flag == "--completion" => Some(value.as_str()),
        [_, flag] => flag.strip_prefix("--completion="),
        _ => None,
    };
    let Some(shell) = shell.and_then(|shell| <Shell as clap::ValueEnum>::from_str(shell, true).ok()) else { return };
    let executable = std::path::Path::new(&args[0])
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|name| name.contains("ambient"))
        .unwrap_or(binary)
        .to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, command, executable, &mut script);
    // A closed pipe (`| head`) is not a failure of ours.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
    std::process::exit(0);
}

/// Runs a plugin's async entry point and turns its result into the process exit code.
pub fn run<F>(verbose: u8, future: F) -> ExitCode
where
    F: Future<Output = Result<Exit, Error>>,
{
    init_logging(verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            Printer::plain().error(&format!("cannot start the async runtime: {}", chain_line(&err)));
            return Exit::Error.into();
        }
    };
    match runtime.block_on(future) {
        Ok(exit) => exit.into(),
        Err(err) => {
            Printer::plain().error(&chain_line(&err));
            err.exit().into()
        }
    }
}

/// `-vv` and up turn on debug logs of the suite (and `RUST_LOG` overrides), on stderr. Below
/// that, library logs stay off: failures reach the user once, as the command's own error line.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 | 1 => "off",
        2 => "oc_ambient=debug,warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().try_init();
}

/// For commands whose change engine has not landed yet: prove the connection (visible with
/// `-v`), change nothing, and say so with exit code 2 so no script mistakes it for success.
pub async fn connect_then_refuse(global: &crate::cli::GlobalArgs, binary: &str, what: &str) -> Result<Exit, Error> {
    let printer = Printer::new(global);
    let connection = crate::client::connect(global, &printer).await?;
    Err(Error::NotImplemented { command: current_invocation(binary), what: what.into(), server: connection.server })
}
