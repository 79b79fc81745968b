//! Waypoint sizing: what each waypoint runs with, what it serves, and what it should run with.
//!
//! Once a namespace's waypoint is active (Step 7), every L7 call to its Services goes through the
//! waypoint's pods: a single replica is a single point of failure for all of them (a node drain or
//! a rollout drops every call), so the recommendation is two replicas kept by a
//! PodDisruptionBudget (`minAvailable: 1`), unless an autoscaler already keeps at least two.
//! Resources follow Istio's defaults for a proxy (requests 100m CPU and 128Mi memory, limits 2
//! CPUs and 1Gi) with memory grown with the endpoints the waypoint serves, since Envoy holds
//! one cluster per Service port and one host per endpoint. Usage (metrics.k8s.io) is not read: the
//! recommendation says it is based on what the waypoint serves only.
//!
//! `oc ambient-waypoint --size` applies the recommendation through the Gateway's
//! `spec.infrastructure.parametersRef` (see [`crate::plan::waypoint`]): Istio's gateway
//! deployment controller merges that ConfigMap's `deployment` overlay into the Deployment it
//! generates and creates the PodDisruptionBudget of its `podDisruptionBudget` key, on every
//! reconcile, where a direct edit of the generated Deployment is overwritten by the next one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::phase::MeshContext;
use super::{Finding, Severity, ids};
use crate::kinds::Kind;
use crate::mesh::labels::{PROXY_CONTAINER, USE_WAYPOINT};
use crate::mesh::monitoring::{label_selector_matches, waypoint_pod_labels};
use crate::mesh::{ObjectRef, labels};
use crate::model::waypoint::is_gateway;
use crate::snapshot::Snapshot;

/// Endpoints served within the base memory request.
const ENDPOINTS_PER_STEP: usize = 100;
const BASE_MEMORY_MI: usize = 128;
const MEMORY_STEP_MI: usize = 64;

/// One waypoint's resources as they are and as recommended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointSizing {
    pub name: String,
    /// `spec.replicas` of the generated Deployment (None: not generated yet).
    pub replicas: Option<i64>,
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
    pub pod_disruption_budget: Option<String>,
    pub horizontal_pod_autoscaler: Option<String>,
    /// Services whose L7 traffic it handles (or will, once active), and their live endpoints.
    pub services: Vec<String>,
    pub endpoints: usize,
    /// Kinds the sizing needs that the input does not cover (no permission, absent offline): what
    /// it says of them is unknown, not absent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
    pub recommendation: Recommendation,
}

/// What the waypoint should run with, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub replicas: i64,
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
    /// `minAvailable` of the PodDisruptionBudget to create (None: one exists already).
    pub pod_disruption_budget_min_available: Option<i64>,
    pub reasons: Vec<String>,
    /// True when the waypoint already runs with it.
    pub met: bool,
}

/// The sizing of every waypoint of `namespace`.
pub fn waypoints(snapshot: &Snapshot, context: &MeshContext, namespace: &str) -> Vec<WaypointSizing> {
    context
        .model
        .waypoints_in(namespace)
        .filter(|gateway| gateway.is_waypoint())
        .map(|gateway| sizing(snapshot, context, namespace, &gateway.name))
        .collect()
}

/// The sizing of the waypoint `name` in `namespace`.
pub fn sizing(snapshot: &Snapshot, context: &MeshContext, namespace: &str, name: &str) -> WaypointSizing {
    let pod_labels = waypoint_pod_labels(name);
    let deployment = snapshot.get(Kind::Deployment, Some(namespace), name);
    let replicas = deployment.map(|d| d.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1));
    let proxy =
        deployment.and_then(|d| d.data.pointer("/spec/template/spec/containers").and_then(Value::as_array)).and_then(
            |containers| containers.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER)),
        );
    let quantities = |which: &str| -> BTreeMap<String, String> {
        proxy
            .and_then(|c| c.pointer(&format!("/resources/{which}")).and_then(Value::as_object))
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())))
            .collect()
    };
    let pod_disruption_budget = snapshot
        .in_namespace(Kind::PodDisruptionBudget, namespace)
        .find(|pdb| pdb.data.pointer("/spec/selector").is_some_and(|s| label_selector_matches(s, &pod_labels)))
        .and_then(|pdb| pdb.metadata.name.clone());
    let autoscaler = snapshot.in_namespace(Kind::HorizontalPodAutoscaler, namespace).find(|hpa| {
        hpa.data.pointer("/spec/scaleTargetRef/kind").and_then(Value::as_str) == Some("Deployment")
            && hpa.data.pointer("/spec/scaleTargetRef/name").and_then(Value::as_str) == Some(name)
    });
    let autoscaled_min =
        autoscaler.map(|hpa| hpa.data.pointer("/spec/minReplicas").and_then(Value::as_i64).unwrap_or(1));
    let (services, endpoints) = served(snapshot, context, namespace, name);
    let unread = [Kind::Deployment, Kind::PodDisruptionBudget, Kind::HorizontalPodAutoscaler]
        .into_iter()
        .filter(|kind| !snapshot.knows(*kind))
        .map(|kind| kind.info().plural.to_string())
        .collect();
    let mut sizing = WaypointSizing {
        name: name.to_string(),
        replicas,
        requests: quantities("requests"),
        limits: quantities("limits"),
        pod_disruption_budget,
        horizontal_pod_autoscaler: autoscaler.and_then(|hpa| hpa.metadata.name.clone()),
        services,
        endpoints,
        unread,
        recommendation: Recommendation {
            replicas: 2,
            requests: BTreeMap::new(),
            limits: BTreeMap::new(),
            pod_disruption_budget_min_available: None,
            reasons: Vec::new(),
            met: false,
        },
    };
    sizing.recommendation = recommend(&sizing, autoscaled_min);
    sizing
}

fn recommend(current: &WaypointSizing, autoscaled_min: Option<i64>) -> Recommendation {
    let mut reasons = Vec::new();
    let effective = autoscaled_min.or(current.replicas).unwrap_or(1);
    let replicas = if effective < 2 {
        reasons.push(format!(
            "a single replica is a single point of failure for every L7 call to its {} Services: run 2",
            current.services.len()
        ));
        2
    } else {
        current.replicas.unwrap_or(effective)
    };
    let pdb = if current.pod_disruption_budget.is_none() {
        reasons.push("no PodDisruptionBudget: a node drain may evict every replica at once".to_string());
        Some(1)
    } else {
        None
    };
    let steps = current.endpoints.saturating_sub(1) / ENDPOINTS_PER_STEP;
    let memory = format!("{}Mi", BASE_MEMORY_MI + steps * MEMORY_STEP_MI);
    let requests = BTreeMap::from([("cpu".to_string(), "100m".to_string()), ("memory".to_string(), memory)]);
    let limits = BTreeMap::from([("cpu".to_string(), "2".to_string()), ("memory".to_string(), "1Gi".to_string())]);
    let resources_set = current.requests.contains_key("memory") && current.limits.contains_key("memory");
    if !resources_set {
        reasons.push(format!(
            "no memory request and limit: requests sized for {} endpoints (memory grows with endpoints; usage from metrics.k8s.io not read)",
            current.endpoints
        ));
    }
    let met = reasons.is_empty();
    Recommendation {
        replicas,
        requests: if resources_set { current.requests.clone() } else { requests },
        limits: if resources_set { current.limits.clone() } else { limits },
        pod_disruption_budget_min_available: pdb,
        reasons,
        met,
    }
}

/// Services of `namespace` that use (or, once the namespace is labelled, will use) the waypoint,
/// and how many live pods they select.
fn served(snapshot: &Snapshot, context: &MeshContext, namespace: &str, name: &str) -> (Vec<String>, usize) {
    let namespace_waypoint = context.model.namespace(namespace).use_waypoint;
    let mut services = Vec::new();
    let mut endpoints: BTreeSet<&str> = BTreeSet::new();
    for service in snapshot.in_namespace(Kind::Service, namespace) {
        let service_labels = labels(service);
        let wanted = service_labels.get(USE_WAYPOINT).or(namespace_waypoint.as_ref());
        if wanted.is_some_and(|wanted| wanted != name) || is_gateway(service_labels) {
            continue;
        }
        let Some(selector) = service.data.pointer("/spec/selector").and_then(Value::as_object) else { continue };
        if selector.is_empty() {
            continue;
        }
        let selector = serde_json::json!({"matchLabels": selector});
        services.push(service.metadata.name.clone().unwrap_or_default());
        endpoints.extend(
            context
                .pods_in(namespace)
                .iter()
                .filter(|pod| label_selector_matches(&selector, pod.labels))
                .map(|pod| pod.name),
        );
    }
    (services, endpoints.len())
}

/// One finding per waypoint in scope: `warn` with the recommendation when it is not met.
pub fn findings(snapshot: &Snapshot, context: &MeshContext, namespaces: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for namespace in namespaces {
        for sizing in waypoints(snapshot, context, namespace) {
            let object = Some(ObjectRef::new("Gateway", Some(namespace), &sizing.name));
            let current = format!(
                "{} replicas, requests {:?}, limits {:?}, PodDisruptionBudget {}, HorizontalPodAutoscaler {}, serves {} Services with {} endpoints",
                sizing.replicas.map_or("no Deployment yet, no".to_string(), |r| r.to_string()),
                sizing.requests,
                sizing.limits,
                sizing.pod_disruption_budget.as_deref().unwrap_or("none"),
                sizing.horizontal_pod_autoscaler.as_deref().unwrap_or("none"),
                sizing.services.len(),
                sizing.endpoints,
            );
            let current = if sizing.unread.is_empty() {
                current
            } else {
                format!("{current} ({} not read: what they would say is unknown)", sizing.unread.join(", "))
            };
            let recommendation = &sizing.recommendation;
            // Before its Deployment exists the recommendation is advice for Step 4, not a problem.
            let severity = if sizing.replicas.is_some() { Severity::Warn } else { Severity::Info };
            findings.push(if recommendation.met {
                Finding::new(ids::WAYPOINT_SIZING, Severity::Pass, object, current)
            } else {
                Finding::new(
                    ids::WAYPOINT_SIZING,
                    severity,
                    object,
                    format!("{current}: {}", recommendation.reasons.join("; ")),
                )
                .fix(format!(
                    "`oc ambient-waypoint {namespace} --size` sets {} replicas, requests {:?}, limits {:?}{} through the Gateway's parametersRef",
                    recommendation.replicas,
                    recommendation.requests,
                    recommendation.limits,
                    if recommendation.pod_disruption_budget_min_available.is_some() {
                        " and a PodDisruptionBudget (minAvailable 1)"
                    } else {
                        ""
                    }
                ))
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAYPOINT: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: waypoint, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
    spec: {containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {selector: {gateway.networking.k8s.io/gateway-name: waypoint}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}}
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: shop, labels: {istio.io/use-waypoint: other}}
spec: {selector: {app: other}}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews}}
spec: {containers: [{name: reviews}]}
status: {phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-2, namespace: shop, labels: {app: reviews}}
spec: {containers: [{name: reviews}]}
status: {phase: Running}
";

    fn sized(extra: Option<&str>) -> WaypointSizing {
        let text = match extra {
            Some(extra) => format!("{WAYPOINT}\n---\n{extra}"),
            None => WAYPOINT.to_string(),
        };
        let objects = crate::snapshot::parse_documents(std::path::Path::new("t.yaml"), &text).unwrap();
        let snapshot = Snapshot::from_objects(objects);
        let context = MeshContext::new(&snapshot);
        waypoints(&snapshot, &context, "shop").remove(0)
    }

    #[test]
    fn a_single_replica_without_budget_is_reported_with_two_replicas_and_a_budget() {
        let sizing = sized(None);
        assert_eq!(sizing.replicas, Some(1));
        assert_eq!(sizing.services, ["reviews"], "its own Service and another waypoint's are not served");
        assert_eq!(sizing.endpoints, 2);
        assert_eq!(sizing.pod_disruption_budget, None);
        assert!(sizing.unread.is_empty(), "every kind was listed: {:?}", sizing.unread);
        let recommendation = &sizing.recommendation;
        assert!(!recommendation.met);
        assert_eq!(recommendation.replicas, 2);
        assert_eq!(recommendation.pod_disruption_budget_min_available, Some(1));
        assert_eq!(recommendation.requests["memory"], "128Mi");
        assert!(recommendation.reasons[0].contains("single point of failure"), "{:?}", recommendation.reasons);
    }

    #[test]
    fn a_sized_waypoint_meets_the_recommendation() {
        let sizing = sized(Some(
            "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: waypoint, namespace: shop}
spec: {minAvailable: 1, selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: waypoint}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: waypoint, namespace: shop}
spec: {minReplicas: 2, maxReplicas: 4, scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: waypoint}}",
        ));
        assert_eq!(sizing.pod_disruption_budget.as_deref(), Some("waypoint"));
        assert_eq!(sizing.horizontal_pod_autoscaler.as_deref(), Some("waypoint"));
        let reasons = &sizing.recommendation.reasons;
        assert_eq!(reasons.len(), 1, "only the resources are missing: {reasons:?}");
        assert!(reasons[0].contains("memory"), "{reasons:?}");
    }

    #[test]
    fn a_budget_that_could_not_be_read_is_unknown_not_absent() {
        let objects = crate::snapshot::parse_documents(std::path::Path::new("t.yaml"), WAYPOINT).unwrap();
        let mut snapshot = Snapshot::from_objects(objects);
        snapshot.set_coverage(Kind::PodDisruptionBudget, crate::snapshot::Coverage::Forbidden("forbidden".into()));
        let context = MeshContext::new(&snapshot);
        let found = findings(&snapshot, &context, &["shop".to_string()]);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("poddisruptionbudgets not read"), "{}", found[0].message);
    }

    #[test]
    fn memory_grows_with_endpoints() {
        let mut current = sized(None);
        current.endpoints = 250;
        assert_eq!(recommend(&current, None).requests["memory"], "256Mi");
    }
}
