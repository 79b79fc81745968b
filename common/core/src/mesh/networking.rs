//! VirtualService and DestinationRule (networking.istio.io), as far as the suite reasons about
//! them. Every HTTP route field Gateway API has no equivalent for is kept (typed or in `extra`),
//! so the checks and the translation engine can name it instead of dropping it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrors: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `exact`, `prefix` or `regex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_uri_case: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    pub destination: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSelector {
    #[serde(default)]
    pub number: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderOperations {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<Value>,
}

impl VirtualServiceSpec {
    /// Subsets the routes send traffic to, as (host, subset).
    pub fn subset_destinations(&self) -> Vec<(&str, &str)> {
        self.http
            .iter()
            .flat_map(|route| route.route.iter())
            .filter_map(|dest| {
                dest.destination.subset.as_deref().map(|subset| (dest.destination.host.as_str(), subset))
            })
            .collect()
    }

    /// Bound to gateways only (not the mesh): ingress config, not sidecar routing.
    pub fn is_gateway_only(&self) -> bool {
        !self.gateways.is_empty() && !self.gateways.iter().any(|gateway| gateway == "mesh")
    }
}

/// The short service name and namespace of a host (`reviews`, `reviews.bookinfo`,
/// `reviews.bookinfo.svc.cluster.local`), resolved against the object's namespace. None for
/// hosts that are not cluster services (`*.example.com`, external names).
pub fn service_of_host<'a>(host: &'a str, object_namespace: &'a str) -> Option<(&'a str, &'a str)> {
    if host.contains('*') {
        return None;
    }
    // Without collecting the parts: every rule asks this of every host it reads.
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or_default();
    match (parts.next(), parts.next()) {
        (None, _) => Some((name, object_namespace)),
        (Some(namespace), None | Some("svc")) => Some((name, namespace)),
        (Some(_), Some(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_fields_and_subset_destinations_are_read() {
        let spec: VirtualServiceSpec = crate::mesh::from_yaml(
            "hosts: [ratings]
http:
- match: [{headers: {end-user: {exact: jason}}}]
  fault: {abort: {percentage: {value: 100}, httpStatus: 500}}
  route: [{destination: {host: ratings, subset: v1}}]
- route: [{destination: {host: ratings, subset: v1}}]
  retries: {attempts: 3}
  mirror: {host: ratings-shadow}
  mirrorPercentage: {value: 50}",
        );
        assert_eq!(spec.subset_destinations(), vec![("ratings", "v1"), ("ratings", "v1")]);
        assert_eq!(spec.http[0].matches[0].headers.get("end-user"), Some(&StringMatch::Exact("jason".into())));
        assert!(spec.http[0].fault.is_some() && spec.http[1].retries.is_some() && spec.http[1].mirror.is_some());
    }

    #[test]
    fn hosts_resolve_to_services() {
        assert_eq!(service_of_host("reviews", "bookinfo"), Some(("reviews", "bookinfo")));
        assert_eq!(service_of_host("reviews.other.svc.cluster.local", "bookinfo"), Some(("reviews", "other")));
        assert_eq!(service_of_host("*.example.com", "bookinfo"), None);
        assert_eq!(service_of_host("www.example.com", "bookinfo"), None);
    }
}
