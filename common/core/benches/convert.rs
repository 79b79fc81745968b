//! The translator and the verifier on large and hostile input (issue 17): each input goes from
//! text (a JSON List, as `oc get -A -o json` gives; YAML documents with `yaml`) through the
//! loader, `convert` and the YAML stream `oc ambient-waypoint convert` prints, and with `policy=`
//! through `convert --verify`'s verification too.
//!
//! `cargo bench -p oc-ambient-core --bench convert -- [INPUT ...]`, where INPUT is
//! - `NSxSVCxPODS`: a mesh of the simulator's `large` shape
//!   ([`oc_ambient_core::equivalence::synthetic`]); `1000x10x3` is 60,000 objects;
//! - `rules=N`: one VirtualService of N header-matched rules, which must be refused for its size;
//! - `policy=PRINCIPALSxPATHSxHEADERS`: one ALLOW policy with that many principals, paths and
//!   header conditions, converted and verified (the verifier samples within its budget).
//!
//! The default is `1000x10x3 rules=100000 policy=20000x5000x200`. Peak memory (VmHWM) covers the
//! whole process: run one input per invocation for a clean figure.

// A benchmark prints its figures itself: it is not plugin output, which goes through the printer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

mod support;

use oc_ambient_core::convert::{ConvertOptions, convert};
use oc_ambient_core::equivalence::synthetic::{MeshSize, generate, huge_policy, virtual_service_with_rules};
use oc_ambient_core::equivalence::verify::verify_change;
use oc_ambient_core::snapshot::{Snapshot, parse_documents};

/// One input to convert.
enum Input {
    Mesh(MeshSize),
    Rules(usize),
    Policy { principals: usize, paths: usize, headers: usize },
}

impl std::str::FromStr for Input {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(count) = text.strip_prefix("rules=") {
            return count
                .parse()
                .map(Input::Rules)
                .map_err(|_| format!("invalid rule count {count:?}: expected rules=N, e.g. rules=100000"));
        }
        if let Some(sizes) = text.strip_prefix("policy=") {
            let numbers: Vec<usize> = sizes.split('x').filter_map(|n| n.parse().ok()).collect();
            return match numbers.as_slice() {
                [principals, paths, headers] => {
                    Ok(Input::Policy { principals: *principals, paths: *paths, headers: *headers })
                }
                _ => Err(format!("invalid policy size {sizes:?}: expected policy=PRINCIPALSxPATHSxHEADERS")),
            };
        }
        text.parse().map(Input::Mesh)
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; everything else is an input, or `yaml`.
    let mut arguments: Vec<String> = std::env::args().skip(1).filter(|argument| !argument.starts_with("--")).collect();
    let yaml = arguments.iter().any(|argument| argument == "yaml");
    arguments.retain(|argument| argument != "yaml");
    let inputs: Result<Vec<Input>, String> = if arguments.is_empty() {
        Ok(vec![
            Input::Mesh(MeshSize { namespaces: 1000, services: 10, pods: 3 }),
            Input::Rules(100_000),
            Input::Policy { principals: 20_000, paths: 5_000, headers: 200 },
        ])
    } else {
        arguments.iter().map(|a| a.parse()).collect()
    };
    let inputs = match inputs {
        Ok(inputs) => inputs,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    for input in inputs {
        let (label, objects, verify) = match input {
            Input::Mesh(size) => {
                let label = format!("mesh {}x{}x{}", size.namespaces, size.services, size.pods);
                (label, generate(size).sidecar_era, false)
            }
            Input::Rules(count) => (format!("rules={count}"), virtual_service_with_rules(count), false),
            Input::Policy { principals, paths, headers } => {
                (format!("policy={principals}x{paths}x{headers}"), huge_policy(principals, paths, headers), true)
            }
        };
        // As `oc get -A -o json` gives it; `yaml` puts each object in a YAML document instead.
        let text = if yaml {
            let documents: Vec<String> =
                objects.iter().filter_map(|object| serde_yaml_ng::to_string(object).ok()).collect();
            documents.join("---\n")
        } else {
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string()
        };
        run(&label, &text, verify);
    }
    ExitCode::SUCCESS
}

/// Parses, converts and renders `text` (and verifies the conversion with `verify`), printing each
/// phase's time.
fn run(label: &str, text: &str, verify: bool) {
    let started = Instant::now();
    let objects = match parse_documents(Path::new("bench"), text) {
        Ok(objects) => objects,
        Err(err) => {
            eprintln!("{label}: {err}");
            return;
        }
    };
    let count = objects.len();
    let snapshot = Snapshot::from_objects(objects);
    let parsed = started.elapsed().as_secs_f64();
    let conversion = convert(&snapshot, &ConvertOptions::default());
    let converted = started.elapsed().as_secs_f64();
    let rendered = conversion.to_yaml_stream().map(|stream| stream.len()).unwrap_or_default();
    let rendered_at = started.elapsed().as_secs_f64();
    let verification = verify.then(|| verify_change(&snapshot, conversion.changes(), &[], None));
    let total = started.elapsed().as_secs_f64();
    let verified = verification.map(|verification| {
        format!(
            ", verify {:.2}s ({} requests, {} unexpected differences, {})",
            total - rendered_at,
            verification.evaluated,
            verification.unexpected().count(),
            if verification.notes.iter().any(|note| note.contains("sample")) { "sampled" } else { "all" }
        )
    });
    println!(
        "{label}: {count} objects, {} MB in: parse {parsed:.2}s, convert {:.2}s, render {:.2}s{}, total {total:.2}s; \
         {} items ({} MB), {} unsupported, {} warnings; peak memory {}",
        text.len() / 1_000_000,
        converted - parsed,
        rendered_at - converted,
        verified.unwrap_or_default(),
        conversion.items.len(),
        rendered / 1_000_000,
        conversion.unsupported.len(),
        conversion.warnings.len(),
        support::peak_memory().unwrap_or_else(|| "unknown".into()),
    );
}
