//! What the check and the translator must agree on for any input (issue 9, acceptance 2), as
//! one function the corpus test and the scenario test both run.

use std::collections::BTreeSet;

use oc_ambient_common::change::{Change, simulate};
use oc_ambient_common::check::{self, Options, Scope, Severity};
use oc_ambient_common::convert::{ConvertOptions, convert};
use oc_ambient_common::equivalence::MigrationState;
use oc_ambient_common::mesh::ObjectRef;
use oc_ambient_common::mesh::labels::WAYPOINT_CLASS;
use oc_ambient_common::snapshot::Snapshot;

/// What was compared, so a test can show it compared something.
#[derive(Debug, Default)]
pub struct Agreement {
    /// Namespaces whose waypoint need both judged, and how many of them need one.
    pub namespaces: usize,
    pub with_waypoint: usize,
    /// Generated objects the check looked at in force.
    pub generated: usize,
    /// Every disagreement, in words.
    pub disagreements: Vec<String>,
}

/// A namespace whose waypoint need the check and the translator judge differently, and a finding
/// of the check about an object convert generated once those objects are in force, are
/// disagreements.
pub fn between_check_and_convert(input: &Snapshot) -> Agreement {
    let mut disagreements = Vec::new();
    let report = check::evaluate(input, &Options { scope: Scope::All, ..Options::default() });
    let conversion = convert(input, &ConvertOptions::default());
    let waypoint_class = |object: &kube::api::DynamicObject| {
        object.data.pointer("/spec/gatewayClassName").and_then(|class| class.as_str()) == Some(WAYPOINT_CLASS)
    };
    let converted_with_waypoint: BTreeSet<String> = conversion
        .items
        .iter()
        .chain(input.all(oc_ambient_common::kinds::Kind::Gateway))
        .filter(|object| waypoint_class(object))
        .filter_map(|object| object.metadata.namespace.clone())
        .collect();
    let with_waypoint = report.namespaces.iter().filter(|namespace| namespace.waypoint_needed).count();
    for namespace in &report.namespaces {
        let translator = converted_with_waypoint.contains(&namespace.name);
        if namespace.waypoint_needed != translator {
            disagreements.push(format!(
                "namespace {}: check says waypoint needed={} ({:?}), convert gives it a waypoint={translator}",
                namespace.name, namespace.waypoint_needed, namespace.waypoint_reasons
            ));
        }
    }
    let additions: Vec<Change> =
        conversion.changes().into_iter().filter(|change| !matches!(change, Change::Delete { .. })).collect();
    let converted = simulate(input, &additions).snapshot;
    let state = MigrationState {
        enrolled: converted_with_waypoint.clone(),
        waypoints: converted_with_waypoint.clone(),
        sidecars: converted_with_waypoint,
    };
    let in_force = state.apply(&converted);
    let generated: BTreeSet<ObjectRef> = conversion.items.iter().map(ObjectRef::of).collect();
    let after = check::evaluate(&in_force, &Options { scope: Scope::All, ..Options::default() });
    for finding in after.findings.iter().filter(|f| matches!(f.severity, Severity::Fail | Severity::Warn)) {
        if finding.object.as_ref().is_some_and(|object| generated.contains(object)) {
            disagreements.push(format!(
                "check on the converted state: {} {:?}: {}",
                finding.id, finding.object, finding.message
            ));
        }
    }
    Agreement { namespaces: report.namespaces.len(), with_waypoint, generated: generated.len(), disagreements }
}
