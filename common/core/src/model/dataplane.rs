//! Who runs which data plane: the rules that decide, from a pod (or a pod template) and its
//! namespace's labels, whether traffic is owned by a sidecar, by ztunnel, or by nobody.
//!
//! Each rule is written once here; the check's pod counts, the translator's callers and the
//! evaluator's modes all come from these functions, so they cannot disagree on a pod.

use std::collections::BTreeMap;

use kube_core::DynamicObject;
use serde_json::{Value, json};

use crate::mesh::labels::{
    DATAPLANE_AMBIENT, DATAPLANE_MODE, DATAPLANE_NONE, ENABLE_HBONE, ISTIO_INJECTION, ISTIO_REV, PROXY_CONFIG_ENV,
    PROXY_CONTAINER, SIDECAR_INJECT, TLS_MODE, TLS_MODE_ISTIO, USE_WAYPOINT, USE_WAYPOINT_NAMESPACE,
};
use crate::mesh::{labels, selector_matches};

/// The container lists of a pod spec that can hold the proxy (a native sidecar is an init container).
pub const CONTAINER_FIELDS: [&str; 2] = ["containers", "initContainers"];

pub fn is_proxy_container(container: &Value) -> bool {
    container.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER)
}

/// The sidecar proxy of a pod spec: an `istio-proxy` container, or a native sidecar, which is an
/// init container of that name with `restartPolicy: Always`. Without that policy an init
/// container runs to completion before the application starts, so it proxies nothing.
pub fn proxy_container(pod_spec: &Value) -> Option<&Value> {
    let list = |field: &str| pod_spec.get(field).and_then(Value::as_array).into_iter().flatten();
    list("containers").find(|container| is_proxy_container(container)).or_else(|| {
        list("initContainers").find(|container| {
            is_proxy_container(container) && container.get("restartPolicy").and_then(Value::as_str) == Some("Always")
        })
    })
}

/// A ztunnel pod: the node proxy of ambient mode. Its container is named `istio-proxy` too (Istio's
/// `manifests/charts/ztunnel/templates/daemonset.yaml`: DaemonSet `ztunnel`, pods labelled
/// `app: ztunnel`, the container running the `ztunnel` image with `proxy ztunnel`), but it is no
/// sidecar: it proxies the node's ambient pods, is never injected (`sidecar.istio.io/inject:
/// "false"`) and sends no application requests, so it is neither a sidecar client nor a workload
/// a bypass protection must let through.
pub fn is_ztunnel(pod_spec: &Value, pod_labels: &BTreeMap<String, String>) -> bool {
    let runs_ztunnel = proxy_container(pod_spec).is_some_and(|proxy| {
        let image = proxy.get("image").and_then(Value::as_str).unwrap_or_default();
        let image_name = image.rsplit('/').next().unwrap_or_default();
        let args = proxy.get("args").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        image_name.split([':', '@']).next() == Some("ztunnel") || args.take(2).eq(["proxy", "ztunnel"])
    });
    runs_ztunnel || pod_labels.get("app").map(String::as_str) == Some("ztunnel")
}

/// HBONE is on when the proxy's `PROXY_CONFIG` JSON sets `proxyMetadata.ISTIO_META_ENABLE_HBONE`
/// to "true" (or the env var is set directly).
pub fn hbone_enabled(proxy: &Value) -> bool {
    let env = proxy.get("env").and_then(Value::as_array).into_iter().flatten();
    env.into_iter().any(|var| {
        let name = var.get("name").and_then(Value::as_str).unwrap_or_default();
        let value = var.get("value").and_then(Value::as_str).unwrap_or_default();
        match name {
            PROXY_CONFIG_ENV => serde_json::from_str::<Value>(value)
                .ok()
                .and_then(|config| config.pointer(&format!("/proxyMetadata/{ENABLE_HBONE}")).cloned())
                .is_some_and(|flag| flag.as_str() == Some("true")),
            ENABLE_HBONE => value == "true",
            _ => false,
        }
    })
}

/// The service account a pod spec runs as (`default` when it names none).
pub fn service_account(pod_spec: &Value) -> String {
    pod_spec
        .get("serviceAccountName")
        .or_else(|| pod_spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// How a namespace's labels set up its data plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceMode {
    /// The injector gives new pods a sidecar: `istio-injection=enabled`, or `istio.io/rev` unless
    /// `istio-injection=disabled` (which wins over a revision label, as in Istio's webhook).
    pub injection: bool,
    /// `istio.io/dataplane-mode=ambient`.
    pub ambient: bool,
    /// `istio.io/use-waypoint`, unless `none`.
    pub use_waypoint: Option<String>,
    /// `istio.io/use-waypoint-namespace`.
    pub use_waypoint_namespace: Option<String>,
}

impl NamespaceMode {
    pub fn of_labels(labels: &BTreeMap<String, String>) -> Self {
        let injection_label = labels.get(ISTIO_INJECTION).map(String::as_str);
        NamespaceMode {
            injection: injection_label == Some("enabled")
                || (labels.contains_key(ISTIO_REV) && injection_label != Some("disabled")),
            ambient: labels.get(DATAPLANE_MODE).map(String::as_str) == Some(DATAPLANE_AMBIENT),
            use_waypoint: labels.get(USE_WAYPOINT).filter(|value| value.as_str() != DATAPLANE_NONE).cloned(),
            use_waypoint_namespace: labels.get(USE_WAYPOINT_NAMESPACE).cloned(),
        }
    }

    pub fn of(namespace: &DynamicObject) -> Self {
        NamespaceMode::of_labels(labels(namespace))
    }
}

/// The injector gives a pod created now a sidecar: its namespace injects, and neither the pod's
/// label nor its annotation `sidecar.istio.io/inject` says "false".
pub fn injects(
    namespace: &NamespaceMode,
    pod_labels: &BTreeMap<String, String>,
    pod_annotations: &BTreeMap<String, String>,
) -> bool {
    let opted_out = pod_labels.get(SIDECAR_INJECT).or_else(|| pod_annotations.get(SIDECAR_INJECT)).map(String::as_str)
        == Some("false");
    namespace.injection && !opted_out
}

/// A pod without sidecar is enrolled in ambient by its own `istio.io/dataplane-mode` label
/// (`ambient`, or `none` to opt out), else by its namespace's.
pub fn enrolled(namespace: &NamespaceMode, pod_labels: &BTreeMap<String, String>) -> bool {
    match pod_labels.get(DATAPLANE_MODE).map(String::as_str) {
        Some(DATAPLANE_AMBIENT) => true,
        Some(DATAPLANE_NONE) => false,
        _ => namespace.ambient,
    }
}

/// The name of the controller owning a pod (`reviews-v1` for pod `reviews-v1-9db68f4d-v4cnb`),
/// so replicas of one Deployment count as one workload; the pod name otherwise.
pub fn workload_name_of_pod(pod: &DynamicObject) -> String {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let Some(owner) = pod.metadata.owner_references.as_ref().and_then(|owners| owners.first()) else {
        return pod_name;
    };
    let hash = labels(pod).get("pod-template-hash");
    match (owner.kind.as_str(), hash) {
        ("ReplicaSet", Some(hash)) => owner.name.strip_suffix(&format!("-{hash}")).unwrap_or(&owner.name).to_string(),
        _ => owner.name.clone(),
    }
}

/// Labels that differ between replicas of one workload and never appear in selectors.
pub fn without_hashes(mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.remove("pod-template-hash");
    labels.remove("controller-revision-hash");
    labels.remove("statefulset.kubernetes.io/pod-name");
    labels
}

/// The control plane runs the ambient profile (Step 2 done), so sidecars injected from now on
/// speak HBONE; None when the snapshot holds no Istio resources to tell.
pub fn ambient_control_plane(snapshot: &crate::snapshot::Snapshot) -> Option<bool> {
    use crate::kinds::Kind;
    snapshot.knows(Kind::Istio).then(|| {
        snapshot
            .all(Kind::Istio)
            .iter()
            .any(|istio| istio.data.pointer("/spec/profile").and_then(Value::as_str) == Some("ambient"))
    })
}

/// The proxy container the injector adds, as far as the model reads it: its name and, under an
/// ambient control plane, the proxy config that enables HBONE.
pub fn injected_proxy(hbone: bool) -> Value {
    if !hbone {
        return json!({"name": PROXY_CONTAINER});
    }
    let config = json!({"proxyMetadata": {ENABLE_HBONE: "true"}}).to_string();
    json!({"name": PROXY_CONTAINER, "env": [{"name": PROXY_CONFIG_ENV, "value": config}]})
}

/// Removes the `istio-proxy` container of a pod spec, then adds `proxy` when given.
pub fn set_proxy_container(pod_spec: &mut Value, proxy: Option<Value>) {
    let Some(spec) = pod_spec.as_object_mut() else {
        return;
    };
    for field in CONTAINER_FIELDS {
        if let Some(containers) = spec.get_mut(field).and_then(Value::as_array_mut) {
            containers.retain(|container| !is_proxy_container(container));
        }
    }
    if let Some(proxy) = proxy {
        let containers = spec.entry("containers").or_insert_with(|| json!([]));
        if let Some(containers) = containers.as_array_mut() {
            containers.push(proxy);
        }
    }
}

/// The labels the injector adds to a pod it injects (`injected`), or that a pod without a sidecar
/// lacks.
pub fn set_injected_labels(labels: &mut BTreeMap<String, String>, injected: bool) {
    if injected {
        labels.insert(TLS_MODE.into(), TLS_MODE_ISTIO.into());
    } else {
        labels.remove(TLS_MODE);
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

/// Labels and annotations of a pod template.
pub fn template_metadata(template: &Value) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let map = |pointer: &str| -> BTreeMap<String, String> {
        template
            .pointer(pointer)
            .and_then(Value::as_object)
            .map(|map| map.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
            .unwrap_or_default()
    };
    (map("/metadata/labels"), map("/metadata/annotations"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_native_sidecar_needs_restart_policy_always() {
        let native = json!({"containers": [{"name": "app"}],
            "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always"}]});
        assert!(proxy_container(&native).is_some());
        let plain_init = json!({"containers": [{"name": "app"}], "initContainers": [{"name": "istio-proxy"}]});
        assert!(proxy_container(&plain_init).is_none(), "an init container that exits proxies nothing");
        assert!(proxy_container(&json!({"containers": [{"name": "istio-proxy"}]})).is_some());
    }

    #[test]
    fn injection_disabled_wins_over_a_revision_label() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(NamespaceMode::of_labels(&labels(&[("istio.io/rev", "default")])).injection);
        assert!(
            !NamespaceMode::of_labels(&labels(&[("istio.io/rev", "default"), ("istio-injection", "disabled")]))
                .injection
        );
        assert!(NamespaceMode::of_labels(&labels(&[("istio-injection", "enabled")])).injection);
        let injecting = NamespaceMode { injection: true, ..Default::default() };
        assert!(!injects(&injecting, &labels(&[]), &labels(&[("sidecar.istio.io/inject", "false")])));
        assert!(injects(&injecting, &labels(&[("app", "a")]), &labels(&[])));
    }

    #[test]
    fn a_ztunnel_pod_is_recognised_by_its_image_its_arguments_or_its_app_label() {
        let none = BTreeMap::new();
        let chart = json!({"containers": [{"name": "istio-proxy", "image": "docker.io/istio/ztunnel:1.27.3", "args": ["proxy", "ztunnel"]}]});
        assert!(is_ztunnel(&chart, &none));
        let args_only = json!({"containers": [{"name": "istio-proxy", "image": "registry.example/mirror/node-proxy", "args": ["proxy", "ztunnel"]}]});
        assert!(is_ztunnel(&args_only, &none));
        let labelled = BTreeMap::from([("app".to_string(), "ztunnel".to_string())]);
        assert!(is_ztunnel(&json!({"containers": [{"name": "istio-proxy"}]}), &labelled));
        let sidecar = json!({"containers": [{"name": "app", "image": "ztunnel-demo"}, {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.3", "args": ["proxy", "sidecar"]}]});
        assert!(!is_ztunnel(&sidecar, &none), "an application's sidecar is a sidecar");
    }

    #[test]
    fn the_proxy_container_is_set_once_in_either_list() {
        let mut spec = json!({"containers": [{"name": "app"}], "initContainers": [{"name": PROXY_CONTAINER, "restartPolicy": "Always"}]});
        assert!(proxy_container(&spec).is_some());
        set_proxy_container(&mut spec, Some(injected_proxy(false)));
        assert_eq!(spec, json!({"containers": [{"name": "app"}, {"name": PROXY_CONTAINER}], "initContainers": []}));
        set_proxy_container(&mut spec, None);
        assert!(proxy_container(&spec).is_none());
    }
}
