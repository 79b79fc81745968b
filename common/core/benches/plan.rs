//! The planners on generated clusters of the `large` scenario's shape, pure (no cluster): how long
//! `oc ambient-enable` and `oc ambient-waypoint` take to plan every namespace and to gate the plan
//! (the verifier and the sequencing rules on every state it passes through), with actions,
//! windows and peak memory.
//!
//! `cargo bench -p oc-ambient-core --bench plan -- [--no-gate] [NSxSVCxPODS ...]` (default 20x5x2;
//! `--no-gate` measures the planners alone, for sizes whose gate takes too long). The input
//! is `synthetic::running_cluster`: the sidecar era with Deployments, running pods and the control
//! plane in the default profile. Enable plans Step 2 and the Step 3 restarts of every namespace
//! (Step 6 stops: every namespace has an L7 policy, so it needs a waypoint first); waypoint then
//! plans Steps 4 and 5 of every namespace from the state the enable plan leads to.

// A benchmark prints its figures itself: it is not plugin output, which goes through the printer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::process::ExitCode;
use std::time::Instant;

use oc_ambient_core::change::simulate;
use oc_ambient_core::equivalence::synthetic::{MeshSize, namespace_name, running_cluster};
use oc_ambient_core::plan::waypoint::{WaypointIntent, WaypointUntil, plan_waypoint};
use oc_ambient_core::plan::{EnableIntent, Plan, gate_against, plan_enable};
use oc_ambient_core::snapshot::Snapshot;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let gated = !arguments.iter().any(|argument| argument == "--no-gate");
    let sizes: Vec<&String> = arguments.iter().filter(|argument| !argument.starts_with("--")).collect();
    let sizes: Result<Vec<MeshSize>, String> =
        if sizes.is_empty() { Ok(vec![MeshSize::default()]) } else { sizes.iter().map(|a| a.parse()).collect() };
    match sizes {
        Ok(sizes) => sizes.into_iter().try_for_each(|size| run(size, gated)).map_or_else(
            |err| {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            },
            |()| ExitCode::SUCCESS,
        ),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn run(size: MeshSize, gated: bool) -> Result<(), String> {
    let name = format!("{}x{}x{}", size.namespaces, size.services, size.pods);
    let cluster = Snapshot::from_objects(running_cluster(size));
    let namespaces: Vec<String> = (0..size.namespaces).map(namespace_name).collect();
    println!("size {name}: {} objects, {} namespaces", cluster.len(), namespaces.len());

    let intent = EnableIntent { namespaces: namespaces.clone(), ..EnableIntent::default() };
    let enable = measure(&name, "enable", gated.then_some((&cluster, &cluster)), || {
        plan_enable(&cluster, &intent).map_err(|err| err.to_string())
    })?;
    let enabled = simulate(&cluster, &enable.changes()).snapshot;

    let intent = WaypointIntent { namespaces, until: WaypointUntil::PoliciesMigrated, ..WaypointIntent::default() };
    measure(&name, "waypoint", gated.then_some((&cluster, &enabled)), || {
        plan_waypoint(&enabled, &intent).map_err(|err| err.to_string())
    })?;
    Ok(())
}

/// Plans, then, given `(baseline, start)`, gates the plan, which starts from `start`, against
/// `baseline`; prints both times.
fn measure(
    size: &str,
    command: &str,
    gate: Option<(&Snapshot, &Snapshot)>,
    planner: impl FnOnce() -> Result<Plan, String>,
) -> Result<Plan, String> {
    support::reset_peak_memory();
    let (started, cpu) = (Instant::now(), support::cpu_seconds());
    let mut plan = planner()?;
    let planned = timing(started, cpu);
    let gated = match gate {
        Some((baseline, start)) => {
            let (started, cpu) = (Instant::now(), support::cpu_seconds());
            gate_against(baseline, start, &mut plan).map_err(|err| err.to_string())?;
            timing(started, cpu)
        }
        None => "not run".into(),
    };
    println!(
        "  {size} {command:<8}: plan {planned}, gate {gated}; {} actions, {} windows, {} stops; peak memory {}",
        plan.actions.len(),
        plan.windows.len(),
        plan.stops.len(),
        support::peak_memory().unwrap_or_else(|| "unknown".into()),
    );
    Ok(plan)
}

/// Wall and CPU time since `started` (CPU is the process's, every thread's: the load of a shared machine
/// stretches the wall time, not the CPU time).
fn timing(started: Instant, cpu: Option<f64>) -> String {
    let wall = started.elapsed().as_secs_f64();
    match cpu.zip(support::cpu_seconds()) {
        Some((start, end)) => format!("{:.2}s cpu ({wall:.2}s wall)", end - start),
        None => format!("{wall:.2}s wall"),
    }
}
