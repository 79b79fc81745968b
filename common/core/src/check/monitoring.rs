//! What ambient changes for monitoring, reported before Step 7 (waypoint activation) and Step 9
//! (sidecar removal) silently break it: alerts on sidecar-only series, monitors scraping sidecars,
//! selector Telemetry not yet moved to the waypoint, and no PodMonitor for ztunnel or a waypoint
//! where metrics are collected (user-workload monitoring, Kiali, or any monitor at all). The facts
//! themselves are [`crate::mesh::monitoring`]'s, shared with the planners that create the monitors.

use std::collections::BTreeMap;

use kube_core::DynamicObject;
use serde_json::Value;

use super::phase::MeshContext;
use super::{Finding, Severity, ids};
use crate::kinds::Kind;
use crate::mesh::labels::SOURCE_ANNOTATION;
use crate::mesh::monitoring::{
    SidecarFact, endpoints, label_selector_matches, scrapes_sidecars, selects, sidecar_facts, waypoint_pod_labels,
    ztunnel_pod_labels,
};
use crate::mesh::{ObjectRef, labels};
use crate::snapshot::{Coverage, Snapshot};

/// The monitoring kinds, in the order the coverage note names them.
const MONITORING_KINDS: [Kind; 3] = [Kind::PrometheusRule, Kind::ServiceMonitor, Kind::PodMonitor];

/// The namespace whose pods run when OpenShift's user-workload monitoring is enabled.
const USER_WORKLOAD_MONITORING: &str = "openshift-user-workload-monitoring";

pub fn monitoring(snapshot: &Snapshot, context: &MeshContext, namespaces: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(unconverted_telemetry(snapshot, context, namespaces));
    let uncovered: Vec<(Kind, &Coverage)> = MONITORING_KINDS
        .iter()
        .map(|kind| (*kind, snapshot.coverage(*kind)))
        .filter(|(_, coverage)| !matches!(coverage, Coverage::Listed))
        .collect();
    if let Some(finding) = coverage_note(&uncovered) {
        findings.push(finding);
    }
    let covered = |kind: Kind| uncovered.iter().all(|(other, _)| *other != kind);
    if covered(Kind::PrometheusRule) {
        findings.extend(sidecar_rules(snapshot));
    }
    for kind in [Kind::PodMonitor, Kind::ServiceMonitor].into_iter().filter(|kind| covered(*kind)) {
        findings.extend(sidecar_scrapes(snapshot, context, kind, namespaces));
    }
    if covered(Kind::PodMonitor) && metrics_collected(snapshot) {
        findings.extend(missing_pod_monitors(snapshot, context, namespaces));
    }
    findings
}

/// True when a monitoring kind could not be read for lack of permission: the report is partial.
pub fn unreadable(snapshot: &Snapshot) -> bool {
    MONITORING_KINDS.iter().any(|kind| matches!(snapshot.coverage(*kind), Coverage::Forbidden(_)))
}

/// One note for the monitoring kinds the input does not cover (not served: no prometheus-operator
/// CRDs; forbidden; absent from an offline dump), naming the checks skipped.
fn coverage_note(uncovered: &[(Kind, &Coverage)]) -> Option<Finding> {
    let (_, first) = uncovered.first()?;
    let plurals: Vec<&str> = uncovered.iter().map(|(kind, _)| kind.info().plural).collect();
    let message = match first {
        Coverage::NotServed => format!(
            "monitoring.coreos.com is not served (no prometheus-operator CRDs): the monitoring checks of {} were skipped",
            plurals.join(", ")
        ),
        Coverage::NotInInput => {
            format!("the input holds no {}: the monitoring checks were skipped", plurals.join(", "))
        }
        Coverage::Forbidden(detail) => {
            format!("{detail}: the monitoring checks of {} were skipped", plurals.join(", "))
        }
        Coverage::Listed => return None,
    };
    Some(Finding::new(ids::INPUT_COVERAGE, Severity::Info, None, message))
}

/// PrometheusRules whose expressions use sidecar reporters or per-pod Envoy statistics.
fn sidecar_rules(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for rule in snapshot.all(Kind::PrometheusRule) {
        let mut reporters = Vec::new();
        let mut envoy = Vec::new();
        for (name, expression) in rule_expressions(rule) {
            for fact in sidecar_facts(expression) {
                match fact {
                    SidecarFact::Reporter { metric, reporter } => {
                        reporters.push(format!("{name} ({metric} reporter=\"{reporter}\")"))
                    }
                    SidecarFact::EnvoyStats { metric } => envoy.push(format!("{name} ({metric})")),
                }
            }
        }
        if !reporters.is_empty() {
            findings.push(
                Finding::new(
                    ids::MONITORING_SIDECAR_REPORTER,
                    Severity::Warn,
                    Some(ObjectRef::of(rule)),
                    format!(
                        "{}: only sidecars report L7 metrics as source or destination; in ambient the waypoint reports them as reporter=\"waypoint\" and these go silent after Step 7",
                        reporters.join(", ")
                    ),
                )
                .fix("match reporter=~\"destination|waypoint\" (or \"source|waypoint\") before activating waypoints"),
            );
        }
        if !envoy.is_empty() {
            findings.push(
                Finding::new(
                    ids::MONITORING_ENVOY_STATS,
                    Severity::Warn,
                    Some(ObjectRef::of(rule)),
                    format!(
                        "{}: per-pod Envoy statistics end with the sidecars (Step 9); ambient pods have none, only waypoints do",
                        envoy.join(", ")
                    ),
                )
                .fix("use the Istio standard metrics of ztunnel (istio_tcp_*) and the waypoint (reporter=\"waypoint\")"),
            );
        }
    }
    findings
}

/// `(group/rule name, expression)` of every rule of a PrometheusRule.
fn rule_expressions(rule: &DynamicObject) -> Vec<(String, &str)> {
    let groups = rule.data.pointer("/spec/groups").and_then(Value::as_array).into_iter().flatten();
    groups
        .flat_map(|group| {
            let group_name = group.get("name").and_then(Value::as_str).unwrap_or("?");
            group.get("rules").and_then(Value::as_array).into_iter().flatten().filter_map(move |rule| {
                let expression = rule.get("expr").and_then(Value::as_str)?;
                let name = rule.get("alert").or_else(|| rule.get("record")).and_then(Value::as_str).unwrap_or("?");
                Some((format!("{group_name}/{name}"), expression))
            })
        })
        .collect()
}

/// PodMonitors and ServiceMonitors that scrape the sidecars of pods in the namespaces in scope.
fn sidecar_scrapes(snapshot: &Snapshot, context: &MeshContext, kind: Kind, namespaces: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for namespace in namespaces {
        for monitor in snapshot.in_namespace(kind, namespace) {
            if !endpoints(monitor).any(scrapes_sidecars) {
                continue;
            }
            let selector = monitor.data.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
            let sidecars = context
                .app_pods(namespace)
                .filter(|pod| pod.sidecar)
                .filter(|pod| match kind {
                    Kind::PodMonitor => label_selector_matches(&selector, pod.labels),
                    _ => service_selected(snapshot, namespace, &selector, pod.labels),
                })
                .count();
            if sidecars == 0 {
                continue;
            }
            findings.push(
                Finding::new(
                    ids::MONITORING_SIDECAR_SCRAPE,
                    Severity::Warn,
                    Some(ObjectRef::of(monitor)),
                    format!(
                        "scrapes the istio-proxy sidecars of {sidecars} pods: they stop being scraped when the sidecars go (Step 9); their L4 metrics come from ztunnel and their L7 metrics from the waypoint"
                    ),
                )
                .fix(format!("scrape ztunnel and the waypoint of {namespace} instead (`--monitoring` creates their PodMonitors)")),
            );
        }
    }
    findings
}

/// True when a Service of `namespace` that the ServiceMonitor `selector` selects routes to a pod
/// with `pod_labels`.
fn service_selected(
    snapshot: &Snapshot,
    namespace: &str,
    selector: &Value,
    pod_labels: &BTreeMap<String, String>,
) -> bool {
    snapshot.in_namespace(Kind::Service, namespace).any(|service| {
        let service_selector = service.data.pointer("/spec/selector").and_then(Value::as_object);
        label_selector_matches(selector, labels(service))
            && service_selector.is_some_and(|wanted| {
                !wanted.is_empty()
                    && wanted.iter().all(|(key, value)| pod_labels.get(key).map(String::as_str) == value.as_str())
            })
    })
}

/// Selector Telemetry whose pods become ambient, with no waypoint copy (`targetRefs`) yet.
fn unconverted_telemetry(snapshot: &Snapshot, context: &MeshContext, namespaces: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for namespace in namespaces {
        let telemetries: Vec<&DynamicObject> = snapshot.in_namespace(Kind::Telemetry, namespace).collect();
        for telemetry in &telemetries {
            let Some(selector) = telemetry.data.pointer("/spec/selector") else { continue };
            let targeted = ["/spec/targetRefs", "/spec/targetRef"].iter().any(|p| telemetry.data.pointer(p).is_some());
            if targeted || crate::convert::objects::is_generated(telemetry) {
                continue;
            }
            let selected =
                context.app_pods(namespace).filter(|pod| label_selector_matches(selector, pod.labels)).count();
            if selected == 0 {
                continue;
            }
            let reference = ObjectRef::of(telemetry);
            let entry = crate::convert::objects::source_entry(&reference);
            let converted = telemetries.iter().any(|other| {
                other.data.pointer("/spec/targetRefs").is_some()
                    && crate::mesh::annotations(other)
                        .get(SOURCE_ANNOTATION)
                        .is_some_and(|sources| sources.split(',').any(|source| source.trim() == entry))
            });
            if converted {
                continue;
            }
            findings.push(
                Finding::new(
                    ids::TELEMETRY_NOT_CONVERTED,
                    Severity::Warn,
                    Some(reference),
                    format!(
                        "selects {selected} pods by label: once they are ambient no sidecar applies it, and the waypoint only applies Telemetry attached with targetRefs"
                    ),
                )
                .fix(format!("`oc ambient-waypoint {namespace} --step 5` applies the converted copy (targetRefs to the waypoint)")),
            );
        }
    }
    findings
}

/// True when something collects mesh metrics: any PodMonitor or ServiceMonitor, pods of OpenShift's
/// user-workload monitoring, or Kiali.
fn metrics_collected(snapshot: &Snapshot) -> bool {
    let is_kiali = |object: &DynamicObject| {
        let labels = labels(object);
        ["app", "app.kubernetes.io/name"].iter().any(|key| labels.get(*key).map(String::as_str) == Some("kiali"))
    };
    !snapshot.all(Kind::PodMonitor).is_empty()
        || !snapshot.all(Kind::ServiceMonitor).is_empty()
        || snapshot.in_namespace(Kind::Pod, USER_WORKLOAD_MONITORING).next().is_some()
        || snapshot.all(Kind::Deployment).iter().any(is_kiali)
        || snapshot.all(Kind::Pod).iter().any(is_kiali)
        || snapshot
            .all(Kind::ClusterServiceVersion)
            .iter()
            .any(|csv| csv.metadata.name.as_deref().is_some_and(|name| name.starts_with("kiali")))
}

/// ztunnel (once set up) and every waypoint in scope without a PodMonitor in its namespace.
fn missing_pod_monitors(snapshot: &Snapshot, context: &MeshContext, namespaces: &[String]) -> Vec<Finding> {
    let monitored = |namespace: &str, labels: &BTreeMap<String, String>| {
        snapshot.in_namespace(Kind::PodMonitor, namespace).any(|monitor| selects(monitor, namespace, labels))
    };
    let mut findings = Vec::new();
    for ztunnel in snapshot.all(Kind::ZTunnel) {
        let namespace = ztunnel.data.pointer("/spec/namespace").and_then(Value::as_str).unwrap_or("ztunnel");
        if !monitored(namespace, &ztunnel_pod_labels()) {
            findings.push(
                Finding::new(
                    ids::MONITORING_PODMONITOR_MISSING,
                    Severity::Warn,
                    Some(ObjectRef::of(ztunnel)),
                    format!(
                        "metrics are collected in this cluster but no PodMonitor in {namespace} scrapes ztunnel: the L4 metrics of every ambient pod are lost"
                    ),
                )
                .fix("`oc ambient-enable --step 2 --monitoring` creates it"),
            );
        }
    }
    for namespace in namespaces {
        for waypoint in context.model.waypoints_in(namespace).filter(|gateway| gateway.is_waypoint()) {
            if !monitored(namespace, &waypoint_pod_labels(&waypoint.name)) {
                findings.push(
                    Finding::new(
                        ids::MONITORING_PODMONITOR_MISSING,
                        Severity::Warn,
                        Some(ObjectRef::new("Gateway", Some(namespace), &waypoint.name)),
                        format!(
                            "metrics are collected in this cluster but no PodMonitor in {namespace} scrapes this waypoint: the L7 metrics of its Services are lost once it is active"
                        ),
                    )
                    .fix(format!("`oc ambient-waypoint {namespace} --step 4 --monitoring` creates it")),
                );
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Options, evaluate};

    const MESH: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews}}
spec: {containers: [{name: reviews}, {name: istio-proxy}]}
status: {phase: Running}
---
apiVersion: sailoperator.io/v1
kind: ZTunnel
metadata: {name: default}
spec: {namespace: ztunnel}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
";

    const MONITORING: &str = "apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: errors, namespace: shop}
spec:
  groups:
  - name: mesh
    rules:
    - alert: HighErrorRate
      expr: sum(rate(istio_requests_total{reporter=\"destination\",response_code=~\"5..\"}[5m])) > 1
    - record: retries
      expr: sum(envoy_cluster_upstream_rq_retry)
    - alert: Fine
      expr: sum(rate(istio_requests_total{reporter=\"waypoint\"}[5m])) > 1
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: proxies, namespace: shop}
spec:
  selector: {matchExpressions: [{key: istio-prometheus-ignore, operator: DoesNotExist}]}
  podMetricsEndpoints:
  - path: /stats/prometheus
    relabelings: [{action: keep, sourceLabels: [__meta_kubernetes_pod_container_name], regex: istio-proxy}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-logs, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging: [{providers: [{name: envoy}]}]
";

    fn report_of(documents: &[&str], monitoring_served: bool) -> crate::check::Report {
        let objects: Vec<DynamicObject> = documents
            .iter()
            .flat_map(|text| crate::snapshot::parse_documents(std::path::Path::new("test.yaml"), text).unwrap())
            .collect();
        let mut snapshot = Snapshot::from_objects(objects);
        for kind in MONITORING_KINDS.into_iter().filter(|_| !monitoring_served) {
            snapshot.set_coverage(kind, Coverage::NotServed);
        }
        evaluate(&snapshot, &Options::default())
    }

    fn ids_on(report: &crate::check::Report, id: &str) -> Vec<String> {
        report
            .findings
            .iter()
            .filter(|finding| finding.id == id)
            .map(|finding| finding.object.as_ref().map(|o| format!("{}/{}", o.kind, o.name)).unwrap_or_default())
            .collect()
    }

    #[test]
    fn each_sidecar_fact_is_one_finding_on_its_object() {
        let report = report_of(&[MESH, MONITORING], true);
        assert_eq!(ids_on(&report, ids::MONITORING_SIDECAR_REPORTER), ["PrometheusRule/errors"]);
        assert_eq!(ids_on(&report, ids::MONITORING_ENVOY_STATS), ["PrometheusRule/errors"]);
        assert_eq!(ids_on(&report, ids::MONITORING_SIDECAR_SCRAPE), ["PodMonitor/proxies"]);
        assert_eq!(ids_on(&report, ids::TELEMETRY_NOT_CONVERTED), ["Telemetry/reviews-logs"]);
        let reporter = report.findings.iter().find(|f| f.id == ids::MONITORING_SIDECAR_REPORTER).unwrap();
        assert!(reporter.message.contains("mesh/HighErrorRate"), "{}", reporter.message);
        assert!(!reporter.message.contains("Fine"), "{}", reporter.message);
        assert_eq!(
            ids_on(&report, ids::MONITORING_PODMONITOR_MISSING),
            ["ZTunnel/default"],
            "a PodMonitor exists, so metrics are collected; the sidecar monitor selects every pod of shop, \
             the waypoint's too, but nothing in ztunnel's namespace scrapes ztunnel"
        );
    }

    #[test]
    fn generated_monitors_and_a_converted_telemetry_clear_the_findings() {
        let ztunnel = serde_yaml_ng::to_string(&crate::mesh::monitoring::ztunnel_pod_monitor("ztunnel")).unwrap();
        let waypoint =
            serde_yaml_ng::to_string(&crate::mesh::monitoring::waypoint_pod_monitor("shop", "waypoint")).unwrap();
        let copy = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: reviews-logs-waypoint
  namespace: shop
  labels: {app.kubernetes.io/managed-by: oc-ambient}
  annotations: {oc-ambient.io/source: Telemetry/shop/reviews-logs}
spec:
  targetRefs: [{group: '', kind: Service, name: reviews}]
  accessLogging: [{providers: [{name: envoy}]}]";
        let report = report_of(&[MESH, MONITORING, &ztunnel, &waypoint, copy], true);
        assert!(ids_on(&report, ids::MONITORING_PODMONITOR_MISSING).is_empty(), "{:?}", report.findings);
        assert!(ids_on(&report, ids::TELEMETRY_NOT_CONVERTED).is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn without_the_monitoring_crds_the_coverage_is_noted_instead() {
        let report = report_of(&[MESH], false);
        let notes: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.id == ids::INPUT_COVERAGE && f.message.contains("monitoring.coreos.com is not served"))
            .collect();
        assert_eq!(notes.len(), 1, "{:?}", report.findings);
        assert!(notes[0].message.contains("prometheusrules, servicemonitors, podmonitors"), "{}", notes[0].message);
        assert!(ids_on(&report, ids::MONITORING_PODMONITOR_MISSING).is_empty());
        assert!(!report.partial, "an optional API that is not served leaves nothing unread");
    }
}
