//! Label and annotation names of sidecar and ambient mode (see AMBIENT-NOTES "Labels").

/// Namespace label enabling sidecar injection for the default revision.
pub const ISTIO_INJECTION: &str = "istio-injection";
/// Namespace label enabling sidecar injection for a named revision.
pub const ISTIO_REV: &str = "istio.io/rev";
/// Pod label or annotation opting a pod in or out of injection.
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";
/// Namespace or pod label enrolling workloads in ambient (`ambient`; `none` opts a pod out).
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
pub const DATAPLANE_AMBIENT: &str = "ambient";
pub const DATAPLANE_NONE: &str = "none";
/// Annotation the CNI sets on pods whose traffic it redirects to ztunnel.
pub const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";
/// Namespace, Service or pod label naming the waypoint to use (`none` opts out).
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
/// Gateway label: which traffic a waypoint handles (`service`, `workload`, `all`, `none`).
pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Service label sending ingress-gateway traffic through the Service's waypoint.
pub const INGRESS_USE_WAYPOINT: &str = "istio.io/ingress-use-waypoint";
/// Label on the pods of a Gateway API gateway (waypoints and ingress gateways).
pub const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
/// Gateway class of waypoints.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// Port and protocol of a waypoint's `mesh` listener.
pub const WAYPOINT_PORT: i64 = 15008;
/// Env var of the injected proxy carrying its proxy config, and the HBONE flag inside it.
pub const PROXY_CONFIG_ENV: &str = "PROXY_CONFIG";
pub const ENABLE_HBONE: &str = "ISTIO_META_ENABLE_HBONE";
/// Name of the injected proxy container.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The label the sidecar injector puts on the pods it injects (ambient pods do not carry it).
pub const TLS_MODE: &str = "security.istio.io/tlsMode";
pub const TLS_MODE_ISTIO: &str = "istio";
/// Pod annotation prefix for sidecar traffic settings not honoured in ambient.
pub const TRAFFIC_ANNOTATION_PREFIX: &str = "traffic.sidecar.istio.io/";
/// Label and annotation the suite puts on what it generates.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "oc-ambient";
pub const SOURCE_ANNOTATION: &str = "oc-ambient.io/source";
