//! Sidecar injection at pod admission: the one definition of when a pod gets the `istio-proxy`
//! container, shared by the evaluator (which reads modes from pods and templates) and the change
//! simulator (which re-admits the pods of a restarted workload).
//!
//! A pod's spec decides whether it runs a sidecar; the namespace labels decide only when the pod is
//! created. That is why a namespace relabelled without a restart keeps its sidecars.

use std::collections::BTreeMap;

use kube_core::DynamicObject;
use serde_json::{Value, json};

use super::labels::{ISTIO_INJECTION, ISTIO_REV, PROXY_CONTAINER, SIDECAR_INJECT};
use super::{labels, selector_matches};

/// The container lists of a pod spec that can hold the proxy (a native sidecar is an init container).
const CONTAINER_FIELDS: [&str; 2] = ["containers", "initContainers"];

fn is_proxy_container(container: &Value) -> bool {
    container.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER)
}

/// True when a pod spec has the `istio-proxy` container: that pod runs a sidecar.
pub fn has_proxy_container(pod_spec: &Value) -> bool {
    CONTAINER_FIELDS.iter().any(|field| {
        pod_spec
            .get(field)
            .and_then(Value::as_array)
            .is_some_and(|containers| containers.iter().any(is_proxy_container))
    })
}

/// True when the injector adds the proxy to a pod admitted now: its namespace injects
/// (`istio-injection=enabled`, or `istio.io/rev` unless injection is disabled) and the pod does not
/// opt out with `sidecar.istio.io/inject: "false"` (label, else annotation).
pub fn injects(
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
    pod_annotations: &BTreeMap<String, String>,
) -> bool {
    let injection = namespace_labels.get(ISTIO_INJECTION).map(String::as_str);
    let namespace_injects =
        injection == Some("enabled") || (namespace_labels.contains_key(ISTIO_REV) && injection != Some("disabled"));
    let opt_in_out = pod_labels.get(SIDECAR_INJECT).or_else(|| pod_annotations.get(SIDECAR_INJECT));
    namespace_injects && opt_in_out.map(String::as_str) != Some("false")
}

/// Removes the `istio-proxy` container of a pod spec, then adds it back when `present`.
pub fn set_proxy_container(pod_spec: &mut Value, present: bool) {
    let Some(spec) = pod_spec.as_object_mut() else {
        return;
    };
    for field in CONTAINER_FIELDS {
        if let Some(containers) = spec.get_mut(field).and_then(Value::as_array_mut) {
            containers.retain(|container| !is_proxy_container(container));
        }
    }
    if present {
        let containers = spec.entry("containers").or_insert_with(|| json!([]));
        if let Some(containers) = containers.as_array_mut() {
            containers.push(json!({"name": PROXY_CONTAINER}));
        }
    }
}

/// The `spec.selector.matchLabels` of a Deployment, StatefulSet or DaemonSet (empty when absent).
pub fn controller_selector(controller: &DynamicObject) -> BTreeMap<String, String> {
    controller
        .data
        .pointer("/spec/selector/matchLabels")
        .and_then(|selector| serde_json::from_value(selector.clone()).ok())
        .unwrap_or_default()
}

/// True when `pod` belongs to `controller`: same namespace, and the controller's non-empty
/// selector matches the pod's labels.
pub fn controls(controller: &DynamicObject, pod: &DynamicObject) -> bool {
    let selector = controller_selector(controller);
    !selector.is_empty()
        && pod.metadata.namespace == controller.metadata.namespace
        && selector_matches(&selector, labels(pod))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn injection_follows_the_namespace_unless_the_pod_opts_out() {
        let none = BTreeMap::new();
        assert!(injects(&map(&[(ISTIO_INJECTION, "enabled")]), &none, &none));
        assert!(injects(&map(&[(ISTIO_REV, "default")]), &none, &none));
        assert!(!injects(&map(&[(ISTIO_REV, "default"), (ISTIO_INJECTION, "disabled")]), &none, &none));
        assert!(!injects(&none, &none, &none));
        let opted_out = map(&[(SIDECAR_INJECT, "false")]);
        assert!(!injects(&map(&[(ISTIO_INJECTION, "enabled")]), &none, &opted_out));
        assert!(
            injects(&map(&[(ISTIO_INJECTION, "enabled")]), &map(&[(SIDECAR_INJECT, "true")]), &opted_out),
            "the label wins over the annotation"
        );
    }

    #[test]
    fn the_proxy_container_is_set_once_in_either_list() {
        let mut spec = json!({"containers": [{"name": "app"}], "initContainers": [{"name": PROXY_CONTAINER}]});
        assert!(has_proxy_container(&spec));
        set_proxy_container(&mut spec, true);
        assert_eq!(spec, json!({"containers": [{"name": "app"}, {"name": PROXY_CONTAINER}], "initContainers": []}));
        set_proxy_container(&mut spec, false);
        assert!(!has_proxy_container(&spec));
    }
}
