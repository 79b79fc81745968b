//! `oc-ambient-cluster [--scenario NAME]`: a control plane for manual work (`make cluster`).
//!
//! Without `--scenario` it starts a plain control plane; with it, the simulator runs and the
//! scenario is loaded first. Either way the kubeconfig is written to `.testenv/kubeconfig` in the
//! workspace, its path printed on one line, then `ready`; Ctrl-C or SIGTERM stops the processes
//! and removes the temporary directory.

use std::process::ExitCode;

use oc_ambient_simulator::{Options, Scenario, Simulator, scenario};
use oc_ambient_testenv::{ControlPlane, CrdSet};

const USAGE: &str = "usage: oc-ambient-cluster [--scenario NAME]";

fn parse_args(args: &[String]) -> Result<Option<String>, String> {
    match args {
        [] => Ok(None),
        [flag, name] if flag == "--scenario" => Ok(Some(name.clone())),
        [flag] if flag.starts_with("--scenario=") => Ok(flag.strip_prefix("--scenario=").map(String::from)),
        [flag] if flag == "--help" || flag == "-h" => {
            let list: Vec<String> =
                scenario::SCENARIOS.iter().map(|(name, about)| format!("  {name:<38} {about}")).collect();
            Err(format!("{USAGE}\n\nscenarios:\n{}", list.join("\n")))
        }
        _ => Err(USAGE.to_string()),
    }
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

async fn run(scenario: Option<Scenario>) -> Result<(), String> {
    let crds = scenario.as_ref().map(|scenario| scenario.crds.clone()).unwrap_or(CrdSet::All);
    let plane = ControlPlane::start(oc_ambient_testenv::Options { crds }).await.map_err(|err| err.to_string())?;
    let _simulator = match &scenario {
        Some(scenario) => {
            let options = Options { kubelet_version: scenario.platform.kubelet_version(), ..Options::default() };
            let simulator = Simulator::start(&plane, &options).await.map_err(|err| err.to_string())?;
            let client = plane.client().await.map_err(|err| err.to_string())?;
            scenario.load(&client).await.map_err(|err| format!("scenario {}: {err}", scenario.name))?;
            Some(simulator)
        }
        None => None,
    };
    let directory = oc_ambient_testenv::workspace_root().join(".testenv");
    let kubeconfig = directory.join("kubeconfig");
    std::fs::create_dir_all(&directory).map_err(|err| format!("create {}: {err}", directory.display()))?;
    std::fs::copy(plane.kubeconfig(), &kubeconfig).map_err(|err| format!("write {}: {err}", kubeconfig.display()))?;
    println!("{}", kubeconfig.display());
    println!("ready");
    shutdown_signal().await.map_err(|err| format!("waiting for a signal: {err}"))?;
    // The kubeconfig names files of the control plane's directory, which goes away now.
    let _ = std::fs::remove_file(&kubeconfig);
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = match parse_args(&args)
        .and_then(|name| name.map(|name| Scenario::named(&name).map_err(|err| err.to_string())).transpose())
    {
        Ok(scenario) => scenario,
        Err(message) => {
            eprintln!("{message}");
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
