//! Source classes: the sources that every route, policy and path in scope treat alike, so that one
//! representative request stands for all of them.
//!
//! # Why
//!
//! The exhaustive verifier sends every source to every destination: on a mesh of 1,000
//! namespaces that is ten thousand sources times seventeen thousand destinations times the HTTP
//! variants, about a billion requests, where the policies of any one destination namespace tell
//! apart a handful of callers ("from namespace X", "principal Y") and treat everyone else alike.
//! Evaluating one representative of each class gives the same outcome for every member, so the
//! cost follows what the policies can tell apart, not the size of the mesh.
//!
//! # What a class is
//!
//! [`super::Topology::evaluate`] reads exactly these facts about a source, in each configuration:
//! whether it exists; its data-plane mode (sidecar, ambient, ingress gateway, outside the mesh),
//! which decides the path through waypoints and who routes; its principal, which policies match
//! through `principals`, `namespaces` and `serviceAccounts` (and their negations) and the
//! `source.principal` and `source.namespace` conditions, always derived from the principal; its
//! namespace, which a sidecar's route selection compares with the namespaces of VirtualServices,
//! their `exportTo`, HTTPRoutes and DestinationRules; and its labels, which VirtualService
//! `sourceLabels` read. Nothing else about the source enters the outcome (the explanation names
//! the representative; that is all).
//!
//! So a source's class, for the destinations of one namespace, is the pair of
//! - its **base**: per configuration, whether it exists, its mode, and whether its principal, the
//!   namespace and the service account derived from it are non-empty (what `*` matches, so `*`
//!   needs no further distinction), and
//! - the **features** it matches: for every pattern any policy that can be consulted for these
//!   destinations names (in the destination namespace, the root namespace, the namespaces of
//!   their waypoints and of every Service their routes can send to; in either configuration), for
//!   every namespace a route selection in scope compares with, and for every `sourceLabels`
//!   selector in scope, whether it matches in each configuration.
//!
//! Two sources with the same base and the same features are indistinguishable to every decision
//! the evaluation of a request to these destinations makes. Being conservative is cheap: a
//! feature nobody needed only splits a class in two. Destinations are not grouped: an outcome
//! names the workloads that serve it, so each Service port and pod address is evaluated itself.
//!
//! # Cost
//!
//! Features are found through indexes (principal, namespace, service account, labels to
//! sources; routes by the Service they concern), so a partition costs the sources its features
//! match plus one pass over the remainder of each base, not a comparison of every source with
//! every pattern.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::mesh::networking::service_of_host;

use super::authorize::{Attributes, istio_match};
use super::topology::{Mode, ROOT_NAMESPACE, Topology, Workload};

/// The two configurations a verification compares: before (0) and after (1).
const SIDES: usize = 2;

/// Sources by number (their position in the sorted list of names), shared by every class and
/// difference of one verification.
#[derive(Clone)]
pub struct SourceSet {
    names: Arc<[String]>,
    members: Arc<[u32]>,
}

impl SourceSet {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members' names, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.members.iter().map(|member| self.names[*member as usize].as_str())
    }

    /// The first member: the one whose request is evaluated.
    pub fn representative(&self) -> &str {
        self.names().next().unwrap_or_default()
    }
}

impl std::fmt::Debug for SourceSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Serialize for SourceSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

/// A source as the policies see it in one configuration: the values derived from its principal
/// the way [`Attributes`] derives them.
struct Seen {
    principal: Option<String>,
    namespace: Option<String>,
    account: Option<String>,
}

impl Seen {
    fn of(client: &Workload) -> Self {
        let principal = client.principal();
        let attributes =
            Attributes { principal: principal.as_deref(), port: 0, hosts: &[], http: None, request_principal: None };
        let namespace = attributes.source_namespace().map(str::to_string);
        let account = attributes.service_account();
        Seen { principal, namespace, account }
    }
}

/// Everything per configuration that a base and the features are computed from.
type Base = [Option<(Mode, bool, bool, bool)>; SIDES];

/// Sources of one configuration by the values features compare.
#[derive(Default)]
struct Index {
    principals: HashMap<String, Vec<u32>>,
    namespaces: HashMap<String, Vec<u32>>,
    accounts: HashMap<String, Vec<u32>>,
    client_namespaces: HashMap<String, Vec<u32>>,
    labels: HashMap<(String, String), Vec<u32>>,
}

/// Something a rule, route or selector in scope can observe about a source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    /// A pattern matched against the principal.
    Principal(String),
    /// A pattern matched against the namespace in the principal.
    Namespace(String),
    /// A pattern matched against `namespace/serviceaccount` from the principal.
    Account(String),
    /// A namespace a sidecar's route selection compares the client's namespace with.
    ClientNamespace(String),
    /// A `sourceLabels` selector.
    Labels(BTreeMap<String, String>),
}

/// Every source of a verification, with what classes are made of.
pub struct Sources {
    names: Arc<[String]>,
    /// Per configuration, the source's workload (None where it does not exist).
    clients: [Vec<Option<Workload>>; SIDES],
    /// Members of each base, sorted.
    bases: Vec<Vec<u32>>,
    base_of: Vec<u32>,
    index: [Index; SIDES],
}

impl Sources {
    /// `names` are the verification's sources, sorted and unique.
    // `number` is the source's id, the same in both sides' lists: indexing reads better than zips.
    #[allow(clippy::needless_range_loop)]
    pub fn new(names: Vec<String>, before: &Topology, after: &Topology) -> Self {
        let clients: [Vec<Option<Workload>>; SIDES] =
            [before, after].map(|topology| names.iter().map(|name| topology.source(name)).collect());
        let mut index: [Index; SIDES] = Default::default();
        let mut base_ids: BTreeMap<Base, u32> = BTreeMap::new();
        let mut bases: Vec<Vec<u32>> = Vec::new();
        let mut base_of = Vec::with_capacity(names.len());
        for number in 0..names.len() {
            let mut base: Base = [None; SIDES];
            for side in 0..SIDES {
                let Some(client) = &clients[side][number] else { continue };
                let seen = Seen::of(client);
                let source = number as u32;
                let index = &mut index[side];
                let add = |map: &mut HashMap<String, Vec<u32>>, value: &Option<String>| {
                    if let Some(value) = value {
                        map.entry(value.clone()).or_default().push(source);
                    }
                };
                add(&mut index.principals, &seen.principal);
                add(&mut index.namespaces, &seen.namespace);
                add(&mut index.accounts, &seen.account);
                add(&mut index.client_namespaces, &Some(client.namespace.clone()));
                for (key, value) in &client.labels {
                    index.labels.entry((key.clone(), value.clone())).or_default().push(source);
                }
                let non_empty = |value: &Option<String>| value.as_ref().is_some_and(|value| !value.is_empty());
                base[side] = Some((
                    client.mode,
                    non_empty(&seen.principal),
                    non_empty(&seen.namespace),
                    non_empty(&seen.account),
                ));
            }
            let next = base_ids.len() as u32;
            let id = *base_ids.entry(base).or_insert(next);
            if id == next {
                bases.push(Vec::new());
            }
            bases[id as usize].push(number as u32);
            base_of.push(id);
        }
        Sources { names: names.into(), clients, bases, base_of, index }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn set(&self, members: Vec<u32>) -> SourceSet {
        SourceSet { names: self.names.clone(), members: members.into() }
    }

    /// The class's sources exist in both configurations. Members of a class share their base, so
    /// the representative answers for all of them.
    pub fn on_both_sides(&self, class: &SourceSet) -> bool {
        class.members.first().is_some_and(|first| self.clients.iter().all(|side| side[*first as usize].is_some()))
    }

    /// Every source its own class: the exhaustive verifier.
    pub fn singletons(&self) -> Vec<SourceSet> {
        (0..self.names.len() as u32).map(|number| self.set(vec![number])).collect()
    }

    /// The classes of sources alike as far as `features` can tell (see the module docs), ordered
    /// by their first member.
    pub fn partition(&self, features: &BTreeSet<Feature>) -> Vec<SourceSet> {
        let mut matched: HashMap<u32, Vec<u32>> = HashMap::new();
        for (position, feature) in features.iter().enumerate() {
            for side in 0..SIDES {
                let tag = (position * SIDES + side) as u32;
                self.matching(side, feature, &mut |source| matched.entry(source).or_default().push(tag));
            }
        }
        let mut groups: BTreeMap<(u32, Vec<u32>), Vec<u32>> = BTreeMap::new();
        for (source, tags) in &matched {
            groups.entry((self.base_of[*source as usize], tags.clone())).or_default().push(*source);
        }
        let mut classes: Vec<Vec<u32>> = groups
            .into_values()
            .map(|mut members| {
                members.sort_unstable();
                members
            })
            .collect();
        for members in &self.bases {
            let rest: Vec<u32> = members.iter().copied().filter(|source| !matched.contains_key(source)).collect();
            if !rest.is_empty() {
                classes.push(rest);
            }
        }
        classes.sort_unstable_by_key(|members| members[0]);
        classes.into_iter().map(|members| self.set(members)).collect()
    }

    /// Calls `found` once for every source that `feature` matches in configuration `side`.
    fn matching(&self, side: usize, feature: &Feature, found: &mut dyn FnMut(u32)) {
        let index = &self.index[side];
        let by_pattern = |map: &HashMap<String, Vec<u32>>, pattern: &str, found: &mut dyn FnMut(u32)| {
            // `*` matches every non-empty value, which the base already tells apart.
            if pattern == "*" {
                return;
            }
            if pattern.starts_with('*') || pattern.ends_with('*') {
                for (value, sources) in map {
                    if istio_match(pattern, value) {
                        sources.iter().for_each(|source| found(*source));
                    }
                }
            } else if let Some(sources) = map.get(pattern) {
                sources.iter().for_each(|source| found(*source));
            }
        };
        match feature {
            Feature::Principal(pattern) => by_pattern(&index.principals, pattern, found),
            Feature::Namespace(pattern) => by_pattern(&index.namespaces, pattern, found),
            Feature::Account(pattern) => by_pattern(&index.accounts, pattern, found),
            Feature::ClientNamespace(namespace) => {
                index.client_namespaces.get(namespace).into_iter().flatten().for_each(|source| found(*source))
            }
            Feature::Labels(selector) => {
                // An empty selector matches every source that exists, which the base tells.
                let Some(first) = selector.iter().next() else { return };
                let candidates = index.labels.get(&(first.0.clone(), first.1.clone())).into_iter().flatten();
                for source in candidates {
                    let client = self.clients[side][*source as usize].as_ref();
                    if client.is_some_and(|client| crate::mesh::selector_matches(selector, &client.labels)) {
                        found(*source);
                    }
                }
            }
        }
    }
}

/// What the evaluation of requests to the destinations of `namespace` can observe about a source,
/// in either configuration (see the module docs).
pub fn observed_features(sides: [&Topology; SIDES], namespace: &str) -> BTreeSet<Feature> {
    let mut features = BTreeSet::new();
    for topology in sides {
        // Namespaces whose policies can be consulted: the destinations', the root, their
        // waypoints', and those of every Service their routes send to.
        let mut consulted: BTreeSet<String> = [namespace.to_string(), ROOT_NAMESPACE.to_string()].into();
        let services = topology.services.range((namespace.to_string(), String::new())..);
        for service in services.take_while(|(key, _)| key.0 == namespace).map(|(_, service)| service) {
            consulted.extend(topology.waypoint_of(service).map(|waypoint| waypoint.namespace.clone()));
            for vs in topology.virtual_services_for(service) {
                features.insert(Feature::ClientNamespace(vs.namespace.clone()));
                features.extend(vs.spec.export_to.iter().cloned().map(Feature::ClientNamespace));
                for rule in &vs.spec.http {
                    for selector in rule.matches.iter().map(|m| &m.source_labels).filter(|labels| !labels.is_empty()) {
                        features.insert(Feature::Labels(selector.clone()));
                    }
                    for destination in &rule.route {
                        let Some((name, host_namespace)) =
                            service_of_host(&destination.destination.host, &vs.namespace)
                        else {
                            continue;
                        };
                        consulted.insert(host_namespace.to_string());
                        // Subsets resolve through the DestinationRules of the client's namespace first.
                        let rules = topology.service(host_namespace, name).into_iter().flat_map(|target| {
                            topology.destination_rules_for(target).map(|rule| rule.namespace.clone())
                        });
                        features.extend(rules.map(Feature::ClientNamespace));
                    }
                }
            }
            for route in topology.http_routes_for(service) {
                features.insert(Feature::ClientNamespace(route.namespace.clone()));
                for backend in route.spec.rules.iter().flat_map(|rule| &rule.backend_refs) {
                    consulted.insert(backend.namespace.clone().unwrap_or_else(|| route.namespace.clone()));
                }
            }
        }
        for rule in
            consulted.iter().flat_map(|consulted| topology.policies_in(consulted)).flat_map(|p| p.policy.spec.rules())
        {
            for source in rule.from.iter().map(|from| &from.source) {
                let principals = source.principals.iter().chain(&source.not_principals);
                features.extend(principals.cloned().map(Feature::Principal));
                let namespaces = source.namespaces.iter().chain(&source.not_namespaces);
                features.extend(namespaces.cloned().map(Feature::Namespace));
                let accounts = source.service_accounts.iter().chain(&source.not_service_accounts);
                features.extend(accounts.cloned().map(Feature::Account));
            }
            for condition in &rule.when {
                let values = condition.values.iter().chain(&condition.not_values).cloned();
                match condition.key.as_str() {
                    "source.principal" => features.extend(values.map(Feature::Principal)),
                    "source.namespace" => features.extend(values.map(Feature::Namespace)),
                    _ => {}
                }
            }
        }
    }
    features
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Snapshot, parse_documents};

    const MESH: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: shop, labels: {app: a, tier: web}}
spec: {serviceAccountName: a, containers: [{name: a}, {name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: shop, labels: {app: b, tier: web}}
spec: {serviceAccountName: b, containers: [{name: b}, {name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: other, labels: {app: c}}
spec: {serviceAccountName: c, containers: [{name: c}, {name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: other, labels: {app: d}}
spec: {serviceAccountName: d, containers: [{name: d}, {name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: other, labels: {app: plain}, annotations: {sidecar.istio.io/inject: 'false'}}
spec: {serviceAccountName: plain, containers: [{name: p}]}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: shop}
spec: {selector: {app: a}, ports: [{name: http, port: 80}]}
";

    fn sources(extra: &str) -> (Sources, Topology) {
        let text = format!("{MESH}{extra}");
        let topology = Topology::from_snapshot(&Snapshot::from_objects(
            parse_documents(std::path::Path::new("t"), &text).unwrap(),
        ));
        let mut names: Vec<String> = topology.workloads().iter().map(Workload::key).collect();
        names.sort();
        (Sources::new(names, &topology, &topology), topology)
    }

    fn classes(extra: &str) -> Vec<Vec<String>> {
        let (sources, topology) = sources(extra);
        let features = observed_features([&topology, &topology], "shop");
        sources.partition(&features).iter().map(|class| class.names().map(str::to_string).collect()).collect()
    }

    #[test]
    fn without_rules_sources_split_by_mode_only() {
        assert_eq!(
            classes(""),
            vec![vec!["other/c", "other/d", "shop/a", "shop/b"], vec!["other/plain"]],
            "the sidecar clients are alike; the client outside the mesh is not"
        );
    }

    #[test]
    fn a_policy_splits_the_sources_it_names_and_only_those() {
        let policy = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  action: ALLOW
  rules:
  - from: [{source: {namespaces: [other]}}]
  - from: [{source: {principals: ['cluster.local/ns/shop/sa/b']}}]
";
        assert_eq!(
            classes(policy),
            vec![vec!["other/c", "other/d"], vec!["other/plain"], vec!["shop/a"], vec!["shop/b"]],
        );
        // A policy of another namespace, which no request to shop consults, splits nothing.
        let elsewhere = policy.replace("namespace: shop}", "namespace: unrelated}");
        assert_eq!(classes(&elsewhere), classes(""));
    }

    #[test]
    fn wildcards_labels_and_route_namespaces_are_features() {
        let objects = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ['*'], principals: ['cluster.local/ns/other/sa/c*']}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec:
  hosts: [a]
  http: [{match: [{sourceLabels: {tier: web}}], route: [{destination: {host: a}}]}]
";
        assert_eq!(
            classes(objects),
            vec![vec!["other/c"], vec!["other/d"], vec!["other/plain"], vec!["shop/a", "shop/b"]],
            "the root policy's prefix names c; shop's VirtualService reads the namespace and tier=web, alike in shop"
        );
    }
}
