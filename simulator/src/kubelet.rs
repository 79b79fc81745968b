//! The scheduler and the kubelets: the control plane has neither, so without this module every
//! pod would stay Pending and every deleted pod Terminating.
//!
//! One task follows a watch on all pods and, in the order the API server reports them, binds each
//! unbound pod to a node (the DaemonSet's node when the pod pins one, otherwise round-robin over
//! `worker-0..N-1`), gives it the next IP of that node's range and reports it Running with a
//! status for every container, injected ones included. Deleted pods are removed at once (grace
//! period 0), as a kubelet does once the containers stop; the controller-manager does the rest
//! of a rollout. Decisions are made in event order so names and addresses are reproducible; the
//! API calls then run concurrently, which is what makes thousands of pods load quickly.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::Error;
use crate::resources::{FIELD_MANAGER, from_json, is_not_found};

/// A pod annotation (set through a template by a scenario or a test) that keeps the pod Running
/// but not Ready, to simulate an unhealthy component.
pub const FAULT_ANNOTATION: &str = "simulator.oc-ambient.io/fault";
/// The value of [`FAULT_ANNOTATION`] that makes containers not ready.
pub const FAULT_NOT_READY: &str = "not-ready";

/// How many pod writes may be in flight at once.
const CONCURRENT_WRITES: usize = 32;

/// The name of node `index`.
pub fn node_name(index: usize) -> String {
    format!("worker-{index}")
}

fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix("worker-")?.parse().ok()
}

fn node_ip(index: usize) -> String {
    format!("192.168.0.{}", 10 + index)
}

/// The address every node reports for its kubelet: the API server reaches the simulated
/// kubelets' log endpoint ([`crate::logs`]) there, never the nodes' own (fictitious) addresses.
/// The control plane prefers `InternalDNS` addresses (see `oc-ambient-testenv`).
pub const KUBELET_HOST: &str = "127.0.0.1";

/// Creates (or updates) `count` Ready worker nodes whose kubelets serve on `kubelet_port`.
pub async fn create_nodes(
    client: &Client,
    count: usize,
    kubelet_version: &str,
    kubelet_port: u16,
) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    for index in 0..count {
        let name = node_name(index);
        let node: Node = from_json(
            "node",
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node-role.kubernetes.io/worker": "",
                    "node.openshift.io/os_id": "rhcos",
                }},
            }),
        )?;
        nodes.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&node)).await?;
        let now = now();
        let status = json!({"status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "addresses": [{"type": "InternalIP", "address": node_ip(index)}, {"type": "Hostname", "address": name},
                {"type": "InternalDNS", "address": KUBELET_HOST}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "250"},
            "allocatable": {"cpu": "7500m", "memory": "30Gi", "pods": "250"},
            "nodeInfo": {
                "machineID": format!("{index:032x}"), "systemUUID": format!("{index:032x}"), "bootID": format!("{index:032x}"),
                "kernelVersion": "5.14.0-570.el9_6.x86_64", "osImage": "Red Hat Enterprise Linux CoreOS 9.6",
                "containerRuntimeVersion": "cri-o://1.32.6", "kubeletVersion": kubelet_version, "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        }});
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
    }
    Ok(())
}

/// The current time in the API's format.
pub fn now() -> String {
    k8s_openapi::chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Where a pod runs and under which address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    node: usize,
    ip: String,
}

/// What the kubelet must do for a pod.
#[derive(Debug, PartialEq)]
enum Action {
    Remove { uid: String },
    Bind { node: String },
    Report { status: Value },
}

/// The deterministic scheduling state: the next node and the next address of each node.
#[derive(Debug)]
struct Scheduler {
    nodes: usize,
    next_node: usize,
    next_host: Vec<u32>,
    placements: HashMap<String, Placement>,
}

impl Scheduler {
    fn new(nodes: usize) -> Self {
        Scheduler { nodes: nodes.max(1), next_node: 0, next_host: vec![0; nodes.max(1)], placements: HashMap::new() }
    }

    /// The node a pod is pinned to: its `nodeName`, or the `metadata.name` a DaemonSet puts in
    /// the pod's node affinity.
    fn pinned_node(pod: &Pod) -> Option<Option<usize>> {
        let spec = pod.spec.as_ref()?;
        if let Some(name) = &spec.node_name {
            return Some(node_index(name));
        }
        let terms = &spec
            .affinity
            .as_ref()?
            .node_affinity
            .as_ref()?
            .required_during_scheduling_ignored_during_execution
            .as_ref()?
            .node_selector_terms;
        terms
            .iter()
            .flat_map(|term| term.match_fields.iter().flatten())
            .find(|field| field.key == "metadata.name")
            .map(|field| field.values.iter().flatten().next().and_then(|name| node_index(name)))
    }

    /// Places a pod the first time it is seen; `None` when it is pinned to a node that does not
    /// exist (it stays Pending, as on a cluster).
    fn place(&mut self, pod: &Pod) -> Option<Placement> {
        let uid = pod.metadata.uid.clone()?;
        if let Some(placement) = self.placements.get(&uid) {
            return Some(placement.clone());
        }
        let node = match Self::pinned_node(pod) {
            Some(pinned) => pinned.filter(|index| *index < self.nodes)?,
            None => {
                let node = self.next_node;
                self.next_node = (self.next_node + 1) % self.nodes;
                node
            }
        };
        let host_network = pod.spec.as_ref().and_then(|spec| spec.host_network).unwrap_or(false);
        let ip = if host_network {
            node_ip(node)
        } else {
            let host = self.next_host[node];
            self.next_host[node] += 1;
            format!("10.{}.{}.{}", 128 + node, host / 254, host % 254 + 1)
        };
        let placement = Placement { node, ip };
        self.placements.insert(uid, placement.clone());
        Some(placement)
    }

    fn forget(&mut self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid {
            self.placements.remove(uid);
        }
    }

    fn decide(&mut self, pod: &Pod) -> Option<Action> {
        if pod.metadata.deletion_timestamp.is_some() {
            return Some(Action::Remove { uid: pod.metadata.uid.clone()? });
        }
        let status = pod.status.as_ref();
        if matches!(status.and_then(|status| status.phase.as_deref()), Some("Succeeded" | "Failed")) {
            return None;
        }
        let placement = self.place(pod)?;
        let spec = pod.spec.as_ref()?;
        if spec.node_name.is_none() {
            return Some(Action::Bind { node: node_name(placement.node) });
        }
        let ready = !is_faulty(pod);
        let reported = status.is_some_and(|status| {
            status.phase.as_deref() == Some("Running")
                && status.pod_ip.as_deref() == Some(placement.ip.as_str())
                && status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|condition| condition.type_ == "Ready" && (condition.status == "True") == ready)
        });
        (!reported).then(|| Action::Report { status: running_status(pod, &placement, ready) })
    }
}

fn is_faulty(pod: &Pod) -> bool {
    pod.annotations().get(FAULT_ANNOTATION).is_some_and(|value| value == FAULT_NOT_READY)
}

/// The status a kubelet reports for a pod whose containers all started.
fn running_status(pod: &Pod, placement: &Placement, ready: bool) -> Value {
    let now = now();
    let uid = pod.metadata.uid.clone().unwrap_or_default().replace('-', "");
    let container_id = |index: usize| format!("cri-o://{uid}{index:032x}");
    let ready_text = if ready { "True" } else { "False" };
    let spec = pod.spec.clone().unwrap_or_default();
    let init_statuses: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, container)| {
            json!({
                "name": container.name, "image": container.image, "imageID": container.image, "ready": true,
                "restartCount": 0, "started": false, "containerID": container_id(100 + index),
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now, "containerID": container_id(100 + index)}},
            })
        })
        .collect();
    let statuses: Vec<Value> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(index, container)| {
            json!({
                "name": container.name, "image": container.image, "imageID": container.image, "ready": ready,
                "restartCount": 0, "started": true, "containerID": container_id(index),
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    let host_ip = node_ip(placement.node);
    json!({
        "phase": "Running",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": ready_text, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": ready_text, "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ],
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": placement.ip, "podIPs": [{"ip": placement.ip}],
        "startTime": now,
        "initContainerStatuses": init_statuses,
        "containerStatuses": statuses,
    })
}

async fn execute(
    client: Client,
    namespace: String,
    name: String,
    action: Action,
    startup: Duration,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    if matches!(action, Action::Report { .. }) {
        tokio::time::sleep(startup).await;
    }
    // A request the API server cannot serve now (restarting, overloaded) is sent again: a watch
    // that resumes after a restart does not replay the event that asked for it, so a pod whose
    // removal failed would stay Terminating and its rollout would never end.
    let (mut pause, mut retries) = (Duration::from_millis(250), 0);
    loop {
        match send(&pods, &name, &action).await {
            // The pod went away, or was bound or changed meanwhile: a later event decides again.
            Err(kube::Error::Api(status)) if status.code == 409 => return Ok(()),
            Err(err) if is_not_found(&err) => return Ok(()),
            Err(err) if retries < 20 && is_transient(&err) => {
                retries += 1;
                tracing::debug!("kubelet: {namespace}/{name}: {err}; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other.map_err(Error::from),
        }
    }
}

/// Errors worth sending the request again for: no answer, or the server's own failure.
fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => true,
    }
}

async fn send(pods: &Api<Pod>, name: &str, action: &Action) -> Result<(), kube::Error> {
    match action {
        Action::Remove { uid } => {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..Default::default()
            };
            pods.delete(name, &params).await.map(|_| ())
        }
        Action::Bind { node } => {
            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            let body = serde_json::to_vec(&binding).map_err(kube::Error::SerdeError)?;
            pods.create_subresource::<Value>("binding", name, &PostParams::default(), body).await.map(|_| ())
        }
        Action::Report { status } => {
            pods.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await.map(|_| ())
        }
    }
}

/// Runs the kubelets and the scheduler for `nodes` nodes until the task is dropped; a bound pod
/// reports its status `startup` after the event that bound it.
pub async fn run(client: Client, nodes: usize, startup: Duration) -> Result<(), Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut scheduler = Scheduler::new(nodes);
    // With backoff, and errors logged rather than fatal: a restarted API server must not stop the
    // kubelets (the re-list that follows brings every pod back to the scheduler).
    let mut events =
        std::pin::pin!(kube::runtime::watcher(pods, watcher::Config::default()).default_backoff().map_err(Error::from));
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            event = events.try_next() => {
                let event = match event {
                    Ok(event) => event,
                    Err(err) => { tracing::warn!("kubelet: watch: {err}"); continue; }
                };
                let pod = match event {
                    Some(Event::Apply(pod) | Event::InitApply(pod)) => pod,
                    Some(Event::Delete(pod)) => { scheduler.forget(&pod); continue; }
                    Some(Event::Init | Event::InitDone) => continue,
                    None => return Ok(()),
                };
                if let Some(action) = scheduler.decide(&pod) {
                    while in_flight.len() >= CONCURRENT_WRITES {
                        log_failure(in_flight.next().await);
                    }
                    in_flight.push(execute(client.clone(), pod.namespace().unwrap_or_default(), pod.name_any(), action, startup));
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => log_failure(Some(done)),
        }
    }
}

fn log_failure(result: Option<Result<(), Error>>) {
    if let Some(Err(err)) = result {
        tracing::warn!("kubelet: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, node_name: Option<&str>, pinned: Option<&str>) -> Pod {
        let mut value = json!({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "istio-proxy", "image": "proxy:1"}]},
        });
        if let Some(node) = node_name {
            value["spec"]["nodeName"] = json!(node);
        }
        if let Some(node) = pinned {
            value["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn unbound_pods_go_round_robin_and_addresses_follow_the_order_of_arrival() {
        let mut scheduler = Scheduler::new(2);
        let nodes: Vec<Action> =
            ["a", "b", "c"].iter().map(|uid| scheduler.decide(&pod(uid, None, None)).unwrap()).collect();
        assert_eq!(
            nodes,
            vec![
                Action::Bind { node: "worker-0".into() },
                Action::Bind { node: "worker-1".into() },
                Action::Bind { node: "worker-0".into() },
            ]
        );
        assert_eq!(scheduler.placements["c"].ip, "10.128.0.2");
        assert_eq!(scheduler.placements["b"].ip, "10.129.0.1");
    }

    #[test]
    fn daemonset_pods_are_bound_to_their_node_and_unknown_nodes_leave_pods_pending() {
        let mut scheduler = Scheduler::new(3);
        assert_eq!(scheduler.decide(&pod("d", None, Some("worker-2"))), Some(Action::Bind { node: "worker-2".into() }));
        assert_eq!(scheduler.decide(&pod("e", None, Some("worker-9"))), None);
        assert_eq!(scheduler.decide(&pod("f", None, Some("master-0"))), None);
    }

    #[test]
    fn bound_pods_are_reported_running_with_every_container_and_only_once() {
        let mut scheduler = Scheduler::new(1);
        let mut bound = pod("g", Some("worker-0"), None);
        let Some(Action::Report { status }) = scheduler.decide(&bound) else { panic!("expected a status report") };
        let names: Vec<&str> =
            status["containerStatuses"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["app", "istio-proxy"]);
        assert_eq!(status["phase"], "Running");
        bound.status = Some(serde_json::from_value(status).unwrap());
        assert_eq!(scheduler.decide(&bound), None, "an up-to-date pod needs no write");
    }

    #[test]
    fn faulty_pods_run_but_are_not_ready_and_deleted_pods_are_removed() {
        let mut scheduler = Scheduler::new(1);
        let mut faulty = pod("h", Some("worker-0"), None);
        faulty.annotations_mut().insert(FAULT_ANNOTATION.into(), FAULT_NOT_READY.into());
        let Some(Action::Report { status }) = scheduler.decide(&faulty) else { panic!("expected a status report") };
        assert_eq!(
            status["conditions"][2],
            json!({"type": "Ready", "status": "False", "lastTransitionTime": status["conditions"][2]["lastTransitionTime"]})
        );
        let mut deleted = pod("i", Some("worker-0"), None);
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::chrono::Utc::now()));
        assert_eq!(scheduler.decide(&deleted), Some(Action::Remove { uid: "i".into() }));
    }
}
