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

impl HttpRoute {
    /// Fields of this route that Gateway API HTTPRoute cannot express, by field name.
    pub fn features_without_gateway_api_equivalent(&self) -> Vec<&'static str> {
        let mut features = Vec::new();
        let mut note = |present: bool, name: &'static str| {
            if present {
                features.push(name);
            }
        };
        note(self.fault.is_some(), "fault injection");
        note(self.retries.is_some(), "retries");
        note(self.cors_policy.is_some(), "CORS policy");
        note(self.delegate.is_some(), "delegate");
        note(self.direct_response.is_some(), "direct response");
        let partial_mirror = (self.mirror_percentage.is_some() || self.mirror_percent.is_some())
            && !mirror_is_full(self.mirror_percentage.as_ref(), self.mirror_percent.as_ref());
        note(partial_mirror, "mirror percentage");
        note(self.matches.iter().any(|m| !m.source_labels.is_empty()), "sourceLabels match");
        note(self.matches.iter().any(|m| m.ignore_uri_case == Some(true)), "ignoreUriCase");
        note(self.route.iter().any(|d| d.headers.is_some()), "per-destination headers");
        features
    }
}

fn mirror_is_full(percentage: Option<&Value>, percent: Option<&Value>) -> bool {
    let value =
        percentage.and_then(|p| p.get("value")).and_then(Value::as_f64).or_else(|| percent.and_then(Value::as_f64));
    value.is_some_and(|value| value >= 100.0)
}

impl VirtualServiceSpec {
    /// Everything in this VirtualService without a Gateway API equivalent, deduplicated.
    pub fn unsupported_features(&self) -> Vec<&'static str> {
        let mut all = Vec::new();
        for route in &self.http {
            for feature in route.features_without_gateway_api_equivalent() {
                if !all.contains(&feature) {
                    all.push(feature);
                }
            }
        }
        if !self.tcp.is_empty() {
            all.push("TCP routes");
        }
        if !self.tls.is_empty() {
            all.push("TLS routes");
        }
        all
    }

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
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [name] => Some((name, object_namespace)),
        [name, namespace] => Some((name, namespace)),
        [name, namespace, "svc", ..] => Some((name, namespace)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_route_features_are_named() {
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
        assert_eq!(spec.unsupported_features(), vec!["fault injection", "retries", "mirror percentage"]);
        assert_eq!(spec.subset_destinations(), vec![("ratings", "v1"), ("ratings", "v1")]);
        assert_eq!(spec.http[0].matches[0].headers.get("end-user"), Some(&StringMatch::Exact("jason".into())));
    }

    #[test]
    fn full_mirror_is_supported() {
        let route: HttpRoute = crate::mesh::from_yaml("mirror: {host: a}\nmirrorPercentage: {value: 100}");
        assert!(route.features_without_gateway_api_equivalent().is_empty());
    }

    #[test]
    fn hosts_resolve_to_services() {
        assert_eq!(service_of_host("reviews", "bookinfo"), Some(("reviews", "bookinfo")));
        assert_eq!(service_of_host("reviews.other.svc.cluster.local", "bookinfo"), Some(("reviews", "other")));
        assert_eq!(service_of_host("*.example.com", "bookinfo"), None);
        assert_eq!(service_of_host("www.example.com", "bookinfo"), None);
    }
}
