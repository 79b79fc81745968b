//! Waypoints, gateways, and the decision whether a namespace needs a waypoint.
//!
//! A waypoint is a Gateway of class `istio-waypoint`; it runs as the service account the
//! `gateway.istio.io/service-account` annotation names, else one named after the Gateway, and that
//! account is the identity ztunnel sees behind it. Ingress gateways (other classes) run as
//! `<gateway>-<class>` unless the same annotation overrides it.
//!
//! A namespace needs a waypoint (the guide's decision framework, 2.1.2) when anything in it needs
//! L7 processing that only a waypoint provides once sidecars are gone, or when it already uses
//! one. The reasons are typed, so the check prints them and the translator decides on them: both
//! read [`super::MeshModel::waypoint_reasons`].

use std::fmt;

use kube_core::DynamicObject;
use serde_json::Value;

use crate::mesh::labels::{GATEWAY_NAME, WAYPOINT_CLASS, WAYPOINT_FOR};
use crate::mesh::{ObjectRef, annotations, labels};

/// The waypoint name when nothing says otherwise (the guide's).
pub const DEFAULT_WAYPOINT: &str = "waypoint";
/// Istio's annotation overriding a gateway's service account.
pub const GATEWAY_SERVICE_ACCOUNT: &str = "gateway.istio.io/service-account";
/// The label Istio's classic gateway deployments carry (`ingressgateway`, `egressgateway`, ...).
pub const ISTIO_GATEWAY_LABEL: &str = "istio";
/// The value of [`ISTIO_GATEWAY_LABEL`] on a classic ingress gateway's pods (Istio's gateway chart
/// and the `istio-ingressgateway` of older installs).
pub const CLASSIC_INGRESS_GATEWAY: &str = "ingressgateway";
/// Gateway class of Istio's Gateway API ingress gateways.
pub const INGRESS_CLASS: &str = "istio";

/// A Gateway API gateway: a waypoint or an ingress gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub namespace: String,
    pub name: String,
    pub class: String,
    /// The service account its pods run as.
    pub service_account: String,
    /// `istio.io/waypoint-for` (waypoints: `service` by default, `workload`, `all` or `none`).
    pub traffic: String,
    /// The Gateway reports `Programmed=True`.
    pub programmed: bool,
}

impl Gateway {
    /// None for an object without a class (not a Gateway the mesh runs).
    pub fn of(object: &DynamicObject) -> Option<Self> {
        let class = object.data.pointer("/spec/gatewayClassName").and_then(Value::as_str).filter(|c| !c.is_empty())?;
        let name = object.metadata.name.clone()?;
        let default_account = if class == WAYPOINT_CLASS { name.clone() } else { format!("{name}-{class}") };
        let programmed =
            object.data.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Programmed")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            });
        Some(Gateway {
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            service_account: annotations(object).get(GATEWAY_SERVICE_ACCOUNT).cloned().unwrap_or(default_account),
            traffic: labels(object).get(WAYPOINT_FOR).cloned().unwrap_or_else(|| "service".into()),
            class: class.to_string(),
            name,
            programmed,
        })
    }

    pub fn is_waypoint(&self) -> bool {
        self.class == WAYPOINT_CLASS
    }

    /// A waypoint that handles traffic addressed to Services.
    pub fn serves_services(&self) -> bool {
        self.is_waypoint() && matches!(self.traffic.as_str(), "service" | "all")
    }
}

/// True for labels of gateway pods (ingress, egress, east-west, waypoint): proxies that enforce
/// their own selector policies, in ambient as with sidecars.
pub fn is_gateway(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.contains_key(GATEWAY_NAME) || labels.get(ISTIO_GATEWAY_LABEL).is_some_and(|value| value.ends_with("gateway"))
}

/// Why a namespace needs a waypoint, one reason per object (or label).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaypointReason {
    /// A policy attached with `targetRefs`: only a waypoint enforces it.
    TargetRefsPolicy(ObjectRef),
    /// A selector policy with HTTP attributes, which ztunnel cannot evaluate.
    L7Policy { policy: ObjectRef, attributes: Vec<String> },
    /// A mesh VirtualService routing one of the namespace's Services.
    VirtualService(ObjectRef),
    /// An HTTPRoute whose parent is a Service (GAMMA).
    MeshRoute(ObjectRef),
    /// RequestAuthentication, Telemetry or WasmPlugin: L7 work.
    Extension(ObjectRef),
    /// The namespace already names a waypoint (`istio.io/use-waypoint`).
    Labelled(String),
    /// A waypoint Gateway is deployed in the namespace.
    Deployed(String),
}

impl fmt::Display for WaypointReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaypointReason::TargetRefsPolicy(policy) => write!(f, "{policy} is enforced by a waypoint (targetRefs)"),
            WaypointReason::L7Policy { policy, attributes } => {
                write!(f, "{policy} uses L7 attributes ({})", attributes.join(", "))
            }
            WaypointReason::VirtualService(route) => write!(f, "{route} routes HTTP traffic"),
            WaypointReason::MeshRoute(route) => write!(f, "{route} routes mesh traffic (Service parentRef)"),
            WaypointReason::Extension(object) => {
                let why = match object.kind.as_str() {
                    "RequestAuthentication" => "validates JWTs (L7)",
                    "Telemetry" => "configures L7 telemetry",
                    _ => "runs an L7 extension",
                };
                write!(f, "{object} {why}")
            }
            WaypointReason::Labelled(name) => write!(f, "the namespace is labelled istio.io/use-waypoint={name}"),
            WaypointReason::Deployed(name) => write!(f, "waypoint Gateway {name} is deployed"),
        }
    }
}
