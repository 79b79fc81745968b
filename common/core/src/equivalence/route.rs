//! Which workloads serve a request addressed to a Service: by the route table istiod gives the
//! client's sidecar (a VirtualService, or the HTTPRoutes whose parent is the Service), by the
//! waypoint's HTTPRoutes (Gateway API precedence), or, for every other client, by the Service's
//! selector alone.
//!
//! # A VirtualService and an HTTPRoute for one host, seen from a sidecar
//!
//! AMBIENT-NOTES leaves open what a sidecar client does between Step 5 (HTTPRoutes created next to
//! the sidecar-era VirtualServices) and Step 8 (the VirtualServices deleted). Istio answers it in
//! its source. Read in istio/istio at
//! <https://github.com/istio/istio/blob/80376b789e02f522ff40a470098a8d1c4504156b/pilot/pkg/model/push_context.go>
//! and
//! <https://github.com/istio/istio/blob/8f6bf4c282ad3477cf912631acbe545783f207bc/pilot/pkg/model/virtualservice.go>
//! (copies of the 1.2x line; the same functions are on `release-1.27`, where
//! `PILOT_UNIFIED_SIDECAR_SCOPE` defaults to true), with `pilot/pkg/networking/core/httproute.go`
//! and `pilot/pkg/config/kube/gateway/conversion.go` of the same line:
//!
//! 1. The Gateway API controller turns every HTTPRoute whose parent is a Service into an internal
//!    VirtualService for the mesh gateway: `hosts: [<svc>.<ns>.svc.<domain>]`, `gateways: [mesh]`,
//!    the route's namespace and creation time, no `exportTo` (so public), annotated
//!    `internal.istio.io/route-semantics: gateway`; the routes of one namespace for one
//!    host are merged into it, sorted by Gateway API precedence
//!    (`pilot/pkg/config/kube/gateway/conversion.go`, `convertHTTPRoute`/`routeMeta`).
//! 2. `initVirtualServices` indexes all VirtualServices, user and generated alike, sorted by
//!    creation time, then name, then namespace (`mergeVirtualServicesIfNeeded` →
//!    `sortConfigByCreationTime`), into private (`exportTo: .`), exported-to-namespace and public
//!    lists (`pilot/pkg/model/push_context.go`).
//! 3. A sidecar's scope selects them in the order private to its namespace, exported to its
//!    namespace, then public; within each list, with `PILOT_UNIFIED_SIDECAR_SCOPE` (default
//!    true), gateway-semantics ones in the client's own namespace first, the "consumer override"
//!    (`SelectVirtualServices` in `pilot/pkg/model/virtualservice.go`;
//!    `VirtualServicesForGateway` in `push_context.go` orders the same way).
//! 4. The sidecar's outbound route configuration builds one virtual host per host and port from
//!    the first VirtualService in that order and drops every later one for the same host as a
//!    duplicate (`buildSidecarOutboundVirtualHosts`, `vhosts.InsertContains(name)` → "duplicate
//!    domain from virtual service", `pilot/pkg/networking/core/httproute.go`). Nothing is merged.
//!
//! So, for one host: a sidecar client in the **HTTPRoute's namespace** is routed by the HTTPRoutes
//! and the public VirtualService is ignored (unless that VirtualService is private to, or exported
//! by name to, the client's namespace); a sidecar client in **any other namespace** is routed by
//! whichever is older, which for the migration is the sidecar-era VirtualService. The Step 5 plan
//! therefore changes the routing of the sidecar clients in the migrated namespace the moment an
//! HTTPRoute exists: it is shaped so that this changes no outcome (the translator emits only
//! HTTPRoutes whose rule order Gateway API keeps, and the version Services they route to come
//! before them in the plan), and the gate replays exactly this model on every intermediate state.
//! [`Topology::sidecar_route_table`] is that selection.

use std::collections::BTreeMap;

use crate::mesh::gateway_api::{HttpRouteMatch, HttpRouteSpec, MatchOrder, NamedMatch, path_prefix_matches};
use crate::mesh::networking::{HttpMatchRequest, StringMatch, VirtualServiceSpec, service_of_host};
use crate::mesh::selector_matches;

use super::evaluate::HttpRequest;
use super::topology::{Named, Service, Topology, Workload};

/// Where the routing layer sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing<'a> {
    /// To these workloads, at these pod ports; `how` says which rule decided.
    Backends { workloads: Vec<(&'a Workload, u32)>, how: String },
    /// Answered by the proxy itself (a redirect or a direct response): no backend is reached.
    Answered { how: String },
    /// No backend: no rule matched (404), an unknown subset (503), no endpoints.
    Unrouted { why: String },
    /// To a host that is no Service of the input: a dump of part of the mesh, or a host outside
    /// it. Whether anything serves the request cannot be told, so its outcome is unknown.
    UnknownHost { why: String },
}

/// What a sidecar routes a host by (see [`Topology::sidecar_route_table`]).
#[derive(Debug, Clone)]
pub enum RouteTable<'a> {
    VirtualService(&'a Named<VirtualServiceSpec>),
    /// The HTTPRoutes of one namespace attached to the Service, oldest first.
    HttpRoutes {
        namespace: &'a str,
        routes: Vec<&'a Named<HttpRouteSpec>>,
    },
}

/// Which of istiod's VirtualService lists a VirtualService is in, for one client namespace, in
/// the order a sidecar's scope reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    /// `exportTo: .` (or the own namespace by name), in the client's namespace.
    Private,
    /// `exportTo` names the client's namespace.
    Exported,
    /// No `exportTo` (the mesh default `*`) or `*`.
    Public,
}

/// A route table's place in a sidecar's selection: tier, then the consumer override, then age,
/// name and namespace, as istiod sorts them. An object not on the cluster yet (no creation time,
/// in a simulated state) is the newest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SidecarOrder {
    tier: Tier,
    not_consumer_override: bool,
    not_created_yet: bool,
    created: String,
    name: String,
    namespace: String,
}

impl SidecarOrder {
    fn new(tier: Tier, not_consumer_override: bool, created: &str, name: &str, namespace: &str) -> Self {
        SidecarOrder {
            tier,
            not_consumer_override,
            not_created_yet: created.is_empty(),
            created: created.into(),
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

/// The tier of a VirtualService of `namespace` with `export_to` for a client in `client`; None
/// when the client cannot see it (`~`, or exported elsewhere).
fn visibility(export_to: &[String], namespace: &str, client: &str) -> Option<Tier> {
    if export_to.is_empty() || export_to.iter().any(|to| to == "*") {
        return Some(Tier::Public);
    }
    if export_to.iter().any(|to| to == "~") {
        return None;
    }
    let private = export_to.iter().any(|to| to == "." || to == namespace);
    if private && namespace == client {
        Some(Tier::Private)
    } else if export_to.iter().any(|to| to == client) {
        Some(Tier::Exported)
    } else {
        None
    }
}

impl Topology {
    /// The Service's own endpoints: what ztunnel, kube-proxy and ingress gateways send to.
    pub fn route_by_selector<'a>(&'a self, service: &'a Service, port: u32, how: String) -> Routing<'a> {
        let target_port = service.port(port).map_or(port, |service_port| service_port.target_port);
        let workloads: Vec<(&Workload, u32)> =
            self.endpoints(service).map(|workload| (workload, target_port)).collect();
        if workloads.is_empty() {
            return Routing::Unrouted { why: format!("Service {} has no endpoints", service.key()) };
        }
        Routing::Backends { workloads, how }
    }

    /// The route table istiod gives `client`'s sidecar for `service` (see the module docs): the
    /// first, in Istio's order, of the VirtualServices for the host visible to the client and the
    /// HTTPRoutes attached to the Service (grouped by namespace, as istiod merges them into one
    /// internal VirtualService per namespace). None: the sidecar uses the Service's endpoints.
    pub fn sidecar_route_table<'a>(
        &'a self,
        client: &Workload,
        service: &'a Service,
        port: u32,
    ) -> Option<RouteTable<'a>> {
        let mut tables: Vec<(SidecarOrder, RouteTable<'a>)> = Vec::new();
        for vs in self.virtual_services_for(service).filter(|vs| !vs.spec.is_gateway_only()) {
            let Some(tier) = visibility(&vs.spec.export_to, &vs.namespace, &client.namespace) else { continue };
            let order = SidecarOrder::new(tier, true, &vs.created, &vs.name, &vs.namespace);
            tables.push((order, RouteTable::VirtualService(vs)));
        }
        let mut by_namespace: BTreeMap<&str, Vec<&'a Named<HttpRouteSpec>>> = BTreeMap::new();
        for route in self.attached_routes(service, port) {
            by_namespace.entry(route.namespace.as_str()).or_default().push(route);
        }
        for (namespace, routes) in by_namespace {
            // `http_routes` is sorted oldest first: the merged VirtualService is the oldest route's.
            let oldest = routes[0];
            let consumer_override = namespace == client.namespace;
            let order = SidecarOrder::new(Tier::Public, !consumer_override, &oldest.created, &oldest.name, namespace);
            tables.push((order, RouteTable::HttpRoutes { namespace, routes }));
        }
        tables.into_iter().min_by(|(a, _), (b, _)| a.cmp(b)).map(|(_, table)| table)
    }

    /// A sidecar client: its route table for the host ([`Self::sidecar_route_table`]). A
    /// VirtualService routes by its first matching HTTP rule, subsets resolved through
    /// DestinationRules; HTTPRoutes by Gateway API precedence, as at a waypoint. TCP requests are
    /// not routed by the model (`tcp` routes are rare in VirtualServices that are migrated; they
    /// go to the Service).
    pub fn route_for_sidecar<'a>(
        &'a self,
        client: &Workload,
        service: &'a Service,
        port: u32,
        http: Option<&HttpRequest>,
    ) -> Routing<'a> {
        match self.sidecar_route_table(client, service, port) {
            None => self.route_by_selector(service, port, "no VirtualService: the Service's endpoints".into()),
            Some(RouteTable::HttpRoutes { routes, .. }) => self.route_by_http_routes(&routes, service, port, http),
            Some(RouteTable::VirtualService(virtual_service)) => {
                self.route_by_virtual_service(virtual_service, client, service, port, http)
            }
        }
    }

    fn route_by_virtual_service<'a>(
        &'a self,
        virtual_service: &Named<VirtualServiceSpec>,
        client: &Workload,
        service: &'a Service,
        port: u32,
        http: Option<&HttpRequest>,
    ) -> Routing<'a> {
        let Some(http) = http else {
            return self.route_by_selector(service, port, "TCP: the Service's endpoints".into());
        };
        if virtual_service.spec.http.is_empty() {
            return self.route_by_selector(
                service,
                port,
                format!("VirtualService {} has no HTTP rule", virtual_service.key()),
            );
        }
        let Some((index, rule)) = virtual_service.spec.http.iter().enumerate().find(|(_, rule)| {
            rule.matches.is_empty() || rule.matches.iter().any(|m| virtual_service_match(m, client, port, http))
        }) else {
            return Routing::Unrouted {
                why: format!("no rule of VirtualService {} matches (404)", virtual_service.key()),
            };
        };
        let how = format!("VirtualService {} rule {}", virtual_service.key(), index + 1);
        if rule.route.is_empty() {
            return Routing::Answered { how: format!("{how} answers itself (redirect or direct response)") };
        }
        let mut workloads = Vec::new();
        for destination in rule.route.iter().filter(|destination| destination.weight != Some(0)) {
            let Some(target) = service_of_host(&destination.destination.host, &virtual_service.namespace)
                .and_then(|(name, namespace)| self.service(namespace, name))
            else {
                return Routing::UnknownHost {
                    why: format!("{how}: host {} is not a Service of the input", destination.destination.host),
                };
            };
            let target_port = destination.destination.port.as_ref().map_or(port, |selector| selector.number);
            let pod_port = target.port(target_port).map_or(target_port, |service_port| service_port.target_port);
            let subset_labels = match &destination.destination.subset {
                None => BTreeMap::new(),
                Some(subset) => match self.subset_labels(client, target, subset) {
                    Some(labels) => labels,
                    None => {
                        return Routing::Unrouted {
                            why: format!("{how}: subset {subset} of {} is not defined (503)", target.key()),
                        };
                    }
                },
            };
            workloads.extend(
                self.endpoints(target).filter(|w| selector_matches(&subset_labels, &w.labels)).map(|w| (w, pod_port)),
            );
        }
        if workloads.is_empty() {
            return Routing::Unrouted { why: format!("{how}: no endpoints (503)") };
        }
        Routing::Backends { workloads, how }
    }

    fn subset_labels(&self, client: &Workload, service: &Service, subset: &str) -> Option<BTreeMap<String, String>> {
        let mut rules: Vec<_> = self.destination_rules_for(service).collect();
        rules.sort_by_key(|dr| (dr.namespace != client.namespace, dr.created.clone(), dr.key()));
        rules.iter().find_map(|dr| dr.spec.subsets.iter().find(|s| s.name == subset).map(|s| s.labels.clone()))
    }

    /// A waypoint: the HTTPRoutes whose parent is the Service, all namespaces together.
    pub fn route_at_waypoint<'a>(&'a self, service: &'a Service, port: u32, http: Option<&HttpRequest>) -> Routing<'a> {
        let attached: Vec<_> = self.attached_routes(service, port).collect();
        self.route_by_http_routes(&attached, service, port, http)
    }

    /// The HTTPRoutes whose parent is `service` and applies on `port`, oldest first.
    fn attached_routes<'a>(
        &'a self,
        service: &'a Service,
        port: u32,
    ) -> impl Iterator<Item = &'a Named<HttpRouteSpec>> + 'a {
        self.http_routes_for(service).filter(move |route| {
            route.spec.parent_refs.iter().any(|parent| {
                parent.is_service()
                    && parent.name == service.name
                    && parent.namespace.as_deref().unwrap_or(&route.namespace) == service.namespace
                    && parent.port.is_none_or(|parent_port| parent_port == port)
            })
        })
    }

    /// Across all rules of `attached`, the match first in Gateway API precedence ([`MatchOrder`])
    /// among those the request satisfies decides. With no route, or TCP, the Service's endpoints.
    fn route_by_http_routes<'a>(
        &'a self,
        attached: &[&'a Named<HttpRouteSpec>],
        service: &'a Service,
        port: u32,
        http: Option<&HttpRequest>,
    ) -> Routing<'a> {
        let (false, Some(http)) = (attached.is_empty(), http) else {
            return self.route_by_selector(service, port, "no HTTPRoute: the Service's endpoints".into());
        };
        let chosen = attached
            .iter()
            .flat_map(|route| {
                route.spec.rules.iter().enumerate().flat_map(move |(index, rule)| {
                    rule.effective_matches().into_iter().filter(|m| http_route_match(m, http)).map(move |m| {
                        (MatchOrder::new(&route.created, &route.namespace, &route.name, index, &m), route, index, rule)
                    })
                })
            })
            .min_by(|(a, ..), (b, ..)| a.cmp(b));
        let Some((_, route, index, rule)) = chosen else {
            return Routing::Unrouted { why: format!("no HTTPRoute rule for {} matches (404)", service.key()) };
        };
        let how = format!("HTTPRoute {} rule {}", route.key(), index + 1);
        let redirects =
            rule.filters.iter().any(|filter| filter.get("type").and_then(|t| t.as_str()) == Some("RequestRedirect"));
        if redirects {
            return Routing::Answered { how: format!("{how} answers itself (redirect)") };
        }
        let mut workloads = Vec::new();
        for backend in rule.backend_refs.iter().filter(|backend| backend.receives_traffic()) {
            let namespace = backend.namespace.as_deref().unwrap_or(&route.namespace);
            let target = backend.is_service().then(|| self.service(namespace, &backend.name)).flatten();
            let Some(target) = target else {
                let why = format!("{how}: backend {namespace}/{} is not a Service of the input", backend.name);
                return if backend.is_service() { Routing::UnknownHost { why } } else { Routing::Unrouted { why } };
            };
            let target_port = backend.port.unwrap_or(port);
            let pod_port = target.port(target_port).map_or(target_port, |service_port| service_port.target_port);
            workloads.extend(self.endpoints(target).map(|workload| (workload, pod_port)));
        }
        if workloads.is_empty() {
            return Routing::Unrouted { why: format!("{how}: no backend endpoints (500)") };
        }
        Routing::Backends { workloads, how }
    }
}

fn string_match(matcher: &StringMatch, value: &str, ignore_case: bool) -> bool {
    let fold = |text: &str| if ignore_case { text.to_ascii_lowercase() } else { text.to_string() };
    match matcher {
        StringMatch::Exact(expected) => fold(expected) == fold(value),
        StringMatch::Prefix(prefix) => fold(value).starts_with(&fold(prefix)),
        StringMatch::Regex(pattern) => full_regex_match(pattern, value),
    }
}

/// Envoy's regex matches (RE2) match the whole value; an invalid pattern matches nothing.
fn full_regex_match(pattern: &str, value: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|regex| regex.is_match(value))
}

/// Requests carry no query string, so query parameter matches never match.
fn virtual_service_match(m: &HttpMatchRequest, client: &Workload, port: u32, http: &HttpRequest) -> bool {
    let ignore_case = m.ignore_uri_case == Some(true);
    m.uri.as_ref().is_none_or(|uri| string_match(uri, &http.path, ignore_case))
        && m.method.as_ref().is_none_or(|method| string_match(method, &http.method, false))
        && m.headers.iter().all(|(name, matcher)| {
            http.headers.get(&name.to_ascii_lowercase()).is_some_and(|value| string_match(matcher, value, false))
        })
        && m.query_params.is_empty()
        && selector_matches(&m.source_labels, &client.labels)
        && (m.gateways.is_empty() || m.gateways.iter().any(|gateway| gateway == "mesh"))
        && m.port.is_none_or(|match_port| match_port == port)
}

fn named_match(m: &NamedMatch, value: Option<&String>) -> bool {
    value.is_some_and(|value| match m.match_type.as_str() {
        "RegularExpression" => full_regex_match(&m.value, value),
        _ => &m.value == value,
    })
}

fn http_route_match(m: &HttpRouteMatch, http: &HttpRequest) -> bool {
    let path = m.path_or_default();
    let path_ok = match path.match_type.as_str() {
        "Exact" => path.value == http.path,
        "RegularExpression" => full_regex_match(&path.value, &http.path),
        _ => path_prefix_matches(&path.value, &http.path),
    };
    path_ok
        && m.method.as_ref().is_none_or(|method| method == &http.method)
        && m.headers.iter().all(|header| named_match(header, http.headers.get(&header.name.to_ascii_lowercase())))
        && m.query_params.is_empty()
}

/// Values in the routes' match conditions for the requests to a namespace's Services.
pub fn route_vocabulary(
    topology: &Topology,
    namespace: &str,
    methods: &mut Vec<String>,
    paths: &mut Vec<String>,
    headers: &mut BTreeMap<String, Vec<String>>,
) {
    let mut note = |method: Option<String>, path: Option<String>, header: Option<(String, String)>| {
        methods.extend(method);
        paths.extend(path);
        if let Some((name, value)) = header {
            headers.entry(name.to_ascii_lowercase()).or_default().push(value);
        }
    };
    let literal = |matcher: &StringMatch| match matcher {
        StringMatch::Exact(text) | StringMatch::Prefix(text) => Some(text.clone()),
        StringMatch::Regex(_) => None,
    };
    for vs in topology.virtual_services.iter().filter(|vs| vs.namespace == namespace) {
        for m in vs.spec.http.iter().flat_map(|rule| rule.matches.iter()) {
            note(m.method.as_ref().and_then(literal), m.uri.as_ref().and_then(literal), None);
            for (name, matcher) in &m.headers {
                note(None, None, literal(matcher).map(|value| (name.clone(), value)));
            }
        }
    }
    for route in topology.http_routes.iter().filter(|route| route.namespace == namespace) {
        for m in route.spec.rules.iter().flat_map(|rule| rule.matches.iter()) {
            let path =
                m.path.as_ref().filter(|path| path.match_type != "RegularExpression").map(|path| path.value.clone());
            note(m.method.clone(), path, None);
            for header in m.headers.iter().filter(|header| header.match_type != "RegularExpression") {
                note(None, None, Some((header.name.clone(), header.value.clone())));
            }
        }
    }
}

/// Paths on both sides of every prefix boundary the routes of `namespace` draw: Istio's `prefix`
/// compares characters and Gateway API's `PathPrefix` whole segments (ignoring a trailing slash),
/// so `/api`, `/api/`, `/apix` and `/api/x` tell them apart.
pub fn prefix_boundaries(topology: &Topology, namespace: &str, paths: &mut Vec<String>) {
    for vs in topology.virtual_services.iter().filter(|vs| vs.namespace == namespace) {
        for m in vs.spec.http.iter().flat_map(|rule| rule.matches.iter()) {
            if let Some(StringMatch::Prefix(prefix)) = &m.uri {
                paths.extend(around_prefix(prefix));
            }
        }
    }
    for route in topology.http_routes.iter().filter(|route| route.namespace == namespace) {
        for path in route.spec.rules.iter().flat_map(|rule| rule.matches.iter()).filter_map(|m| m.path.as_ref()) {
            if path.match_type == "PathPrefix" {
                paths.extend(around_prefix(&path.value));
            }
        }
    }
}

/// `/api` for a prefix `/api` or `/api/`: the bare segment, with a slash, with more characters and
/// with another segment. Nothing for `/`, which every path starts with.
pub fn around_prefix(prefix: &str) -> Vec<String> {
    let bare = prefix.trim_end_matches('/');
    if bare.is_empty() {
        return Vec::new();
    }
    vec![bare.to_string(), format!("{bare}/"), format!("{bare}x"), format!("{bare}/x")]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::snapshot::{Snapshot, parse_documents};

    const MESH: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: ns, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: ns}
spec: {selector: {app: web, version: v2}, ports: [{name: http, port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1, namespace: ns}
spec: {selector: {matchLabels: {app: web, version: v1}}, template: {metadata: {labels: {app: web, version: v1}}, spec: {containers: [{name: w}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v2, namespace: ns}
spec: {selector: {matchLabels: {app: web, version: v2}}, template: {metadata: {labels: {app: web, version: v2}}, spec: {containers: [{name: w}]}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: ns}
spec: {host: web, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: ns}
spec:
  hosts: [web.ns.svc.cluster.local]
  http:
  - match: [{uri: {regex: '/api/v[0-9]+'}, method: {exact: POST}}]
    route: [{destination: {host: web-v2}}]
  - match: [{uri: {prefix: /missing}}]
    route: [{destination: {host: web, subset: v9}}]
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /new}
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: web, subset: v1}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-route, namespace: ns, creationTimestamp: '2025-01-02T00:00:00Z'}
spec:
  parentRefs: [{kind: Service, group: '', name: web}]
  rules: [{matches: [{path: {type: PathPrefix, value: /shop}}], backendRefs: [{name: web-v2, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-route, namespace: ns, creationTimestamp: '2025-01-03T00:00:00Z'}
spec:
  parentRefs: [{kind: Service, group: '', name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /shop}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: Exact, value: /only}}]
    backendRefs: []
";

    fn topology() -> Topology {
        Topology::from_snapshot(&Snapshot::from_objects(parse_documents(std::path::Path::new("t"), MESH).unwrap()))
    }

    pub(crate) fn get(method: &str, path: &str) -> HttpRequest {
        HttpRequest { method: method.into(), path: path.into(), headers: BTreeMap::new() }
    }

    /// The workloads a request reaches, or how it is answered or why it is not routed.
    pub(crate) fn served(routing: &Routing) -> Vec<String> {
        match routing {
            Routing::Backends { workloads, .. } => {
                workloads.iter().map(|(workload, _)| workload.name.clone()).collect()
            }
            Routing::Answered { how } => vec![format!("answered: {how}")],
            Routing::Unrouted { why } => vec![format!("unrouted: {why}")],
            Routing::UnknownHost { why } => vec![format!("unknown: {why}")],
        }
    }

    /// MESH without its HTTPRoutes: the sidecar-era configuration.
    fn sidecar_era() -> Topology {
        let documents: Vec<&str> =
            MESH.split("\n---\n").filter(|document| !document.contains("kind: HTTPRoute")).collect();
        let snapshot =
            Snapshot::from_objects(parse_documents(std::path::Path::new("t"), &documents.join("\n---\n")).unwrap());
        Topology::from_snapshot(&snapshot)
    }

    #[test]
    fn virtual_services_route_by_first_matching_rule() {
        let topology = sidecar_era();
        let client = topology.workload("ns/web-v1").unwrap().clone();
        let web = topology.service("ns", "web").unwrap();
        let route = |method, path| served(&topology.route_for_sidecar(&client, web, 80, Some(&get(method, path))));
        assert_eq!(route("POST", "/api/v12"), vec!["web-v2"], "full regex match and method");
        assert_eq!(route("POST", "/api/v12/x"), vec!["web-v1"], "a regex matches the whole path");
        assert!(route("GET", "/missing")[0].contains("subset v9 of ns/web is not defined (503)"));
        assert!(route("GET", "/moved")[0].starts_with("answered"));
        assert_eq!(served(&topology.route_for_sidecar(&client, web, 80, None)), vec!["web-v1", "web-v2"], "TCP");
    }

    #[test]
    fn waypoint_routes_ties_go_to_the_oldest_route_and_empty_backends_fail() {
        let topology = topology();
        let web = topology.service("ns", "web").unwrap();
        let route = |path| served(&topology.route_at_waypoint(web, 80, Some(&get("GET", path))));
        assert_eq!(route("/shop/cart"), vec!["web-v2"], "b-route is older than a-route");
        assert!(route("/only")[0].contains("no backend endpoints (500)"));
        assert!(route("/elsewhere")[0].contains("no HTTPRoute rule for ns/web matches (404)"));
        let direct = topology.service("ns", "web-v2").unwrap();
        assert_eq!(served(&topology.route_at_waypoint(direct, 80, Some(&get("GET", "/")))), vec!["web-v2"]);
    }

    /// A client of `namespace` (a sidecar pod of a Deployment there) added to `objects`.
    fn with_client(objects: &str, namespace: &str) -> Topology {
        let client = format!(
            "
---
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}, labels: {{istio-injection: enabled}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sleep, namespace: {namespace}}}
spec: {{selector: {{matchLabels: {{app: sleep}}}}, template: {{metadata: {{labels: {{app: sleep}}}}, spec: {{containers: [{{name: s}}]}}}}}}
"
        );
        let text = format!("{objects}{}", if namespace == "ns" { String::new() } else { client });
        Topology::from_snapshot(&Snapshot::from_objects(parse_documents(std::path::Path::new("t"), &text).unwrap()))
    }

    /// The VirtualService of MESH (routes `/` to subset v1), created at `created`, exported to
    /// `export_to`, and one HTTPRoute in `route_namespace` sending `/` to web-v2, created later.
    fn coexisting(created: &str, export_to: &str, route_namespace: &str) -> String {
        format!(
            "{}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: ns, creationTimestamp: '{created}'}}
spec:
  hosts: [web.ns.svc.cluster.local]
  exportTo: {export_to}
  http: [{{route: [{{destination: {{host: web, subset: v1}}}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: {route_namespace}, creationTimestamp: '2025-06-01T00:00:00Z'}}
spec:
  parentRefs: [{{kind: Service, group: '', name: web, namespace: ns}}]
  rules: [{{backendRefs: [{{name: web-v2, namespace: ns, port: 80}}]}}]
",
            MESH.split("\n---\n")
                .filter(|document| !document.contains("kind: HTTPRoute") && !document.contains("kind: VirtualService"))
                .collect::<Vec<_>>()
                .join("\n---\n")
        )
    }

    /// Who serves `GET /` on `web` for the sidecar client `client` (`ns/web-v1` or `NS/sleep`).
    fn sidecar_route(topology: &Topology, client: &str) -> Vec<String> {
        let client = topology.workload(client).unwrap().clone();
        let web = topology.service("ns", "web").unwrap();
        served(&topology.route_for_sidecar(&client, web, 80, Some(&get("GET", "/"))))
    }

    /// Istio 1.27 (see the module docs): a sidecar in the HTTPRoute's namespace takes the
    /// HTTPRoute (consumer override) unless the VirtualService is private to it or exported to it
    /// by name; elsewhere the older of the two wins.
    #[test]
    fn a_sidecar_takes_the_first_route_table_in_istios_order() {
        let old = "2025-01-01T00:00:00Z";
        let new = "2025-12-01T00:00:00Z";
        // Producer namespace: the HTTPRoute wins over an older public VirtualService.
        let topology = with_client(&coexisting(old, "['*']", "ns"), "ns");
        assert_eq!(sidecar_route(&topology, "ns/web-v1"), ["web-v2"]);
        // ... but not over one private to the namespace.
        let topology = with_client(&coexisting(old, "['.']", "ns"), "ns");
        assert_eq!(sidecar_route(&topology, "ns/web-v1"), ["web-v1"]);
        // Another namespace: the older wins, whichever it is.
        let topology = with_client(&coexisting(old, "['*']", "ns"), "other");
        assert_eq!(sidecar_route(&topology, "other/sleep"), ["web-v1"]);
        let topology = with_client(&coexisting(new, "['*']", "ns"), "other");
        assert_eq!(sidecar_route(&topology, "other/sleep"), ["web-v2"]);
        // Exported to the client's namespace by name: ahead of every public table.
        let topology = with_client(&coexisting(new, "[other]", "ns"), "other");
        assert_eq!(sidecar_route(&topology, "other/sleep"), ["web-v1"]);
        // A consumer route in the client's own namespace overrides the producer's VirtualService.
        let topology = with_client(&coexisting(old, "['*']", "other"), "other");
        assert_eq!(sidecar_route(&topology, "other/sleep"), ["web-v2"]);
        // Not visible (exported elsewhere): the HTTPRoute is all the client has.
        let topology = with_client(&coexisting(old, "[elsewhere]", "ns"), "other");
        assert_eq!(sidecar_route(&topology, "other/sleep"), ["web-v2"]);
    }

    /// A route not on the cluster yet (a simulated state has no creation time) is the newest.
    #[test]
    fn a_route_without_a_creation_time_is_newer_than_every_virtual_service() {
        let text = coexisting("2025-01-01T00:00:00Z", "['*']", "ns")
            .replace(", creationTimestamp: '2025-06-01T00:00:00Z'", "");
        let topology = with_client(&text, "other");
        assert_eq!(sidecar_route(&topology, "other/sleep"), ["web-v1"]);
    }
}
