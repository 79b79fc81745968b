//! Monitoring that keeps working (issue 15): the check's monitoring findings against the real
//! prometheus-operator CRDs, and `--monitoring` PodMonitors created, validated by the API server,
//! journalled and rolled back.

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use oc_ambient_common::check::ids;
use oc_ambient_simulator::SimulatedCluster;
use serde_json::Value;

use crate::check_live::run_check;
use crate::support::{enable, run_plugin, text, waypoint};

/// A PrometheusRule alerting on `reporter="destination"`, the OSSM sample's sidecar-scraping
/// PodMonitor, and a selector Telemetry, all in bookinfo.
const SIDECAR_ERA_MONITORING: &str = r#"apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: bookinfo-errors, namespace: bookinfo}
spec:
  groups:
  - name: bookinfo
    rules:
    - alert: ReviewsErrors
      expr: sum(rate(istio_requests_total{reporter="destination",destination_app="reviews",response_code=~"5.."}[5m])) > 0
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: istio-proxies-monitor, namespace: bookinfo}
spec:
  selector:
    matchExpressions: [{key: istio-prometheus-ignore, operator: DoesNotExist}]
  podMetricsEndpoints:
  - path: /stats/prometheus
    interval: 30s
    relabelings:
    - {action: keep, sourceLabels: [__meta_kubernetes_pod_container_name], regex: istio-proxy}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-access-logs, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging: [{providers: [{name: envoy}]}]
"#;

fn pod_monitor_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor");
    ApiResource::from_gvk_with_plural(&gvk, "podmonitors")
}

fn pod_monitors(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &pod_monitor_resource())
}

fn pod_monitors_in(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &pod_monitor_resource())
}

/// `namespace/name` of the PodMonitors oc-ambient created.
async fn managed_monitors(client: &kube::Client) -> Vec<String> {
    let listed = pod_monitors(client)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=oc-ambient"))
        .await
        .unwrap();
    let mut names: Vec<String> = listed
        .into_iter()
        .map(|m| format!("{}/{}", m.metadata.namespace.unwrap_or_default(), m.metadata.name.unwrap_or_default()))
        .collect();
    names.sort();
    names
}

/// `Kind/name` of the objects of findings with `id`.
fn objects_of(report: &Value, id: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["id"] == id)
        .map(|finding| format!("{}/{}", finding["object"]["kind"].as_str().unwrap_or("-"), finding["object"]["name"]))
        .map(|text| text.replace('"', ""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_era_monitoring_is_reported_once_per_object_and_monitor_flags_create_what_ambient_needs() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let objects =
        oc_ambient_common::snapshot::parse_documents(std::path::Path::new("monitoring.yaml"), SIDECAR_ERA_MONITORING)
            .unwrap();
    oc_ambient_testenv::objects::apply_all(&client, &objects).await.unwrap();

    let (report, _) = run_check(&["-n", "bookinfo"], Some(&kubeconfig));
    assert_eq!(objects_of(&report, ids::MONITORING_SIDECAR_REPORTER), ["PrometheusRule/bookinfo-errors"], "{report:#}");
    assert_eq!(objects_of(&report, ids::MONITORING_SIDECAR_SCRAPE), ["PodMonitor/istio-proxies-monitor"]);
    assert_eq!(objects_of(&report, ids::TELEMETRY_NOT_CONVERTED), ["Telemetry/reviews-access-logs"]);
    assert!(objects_of(&report, ids::MONITORING_ENVOY_STATS).is_empty());
    assert!(
        !report["findings"].as_array().unwrap().iter().any(|f| f["id"] == "input-coverage"),
        "the real CRDs are served: nothing skipped\n{report:#}"
    );

    // Step 2 with --monitoring: ztunnel's PodMonitor, validated by the API server against the
    // real CRD when written, stored as generated (nothing pruned). A server-side dry run cannot
    // validate it: its namespace is created by the same plan, and the engine says so.
    let state = tempfile::tempdir().unwrap();
    let dry = enable(&kubeconfig, state.path(), &["--monitoring", "--dry-run=server", "--yes"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(String::from_utf8_lossy(&dry.stderr).contains("not validated: scrape ztunnel's metrics"), "{}", text(&dry));
    assert!(managed_monitors(&client).await.is_empty(), "a dry run stores nothing");
    let step2 = enable(&kubeconfig, state.path(), &["--monitoring", "--yes"]);
    assert_eq!(step2.status.code(), Some(0), "{}", text(&step2));
    let stored = pod_monitors_in(&client, "ztunnel").get("ztunnel").await;
    let stored = match stored {
        Ok(stored) => stored,
        Err(err) => panic!("{err}: {}", text(&step2)),
    };
    let generated = oc_ambient_common::mesh::monitoring::ztunnel_pod_monitor("ztunnel");
    assert_eq!(stored.data["spec"], generated.data["spec"], "the API server kept every field");

    // Step 4 with --monitoring: one PodMonitor per waypoint, in the waypoint's namespace,
    // validated by a server-side dry run first.
    let dry = waypoint(
        &kubeconfig,
        state.path(),
        &["bookinfo", "--until", "deployed", "--monitoring", "--dry-run=server", "--yes"],
    );
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains("validated: scrape the waypoint's metrics"),
        "{}",
        text(&dry)
    );
    let step4 = waypoint(&kubeconfig, state.path(), &["bookinfo", "--until", "deployed", "--monitoring", "--yes"]);
    assert_eq!(step4.status.code(), Some(0), "{}", text(&step4));
    let monitors = managed_monitors(&client).await;
    assert_eq!(monitors.len(), 2, "{monitors:?}");
    assert!(monitors.iter().any(|name| name.starts_with("bookinfo/")), "{monitors:?}");
    let (report, _) = run_check(&["-n", "bookinfo"], Some(&kubeconfig));
    assert!(
        objects_of(&report, ids::MONITORING_PODMONITOR_MISSING).is_empty(),
        "ztunnel and the waypoint are scraped\n{report:#}"
    );

    // Rollback removes what --monitoring created, with the rest of the steps.
    let back = run_plugin("oc-ambient-rollback", &kubeconfig, state.path(), &["--all", "--yes"]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    assert_eq!(managed_monitors(&client).await, Vec::<String>::new(), "{}", text(&back));
    assert!(pod_monitors_in(&client, "bookinfo").get("istio-proxies-monitor").await.is_ok(), "the user's stays");
}
