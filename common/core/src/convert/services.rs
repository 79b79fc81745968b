//! Rule 1: DestinationRule subsets become per-version Services.
//!
//! Gateway API routes to Services, not to subsets, so each subset a converted route uses becomes a
//! Service `<host>-<subset>` in the host's namespace (the guide's Step 5.1.1): the host Service's
//! selector plus the subset's labels, and the host's ports. The DestinationRule is looked up as
//! Istio does, in the route's namespace first, then in the host's.
//!
//! Traffic policies follow the traffic: a DestinationRule's policies (load balancer, connection
//! pool, outlier detection, TLS) apply to the host it names, so once the routes target the
//! version Services, each version Service gets a DestinationRule of its own, named after it, with
//! the rule's top-level policy overlaid by the subset's (Istio's merge: a setting given at subset
//! level replaces the destination-level one). In ambient a waypoint applies them. The host
//! Service, which routes may still target, keeps its top-level policy through a rule of its own,
//! `<rule>-host` without subsets, so the original can still be deleted in Step 8 (which counts
//! subset rules as leftovers). `tls.mode: ISTIO_MUTUAL` is not carried: ambient's HBONE mTLS does
//! it (a warning).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kube_core::DynamicObject;
use serde_json::{Map, Value, json};

use super::Report;
use super::objects::{Items, generated, is_generated};
use super::routes::{Routed, SubsetUse};
use super::scope::{Mesh, service_ports, service_selector};
use crate::change::ResourceRef;
use crate::kinds::Kind;
use crate::mesh::networking::{DestinationRuleSpec, service_of_host};
use crate::mesh::{ObjectRef, spec};
use crate::snapshot::Snapshot;

#[derive(Debug, Default)]
pub struct VersionServices {
    /// The Services generated (or found in the input) for subsets.
    pub services: Vec<DynamicObject>,
    /// DestinationRules whose used subsets all became Services.
    pub replaced: Vec<ResourceRef>,
}

/// Ports fields a version Service copies from its host Service.
const PORT_FIELDS: &[&str] = &["name", "port", "targetPort", "protocol", "appProtocol"];

pub(crate) fn convert_subsets(mesh: &Mesh, routed: &Routed, out: &mut Items, report: &mut Report) -> VersionServices {
    let mut result = VersionServices::default();
    let mut uses: BTreeMap<(&str, &str, &str), Vec<&SubsetUse>> = BTreeMap::new();
    for subset_use in &routed.subsets {
        let key = (subset_use.namespace.as_str(), subset_use.service.as_str(), subset_use.subset.as_str());
        uses.entry(key).or_default().push(subset_use);
    }
    let rules = mesh.destination_rules();
    let mut used_rules: Vec<ObjectRef> = Vec::new();
    let mut host_rules: HashSet<ObjectRef> = HashSet::new();
    let mut seen_rules: HashSet<ObjectRef> = HashSet::new();
    for ((namespace, service_name, subset), users) in uses {
        let Some(service) = mesh.service(namespace, service_name) else { continue };
        let Some(first) = users.first().copied() else { continue };
        let Some(rule) = rules.find(mesh.snapshot, &first.route, namespace, service_name) else {
            for user in &users {
                report.unsupported(
                    &user.route,
                    &user.field,
                    format!("no DestinationRule for {namespace}/{service_name} defines subset {subset}"),
                );
            }
            continue;
        };
        let rule_ref = ObjectRef::of(rule);
        if seen_rules.insert(rule_ref.clone()) {
            used_rules.push(rule_ref.clone());
        }
        let rule_spec: DestinationRuleSpec = match spec(rule) {
            Ok(rule_spec) => rule_spec,
            Err(err) => {
                report.unsupported(&rule_ref, "spec", err);
                continue;
            }
        };
        if let Some(policy) = report_host_policy(&rule_ref, &rule_spec, report)
            && host_rules.insert(rule_ref.clone())
        {
            // The host keeps its policy after the rule (with its subsets) is deleted in Step 8.
            let mut body = Map::new();
            body.insert("spec".into(), json!({"host": rule_spec.host, "trafficPolicy": policy}));
            let rule_namespace = rule_ref.namespace.as_deref().unwrap_or(namespace);
            let name = format!("{}-host", rule_ref.name);
            out.add(
                generated(Kind::DestinationRule, rule_namespace, &name, std::slice::from_ref(&rule_ref), body),
                report,
            );
        }
        let Some((index, found)) = rule_spec.subsets.iter().enumerate().find(|(_, s)| s.name == subset) else {
            for user in &users {
                report.unsupported(&user.route, &user.field, format!("{rule_ref} has no subset {subset}"));
            }
            continue;
        };
        let carried =
            carried_policy(&rule_ref, rule_spec.traffic_policy.as_ref(), found.traffic_policy.as_ref(), index, report);
        let mut selector = service_selector(service);
        if selector.is_empty() {
            report.unsupported(
                &ObjectRef::of(service),
                "spec.selector",
                "a Service without selector cannot be split into version Services",
            );
            continue;
        }
        let mut contradiction = false;
        for (key, value) in &found.labels {
            if selector.insert(key.clone(), value.clone()).is_some_and(|old| &old != value) {
                contradiction = true;
            }
        }
        if contradiction {
            report.unsupported(
                &rule_ref,
                format!("spec.subsets[{index}].labels"),
                "the subset labels contradict the Service selector: the version Service would select nothing",
            );
            continue;
        }
        let name = format!("{service_name}-{subset}");
        let ports: Vec<Value> = service_ports(service)
            .into_iter()
            .map(|port| {
                Value::Object(port.into_iter().filter(|(key, _)| PORT_FIELDS.contains(&key.as_str())).collect())
            })
            .collect();
        let service_spec = json!({"selector": selector, "ports": ports});
        if let Some(existing) = mesh.service(namespace, &name).filter(|existing| !is_generated(existing)) {
            if existing.data.pointer("/spec/selector") == Some(&service_spec["selector"]) {
                result.services.push(existing.clone());
            } else {
                report.unsupported(
                    &first.route,
                    &first.field,
                    format!("Service {namespace}/{name} already exists with another selector"),
                );
            }
            continue;
        }
        let mut sources = vec![rule_ref.clone()];
        sources.extend(users.iter().map(|user| user.route.clone()));
        sources.dedup();
        let mut body = Map::new();
        body.insert("spec".into(), service_spec);
        let version = generated(Kind::Service, namespace, &name, &sources, body);
        result.services.push(version.clone());
        out.add(version, report);
        if let Some(policy) = carried {
            let mut body = Map::new();
            body.insert(
                "spec".into(),
                json!({"host": format!("{name}.{namespace}.svc.cluster.local"), "trafficPolicy": policy}),
            );
            out.add(generated(Kind::DestinationRule, namespace, &name, &sources, body), report);
        }
    }
    // A route refused here (a subset no rule defines) is not replaced after all.
    let replaced_routes: Vec<ResourceRef> =
        routed.replaced.iter().filter(|vs| !report.refused(&ObjectRef::from(*vs))).cloned().collect();
    let replaced: BTreeSet<&ResourceRef> = replaced_routes.iter().collect();
    let mut inert = inert_subset_rules(mesh, &used_rules);
    inert.retain(|rule| {
        let object = mesh.snapshot.get(Kind::DestinationRule, rule.namespace.as_deref(), &rule.name);
        let Some(owner) = object.and_then(|object| super::unchanged::controller(mesh.snapshot, object)) else {
            return true;
        };
        report.leave(rule, format!("owned by {owner}, which rewrites its subsets at run time"));
        false
    });
    result.replaced = used_rules
        .into_iter()
        .chain(inert)
        .filter(|rule| all_users_replaced(mesh, rule, &replaced))
        .map(|rule| ResourceRef::new(Kind::DestinationRule, rule.namespace.as_deref(), &rule.name))
        .collect();
    result
}

/// The DestinationRules by (their namespace, host Service, host namespace), the first of each in
/// input order: looked up per subset a route uses, which a scan of every rule made quadratic.
pub(crate) struct DestinationRules {
    /// Positions in the input's DestinationRules.
    by_host: HashMap<(String, String, String), usize>,
}

impl DestinationRules {
    pub(crate) fn new(snapshot: &Snapshot) -> Self {
        let mut by_host = HashMap::new();
        for (position, rule) in snapshot.all(Kind::DestinationRule).iter().enumerate() {
            let Some(namespace) = rule.metadata.namespace.as_deref() else { continue };
            let host = rule.data.pointer("/spec/host").and_then(Value::as_str);
            if let Some((service, host_namespace)) = host.and_then(|host| service_of_host(host, namespace)) {
                let key = (namespace.to_string(), service.to_string(), host_namespace.to_string());
                by_host.entry(key).or_insert(position);
            }
        }
        DestinationRules { by_host }
    }

    /// The DestinationRule of `snapshot` (the one the index was built from) for a host as Istio
    /// finds it: in the route's namespace, then the host's.
    fn find<'s>(
        &self,
        snapshot: &'s Snapshot,
        route: &ObjectRef,
        namespace: &str,
        service: &str,
    ) -> Option<&'s DynamicObject> {
        let route_namespace = route.namespace.as_deref().unwrap_or(namespace);
        let rules = snapshot.all(Kind::DestinationRule);
        [route_namespace, namespace].into_iter().find_map(|candidate| {
            let key = (candidate.to_string(), service.to_string(), namespace.to_string());
            self.by_host.get(&key).map(|position| &rules[*position])
        })
    }
}

/// The DestinationRule's own fields: its policy, which stays with the host (returned: a rule
/// `<name>-host` without subsets carries it past Step 8) and goes to the version Services too
/// ([`carried_policy`]); other fields are not carried.
fn report_host_policy(rule: &ObjectRef, rule_spec: &DestinationRuleSpec, report: &mut Report) -> Option<Value> {
    for key in rule_spec.extra.keys() {
        report.unsupported(rule, format!("spec.{key}"), "not carried over to the version Services");
    }
    let policy = without_mutual_tls(rule_spec.traffic_policy.as_ref()?)?;
    report.warn(
        rule,
        "spec.trafficPolicy: carried to the host's own DestinationRule (-host) and to its version Services' ones",
    );
    Some(policy)
}

/// The policy a version Service's DestinationRule carries: the rule's, overlaid field by field by
/// the subset's, without `tls.mode: ISTIO_MUTUAL` (HBONE's job in ambient). None when nothing is
/// left to carry.
fn carried_policy(
    rule: &ObjectRef,
    host: Option<&Value>,
    subset: Option<&Value>,
    index: usize,
    report: &mut Report,
) -> Option<Value> {
    let mut merged = Map::new();
    for policy in [host, subset].into_iter().flatten() {
        match policy.as_object() {
            Some(fields) => merged.extend(fields.clone()),
            None => report.unsupported(rule, format!("spec.subsets[{index}].trafficPolicy"), "not an object"),
        }
    }
    let merged = Value::Object(merged);
    let carried = without_mutual_tls(&merged);
    if carried.as_ref() != Some(&merged) && merged.get("tls").is_some() {
        report.warn(rule, "tls.mode ISTIO_MUTUAL is what ambient's HBONE does anyway; not carried over");
    }
    carried
}

/// `policy` without a `tls` that only asks for ISTIO_MUTUAL; None when nothing else is left.
fn without_mutual_tls(policy: &Value) -> Option<Value> {
    let mut fields = policy.as_object().cloned().unwrap_or_default();
    let mutual_only = fields
        .get("tls")
        .and_then(Value::as_object)
        .is_some_and(|tls| tls.len() == 1 && tls.get("mode").and_then(Value::as_str) == Some("ISTIO_MUTUAL"));
    if mutual_only {
        fields.remove("tls");
    }
    (!fields.is_empty()).then_some(Value::Object(fields))
}

/// DestinationRules of converted namespaces that no converted route uses and that hold nothing
/// but subsets (no traffic policy, no other field): without a route to their subsets they change
/// nothing in either mode, so they are replaced too (the Step 8 checkpoint counts every subset
/// rule as a leftover). A rule whose subsets an unconverted route uses is kept by
/// [`all_users_replaced`].
fn inert_subset_rules(mesh: &Mesh, used: &[ObjectRef]) -> Vec<ObjectRef> {
    let in_converted_namespace =
        |rule: &&DynamicObject| rule.metadata.namespace.as_deref().is_some_and(|ns| mesh.in_scope(ns));
    mesh.snapshot
        .all(Kind::DestinationRule)
        .iter()
        .filter(in_converted_namespace)
        .filter(|rule| {
            let Ok(rule_spec) = spec::<DestinationRuleSpec>(rule) else { return false };
            !rule_spec.subsets.is_empty()
                && rule_spec.traffic_policy.is_none()
                && rule_spec.extra.is_empty()
                && rule_spec.subsets.iter().all(|subset| subset.traffic_policy.is_none())
        })
        .map(ObjectRef::of)
        .filter(|rule| !used.contains(rule))
        .collect()
}

/// The VirtualServices that route to subsets of each host, as (service, namespace), by
/// reference (None for one without a name): what every conversion of one input shares, decoded
/// once (per rule, and then per conversion, it made the pass quadratic in the mesh).
pub(crate) type SubsetRouters = HashMap<(String, String), Vec<Option<ResourceRef>>>;

pub(crate) fn subset_routers(mesh: &Mesh) -> SubsetRouters {
    let mut routers: SubsetRouters = HashMap::new();
    for (vs, decoded) in mesh.virtual_services() {
        let vs_namespace = vs.metadata.namespace.as_deref().unwrap_or_default();
        let Ok(vs_spec) = decoded else { continue };
        for (host, _) in vs_spec.subset_destinations() {
            if let Some((name, namespace)) = service_of_host(host, vs_namespace) {
                routers.entry((name.to_string(), namespace.to_string())).or_default().push(ResourceRef::of(vs).ok());
            }
        }
    }
    routers
}

/// True when every VirtualService that routes to a subset of the rule's host was replaced.
fn all_users_replaced(mesh: &Mesh, rule: &ObjectRef, replaced: &BTreeSet<&ResourceRef>) -> bool {
    let Some(object) = mesh.snapshot.get(Kind::DestinationRule, rule.namespace.as_deref(), &rule.name) else {
        return false;
    };
    let rule_namespace = rule.namespace.as_deref().unwrap_or_default();
    let Some(host) =
        object.data.pointer("/spec/host").and_then(Value::as_str).and_then(|h| service_of_host(h, rule_namespace))
    else {
        return false;
    };
    let routers = mesh.subset_routers().get(&(host.0.to_string(), host.1.to_string()));
    routers.into_iter().flatten().all(|router| router.as_ref().is_some_and(|router| replaced.contains(router)))
}

/// A DestinationRule's traffic policy (load balancing, connection pool, outlier detection, TLS
/// origination) is applied by the client's sidecar; in ambient, ztunnel applies none of it, only
/// the waypoint of the destination Service. For a host whose namespace gets no waypoint in this
/// conversion the policy would silently stop applying: reported. (`tls.mode: ISTIO_MUTUAL` alone
/// is what HBONE does anyway.)
pub(crate) fn report_policies_without_waypoint(mesh: &Mesh, report: &mut Report) {
    // Only the rules whose host can name a Service in scope: a conversion of a few namespaces
    // reads their rules, not every rule of the mesh.
    let rules = mesh.snapshot.all(Kind::DestinationRule);
    let candidates = mesh.snapshot.routing_positions(Kind::DestinationRule, mesh.scope());
    for object in candidates.into_iter().map(|position| &rules[position]) {
        let Some(rule_namespace) = object.metadata.namespace.as_deref() else { continue };
        let Ok(rule) = spec::<DestinationRuleSpec>(object) else { continue };
        let Some((name, namespace)) = service_of_host(&rule.host, rule_namespace) else { continue };
        if !mesh.in_scope(namespace) || mesh.waypoint(namespace).is_some() || mesh.service(namespace, name).is_none() {
            continue;
        }
        let policies = rule.traffic_policy.iter().map(|policy| ("spec.trafficPolicy".to_string(), policy)).chain(
            rule.subsets.iter().enumerate().filter_map(|(index, subset)| {
                subset.traffic_policy.as_ref().map(|policy| (format!("spec.subsets[{index}].trafficPolicy"), policy))
            }),
        );
        for (field, policy) in policies {
            let mutual_tls_only = policy.as_object().is_some_and(|fields| fields.len() == 1)
                && policy.pointer("/tls/mode").and_then(Value::as_str) == Some("ISTIO_MUTUAL");
            if !mutual_tls_only {
                report.unsupported(
                    &ObjectRef::of(object),
                    field,
                    format!(
                        "client sidecars apply this traffic policy; in ambient only a waypoint does, and namespace \
                         {namespace} gets none in this conversion (convert it with -n {namespace})"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scope::tests::snapshot_of;
    use super::super::{Conversion, ConvertOptions, convert};
    use super::*;

    const INPUT: &str = "
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: 9080, nodePort: 30000}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}, weight: 80}, {destination: {host: reviews, subset: v3}, weight: 20}]
";

    fn run(rule: &str) -> Conversion {
        convert(&snapshot_of(&format!("{INPUT}---\n{rule}")), &ConvertOptions::default())
    }

    fn services(conversion: &Conversion) -> Vec<(String, Value)> {
        conversion
            .items
            .iter()
            .filter(|item| item.types.as_ref().is_some_and(|t| t.kind == "Service"))
            .map(|item| (item.metadata.name.clone().unwrap_or_default(), item.data["spec"].clone()))
            .collect()
    }

    #[test]
    fn used_subsets_become_version_services_and_the_rule_is_replaced() {
        let conversion = run("apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v3, labels: {version: v3}}]");
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert_eq!(
            services(&conversion),
            vec![
                (
                    "reviews-v1".to_string(),
                    json!({"selector": {"app": "reviews", "version": "v1"}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]})
                ),
                (
                    "reviews-v3".to_string(),
                    json!({"selector": {"app": "reviews", "version": "v3"}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]})
                ),
            ],
            "only used subsets, ports without nodePort"
        );
        assert!(conversion.replaces.contains(&ResourceRef::new(Kind::DestinationRule, Some("shop"), "reviews")));
        assert!(conversion.warnings.iter().any(|w| w.message.contains("ISTIO_MUTUAL")));
    }

    #[test]
    fn missing_subsets_are_reported() {
        let conversion = run("apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}");
        let fields: Vec<&str> = conversion.unsupported.iter().map(|u| u.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.http[0].route[1].destination.subset"]);
        assert!(conversion.replaces.is_empty(), "{:?}", conversion.replaces);
        assert_eq!(services(&conversion).len(), 1, "v1 is still generated");
    }

    /// Issue 16: the traffic policies of a converted route's DestinationRule follow the traffic
    /// to the version Services (the subset's overriding the host's, field by field), and the host
    /// keeps its own through a rule without subsets, so the original can go in Step 8.
    #[test]
    fn traffic_policies_are_carried_to_the_version_services_hosts() {
        let conversion = run("apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}, connectionPool: {tcp: {maxConnections: 1}}, tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
  - {name: v3, labels: {version: v3}}");
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        let rule = |name: &str| {
            conversion
                .items
                .iter()
                .find(|item| {
                    item.types.as_ref().is_some_and(|t| t.kind == "DestinationRule")
                        && item.metadata.name.as_deref() == Some(name)
                })
                .map(|item| item.data["spec"].clone())
        };
        assert_eq!(
            rule("reviews-v1"),
            Some(json!({"host": "reviews-v1.shop.svc.cluster.local",
                        "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}, "connectionPool": {"tcp": {"maxConnections": 1}}}}))
        );
        assert_eq!(
            rule("reviews-v3"),
            Some(json!({"host": "reviews-v3.shop.svc.cluster.local",
                        "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}, "connectionPool": {"tcp": {"maxConnections": 1}}}}))
        );
        assert_eq!(
            rule("reviews-host"),
            Some(json!({"host": "reviews",
                        "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}, "connectionPool": {"tcp": {"maxConnections": 1}}}})),
            "the host keeps its policy after the rule is deleted"
        );
        assert!(conversion.replaces.iter().any(|replaced| replaced.kind == Kind::DestinationRule));
    }

    #[test]
    fn contradicting_labels_are_refused() {
        let conversion = run("apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets: [{name: v1, labels: {app: other}}, {name: v3, labels: {version: v3}}]");
        assert_eq!(conversion.unsupported[0].field, "spec.subsets[0].labels");
        assert_eq!(services(&conversion).len(), 1);
    }

    #[test]
    fn a_rule_of_unused_subsets_alone_is_replaced_and_one_with_a_policy_or_an_unconverted_user_is_not() {
        let rules = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v3, labels: {version: v3}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details, namespace: shop}
spec: {host: details, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: shop}
spec: {host: ratings, trafficPolicy: {loadBalancer: {simple: RANDOM}}, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: shop}
spec: {host: orders, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: front}
spec: {hosts: [orders.shop.svc.cluster.local], http: [{route: [{destination: {host: orders.shop.svc.cluster.local, subset: v1}}]}]}
";
        let options = ConvertOptions { namespaces: vec!["shop".into()], ..ConvertOptions::default() };
        let conversion = convert(&snapshot_of(&format!("{INPUT}---\n{rules}")), &options);
        let replaced: Vec<String> = conversion.replaces.iter().map(|r| r.name.clone()).collect();
        assert!(replaced.contains(&"details".to_string()), "{replaced:?}");
        assert!(replaced.contains(&"reviews".to_string()), "{replaced:?}");
        assert!(!replaced.contains(&"ratings".to_string()), "its traffic policy still applies: {replaced:?}");
        assert!(!replaced.contains(&"orders".to_string()), "front's route still uses it: {replaced:?}");
    }
}
