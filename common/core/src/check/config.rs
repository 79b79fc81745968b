//! Blockers, features ambient does not honour, conversion work, and the policy traps of
//! AMBIENT-NOTES ("How ambient enforces policy").

use std::collections::BTreeMap;

use serde_json::Value;

use super::facts::str_at;
use super::phase::{MeshContext, Protection, protection_of, stale_exemptions, waypoint_principals};
use super::{Finding, Severity, ids};
use crate::convert::verdict::judge_changes;
use crate::convert::{ConvertOptions, Unsupported, convert};
use crate::kinds::Kind;
use crate::mesh::authz::{Action, AuthorizationPolicySpec, is_valid_condition_key};
use crate::mesh::labels::TRAFFIC_ANNOTATION_PREFIX;
use crate::mesh::{ObjectRef, annotations, labels, selector_matches};
use crate::model::Pod;
use crate::snapshot::Snapshot;

pub fn blockers(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for secret in snapshot.all(Kind::Secret) {
        if labels(secret).get("istio/multiCluster").map(String::as_str) == Some("true") {
            findings.push(
                Finding::new(
                    ids::MULTICLUSTER,
                    Severity::Fail,
                    Some(ObjectRef::of(secret)),
                    "remote secret of a multi-cluster mesh: ambient does not support multi-cluster in OSSM 3.2",
                )
                .fix("keep this mesh in sidecar mode, or remove the remote cluster from it first"),
            );
        }
    }
    for istio in snapshot.all(Kind::Istio) {
        let values = istio.data.pointer("/spec/values");
        let multi = values.and_then(|v| v.pointer("/global/multiCluster/enabled")).and_then(Value::as_bool)
            == Some(true)
            || values
                .and_then(|v| v.pointer("/global/meshNetworks"))
                .is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty()));
        if multi {
            findings.push(
                Finding::new(
                    ids::MULTICLUSTER,
                    Severity::Fail,
                    Some(ObjectRef::of(istio)),
                    "multi-cluster or multi-network values are set",
                )
                .fix("ambient does not support multi-cluster meshes in OSSM 3.2"),
            );
        }
        if values.is_some_and(|v| v.to_string().to_lowercase().contains("spire")) {
            findings.push(
                Finding::new(
                    ids::SPIRE,
                    Severity::Fail,
                    Some(ObjectRef::of(istio)),
                    "the control plane is configured for SPIRE identity",
                )
                .fix("ambient does not support SPIRE in OSSM 3.2"),
            );
        }
    }
    for kind in [Kind::WorkloadEntry, Kind::WorkloadGroup] {
        for object in snapshot.all(kind) {
            findings.push(
                Finding::new(
                    ids::VM_WORKLOADS,
                    Severity::Fail,
                    Some(ObjectRef::of(object)),
                    format!("{} integrates a VM workload: not supported in ambient", kind.name()),
                )
                .fix("move the VM workload out of the mesh or keep the mesh in sidecar mode"),
            );
        }
    }
    for pod in snapshot.all(Kind::Pod) {
        let uses_spiffe_csi = pod
            .data
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|volume| volume.pointer("/csi/driver").and_then(Value::as_str) == Some("csi.spiffe.io"));
        if uses_spiffe_csi {
            findings.push(
                Finding::new(
                    ids::SPIRE,
                    Severity::Fail,
                    Some(ObjectRef::of(pod)),
                    "pod mounts a SPIFFE CSI volume (SPIRE identity)",
                )
                .fix("ambient does not support SPIRE in OSSM 3.2"),
            );
        }
    }
    for peer in snapshot.all(Kind::PeerAuthentication) {
        let mode = str_at(peer, "/spec/mtls/mode");
        let port_disable = peer
            .data
            .pointer("/spec/portLevelMtls")
            .and_then(Value::as_object)
            .is_some_and(|ports| ports.values().any(|p| p.get("mode").and_then(Value::as_str) == Some("DISABLE")));
        if mode == Some("DISABLE") || port_disable {
            findings.push(
                Finding::new(
                    ids::PEERAUTHENTICATION_DISABLE,
                    Severity::Fail,
                    Some(ObjectRef::of(peer)),
                    "mTLS mode DISABLE: ztunnel always uses mTLS between ambient workloads",
                )
                .fix("move to PERMISSIVE or STRICT before migrating the workloads it selects"),
            );
        }
    }
    findings
}

pub fn not_honoured(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for filter in snapshot.all(Kind::EnvoyFilter) {
        findings.push(
            Finding::new(
                ids::ENVOYFILTER,
                Severity::Warn,
                Some(ObjectRef::of(filter)),
                "EnvoyFilter is not honoured by ztunnel or waypoints",
            )
            .fix("replace it with a supported API (WasmPlugin or Telemetry on the waypoint) or accept losing it"),
        );
    }
    for sidecar in snapshot.all(Kind::Sidecar) {
        findings.push(
            Finding::new(
                ids::SIDECAR_RESOURCE,
                Severity::Warn,
                Some(ObjectRef::of(sidecar)),
                "Sidecar resources do not apply to ambient workloads",
            )
            .fix("remove it after migration; egress scoping needs another mechanism in ambient"),
        );
    }
    // One finding per workload, not per pod: replicas share their template's annotations.
    let mut by_workload: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for pod in snapshot.all(Kind::Pod) {
        let keys: Vec<String> =
            annotations(pod).keys().filter(|key| key.starts_with(TRAFFIC_ANNOTATION_PREFIX)).cloned().collect();
        if !keys.is_empty() {
            let facts = Pod::of(pod);
            by_workload.entry((facts.namespace.to_string(), facts.workload())).or_insert(keys);
        }
    }
    for ((namespace, workload), keys) in by_workload {
        findings.push(
            Finding::new(
                ids::TRAFFIC_ANNOTATIONS,
                Severity::Warn,
                Some(ObjectRef::new("Workload", Some(&namespace), &workload)),
                format!("pods use {} which ambient ignores", keys.join(", ")),
            )
            .fix("check what the annotation excluded from interception; ambient redirects all pod traffic"),
        );
    }
    findings
}

/// What the check says about converting the input, from the translator's own conversion and
/// verdict (issue 16: the check never calls "convertible" what convert refuses, and its
/// `conversion-verdict` fails exactly when convert would exit 1).
pub struct ConversionView {
    /// The conversion's refusals (its items are gone into the verdict's verification).
    unsupported: Vec<Unsupported>,
    /// Why the conversion is not faithful; empty when it is.
    reasons: Vec<String>,
}

impl ConversionView {
    /// Converts and judges the input as `oc ambient-waypoint convert` does: every namespace, or
    /// those of `-n`. Keeps only what the findings read: at 1,000 namespaces the converted
    /// objects and the verification's copy of the mesh are hundreds of MiB.
    pub fn new(snapshot: &Snapshot, namespaces: &[String]) -> Self {
        let mut conversion = convert(snapshot, &ConvertOptions { namespaces: namespaces.to_vec(), waypoint: None });
        let changes = conversion.take_changes();
        let verdict = judge_changes(snapshot, changes, conversion.unsupported.len(), namespaces, None);
        ConversionView { unsupported: conversion.unsupported, reasons: verdict.reasons }
    }

    /// The conversion's refusals of one object, as "field: reason".
    fn refusals(&self, object: &ObjectRef) -> Vec<String> {
        let unsupported = self.unsupported.iter().filter(|entry| &entry.object == object);
        unsupported.map(|entry| format!("{}: {}", entry.field, entry.reason)).collect()
    }

    /// A `conversion-verdict` failure when convert would exit 1; nothing when it would exit 0
    /// (the per-object findings already say what converts).
    pub fn findings(&self) -> Vec<Finding> {
        if self.reasons.is_empty() {
            return Vec::new();
        }
        vec![
            Finding::new(
                ids::CONVERSION_VERDICT,
                Severity::Fail,
                None,
                format!("the configuration does not convert faithfully: {}", self.reasons.join("; ")),
            )
            .fix("oc ambient-waypoint convert (and --verify) shows each reason; fix or accept them before Step 5"),
        ]
    }
}

pub fn work_to_do(context: &MeshContext, namespaces: &[String], view: &ConversionView) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (object, spec) in &context.virtual_services {
        let reference = Some(ObjectRef::of(object));
        if spec.is_gateway_only() {
            findings.push(Finding::new(
                ids::VIRTUALSERVICE_CONVERSION,
                Severity::Info,
                reference,
                "bound to ingress gateways only; not part of the mesh data-plane migration",
            ));
            continue;
        }
        // The translator's refusals, not a feature list of the check's own: what it converts
        // (a partial mirror, say) is convertible, what it refuses is not.
        let unsupported = reference.as_ref().map(|object| view.refusals(object)).unwrap_or_default();
        findings.push(if unsupported.is_empty() {
            Finding::new(
                ids::VIRTUALSERVICE_CONVERSION,
                Severity::Info,
                reference,
                "convertible to an HTTPRoute on the waypoint (Step 5.1)",
            )
            .fix("oc ambient-waypoint convert")
        } else {
            Finding::new(
                ids::VIRTUALSERVICE_CONVERSION,
                Severity::Warn,
                reference,
                format!("has no Gateway API equivalent for: {}", unsupported.join(", ")),
            )
            .fix("decide how to replace these features before Step 8 removes the VirtualService")
        });
    }
    for (object, spec) in &context.destination_rules {
        if spec.subsets.is_empty() {
            continue;
        }
        let names: Vec<String> =
            spec.subsets.iter().map(|subset| format!("{}-{}", short_host(&spec.host), subset.name)).collect();
        // The translator's refusals decide, as for VirtualServices: traffic policies are carried
        // to the version Services' own DestinationRules, so they are no loss.
        let reference = ObjectRef::of(object);
        let refusals = view.refusals(&reference);
        findings.push(if refusals.is_empty() {
            Finding::new(
                ids::DESTINATIONRULE_SUBSETS,
                Severity::Info,
                Some(reference),
                format!("subsets become per-version Services: {}", names.join(", ")),
            )
            .fix("oc ambient-waypoint convert")
        } else {
            Finding::new(
                ids::DESTINATIONRULE_SUBSETS,
                Severity::Warn,
                Some(reference),
                format!(
                    "subsets become per-version Services ({}), but not all of it converts: {}",
                    names.join(", "),
                    refusals.join(", ")
                ),
            )
            .fix("decide how to replace these fields before Step 8 removes the DestinationRule")
        });
    }
    for (object, policy) in &context.policies {
        let in_scope = object.metadata.namespace.as_ref().is_some_and(|ns| namespaces.contains(ns));
        if !in_scope || policy.uses_target_refs() {
            continue;
        }
        let l7 = policy.l7_attributes();
        if !l7.is_empty() {
            let reference = ObjectRef::of(object);
            let refusals = view.refusals(&reference);
            let message = format!("uses L7 attributes ({}): needs a waypoint-targeted copy (Step 5.2)", l7.join(", "));
            findings.push(if refusals.is_empty() {
                Finding::new(ids::AUTHZ_NEEDS_WAYPOINT, Severity::Info, Some(reference), message)
                    .fix("oc ambient-waypoint convert")
            } else {
                // Never "convert will do it" where convert refuses (issue 16).
                Finding::new(
                    ids::AUTHZ_NEEDS_WAYPOINT,
                    Severity::Warn,
                    Some(reference),
                    format!("{message}, which the translator cannot make: {}", refusals.join(", ")),
                )
                .fix("rewrite the policy so it converts, or write the waypoint policy by hand before Step 7")
            });
        }
    }
    findings
}

fn short_host(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// Whether the workloads a selector policy applies to still have sidecars enforcing it.
fn selected_pods<'c>(context: &'c MeshContext, namespace: &str, policy: &AuthorizationPolicySpec) -> Vec<&'c Pod<'c>> {
    let empty = BTreeMap::new();
    let selector = policy.selector_labels().unwrap_or(&empty);
    context.app_pods(namespace).filter(|pod| selector_matches(selector, pod.labels)).collect()
}

pub fn policy_traps(snapshot: &Snapshot, context: &MeshContext, namespaces: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (object, policy) in &context.policies {
        let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
        if !namespaces.iter().any(|ns| ns == namespace) {
            continue;
        }
        let reference = Some(ObjectRef::of(object));
        for rule in policy.rules() {
            for condition in &rule.when {
                if !is_valid_condition_key(&condition.key) {
                    findings.push(
                        Finding::new(
                            ids::INVALID_CONDITION_KEY,
                            Severity::Fail,
                            reference.clone(),
                            format!("condition key {:?} is not an AuthorizationPolicy key: the rule never matches, so this policy protects nothing", condition.key),
                        )
                        .fix("for bypass protection use a selector-based DENY with from.source.notPrincipals (AMBIENT-NOTES erratum 1)"),
                    );
                }
            }
        }
        if policy.uses_target_refs() {
            findings.extend(target_ref_traps(snapshot, context, namespace, object, policy));
            continue;
        }
        let pods = selected_pods(context, namespace, policy);
        let ambient_pods = pods.iter().filter(|pod| !pod.sidecar).count();
        // Before the move the sidecars still enforce: a trap ahead (warn); after it, live (fail).
        let severity =
            if ambient_pods > 0 && context.labels(namespace).ambient { Severity::Fail } else { Severity::Warn };
        if policy.action == Action::Deny && policy.has_l7_only_rule() {
            findings.push(
                Finding::new(ids::L7_DENY_NO_EFFECT, severity, reference.clone(), "selector DENY with only L7 attributes: ztunnel silently does not enforce it (Istio 1.27, istio/istio#61126)")
                    .fix("move it to the waypoint (targetRefs) before the pods leave sidecar mode"),
            );
        }
        if policy.action == Action::Allow && !policy.l7_attributes().is_empty() {
            findings.push(
                Finding::new(ids::L7_ALLOW_DENY_ALL, severity, reference.clone(), format!("selector ALLOW with L7 attributes ({}): becomes deny-all at ztunnel once the pods leave sidecar mode", policy.l7_attributes().join(", ")))
                    .fix("create the waypoint copy (targetRefs) in Step 5; in Step 9 pin this policy to the pods that keep their sidecar (security.istio.io/tlsMode=istio) before the restarts and delete it after them, as `oc ambient-enable NAMESPACE` does: deleted earlier, the sidecars stop enforcing it"),
            );
        }
        if policy.action == Action::Allow {
            findings.extend(waypoint_principal_trap(context, namespace, object, policy));
        }
    }
    findings
}

/// A selector L4 ALLOW naming client principals, on a workload whose Service uses (or will use)
/// a waypoint, must also allow the waypoint: ztunnel sees the waypoint's identity.
fn waypoint_principal_trap(
    context: &MeshContext,
    namespace: &str,
    object: &kube_core::DynamicObject,
    policy: &AuthorizationPolicySpec,
) -> Option<Finding> {
    let names_principals = policy.rules().iter().any(|rule| rule.principals().next().is_some());
    // An ALLOW with L7 attributes is deny-all at ztunnel anyway (l7-allow-deny-all says so).
    if !names_principals || !policy.l7_attributes().is_empty() {
        return None;
    }
    if !context.model.needs_waypoint(namespace) {
        return None;
    }
    let allowed: Vec<&String> = policy.rules().iter().flat_map(|rule| rule.principals()).collect();
    let expected = waypoint_principals(context, namespace);
    if expected.iter().any(|principal| allowed.contains(&principal)) {
        return None;
    }
    let active = context.labels(namespace).use_waypoint.is_some();
    Some(
        Finding::new(
            ids::L4_ALLOW_NEEDS_WAYPOINT_PRINCIPAL,
            if active { Severity::Fail } else { Severity::Warn },
            Some(ObjectRef::of(object)),
            format!("allows client principals at ztunnel, which will see the waypoint ({}) instead of the client once the waypoint is active", expected.join(", ")),
        )
        .fix("add the waypoint principal to this policy, or move the client check to a waypoint policy (targetRefs)"),
    )
}

/// targetRefs policies are enforced only by an active waypoint serving the target, and need
/// selector-based bypass protection on the pods behind it.
fn target_ref_traps(
    snapshot: &Snapshot,
    context: &MeshContext,
    namespace: &str,
    object: &kube_core::DynamicObject,
    policy: &AuthorizationPolicySpec,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let reference = Some(ObjectRef::of(object));
    let namespace_waypoint = context.labels(namespace).use_waypoint;
    let waypoint_names: Vec<String> =
        context.model.waypoints_in(namespace).map(|gateway| gateway.name.clone()).collect();
    for target in policy.all_target_refs() {
        if target.kind != "Service" {
            continue;
        }
        let service = snapshot.get(Kind::Service, Some(namespace), &target.name);
        let service_waypoint = service.and_then(|s| labels(s).get(labels::USE_WAYPOINT).cloned());
        let serving = service_waypoint.or(namespace_waypoint.clone()).filter(|name| name != "none");
        let active = serving.as_ref().is_some_and(|name| waypoint_names.contains(name));
        let backing = context.pods_behind(snapshot, namespace, &target.name);
        let sidecars_enforce = !backing.is_empty() && backing.iter().all(|pod| pod.sidecar);
        if !active {
            findings.push(if sidecars_enforce {
                Finding::new(
                    ids::TARGETREFS_WITHOUT_WAYPOINT,
                    Severity::Warn,
                    reference.clone(),
                    format!("Service {} has no active waypoint yet: this policy is not enforced until Step 7 (the sidecars still enforce the original policy)", target.name),
                )
                .fix(format!("activate the waypoint: oc label namespace {namespace} istio.io/use-waypoint=waypoint"))
            } else {
                Finding::new(
                    ids::TARGETREFS_WITHOUT_WAYPOINT,
                    Severity::Fail,
                    reference.clone(),
                    format!("Service {} is served by no active waypoint and its pods have no sidecar: this policy is not enforced at all", target.name),
                )
                .fix(format!("deploy and activate a waypoint for {namespace} (Steps 4 and 7)"))
            });
        }
        let pods_take_bypass = backing.iter().any(|pod| !pod.sidecar || context.labels(namespace).ambient);
        let principals = waypoint_principals(context, namespace);
        let with = |wanted: Protection| -> Vec<&str> {
            backing
                .iter()
                .filter(|pod| protection_of(context, pod, &principals) == wanted)
                .map(|pod| pod.name)
                .collect()
        };
        let missing = with(Protection::Missing);
        if !missing.is_empty() {
            let severity = if active && pods_take_bypass { Severity::Fail } else { Severity::Warn };
            findings.push(
                Finding::new(
                    ids::BYPASS_PROTECTION_MISSING,
                    severity,
                    reference.clone(),
                    format!("pods behind Service {} ({}) accept traffic that skips the waypoint (pod addresses, sidecar clients, ingress gateways): waypoint-only policies are bypassed", target.name, missing.join(", ")),
                )
                .fix("add a selector-based DENY on those pods with from.source.notPrincipals = the waypoint's principal and legitimate skippers (oc ambient-waypoint convert generates it)"),
            );
        }
        let mut too_wide: Vec<String> = Vec::new();
        for pod in &backing {
            for principal in stale_exemptions(context, pod, &principals) {
                if !too_wide.contains(&principal) {
                    too_wide.push(principal);
                }
            }
        }
        if !too_wide.is_empty() {
            findings.push(
                Finding::new(
                    ids::BYPASS_PROTECTION_TOO_WIDE,
                    if active { Severity::Fail } else { Severity::Warn },
                    reference.clone(),
                    format!("the bypass protection on pods behind Service {} still exempts {}, whose pods no longer have sidecars: they can address the pods directly and skip the waypoint's policies", target.name, too_wide.join(", ")),
                )
                .fix("narrow the protection to the waypoint and the callers that still skip it, as `oc ambient-enable NAMESPACE` does after each Step 9 rollout (or regenerate it with oc ambient-waypoint convert)"),
            );
        }
        let denies_waypoint = with(Protection::DeniesWaypoint);
        if !denies_waypoint.is_empty() {
            findings.push(
                Finding::new(
                    ids::BYPASS_PROTECTION_DENIES_WAYPOINT,
                    if active { Severity::Fail } else { Severity::Warn },
                    reference.clone(),
                    format!("the bypass protection on pods behind Service {} ({}) does not exempt the waypoint ({}): every request through the waypoint is denied", target.name, denies_waypoint.join(", "), principals.join(", ")),
                )
                .fix("add the waypoint's principal to from.source.notPrincipals"),
            );
        }
    }
    findings
}
