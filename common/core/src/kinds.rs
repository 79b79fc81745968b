//! The resource kinds the suite reads, in one table.
//!
//! The live loader lists exactly these (one paginated list call per kind), the offline loader
//! classifies documents against them, and the checks ask the snapshot by [`Kind`]. A kind missing
//! here is invisible to every plugin, which is why there is one table and not one per module.

use serde::{Deserialize, Serialize};

/// A resource kind the suite understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    ServiceAccount,
    Secret,
    Deployment,
    DaemonSet,
    StatefulSet,
    Job,
    CronJob,
    CustomResourceDefinition,
    ClusterVersion,
    OperatorNetwork,
    ClusterServiceVersion,
    Istio,
    IstioCni,
    ZTunnel,
    IstioRevision,
    VirtualService,
    DestinationRule,
    IstioGateway,
    ServiceEntry,
    EnvoyFilter,
    Sidecar,
    WorkloadEntry,
    WorkloadGroup,
    AuthorizationPolicy,
    PeerAuthentication,
    RequestAuthentication,
    Telemetry,
    WasmPlugin,
    GatewayClass,
    Gateway,
    HttpRoute,
    GrpcRoute,
    ReferenceGrant,
    PodMonitor,
    ServiceMonitor,
    PrometheusRule,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    ConfigMap,
}

/// Where a kind lives in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: Kind,
    /// The API group ("" for core).
    pub group: &'static str,
    /// The kind name as it appears in `kind:`.
    pub name: &'static str,
    /// The plural resource name used in URLs and RBAC rules.
    pub plural: &'static str,
    /// Versions the suite can read, preferred first.
    pub versions: &'static [&'static str],
    pub namespaced: bool,
    /// A label selector applied when listing, to avoid reading objects the suite never needs
    /// (all Secrets of a cluster, say).
    pub list_selector: Option<&'static str>,
}

impl KindInfo {
    /// `plural.group`, the resource name RBAC rules and CRDs use.
    pub fn resource(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// True for kinds served by CustomResourceDefinitions (absent on a cluster without them).
    pub fn is_custom(&self) -> bool {
        !matches!(self.group, "" | "apps" | "batch" | "policy" | "autoscaling" | "apiextensions.k8s.io")
    }

    /// `apiVersion` for the preferred version.
    pub fn api_version(&self) -> String {
        let version = self.versions[0];
        if self.group.is_empty() { version.to_string() } else { format!("{}/{}", self.group, version) }
    }
}

const fn info(
    kind: Kind,
    group: &'static str,
    name: &'static str,
    plural: &'static str,
    versions: &'static [&'static str],
    namespaced: bool,
) -> KindInfo {
    KindInfo { kind, group, name, plural, versions, namespaced, list_selector: None }
}

const ISTIO_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// Every kind the suite reads.
pub const ALL: &[KindInfo] = &[
    info(Kind::Namespace, "", "Namespace", "namespaces", &["v1"], false),
    info(Kind::Node, "", "Node", "nodes", &["v1"], false),
    info(Kind::Pod, "", "Pod", "pods", &["v1"], true),
    info(Kind::Service, "", "Service", "services", &["v1"], true),
    info(Kind::ServiceAccount, "", "ServiceAccount", "serviceaccounts", &["v1"], true),
    KindInfo {
        list_selector: Some("istio/multiCluster=true"),
        ..info(Kind::Secret, "", "Secret", "secrets", &["v1"], true)
    },
    info(Kind::Deployment, "apps", "Deployment", "deployments", &["v1"], true),
    info(Kind::DaemonSet, "apps", "DaemonSet", "daemonsets", &["v1"], true),
    info(Kind::StatefulSet, "apps", "StatefulSet", "statefulsets", &["v1"], true),
    // Read for their pod templates: a Job's pods call Services like any workload's, and an offline
    // input holds the Job, not its pods.
    info(Kind::Job, "batch", "Job", "jobs", &["v1"], true),
    info(Kind::CronJob, "batch", "CronJob", "cronjobs", &["v1"], true),
    info(
        Kind::CustomResourceDefinition,
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["v1"],
        false,
    ),
    info(Kind::ClusterVersion, "config.openshift.io", "ClusterVersion", "clusterversions", &["v1"], false),
    info(Kind::OperatorNetwork, "operator.openshift.io", "Network", "networks", &["v1"], false),
    info(
        Kind::ClusterServiceVersion,
        "operators.coreos.com",
        "ClusterServiceVersion",
        "clusterserviceversions",
        &["v1alpha1"],
        true,
    ),
    info(Kind::Istio, "sailoperator.io", "Istio", "istios", &["v1", "v1alpha1"], false),
    info(Kind::IstioCni, "sailoperator.io", "IstioCNI", "istiocnis", &["v1", "v1alpha1"], false),
    info(Kind::ZTunnel, "sailoperator.io", "ZTunnel", "ztunnels", &["v1", "v1alpha1"], false),
    info(Kind::IstioRevision, "sailoperator.io", "IstioRevision", "istiorevisions", &["v1", "v1alpha1"], false),
    info(Kind::VirtualService, "networking.istio.io", "VirtualService", "virtualservices", ISTIO_VERSIONS, true),
    info(Kind::DestinationRule, "networking.istio.io", "DestinationRule", "destinationrules", ISTIO_VERSIONS, true),
    info(Kind::IstioGateway, "networking.istio.io", "Gateway", "gateways", ISTIO_VERSIONS, true),
    info(Kind::ServiceEntry, "networking.istio.io", "ServiceEntry", "serviceentries", ISTIO_VERSIONS, true),
    info(Kind::EnvoyFilter, "networking.istio.io", "EnvoyFilter", "envoyfilters", &["v1alpha3"], true),
    info(Kind::Sidecar, "networking.istio.io", "Sidecar", "sidecars", ISTIO_VERSIONS, true),
    info(Kind::WorkloadEntry, "networking.istio.io", "WorkloadEntry", "workloadentries", ISTIO_VERSIONS, true),
    info(Kind::WorkloadGroup, "networking.istio.io", "WorkloadGroup", "workloadgroups", ISTIO_VERSIONS, true),
    info(
        Kind::AuthorizationPolicy,
        "security.istio.io",
        "AuthorizationPolicy",
        "authorizationpolicies",
        &["v1", "v1beta1"],
        true,
    ),
    info(
        Kind::PeerAuthentication,
        "security.istio.io",
        "PeerAuthentication",
        "peerauthentications",
        &["v1", "v1beta1"],
        true,
    ),
    info(
        Kind::RequestAuthentication,
        "security.istio.io",
        "RequestAuthentication",
        "requestauthentications",
        &["v1", "v1beta1"],
        true,
    ),
    info(Kind::Telemetry, "telemetry.istio.io", "Telemetry", "telemetries", &["v1", "v1alpha1"], true),
    info(Kind::WasmPlugin, "extensions.istio.io", "WasmPlugin", "wasmplugins", &["v1alpha1"], true),
    info(Kind::GatewayClass, "gateway.networking.k8s.io", "GatewayClass", "gatewayclasses", &["v1", "v1beta1"], false),
    info(Kind::Gateway, "gateway.networking.k8s.io", "Gateway", "gateways", &["v1", "v1beta1"], true),
    info(Kind::HttpRoute, "gateway.networking.k8s.io", "HTTPRoute", "httproutes", &["v1", "v1beta1"], true),
    info(Kind::GrpcRoute, "gateway.networking.k8s.io", "GRPCRoute", "grpcroutes", &["v1"], true),
    info(Kind::ReferenceGrant, "gateway.networking.k8s.io", "ReferenceGrant", "referencegrants", &["v1beta1"], true),
    // prometheus-operator's kinds (OpenShift monitoring): what ambient changes for metrics.
    info(Kind::PodMonitor, "monitoring.coreos.com", "PodMonitor", "podmonitors", &["v1"], true),
    info(Kind::ServiceMonitor, "monitoring.coreos.com", "ServiceMonitor", "servicemonitors", &["v1"], true),
    info(Kind::PrometheusRule, "monitoring.coreos.com", "PrometheusRule", "prometheusrules", &["v1"], true),
    // Waypoint sizing: disruption budgets and autoscalers of the waypoints' pods.
    info(Kind::PodDisruptionBudget, "policy", "PodDisruptionBudget", "poddisruptionbudgets", &["v1"], true),
    info(
        Kind::HorizontalPodAutoscaler,
        "autoscaling",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["v2"],
        true,
    ),
    // Only the waypoint parameters the suite writes (`spec.infrastructure.parametersRef`), not
    // every ConfigMap of the cluster.
    KindInfo {
        list_selector: Some("oc-ambient.io/gateway-parameters=true"),
        ..info(Kind::ConfigMap, "", "ConfigMap", "configmaps", &["v1"], true)
    },
];

impl Kind {
    pub fn info(self) -> &'static KindInfo {
        // ALL lists every variant once; the test below keeps it that way.
        ALL.iter().find(|info| info.kind == self).unwrap_or(&ALL[0])
    }

    /// The kind of a document by its `apiVersion` and `kind`; None for kinds the suite ignores.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("");
        Kind::from_group_kind(group, kind)
    }

    /// The kind of an API group ("" for core) and kind name; None for kinds the suite ignores.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Kind> {
        ALL.iter().find(|info| info.group == group && info.name == kind).map(|info| info.kind)
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row() {
        for (i, a) in ALL.iter().enumerate() {
            assert_eq!(a.kind.info(), a, "{:?} resolves to another row", a.kind);
            for b in &ALL[i + 1..] {
                assert!(a.kind != b.kind, "{:?} listed twice", a.kind);
                assert!((a.group, a.name) != (b.group, b.name), "{}/{} listed twice", a.group, a.name);
            }
        }
    }

    #[test]
    fn documents_are_classified_by_group_and_kind() {
        assert_eq!(Kind::from_type("networking.istio.io/v1beta1", "Gateway"), Some(Kind::IstioGateway));
        assert_eq!(Kind::from_type("gateway.networking.k8s.io/v1", "Gateway"), Some(Kind::Gateway));
        assert_eq!(Kind::from_type("v1", "Pod"), Some(Kind::Pod));
        assert_eq!(Kind::from_type("v1", "Event"), None);
        assert_eq!(Kind::AuthorizationPolicy.info().resource(), "authorizationpolicies.security.istio.io");
    }
}
