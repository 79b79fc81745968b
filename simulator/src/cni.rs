//! istio-cni's ambient node agent: it marks the pods it redirects into ztunnel with
//! `ambient.istio.io/redirection: enabled` and removes the mark when a pod leaves ambient.
//!
//! A pod is enrolled when an `IstioCNI` with an ambient profile is healthy, the pod or its
//! namespace is labelled `istio.io/dataplane-mode=ambient` (the pod label `none` opts out), and
//! the pod runs no proxy of its own (a sidecar keeps its own redirection; gateways and
//! waypoints are proxies). Namespace label changes and
//! `IstioCNI` changes re-evaluate the affected pods.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::Error;
use crate::injector::{PROXY_CONTAINER, is_ambient_profile};
use crate::resources::{api, follow_with_triggers, is_not_found};
use crate::sail::Component;

pub const REDIRECTION_ANNOTATION: &str = "ambient.istio.io/redirection";
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

/// Whether istio-cni redirects `pod` into ztunnel.
pub fn enrolled(pod: &Pod, namespace_labels: &BTreeMap<String, String>, ambient_enabled: bool) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    if !ambient_enabled || spec.host_network == Some(true) || spec.node_name.is_none() {
        return false;
    }
    // Injected pods and gateway pods (whose main container is the proxy) keep their own proxy.
    let has_sidecar = spec.containers.iter().any(|container| container.name == PROXY_CONTAINER)
        || pod.annotations().contains_key("sidecar.istio.io/status");
    if has_sidecar {
        return false;
    }
    match pod.labels().get(DATAPLANE_MODE_LABEL).map(String::as_str) {
        Some("none") => false,
        Some("ambient") => true,
        _ => namespace_labels.get(DATAPLANE_MODE_LABEL).is_some_and(|mode| mode == "ambient"),
    }
}

/// Whether any `IstioCNI` runs with the ambient profile and is healthy.
fn ambient_enabled(cnis: &Store<DynamicObject>) -> bool {
    cnis.state().iter().any(|cni| {
        let spec = &cni.data["spec"];
        let profile = spec["profile"].as_str().or_else(|| spec["values"]["profile"].as_str()).unwrap_or_default();
        is_ambient_profile(profile) && cni.data["status"]["state"] == "Healthy"
    })
}

struct Context {
    client: Client,
    namespaces: Store<Namespace>,
    cnis: Store<DynamicObject>,
}

async fn reconcile(pod: Arc<Pod>, context: Arc<Context>) -> Result<Action, Error> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = pod.namespace().unwrap_or_default();
    let labels = context.namespaces.get(&ObjectRef::new(&namespace)).map(|ns| ns.labels().clone()).unwrap_or_default();
    let wanted = enrolled(&pod, &labels, ambient_enabled(&context.cnis));
    let marked = pod.annotations().get(REDIRECTION_ANNOTATION).is_some_and(|value| value == "enabled");
    if wanted != marked {
        let value = if wanted { json!("enabled") } else { json!(null) };
        let patch = json!({"metadata": {"annotations": {REDIRECTION_ANNOTATION: value}}});
        let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
        match pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Err(err) if is_not_found(&err) => {}
            other => {
                other?;
            }
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_pod: Arc<Pod>, error: &Error, _context: Arc<Context>) -> Action {
    tracing::warn!("istio-cni: {error}");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the node agents until the task is dropped.
pub async fn run(client: Client) -> Result<(), Error> {
    let namespace_writer = reflector::store::Writer::<Namespace>::default();
    let namespaces = namespace_writer.as_reader();
    let ([namespace_changes], follow_namespaces) =
        follow_with_triggers(Api::<Namespace>::all(client.clone()), namespace_writer);
    let cni_resource = ApiResource::from_gvk(&Component::IstioCni.gvk());
    let cni_writer = reflector::store::Writer::<DynamicObject>::new(cni_resource.clone());
    let cnis = cni_writer.as_reader();
    let ([cni_changes], follow_cnis) = follow_with_triggers(api(&client, &Component::IstioCni.gvk(), None), cni_writer);
    let controller = Controller::new(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let pods = controller.store();
    let pods_in_namespace = pods.clone();
    let controller = controller
        .watches_stream(namespace_changes, move |namespace| {
            let name = namespace.name_any();
            pods_in_namespace
                .state()
                .iter()
                .filter(|pod| pod.namespace().as_deref() == Some(name.as_str()))
                .map(|pod| ObjectRef::from_obj(pod.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream_with(
            cni_changes,
            move |_| pods.state().iter().map(|pod| ObjectRef::from_obj(pod.as_ref())).collect::<Vec<_>>(),
            cni_resource,
        );
    let context = Arc::new(Context { client, namespaces: namespaces.clone(), cnis: cnis.clone() });
    let agents = async move {
        let _ = namespaces.wait_until_ready().await;
        let _ = cnis.wait_until_ready().await;
        controller.run(reconcile, error_policy, context).for_each(|_| futures::future::ready(())).await;
    };
    tokio::join!(follow_namespaces, follow_cnis, agents);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: serde_json::Value, containers: &[&str], injected: bool) -> Pod {
        let annotations = if injected { json!({"sidecar.istio.io/status": "{}"}) } else { json!({}) };
        let containers: Vec<_> = containers.iter().map(|name| json!({"name": name})).collect();
        serde_json::from_value(json!({"metadata": {"labels": labels, "annotations": annotations}, "spec": {"nodeName": "worker-0", "containers": containers}})).unwrap()
    }

    fn ambient_namespace() -> BTreeMap<String, String> {
        BTreeMap::from([(DATAPLANE_MODE_LABEL.to_string(), "ambient".to_string())])
    }

    #[test]
    fn pods_of_an_ambient_namespace_are_enrolled_unless_they_keep_a_sidecar_or_opt_out() {
        assert!(enrolled(&pod(json!({}), &["app"], false), &ambient_namespace(), true));
        assert!(!enrolled(&pod(json!({}), &["app", PROXY_CONTAINER], true), &ambient_namespace(), true));
        assert!(!enrolled(&pod(json!({DATAPLANE_MODE_LABEL: "none"}), &["app"], false), &ambient_namespace(), true));
    }

    #[test]
    fn the_pod_label_enrolls_alone_and_nothing_is_enrolled_without_ambient_cni() {
        assert!(enrolled(&pod(json!({DATAPLANE_MODE_LABEL: "ambient"}), &["app"], false), &BTreeMap::new(), true));
        assert!(!enrolled(&pod(json!({}), &["app"], false), &BTreeMap::new(), true));
        assert!(!enrolled(&pod(json!({}), &["app"], false), &ambient_namespace(), false));
    }
}
