use kube_core::DynamicObject;
use serde_json::{Value, json};

use super::*;

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

fn reviews() -> ResourceRef {
    ResourceRef::new(Kind::Deployment, Some("bookinfo"), "reviews-v1")
}

const RESTARTED: &str = "kubectl.kubernetes.io/restartedAt";

fn deployment(status: Value) -> DynamicObject {
    object(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "bookinfo", "generation": 2},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "reviews"}},
            "template": {"metadata": {"labels": {"app": "reviews"}, "annotations": {RESTARTED: "t2"}}}},
        "status": status}))
}

fn rolled_out_status() -> Value {
    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3})
}

fn pod(name: &str, restarted: &str, ready: bool, extra_labels: Value) -> DynamicObject {
    let mut labels = json!({"app": "reviews"});
    labels.as_object_mut().unwrap().extend(extra_labels.as_object().cloned().unwrap_or_default());
    object(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "bookinfo", "labels": labels, "annotations": {RESTARTED: restarted}},
        "spec": {"containers": [{"name": "reviews"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
}

fn rolled_out(objects: Vec<DynamicObject>) -> Option<String> {
    Wait::RolledOut { target: reviews() }.missing(&Snapshot::from_objects(objects))
}

#[test]
fn a_rollout_is_done_when_every_pod_runs_the_new_template_and_is_ready() {
    let ready = |name| pod(name, "t2", true, json!({}));
    assert_eq!(rolled_out(vec![deployment(rolled_out_status()), ready("a"), ready("b"), ready("c")]), None);

    let unready = vec![deployment(rolled_out_status()), ready("a"), pod("b", "t2", false, json!({})), ready("c")];
    assert_eq!(
        rolled_out(unready).as_deref(),
        Some("1 of 3 pods of Deployment bookinfo/reviews-v1 not ready on the new template")
    );
    let old =
        vec![deployment(rolled_out_status()), ready("a"), ready("b"), ready("c"), pod("d", "t1", true, json!({}))];
    assert_eq!(
        rolled_out(old).as_deref(),
        Some("1 pod(s) of Deployment bookinfo/reviews-v1 still on the old template")
    );
}

#[test]
fn a_rollout_waits_for_the_controller_status() {
    let stale = json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3});
    assert_eq!(
        rolled_out(vec![deployment(stale)]).as_deref(),
        Some("Deployment bookinfo/reviews-v1: generation 2 not observed yet (observed 1)")
    );
    let updating = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3});
    assert_eq!(
        rolled_out(vec![deployment(updating)]).as_deref(),
        Some("Deployment bookinfo/reviews-v1: updatedReplicas 1 of 3")
    );
    assert_eq!(rolled_out(vec![]).as_deref(), Some("Deployment bookinfo/reviews-v1 not found"));
}

#[test]
fn a_daemonset_rollout_counts_scheduled_pods() {
    let daemonset = |updated: i64| {
        object(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "ops"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}},
            "status": {"desiredNumberScheduled": 2, "updatedNumberScheduled": updated, "numberReady": 2}}))
    };
    let target = Wait::RolledOut { target: ResourceRef::new(Kind::DaemonSet, Some("ops"), "agent") };
    assert_eq!(target.missing(&Snapshot::from_objects([daemonset(2)])), None);
    assert_eq!(
        target.missing(&Snapshot::from_objects([daemonset(1)])).as_deref(),
        Some("DaemonSet ops/agent: updatedNumberScheduled 1 of 2")
    );
}

fn cni(generation: i64, ready: Value) -> Snapshot {
    Snapshot::from_objects([object(json!({"apiVersion": "sailoperator.io/v1", "kind": "IstioCNI",
        "metadata": {"name": "default", "generation": generation},
        "status": {"observedGeneration": 2, "state": "Healthy", "conditions": [ready]}}))])
}

#[test]
fn healthy_needs_ready_for_the_current_generation() {
    let healthy = Wait::Healthy { target: ResourceRef::new(Kind::IstioCni, None, "default") };
    let ready = json!({"type": "Ready", "status": "True"});
    assert_eq!(healthy.missing(&cni(2, ready.clone())), None);
    assert_eq!(
        healthy.missing(&cni(3, ready)).as_deref(),
        Some("IstioCNI default: generation 3 not observed yet (observed 2)")
    );
    let failing = json!({"type": "Ready", "status": "False", "reason": "ReconcileError", "message": "no nodes"});
    assert_eq!(
        healthy.missing(&cni(2, failing)).as_deref(),
        Some("IstioCNI default: Ready=False (ReconcileError: no nodes)")
    );
}

#[test]
fn redirected_needs_every_enrolled_pod_without_proxy_marked() {
    let namespace = object(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "bookinfo", "labels": {"istio.io/dataplane-mode": "ambient"}}}));
    let marked = |name: &str, marked: bool| {
        let mut pod = pod(name, "t", true, json!({}));
        if marked {
            pod.metadata
                .annotations
                .get_or_insert_default()
                .insert("ambient.istio.io/redirection".into(), "enabled".into());
        }
        pod
    };
    let mut sidecar = marked("sidecar", false);
    sidecar.data["spec"]["containers"] = json!([{"name": "reviews"}, {"name": "istio-proxy"}]);
    let gateway = pod("gateway", "t", true, json!({"gateway.networking.k8s.io/gateway-name": "waypoint"}));
    let opted_out = pod("opted-out", "t", true, json!({"istio.io/dataplane-mode": "none"}));
    let redirected = Wait::Redirected { namespace: "bookinfo".into() };

    let done = Snapshot::from_objects([namespace.clone(), marked("a", true), sidecar, gateway, opted_out]);
    assert_eq!(redirected.missing(&done), None);
    let waiting = Snapshot::from_objects([namespace, marked("a", true), marked("b", false)]);
    assert_eq!(redirected.missing(&waiting).as_deref(), Some("1 of 2 pods of bookinfo not redirected to ztunnel: b"));
}

#[test]
fn programmed_needs_the_condition_and_ready_pods() {
    let gateway = |status: &str| {
        object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "bookinfo"},
            "spec": {"gatewayClassName": "istio-waypoint"},
            "status": {"conditions": [{"type": "Programmed", "status": status}]}}))
    };
    let waypoint_pod =
        |ready| pod("waypoint-1", "t", ready, json!({"gateway.networking.k8s.io/gateway-name": "waypoint"}));
    let programmed = Wait::Programmed { target: ResourceRef::new(Kind::Gateway, Some("bookinfo"), "waypoint") };
    assert_eq!(programmed.missing(&Snapshot::from_objects([gateway("True"), waypoint_pod(true)])), None);
    assert_eq!(
        programmed.missing(&Snapshot::from_objects([gateway("False"), waypoint_pod(true)])).as_deref(),
        Some("Gateway bookinfo/waypoint: not Programmed")
    );
    assert_eq!(
        programmed.missing(&Snapshot::from_objects([gateway("True"), waypoint_pod(false)])).as_deref(),
        Some("1 of 1 pods of Gateway bookinfo/waypoint not ready")
    );
}
