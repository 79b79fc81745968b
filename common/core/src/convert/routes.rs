//! Rule 2: mesh VirtualServices become HTTPRoutes.
//!
//! A VirtualService bound to the mesh becomes one HTTPRoute with a Service `parentRef` (GAMMA) per
//! host that is a Service of the input; one bound only to Gateway API gateways gets Gateway
//! `parentRefs` and `hostnames` instead. Each `http` rule becomes one HTTPRoute rule: matches
//! (path exact/prefix/regex, headers, query parameters, method), weighted `backendRefs` (a
//! `subset` becomes the per-version Service of [`super::services`]), and filters for rewrite,
//! redirect, header changes and a mirror (a partial one with `requestMirror.percent`, Gateway API
//! v1.3); `timeout` becomes `timeouts.request`.
//!
//! A mesh VirtualService applies to every client of its hosts (unless `exportTo` says otherwise).
//! The Gateway API equivalent is a *producer* route, one in the namespace of the Service it
//! attaches to, so the HTTPRoute goes to the hosts' namespace, wherever the VirtualService lives
//! (a route elsewhere would be a consumer route, applying only to clients of its own namespace).
//!
//! What cannot be carried over is reported with its field path. Two kinds are told apart:
//! *lossy* problems (retries, fault injection, CORS) leave the rest of the route correct, so the
//! route is still emitted without them; *fatal* problems (a match or destination that cannot be
//! expressed, delegation, direct responses, rule order, an `exportTo` narrower than every
//! namespace) would send requests elsewhere, or reach clients the VirtualService did not, so no
//! route is emitted for that VirtualService at all. VirtualServices the migration leaves as they
//! are (ingress routes, objects another controller owns) are listed, see [`super::unchanged`].
//!
//! **Rule order.** Istio tries `http` rules first-match in order. Gateway API ranks matches by
//! specificity instead, with rule order only as the last tie-breaker: the one definition is
//! [`MatchOrder`] (see [`crate::mesh::gateway_api`] for the specification and Istio's choices),
//! which the waypoint evaluator uses too. It is computed on the emitted matches (a match without a
//! path is the API server's default, prefix `/`). When a later rule's match comes before an
//! earlier rule's match in that order and some request can satisfy both, the HTTPRoute would send
//! that request to the later rule: the conversion is refused for that VirtualService, naming both
//! matches. (Overlap is decided conservatively, with Istio's character-wise prefixes: only
//! provably disjoint matches, such as different exact paths, methods or header values, are
//! accepted.)
//!
//! **Prefixes.** Istio's `prefix` compares characters: `/api` also matches `/apix`, and `/api/`
//! does not match `/api` (Envoy's `prefix` route match). Gateway API's `PathPrefix` compares whole
//! path segments and ignores a trailing slash: `/api` matches `/api` and `/api/x` but not `/apix`,
//! and `/api/` matches `/api` (the HTTPPathMatch specification; Istio's `createURIMatch` drops the
//! trailing slash and uses Envoy's `path_separated_prefix`). So an Istio prefix becomes the
//! `PathPrefix` plus a `RegularExpression` match for the rest of the segment (`/api[^/].*`), and one
//! ending in a slash becomes a `RegularExpression` (`/api/.*`). Regular expressions rank below every
//! prefix, so where that changes which rule wins the rule-order check refuses the route, and a
//! prefix rewrite (which needs a lone `PathPrefix`) of such a prefix is refused.

use std::collections::BTreeMap;

use kube_core::DynamicObject;
use serde_json::{Map, Value, json};

use super::Report;
use super::objects::{Items, generated, invalid_name, is_generated};
use super::scope::{Mesh, is_headless, service_ports};
use crate::change::ResourceRef;
use crate::kinds::Kind;
use crate::mesh::ObjectRef;
use crate::mesh::gateway_api::{
    HEADER_NAME, HOSTNAME, MAX_BACKENDS, MAX_HEADER_CHANGES, MAX_HEADER_MATCHES, MAX_HEADER_VALUE, MAX_MATCHES,
    MAX_MATCHES_PER_RULE, MAX_PATH, MAX_RULES, MAX_WEIGHT, METHODS, gateway_duration, invalid_path, invalid_regex,
    matches_pattern,
};
use crate::mesh::gateway_api::{HttpRouteMatch, MatchOrder, NamedMatch};
use crate::mesh::networking::{
    Destination, HeaderOperations, HttpMatchRequest, HttpRoute, StringMatch, VirtualServiceSpec, service_of_host,
};

/// A DestinationRule subset an emitted route sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubsetUse {
    /// Namespace and name of the host Service.
    pub namespace: String,
    pub service: String,
    pub subset: String,
    /// The VirtualService that routes to it, and the field naming the subset.
    pub route: ObjectRef,
    pub field: String,
}

/// What the route conversion produced besides items.
#[derive(Debug, Default)]
pub struct Routed {
    pub subsets: Vec<SubsetUse>,
    /// VirtualServices converted completely.
    pub replaced: Vec<ResourceRef>,
}

pub(crate) fn convert_virtual_services(mesh: &Mesh, out: &mut Items, report: &mut Report) -> Routed {
    let mut routed = Routed::default();
    let mut claimed = routes_of_the_input(mesh);
    for (vs, decoded) in mesh.virtual_services() {
        let Some(namespace) = vs.metadata.namespace.as_deref() else {
            report.unsupported(&ObjectRef::of(vs), "metadata.namespace", "the object has no namespace; pass -n NS");
            continue;
        };
        if !routes_in_scope(mesh, decoded, namespace) || is_generated(vs) {
            continue;
        }
        let reference = ObjectRef::of(vs);
        if let Some(reason) = super::unchanged::virtual_service(mesh.snapshot, vs, decoded) {
            report.leave(&reference, reason);
            continue;
        }
        let before = report.unsupported_count();
        let mut converter = RouteConverter {
            mesh,
            vs: &reference,
            namespace,
            route_namespace: namespace.to_string(),
            report,
            fatal: false,
            match_origins: Vec::new(),
            subsets: vec![],
        };
        let route = converter.convert(vs, decoded, out);
        let mut subsets = std::mem::take(&mut converter.subsets);
        if let Some(route) = route
            && claim_parents(&route, &reference, &mut claimed, report)
        {
            routed.subsets.append(&mut subsets);
            out.add(route, report);
        }
        if report.unsupported_count() == before {
            routed.replaced.push(ResourceRef::new(Kind::VirtualService, Some(namespace), &reference.name));
        }
    }
    routed
}

/// True when the VirtualService lives in a namespace being converted or routes for a host there
/// (its route will live there, see the module docs).
fn routes_in_scope(mesh: &Mesh, decoded: &Result<VirtualServiceSpec, String>, namespace: &str) -> bool {
    mesh.in_scope(namespace)
        || decoded.as_ref().is_ok_and(|spec| {
            spec.hosts.iter().any(|host| service_of_host(host, namespace).is_some_and(|(_, ns)| mesh.in_scope(ns)))
        })
}

/// A parent (Service or Gateway) as (kind, namespace, name).
type Parent = (String, String, String);

fn parents_of(route: &DynamicObject) -> Vec<Parent> {
    let namespace = route.metadata.namespace.clone().unwrap_or_default();
    let parents = route.data.pointer("/spec/parentRefs").and_then(Value::as_array).cloned().unwrap_or_default();
    parents
        .iter()
        .map(|parent| {
            let field = |key: &str| parent.get(key).and_then(Value::as_str).map(str::to_string);
            let kind = field("kind").unwrap_or_else(|| "Gateway".into());
            (kind, field("namespace").unwrap_or_else(|| namespace.clone()), field("name").unwrap_or_default())
        })
        .collect()
}

/// Parents the input's own HTTPRoutes already attach to.
fn routes_of_the_input(mesh: &Mesh) -> BTreeMap<Parent, ObjectRef> {
    let mut claimed = BTreeMap::new();
    for route in mesh.snapshot.all(Kind::HttpRoute).iter().filter(|route| !is_generated(route)) {
        for parent in parents_of(route) {
            claimed.entry(parent).or_insert_with(|| ObjectRef::of(route));
        }
    }
    claimed
}

/// Gateway API merges every route attached to a parent and ranks their matches together, while
/// Istio uses one VirtualService per host: a second route on a parent would change routing, so it
/// is refused (false) naming the route already there.
fn claim_parents(
    route: &DynamicObject,
    vs: &ObjectRef,
    claimed: &mut BTreeMap<Parent, ObjectRef>,
    report: &mut Report,
) -> bool {
    let parents = parents_of(route);
    let taken: Vec<String> = parents
        .iter()
        .filter_map(|parent| {
            claimed.get(parent).map(|owner| format!("{} {}/{} ({owner})", parent.0, parent.1, parent.2))
        })
        .collect();
    if !taken.is_empty() {
        report.unsupported(
            vs,
            "spec.hosts",
            format!(
                "another route already attaches to {}: Gateway API would merge the routes, Istio used one \
                 VirtualService per host; merge them first",
                taken.join(", ")
            ),
        );
        return false;
    }
    for parent in parents {
        claimed.insert(parent, vs.clone());
    }
    true
}

/// The Gateway API matches for one Istio match (see the module docs on prefixes): the match
/// itself, and for a prefix the regular expression that makes it compare characters.
fn character_wise_prefix(
    request: &HttpMatchRequest,
    value: Value,
    key: HttpRouteMatch,
) -> Vec<(Value, HttpRouteMatch)> {
    let Some(StringMatch::Prefix(prefix)) = &request.uri else { return vec![(value, key)] };
    if prefix == "/" || value.get("path").is_none() {
        return vec![(value, key)];
    }
    let with_regex = |pattern: String| {
        let mut regex_match = value.clone();
        regex_match["path"] = json!({"type": "RegularExpression", "value": pattern});
        let regex_key = serde_json::from_value(regex_match.clone()).unwrap_or_else(|_| key.clone());
        (regex_match, regex_key)
    };
    if prefix.ends_with('/') {
        return vec![with_regex(format!("{}.*", regex::escape(prefix)))];
    }
    let rest_of_segment = with_regex(format!("{}[^/].*", regex::escape(prefix)));
    vec![(value, key), rest_of_segment]
}

/// False only when no request can satisfy both matches. Prefixes compare character-wise, as
/// Istio's do, which overlaps more than Gateway API's whole segments.
fn may_overlap(a: &HttpRouteMatch, b: &HttpRouteMatch) -> bool {
    let (path_a, path_b) = (a.path_or_default(), b.path_or_default());
    let paths = match (path_a.match_type.as_str(), path_b.match_type.as_str()) {
        ("Exact", "Exact") => path_a.value == path_b.value,
        ("Exact", "PathPrefix") => exact_may_start_with(&path_a.value, &path_b.value),
        ("PathPrefix", "Exact") => exact_may_start_with(&path_b.value, &path_a.value),
        ("PathPrefix", "PathPrefix") => {
            path_a.value.starts_with(path_b.value.as_str()) || path_b.value.starts_with(path_a.value.as_str())
        }
        ("RegularExpression", "Exact") => full_match(&path_a.value, &path_b.value),
        ("Exact", "RegularExpression") => full_match(&path_b.value, &path_a.value),
        ("RegularExpression", _) | (_, "RegularExpression") => {
            // Every path either matches starts with its literal prefix: disjoint when neither
            // literal prefix starts the other.
            let (a, b) = (literal_prefix(&path_a), literal_prefix(&path_b));
            a.starts_with(&b) || b.starts_with(&a)
        }
        _ => true,
    };
    let methods = match (&a.method, &b.method) {
        (Some(method_a), Some(method_b)) => method_a == method_b,
        _ => true,
    };
    paths
        && methods
        && values_may_overlap(&a.headers, &b.headers)
        && values_may_overlap(&a.query_params, &b.query_params)
}

/// True when the whole of `path` matches `pattern` (or the pattern does not compile: unknown).
fn full_match(pattern: &str, path: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_or(true, |regex| regex.is_match(path))
}

/// What every path a match accepts starts with: a prefix without its trailing slash (Gateway API
/// ignores it), an exact path, or the literal characters a regular expression starts with.
fn literal_prefix(path: &crate::mesh::gateway_api::PathMatch) -> String {
    match path.match_type.as_str() {
        "RegularExpression" => {
            let mut literal = String::new();
            let mut chars = path.value.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(escaped) if !escaped.is_ascii_alphanumeric() => literal.push(escaped),
                        _ => break,
                    },
                    '*' | '?' | '{' => {
                        literal.pop(); // the character before may be absent
                        break;
                    }
                    '.' | '^' | '$' | '+' | '(' | ')' | '[' | ']' | '|' => break,
                    _ => literal.push(c),
                }
            }
            literal
        }
        "PathPrefix" => path.value.trim_end_matches('/').to_string(),
        _ => path.value.clone(),
    }
}

fn exact_may_start_with(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix) || path == prefix.trim_end_matches('/')
}

/// False only when both require one name to have two different exact values.
fn values_may_overlap(a: &[NamedMatch], b: &[NamedMatch]) -> bool {
    let exact = |m: &NamedMatch| m.match_type == "Exact";
    a.iter()
        .filter(|m| exact(m))
        .all(|m| b.iter().filter(|other| exact(other) && other.name == m.name).all(|other| other.value == m.value))
}

struct RouteConverter<'a, 'm> {
    mesh: &'a Mesh<'m>,
    vs: &'a ObjectRef,
    /// The VirtualService's namespace, against which short hosts resolve.
    namespace: &'a str,
    /// Where the HTTPRoute goes: the namespace of the Services it attaches to (see `parents`).
    route_namespace: String,
    report: &'a mut Report,
    /// Set by a problem that makes the whole route wrong: nothing is emitted.
    fatal: bool,
    subsets: Vec<SubsetUse>,
    /// For each rule, the VirtualService match each emitted match comes from (a prefix emits two).
    match_origins: Vec<Vec<usize>>,
}

impl RouteConverter<'_, '_> {
    /// A problem after which the route would send requests elsewhere: nothing is emitted.
    fn refuse(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.report.unsupported(self.vs, field, reason);
        self.fatal = true;
    }

    /// A feature the route loses; the rest stays correct and is emitted.
    fn lose(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.report.unsupported(self.vs, field, reason);
    }

    fn convert(
        &mut self,
        vs: &DynamicObject,
        decoded: &Result<VirtualServiceSpec, String>,
        out: &Items,
    ) -> Option<DynamicObject> {
        let spec = match decoded {
            Ok(spec) => spec,
            Err(err) => {
                self.refuse("spec", err.clone());
                return None;
            }
        };
        if !spec.tcp.is_empty() {
            self.lose("spec.tcp", "TCP routes are not converted (TCPRoute is not in the Gateway API standard channel)");
        }
        if !spec.tls.is_empty() {
            self.lose("spec.tls", "TLS routes are not converted (TLSRoute is not in the Gateway API standard channel)");
        }
        if !spec.export_to.is_empty() && spec.export_to.iter().any(|to| to != "*") {
            // Refused, not lost: the route itself would apply to clients the VirtualService never
            // reached, so printing it for `oc apply` would widen the routing (issue 16).
            self.refuse(
                "spec.exportTo",
                "an HTTPRoute has no exportTo: on the Service it applies to every client, a wider scope",
            );
        }
        for key in spec.extra.keys() {
            self.lose(format!("spec.{key}"), "field not understood by the converter");
        }
        if spec.http.is_empty() {
            self.refuse("spec.http", "no HTTP routes to convert");
            return None;
        }
        let name = vs.metadata.name.clone().unwrap_or_default();
        if let Some(reason) = invalid_name(&name, false) {
            self.refuse("metadata.name", reason);
        }
        let reported = self.report.unsupported_count();
        let (parents, hostnames) = self.parents(spec);
        if parents.is_empty() && self.report.unsupported_count() == reported {
            self.refuse("spec.hosts", "no host is a Service (or Gateway API gateway) this conversion can attach to");
        } else if parents.is_empty() {
            self.fatal = true; // the reasons are reported per host and gateway
        }
        if let Some(reason) = out.name_taken(Kind::HttpRoute, &self.route_namespace, &name) {
            self.refuse("metadata.name", reason);
        }
        if spec.http.len() > MAX_RULES {
            // Refused for its size whatever its rules say: converting them, and the pairwise
            // order check above all, would only make a huge VirtualService slow to report.
            self.refuse("spec.http", format!("{} rules; an HTTPRoute holds at most {MAX_RULES}", spec.http.len()));
            return None;
        }
        let mut rules = Vec::new();
        let mut keys = Vec::new();
        for (index, route) in spec.http.iter().enumerate() {
            let (rule, rule_keys) = self.rule(&format!("spec.http[{index}]"), route);
            rules.push(Value::Object(rule));
            keys.push(rule_keys);
        }
        let total: usize = keys.iter().map(Vec::len).sum();
        if total > MAX_MATCHES {
            self.refuse("spec.http", format!("{total} matches; an HTTPRoute holds at most {MAX_MATCHES}"));
        } else {
            // Pairwise, so only within the size limits: at most MAX_MATCHES squared comparisons.
            self.check_order(&keys);
        }
        if self.fatal {
            return None;
        }
        let mut route_spec = Map::new();
        route_spec.insert("parentRefs".into(), Value::Array(parents));
        if !hostnames.is_empty() {
            route_spec.insert("hostnames".into(), json!(hostnames));
        }
        route_spec.insert("rules".into(), Value::Array(rules));
        let mut body = Map::new();
        body.insert("spec".into(), Value::Object(route_spec));
        Some(generated(Kind::HttpRoute, &self.route_namespace, &name, std::slice::from_ref(self.vs), body))
    }

    /// Parent references and hostnames (the latter for gateway-bound routes only).
    fn parents(&mut self, spec: &VirtualServiceSpec) -> (Vec<Value>, Vec<String>) {
        let mut mesh_bound = spec.gateways.is_empty();
        let mut gateways = Vec::new();
        for (index, gateway) in spec.gateways.iter().enumerate() {
            if gateway == "mesh" {
                mesh_bound = true;
                continue;
            }
            let (namespace, name) = gateway.split_once('/').unwrap_or((self.namespace, gateway));
            let is_gateway_api = self.mesh.snapshot.get(Kind::Gateway, Some(namespace), name).is_some();
            if is_gateway_api {
                let mut parent = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name});
                if namespace != self.namespace {
                    parent["namespace"] = json!(namespace);
                }
                gateways.push(parent);
            } else {
                self.lose(
                    format!("spec.gateways[{index}]"),
                    format!(
                        "bound to {gateway}, which is no Gateway API gateway of the input: routes of Istio ingress \
                         Gateways are not converted here (convert the gateway first, e.g. with ingress2gateway)"
                    ),
                );
            }
        }
        if mesh_bound && !gateways.is_empty() {
            self.lose(
                "spec.gateways",
                "bound to the mesh and to gateways at once: only the mesh part is converted; give the gateways \
                 their own HTTPRoute",
            );
            gateways.clear();
        }
        if !mesh_bound {
            let wildcard = spec.hosts.iter().any(|host| host == "*");
            let hostnames: Vec<String> = if wildcard { vec![] } else { spec.hosts.clone() };
            for (index, host) in hostnames.iter().enumerate() {
                if !matches_pattern(&HOSTNAME, host) || host.len() > 253 {
                    self.refuse(format!("spec.hosts[{index}]"), format!("{host:?} is not a valid HTTPRoute hostname"));
                }
            }
            return (gateways, hostnames);
        }
        let mut parents = Vec::new();
        for (index, host) in spec.hosts.iter().enumerate() {
            let field = format!("spec.hosts[{index}]");
            let Some((name, namespace)) = service_of_host(host, self.namespace) else {
                self.lose(
                    field,
                    format!("{host} is not a cluster Service: mesh routes to external hosts are not converted"),
                );
                continue;
            };
            let Some(service) = self.mesh.service(namespace, name) else {
                self.lose(field, format!("{host} is not a Service of the input"));
                continue;
            };
            if is_headless(service) {
                self.refuse(
                    field,
                    format!(
                        "Service {namespace}/{name} is headless: its clients connect to pod addresses, which no \
                         Service waypoint captures, so a route on it would not take effect in ambient"
                    ),
                );
                continue;
            }
            if self.mesh.waypoint(namespace).is_none() {
                self.lose(
                    field,
                    format!("Service {namespace}/{name} does not use a waypoint in this conversion: a route on it would not take effect"),
                );
                continue;
            }
            let parent = (namespace, json!({"group": "", "kind": "Service", "name": name}));
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
        let mut namespaces: Vec<&str> = parents.iter().map(|(namespace, _)| *namespace).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        match namespaces.as_slice() {
            [] => (vec![], vec![]),
            [namespace] => {
                self.route_namespace = namespace.to_string();
                (parents.into_iter().map(|(_, parent)| parent).collect(), vec![])
            }
            several => {
                self.refuse(
                    "spec.hosts",
                    format!(
                        "hosts in several namespaces ({}): a route applies to every client of a Service only in the \
                         Service's namespace; split the VirtualService by namespace",
                        several.join(", ")
                    ),
                );
                (vec![], vec![])
            }
        }
    }

    fn rule(&mut self, field: &str, route: &HttpRoute) -> (Map<String, Value>, Vec<HttpRouteMatch>) {
        let mut rule = Map::new();
        let mut keys = Vec::new();
        let mut matches = Vec::new();
        let mut origins = Vec::new();
        for (index, request) in route.matches.iter().enumerate() {
            let (value, key) = self.route_match(&format!("{field}.match[{index}]"), request);
            for (value, key) in character_wise_prefix(request, value, key) {
                matches.push(value);
                keys.push(key);
                origins.push(index);
            }
        }
        self.match_origins.push(origins);
        if matches.len() > MAX_MATCHES_PER_RULE {
            self.refuse(format!("{field}.match"), format!("more than {MAX_MATCHES_PER_RULE} matches in one rule"));
        }
        if keys.is_empty() {
            keys.push(HttpRouteMatch::default());
        } else {
            rule.insert("matches".into(), Value::Array(matches));
        }

        let mut filters = Vec::new();
        for (present, name, reason) in [
            (route.fault.is_some(), "fault", "fault injection has no Gateway API equivalent"),
            (route.retries.is_some(), "retries", "retries have no Gateway API standard equivalent"),
            (route.cors_policy.is_some(), "corsPolicy", "CORS has no Gateway API standard equivalent"),
            (route.mirrors.is_some(), "mirrors", "several mirrors are not converted"),
        ] {
            if present {
                self.lose(format!("{field}.{name}"), reason);
            }
        }
        for (present, name, reason) in [
            (route.delegate.is_some(), "delegate", "delegation has no Gateway API equivalent"),
            (route.direct_response.is_some(), "directResponse", "direct responses have no Gateway API equivalent"),
        ] {
            if present {
                self.refuse(format!("{field}.{name}"), reason);
            }
        }
        for key in route.extra.keys() {
            self.lose(format!("{field}.{key}"), "field not understood by the converter");
        }
        match (&route.redirect, route.route.is_empty()) {
            (Some(_), false) => self.refuse(field, "both redirect and route"),
            (Some(redirect), true) => filters.extend(self.redirect(&format!("{field}.redirect"), redirect)),
            (None, false) => {
                let backends = self.backends(field, route);
                rule.insert("backendRefs".into(), Value::Array(backends));
            }
            (None, true) if route.delegate.is_none() && route.direct_response.is_none() => {
                self.refuse(field, "no route, redirect or direct response")
            }
            (None, true) => {}
        }
        if let Some(rewrite) = &route.rewrite {
            let emitted = if route.matches.is_empty() { 0 } else { keys.len() };
            filters.extend(self.rewrite(&format!("{field}.rewrite"), rewrite, &keys, emitted));
        }
        if let Some(headers) = &route.headers {
            let changes = [
                ("request", "RequestHeaderModifier", "requestHeaderModifier", &headers.request),
                ("response", "ResponseHeaderModifier", "responseHeaderModifier", &headers.response),
            ];
            for (side, kind, key, operations) in changes {
                if let Some(modifier) =
                    operations.as_ref().and_then(|ops| self.header_modifier(&format!("{field}.headers.{side}"), ops))
                {
                    filters.push(json!({"type": kind, key: modifier}));
                }
            }
        }
        if let Some(mirror) = self.mirror(field, route) {
            filters.push(mirror);
        }
        if !filters.is_empty() {
            rule.insert("filters".into(), Value::Array(filters));
        }
        if let Some(timeout) = &route.timeout {
            match gateway_duration(timeout) {
                Ok(duration) => {
                    rule.insert("timeouts".into(), json!({"request": duration}));
                }
                Err(reason) => self.lose(format!("{field}.timeout"), reason),
            }
        }
        (rule, keys)
    }

    /// The emitted match, and the same decoded for ranking: precedence is judged on what is emitted.
    fn route_match(&mut self, field: &str, request: &HttpMatchRequest) -> (Value, HttpRouteMatch) {
        let mut value = Map::new();
        if let Some(uri) = &request.uri {
            let (kind, path) = match uri {
                StringMatch::Exact(path) => ("Exact", path),
                StringMatch::Prefix(path) => ("PathPrefix", path),
                StringMatch::Regex(path) => ("RegularExpression", path),
            };
            let problem = match uri {
                StringMatch::Regex(regex) => invalid_regex(regex),
                _ => invalid_path(path),
            };
            match problem {
                Some(reason) => self.refuse(format!("{field}.uri"), reason),
                None => {
                    value.insert("path".into(), json!({"type": kind, "value": path}));
                }
            }
        }
        if !request.headers.is_empty() {
            if request.headers.len() > MAX_HEADER_MATCHES {
                self.refuse(format!("{field}.headers"), format!("more than {MAX_HEADER_MATCHES} header matches"));
            }
            let headers = self.value_matches(&format!("{field}.headers"), &request.headers, true);
            value.insert("headers".into(), Value::Array(headers));
        }
        if !request.query_params.is_empty() {
            if request.query_params.len() > MAX_HEADER_MATCHES {
                self.refuse(format!("{field}.queryParams"), format!("more than {MAX_HEADER_MATCHES} query matches"));
            }
            let queries = self.value_matches(&format!("{field}.queryParams"), &request.query_params, false);
            value.insert("queryParams".into(), Value::Array(queries));
        }
        match &request.method {
            Some(StringMatch::Exact(method)) if METHODS.contains(&method.as_str()) => {
                value.insert("method".into(), json!(method));
            }
            Some(_) => self.refuse(format!("{field}.method"), "only exact standard HTTP methods can be matched"),
            None => {}
        }
        let unexpressible = [
            (!request.source_labels.is_empty(), "sourceLabels", "routes cannot match on the client's labels"),
            (!request.gateways.is_empty(), "gateways", "routes cannot match on the gateway per match"),
            (request.port.is_some(), "port", "per-match ports are not converted"),
            (request.ignore_uri_case == Some(true), "ignoreUriCase", "case-insensitive paths cannot be matched"),
        ];
        for (present, name, reason) in unexpressible {
            if present {
                self.refuse(format!("{field}.{name}"), reason);
            }
        }
        for extra in request.extra.keys() {
            self.refuse(format!("{field}.{extra}"), "match field not understood by the converter");
        }
        let value = Value::Object(value);
        let key = serde_json::from_value(value.clone()).unwrap_or_else(|err| {
            self.refuse(field, format!("the emitted match is not a valid HTTPRouteMatch: {err}"));
            HttpRouteMatch::default()
        });
        (value, key)
    }

    /// Header or query parameter matches. Istio compares regexes against the whole value, as
    /// Istio's Gateway API implementation does, so a prefix becomes an anchored regex.
    fn value_matches(&mut self, field: &str, matches: &BTreeMap<String, StringMatch>, headers: bool) -> Vec<Value> {
        let mut converted = Vec::new();
        for (name, string_match) in matches {
            let entry_field = format!("{field}[{name}]");
            if !matches_pattern(&HEADER_NAME, name) {
                self.refuse(&entry_field, format!("{name:?} is not a valid name to match on"));
                continue;
            }
            let (kind, value) = match string_match {
                StringMatch::Exact(value) => (None, value.clone()),
                StringMatch::Regex(regex) => (Some("RegularExpression"), regex.clone()),
                StringMatch::Prefix(prefix) if headers => {
                    (Some("RegularExpression"), format!("{}.*", regex::escape(prefix)))
                }
                StringMatch::Prefix(_) => {
                    self.refuse(&entry_field, "Istio does not support prefix query matches");
                    continue;
                }
            };
            if value.is_empty() || value.len() > MAX_HEADER_VALUE {
                self.refuse(&entry_field, format!("the value must have 1 to {MAX_HEADER_VALUE} characters"));
                continue;
            }
            if let Some(reason) = kind.and_then(|_| invalid_regex(&value)) {
                self.refuse(&entry_field, reason);
                continue;
            }
            let mut entry = json!({"name": name, "value": value});
            if let Some(kind) = kind {
                entry["type"] = json!(kind);
            }
            converted.push(entry);
        }
        converted
    }

    fn backends(&mut self, field: &str, route: &HttpRoute) -> Vec<Value> {
        let several = route.route.len() > 1;
        if route.route.len() > MAX_BACKENDS {
            self.refuse(format!("{field}.route"), format!("more than {MAX_BACKENDS} destinations"));
        }
        let mut backends = Vec::new();
        for (index, destination) in route.route.iter().enumerate() {
            let destination_field = format!("{field}.route[{index}]");
            if destination.headers.is_some() {
                self.lose(format!("{destination_field}.headers"), "per-destination header changes are not converted");
            }
            for key in destination.extra.keys() {
                self.lose(format!("{destination_field}.{key}"), "field not understood by the converter");
            }
            let Some(mut backend) = self.backend(&format!("{destination_field}.destination"), &destination.destination)
            else {
                continue;
            };
            match destination.weight {
                Some(weight) if (0..=MAX_WEIGHT).contains(&weight) => backend["weight"] = json!(weight),
                Some(weight) => self.refuse(format!("{destination_field}.weight"), format!("invalid weight {weight}")),
                None if several => self.refuse(
                    format!("{destination_field}.weight"),
                    "several destinations and this one has no weight: the split is ambiguous",
                ),
                None => {}
            }
            backends.push(backend);
        }
        backends
    }

    /// A `backendRef` (or mirror target) for a destination: the host's Service, or its version
    /// Service for a subset, with an explicit port.
    fn backend(&mut self, field: &str, destination: &Destination) -> Option<Value> {
        let host = &destination.host;
        let Some((name, namespace)) = service_of_host(host, self.namespace) else {
            self.refuse(format!("{field}.host"), format!("{host} is not a cluster Service"));
            return None;
        };
        let Some(service) = self.mesh.service(namespace, name) else {
            self.refuse(format!("{field}.host"), format!("{host} is not a Service of the input"));
            return None;
        };
        if namespace != self.route_namespace {
            self.refuse(
                format!("{field}.host"),
                "a backend in another namespace needs a ReferenceGrant, which widens who may route there; not generated",
            );
            return None;
        }
        let ports: Vec<i64> = service_ports(service).iter().filter_map(|port| port.get("port")?.as_i64()).collect();
        let port = match (destination.port.as_ref().map(|port| i64::from(port.number)), ports.as_slice()) {
            (Some(port), _) if ports.contains(&port) => port,
            (Some(port), _) => {
                self.refuse(format!("{field}.port"), format!("Service {namespace}/{name} has no port {port}"));
                return None;
            }
            (None, [only]) => *only,
            (None, _) => {
                self.refuse(
                    format!("{field}.port"),
                    format!("Service {namespace}/{name} has {} ports and the destination names none", ports.len()),
                );
                return None;
            }
        };
        let backend_name = match &destination.subset {
            None => name.to_string(),
            Some(subset) => {
                let version = format!("{name}-{subset}");
                if let Some(reason) = invalid_name(&version, true) {
                    self.refuse(format!("{field}.subset"), reason);
                    return None;
                }
                self.subsets.push(SubsetUse {
                    namespace: namespace.to_string(),
                    service: name.to_string(),
                    subset: subset.clone(),
                    route: self.vs.clone(),
                    field: format!("{field}.subset"),
                });
                version
            }
        };
        Some(json!({"name": backend_name, "port": port}))
    }

    fn redirect(&mut self, field: &str, redirect: &Value) -> Option<Value> {
        let Some(fields) = redirect.as_object() else {
            self.refuse(field, "not an object");
            return None;
        };
        // Istio redirects with 301 unless told otherwise; Gateway API defaults to 302.
        let mut converted = json!({"statusCode": 301});
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("uri", Value::String(uri)) => match invalid_path(uri) {
                    None => converted["path"] = json!({"type": "ReplaceFullPath", "replaceFullPath": uri}),
                    Some(reason) => self.refuse(format!("{field}.uri"), reason),
                },
                ("authority", Value::String(host)) if matches_pattern(&HOSTNAME, host) && !host.starts_with('*') => {
                    converted["hostname"] = json!(host)
                }
                ("redirectCode", Value::Number(code)) if matches!(code.as_u64(), Some(301 | 302)) => {
                    converted["statusCode"] = json!(code)
                }
                ("scheme", Value::String(scheme)) if matches!(scheme.as_str(), "http" | "https") => {
                    converted["scheme"] = json!(scheme)
                }
                ("port", Value::Number(port)) if port.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => {
                    converted["port"] = json!(port)
                }
                _ => self.refuse(format!("{field}.{key}"), "this redirect setting has no Gateway API equivalent"),
            }
        }
        Some(json!({"type": "RequestRedirect", "requestRedirect": converted}))
    }

    /// `rewrite.uri` replaces the matched prefix in Istio (the whole path for exact matches):
    /// `ReplacePrefixMatch` for a rule with one prefix match, `ReplaceFullPath` when every match
    /// is exact. Anything else rewrites differently and is refused.
    fn rewrite(&mut self, field: &str, rewrite: &Value, keys: &[HttpRouteMatch], match_count: usize) -> Option<Value> {
        let Some(fields) = rewrite.as_object() else {
            self.refuse(field, "not an object");
            return None;
        };
        let mut converted = Map::new();
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("uri", Value::String(uri)) => {
                    let path_is =
                        |key: &HttpRouteMatch, kind: &str| key.path.as_ref().is_some_and(|p| p.match_type == kind);
                    let all_exact = keys.iter().all(|key| path_is(key, "Exact"));
                    let one_prefix = match_count == 1 && keys.first().is_some_and(|key| path_is(key, "PathPrefix"));
                    if uri.len() > MAX_PATH {
                        self.refuse(format!("{field}.uri"), "too long");
                    } else if all_exact && match_count > 0 {
                        converted.insert("path".into(), json!({"type": "ReplaceFullPath", "replaceFullPath": uri}));
                    } else if one_prefix {
                        converted
                            .insert("path".into(), json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": uri}));
                    } else {
                        self.refuse(
                            format!("{field}.uri"),
                            "a URI rewrite converts only for one prefix match or exact matches only (an Istio prefix \
                             that does not end a path segment, /api matching /apix, or that ends in a slash, /api/ \
                             not matching /api, needs a RegularExpression match, which ReplacePrefixMatch cannot use)",
                        );
                    }
                }
                ("authority", Value::String(host)) if matches_pattern(&HOSTNAME, host) && !host.starts_with('*') => {
                    converted.insert("hostname".into(), json!(host));
                }
                _ => self.refuse(format!("{field}.{key}"), "this rewrite has no Gateway API equivalent"),
            }
        }
        (!converted.is_empty()).then(|| json!({"type": "URLRewrite", "urlRewrite": converted}))
    }

    fn header_modifier(&mut self, field: &str, operations: &HeaderOperations) -> Option<Value> {
        let mut modifier = Map::new();
        for (name, values) in [("set", &operations.set), ("add", &operations.add)] {
            if values.is_empty() {
                continue;
            }
            let entries: Vec<Value> = values
                .iter()
                .filter(|(header, _)| self.header_name_ok(&format!("{field}.{name}[{header}]"), header))
                .map(|(header, value)| json!({"name": header, "value": value}))
                .collect();
            if entries.len() > MAX_HEADER_CHANGES {
                self.lose(format!("{field}.{name}"), format!("more than {MAX_HEADER_CHANGES} headers"));
                continue;
            }
            modifier.insert(name.into(), Value::Array(entries));
        }
        if !operations.remove.is_empty() {
            // A set in Gateway API: duplicates would be rejected; header names compare case-insensitively.
            let mut removed: Vec<&String> = Vec::new();
            for header in &operations.remove {
                let duplicate = removed.iter().any(|known| known.eq_ignore_ascii_case(header));
                if !duplicate && self.header_name_ok(&format!("{field}.remove[{header}]"), header) {
                    removed.push(header);
                }
            }
            if removed.len() > MAX_HEADER_CHANGES {
                self.lose(format!("{field}.remove"), format!("more than {MAX_HEADER_CHANGES} headers"));
            } else if !removed.is_empty() {
                modifier.insert("remove".into(), json!(removed));
            }
        }
        (!modifier.is_empty()).then_some(Value::Object(modifier))
    }

    fn header_name_ok(&mut self, field: &str, name: &str) -> bool {
        let ok = matches_pattern(&HEADER_NAME, name);
        if !ok {
            self.lose(field, format!("{name:?} is not a header name Gateway API accepts"));
        }
        ok
    }

    /// `mirror` becomes a RequestMirror filter. A partial mirror (`mirrorPercentage`, or the
    /// deprecated `mirrorPercent`) keeps its share: Gateway API v1.3's `requestMirror.percent` for
    /// whole percentages, `fraction` (per million) for the rest, which Istio 1.27 turns into the
    /// same Envoy `runtime_fraction` as the VirtualService field.
    fn mirror(&mut self, field: &str, route: &HttpRoute) -> Option<Value> {
        let mirror = route.mirror.as_ref()?;
        let percentage = route
            .mirror_percentage
            .as_ref()
            .and_then(|p| p.get("value"))
            .and_then(Value::as_f64)
            .or_else(|| route.mirror_percent.as_ref().and_then(Value::as_f64));
        let share = match percentage {
            None => None,
            Some(value) if !(0.0..=100.0).contains(&value) => {
                self.lose(format!("{field}.mirrorPercentage"), format!("{value} is not a percentage"));
                return None;
            }
            Some(value) if value >= 100.0 => None,
            Some(value) if value.fract() == 0.0 => Some(("percent", json!(value as u32))),
            Some(value) => {
                Some(("fraction", json!({"numerator": (value * 10_000.0).round() as u32, "denominator": 1_000_000})))
            }
        };
        let destination: Destination = match serde_json::from_value(mirror.clone()) {
            Ok(destination) => destination,
            Err(err) => {
                self.lose(format!("{field}.mirror"), format!("invalid mirror: {err}"));
                return None;
            }
        };
        let backend = self.backend(&format!("{field}.mirror"), &destination)?;
        let mut filter = json!({"backendRef": backend});
        if let Some((key, value)) = share {
            filter[key] = value;
        }
        Some(json!({"type": "RequestMirror", "requestMirror": filter}))
    }

    /// Refuses the route when Gateway API precedence would pick another rule than Istio's order.
    fn check_order(&mut self, rules: &[Vec<HttpRouteMatch>]) {
        // The HTTPRoute to be: named after the VirtualService, not created yet.
        let order =
            |rule: usize, m: &HttpRouteMatch| MatchOrder::new("", &self.route_namespace, &self.vs.name, rule, m);
        let mut conflicts = Vec::new();
        for (earlier, earlier_matches) in rules.iter().enumerate() {
            for (later, later_matches) in rules.iter().enumerate().skip(earlier + 1) {
                let conflict = later_matches.iter().enumerate().find_map(|(l, later_match)| {
                    earlier_matches.iter().enumerate().find_map(|(e, earlier_match)| {
                        (order(later, later_match) < order(earlier, earlier_match)
                            && may_overlap(later_match, earlier_match))
                        .then_some((e, l))
                    })
                });
                conflicts.extend(conflict.map(|(e, l)| (earlier, e, later, l)));
            }
        }
        for (earlier, e, later, l) in conflicts {
            let origin = |rule: usize, emitted: usize| {
                self.match_origins.get(rule).and_then(|origins| origins.get(emitted)).copied().unwrap_or(emitted)
            };
            let path = |rule: usize, emitted: usize| {
                let path = rules[rule][emitted].path_or_default();
                format!("{} {}", path.match_type, path.value)
            };
            let (earlier_path, later_path) = (path(earlier, e), path(later, l));
            let (e, l) = (origin(earlier, e), origin(later, l));
            self.refuse(
                format!("spec.http[{later}].match[{l}]"),
                format!(
                    "rule order: Gateway API ranks this match ({later_path}) above spec.http[{earlier}].match[{e}] \
                     ({earlier_path}), so requests matching both would take rule {later} instead of rule {earlier}; \
                     reorder the VirtualService or make the matches disjoint"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scope::tests::{objects, snapshot_of};
    use super::super::{ConvertOptions, convert};
    use super::*;
    use crate::equivalence::Topology;
    use crate::snapshot::Snapshot;

    const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}, {name: grpc, port: 9090}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
";

    /// [`SERVICES`] and the VirtualService `shop/reviews` with this spec.
    fn with_virtual_service(vs_spec: &str) -> String {
        format!(
            "{SERVICES}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n{vs_spec}"
        )
    }

    fn convert_vs(vs_spec: &str) -> super::super::Conversion {
        convert(&snapshot_of(&with_virtual_service(vs_spec)), &ConvertOptions::default())
    }

    fn route(conversion: &super::super::Conversion) -> Option<Value> {
        conversion
            .items
            .iter()
            .find(|item| item.types.as_ref().is_some_and(|t| t.kind == "HTTPRoute"))
            .map(|item| item.data["spec"].clone())
    }

    fn fields(conversion: &super::super::Conversion) -> Vec<&str> {
        conversion.unsupported.iter().map(|entry| entry.field.as_str()).collect()
    }

    /// A client and two reviews versions, for the evaluator to route between.
    fn deployments() -> String {
        let workloads = [
            ("reviews-v1", "{app: reviews, version: v1}"),
            ("reviews-v2", "{app: reviews, version: v2}"),
            ("front", "{app: front}"),
        ];
        workloads
            .map(|(name, labels)| {
                format!(
                    "\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: shop}}\n\
                     spec: {{template: {{metadata: {{labels: {labels}}}, spec: {{containers: [{{name: c}}]}}}}}}\n"
                )
            })
            .concat()
    }

    /// For each probe request from `shop/front` to `shop/reviews:9080`: (request, where the
    /// sidecar sends it by the VirtualService in `before`, where the waypoint sends it by the
    /// HTTPRoutes in `after`).
    fn probe(before: &Snapshot, after: &Snapshot) -> Vec<(String, Vec<String>, Vec<String>)> {
        use crate::equivalence::route::tests::{get, served};
        let (before, after) = (Topology::from_snapshot(before), Topology::from_snapshot(after));
        let client = before.workload("shop/front").expect("client");
        let reviews_before = before.service("shop", "reviews").expect("reviews");
        let reviews_after = after.service("shop", "reviews").expect("reviews");
        let mut probes = Vec::new();
        for method in ["GET", "POST"] {
            for path in ["/", "/api", "/api/", "/apix", "/api/x", "/api/xy", "/api/x/y", "/login"] {
                for user in [None, Some("jason")] {
                    let mut request = get(method, path);
                    request.headers.extend(user.map(|user| ("end-user".to_string(), user.to_string())));
                    let by_sidecar = before.route_for_sidecar(client, reviews_before, 9080, Some(&request));
                    let at_waypoint = after.route_at_waypoint(reviews_after, 9080, Some(&request));
                    // Both refuse unrouted requests with a 404, in their own words.
                    let outcome = |routing: &crate::equivalence::route::Routing| match routing {
                        crate::equivalence::route::Routing::Unrouted { .. } => vec!["404".to_string()],
                        routing => served(routing),
                    };
                    probes.push((format!("{method} {path} {user:?}"), outcome(&by_sidecar), outcome(&at_waypoint)));
                }
            }
        }
        probes
    }

    #[test]
    fn what_is_accepted_routes_the_same_at_the_waypoint_and_what_is_refused_would_not() {
        // Each earlier overlapping match ranks higher: rule 1's prefixes and their regular
        // expressions (/api/x[^/].*, /api[^/].*) outrank rule 2's /api/.*, which is longer than
        // none of them; no catch-all follows, which would outrank every regular expression.
        let accepted = format!(
            "{}{}",
            with_virtual_service(
                "  hosts: [reviews]
  http:
  - match: [{uri: {exact: /api/x}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /api/x}, method: {exact: POST}}, {uri: {prefix: /api}, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /api/}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /login}}]
    route: [{destination: {host: reviews, subset: v2}}]"
            ),
            deployments()
        );
        let mut input = objects(&accepted);
        let conversion = convert(&Snapshot::from_objects(input.clone()), &ConvertOptions::default());
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        let before = Snapshot::from_objects(input.clone());
        input.extend(conversion.items);
        let probes = probe(&before, &Snapshot::from_objects(input));
        assert!(probes.iter().any(|(_, by_sidecar, _)| by_sidecar == &["reviews-v2"]), "both versions are probed");
        for (request, by_sidecar, at_waypoint) in &probes {
            assert_eq!(by_sidecar, at_waypoint, "{request}");
        }

        // A header rule before a longer prefix: refused; its literal translation would reroute.
        let refused = format!(
            "{}{}",
            with_virtual_service(
                "  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews}}]"
            ),
            deployments()
        );
        let conversion = convert(&snapshot_of(&refused), &ConvertOptions::default());
        assert!(
            conversion.unsupported.iter().any(|u| u.reason.starts_with("rule order")),
            "{:?}",
            conversion.unsupported
        );
        let literal_translation = format!(
            "{SERVICES}{}---
apiVersion: v1
kind: Service
metadata: {{name: reviews-v1, namespace: shop}}
spec: {{selector: {{app: reviews, version: v1}}, ports: [{{port: 9080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: reviews-v2, namespace: shop}}
spec: {{selector: {{app: reviews, version: v2}}, ports: [{{port: 9080}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: reviews, namespace: shop}}
spec:
  parentRefs: [{{group: '', kind: Service, name: reviews}}]
  rules:
  - matches: [{{headers: [{{name: end-user, value: jason}}]}}]
    backendRefs: [{{name: reviews-v2, port: 9080}}]
  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backendRefs: [{{name: reviews-v1, port: 9080}}]
  - backendRefs: [{{name: reviews, port: 9080}}]",
            deployments()
        );
        let probes = probe(&snapshot_of(&refused), &snapshot_of(&literal_translation));
        let rerouted: Vec<&String> = probes
            .iter()
            .filter(|(_, by_sidecar, at_waypoint)| by_sidecar != at_waypoint)
            .map(|(request, ..)| request)
            .collect();
        // jason under /api: by the sidecar to v2 (rule 0), at the waypoint to v1 (the longer prefix);
        // and /apix, which Istio's prefix /api takes to v1 and PathPrefix /api leaves to the catch-all.
        assert_eq!(rerouted.len(), 12, "{rerouted:?}");
        assert!(
            rerouted
                .iter()
                .all(|request| request.contains(" /api") && (request.contains("jason") || request.contains("/apix"))),
            "{rerouted:?}"
        );
    }

    #[test]
    fn the_guides_reviews_route_converts_and_replaces_the_virtual_service() {
        let conversion = convert_vs(
            "  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]",
        );
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert_eq!(
            route(&conversion),
            Some(json!({
                "parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
                "rules": [
                    {"matches": [{"headers": [{"name": "end-user", "value": "jason"}]}],
                     "backendRefs": [{"name": "reviews-v2", "port": 9080}]},
                    {"backendRefs": [{"name": "reviews-v1", "port": 9080}]}
                ]
            }))
        );
        assert!(conversion.replaces.contains(&ResourceRef::new(Kind::VirtualService, Some("shop"), "reviews")));
    }

    #[test]
    fn matches_and_actions_convert() {
        let conversion = convert_vs(
            "  hosts: [reviews]
  http:
  - match:
    - uri: {exact: /login}
      method: {exact: POST}
      queryParams: {debug: {exact: '1'}}
      headers: {x-v: {prefix: a.b}}
    rewrite: {uri: /signin, authority: auth.shop}
    headers: {request: {set: {x-a: '1'}, remove: [x-b, X-B]}, response: {add: {x-c: '2'}}}
    timeout: 1.5s
    mirror: {host: reviews, subset: v2}
    route: [{destination: {host: reviews, subset: v1}, weight: 90}, {destination: {host: reviews, port: {number: 9080}}, weight: 10}]
  - match: [{uri: {regex: '/api/v[0-9]+/.*'}}]
    redirect: {uri: /v2, redirectCode: 302}",
        );
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        let spec = route(&conversion).expect("route emitted");
        let first = &spec["rules"][0];
        assert_eq!(
            first["matches"][0],
            json!({"path": {"type": "Exact", "value": "/login"}, "method": "POST",
                   "queryParams": [{"name": "debug", "value": "1"}],
                   "headers": [{"name": "x-v", "type": "RegularExpression", "value": "a\\.b.*"}]})
        );
        assert_eq!(
            first["backendRefs"],
            json!([{"name": "reviews-v1", "port": 9080, "weight": 90}, {"name": "reviews", "port": 9080, "weight": 10}])
        );
        assert_eq!(first["timeouts"], json!({"request": "1s500ms"}));
        let filters = first["filters"].as_array().expect("filters");
        assert!(filters.contains(&json!({"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/signin"}, "hostname": "auth.shop"}})));
        assert!(filters.contains(&json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}], "remove": ["x-b"]}})));
        assert!(filters.contains(&json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-c", "value": "2"}]}})));
        assert!(filters.contains(
            &json!({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "reviews-v2", "port": 9080}}})
        ));
        assert_eq!(
            spec["rules"][1]["filters"],
            json!([{"type": "RequestRedirect", "requestRedirect": {"statusCode": 302, "path": {"type": "ReplaceFullPath", "replaceFullPath": "/v2"}}}])
        );
    }

    #[test]
    fn fault_retries_and_cors_are_reported_and_the_rest_is_emitted() {
        let conversion = convert_vs(
            "  hosts: [reviews]
  http:
  - fault: {abort: {percentage: {value: 10}, httpStatus: 500}}
    retries: {attempts: 3}
    corsPolicy: {allowOrigins: [{exact: a}]}
    route: [{destination: {host: reviews}}]",
        );
        assert_eq!(fields(&conversion), vec!["spec.http[0].corsPolicy", "spec.http[0].fault", "spec.http[0].retries"]);
        assert!(route(&conversion).is_some(), "the rest of the route is still emitted");
        assert!(
            !conversion.replaces.iter().any(|replaced| replaced.kind == Kind::VirtualService),
            "a partly converted VirtualService is not replaced: {:?}",
            conversion.replaces
        );
    }

    #[test]
    fn a_route_with_a_narrower_export_is_reported_and_not_printed() {
        let conversion = convert_vs(
            "  hosts: [reviews]
  exportTo: ['.']
  http: [{route: [{destination: {host: reviews}}]}]",
        );
        assert_eq!(fields(&conversion), vec!["spec.exportTo"]);
        assert!(route(&conversion).is_none(), "a route applying to every client would widen the VirtualService");
    }

    #[test]
    fn partial_mirrors_keep_their_share_as_percent_or_fraction() {
        let filter = |percentage: &str| {
            let conversion = convert_vs(&format!(
                "  hosts: [reviews]
  http:
  - mirror: {{host: reviews}}
    {percentage}
    route: [{{destination: {{host: reviews}}}}]"
            ));
            assert!(conversion.is_faithful(), "{percentage}: {:?}", conversion.unsupported);
            route(&conversion).expect("route emitted")["rules"][0]["filters"][0]["requestMirror"].clone()
        };
        let backend = json!({"name": "reviews", "port": 9080});
        assert_eq!(filter("mirrorPercentage: {value: 50}"), json!({"backendRef": backend, "percent": 50}));
        assert_eq!(filter("mirrorPercent: 25"), json!({"backendRef": backend, "percent": 25}));
        assert_eq!(
            filter("mirrorPercentage: {value: 0.5}"),
            json!({"backendRef": backend, "fraction": {"numerator": 5000, "denominator": 1_000_000}})
        );
        assert_eq!(filter("mirrorPercentage: {value: 100}"), json!({"backendRef": backend}));
    }

    #[test]
    fn rule_order_conflicts_are_refused() {
        // Istio sends GET /api/x with header x=1 to rule 0; Gateway API ranks rule 1's exact path higher.
        let conversion = convert_vs(
            "  hosts: [reviews]
  http:
  - match: [{headers: {x: {exact: '1'}}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /api/x}}]
    route: [{destination: {host: reviews, subset: v2}}]",
        );
        assert_eq!(fields(&conversion), vec!["spec.http[1].match[0]"]);
        assert!(conversion.unsupported[0].reason.contains("rule order"));
        assert!(route(&conversion).is_none(), "a misordered route is never emitted");

        // A catch-all before a specific rule: Istio never reaches the specific rule.
        let conversion = convert_vs(
            "  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v2}}]",
        );
        assert_eq!(fields(&conversion), vec!["spec.http[1].match[0]"]);
    }

    #[test]
    fn disjoint_or_consistently_ordered_rules_are_accepted() {
        let conversion = convert_vs(
            "  hosts: [reviews]
  http:
  - match: [{method: {exact: GET}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /x}, method: {exact: POST}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /api/v1}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews}}]",
        );
        // Rule 1 (exact /x, POST) outranks rule 0 (GET) but no request is both GET and POST.
        // Rule 2 (prefix /api/v1, length 7) outranks rule 0 (prefix /, length 1) and overlaps it: refused.
        // Rule 3's catch-all (prefix /) outranks rule 2's regular expression for /api/v1x: refused.
        assert_eq!(fields(&conversion), vec!["spec.http[2].match[0]", "spec.http[3].match[0]"]);

        let conversion = convert_vs(
            "  hosts: [reviews]
  http:
  - match: [{uri: {exact: /a}}, {uri: {prefix: /static}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /b}}]
    route: [{destination: {host: reviews, subset: v2}}]",
        );
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        // With a catch-all after it, /staticx would take the catch-all (prefix / outranks the
        // regular expression for the rest of the segment): refused.
        let conversion = convert_vs(
            "  hosts: [reviews]
  http:
  - match: [{uri: {exact: /a}}, {uri: {prefix: /static}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews}}]",
        );
        assert_eq!(fields(&conversion), vec!["spec.http[1].match[0]"]);
        assert!(conversion.unsupported[0].reason.contains("RegularExpression /static[^/].*"));
    }

    #[test]
    fn unexpressible_routes_are_refused_whole() {
        for (spec, field) in [
            (
                "  - match: [{sourceLabels: {app: a}}]\n    route: [{destination: {host: reviews}}]",
                "spec.http[0].match[0].sourceLabels",
            ),
            ("  - delegate: {name: other}", "spec.http[0].delegate"),
            ("  - directResponse: {status: 503}", "spec.http[0].directResponse"),
            ("  - route: [{destination: {host: ratings}}]", "spec.http[0].route[0].destination.port"),
            (
                "  - route: [{destination: {host: reviews}, weight: 50}, {destination: {host: reviews, subset: v1}}]",
                "spec.http[0].route[1].weight",
            ),
            (
                "  - route: [{destination: {host: reviews.other.svc.cluster.local}}]",
                "spec.http[0].route[0].destination.host",
            ),
            (
                "  - match: [{uri: {exact: 'no-slash'}}]\n    route: [{destination: {host: reviews}}]",
                "spec.http[0].match[0].uri",
            ),
            (
                "  - match: [{method: {regex: 'G.*'}}]\n    route: [{destination: {host: reviews}}]",
                "spec.http[0].match[0].method",
            ),
        ] {
            let conversion = convert_vs(&format!("  hosts: [reviews]\n  http:\n{spec}"));
            assert!(fields(&conversion).contains(&field), "{field}: {:?}", conversion.unsupported);
            assert!(route(&conversion).is_none(), "{field}: nothing emitted");
        }
    }

    #[test]
    fn hosts_that_are_not_services_and_istio_gateways_are_reported() {
        let conversion = convert_vs(
            "  hosts: [reviews, www.example.com]
  gateways: [mesh, bookinfo-gateway]
  http:
  - route: [{destination: {host: reviews}}]
  tcp:
  - route: [{destination: {host: reviews}}]",
        );
        assert_eq!(fields(&conversion), vec!["spec.gateways[1]", "spec.hosts[1]", "spec.tcp"]);
        let spec = route(&conversion).expect("the mesh part is emitted");
        assert_eq!(spec["parentRefs"], json!([{"group": "", "kind": "Service", "name": "reviews"}]));
    }

    #[test]
    fn a_route_bound_to_a_gateway_api_gateway_attaches_to_it() {
        let input = format!(
            "{SERVICES}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: shop}}
spec: {{gatewayClassName: istio, listeners: [{{name: http, port: 80, protocol: HTTP}}]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front, namespace: shop}}
spec:
  hosts: [shop.example.com]
  gateways: [shop/edge]
  http: [{{match: [{{uri: {{prefix: /reviews/}}}}], route: [{{destination: {{host: reviews}}}}]}}]
"
        );
        let options = ConvertOptions { namespaces: vec!["shop".into()], ..ConvertOptions::default() };
        let conversion = convert(&snapshot_of(&input), &options);
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert_eq!(
            route(&conversion),
            Some(json!({
                "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}],
                "hostnames": ["shop.example.com"],
                "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "/reviews/.*"}}],
                           "backendRefs": [{"name": "reviews", "port": 9080}]}]
            }))
        );
    }

    #[test]
    fn a_route_goes_to_the_namespace_of_its_service() {
        let input = format!(
            "{SERVICES}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews-from-front, namespace: front}}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http: [{{route: [{{destination: {{host: reviews.shop.svc.cluster.local, subset: v1}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: two-namespaces, namespace: front}}
spec:
  hosts: [reviews.shop, ratings.other]
  http: [{{route: [{{destination: {{host: reviews.shop}}}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ratings, namespace: other}}
spec: {{selector: {{app: ratings}}, ports: [{{port: 80}}]}}
"
        );
        let options =
            ConvertOptions { namespaces: vec!["shop".into(), "other".into(), "front".into()], ..Default::default() };
        let conversion = convert(&snapshot_of(&input), &options);
        let emitted = conversion
            .items
            .iter()
            .find(|item| item.types.as_ref().is_some_and(|t| t.kind == "HTTPRoute"))
            .expect("route emitted");
        assert_eq!(emitted.metadata.namespace.as_deref(), Some("shop"), "a producer route, like the VirtualService");
        assert_eq!(emitted.data["spec"]["parentRefs"], json!([{"group": "", "kind": "Service", "name": "reviews"}]));
        assert_eq!(emitted.data["spec"]["rules"][0]["backendRefs"], json!([{"name": "reviews-v1", "port": 9080}]));
        assert_eq!(fields(&conversion)[0], "spec.hosts");
        assert!(conversion.unsupported[0].reason.contains("several namespaces (other, shop)"));
        assert!(conversion.unsupported.iter().all(|u| u.object.name == "two-namespaces"));
        assert!(conversion.replaces.contains(&ResourceRef::new(
            Kind::VirtualService,
            Some("front"),
            "reviews-from-front"
        )));
    }

    #[test]
    fn two_routes_for_one_service_are_refused() {
        let input = format!(
            "{SERVICES}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: a, namespace: shop}}
spec: {{hosts: [reviews], http: [{{route: [{{destination: {{host: reviews}}}}]}}]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: b, namespace: shop}}
spec: {{hosts: [reviews.shop.svc.cluster.local], http: [{{route: [{{destination: {{host: reviews}}}}]}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: mine, namespace: shop}}
spec: {{parentRefs: [{{group: '', kind: Service, name: ratings}}]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: c, namespace: shop}}
spec: {{hosts: [ratings], http: [{{route: [{{destination: {{host: ratings, port: {{number: 9080}}}}}}]}}]}}
"
        );
        let conversion = convert(&snapshot_of(&input), &ConvertOptions::default());
        let refused: Vec<&str> = conversion.unsupported.iter().map(|u| u.object.name.as_str()).collect();
        assert_eq!(refused, vec!["b", "c"], "{:?}", conversion.unsupported);
        assert!(conversion.unsupported[1].reason.contains("HTTPRoute shop/mine"));
        let routes: Vec<&str> = conversion
            .items
            .iter()
            .filter(|item| item.types.as_ref().is_some_and(|t| t.kind == "HTTPRoute"))
            .filter_map(|item| item.metadata.name.as_deref())
            .collect();
        assert_eq!(routes, vec!["a"]);
    }

    #[test]
    fn durations_follow_gep_2257() {
        assert_eq!(gateway_duration("10s"), Ok("10s".into()));
        assert_eq!(gateway_duration("0.5s"), Ok("500ms".into()));
        assert_eq!(gateway_duration("90s"), Ok("1m30s".into()));
        assert_eq!(gateway_duration("0s"), Ok("0s".into()));
        assert!(gateway_duration("1.0001s").is_err());
        assert!(gateway_duration("soon").is_err());
    }

    #[test]
    fn paths_follow_the_crd_rules() {
        assert_eq!(invalid_path("/api/v1"), None);
        for bad in ["api", "/a//b", "/a/../b", "/a%2Fb", "/a#b", "/a/.", "/a b"] {
            assert!(invalid_path(bad).is_some(), "{bad}");
        }
    }
}
