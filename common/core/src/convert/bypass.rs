//! Rule 5: bypass protection, the guide's Step 5.3 done right (AMBIENT-NOTES, errata 1).
//!
//! A waypoint enforces its policies only on traffic that passes through it. Every Service with
//! waypoint-enforced AuthorizationPolicies therefore gets a **selector** DENY policy on its pods,
//! which ztunnel enforces: deny every source whose principal is not the waypoint's, or one of the
//! callers that legitimately skip the waypoint during the migration:
//!
//! * ingress gateways, which skip the waypoint unless the Service is labelled
//!   `istio.io/ingress-use-waypoint=true`. Labelling is better (the gateway's requests then get
//!   the waypoint's L7 checks), so each such case comes with a warning and a [`LabelChange`];
//! * callers the input shows still running sidecars: they talk to the pods directly.
//!
//! A caller is legitimate when the Service's original ALLOW policies admit its principal (or when
//! no ALLOW policy restricts the Service). Everything else is denied, so the protection never
//! widens what the policies allowed; what the exceptions skip (L7 checks) is named in warnings.
//!
//! DENY policies on the same pods add up (each denies on its own), so when Services share pods,
//! each protection lists the exceptions of all of them; a Service whose pods another protected
//! Service already covers with the same exceptions (a version Service and its host) gets none.
//!
//! An exception for a sidecar caller is right only while the caller has its sidecar: once its
//! pods run in ambient, its requests to a Service pass the waypoint, but its requests to a pod
//! address reach ztunnel directly and the exception lets them through without the waypoint's L7
//! checks (the check's `bypass-protection-too-wide`). [`narrowed_protections`] is the other half
//! of this rule: the protections of a state with every such principal dropped, which Step 9 applies
//! after each rollout that takes the last sidecar of a principal away.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube_core::DynamicObject;
use serde_json::{Map, json};

use super::objects::{Items, generated, invalid_name, is_generated};
use super::policies::Enforced;
use super::scope::{Mesh, service_selector};
use super::{LabelChange, Report};
use crate::change::ResourceRef;
use crate::kinds::Kind;
use crate::mesh::authz::{Action, AuthorizationPolicySpec};
use crate::mesh::labels::INGRESS_USE_WAYPOINT;
use crate::mesh::{ObjectRef, selector_matches, spec};
use crate::model::MeshModel;
use crate::model::waypoint::ISTIO_GATEWAY_LABEL;
use crate::snapshot::Snapshot;

/// Suffix of a bypass protection's name: `<service>-ztunnel-protection`.
const PROTECTION_SUFFIX: &str = "-ztunnel-protection";

/// Who may reach one protected Service's pods without the waypoint.
struct Protection {
    reference: ObjectRef,
    sources: Vec<ObjectRef>,
    selector: BTreeMap<String, String>,
    exceptions: BTreeSet<String>,
}

pub(crate) fn protect(
    mesh: &Mesh,
    enforced: &Enforced,
    version_services: &[DynamicObject],
    out: &mut Items,
    report: &mut Report,
) -> Vec<LabelChange> {
    let mut label_changes = Vec::new();
    let mut by_namespace: BTreeMap<&str, Vec<Protection>> = BTreeMap::new();
    // Looked up once, not per protected Service, so the pass stays linear in the mesh.
    let version_services: BTreeMap<(Option<&str>, Option<&str>), &DynamicObject> = version_services
        .iter()
        .map(|service| ((service.metadata.namespace.as_deref(), service.metadata.name.as_deref()), service))
        .collect();
    let ingress_gateways = mesh.ingress_gateway_principals();
    let sidecar_callers = mesh.sidecar_callers();
    for ((namespace, name), sources) in &enforced.services {
        let Some(service) = mesh
            .service(namespace, name)
            .or_else(|| version_services.get(&(Some(namespace.as_str()), Some(name.as_str()))).copied())
        else {
            for source in sources {
                report.unsupported(
                    source,
                    "spec.targetRefs",
                    format!("Service {namespace}/{name} is not in the input: its pods cannot be protected"),
                );
            }
            continue;
        };
        let reference = ObjectRef::new("Service", Some(namespace), name);
        let selector = service_selector(service);
        if selector.is_empty() {
            report.unsupported(
                &reference,
                "spec.selector",
                "no selector: its pods cannot be protected against callers that skip the waypoint",
            );
            continue;
        }
        let Some(waypoint) = mesh.service_waypoint_principal(namespace, name) else {
            report.unsupported(
                &reference,
                "spec.selector",
                "bypass protection needs the waypoint principal, which is unknown (trust domain); pass --trust-domain",
            );
            continue;
        };
        let mut exceptions = BTreeSet::from([waypoint]);
        let admits = admitted_callers(mesh, sources);
        if admits.any {
            report.warn(
                &reference,
                "no ALLOW policy restricted the callers of this Service: the protection now also denies callers \
                 without a mesh identity (plaintext clients outside the mesh, such as metrics scrapers), which \
                 reached its pods before",
            );
        }
        let is_input_service = mesh.service(namespace, name).is_some();
        // The label routes the gateway through the waypoint only once the waypoint is in use; before
        // that (Step 5 sets the label) the gateway still skips it, and a rerun must say the same.
        let routed_through_waypoint =
            crate::mesh::ingress_uses_waypoint(service) && mesh.model.namespace(namespace).use_waypoint.is_some();
        if !routed_through_waypoint {
            for gateway in ingress_gateways.iter().filter(|p| admits.admit(p)).cloned() {
                report.warn(
                    &reference,
                    format!(
                        "ingress gateway {gateway} skips the waypoint (the Service is not labelled \
                         {INGRESS_USE_WAYPOINT}=true), so its requests get no L7 checks and the protection lets it \
                         through; better: label the Service (see the label changes) and drop it from the protection"
                    ),
                );
                exceptions.insert(gateway);
                if is_input_service {
                    label_changes.push(label_change(ResourceRef::new(Kind::Service, Some(namespace), name)));
                }
            }
        }
        for (caller, principal) in sidecar_callers.admitted(mesh.workloads(), &admits) {
            if admits.admit(principal) && exceptions.insert(principal.clone()) {
                report.warn(
                    &reference,
                    format!(
                        "{} still runs a sidecar and skips the waypoint: the protection lets {principal} through, \
                         without the waypoint's L7 checks, until it moves to ambient",
                        caller.source.clone()
                    ),
                );
            }
        }
        by_namespace.entry(namespace.as_str()).or_default().push(Protection {
            reference,
            sources: sources.clone(),
            selector,
            exceptions,
        });
    }
    label_changes.dedup();
    label_services_sharing_pods(mesh, &mut label_changes, out);

    for (namespace, protections) in by_namespace {
        let merged = merge_shared_pods(mesh, namespace, &protections, report);
        for (index, protection) in protections.iter().enumerate() {
            let covered = protections.iter().enumerate().any(|(other, covering)| {
                other != index
                    && merged[other] == merged[index]
                    && covering.selector.len() < protection.selector.len()
                    && covering.selector.iter().all(|(k, v)| protection.selector.get(k) == Some(v))
            });
            if !covered {
                emit(namespace, protection, &merged[index], out, report);
            }
        }
    }
    label_changes
}

/// A version Service is another name for some of its host's pods: when the host is labelled to
/// route ingress traffic through the waypoint, so is every Service that selects a subset of its
/// pods (a version Service of the input, or one generated here), or an ingress gateway calling it
/// would skip the waypoint and, once its exception goes (Step 9), be denied where the sidecar era
/// let it through.
fn label_services_sharing_pods(mesh: &Mesh, label_changes: &mut Vec<LabelChange>, out: &mut Items) {
    let hosts: Vec<ResourceRef> = label_changes.iter().map(|change| change.object.clone()).collect();
    for host in hosts {
        let namespace = host.namespace.as_deref().unwrap_or_default();
        let Some(host_service) = mesh.service(namespace, &host.name) else { continue };
        let host_selector = service_selector(host_service);
        let narrower = |service: &DynamicObject| {
            let selector = service_selector(service);
            selector.len() > host_selector.len()
                && host_selector.iter().all(|(key, value)| selector.get(key) == Some(value))
        };
        for service in mesh.snapshot.in_namespace(Kind::Service, namespace).filter(|service| narrower(service)) {
            let target =
                ResourceRef::new(Kind::Service, Some(namespace), service.metadata.name.as_deref().unwrap_or_default());
            let labelled = crate::mesh::ingress_uses_waypoint(service);
            if !labelled && !is_generated(service) && !label_changes.iter().any(|change| change.object == target) {
                label_changes.push(label_change(target));
            }
        }
        for item in out.items_mut() {
            let is_service = item.types.as_ref().is_some_and(|types| types.kind == "Service");
            if is_service && item.metadata.namespace.as_deref() == Some(namespace) && narrower(item) {
                item.metadata
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(INGRESS_USE_WAYPOINT.into(), "true".into());
            }
        }
    }
}

/// The exceptions of each protection, widened by those of the protections sharing its pods.
fn merge_shared_pods(
    mesh: &Mesh,
    namespace: &str,
    protections: &[Protection],
    report: &mut Report,
) -> Vec<BTreeSet<String>> {
    // Which protections select each workload, so that sharing is found per pod, not by testing
    // every pair of Services against every pod (cubic in a namespace's size).
    let selected: Vec<Vec<usize>> =
        protections.iter().map(|protection| mesh.selected_positions(namespace, &protection.selector)).collect();
    let mut selecting: HashMap<usize, Vec<usize>> = HashMap::new();
    for (index, positions) in selected.iter().enumerate() {
        for position in positions {
            selecting.entry(*position).or_default().push(index);
        }
    }
    protections
        .iter()
        .zip(&selected)
        .map(|(protection, positions)| {
            let mut merged = protection.exceptions.clone();
            let sharing: BTreeSet<usize> =
                positions.iter().filter_map(|position| selecting.get(position)).flatten().copied().collect();
            for other in sharing.into_iter().map(|index| &protections[index]) {
                if !other.exceptions.is_subset(&protection.exceptions) {
                    merged.extend(other.exceptions.iter().cloned());
                    report.warn(
                        &protection.reference,
                        format!(
                            "shares pods with Service {}: DENY policies on the same pods add up, so its protection \
                             also lets through the callers allowed for that Service",
                            other.reference.name
                        ),
                    );
                }
            }
            merged
        })
        .collect()
}

fn emit(namespace: &str, protection: &Protection, exceptions: &BTreeSet<String>, out: &mut Items, report: &mut Report) {
    let name = format!("{}{PROTECTION_SUFFIX}", protection.reference.name);
    if let Some(reason) =
        invalid_name(&name, false).or_else(|| out.name_taken(Kind::AuthorizationPolicy, namespace, &name))
    {
        report.unsupported(&protection.reference, "metadata.name", reason);
        return;
    }
    let mut body = Map::new();
    body.insert(
        "spec".into(),
        json!({
            "selector": {"matchLabels": protection.selector},
            "action": "DENY",
            "rules": [{"from": [{"source": {"notPrincipals": exceptions}}]}],
        }),
    );
    let mut sources = vec![protection.reference.clone()];
    sources.extend(protection.sources.iter().cloned());
    out.add(generated(Kind::AuthorizationPolicy, namespace, &name, &sources, body), report);
}

/// The bypass protections of `snapshot` (generated by an earlier conversion) that exempt a
/// principal which no longer skips the waypoint, each narrowed to the exceptions that remain, as
/// objects to apply with the suite's field manager (the whole object, so server-side apply keeps
/// every field the suite owns).
///
/// A principal stays exempt while a workload holding it still skips the waypoint: it runs a
/// sidecar, it is a waypoint, or it is an ingress gateway and the protected Service is not
/// labelled `istio.io/ingress-use-waypoint=true` (Step 5 labels it where it can). A principal no
/// workload in the state holds is kept: a caller the state does not show is not judged.
pub fn narrowed_protections(snapshot: &Snapshot) -> Vec<DynamicObject> {
    let model = MeshModel::new(snapshot);
    let principal_of = |workload: &crate::model::Workload| workload.principal();
    let held: BTreeSet<String> = model.workloads().iter().filter_map(principal_of).collect();
    // A gateway's pods run their own proxy, which the model counts as a sidecar; gateways are
    // judged as gateways below.
    let sidecars: BTreeSet<String> = model
        .workloads()
        .iter()
        .filter(|workload| workload.has_sidecar() && workload.gateway.is_none())
        .filter_map(principal_of)
        .collect();
    let (waypoints, ingress): (Vec<_>, Vec<_>) = model.gateways().iter().partition(|gateway| gateway.is_waypoint());
    let gateway_principals = |gateways: Vec<&crate::model::waypoint::Gateway>| -> BTreeSet<String> {
        gateways
            .into_iter()
            .filter_map(|gateway| model.principal(&gateway.namespace, &gateway.service_account))
            .collect()
    };
    let waypoints = gateway_principals(waypoints);
    let mut ingress = gateway_principals(ingress);
    ingress.extend(
        model
            .workloads()
            .iter()
            .filter(|workload| workload.labels.get(ISTIO_GATEWAY_LABEL).map(String::as_str) == Some("ingressgateway"))
            .filter_map(principal_of),
    );
    snapshot
        .all(Kind::AuthorizationPolicy)
        .iter()
        .filter(|policy| is_protection(policy))
        .filter_map(|policy| {
            let exceptions = policy.data.pointer(EXCEPTIONS)?.as_array()?;
            let ingress_skips = !ingress_reaches_only_through_waypoint(&model, policy);
            let stale = |principal: &str| {
                let known = held.contains(principal) || ingress.contains(principal);
                let skips = sidecars.contains(principal)
                    || waypoints.contains(principal)
                    || (ingress_skips && ingress.contains(principal));
                known && !skips
            };
            let kept: Vec<_> =
                exceptions.iter().filter(|principal| !principal.as_str().is_some_and(stale)).cloned().collect();
            (kept.len() < exceptions.len()).then(|| narrowed(policy, kept))
        })
        .collect()
}

/// The namespace's waypoint is in use and every Service that selects a pod `protection` protects
/// is labelled to send ingress traffic through it, so an ingress gateway reaches those pods only
/// through the waypoint.
fn ingress_reaches_only_through_waypoint(model: &MeshModel, protection: &DynamicObject) -> bool {
    let Some(namespace) = protection.metadata.namespace.as_deref() else { return false };
    if model.namespace(namespace).use_waypoint.is_none() {
        return false;
    }
    let selector: BTreeMap<String, String> = protection
        .data
        .pointer("/spec/selector/matchLabels")
        .and_then(|labels| serde_json::from_value(labels.clone()).ok())
        .unwrap_or_default();
    let protected: Vec<_> =
        model.workloads_in(namespace).filter(|workload| selector_matches(&selector, &workload.labels)).collect();
    model.snapshot.in_namespace(Kind::Service, namespace).all(|service| {
        let selector = service_selector(service);
        let reaches =
            !selector.is_empty() && protected.iter().any(|workload| selector_matches(&selector, &workload.labels));
        !reaches || crate::mesh::ingress_uses_waypoint(service)
    })
}

/// Where a protection lists its exceptions (see [`emit`]).
const EXCEPTIONS: &str = "/spec/rules/0/from/0/source/notPrincipals";

fn is_protection(policy: &DynamicObject) -> bool {
    is_generated(policy)
        && policy.metadata.name.as_deref().is_some_and(|name| name.ends_with(PROTECTION_SUFFIX))
        && policy.data.pointer("/spec/action").and_then(serde_json::Value::as_str) == Some("DENY")
}

/// `policy` as the suite applies it (no server-set fields), with `exceptions`.
fn narrowed(policy: &DynamicObject, exceptions: Vec<serde_json::Value>) -> DynamicObject {
    let mut data = policy.data.clone();
    if let Some(list) = data.pointer_mut(EXCEPTIONS) {
        *list = serde_json::Value::Array(exceptions);
    }
    if let Some(fields) = data.as_object_mut() {
        fields.remove("status");
    }
    DynamicObject {
        types: policy.types.clone(),
        metadata: kube_core::ObjectMeta {
            name: policy.metadata.name.clone(),
            namespace: policy.metadata.namespace.clone(),
            labels: policy.metadata.labels.clone(),
            annotations: policy.metadata.annotations.clone(),
            ..kube_core::ObjectMeta::default()
        },
        data,
    }
}

/// The workloads that still run a sidecar, with their principals, in the model's order: callers
/// that skip the waypoint, which a protection must let through when their policies admit them.
pub(crate) struct SidecarCallers {
    /// Positions in the model's workloads, with the principal.
    callers: Vec<(usize, String)>,
    by_principal: BTreeMap<String, Vec<usize>>,
}

impl SidecarCallers {
    pub(crate) fn new(model: &MeshModel) -> Self {
        let callers: Vec<_> = model
            .workloads()
            .iter()
            .enumerate()
            .filter(|(_, workload)| workload.has_sidecar())
            .filter_map(|(position, workload)| {
                Some((position, model.principal(&workload.namespace, &workload.service_account)?))
            })
            .collect();
        let mut by_principal: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, (_, principal)) in callers.iter().enumerate() {
            by_principal.entry(principal.clone()).or_default().push(index);
        }
        SidecarCallers { callers, by_principal }
    }

    /// The callers `admits` may admit, in order, among `workloads` (the model's): only those
    /// named, when every pattern is exact (the common case, and linear overall), else all of
    /// them, for the caller to match.
    fn admitted<'s, 'w>(
        &'s self,
        workloads: &'w [crate::model::Workload],
        admits: &Admitted,
    ) -> impl Iterator<Item = (&'w crate::model::Workload, &'s String)> {
        let exact = !admits.any && admits.patterns.iter().all(|pattern| !pattern.contains('*'));
        let positions: Vec<usize> = if exact {
            let mut named: Vec<usize> = admits
                .patterns
                .iter()
                .filter_map(|pattern| self.by_principal.get(pattern))
                .flatten()
                .copied()
                .collect();
            named.sort_unstable();
            named
        } else {
            (0..self.callers.len()).collect()
        };
        positions.into_iter().map(move |position| {
            let (workload, principal) = &self.callers[position];
            (&workloads[*workload], principal)
        })
    }
}

/// Principals the ALLOW policies among `sources` admit (all, when none restricts sources).
struct Admitted {
    any: bool,
    patterns: BTreeSet<String>,
}

impl Admitted {
    fn admit(&self, principal: &str) -> bool {
        self.any || self.patterns.iter().any(|pattern| principal_matches(pattern, principal))
    }
}

fn admitted_callers(mesh: &Mesh, sources: &[ObjectRef]) -> Admitted {
    let mut admitted = Admitted { any: true, patterns: BTreeSet::new() };
    for source in sources {
        let Some(policy) = mesh.snapshot.get(Kind::AuthorizationPolicy, source.namespace.as_deref(), &source.name)
        else {
            continue;
        };
        let Ok(authz) = spec::<AuthorizationPolicySpec>(policy) else { continue };
        if authz.action != Action::Allow {
            continue;
        }
        admitted.any = false;
        for rule in authz.rules() {
            // A rule that names no peer identity (none at all, or only end-user tokens:
            // `requestPrincipals`, which any caller may present) admits every caller.
            if rule.from.is_empty() || rule.from.iter().any(|from| names_no_peer(&from.source)) {
                admitted.any = true;
            }
            admitted.patterns.extend(rule.principals().cloned());
        }
    }
    admitted
}

/// A source that restricts nothing about the peer (its principal, namespace, service account or
/// address): only request attributes such as `requestPrincipals`, if anything.
fn names_no_peer(source: &crate::mesh::authz::Source) -> bool {
    [
        &source.principals,
        &source.not_principals,
        &source.namespaces,
        &source.not_namespaces,
        &source.service_accounts,
        &source.not_service_accounts,
        &source.ip_blocks,
        &source.not_ip_blocks,
        &source.remote_ip_blocks,
        &source.not_remote_ip_blocks,
    ]
    .iter()
    .all(|values| values.is_empty())
}

/// Istio's principal matching: exact, `*`, `prefix*` or `*suffix`.
fn principal_matches(pattern: &str, principal: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return principal.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return principal.ends_with(suffix);
    }
    pattern == principal
}

/// The ingress-use-waypoint label as a server-side-apply patch (see [`LabelChange`]).
fn label_change(service: ResourceRef) -> LabelChange {
    let labels = BTreeMap::from([(INGRESS_USE_WAYPOINT.to_string(), "true".to_string())]);
    LabelChange {
        patch: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service.name, "namespace": service.namespace, "labels": labels},
        }),
        object: service,
        labels,
        reason: "route the ingress gateway through the waypoint instead of exempting it from the bypass protection"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::scope::tests::snapshot_of;
    use super::super::{Conversion, ConvertOptions, convert};
    use super::*;

    const INPUT: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: front, namespace: shop}
spec: {template: {metadata: {labels: {app: front}}, spec: {serviceAccountName: front}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: back, namespace: shop}
spec: {template: {metadata: {labels: {app: back}}, spec: {serviceAccountName: back}}}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy-client, namespace: old, annotations: {sidecar.istio.io/status: '{}'}}
spec: {serviceAccountName: legacy, containers: [{name: app}, {name: istio-proxy}]}
---
apiVersion: v1
kind: Service
metadata: {name: front, namespace: shop}
spec: {selector: {app: front}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: back, namespace: shop}
spec: {selector: {app: back}, ports: [{port: 80}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: front, namespace: shop}
spec:
  selector: {matchLabels: {app: front}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/edge-istio]}}]
    to: [{operation: {methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: back, namespace: shop}
spec:
  selector: {matchLabels: {app: back}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/front, 'cluster.local/ns/old/*']}}]
    to: [{operation: {methods: [GET]}}]
";

    fn protection(conversion: &Conversion, service: &str) -> Option<serde_json::Value> {
        let name = format!("{service}-ztunnel-protection");
        conversion
            .items
            .iter()
            .find(|item| item.metadata.name.as_deref() == Some(name.as_str()))
            .map(|item| item.data["spec"].clone())
    }

    #[test]
    fn protection_denies_all_but_the_waypoint_and_legitimate_skippers() {
        let conversion = convert(&snapshot_of(INPUT), &ConvertOptions::default());
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert_eq!(
            protection(&conversion, "front"),
            Some(json!({
                "selector": {"matchLabels": {"app": "front"}},
                "action": "DENY",
                "rules": [{"from": [{"source": {"notPrincipals": [
                    "cluster.local/ns/shop/sa/edge-istio", "cluster.local/ns/shop/sa/waypoint"
                ]}}]}]
            })),
            "the ingress gateway is allowed to call front and skips the waypoint"
        );
        assert_eq!(
            protection(&conversion, "back").map(|spec| spec["rules"][0]["from"][0]["source"]["notPrincipals"].clone()),
            Some(json!(["cluster.local/ns/old/sa/legacy", "cluster.local/ns/shop/sa/waypoint"])),
            "the sidecar caller admitted by the wildcard is let through; the gateway, not admitted, is not"
        );
        assert_eq!(conversion.label_changes.len(), 1);
        assert_eq!(conversion.label_changes[0].object, ResourceRef::new(Kind::Service, Some("shop"), "front"));
        assert_eq!(
            conversion.label_changes[0].command(),
            "oc label service -n shop front istio.io/ingress-use-waypoint=true"
        );
        assert!(
            conversion.warnings.iter().any(|w| w.object.name == "front" && w.message.contains("skips the waypoint"))
        );
        assert!(
            conversion.warnings.iter().any(|w| w.object.name == "back" && w.message.contains("still runs a sidecar"))
        );
    }

    #[test]
    fn without_an_allow_policy_every_skipper_is_legitimate_and_plaintext_callers_are_warned_about() {
        let input = format!(
            "{INPUT}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: solo, namespace: shop}}
spec: {{template: {{metadata: {{labels: {{app: solo}}}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: solo, namespace: shop}}
spec: {{selector: {{app: solo}}, ports: [{{port: 80}}]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: solo, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: solo}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: [/admin]}}}}]}}]
"
        );
        let conversion = convert(&snapshot_of(&input), &ConvertOptions::default());
        assert_eq!(
            protection(&conversion, "solo").map(|spec| spec["rules"][0]["from"][0]["source"]["notPrincipals"].clone()),
            Some(json!([
                "cluster.local/ns/old/sa/legacy",
                "cluster.local/ns/shop/sa/edge-istio",
                "cluster.local/ns/shop/sa/waypoint"
            ]))
        );
        assert!(conversion.warnings.iter().any(|w| w.object.name == "solo" && w.message.contains("plaintext")));
    }

    #[test]
    fn a_labelled_service_needs_no_gateway_exception_once_the_waypoint_is_in_use() {
        let labelled = INPUT.replace(
            "metadata: {name: front, namespace: shop}\nspec: {selector",
            "metadata: {name: front, namespace: shop, labels: {istio.io/ingress-use-waypoint: 'true'}}\nspec: {selector",
        );
        let exceptions = |input: &str| {
            let conversion = convert(&snapshot_of(input), &ConvertOptions::default());
            protection(&conversion, "front").map(|spec| spec["rules"][0]["from"][0]["source"]["notPrincipals"].clone())
        };
        // Step 5 labels the Service, but until Step 7 the gateway still skips the waypoint: a
        // rerun of the conversion then must not drop its exception.
        assert_eq!(
            exceptions(&labelled),
            Some(json!(["cluster.local/ns/shop/sa/edge-istio", "cluster.local/ns/shop/sa/waypoint"]))
        );
        let active = format!(
            "{labelled}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, labels: {{istio.io/use-waypoint: waypoint}}}}\n"
        );
        assert_eq!(exceptions(&active), Some(json!(["cluster.local/ns/shop/sa/waypoint"])));
        assert!(convert(&snapshot_of(&active), &ConvertOptions::default()).label_changes.is_empty());
    }

    #[test]
    fn services_sharing_pods_share_exceptions() {
        let input = format!(
            "{INPUT}---
apiVersion: v1
kind: Service
metadata: {{name: both, namespace: shop}}
spec: {{selector: {{app: back}}, ports: [{{port: 81}}]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: both, namespace: shop}}
spec:
  targetRefs: [{{group: '', kind: Service, name: both}}]
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/shop/sa/edge-istio]}}}}]}}]
"
        );
        let conversion = convert(&snapshot_of(&input), &ConvertOptions::default());
        let back = protection(&conversion, "back").expect("back protected");
        let both = protection(&conversion, "both").expect("both protected");
        assert_eq!(back["rules"], both["rules"], "DENYs on the same pods must agree");
        assert!(conversion.warnings.iter().any(|w| w.message.contains("shares pods with Service both")));
        assert!(
            !conversion.warnings.iter().any(|w| w.message.contains("plaintext")),
            "every protected Service had an ALLOW policy"
        );
    }

    #[test]
    fn an_unknown_waypoint_principal_leaves_services_unprotected_and_says_so() {
        let conflicting = "---
apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: a}
spec: {values: {meshConfig: {trustDomain: a.example}}}
---
apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: b}
spec: {}";
        let conversion = convert(&snapshot_of(&format!("{INPUT}{conflicting}")), &ConvertOptions::default());
        assert!(protection(&conversion, "front").is_none());
        assert!(
            conversion.unsupported.iter().any(|u| u.object == ObjectRef::new("Service", Some("shop"), "front")
                && u.reason.contains("waypoint principal")),
            "{:?}",
            conversion.unsupported
        );
        assert!(!conversion.is_faithful());
    }

    /// `INPUT` converted and applied, with one running pod per Deployment (a sidecar where
    /// `sidecars` names it) and the ingress gateway's pod.
    fn converted_with_pods(input: &str, sidecars: &[&str]) -> Snapshot {
        let snapshot = snapshot_of(input);
        let conversion = convert(&snapshot, &ConvertOptions::default());
        let mut objects: Vec<DynamicObject> = crate::kinds::ALL
            .iter()
            .flat_map(|info| snapshot.all(info.kind).iter().cloned())
            .chain(conversion.items)
            .collect();
        for (name, account, labels) in [
            ("front", "front", json!({"app": "front"})),
            ("back", "back", json!({"app": "back"})),
            ("edge", "edge-istio", json!({"gateway.networking.k8s.io/gateway-name": "edge"})),
        ] {
            let mut containers = vec![json!({"name": "app"})];
            if sidecars.contains(&name) || name == "edge" {
                containers.push(json!({"name": "istio-proxy"}));
            }
            objects.push(
                serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{name}-1"), "namespace": "shop", "labels": labels},
                    "spec": {"serviceAccountName": account, "containers": containers},
                    "status": {"phase": "Running"}}))
                .unwrap(),
            );
        }
        Snapshot::from_objects(objects)
    }

    fn exceptions_after_narrowing(snapshot: &Snapshot, service: &str) -> Option<serde_json::Value> {
        let name = format!("{service}{PROTECTION_SUFFIX}");
        narrowed_protections(snapshot)
            .into_iter()
            .find(|policy| policy.metadata.name.as_deref() == Some(name.as_str()))
            .map(|policy| policy.data.pointer(EXCEPTIONS).cloned().unwrap_or_default())
    }

    #[test]
    fn narrowing_drops_a_caller_once_its_last_sidecar_is_gone() {
        // `old/legacy` is exempt from back's protection while it has a sidecar (see above).
        let with_sidecar = converted_with_pods(INPUT, &["front", "back"]);
        assert_eq!(exceptions_after_narrowing(&with_sidecar, "back"), None, "legacy still has its sidecar");
        // Step 9 in `old`: enrolled in ambient, the client restarted without its sidecar.
        let mut objects: Vec<DynamicObject> =
            crate::kinds::ALL.iter().flat_map(|info| with_sidecar.all(info.kind).iter().cloned()).collect();
        for object in objects.iter_mut().filter(|object| object.metadata.name.as_deref() == Some("legacy-client")) {
            object.metadata.annotations = None;
            object.data["spec"]["containers"] = json!([{"name": "app"}]);
        }
        objects.push(
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "old", "labels": {"istio.io/dataplane-mode": "ambient"}}}))
            .unwrap(),
        );
        let ambient_legacy = Snapshot::from_objects(objects);
        assert_eq!(
            exceptions_after_narrowing(&ambient_legacy, "back"),
            Some(json!(["cluster.local/ns/shop/sa/waypoint"]))
        );
    }

    #[test]
    fn narrowing_drops_the_ingress_gateway_only_where_every_service_of_the_pods_is_labelled() {
        let snapshot = converted_with_pods(INPUT, &[]);
        assert_eq!(
            exceptions_after_narrowing(&snapshot, "front"),
            None,
            "front is not labelled: the gateway still skips the waypoint, its proxy is no sidecar caller"
        );
        let labelled = INPUT.replace(
            "metadata: {name: front, namespace: shop}\nspec: {selector",
            "metadata: {name: front, namespace: shop, labels: {istio.io/ingress-use-waypoint: 'true'}}\nspec: {selector",
        );
        let mut objects: Vec<DynamicObject> = crate::kinds::ALL
            .iter()
            .flat_map(|info| snapshot.all(info.kind).iter().cloned())
            .filter(|object| {
                !(object.types.as_ref().is_some_and(|t| t.kind == "Service")
                    && object.metadata.name.as_deref() == Some("front"))
            })
            .collect();
        objects.extend(
            snapshot_of(&labelled)
                .all(Kind::Service)
                .iter()
                .filter(|s| s.metadata.name.as_deref() == Some("front"))
                .cloned(),
        );
        let labelled = Snapshot::from_objects(objects.clone());
        assert_eq!(exceptions_after_narrowing(&labelled, "front"), None, "the waypoint is not in use yet");
        objects.push(
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "shop", "labels": {"istio.io/use-waypoint": "waypoint"}}}))
            .unwrap(),
        );
        let labelled = Snapshot::from_objects(objects);
        assert_eq!(exceptions_after_narrowing(&labelled, "front"), Some(json!(["cluster.local/ns/shop/sa/waypoint"])));
        assert!(
            narrowed_protections(&labelled).iter().all(|policy| is_protection(policy) && policy.metadata.uid.is_none())
        );
    }

    #[test]
    fn principals_match_like_istio() {
        assert!(principal_matches("*", "a"));
        assert!(principal_matches("cluster.local/ns/x/*", "cluster.local/ns/x/sa/y"));
        assert!(principal_matches("*/sa/y", "cluster.local/ns/x/sa/y"));
        assert!(!principal_matches("cluster.local/ns/x/sa/y", "cluster.local/ns/x/sa/z"));
    }
}
