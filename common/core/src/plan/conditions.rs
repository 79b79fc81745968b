//! The pure half of each [`Wait`]: is the condition met in this snapshot, and if not, what is
//! still missing, in words the engine prints while it watches.
//!
//! The conditions read only what controllers publish (status and pods), never the time: the
//! engine owns timeouts. A rollout counts as done only when no pod of the old template is left,
//! because an old pod still serving keeps the old data plane (a sidecar without HBONE, say) in
//! the path. Which template a pod runs is read from its metadata: every label and annotation of
//! the controller's pod template (including the restart stamp `kubectl.kubernetes.io/restartedAt`)
//! is on the pod with the same value; the injector adds metadata but never rewrites the template's.

use kube_core::DynamicObject;
use serde_json::Value;

use super::Wait;
use crate::change::ResourceRef;
use crate::kinds::Kind;
use crate::mesh::{annotations, labels};
use crate::model::Pod;
use crate::model::dataplane::{NamespaceMode, controls, enrolled, template_metadata};
use crate::snapshot::Snapshot;

impl Wait {
    /// None when the condition holds in `snapshot`, else what is still missing.
    pub fn missing(&self, snapshot: &Snapshot) -> Option<String> {
        match self {
            Wait::RolledOut { target } => rollout_missing(snapshot, target),
            Wait::Healthy { target } => healthy_missing(snapshot, target),
            Wait::Redirected { namespace } => redirection_missing(snapshot, namespace),
            Wait::Programmed { target } => programmed_missing(snapshot, target),
        }
    }
}

fn find<'a>(snapshot: &'a Snapshot, target: &ResourceRef) -> Result<&'a DynamicObject, String> {
    snapshot.get(target.kind, target.namespace.as_deref(), &target.name).ok_or_else(|| format!("{target} not found"))
}

fn int_at(object: &DynamicObject, pointer: &str) -> Option<i64> {
    object.data.pointer(pointer).and_then(Value::as_i64)
}

/// The controller has not yet seen its latest spec.
fn generation_missing(object: &DynamicObject, target: &ResourceRef) -> Option<String> {
    let generation = object.metadata.generation?;
    match int_at(object, "/status/observedGeneration") {
        Some(observed) if observed >= generation => None,
        observed => Some(format!(
            "{target}: generation {generation} not observed yet (observed {})",
            observed.map_or_else(|| "none".to_string(), |observed| observed.to_string())
        )),
    }
}

/// True when the pod carries every label and annotation of the template.
fn on_template(pod: &DynamicObject, template: &Value) -> bool {
    let (template_labels, template_annotations) = template_metadata(template);
    let (pod_labels, pod_annotations) = (labels(pod), annotations(pod));
    template_labels.iter().all(|(key, value)| pod_labels.get(key) == Some(value))
        && template_annotations.iter().all(|(key, value)| pod_annotations.get(key) == Some(value))
}

fn rollout_missing(snapshot: &Snapshot, target: &ResourceRef) -> Option<String> {
    let controller = match find(snapshot, target) {
        Ok(controller) => controller,
        Err(missing) => return Some(missing),
    };
    if target.kind == Kind::Pod {
        return (!Pod::of(controller).ready).then(|| format!("{target} not ready"));
    }
    if let Some(missing) = generation_missing(controller, target) {
        return Some(missing);
    }
    let counters: &[&str] = match target.kind {
        Kind::DaemonSet => &["updatedNumberScheduled", "numberReady"],
        Kind::StatefulSet => &["updatedReplicas", "readyReplicas", "replicas"],
        _ => &["updatedReplicas", "readyReplicas", "availableReplicas", "replicas"],
    };
    let wanted = match target.kind {
        Kind::DaemonSet => int_at(controller, "/status/desiredNumberScheduled").unwrap_or(0),
        _ => int_at(controller, "/spec/replicas").unwrap_or(1),
    };
    for counter in counters {
        let value = int_at(controller, &format!("/status/{counter}")).unwrap_or(0);
        if value != wanted {
            return Some(format!("{target}: {counter} {value} of {wanted}"));
        }
    }
    let template = controller.data.pointer("/spec/template").unwrap_or(&Value::Null);
    let pods: Vec<Pod> = snapshot
        .all(Kind::Pod)
        .iter()
        .filter(|pod| controls(controller, pod))
        .map(Pod::of)
        .filter(Pod::is_live)
        .collect();
    let old = pods.iter().filter(|pod| !on_template(pod.object, template)).count();
    if old > 0 {
        return Some(format!("{old} pod(s) of {target} still on the old template"));
    }
    // How many pods there should be is the status counters' business (checked above).
    let not_ready = pods.iter().filter(|pod| !pod.ready).count();
    (not_ready > 0).then(|| format!("{not_ready} of {wanted} pods of {target} not ready on the new template"))
}

/// `Kind name: Ready=False (reason: message)`, as the Sail operator reports it.
fn healthy_missing(snapshot: &Snapshot, target: &ResourceRef) -> Option<String> {
    let object = match find(snapshot, target) {
        Ok(object) => object,
        Err(missing) => return Some(missing),
    };
    if let Some(missing) = generation_missing(object, target) {
        return Some(missing);
    }
    let conditions = object.data.pointer("/status/conditions").and_then(Value::as_array);
    let ready = conditions
        .into_iter()
        .flatten()
        .find(|condition| condition.get("type").and_then(Value::as_str) == Some("Ready"));
    let field = |name: &str| ready.and_then(|condition| condition.get(name)).and_then(Value::as_str).unwrap_or("");
    match field("status") {
        "True" => None,
        "" => Some(format!("{target}: no Ready condition yet")),
        status => {
            let detail = [field("reason"), field("message")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
            Some(format!("{target}: Ready={status} ({})", detail.join(": ")))
        }
    }
}

/// Pods istio-cni must redirect: live, enrolled by their or their namespace's label, and
/// running no proxy of their own (a sidecar keeps its own capture; gateways are proxies).
fn redirection_missing(snapshot: &Snapshot, namespace: &str) -> Option<String> {
    let mode = snapshot.get(Kind::Namespace, None, namespace).map(NamespaceMode::of).unwrap_or_default();
    let pods: Vec<Pod> = snapshot.in_namespace(Kind::Pod, namespace).map(Pod::of).filter(Pod::is_live).collect();
    let due: Vec<&Pod> =
        pods.iter().filter(|pod| !pod.sidecar && pod.gateway.is_none() && enrolled(&mode, pod.labels)).collect();
    let waiting: Vec<&str> = due.iter().filter(|pod| !pod.redirected).map(|pod| pod.name).collect();
    (!waiting.is_empty()).then(|| {
        format!(
            "{} of {} pods of {namespace} not redirected to ztunnel: {}",
            waiting.len(),
            due.len(),
            waiting.join(", ")
        )
    })
}

fn programmed_missing(snapshot: &Snapshot, target: &ResourceRef) -> Option<String> {
    let gateway = match find(snapshot, target) {
        Ok(gateway) => gateway,
        Err(missing) => return Some(missing),
    };
    let programmed =
        gateway.data.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|condition| {
            condition.get("type").and_then(Value::as_str) == Some("Programmed")
                && condition.get("status").and_then(Value::as_str) == Some("True")
        });
    if !programmed {
        return Some(format!("{target}: not Programmed"));
    }
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let pods: Vec<Pod> = snapshot
        .in_namespace(Kind::Pod, namespace)
        .map(Pod::of)
        .filter(|pod| pod.is_live() && pod.gateway == Some(target.name.as_str()))
        .collect();
    let not_ready = pods.iter().filter(|pod| !pod.ready).count();
    if pods.is_empty() {
        Some(format!("{target}: no pod yet"))
    } else if not_ready > 0 {
        Some(format!("{not_ready} of {} pods of {target} not ready", pods.len()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
