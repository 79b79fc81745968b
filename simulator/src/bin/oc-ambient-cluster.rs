//! `oc-ambient-cluster [--scenario NAME]`: a control plane for manual work (`make cluster`).
//!
//! Without `--scenario` it starts a plain control plane; with it, the simulator runs and the
//! scenario is loaded first. Either way the kubeconfig is written to `.testenv/kubeconfig` in the
//! workspace, its path printed on one line, then `ready`; Ctrl-C or SIGTERM stops the processes
//! and removes the temporary directory.

// A development tool, not a plugin: its stdout (the kubeconfig path, then `ready`) is read by
// scripts, and it does not carry the plugins' printer and flags.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use oc_ambient_simulator::{Options, Scenario, Simulator, scenario};
use oc_ambient_testenv::{ControlPlane, CrdSet};

const USAGE: &str = "usage: oc-ambient-cluster [--scenario NAME]";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Request {
    Run(Option<String>),
    Help,
}

fn parse_args(args: &[String]) -> Result<Request, String> {
    match args {
        [] => Ok(Request::Run(None)),
        [flag, name] if flag == "--scenario" => Ok(Request::Run(Some(name.clone()))),
        [flag] if flag.starts_with("--scenario=") => {
            Ok(Request::Run(flag.strip_prefix("--scenario=").map(String::from)))
        }
        [flag] if flag == "--help" || flag == "-h" => Ok(Request::Help),
        _ => Err(USAGE.to_string()),
    }
}

fn help() -> String {
    let list: Vec<String> = scenario::SCENARIOS.iter().map(|(name, about)| format!("  {name:<38} {about}")).collect();
    format!("{USAGE}\n\nscenarios:\n{}", list.join("\n"))
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

/// Starts the control plane and, with a scenario, the simulator with the scenario loaded.
async fn start(scenario: Option<&Scenario>) -> Result<(ControlPlane, Option<Simulator>), String> {
    let crds = scenario.map(|scenario| scenario.crds.clone()).unwrap_or(CrdSet::All);
    let plane = ControlPlane::start(oc_ambient_testenv::Options { crds }).await.map_err(|err| err.to_string())?;
    let Some(scenario) = scenario else { return Ok((plane, None)) };
    let options = Options { kubelet_version: scenario.platform.kubelet_version(), ..Options::default() };
    let simulator = Simulator::start(&plane, &options).await.map_err(|err| err.to_string())?;
    let client = plane.client().await.map_err(|err| err.to_string())?;
    scenario.load(&client).await.map_err(|err| format!("scenario {}: {err}", scenario.name))?;
    Ok((plane, Some(simulator)))
}

async fn run(scenario: Option<Scenario>) -> Result<(), String> {
    // Listen from the start: a signal while starting still stops (and cleans up) what started.
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let (plane, _simulator) = tokio::select! {
        started = start(scenario.as_ref()) => started?,
        signal = &mut shutdown => return signal.map_err(|err| format!("waiting for a signal: {err}")),
    };
    let directory = oc_ambient_testenv::workspace_root().join(".testenv");
    let kubeconfig = directory.join("kubeconfig");
    std::fs::create_dir_all(&directory).map_err(|err| format!("create {}: {err}", directory.display()))?;
    std::fs::copy(plane.kubeconfig(), &kubeconfig).map_err(|err| format!("write {}: {err}", kubeconfig.display()))?;
    println!("{}", kubeconfig.display());
    println!("ready");
    let waited = shutdown.await.map_err(|err| format!("waiting for a signal: {err}"));
    // The kubeconfig names files of the control plane's directory, which goes away now.
    let _ = std::fs::remove_file(&kubeconfig);
    waited
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = match parse_args(&args) {
        Ok(Request::Run(name)) => name,
        Ok(Request::Help) => {
            println!("{}", help());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let scenario = match name.map(|name| Scenario::named(&name)).transpose() {
        Ok(scenario) => scenario,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("oc-ambient-cluster: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(scenario)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("oc-ambient-cluster: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &[&str]) -> Vec<String> {
        text.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn the_scenario_is_optional_and_anything_else_is_a_usage_error() {
        assert_eq!(parse_args(&args(&[])), Ok(Request::Run(None)));
        assert_eq!(parse_args(&args(&["--scenario", "large:2"])), Ok(Request::Run(Some("large:2".into()))));
        assert_eq!(parse_args(&args(&["--scenario=ossm-3.1"])), Ok(Request::Run(Some("ossm-3.1".into()))));
        assert_eq!(parse_args(&args(&["-h"])), Ok(Request::Help));
        assert!(parse_args(&args(&["--scenario"])).is_err());
        assert!(parse_args(&args(&["bookinfo-sidecar"])).is_err());
        assert!(help().contains("half-migrated-wrong-order"));
    }
}
