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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube_core::DynamicObject;
use serde_json::{Map, json};

use super::objects::{Items, generated, invalid_name};
use super::policies::Enforced;
use super::scope::{Mesh, service_selector};
use super::{LabelChange, Report};
use crate::change::ResourceRef;
use crate::kinds::Kind;
use crate::mesh::authz::{Action, AuthorizationPolicySpec};
use crate::mesh::labels::INGRESS_USE_WAYPOINT;
use crate::mesh::{ObjectRef, labels, spec};

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
    let sidecar_callers = SidecarCallers::new(mesh);
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
        let Some(waypoint) = mesh.waypoint_principal(namespace) else {
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
        let labelled = labels(service).get(INGRESS_USE_WAYPOINT).map(String::as_str) == Some("true");
        if !labelled {
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
        for (caller, principal) in sidecar_callers.admitted(&admits) {
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
    let name = format!("{}-ztunnel-protection", protection.reference.name);
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

/// The workloads that still run a sidecar, with their principals, in the model's order: callers
/// that skip the waypoint, which a protection must let through when their policies admit them.
struct SidecarCallers<'m> {
    callers: Vec<(&'m crate::model::Workload, String)>,
    by_principal: BTreeMap<String, Vec<usize>>,
}

impl<'m> SidecarCallers<'m> {
    fn new(mesh: &'m Mesh) -> Self {
        let callers: Vec<_> = mesh
            .workloads()
            .iter()
            .filter(|workload| workload.has_sidecar())
            .filter_map(|workload| Some((workload, mesh.principal(&workload.namespace, &workload.service_account)?)))
            .collect();
        let mut by_principal: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, (_, principal)) in callers.iter().enumerate() {
            by_principal.entry(principal.clone()).or_default().push(index);
        }
        SidecarCallers { callers, by_principal }
    }

    /// The callers `admits` may admit, in order: only those named, when every pattern is exact
    /// (the common case, and linear overall), else all of them, for the caller to match.
    fn admitted(&self, admits: &Admitted) -> impl Iterator<Item = &(&'m crate::model::Workload, String)> {
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
        positions.into_iter().map(|position| &self.callers[position])
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
            if rule.from.is_empty() {
                admitted.any = true;
            }
            admitted.patterns.extend(rule.principals().cloned());
        }
    }
    admitted
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
    fn a_labelled_service_needs_no_gateway_exception() {
        let input = INPUT.replace(
            "metadata: {name: front, namespace: shop}\nspec: {selector",
            "metadata: {name: front, namespace: shop, labels: {istio.io/ingress-use-waypoint: 'true'}}\nspec: {selector",
        );
        let conversion = convert(&snapshot_of(&input), &ConvertOptions::default());
        assert_eq!(
            protection(&conversion, "front").map(|spec| spec["rules"][0]["from"][0]["source"]["notPrincipals"].clone()),
            Some(json!(["cluster.local/ns/shop/sa/waypoint"]))
        );
        assert!(conversion.label_changes.is_empty());
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

    #[test]
    fn principals_match_like_istio() {
        assert!(principal_matches("*", "a"));
        assert!(principal_matches("cluster.local/ns/x/*", "cluster.local/ns/x/sa/y"));
        assert!(principal_matches("*/sa/y", "cluster.local/ns/x/sa/y"));
        assert!(!principal_matches("cluster.local/ns/x/sa/y", "cluster.local/ns/x/sa/z"));
    }
}
