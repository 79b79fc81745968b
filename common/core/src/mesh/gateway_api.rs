//! Gateway API objects (gateway.networking.k8s.io) as far as the suite reasons about them:
//! Gateways (waypoints and ingress gateways) and HTTPRoutes (what VirtualServices become).
//!
//! HTTPRoute matching follows the Gateway API specification, including its precedence rules, which
//! differ from VirtualService's "first matching rule wins": see [`HttpRouteMatch::precedence`].

use std::collections::BTreeMap;

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

/// How specific a match is, in the order Gateway API ranks matches across all rules of all routes
/// attached to one parent: exact path, then the longest prefix, then a method, then the most
/// header matches, then the most query parameter matches. Larger is more specific. Ties are broken
/// by the caller (oldest route, then name, then rule order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Precedence {
    exact_path: bool,
    prefix_length: usize,
    has_method: bool,
    header_count: usize,
    query_count: usize,
}

impl HttpRouteMatch {
    pub fn path_or_default(&self) -> PathMatch {
        self.path.clone().unwrap_or_default()
    }

    pub fn precedence(&self) -> Precedence {
        let path = self.path_or_default();
        let exact_path = path.match_type == "Exact";
        let prefix_length = if path.match_type == "PathPrefix" { path.value.trim_end_matches('/').len() } else { 0 };
        Precedence {
            exact_path,
            prefix_length,
            has_method: self.method.is_some(),
            header_count: self.headers.len(),
            query_count: self.query_params.len(),
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

    #[test]
    fn precedence_ranks_exact_then_prefix_length_then_method_then_headers() {
        let m = |yaml: &str| -> HttpRouteMatch { crate::mesh::from_yaml(yaml) };
        let exact = m("path: {type: Exact, value: /a}");
        let long_prefix = m("path: {type: PathPrefix, value: /reviews}");
        let root_with_header = m("headers: [{name: end-user, value: jason}]");
        let root_with_method = m("method: GET");
        assert!(exact.precedence() > long_prefix.precedence());
        assert!(long_prefix.precedence() > root_with_header.precedence(), "a longer prefix beats a header");
        assert!(root_with_method.precedence() > root_with_header.precedence(), "a method beats a header");
    }

    #[test]
    fn prefixes_match_whole_path_elements() {
        assert!(path_prefix_matches("/static", "/static/css"));
        assert!(path_prefix_matches("/static/", "/static"));
        assert!(!path_prefix_matches("/static", "/staticky"));
        assert!(path_prefix_matches("/", "/anything"));
    }
}
