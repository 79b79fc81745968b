//! Starts the shared control plane, prints its directory and process ids, then ends the way the
//! first argument says (`exit`, `panic`, or `hang` to be killed), so a test can check that
//! nothing outlives it.

// A test helper: its stdout is read by the test that runs it; it is not plugin output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "exit".into());
    let plane = match oc_ambient_testenv::ControlPlane::shared() {
        Ok(plane) => plane,
        Err(err) => {
            eprintln!("control plane did not start: {err}");
            std::process::exit(2);
        }
    };
    let pids: Vec<String> = plane.pids().iter().map(u32::to_string).collect();
    println!("dir={}", plane.dir().display());
    println!("pids={}", pids.join(","));
    match mode.as_str() {
        "panic" => panic!("probe panics on purpose"),
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        },
        _ => {}
    }
}
