//! Gateway API objects (gateway.networking.k8s.io) as far as the suite reasons about them:
//! Gateways (waypoints and ingress gateways) and HTTPRoutes (what VirtualServices become).
//!
//! **Match precedence.** VirtualServices route by their first matching rule; HTTPRoutes do not.
//! The Gateway API v1.3 specification (`HTTPRouteRule.matches`, apis/v1/httproute_types.go in
//! kubernetes-sigs/gateway-api, also in the v1.3.0 CRD) says:
//!
//! > Proxy or Load Balancer routing configuration generated from HTTPRoutes MUST prioritize
//! > matches based on the following criteria, continuing on ties. Across all rules specified on
//! > applicable Routes, precedence must be given to the match having:
//! >
//! > * "Exact" path match.
//! > * "Prefix" path match with largest number of characters.
//! > * Method match.
//! > * Largest number of header matches.
//! > * Largest number of query param matches.
//! >
//! > Note: The precedence of RegularExpression path matches are implementation-specific.
//! >
//! > If ties still exist across multiple Routes, matching precedence MUST be determined in order
//! > of the following criteria, continuing on ties:
//! >
//! > * The oldest Route based on creation timestamp.
//! > * The Route appearing first in alphabetical order by "{namespace}/{name}".
//! >
//! > If ties still exist within an HTTPRoute, matching precedence MUST be granted to the FIRST
//! > matching rule (in list order) with a match meeting the above criteria.
//!
//! Where the specification leaves a choice, this module follows Istio, whose waypoints and
//! gateways run the routes (istio/istio, pilot/pkg/config/kube/gateway/conversion.go:
//! `sortHTTPRoutes`, `getURIRank`, `getURILength`, `createURIMatch`):
//! - a `RegularExpression` path ranks below every `PathPrefix`, even `/` (`getURIRank`: Exact 3,
//!   Prefix 2, Regex 1), and among regular expressions the longer pattern ranks first;
//! - a prefix's length is counted without its trailing slash, except for `/` itself
//!   (`createURIMatch` applies "When specified, a trailing `/` is ignored" before
//!   `getURILength`), so `/api/` and `/api` tie.
//!
//! [`Precedence`] is the per-match part and [`MatchOrder`] the whole order; the waypoint
//! evaluator picks the least `MatchOrder` among matching matches and the converter refuses a
//! VirtualService whose rules that order would take out of turn, so both agree by construction.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `spec` of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default)]
    pub gateway_class_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `spec` of an HTTPRoute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HttpRouteRule>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

impl ParentRef {
    /// A Service parent (GAMMA: the route applies to traffic addressed to that Service, at its
    /// waypoint), as opposed to a Gateway parent (an ingress or a waypoint Gateway).
    pub fn is_service(&self) -> bool {
        self.kind.as_deref() == Some("Service") && matches!(self.group.as_deref(), None | Some("") | Some("core"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// No matches means one match of `PathPrefix /`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl HttpRouteRule {
    /// The rule's matches, with the implicit `PathPrefix /` when it lists none.
    pub fn effective_matches(&self) -> Vec<HttpRouteMatch> {
        if self.matches.is_empty() { vec![HttpRouteMatch::default()] } else { self.matches.clone() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NamedMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<NamedMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathMatch {
    /// `Exact`, `PathPrefix` (the default) or `RegularExpression`.
    #[serde(default = "path_prefix", rename = "type")]
    pub match_type: String,
    #[serde(default = "root_path")]
    pub value: String,
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch { match_type: path_prefix(), value: root_path() }
    }
}

fn path_prefix() -> String {
    "PathPrefix".into()
}

fn root_path() -> String {
    "/".into()
}

/// A header or query parameter match: `Exact` (the default) or `RegularExpression`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedMatch {
    #[serde(default = "exact", rename = "type")]
    pub match_type: String,
    pub name: String,
    pub value: String,
}

fn exact() -> String {
    "Exact".into()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Absent means 1; 0 sends no traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl BackendRef {
    pub fn is_service(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("Service")) && matches!(self.group.as_deref(), None | Some(""))
    }

    pub fn receives_traffic(&self) -> bool {
        self.weight != Some(0)
    }
}

/// How specific a match is, by the specification's five criteria (module docs); greater is more
/// specific. Ties between equally specific matches are broken by [`MatchOrder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Precedence {
    path_kind: PathKind,
    path_length: usize,
    has_method: bool,
    header_count: usize,
    query_count: usize,
}

/// Path match types, least specific first (Istio's `getURIRank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PathKind {
    RegularExpression,
    PathPrefix,
    Exact,
}

impl PathMatch {
    fn kind(&self) -> PathKind {
        match self.match_type.as_str() {
            "Exact" => PathKind::Exact,
            "RegularExpression" => PathKind::RegularExpression,
            _ => PathKind::PathPrefix,
        }
    }

    /// Istio's `getURILength`, after `createURIMatch` drops a prefix's trailing slash.
    fn ranked_length(&self) -> usize {
        match self.kind() {
            PathKind::PathPrefix if self.value != "/" => self.value.strip_suffix('/').unwrap_or(&self.value).len(),
            _ => self.value.len(),
        }
    }
}

impl HttpRouteMatch {
    pub fn path_or_default(&self) -> PathMatch {
        self.path.clone().unwrap_or_default()
    }

    pub fn precedence(&self) -> Precedence {
        let path = self.path_or_default();
        Precedence {
            path_kind: path.kind(),
            path_length: path.ranked_length(),
            has_method: self.method.is_some(),
            header_count: self.headers.len(),
            query_count: self.query_params.len(),
        }
    }
}

/// The place of one match of one rule of one route among all matches of the routes attached to a
/// parent: the least `MatchOrder` among the matches a request satisfies decides its rule. Two
/// matches compare equal only within one rule, where either choice is the same.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MatchOrder {
    precedence: Reverse<Precedence>,
    /// RFC 3339 text, which sorts chronologically: the oldest route first. Empty (no timestamp
    /// yet) sorts first.
    route_created: String,
    /// `{namespace}/{name}`, compared alphabetically as the specification says.
    route_key: String,
    rule_index: usize,
}

impl MatchOrder {
    pub fn new(
        route_created: &str,
        route_namespace: &str,
        route_name: &str,
        rule_index: usize,
        m: &HttpRouteMatch,
    ) -> Self {
        MatchOrder {
            precedence: Reverse(m.precedence()),
            route_created: route_created.to_string(),
            route_key: format!("{route_namespace}/{route_name}"),
            rule_index,
        }
    }
}

/// Gateway API `PathPrefix`: matches whole path elements (`/foo` matches `/foo` and `/foo/bar`,
/// not `/foobar`); a trailing slash in the prefix is ignored.
pub fn path_prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

// Limits and validation of HTTPRoute values (v1, v1.3.0), as the CRD's OpenAPI and CEL rules
// state them: what the translator checks before it emits a route, so the API server never
// rejects one.

/// Gateway API limits (HTTPRoute v1, v1.3.0).
pub const MAX_RULES: usize = 16;
pub const MAX_MATCHES_PER_RULE: usize = 64;
pub const MAX_MATCHES: usize = 128;
pub const MAX_BACKENDS: usize = 16;
pub const MAX_HEADER_MATCHES: usize = 16;
pub const MAX_HEADER_CHANGES: usize = 16;
pub const MAX_PATH: usize = 1024;
pub const MAX_HEADER_VALUE: usize = 4096;
pub const MAX_WEIGHT: i64 = 1_000_000;
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

pub static HEADER_NAME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$").ok());
pub static PATH_CHARS: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$").ok());
pub static HOSTNAME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").ok());

pub fn matches_pattern(pattern: &LazyLock<Option<Regex>>, text: &str) -> bool {
    pattern.as_ref().is_some_and(|regex| regex.is_match(text))
}

/// Why `path` cannot be an Exact or PathPrefix value (the HTTPRoute CRD's rules), if it cannot.
pub fn invalid_path(path: &str) -> Option<String> {
    let forbidden = ["//", "/./", "/../", "%2f", "%2F", "#"];
    if !path.starts_with('/') {
        Some(format!("path {path:?} must start with '/'"))
    } else if path.len() > MAX_PATH {
        Some(format!("path longer than {MAX_PATH} characters"))
    } else if let Some(bad) = forbidden.iter().find(|bad| path.contains(*bad)) {
        Some(format!("path {path:?} must not contain {bad:?}"))
    } else if path.ends_with("/..") || path.ends_with("/.") {
        Some(format!("path {path:?} must not end with '/.' or '/..'"))
    } else if !matches_pattern(&PATH_CHARS, path) {
        Some(format!("path {path:?} has characters an HTTPRoute path does not accept"))
    } else {
        None
    }
}

pub fn invalid_regex(regex: &str) -> Option<String> {
    if regex.is_empty() || regex.len() > MAX_PATH {
        return Some(format!("regex must have 1 to {MAX_PATH} characters"));
    }
    Regex::new(regex).err().map(|err| format!("invalid regex {regex:?}: {err}"))
}

/// An Istio duration (`10s`, `1.5s`, `500ms`, `1m`) as a Gateway API duration (GEP-2257: up to
/// four `<1-5 digits><h|m|s|ms>` parts).
pub fn gateway_duration(text: &str) -> Result<String, String> {
    let duration: Duration = crate::duration::parse_duration(text).map_err(|err| format!("timeout: {err}"))?;
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!("timeout {text} is finer than a millisecond, which Gateway API cannot express"));
    }
    let mut millis = duration.as_millis();
    if millis == 0 {
        return Ok("0s".into());
    }
    let mut parts = Vec::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        let count = millis / size;
        millis %= size;
        if count > 0 {
            if count > 99_999 {
                return Err(format!("timeout {text} is too long for Gateway API"));
            }
            parts.push(format!("{count}{unit}"));
        }
    }
    Ok(parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_reviews_route_decodes_with_defaults() {
        let spec: HttpRouteSpec = crate::mesh::from_yaml(
            "parentRefs: [{group: '', kind: Service, name: reviews, port: 9080}]
rules:
- matches: [{headers: [{name: end-user, value: jason}]}]
  backendRefs: [{name: reviews-v2, port: 9080}]
- backendRefs: [{name: reviews-v1, port: 9080}]",
        );
        assert!(spec.parent_refs[0].is_service());
        assert_eq!(spec.rules[0].matches[0].headers[0].match_type, "Exact");
        assert_eq!(spec.rules[1].effective_matches()[0].path_or_default().value, "/");
        assert!(spec.rules[1].backend_refs[0].is_service() && spec.rules[1].backend_refs[0].receives_traffic());
    }

    /// A match of rule `rule` of the route `namespace/name` created at `created`.
    fn order(created: &str, route: &str, rule: usize, yaml: &str) -> MatchOrder {
        let (namespace, name) = route.split_once('/').unwrap();
        MatchOrder::new(created, namespace, name, rule, &crate::mesh::from_yaml(yaml))
    }

    #[test]
    fn precedence_follows_the_specification_rule_by_rule() {
        const DAY_1: &str = "2025-01-01T00:00:00Z";
        const DAY_2: &str = "2025-01-02T00:00:00Z";
        // Rule 0 of the same route wins every tie, so a later rule winning shows the criterion.
        let route = |rule, yaml| order(DAY_1, "ns/route", rule, yaml);
        let one_header = "headers: [{name: a, value: '1'}]";
        let two_headers = "headers: [{name: a, value: '1'}, {name: b, value: '2'}]";
        let rows = [
            (
                "Exact path beats a longer prefix",
                route(1, "path: {type: Exact, value: /a}"),
                route(0, "path: {value: /a/b/c}"),
            ),
            ("the longest prefix", route(1, "path: {value: /a/b}"), route(0, "path: {value: /a}")),
            ("a trailing slash is not counted", route(1, "path: {value: /ab}"), route(0, "path: {value: /a/}")),
            ("a trailing slash is not counted: a tie", route(0, "path: {value: /a/}"), route(1, "path: {value: /a}")),
            ("prefix length before method", route(1, "path: {value: /a}"), route(0, "method: GET")),
            ("method before headers", route(1, "method: GET"), route(0, two_headers)),
            ("the most header matches", route(1, two_headers), route(0, one_header)),
            ("headers before query params", route(1, one_header), route(0, "queryParams: [{name: q, value: '1'}]")),
            ("the most query param matches", route(1, "queryParams: [{name: q, value: '1'}]"), route(0, "{}")),
            (
                "Istio: a regex ranks below prefix /",
                route(1, "{}"),
                route(0, "path: {type: RegularExpression, value: /a/.*}"),
            ),
            (
                "Istio: the longer regex",
                route(1, "path: {type: RegularExpression, value: /a/.*/b}"),
                route(0, "path: {type: RegularExpression, value: /a/.*}"),
            ),
            ("then the oldest route", order(DAY_1, "ns/z", 1, "{}"), order(DAY_2, "ns/a", 0, "{}")),
            ("then {namespace}/{name} alphabetically", order(DAY_1, "ns/a", 1, "{}"), order(DAY_1, "ns/b", 0, "{}")),
            (
                "{namespace}/{name} as one text ('-' < '/')",
                order(DAY_1, "a-b/r", 0, "{}"),
                order(DAY_1, "a/r", 0, "{}"),
            ),
            ("then the first rule in list order", route(0, "method: GET"), route(1, "method: POST")),
        ];
        for (criterion, winner, loser) in rows {
            assert!(winner < loser, "{criterion}: {winner:?} should take precedence over {loser:?}");
        }
    }

    #[test]
    fn prefixes_match_whole_path_elements() {
        assert!(path_prefix_matches("/static", "/static/css"));
        assert!(path_prefix_matches("/static/", "/static"));
        assert!(!path_prefix_matches("/static", "/staticky"));
        assert!(path_prefix_matches("/", "/anything"));
    }
}
