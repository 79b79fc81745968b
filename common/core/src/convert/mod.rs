//! The translation engine: sidecar-era configuration in, ambient resources and a report out.
//!
//! Step 5 of the migration guide converts configuration by hand. This module does it as pure
//! functions of a [`Snapshot`] (no I/O), so the same code runs offline on a dump
//! (`oc-ambient-waypoint convert`) and, later, against a live cluster. Correctness is the point,
//! and three rules follow from it:
//!
//! * **Never drop a rule silently.** Everything the engine cannot express goes into
//!   [`Conversion::unsupported`] with the field path, and the source object then stays out of
//!   [`Conversion::replaces`], so clean-up never deletes configuration that was not carried over.
//! * **Never widen what a policy allows.** Policies are copied rule for rule; where ambient
//!   enforcement itself changes who can reach what (scope widening through Services, callers that
//!   skip the waypoint), the engine says so in a warning or refuses.
//! * **Never emit what the API server rejects.** Values are checked against the Gateway API and
//!   Istio schemas (names, paths, header names, durations, limits) before they are emitted; the
//!   integration tests dry-run every emitted object on a real API server.
//!
//! The rules live in one module each: [`services`] (DestinationRule subsets become per-version
//! Services), [`routes`] (mesh VirtualServices become HTTPRoutes), [`policies`] (selector policies
//! move to the waypoint, and L4 policies admit the waypoint identity) and [`bypass`] (ztunnel
//! protection against callers that skip the waypoint). [`scope`] decides which namespaces use a
//! waypoint, which identity it has, and which workloads the input shows.

mod bypass;
pub mod objects;
mod policies;
mod ports;
mod routes;
pub(crate) mod scope;
mod services;
pub mod unchanged;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use kube_core::DynamicObject;
use serde::Serialize;
use serde_json::{Value, json};

use crate::change::{Change, ResourceRef};
use crate::mesh::ObjectRef;
use crate::snapshot::Snapshot;

pub use bypass::narrowed_protections;

/// What to convert and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Namespaces to convert. Empty: every namespace of the input, each using a waypoint when the
    /// input shows it needs one. Named namespaces always use a waypoint.
    pub namespaces: Vec<String>,
    /// Name of the waypoint Gateway (and its service account). Default: the waypoint the input
    /// names for the namespace (`istio.io/use-waypoint`, or its only `istio-waypoint` Gateway),
    /// else `waypoint`.
    pub waypoint: Option<String>,
}

/// A field of an input object the conversion could not carry over.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Unsupported {
    pub object: ObjectRef,
    /// Path of the field in the source object, e.g. `spec.http[0].retries`.
    pub field: String,
    pub reason: String,
    /// Stable name of this loss, `unsupported:<Kind>/<namespace>/<name>:<field>`: what
    /// `oc ambient-waypoint --accept` names to migrate without it.
    pub id: String,
}

impl Unsupported {
    fn new(object: &ObjectRef, field: String, reason: String) -> Self {
        let namespace = object.namespace.as_deref().map(|ns| format!("{ns}/")).unwrap_or_default();
        let id = format!("unsupported:{}/{namespace}{}:{field}", object.kind, object.name);
        Unsupported { object: object.clone(), field, reason, id }
    }
}

/// Something the user must know although the conversion is faithful.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Warning {
    pub object: ObjectRef,
    pub message: String,
}

/// A label to add to an existing object.
///
/// Not an entry of `items`: a partial object is not safe with `oc apply -f -` (client-side apply
/// would record the partial object as the last applied configuration, and creating it when the
/// object is missing fails or creates a stub). It is offered instead as a server-side-apply patch
/// body (`oc apply --server-side --field-manager=oc-ambient -f`), which owns only the label, and as
/// the equivalent `oc label` command in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelChange {
    pub object: ResourceRef,
    pub labels: BTreeMap<String, String>,
    pub reason: String,
    /// The body for `oc apply --server-side`: apiVersion, kind, name, namespace and the labels.
    pub patch: Value,
}

impl LabelChange {
    /// The `oc label` command equivalent to the patch.
    pub fn command(&self) -> String {
        let labels: Vec<String> = self.labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let namespace = self.object.namespace.as_deref().map(|ns| format!(" -n {ns}")).unwrap_or_default();
        let kind = self.object.kind.name().to_lowercase();
        format!("oc label {kind}{namespace} {} {}", self.object.name, labels.join(" "))
    }
}

/// The result of a conversion: what to apply, what could not be converted, what it replaces.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Conversion {
    /// Generated objects, each labelled `app.kubernetes.io/managed-by: oc-ambient` and annotated
    /// with `oc-ambient.io/source`, in apply order (waypoints, Services, routes, policies).
    pub items: Vec<DynamicObject>,
    pub unsupported: Vec<Unsupported>,
    pub warnings: Vec<Warning>,
    /// Sidecar-era objects the items supersede completely (for clean-up after the migration).
    pub replaces: Vec<ResourceRef>,
    /// Label changes on existing objects (see [`LabelChange`]).
    pub label_changes: Vec<LabelChange>,
    /// Objects the migration leaves as they are (ingress routes, objects another controller
    /// owns; see [`unchanged`]): neither converted nor replaced, and no loss.
    pub left_unchanged: Vec<unchanged::LeftUnchanged>,
}

impl Conversion {
    /// True when everything was converted faithfully (exit code 0).
    pub fn is_faithful(&self) -> bool {
        self.unsupported.is_empty()
    }

    /// The conversion as changes, in apply order: the items, then the label changes, then the
    /// deletion of the objects the items replace (which belongs after the sidecars are gone; see
    /// [`crate::equivalence`] on sequencing).
    pub fn changes(&self) -> Vec<Change> {
        let applies = self.items.iter().map(|object| Change::Apply { object: object.clone() });
        applies.chain(self.edits()).collect()
    }

    /// [`Self::changes`] without copying the items: they move into the changes, and the
    /// conversion keeps what describes it (refusals, warnings). At 1,000 namespaces the items
    /// are some 60 MiB, and the check needs only the refusals once the verdict is given.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let applies = std::mem::take(&mut self.items).into_iter().map(|object| Change::Apply { object });
        applies.chain(self.edits()).collect()
    }

    /// The changes after the items: the label changes, then the deletions.
    fn edits(&self) -> impl Iterator<Item = Change> + '_ {
        let labels = self.label_changes.iter().map(|change| Change::SetLabels {
            target: change.object.clone(),
            labels: change.labels.iter().map(|(key, value)| (key.clone(), Some(value.clone()))).collect(),
        });
        let deletes = self.replaces.iter().map(|target| Change::Delete {
            target: target.clone(),
            uid: None,
            resource_version: None,
        });
        labels.chain(deletes)
    }

    /// The `-o json` document.
    pub fn to_json(&self) -> Value {
        json!({
            "kind": "AmbientConversion",
            "items": self.items,
            "unsupported": self.unsupported,
            "warnings": self.warnings,
            "replaces": self.replaces,
            "labelChanges": self.label_changes,
            "leftUnchanged": self.left_unchanged,
        })
    }

    /// The items as one multi-document YAML stream, for `oc apply -f -`.
    pub fn to_yaml_stream(&self) -> Result<String, serde_yaml_ng::Error> {
        let mut documents = Vec::with_capacity(self.items.len());
        for item in &self.items {
            documents.push(serde_yaml_ng::to_string(item)?);
        }
        Ok(documents.join("---\n"))
    }

    /// The `-o json` document with the verdict: `faithful` and, when not, the `reasons`.
    pub fn to_json_judged(&self, verdict: &verdict::Verdict) -> Value {
        let mut document = self.to_json();
        document["faithful"] = json!(verdict.is_faithful());
        document["reasons"] = json!(verdict.reasons);
        document
    }

    /// The report for people (stderr with `-o yaml`): unsupported fields, warnings, label changes
    /// and replaced objects, one line each.
    pub fn report_text(&self) -> String {
        self.report(&[])
    }

    /// [`Self::report_text`] ending with the verdict: its reasons, one line each, and a summary
    /// that says "converted faithfully" only when the verdict does.
    pub fn judged_report_text(&self, verdict: &verdict::Verdict) -> String {
        self.report(&verdict.reasons)
    }

    fn report(&self, reasons: &[String]) -> String {
        let mut lines = Vec::new();
        for entry in &self.unsupported {
            lines.push(format!("unsupported: {} {}: {} [{}]", entry.object, entry.field, entry.reason, entry.id));
        }
        for warning in &self.warnings {
            lines.push(format!("warning: {}: {}", warning.object, warning.message));
        }
        for change in &self.label_changes {
            lines.push(format!("label change: {} ({})", change.command(), change.reason));
        }
        for replaced in &self.replaces {
            lines.push(format!("replaces: {replaced}"));
        }
        for left in &self.left_unchanged {
            lines.push(format!("left unchanged: {}: {}", left.object, left.reason));
        }
        for reason in reasons {
            lines.push(format!("not faithful: {reason}"));
        }
        lines.push(format!(
            "{} object(s) generated, {} unsupported field(s), {} warning(s); {}",
            self.items.len(),
            self.unsupported.len(),
            self.warnings.len(),
            if self.is_faithful() && reasons.is_empty() { "converted faithfully" } else { "NOT converted faithfully" }
        ));
        lines.join("\n")
    }
}

/// Collects the report while the rules run. Sets, not lists: entries are deduplicated and the
/// refused objects looked up on every insertion, which a scan made quadratic in the report's size
/// (a hostile input can make every rule of every object unsupported).
#[derive(Debug, Default)]
pub(crate) struct Report {
    unsupported: BTreeSet<Unsupported>,
    warnings: BTreeSet<Warning>,
    refused: HashSet<ObjectRef>,
    left_unchanged: BTreeSet<unchanged::LeftUnchanged>,
}

impl Report {
    pub(crate) fn unsupported(&mut self, object: &ObjectRef, field: impl Into<String>, reason: impl Into<String>) {
        self.refused.insert(object.clone());
        self.unsupported.insert(Unsupported::new(object, field.into(), reason.into()));
    }

    /// Lists an object the migration leaves as it is (see [`unchanged`]).
    pub(crate) fn leave(&mut self, object: &ObjectRef, reason: impl Into<String>) {
        self.left_unchanged.insert(unchanged::LeftUnchanged { object: object.clone(), reason: reason.into() });
    }

    pub(crate) fn warn(&mut self, object: &ObjectRef, message: impl Into<String>) {
        self.warnings.insert(Warning { object: object.clone(), message: message.into() });
    }

    /// Number of unsupported entries so far; rules compare before and after to learn whether an
    /// object converted completely.
    pub(crate) fn unsupported_count(&self) -> usize {
        self.unsupported.len()
    }

    /// True when some unsupported entry names `object`.
    pub(crate) fn refused(&self, object: &ObjectRef) -> bool {
        self.refused.contains(object)
    }
}

/// Converts the sidecar-era configuration of `snapshot` (see the module docs).
pub fn convert(snapshot: &Snapshot, options: &ConvertOptions) -> Conversion {
    Converter::new(snapshot).convert(options)
}

/// Converts the configuration of one snapshot, with different options: what every conversion
/// reads of the whole mesh (the model, its indexes, decoded routes, the evaluator's topology) is
/// built once, so converting its namespaces one by one (the waypoint planner, Step 5) costs what
/// converting them together does, not that times the number of namespaces.
pub struct Converter<'a> {
    index: scope::MeshIndex<'a>,
}

impl<'a> Converter<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        Converter { index: scope::MeshIndex::new(snapshot) }
    }

    /// The snapshot it converts.
    pub fn snapshot(&self) -> &'a Snapshot {
        self.index.snapshot
    }

    /// The same as [`convert`] of the snapshot with `options`.
    pub fn convert(&self, options: &ConvertOptions) -> Conversion {
        let snapshot = self.index.snapshot;
        let mut report = Report::default();
        let mesh = scope::Mesh::new(&self.index, options, &mut report);
        let mut out = objects::Items::new(snapshot);

        for namespace in mesh.waypoint_namespaces() {
            if let Some(gateway) = mesh.waypoint_gateway_to_emit(namespace, &mut report) {
                out.add(gateway, &mut report);
            }
        }
        let routed = routes::convert_virtual_services(&mesh, &mut out, &mut report);
        let version_services = services::convert_subsets(&mesh, &routed, &mut out, &mut report);
        services::report_policies_without_waypoint(&mesh, &mut report);
        let enforced = policies::convert_policies(&mesh, &version_services.services, &mut out, &mut report);
        let label_changes = bypass::protect(&mesh, &enforced, &version_services.services, &mut out, &mut report);

        let mut replaces: Vec<ResourceRef> = Vec::new();
        replaces.extend(routed.replaced);
        replaces.extend(version_services.replaced);
        replaces.extend(enforced.replaced.iter().cloned());
        replaces.retain(|replaced| !report.refused(&ObjectRef::from(replaced)));
        replaces.sort();
        replaces.dedup();

        let Report { unsupported, warnings, left_unchanged, .. } = report;
        let (unsupported, warnings) = (unsupported.into_iter().collect(), warnings.into_iter().collect());
        let left_unchanged = left_unchanged.into_iter().collect();
        Conversion { items: out.into_items(), unsupported, warnings, replaces, label_changes, left_unchanged }
    }
}

#[cfg(test)]
mod tests {
    use super::scope::tests::snapshot_of;
    use super::*;

    #[test]
    fn malformed_objects_are_reported_never_a_panic() {
        let input = "
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: 7, ports: oops}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: shop}
spec: {hosts: reviews, http: 3}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: odd, namespace: shop}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}], timeout: forever}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec: {host: reviews, subsets: nope}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: shop}
spec: {selector: {matchLabels: {app: reviews}}, rules: yes}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-namespace}
spec: {rules: [{to: [{operation: {methods: [GET]}}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews, namespace: shop}
spec: {template: [1, 2]}
";
        let conversion =
            convert(&snapshot_of(input), &ConvertOptions { namespaces: vec!["shop".into()], ..Default::default() });
        assert!(!conversion.is_faithful());
        let refused: Vec<String> = conversion.unsupported.iter().map(|u| format!("{} {}", u.object, u.field)).collect();
        for expected in [
            "VirtualService shop/broken spec",
            "AuthorizationPolicy shop/broken spec",
            "AuthorizationPolicy no-namespace metadata.namespace",
        ] {
            assert!(refused.iter().any(|r| r == expected), "{expected} missing from {refused:#?}");
        }
        let rendered = conversion.to_yaml_stream().expect("the items render");
        assert!(!conversion.report_text().is_empty());
        assert_eq!(conversion.to_json()["kind"], "AmbientConversion");
        assert!(!rendered.contains("no-namespace"));
    }
}

#[cfg(test)]
mod semantics_tests;
