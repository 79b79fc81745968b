//! `oc ambient-check`: read-only readiness, blockers, policy traps and the migration phase of
//! every namespace, live or offline from YAML dumps. It never changes anything.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use oc_ambient_common::check::{self, Options, Scope};
use oc_ambient_common::cli::{AllNamespaces, GlobalArgs, InputLimitArgs, OutputFormat};
use oc_ambient_common::error::{Error, Exit};
use oc_ambient_common::fields::Fields;
use oc_ambient_common::live::{self, ListScope, LoadOptions};
use oc_ambient_common::printer::Printer;

/// Check a mesh before and after each step of the sidecar-to-ambient migration. Never changes
/// anything.
///
/// Without -n or -A it covers every namespace with sidecar injection, ambient enrolment or mesh
/// configuration. Exit codes: 0 ready (nothing failed), 1 not ready, 2 could not evaluate.
///
/// Examples:
///   oc ambient-check                                    # every meshed namespace
///   oc ambient-check -n bookinfo --step 3               # the checkpoint of Step 3
///   oc ambient-check -f dump.yaml -o json               # offline, one JSON document
///   oc ambient-check -n bookinfo --baseline backup.yaml # outcomes against the sidecar era
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub all: AllNamespaces,
    /// Run the validation checkpoint of step N of the guide (1 to 9) instead of the assessment.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=9))]
    pub step: Option<u8>,
    /// Check the YAML or JSON files under DIR (e.g. `oc get ... -o yaml` dumps) instead of a cluster.
    #[arg(long, value_name = "DIR", conflicts_with = "files")]
    pub from_dir: Option<PathBuf>,
    /// Check the objects in FILE instead of a cluster ('-' reads stdin); repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The sidecar-era configuration the mesh was migrated from (a dump or backup: file or
    /// directory, repeatable): every request now allowed or routed differently fails
    /// policy-equivalence.
    #[arg(long, value_name = "PATH")]
    pub baseline: Vec<PathBuf>,
    /// Also write a debug bundle to FILE (a .tar.gz): the logs of istiod, ztunnel, istio-cni, the
    /// waypoints and the application pods, the objects read (without Secret values), this report,
    /// the change journal, events and versions, with a summary of what could not be collected.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["files", "from_dir"])]
    pub bundle: Option<PathBuf>,
    #[command(flatten)]
    pub limits: InputLimitArgs,
}

pub async fn run(cli: Cli) -> Result<Exit, Error> {
    let printer = Printer::new(&cli.global);
    let scope = match (&cli.global.namespace, cli.all.all_namespaces) {
        (_, true) => Scope::All,
        (Some(namespace), false) => Scope::Only(vec![namespace.clone()]),
        (None, false) => Scope::Mesh,
    };
    let started = Instant::now();
    let offline: Vec<PathBuf> = cli.from_dir.iter().cloned().chain(cli.files.iter().cloned()).collect();
    let mut connected = None;
    let snapshot = if offline.is_empty() {
        let connection = oc_ambient_common::client::connect(&cli.global, &printer).await?;
        let list_scope = match &scope {
            Scope::Only(namespaces) => ListScope::Namespaces(namespaces.clone()),
            _ => ListScope::AllNamespaces,
        };
        let spinner = printer.spinner(&format!("reading {}", connection.server));
        let snapshot = live::load(&connection, &LoadOptions::for_check(list_scope)).await;
        spinner.finish_and_clear();
        let snapshot = snapshot?;
        printer.detail(&format!(
            "{} in {} API requests, {:.2}s",
            live::summary(&snapshot),
            connection.requests(),
            started.elapsed().as_secs_f64()
        ));
        connected = Some(connection);
        snapshot
    } else {
        let snapshot = oc_ambient_common::input::read_snapshot(&offline, &cli.limits.limits(), Fields::Read)?;
        printer.detail(&format!(
            "read {} objects from files in {:.2}s",
            snapshot.len(),
            started.elapsed().as_secs_f64()
        ));
        snapshot
    };
    for note in &snapshot.notes {
        printer.detail(note);
    }
    let baseline = if cli.baseline.is_empty() {
        None
    } else {
        Some(oc_ambient_common::input::read_snapshot(&cli.baseline, &cli.limits.limits(), Fields::Read)?)
    };
    let report = check::evaluate(&snapshot, &Options { scope, step: cli.step, baseline });
    let rendered = match cli.global.output {
        OutputFormat::Table => oc_ambient_common::render::check_table(&report, &printer, cli.step.is_some()),
        OutputFormat::Json => serde_json::to_string_pretty(&report)?,
        OutputFormat::Yaml => serde_yaml_ng::to_string(&report)?,
    };
    printer.result(&rendered);
    if let (Some(path), Some(connection)) = (&cli.bundle, &connected) {
        let state_dir = oc_ambient_common::cli::default_state_dir(&connection.server);
        let contents = oc_ambient_common::bundle::write(connection, &snapshot, &report, &state_dir, path).await?;
        printer.note(&format!(
            "debug bundle written to {}: {} files, {} items not collected (see summary.txt)",
            path.display(),
            contents.files.len() + 1,
            contents.not_collected.len()
        ));
    }
    Ok(if report.ready { Exit::Success } else { Exit::NotReady })
}
