//! What ambient changes for monitoring (prometheus-operator's `monitoring.coreos.com/v1` kinds),
//! shared by the check (which reports what breaks) and the planners (which create what is missing).
//!
//! Three sidecar-era facts stop holding once a namespace's pods are ambient:
//! - L7 Istio metrics (`istio_requests_total` and friends) are reported by the sidecar of each end,
//!   labelled `reporter="source"` or `reporter="destination"`. In ambient only a waypoint produces
//!   them, labelled `reporter="waypoint"`; ztunnel reports L4 (`istio_tcp_*`) only. An alert or a
//!   recording rule that filters on the sidecar reporters goes silent after Step 7 without error.
//! - Scraping the `istio-proxy` containers of application pods (the OSSM sample PodMonitor keeps
//!   targets by `__meta_kubernetes_pod_container_name`) finds nothing once the sidecars are gone
//!   (Step 9); the same holds for per-pod Envoy statistics (`envoy_*` series).
//! - ztunnel and the waypoints must be scraped themselves, each by a PodMonitor in its own
//!   namespace: OpenShift's user-workload monitoring ignores `namespaceSelector` (the OSSM 3.2
//!   metrics documentation says so), so a PodMonitor only ever selects pods of its namespace, and
//!   [`selects`] evaluates it that way.
//!
//! Both ztunnel and a waypoint serve Prometheus metrics on port 15020 at `/stats/prometheus`
//! (the `prometheus.io/*` annotations Istio puts on their pods), which is what
//! [`ztunnel_pod_monitor`] and [`waypoint_pod_monitor`] scrape.

use std::collections::BTreeMap;

use kube_core::DynamicObject;
use serde_json::{Map, Value, json};

use super::labels::{GATEWAY_NAME, PROXY_CONTAINER};
use crate::kinds::Kind;
use crate::mesh::ObjectRef;

/// The label of ztunnel's pods (Sail's ztunnel DaemonSet).
pub const ZTUNNEL_APP: &str = "ztunnel";
/// Where ztunnel and waypoints serve their metrics.
pub const METRICS_PORT: i64 = 15020;
pub const METRICS_PATH: &str = "/stats/prometheus";
/// The relabelling source naming a target's container.
const CONTAINER_NAME_LABEL: &str = "__meta_kubernetes_pod_container_name";
/// The Envoy statistics port name of a sidecar (`http-envoy-prom`, 15090).
const ENVOY_PROM_PORT: &str = "http-envoy-prom";

/// The L7 metrics only proxies report, whose `reporter` changes from source/destination to waypoint.
const L7_METRICS: [&str; 6] = [
    "istio_requests_total",
    "istio_request_duration_milliseconds",
    "istio_request_bytes",
    "istio_response_bytes",
    "istio_request_messages_total",
    "istio_response_messages_total",
];

/// The labels ztunnel's pods carry.
pub fn ztunnel_pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), ZTUNNEL_APP.to_string())])
}

/// The labels a waypoint's pods carry (the gateway controller's).
pub fn waypoint_pod_labels(waypoint: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(GATEWAY_NAME.to_string(), waypoint.to_string())])
}

/// The name of the PodMonitor the suite creates for ztunnel.
pub const ZTUNNEL_MONITOR: &str = "ztunnel";

/// The name of the PodMonitor the suite creates for a waypoint.
pub fn waypoint_monitor_name(waypoint: &str) -> String {
    format!("{waypoint}-waypoint-metrics")
}

/// A PodMonitor scraping ztunnel in `namespace`.
pub fn ztunnel_pod_monitor(namespace: &str) -> DynamicObject {
    pod_monitor(namespace, ZTUNNEL_MONITOR, ztunnel_pod_labels(), ObjectRef::new("ZTunnel", None, "default"))
}

/// A PodMonitor scraping the pods of the waypoint `waypoint` in `namespace`.
pub fn waypoint_pod_monitor(namespace: &str, waypoint: &str) -> DynamicObject {
    pod_monitor(
        namespace,
        &waypoint_monitor_name(waypoint),
        waypoint_pod_labels(waypoint),
        ObjectRef::new("Gateway", Some(namespace), waypoint),
    )
}

fn pod_monitor(namespace: &str, name: &str, labels: BTreeMap<String, String>, source: ObjectRef) -> DynamicObject {
    let body = json!({"spec": {
        "selector": {"matchLabels": labels},
        "podMetricsEndpoints": [{"portNumber": METRICS_PORT, "path": METRICS_PATH, "interval": "30s"}],
    }});
    let body: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    crate::convert::objects::generated(Kind::PodMonitor, namespace, name, &[source], body)
}

/// True when `monitor` (a PodMonitor) selects a pod with `labels` in `namespace`: its own
/// namespace only (see the module docs), by its `spec.selector`.
pub fn selects(monitor: &DynamicObject, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
    monitor.metadata.namespace.as_deref() == Some(namespace)
        && monitor.data.pointer("/spec/selector").is_some_and(|selector| label_selector_matches(selector, labels))
}

/// A Kubernetes `LabelSelector` (`matchLabels` and `matchExpressions`) against `labels`. An empty
/// selector matches everything; an unknown operator matches nothing.
pub fn label_selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector.get("matchLabels").and_then(Value::as_object).into_iter().flatten();
    let labels_hold =
        match_labels.into_iter().all(|(key, value)| labels.get(key).map(String::as_str) == value.as_str());
    let expressions = selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten();
    labels_hold
        && expressions.into_iter().all(|expression| {
            let key = expression.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = expression
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let value = labels.get(key).map(String::as_str);
            match expression.get("operator").and_then(Value::as_str) {
                Some("In") => value.is_some_and(|value| values.contains(&value)),
                Some("NotIn") => value.is_none_or(|value| !values.contains(&value)),
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                _ => false,
            }
        })
}

/// What a PrometheusRule expression relies on that ambient does not provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarFact {
    /// An L7 metric filtered on `reporter="source"` or `"destination"` (the metric, the reporter).
    Reporter { metric: String, reporter: String },
    /// A per-pod Envoy statistic (the metric).
    EnvoyStats { metric: String },
}

/// The sidecar-only facts an expression uses, in order of appearance, each once.
pub fn sidecar_facts(expression: &str) -> Vec<SidecarFact> {
    let mut facts = Vec::new();
    let bytes = expression.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if let quote @ (b'"' | b'\'' | b'`') = bytes[index] {
            // A string (a label value, a regular expression) names no metric.
            index = (index + 1..bytes.len())
                .find(|&i| bytes[i] == quote && bytes[i - 1] != b'\\')
                .map_or(bytes.len(), |i| i + 1);
            continue;
        }
        let starts_name = (bytes[index].is_ascii_alphabetic() || bytes[index] == b'_')
            && (index == 0 || !is_name_byte(bytes[index - 1]));
        if !starts_name {
            index += 1;
            continue;
        }
        let end = (index..bytes.len()).find(|&i| !is_name_byte(bytes[i])).unwrap_or(bytes.len());
        let metric = &expression[index..end];
        index = end;
        let fact = if metric.starts_with("envoy_") {
            Some(SidecarFact::EnvoyStats { metric: metric.to_string() })
        } else if L7_METRICS.iter().any(|l7| metric.starts_with(l7)) {
            let matchers = expression[end..]
                .trim_start()
                .strip_prefix('{')
                .and_then(|rest| rest.split_once('}'))
                .map(|(inside, _)| inside)
                .unwrap_or_default();
            sidecar_reporter(matchers).map(|reporter| SidecarFact::Reporter { metric: metric.to_string(), reporter })
        } else {
            None
        };
        if let Some(fact) = fact.filter(|fact| !facts.contains(fact)) {
            facts.push(fact);
        }
    }
    facts
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':'
}

/// The sidecar reporter a label-matcher list selects (`reporter="destination"`, or a regular
/// expression `reporter=~"..."` naming one) without also selecting `waypoint`.
fn sidecar_reporter(matchers: &str) -> Option<String> {
    matchers.split(',').find_map(|matcher| {
        let (name, rest) = matcher.split_once('=')?;
        if name.trim() != "reporter" {
            return None;
        }
        let regex = rest.starts_with('~');
        let value = rest.trim_start_matches('~').trim().trim_matches(['"', '\'', '`']);
        let named: Vec<&str> = if regex { value.split('|').collect() } else { vec![value] };
        if named.contains(&"waypoint") {
            return None;
        }
        named.into_iter().find(|reporter| matches!(*reporter, "source" | "destination")).map(str::to_string)
    })
}

/// True when a scrape endpoint (of a PodMonitor or ServiceMonitor) targets sidecars: it keeps
/// targets by the `istio-proxy` container name, or scrapes the sidecar's Envoy port.
pub fn scrapes_sidecars(endpoint: &Value) -> bool {
    let by_container = endpoint.get("relabelings").and_then(Value::as_array).into_iter().flatten().any(|relabel| {
        let sources = relabel.get("sourceLabels").and_then(Value::as_array).into_iter().flatten();
        let on_container = sources.into_iter().any(|source| source.as_str() == Some(CONTAINER_NAME_LABEL));
        let regex = relabel.get("regex").and_then(Value::as_str).unwrap_or_default();
        on_container && regex.contains(PROXY_CONTAINER)
    });
    let envoy_port = [endpoint.get("port"), endpoint.get("targetPort")]
        .into_iter()
        .flatten()
        .any(|port| port.as_str() == Some(ENVOY_PROM_PORT) || port.as_i64() == Some(15090));
    by_container || envoy_port
}

/// The scrape endpoints of a PodMonitor or ServiceMonitor.
pub fn endpoints(monitor: &DynamicObject) -> impl Iterator<Item = &Value> {
    ["/spec/podMetricsEndpoints", "/spec/endpoints"]
        .into_iter()
        .filter_map(|pointer| monitor.data.pointer(pointer).and_then(Value::as_array))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sidecar_reporters_on_l7_metrics_are_found_and_waypoint_aware_ones_are_not() {
        let expression = r#"sum(rate(istio_requests_total{reporter="destination", response_code=~"5.."}[5m])) by (destination_service)
            / sum(rate(istio_requests_total{reporter="destination"}[5m])) > 0.05"#;
        assert_eq!(
            sidecar_facts(expression),
            vec![SidecarFact::Reporter { metric: "istio_requests_total".into(), reporter: "destination".into() }]
        );
        assert_eq!(
            sidecar_facts(
                r#"histogram_quantile(0.99, istio_request_duration_milliseconds_bucket{reporter=~"source"})"#
            ),
            vec![SidecarFact::Reporter {
                metric: "istio_request_duration_milliseconds_bucket".into(),
                reporter: "source".into()
            }]
        );
        assert!(sidecar_facts(r#"rate(istio_requests_total{reporter=~"destination|waypoint"}[1m])"#).is_empty());
        assert!(sidecar_facts(r#"rate(istio_requests_total{reporter="waypoint"}[1m])"#).is_empty());
        assert!(
            sidecar_facts(r#"rate(istio_tcp_connections_opened_total{reporter="destination"}[1m])"#).is_empty(),
            "ztunnel reports L4 metrics with the same reporters"
        );
        assert!(sidecar_facts(r#"rate(my_istio_requests_total{reporter="source"}[1m])"#).is_empty());
    }

    #[test]
    fn envoy_statistics_are_per_pod_sidecar_facts() {
        assert_eq!(
            sidecar_facts("sum(envoy_cluster_upstream_rq_retry) + envoy_cluster_upstream_rq_retry"),
            vec![SidecarFact::EnvoyStats { metric: "envoy_cluster_upstream_rq_retry".into() }]
        );
        assert!(sidecar_facts("up{job=\"envoy_x\"}").is_empty(), "a label value is not a metric");
    }

    #[test]
    fn label_selectors_follow_kubernetes() {
        let selector = json!({"matchLabels": {"app": "ztunnel"},
            "matchExpressions": [{"key": "istio-prometheus-ignore", "operator": "DoesNotExist"}]});
        assert!(label_selector_matches(&selector, &labels(&[("app", "ztunnel")])));
        assert!(!label_selector_matches(&selector, &labels(&[("app", "ztunnel"), ("istio-prometheus-ignore", "x")])));
        assert!(!label_selector_matches(&selector, &labels(&[("app", "istiod")])));
        let in_set = json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]});
        assert!(label_selector_matches(&in_set, &labels(&[("app", "b")])));
        assert!(!label_selector_matches(&in_set, &labels(&[])));
        assert!(label_selector_matches(&json!({}), &labels(&[])));
    }

    #[test]
    fn generated_monitors_select_what_they_are_for_in_their_namespace_only() {
        let ztunnel = ztunnel_pod_monitor("ztunnel");
        assert!(selects(&ztunnel, "ztunnel", &ztunnel_pod_labels()));
        assert!(!selects(&ztunnel, "istio-system", &ztunnel_pod_labels()));
        let waypoint = waypoint_pod_monitor("shop", "waypoint");
        assert_eq!(waypoint.metadata.name.as_deref(), Some("waypoint-waypoint-metrics"));
        assert!(selects(&waypoint, "shop", &waypoint_pod_labels("waypoint")));
        assert!(!selects(&waypoint, "shop", &waypoint_pod_labels("other")));
        assert!(!endpoints(&waypoint).any(scrapes_sidecars), "ztunnel and waypoints are not sidecars");
    }

    #[test]
    fn sidecar_scraping_is_recognised_by_container_name_or_envoy_port() {
        let sample = json!({"path": "/stats/prometheus", "relabelings": [
            {"action": "keep", "sourceLabels": ["__meta_kubernetes_pod_container_name"], "regex": "istio-proxy"}]});
        assert!(scrapes_sidecars(&sample));
        assert!(scrapes_sidecars(&json!({"port": "http-envoy-prom"})));
        assert!(!scrapes_sidecars(&json!({"port": "metrics"})));
    }
}
