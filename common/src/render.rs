//! Output for people: the check report and the verifier's differences as tables, coloured when
//! colour is on. JSON and YAML print the core's documents themselves; rendering lives here, with
//! the printer, so the core stays free of terminal concerns.

use std::fmt::Write;

use oc_ambient_core::check::{Report, Severity};
use oc_ambient_core::equivalence::Outcome;
use oc_ambient_core::equivalence::verify::{Class, Difference, EXPECTED_REASON, Verification};
use oc_ambient_core::plan::{Plan, Wait};

use crate::printer::{Printer, Tone};

fn tone(severity: Severity) -> Tone {
    match severity {
        Severity::Fail => Tone::Fail,
        Severity::Warn => Tone::Warn,
        Severity::Info => Tone::Info,
        Severity::Pass => Tone::Pass,
    }
}

fn label(severity: Severity) -> &'static str {
    match severity {
        Severity::Fail => "FAIL",
        Severity::Warn => "WARN",
        Severity::Info => "INFO",
        Severity::Pass => "PASS",
    }
}

/// Renders the table; `show_passes` keeps PASS lines (they are noise in the full assessment, the
/// point of a `--step` checkpoint).
pub fn check_table(report: &Report, printer: &Printer, show_passes: bool) -> String {
    let mut out = String::new();
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    let cluster = &report.cluster;
    let _ = writeln!(out, "{}", printer.paint("CLUSTER", Tone::Heading));
    let _ = writeln!(
        out,
        "  OpenShift {}  OSSM {}  Istio {} (profile {})  CNI {}  Gateway API {}  ztunnel {}",
        or_dash(&cluster.openshift),
        or_dash(&cluster.ossm),
        or_dash(&cluster.istio),
        or_dash(&cluster.istio_profile),
        or_dash(&cluster.cni),
        or_dash(&cluster.gateway_api),
        or_dash(&cluster.ztunnel)
    );
    if !report.namespaces.is_empty() {
        let _ = writeln!(out, "\n{}", printer.paint("NAMESPACES", Tone::Heading));
        let width = report.namespaces.iter().map(|ns| ns.name.len()).max().unwrap_or(4).max(9);
        let _ = writeln!(
            out,
            "  {:<width$}  {:<17}  {:<8}  PODS (sidecar/hbone/ambient)",
            "NAMESPACE", "PHASE", "WAYPOINT"
        );
        for ns in &report.namespaces {
            let phase = ns.phase.as_str();
            let phase_text = if phase == "inconsistent" {
                printer.paint(&format!("{phase:<17}"), Tone::Fail)
            } else {
                format!("{phase:<17}")
            };
            let _ = writeln!(
                out,
                "  {:<width$}  {phase_text}  {:<8}  {} ({}/{}/{})",
                ns.name,
                if ns.waypoint_needed { "needed" } else { "-" },
                ns.pods.total,
                ns.pods.sidecar,
                ns.pods.hbone,
                ns.pods.ambient
            );
            for reason in &ns.waypoint_reasons {
                let _ =
                    writeln!(out, "  {:<width$}    {}", "", printer.paint(&format!("waypoint: {reason}"), Tone::Dim));
            }
        }
    }
    let shown: Vec<_> = report.findings.iter().filter(|f| show_passes || f.severity != Severity::Pass).collect();
    if !shown.is_empty() {
        let _ = writeln!(out, "\n{}", printer.paint("FINDINGS", Tone::Heading));
        for finding in shown {
            let object = finding.object.as_ref().map(|o| format!(" {o}:")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {}{object} {}",
                printer.paint(label(finding.severity), tone(finding.severity)),
                printer.paint(finding.id, Tone::Heading),
                finding.message
            );
            if let Some(remediation) = &finding.remediation {
                let _ = writeln!(out, "       {}", printer.paint(&format!("-> {remediation}"), Tone::Dim));
            }
        }
    }
    let count = |severity| report.findings.iter().filter(|f| f.severity == severity).count();
    let verdict =
        if report.ready { printer.paint("READY", Tone::Pass) } else { printer.paint("NOT READY", Tone::Fail) };
    let partial = if report.partial { " (partial: some kinds were not in the input or not readable)" } else { "" };
    let _ = writeln!(
        out,
        "\n{verdict}: {} failed, {} warnings, {} notes{partial}",
        count(Severity::Fail),
        count(Severity::Warn),
        count(Severity::Info)
    );
    out
}

/// The verifier's differences for people: one block each, then a summary.
pub fn verification_table(verification: &Verification, printer: &Printer) -> String {
    let mut out = String::new();
    for difference in &verification.differences {
        let tone = match (difference.expected, difference.class) {
            (true, _) => Tone::Dim,
            (false, Class::Loosened) => Tone::Fail,
            (false, _) => Tone::Warn,
        };
        let label = if difference.expected {
            format!("{} (expected)", difference.class.word())
        } else {
            difference.class.word().into()
        };
        out.push_str(&format!(
            "{:<22} {}\n  before: {}\n          {}\n  after:  {}\n          {}\n",
            printer.paint(&label, tone),
            difference.request,
            outcome_text(&difference.before),
            printer.paint(&difference.before.explanation, Tone::Dim),
            outcome_text(&difference.after),
            printer.paint(&difference.after.explanation, Tone::Dim),
        ));
        if difference.count() > 1 {
            out.push_str(&format!("  {}\n", alike_sources(difference)));
        }
        if difference.expected {
            out.push_str(&format!("  {EXPECTED_REASON}\n"));
        }
    }
    let unexpected = verification.unexpected_requests();
    let summary = format!(
        "{} requests evaluated ({} representatives), {} differ, {} unexpectedly",
        verification.requests,
        verification.evaluated,
        verification.differing_requests(),
        unexpected
    );
    out.push_str(&printer.paint(&summary, if unexpected == 0 { Tone::Pass } else { Tone::Fail }));
    out.push('\n');
    out
}

/// How many sources to name after a difference that holds for a class of them.
const LISTED_SOURCES: usize = 5;

/// The other sources a difference holds for: the first few by name, then how many more.
fn alike_sources(difference: &Difference) -> String {
    let others: Vec<&str> = difference.sources.names().skip(1).take(LISTED_SOURCES).collect();
    let rest = difference.count() - 1 - others.len();
    let more = if rest > 0 { format!(" and {rest} more") } else { String::new() };
    format!("the same from {}{more} (sources the policies and routes treat alike)", others.join(", "))
}

fn outcome_text(outcome: &Outcome) -> String {
    let verdict = if outcome.allowed { "allowed" } else { "denied" };
    if outcome.backend.is_empty() {
        verdict.to_string()
    } else {
        format!("{verdict}, served by {}", outcome.backend.join(", "))
    }
}

/// A plan for people: one line per action (step, what, what it waits for), then the windows to
/// accept and where the plan stops.
pub fn plan_table(plan: &Plan, printer: &Printer) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        out.push_str("nothing to do: the cluster is already where the command takes it\n");
    } else {
        let _ = writeln!(out, "{}", printer.paint(&format!("PLAN ({} actions)", plan.actions.len()), Tone::Heading));
        if !plan.rounds.is_empty() {
            let widest = plan.rounds.iter().map(Vec::len).max().unwrap_or(1);
            let _ = writeln!(
                out,
                "  in {} rounds of up to {widest} actions of different namespaces at once (--concurrency; -o json lists them)",
                plan.rounds.len()
            );
        }
        for (index, action) in plan.actions.iter().enumerate() {
            let _ = writeln!(out, "  {:>3}. step {}  {}", index + 1, action.step, action.description);
            if let Some(wait) = &action.wait {
                let _ = writeln!(
                    out,
                    "       {}",
                    printer.paint(&format!("then wait until {}", wait_words(wait)), Tone::Dim)
                );
            }
        }
    }
    for window in &plan.windows {
        let _ = writeln!(
            out,
            "{} {} ({} .. {}): {}",
            printer.paint("WINDOW", Tone::Warn),
            printer.paint(&window.id, Tone::Heading),
            window.opens_after,
            window.closes_after,
            window.description
        );
        for request in window.requests.iter().take(WINDOW_REQUESTS_SHOWN) {
            let _ = writeln!(out, "       {}", printer.paint(request, Tone::Dim));
        }
        if let Some(more) = window.requests.len().checked_sub(WINDOW_REQUESTS_SHOWN).filter(|more| *more > 0) {
            let _ = writeln!(
                out,
                "       {}",
                printer.paint(&format!("... and {more} more (-o json lists them all)"), Tone::Dim)
            );
        }
    }
    for stop in &plan.stops {
        let namespace = stop.namespace.as_deref().map(|ns| format!("{ns}: ")).unwrap_or_default();
        let _ = writeln!(out, "{} {namespace}{}", printer.paint("STOP", Tone::Warn), stop.reason);
        if let Some(next) = &stop.next {
            let _ = writeln!(out, "       {}", printer.paint(&format!("next: {next}"), Tone::Dim));
        }
    }
    out
}

/// Requests listed under a window in the table: enough to see what changes; `-o json` has all.
const WINDOW_REQUESTS_SHOWN: usize = 6;

pub fn wait_words(wait: &Wait) -> String {
    match wait {
        Wait::RolledOut { target } => format!("{target} has rolled out"),
        Wait::Healthy { target } => format!("{target} is healthy"),
        Wait::Redirected { namespace } => format!("every pod of {namespace} is redirected to ztunnel"),
        Wait::Programmed { target } => format!("{target} is programmed and its pods are ready"),
    }
}
