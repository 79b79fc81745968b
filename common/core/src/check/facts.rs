//! Facts derived from raw objects, decided from the objects themselves rather than from table
//! columns (the guide's `2/2` READY greps break on pods with extra or native-sidecar containers).

use std::collections::BTreeMap;

use kube_core::DynamicObject;
use serde_json::Value;

use crate::kinds::Kind;
use crate::mesh::gateway_api::{HttpRouteSpec, ParentRef};
use crate::mesh::labels::*;
use crate::mesh::{annotations, labels};
use crate::snapshot::Snapshot;

/// What the suite needs to know about one pod.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    pub object: &'a DynamicObject,
    pub namespace: &'a str,
    pub name: &'a str,
    /// An `istio-proxy` container, or a native sidecar init container of that name.
    pub sidecar: bool,
    /// The sidecar's proxy config enables HBONE.
    pub hbone: bool,
    /// Phase Running and condition Ready.
    pub ready: bool,
    /// The CNI redirects its traffic to ztunnel.
    pub redirected: bool,
    /// Pod of a Gateway API gateway (ingress gateway or waypoint).
    pub gateway: Option<&'a str>,
    pub node: Option<&'a str>,
    pub service_account: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

fn containers<'a>(object: &'a DynamicObject, field: &str) -> impl Iterator<Item = &'a Value> + 'a {
    object.data.pointer(&format!("/spec/{field}")).and_then(Value::as_array).into_iter().flatten()
}

fn proxy_container(object: &DynamicObject) -> Option<&Value> {
    let is_proxy = |c: &&Value| c.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER);
    containers(object, "containers").find(is_proxy).or_else(|| {
        containers(object, "initContainers")
            .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
            .find(is_proxy)
    })
}

/// HBONE is on when the proxy's `PROXY_CONFIG` JSON sets `proxyMetadata.ISTIO_META_ENABLE_HBONE`
/// to "true" (or the env var is set directly).
fn hbone_enabled(proxy: &Value) -> bool {
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

impl<'a> PodFacts<'a> {
    pub fn of(object: &'a DynamicObject) -> Self {
        let proxy = proxy_container(object);
        let status = object.data.get("status");
        let phase = status.and_then(|s| s.get("phase")).and_then(Value::as_str);
        let ready_condition =
            status.and_then(|s| s.get("conditions")).and_then(Value::as_array).into_iter().flatten().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            });
        let pod_labels = labels(object);
        PodFacts {
            object,
            namespace: object.metadata.namespace.as_deref().unwrap_or_default(),
            name: object.metadata.name.as_deref().unwrap_or_default(),
            sidecar: proxy.is_some(),
            hbone: proxy.is_some_and(hbone_enabled),
            ready: phase == Some("Running") && ready_condition,
            redirected: annotations(object).get(AMBIENT_REDIRECTION).map(String::as_str) == Some("enabled"),
            gateway: pod_labels.get(GATEWAY_NAME).map(String::as_str),
            node: object.data.pointer("/spec/nodeName").and_then(Value::as_str),
            service_account: object
                .data
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default"),
            labels: pod_labels,
        }
    }

    /// Finished pods (Succeeded/Failed) and pods being deleted do not count.
    pub fn is_live(&self) -> bool {
        let phase = self.object.data.pointer("/status/phase").and_then(Value::as_str);
        self.object.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
    }

    /// The controller the pod belongs to (Deployment name for ReplicaSet-owned pods), for grouping.
    pub fn workload(&self) -> String {
        let owner = self.object.metadata.owner_references.as_ref().and_then(|owners| owners.first());
        match owner {
            Some(owner) if owner.kind == "ReplicaSet" => match owner.name.rsplit_once('-') {
                Some((deployment, _hash)) => deployment.to_string(),
                None => owner.name.clone(),
            },
            Some(owner) => owner.name.clone(),
            None => self.name.to_string(),
        }
    }
}

/// How a namespace is labelled for the data plane.
#[derive(Debug, Clone, Default)]
pub struct NamespaceLabels {
    pub injection: bool,
    pub ambient: bool,
    pub use_waypoint: Option<String>,
}

impl NamespaceLabels {
    pub fn of(object: &DynamicObject) -> Self {
        let labels = labels(object);
        let injection_label = labels.get(ISTIO_INJECTION).map(String::as_str);
        NamespaceLabels {
            injection: injection_label == Some("enabled")
                || (labels.contains_key(ISTIO_REV) && injection_label != Some("disabled")),
            ambient: labels.get(DATAPLANE_MODE).map(String::as_str) == Some(DATAPLANE_AMBIENT),
            use_waypoint: labels.get(USE_WAYPOINT).filter(|value| value.as_str() != "none").cloned(),
        }
    }
}

/// A dotted version (`v1.27.0`, `4.19.3`, `3.2.0-rc1`) as numbers, for comparisons.
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let text = text.trim().trim_start_matches('v');
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// `a.b.c` for display.
pub fn version_text(version: (u64, u64, u64)) -> String {
    format!("{}.{}.{}", version.0, version.1, version.2)
}

/// A string at a JSON pointer.
pub fn str_at<'a>(object: &'a DynamicObject, pointer: &str) -> Option<&'a str> {
    object.data.pointer(pointer).and_then(Value::as_str)
}

/// Names of the Services an HTTPRoute attaches to (GAMMA Service parentRefs).
pub fn service_parents(route: &DynamicObject) -> Vec<String> {
    crate::mesh::spec::<HttpRouteSpec>(route)
        .map(|spec| spec.parent_refs.into_iter().filter(ParentRef::is_service).map(|parent| parent.name).collect())
        .unwrap_or_default()
}

/// Waypoint Gateways (class `istio-waypoint`) of a namespace.
pub fn waypoints<'a>(snapshot: &'a Snapshot, namespace: &'a str) -> impl Iterator<Item = &'a DynamicObject> + 'a {
    snapshot
        .in_namespace(Kind::Gateway, namespace)
        .filter(|gateway| str_at(gateway, "/spec/gatewayClassName") == Some(WAYPOINT_CLASS))
}

/// A gateway reports `Programmed=True`.
pub fn is_programmed(gateway: &DynamicObject) -> bool {
    gateway.data.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|condition| {
        condition.get("type").and_then(Value::as_str) == Some("Programmed")
            && condition.get("status").and_then(Value::as_str) == Some("True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sidecar_and_hbone_come_from_the_pod_spec() {
        let with_hbone = pod(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy", "env": [
                {"name": "PROXY_CONFIG", "value": "{\"proxyMetadata\":{\"ISTIO_META_ENABLE_HBONE\":\"true\"}}"}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let facts = PodFacts::of(&with_hbone);
        assert!(facts.sidecar && facts.hbone && facts.ready && !facts.redirected);

        let native = pod(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "app"}], "initContainers": [
                {"name": "istio-proxy", "restartPolicy": "Always", "env": [{"name": "PROXY_CONFIG", "value": "{}"}]}]},
            "status": {"phase": "Pending"}
        }));
        let facts = PodFacts::of(&native);
        assert!(facts.sidecar && !facts.hbone && !facts.ready);
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(parse_version("v1.27.0"), Some((1, 27, 0)));
        assert_eq!(parse_version("4.19"), Some((4, 19, 0)));
        assert_eq!(parse_version("3.2.0-rc1"), Some((3, 2, 0)));
        assert!(parse_version("1.9.0") < parse_version("1.27.0"));
        assert_eq!(parse_version("latest"), None);
    }
}
