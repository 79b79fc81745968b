//! istiod's sidecar injector: a real HTTPS mutating admission webhook.
//!
//! The API server calls it for every pod created in an injected namespace, exactly as it calls
//! istiod, so pods created by any path (Deployment, direct create, `oc debug`) get the same
//! sidecar, and the webhook's failure policy applies when the simulator is gone. The injected
//! `PROXY_CONFIG` reflects the control plane *at admission time*: only pods created while the
//! revision's profile is ambient carry `ISTIO_META_ENABLE_HBONE`, so a profile change alone does
//! not make running pods HBONE-capable; a restart does. The webhook registration itself is
//! written by the Sail reconciler ([`crate::sail`]), like the operator's istiod chart does.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::Store;
use serde_json::{Map, Value, json};

use crate::Error;

/// The path the webhook serves for the `default` revision; other revisions use `/inject/<rev>`.
pub const INJECT_PATH: &str = "/inject";
/// The container istiod injects.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The init container istiod injects when istio-cni sets up the redirection (OpenShift always
/// runs istio-cni): it only validates that the redirection works.
pub const VALIDATION_CONTAINER: &str = "istio-validation";
/// How long a request waits for the first list of `Istio` resources.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The proxy image of OSSM 3 (the tag is the Istio version).
pub const PROXY_IMAGE: &str = "registry.redhat.io/openshift-service-mesh/istio-proxyv2-rhel9";

/// The profiles under which istiod configures sidecars for ambient interoperation.
pub fn is_ambient_profile(profile: &str) -> bool {
    matches!(profile, "ambient" | "openshift-ambient")
}

/// What the injector needs to know of a control-plane revision when a pod is admitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub name: String,
    /// The control plane namespace.
    pub namespace: String,
    /// The Istio version without the `v`, e.g. `1.27.3`.
    pub version: String,
    pub ambient: bool,
    /// `spec.values.meshConfig.defaultConfig.proxyMetadata`.
    pub proxy_metadata: Map<String, Value>,
}

impl Revision {
    /// The revision an `Istio` resource runs (the InPlace strategy names it after the resource).
    pub fn of_istio(istio: &DynamicObject) -> Revision {
        let spec = &istio.data["spec"];
        Revision {
            name: istio.name_any(),
            namespace: spec["namespace"].as_str().unwrap_or("istio-system").to_string(),
            version: spec["version"].as_str().unwrap_or_default().trim_start_matches('v').to_string(),
            ambient: spec["profile"].as_str().is_some_and(is_ambient_profile),
            proxy_metadata: spec["values"]["meshConfig"]["defaultConfig"]["proxyMetadata"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// The value of the proxy's `PROXY_CONFIG` variable for a pod admitted under `revision`.
pub fn proxy_config(revision: &Revision) -> String {
    let mut metadata = revision.proxy_metadata.clone();
    if revision.ambient {
        metadata.insert("ISTIO_META_ENABLE_HBONE".into(), json!("true"));
    }
    let mut config = Map::new();
    if !metadata.is_empty() {
        config.insert("proxyMetadata".into(), Value::Object(metadata));
    }
    config.insert("image".into(), json!({"imageType": "distroless"}));
    format!("{}\n", Value::Object(config))
}

/// Escapes a key for a JSON Pointer (RFC 6901).
fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Why a pod that reached the webhook is left alone (the selectors already filter most).
pub fn skip_reason(pod: &Pod) -> Option<&'static str> {
    let spec = pod.spec.as_ref()?;
    if spec.containers.iter().any(|container| container.name == PROXY_CONTAINER) {
        return Some("already injected");
    }
    if spec.host_network == Some(true) {
        return Some("host network");
    }
    let opted_out =
        |value: Option<&String>| value.is_some_and(|value| matches!(value.as_str(), "false" | "n" | "no" | "off"));
    if opted_out(pod.annotations().get("sidecar.istio.io/inject"))
        || opted_out(pod.labels().get("sidecar.istio.io/inject"))
    {
        return Some("opted out");
    }
    None
}

/// The JSON Patch operations that turn `pod` into an injected pod of `revision`.
pub fn injection_patch(pod: &Pod, revision: &Revision) -> Vec<Value> {
    let mut operations = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let app = pod.labels().get("app").or_else(|| pod.labels().get("app.kubernetes.io/name")).cloned();
    let workload = app.clone().unwrap_or_else(|| pod.metadata.generate_name.clone().unwrap_or_else(|| pod.name_any()));
    let canonical_revision = pod.labels().get("version").cloned().unwrap_or_else(|| "latest".into());
    let image = format!("{PROXY_IMAGE}:{}", revision.version);
    let volumes = [
        json!({"name": "workload-socket", "emptyDir": {}}),
        json!({"name": "credential-socket", "emptyDir": {}}),
        json!({"name": "workload-certs", "emptyDir": {}}),
        json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}),
        json!({"name": "istio-data", "emptyDir": {}}),
        json!({"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}),
        json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}}),
        json!({"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}),
    ];
    let mounts = json!([
        {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
        {"name": "credential-socket", "mountPath": "/var/run/secrets/credential-uds"},
        {"name": "workload-certs", "mountPath": "/var/run/secrets/workload-spiffe-credentials"},
        {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
        {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
        {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
        {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
        {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
    ]);
    let validation = json!({
        "name": VALIDATION_CONTAINER, "image": image,
        "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info", "--run-validation", "--skip-rule-apply"],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true, "runAsNonRoot": true},
    });
    let proxy = json!({
        "name": PROXY_CONTAINER, "image": image,
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
        "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
        "env": [
            {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
            {"name": "CA_ADDR", "value": format!("{}.{}.svc:15012", crate::sail::istiod_name(&revision.name), revision.namespace)},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "ISTIO_CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "PROXY_CONFIG", "value": proxy_config(revision)},
            {"name": "ISTIO_META_POD_PORTS", "value": "[]"},
            {"name": "ISTIO_META_APP_CONTAINERS", "value": spec.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",")},
            {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
            {"name": "ISTIO_META_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
            {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
            {"name": "TRUST_DOMAIN", "value": "cluster.local"},
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15, "timeoutSeconds": 3, "failureThreshold": 4},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true, "runAsNonRoot": true},
        "volumeMounts": mounts,
    });

    let mut append = |path: &str, present: bool, items: Vec<Value>| {
        if present {
            operations
                .extend(items.into_iter().map(|item| json!({"op": "add", "path": format!("{path}/-"), "value": item})));
        } else {
            operations.push(json!({"op": "add", "path": path, "value": items}));
        }
    };
    append("/spec/initContainers", spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()), vec![validation]);
    append("/spec/containers", true, vec![proxy]);
    append("/spec/volumes", spec.volumes.as_ref().is_some_and(|v| !v.is_empty()), volumes.to_vec());

    let status = json!({
        "initContainers": [VALIDATION_CONTAINER], "containers": [PROXY_CONTAINER],
        "volumes": volumes.iter().map(|volume| volume["name"].clone()).collect::<Vec<_>>(),
        "imagePullSecrets": null, "revision": revision.name,
    });
    let mut set = |field: &str, present: bool, entries: Vec<(&str, String)>| {
        if present {
            for (key, value) in entries {
                operations.push(
                    json!({"op": "add", "path": format!("/metadata/{field}/{}", pointer_key(key)), "value": value}),
                );
            }
        } else {
            let map: Map<String, Value> =
                entries.into_iter().map(|(key, value)| (key.to_string(), json!(value))).collect();
            operations.push(json!({"op": "add", "path": format!("/metadata/{field}"), "value": map}));
        }
    };
    set(
        "annotations",
        pod.metadata.annotations.is_some(),
        vec![
            ("sidecar.istio.io/status", status.to_string()),
            ("istio.io/rev", revision.name.clone()),
            (
                "kubectl.kubernetes.io/default-container",
                spec.containers.first().map(|c| c.name.clone()).unwrap_or_default(),
            ),
        ],
    );
    set(
        "labels",
        pod.metadata.labels.is_some(),
        vec![
            ("security.istio.io/tlsMode", "istio".into()),
            ("service.istio.io/canonical-name", workload.clone()),
            ("service.istio.io/canonical-revision", canonical_revision),
        ],
    );
    operations
}

/// The running control-plane revisions, as the webhook sees them.
#[derive(Clone)]
pub struct Injector {
    istios: Store<DynamicObject>,
}

impl Injector {
    pub fn new(istios: Store<DynamicObject>) -> Self {
        Injector { istios }
    }

    fn revision(&self, name: &str) -> Option<Revision> {
        self.istios.state().iter().map(|istio| Revision::of_istio(istio)).find(|revision| revision.name == name)
    }

    /// Answers one admission review.
    pub fn review(
        &self,
        revision_name: &str,
        review: AdmissionReview<DynamicObject>,
    ) -> AdmissionReview<DynamicObject> {
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(err) => return AdmissionResponse::invalid(err.to_string()).into_review(),
        };
        let response = AdmissionResponse::from(&request);
        let pod: Option<Pod> = request
            .object
            .as_ref()
            .and_then(|object| serde_json::to_value(object).ok())
            .and_then(|value| serde_json::from_value(value).ok());
        let Some(pod) = pod else {
            return AdmissionResponse::invalid("the request carries no pod").into_review();
        };
        let Some(revision) = self.revision(revision_name) else {
            tracing::debug!("injector: no control plane revision {revision_name}; pod admitted unchanged");
            return response.into_review();
        };
        if skip_reason(&pod).is_some() {
            return response.into_review();
        }
        let patch: Result<json_patch::Patch, _> =
            serde_json::from_value(Value::Array(injection_patch(&pod, &revision)));
        match patch
            .map_err(|err| err.to_string())
            .and_then(|patch| response.clone().with_patch(patch).map_err(|err| err.to_string()))
        {
            Ok(patched) => patched.into_review(),
            Err(err) => response.deny(format!("injection failed: {err}")).into_review(),
        }
    }
}

/// Serves the webhook over TLS on a loopback port until the returned task is aborted.
pub async fn serve(
    injector: Injector,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    crate::https::serve("webhook", cert_pem, key_pem, move |request| handle(injector.clone(), request)).await
}

async fn handle(injector: Injector, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_string();
    let revision = match path.strip_prefix(INJECT_PATH) {
        Some("") => "default".to_string(),
        Some(rest) => match rest.strip_prefix('/') {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => return Ok(reply(StatusCode::NOT_FOUND, Bytes::new())),
        },
        None => return Ok(reply(StatusCode::NOT_FOUND, Bytes::new())),
    };
    let body = request.into_body().collect().await?.to_bytes();
    // Right after the simulator starts, answer only once the revisions are known: admitting a pod
    // uninjected because the store was still empty would be wrong, and istiod would not either.
    if tokio::time::timeout(STORE_WAIT, injector.istios.wait_until_ready()).await.is_err() {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"control plane revisions not loaded yet"),
        ));
    }
    let review = match serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body) {
        Ok(review) => injector.review(&revision, review),
        Err(err) => return Ok(reply(StatusCode::BAD_REQUEST, Bytes::from(err.to_string()))),
    };
    Ok(match serde_json::to_vec(&review) {
        Ok(json) => reply(StatusCode::OK, Bytes::from(json)),
        Err(err) => reply(StatusCode::INTERNAL_SERVER_ERROR, Bytes::from(err.to_string())),
    })
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(ambient: bool) -> Revision {
        Revision {
            name: "default".into(),
            namespace: "istio-system".into(),
            version: "1.27.3".into(),
            ambient,
            proxy_metadata: Map::new(),
        }
    }

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn apply(pod_value: Value, revision: &Revision) -> Value {
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(injection_patch(&pod(pod_value.clone()), revision))).unwrap();
        let mut document = pod_value;
        json_patch::patch(&mut document, &patch).unwrap();
        document
    }

    #[test]
    fn hbone_is_announced_only_under_an_ambient_profile() {
        assert_eq!(proxy_config(&revision(false)), "{\"image\":{\"imageType\":\"distroless\"}}\n");
        let ambient: Value = serde_json::from_str(&proxy_config(&revision(true))).unwrap();
        assert_eq!(ambient["proxyMetadata"]["ISTIO_META_ENABLE_HBONE"], "true");
    }

    #[test]
    fn the_patch_adds_proxy_validation_volumes_and_status_to_a_bare_pod() {
        let injected = apply(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "app"}]}}),
            &revision(true),
        );
        let names: Vec<&str> =
            injected["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["app", PROXY_CONTAINER]);
        assert_eq!(injected["spec"]["initContainers"][0]["name"], VALIDATION_CONTAINER);
        assert_eq!(injected["metadata"]["labels"]["security.istio.io/tlsMode"], "istio");
        let status: Value =
            serde_json::from_str(injected["metadata"]["annotations"]["sidecar.istio.io/status"].as_str().unwrap())
                .unwrap();
        assert_eq!(status["revision"], "default");
    }

    #[test]
    fn the_patch_appends_to_existing_lists_and_maps() {
        let injected = apply(
            json!({"metadata": {"name": "p", "labels": {"app": "a/b"}, "annotations": {"x": "y"}},
                   "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}], "volumes": [{"name": "data", "emptyDir": {}}]}}),
            &revision(false),
        );
        assert_eq!(injected["spec"]["initContainers"].as_array().unwrap().len(), 2);
        assert_eq!(injected["spec"]["volumes"][0]["name"], "data");
        assert_eq!(injected["metadata"]["annotations"]["x"], "y");
        assert_eq!(injected["metadata"]["labels"]["service.istio.io/canonical-name"], "a/b");
    }

    #[test]
    fn opted_out_host_network_and_injected_pods_are_skipped() {
        let annotated = pod(
            json!({"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}, "spec": {"containers": [{"name": "a"}]}}),
        );
        assert_eq!(skip_reason(&annotated), Some("opted out"));
        let host = pod(json!({"spec": {"hostNetwork": true, "containers": [{"name": "a"}]}}));
        assert_eq!(skip_reason(&host), Some("host network"));
        let injected = pod(json!({"spec": {"containers": [{"name": "a"}, {"name": PROXY_CONTAINER}]}}));
        assert_eq!(skip_reason(&injected), Some("already injected"));
        assert_eq!(skip_reason(&pod(json!({"spec": {"containers": [{"name": "a"}]}}))), None);
    }
}
