//! Unit tests of the catalogue over synthetic snapshots: each check fires where it should and
//! stays quiet where it should not, and phases follow the guide's order.

use serde_json::{Value, json};

use super::phase::Phase;
use super::*;
use crate::kinds::Kind;
use crate::snapshot::{Coverage, Snapshot};

fn object(value: Value) -> kube_core::DynamicObject {
    serde_json::from_value(value).expect("test object")
}

/// A sidecar-mode mesh: OpenShift 4.19, OSSM 3.2, Istio 1.27 Healthy, namespace `shop` with two
/// sidecar pods (`web`, `api`), an L7 ALLOW on `api`, a VirtualService with subsets.
struct Mesh {
    objects: Vec<Value>,
}

fn pod(name: &str, app: &str, sidecar: bool, hbone: bool) -> Value {
    let mut containers = vec![json!({"name": app})];
    if sidecar {
        let config = if hbone { r#"{"proxyMetadata":{"ISTIO_META_ENABLE_HBONE":"true"}}"# } else { "{}" };
        containers.push(json!({"name": "istio-proxy", "env": [{"name": "PROXY_CONFIG", "value": config}]}));
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
        "spec": {"serviceAccountName": format!("shop-{app}"), "containers": containers, "nodeName": "n1"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn gateway_api_crd(plural: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.gateway.networking.k8s.io"), "annotations": {"gateway.networking.k8s.io/bundle-version": "v1.3.0"}},
        "spec": {"versions": [{"name": "v1", "served": true, "storage": true}]}})
}

impl Mesh {
    fn sidecar() -> Self {
        let objects = vec![
            json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": "version"}, "status": {"desired": {"version": "4.19.2"}}}),
            json!({"apiVersion": "operator.openshift.io/v1", "kind": "Network", "metadata": {"name": "cluster"},
                "spec": {"defaultNetwork": {"type": "OVNKubernetes", "ovnKubernetesConfig": {"gatewayConfig": {"routingViaHost": true}}}}}),
            json!({"apiVersion": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
                "metadata": {"name": "servicemeshoperator3.v3.2.0", "namespace": "openshift-operators"},
                "spec": {"version": "3.2.0"}, "status": {"phase": "Succeeded"}}),
            json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
                "spec": {"version": "v1.27.0", "namespace": "istio-system"}, "status": {"state": "Healthy"}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
            gateway_api_crd("gateways"),
            gateway_api_crd("httproutes"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio.io/rev": "default"}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"}, "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}}),
            pod("web-1", "web", true, false),
            pod("api-1", "api", true, false),
            json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "api-get", "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "api"}}, "action": "ALLOW",
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/shop-web"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}}),
        ];
        Mesh { objects }
    }

    fn with(mut self, value: Value) -> Self {
        self.objects.push(value);
        self
    }

    /// Replaces the object of the same kind and name.
    fn replace(mut self, value: Value) -> Self {
        let key = |v: &Value| (v["kind"].clone(), v["metadata"]["name"].clone(), v["metadata"]["namespace"].clone());
        let wanted = key(&value);
        self.objects.retain(|existing| key(existing) != wanted);
        self.objects.push(value);
        self
    }

    fn without(mut self, kind: &str) -> Self {
        self.objects.retain(|existing| existing["kind"] != kind);
        self
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::from_objects(self.objects.iter().cloned().map(object))
    }

    fn report(&self) -> Report {
        evaluate(&self.snapshot(), &Options::default())
    }

    fn step(&self, step: u8) -> Report {
        evaluate(&self.snapshot(), &Options { step: Some(step), ..Options::default() })
    }
}

fn namespace(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": labels}})
}

fn severities(report: &Report, id: &str) -> Vec<Severity> {
    report.findings.iter().filter(|f| f.id == id).map(|f| f.severity).collect()
}

fn has(report: &Report, id: &str, severity: Severity) -> bool {
    severities(report, id).contains(&severity)
}

#[test]
fn a_healthy_sidecar_mesh_is_ready_in_phase_sidecar_with_waypoint_reasons() {
    let report = Mesh::sidecar().report();
    assert!(report.ready, "{:#?}", report.findings);
    assert_eq!(report.namespaces.len(), 1);
    let shop = &report.namespaces[0];
    assert_eq!(shop.phase, Phase::Sidecar);
    assert!(shop.waypoint_needed);
    assert_eq!(shop.waypoint_reasons, vec!["AuthorizationPolicy shop/api-get uses L7 attributes (methods)"]);
    assert_eq!((shop.pods.total, shop.pods.sidecar, shop.pods.hbone), (2, 2, 0));
    for id in [
        ids::OPENSHIFT_VERSION,
        ids::OSSM_OPERATOR_VERSION,
        ids::ISTIO_VERSION,
        ids::ISTIO_HEALTHY,
        ids::CNI_TYPE,
        ids::OVN_ROUTING_VIA_HOST,
    ] {
        assert!(has(&report, id, Severity::Pass), "{id} passes");
    }
    assert!(has(&report, ids::L7_ALLOW_DENY_ALL, Severity::Warn));
    assert!(has(&report, ids::AUTHZ_NEEDS_WAYPOINT, Severity::Info));
    assert_eq!(report.cluster.istio.as_deref(), Some("1.27.0"));
    assert_eq!(report.cluster.istio_profile.as_deref(), Some("default"));
    assert!(has(&report, ids::GATEWAY_API_CRDS, Severity::Pass));
    let without_gateway_api = Mesh::sidecar().without("CustomResourceDefinition").report();
    assert_eq!(
        severities(&without_gateway_api, ids::GATEWAY_API_CRDS),
        vec![Severity::Fail],
        "CRDs listed, Gateway API absent"
    );
}

#[test]
fn old_platform_versions_fail_their_prerequisites() {
    let old = Mesh::sidecar()
        .replace(json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": "version"}, "status": {"desired": {"version": "4.18.20"}}}))
        .replace(json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
            "spec": {"version": "v1.26.2", "namespace": "istio-system"}, "status": {"state": "Healthy"}}))
        .without("ClusterServiceVersion")
        .with(json!({"apiVersion": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
            "metadata": {"name": "servicemeshoperator3.v3.1.3", "namespace": "openshift-operators"}, "spec": {"version": "3.1.3"}, "status": {"phase": "Succeeded"}}))
        .replace(json!({"apiVersion": "operator.openshift.io/v1", "kind": "Network", "metadata": {"name": "cluster"},
            "spec": {"defaultNetwork": {"type": "OVNKubernetes", "ovnKubernetesConfig": {"gatewayConfig": {"routingViaHost": false}}}}}));
    let report = old.report();
    assert!(!report.ready);
    for id in [ids::OPENSHIFT_VERSION, ids::ISTIO_VERSION, ids::OSSM_OPERATOR_VERSION, ids::OVN_ROUTING_VIA_HOST] {
        assert_eq!(severities(&report, id), vec![Severity::Fail], "{id}");
    }
    let sdn = Mesh::sidecar()
        .replace(json!({"apiVersion": "operator.openshift.io/v1", "kind": "Network", "metadata": {"name": "cluster"},
        "spec": {"defaultNetwork": {"type": "OpenShiftSDN"}}}));
    assert_eq!(severities(&sdn.report(), ids::CNI_TYPE), vec![Severity::Fail]);
}

#[test]
fn every_blocker_is_found_from_the_objects() {
    let cases = [
        (
            ids::VM_WORKLOADS,
            json!({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry", "metadata": {"name": "vm", "namespace": "shop"}, "spec": {"address": "10.0.0.9"}}),
        ),
        (
            ids::PEERAUTHENTICATION_DISABLE,
            json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "off", "namespace": "shop"}, "spec": {"mtls": {"mode": "DISABLE"}}}),
        ),
        (
            ids::MULTICLUSTER,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "istio-remote-secret-east", "namespace": "istio-system", "labels": {"istio/multiCluster": "true"}}}),
        ),
        (
            ids::SPIRE,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "spiffe", "namespace": "shop"},
            "spec": {"containers": [{"name": "a"}], "volumes": [{"name": "w", "csi": {"driver": "csi.spiffe.io"}}]}}),
        ),
    ];
    for (id, blocker) in cases {
        let report = Mesh::sidecar().with(blocker).report();
        assert_eq!(severities(&report, id), vec![Severity::Fail], "{id}");
        assert!(!report.ready, "{id} blocks");
    }
    assert!(
        Mesh::sidecar().report().findings.iter().all(|f| ![
            ids::VM_WORKLOADS,
            ids::MULTICLUSTER,
            ids::SPIRE,
            ids::PEERAUTHENTICATION_DISABLE
        ]
        .contains(&f.id))
    );
}

#[test]
fn features_ambient_ignores_are_warned_about() {
    let report = Mesh::sidecar()
        .with(json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": {"name": "lua", "namespace": "shop"}, "spec": {}}))
        .with(json!({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "default", "namespace": "shop"}, "spec": {}}))
        .replace({
            let mut annotated = pod("web-1", "web", true, false);
            annotated["metadata"]["annotations"] = json!({"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"});
            annotated
        })
        .report();
    for id in [ids::ENVOYFILTER, ids::SIDECAR_RESOURCE, ids::TRAFFIC_ANNOTATIONS] {
        assert_eq!(severities(&report, id), vec![Severity::Warn], "{id}");
    }
    assert!(report.ready, "warnings do not block");
}

#[test]
fn virtual_service_features_without_gateway_api_equivalent_are_named() {
    let report = Mesh::sidecar()
        .with(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"hosts": ["api"], "http": [{"route": [{"destination": {"host": "api"}}], "fault": {"delay": {"fixedDelay": "1s"}}, "corsPolicy": {}}]}}))
        .report();
    let finding = report.findings.iter().find(|f| f.id == ids::VIRTUALSERVICE_CONVERSION).expect("finding");
    assert_eq!(finding.severity, Severity::Warn);
    assert!(
        finding.message.contains("spec.http[0].fault") && finding.message.contains("spec.http[0].corsPolicy"),
        "{}",
        finding.message
    );
    // One verdict (issue 16): what convert refuses makes the check not ready, with the reason.
    assert_eq!(severities(&report, ids::CONVERSION_VERDICT), vec![Severity::Fail]);
    assert!(!report.ready);
}

/// Issue 16: the check calls "convertible" exactly what convert converts; a partial mirror, which
/// Gateway API v1.3 expresses (`requestMirror.percent`), is convertible and the check is ready.
#[test]
fn the_check_calls_convertible_what_convert_converts() {
    let report = Mesh::sidecar()
        .with(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"hosts": ["api"], "http": [{"route": [{"destination": {"host": "api"}}],
                     "mirror": {"host": "api"}, "mirrorPercentage": {"value": 50}}]}}))
        .report();
    let finding = report.findings.iter().find(|f| f.id == ids::VIRTUALSERVICE_CONVERSION).expect("finding");
    assert_eq!(
        (finding.severity, finding.message.as_str()),
        (Severity::Info, "convertible to an HTTPRoute on the waypoint (Step 5.1)")
    );
    assert!(severities(&report, ids::CONVERSION_VERDICT).is_empty(), "{:#?}", report.findings);
    assert!(report.ready, "{:#?}", report.findings);
}

#[test]
fn l7_traps_warn_under_sidecars_and_fail_once_pods_are_ambient() {
    let deny = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "no-admin", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}});
    let before = Mesh::sidecar().with(deny.clone()).report();
    assert_eq!(severities(&before, ids::L7_DENY_NO_EFFECT), vec![Severity::Warn]);
    let after = Mesh::sidecar()
        .with(deny)
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient"})))
        .replace(pod("api-1", "api", false, false))
        .replace(pod("web-1", "web", false, false))
        .report();
    assert_eq!(severities(&after, ids::L7_DENY_NO_EFFECT), vec![Severity::Fail]);
    assert_eq!(severities(&after, ids::L7_ALLOW_DENY_ALL), vec![Severity::Fail]);
}

#[test]
fn a_client_principal_allow_needs_the_waypoint_principal() {
    let l4 = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "web-from-api", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "action": "ALLOW", "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/shop-api"]}}]}]}});
    let report = Mesh::sidecar().with(l4.clone()).report();
    assert_eq!(severities(&report, ids::L4_ALLOW_NEEDS_WAYPOINT_PRINCIPAL), vec![Severity::Warn]);
    let mut fixed = l4;
    fixed["spec"]["rules"][0]["from"][0]["source"]["principals"] =
        json!(["cluster.local/ns/shop/sa/shop-api", "cluster.local/ns/shop/sa/waypoint"]);
    assert!(severities(&Mesh::sidecar().with(fixed).report(), ids::L4_ALLOW_NEEDS_WAYPOINT_PRINCIPAL).is_empty());
}

fn waypoint() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "waypoint", "namespace": "shop", "labels": {"istio.io/waypoint-for": "service"}},
        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]},
        "status": {"conditions": [{"type": "Programmed", "status": "True"}]}})
}

fn waypoint_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waypoint-7c9", "namespace": "shop", "labels": {"gateway.networking.k8s.io/gateway-name": "waypoint"}},
        "spec": {"serviceAccountName": "waypoint", "containers": [{"name": "istio-proxy"}]}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn target_ref_policy() -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "api-get-waypoint", "namespace": "shop"},
        "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "api"}], "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/shop-web"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}})
}

fn protection() -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "api-bypass-protection", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "action": "DENY",
            "rules": [{"from": [{"source": {"notPrincipals": ["cluster.local/ns/shop/sa/waypoint"]}}]}]}})
}

#[test]
fn target_refs_without_an_active_waypoint_and_missing_protection() {
    let pending = Mesh::sidecar().with(target_ref_policy()).report();
    assert_eq!(severities(&pending, ids::TARGETREFS_WITHOUT_WAYPOINT), vec![Severity::Warn], "sidecars still enforce");
    assert_eq!(severities(&pending, ids::BYPASS_PROTECTION_MISSING), vec![Severity::Warn]);

    let unprotected = Mesh::sidecar()
        .with(target_ref_policy())
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient"})))
        .replace(pod("api-1", "api", false, false))
        .report();
    assert_eq!(severities(&unprotected, ids::TARGETREFS_WITHOUT_WAYPOINT), vec![Severity::Fail], "nothing enforces it");

    let active = Mesh::sidecar()
        .with(target_ref_policy())
        .with(waypoint())
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})))
        .replace(pod("api-1", "api", false, false));
    assert!(severities(&active.report(), ids::TARGETREFS_WITHOUT_WAYPOINT).is_empty());
    assert_eq!(severities(&active.report(), ids::BYPASS_PROTECTION_MISSING), vec![Severity::Fail]);
    let protected = active.with(protection());
    assert!(severities(&protected.report(), ids::BYPASS_PROTECTION_MISSING).is_empty());
    assert!(severities(&protected.report(), ids::BYPASS_PROTECTION_DENIES_WAYPOINT).is_empty());

    // Protection on another workload's pods leaves api's pods open.
    let mut elsewhere = protection();
    elsewhere["spec"]["selector"]["matchLabels"]["app"] = json!("web");
    let misplaced = Mesh::sidecar()
        .with(target_ref_policy())
        .with(waypoint())
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})))
        .replace(pod("api-1", "api", false, false))
        .with(elsewhere);
    assert_eq!(severities(&misplaced.report(), ids::BYPASS_PROTECTION_MISSING), vec![Severity::Fail]);

    // Protection that forgets the waypoint denies everything that goes through it.
    let mut forgetful = protection();
    forgetful["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"] = json!(["cluster.local/ns/shop/sa/shop-web"]);
    let outage = Mesh::sidecar()
        .with(target_ref_policy())
        .with(waypoint())
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})))
        .replace(pod("api-1", "api", false, false))
        .with(forgetful);
    assert_eq!(severities(&outage.report(), ids::BYPASS_PROTECTION_DENIES_WAYPOINT), vec![Severity::Fail]);
}

#[test]
fn the_guides_step_5_3_protection_is_recognised_as_protecting_nothing() {
    let guide = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "api-ztunnel-protection", "namespace": "shop"},
        "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "api"}], "action": "DENY",
            "rules": [{"when": [{"key": "source.workload_name", "notValues": ["waypoint"]}]}]}});
    let report = Mesh::sidecar().with(target_ref_policy()).with(guide).report();
    assert_eq!(severities(&report, ids::INVALID_CONDITION_KEY), vec![Severity::Fail]);
    assert!(has(&report, ids::BYPASS_PROTECTION_MISSING, Severity::Warn), "a targetRefs DENY is no bypass protection");
}

#[test]
fn sequencing_violations_make_the_namespace_inconsistent() {
    let ambient_first = Mesh::sidecar()
        .replace(namespace(json!({"istio.io/rev": "default", "istio.io/dataplane-mode": "ambient"})))
        .report();
    assert_eq!(severities(&ambient_first, ids::SEQUENCE_AMBIENT_BEFORE_HBONE), vec![Severity::Fail]);
    assert_eq!(ambient_first.namespaces[0].phase, Phase::Inconsistent);

    let waypoint_first = Mesh::sidecar()
        .with(waypoint())
        .replace(namespace(json!({"istio.io/rev": "default", "istio.io/use-waypoint": "waypoint"})))
        .report();
    assert_eq!(severities(&waypoint_first, ids::SEQUENCE_WAYPOINT_BEFORE_AMBIENT), vec![Severity::Fail]);

    let sidecars_first = Mesh::sidecar()
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient"})))
        .replace(pod("api-1", "api", true, true))
        .replace(pod("web-1", "web", true, true))
        .report();
    assert_eq!(severities(&sidecars_first, ids::SEQUENCE_SIDECARS_REMOVED_BEFORE_WAYPOINT), vec![Severity::Fail]);
    assert_eq!(sidecars_first.namespaces[0].phase, Phase::Inconsistent);

    let one_workload_first = Mesh::sidecar()
        .replace(namespace(json!({"istio.io/rev": "default", "istio.io/dataplane-mode": "ambient"})))
        .replace(pod("api-1", "api", false, false))
        .replace(pod("web-1", "web", true, true))
        .report();
    assert_eq!(severities(&one_workload_first, ids::SEQUENCE_SIDECARS_REMOVED_BEFORE_WAYPOINT), vec![Severity::Fail]);
}

fn ambient_istio() -> Value {
    json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
        "spec": {"version": "v1.27.0", "namespace": "istio-system", "profile": "ambient", "values": {"pilot": {"trustedZtunnelNamespace": "ztunnel"}}},
        "status": {"state": "Healthy"}})
}

/// The guide's order, step by step, moves the namespace up the phase ladder.
#[test]
fn phases_follow_the_guide() {
    let restarted = Mesh::sidecar().replace(pod("api-1", "api", true, true)).replace(pod("web-1", "web", true, true));
    assert_eq!(restarted.report().namespaces[0].phase, Phase::Sidecar, "HBONE needs the ambient control plane first");
    let hbone = restarted.replace(ambient_istio());
    assert_eq!(hbone.report().namespaces[0].phase, Phase::SidecarHbone);
    let deployed = hbone.with(waypoint()).with(waypoint_pod());
    assert_eq!(deployed.report().namespaces[0].phase, Phase::WaypointDeployed);
    let migrated = deployed.with(target_ref_policy()).with(protection());
    assert_eq!(migrated.report().namespaces[0].phase, Phase::PoliciesMigrated);
    let enrolled =
        migrated.replace(namespace(json!({"istio.io/rev": "default", "istio.io/dataplane-mode": "ambient"})));
    assert_eq!(enrolled.report().namespaces[0].phase, Phase::AmbientEnrolled);
    let active = enrolled.replace(namespace(
        json!({"istio.io/rev": "default", "istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
    ));
    assert_eq!(active.report().namespaces[0].phase, Phase::WaypointActive);
    let cleaned = active.without("AuthorizationPolicy").with(target_ref_policy()).with(protection());
    assert_eq!(cleaned.report().namespaces[0].phase, Phase::WaypointActive, "sidecars still injected");
    let done = cleaned
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})))
        .replace(pod("api-1", "api", false, false))
        .replace(pod("web-1", "web", false, false))
        .with(json!({"apiVersion": "sailoperator.io/v1", "kind": "ZTunnel", "metadata": {"name": "default"}, "spec": {"namespace": "ztunnel"}, "status": {"state": "Healthy"}}))
        .with(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ztunnel-abc", "namespace": "ztunnel", "labels": {"app": "ztunnel"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "istio-proxy"}]}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
    let report = done.report();
    assert_eq!(report.namespaces[0].phase, Phase::Ambient, "{:#?}", report.findings);
    assert!(report.ready, "{:#?}", report.findings);
}

#[test]
fn step_checkpoints_pass_and_fail_where_they_should() {
    let sidecar = Mesh::sidecar();
    assert!(sidecar.step(1).ready);
    assert!(!sidecar.step(2).ready, "profile not ambient");
    assert_eq!(severities(&sidecar.step(3), ids::HBONE_SIDECARS), vec![Severity::Fail]);
    let hbone = Mesh::sidecar().replace(pod("api-1", "api", true, true)).replace(pod("web-1", "web", true, true));
    assert_eq!(severities(&hbone.step(3), ids::HBONE_SIDECARS), vec![Severity::Pass]);
    assert_eq!(severities(&hbone.step(4), ids::WAYPOINT_DEPLOYED), vec![Severity::Fail]);
    let deployed = hbone.with(waypoint()).with(waypoint_pod()).with(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "waypoint", "namespace": "shop", "labels": {"gateway.networking.k8s.io/gateway-name": "waypoint"}}, "spec": {}}));
    assert_eq!(severities(&deployed.step(4), ids::WAYPOINT_DEPLOYED), vec![Severity::Pass]);
    assert!(!deployed.step(5).ready, "no waypoint copies yet");
    let migrated = deployed.with(target_ref_policy()).with(protection());
    assert!(migrated.step(5).ready, "{:#?}", migrated.step(5).findings);
    assert!(!migrated.step(6).ready);
    let enrolled =
        migrated.replace(namespace(json!({"istio.io/rev": "default", "istio.io/dataplane-mode": "ambient"})));
    assert!(enrolled.step(6).ready, "{:#?}", enrolled.step(6).findings);
    assert!(!enrolled.step(7).ready);
    let active = enrolled.replace(namespace(
        json!({"istio.io/rev": "default", "istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
    ));
    assert!(active.step(7).ready, "{:#?}", active.step(7).findings);
    assert!(!active.step(8).ready, "the sidecar-era L7 policy is still there");
    let cleaned = active.without("AuthorizationPolicy").with(target_ref_policy()).with(protection());
    assert!(cleaned.step(8).ready);
    assert!(!cleaned.step(9).ready);
    let mut redirected = pod("api-1", "api", false, false);
    redirected["metadata"]["annotations"] = json!({"ambient.istio.io/redirection": "enabled"});
    let mut redirected_web = pod("web-1", "web", false, false);
    redirected_web["metadata"]["annotations"] = json!({"ambient.istio.io/redirection": "enabled"});
    let done = cleaned
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})))
        .replace(redirected)
        .replace(redirected_web);
    assert!(done.step(9).ready, "{:#?}", done.step(9).findings);
}

#[test]
fn missing_kinds_are_reported_not_guessed() {
    let mut snapshot = Snapshot::new(crate::snapshot::Source::Memory);
    snapshot.insert(object(pod("web-1", "web", true, false)));
    snapshot.set_coverage(Kind::Pod, Coverage::Listed);
    let report = evaluate(&snapshot, &Options::default());
    assert!(report.partial);
    assert!(report.findings.iter().any(|f| f.id == ids::INPUT_COVERAGE && f.message.contains("authorizationpolicies")));
    assert!(
        report.findings.iter().all(|f| f.severity != Severity::Fail || f.id == ids::ISTIO_VERSION),
        "{:#?}",
        report.findings
    );
    assert_eq!(severities(&report, ids::OPENSHIFT_VERSION), vec![Severity::Info]);
}

#[test]
fn the_json_document_has_the_contracted_shape() {
    let report = Mesh::sidecar().report();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["kind"], "AmbientCheckReport");
    for key in ["openshift", "ossm", "istio", "istioProfile", "cni", "gatewayAPI", "ztunnel"] {
        assert!(json["cluster"].get(key).is_some(), "cluster.{key}");
    }
    let namespace = &json["namespaces"][0];
    assert_eq!(namespace["phase"], "sidecar");
    assert_eq!(namespace["waypointNeeded"], true);
    assert_eq!(namespace["pods"], json!({"total": 2, "sidecar": 2, "hbone": 0, "ambient": 0}));
    let finding = &json["findings"][0];
    for key in ["id", "severity", "object", "message", "remediation"] {
        assert!(finding.get(key).is_some(), "finding.{key}");
    }
}

#[test]
fn a_baseline_turns_changed_outcomes_into_policy_equivalence_failures() {
    let baseline = Mesh::sidecar().snapshot();
    let same =
        evaluate(&Mesh::sidecar().snapshot(), &Options { baseline: Some(baseline.clone()), ..Options::default() });
    assert_eq!(severities(&same, ids::POLICY_EQUIVALENCE), vec![Severity::Pass]);

    // The pods left their sidecars while the L7 ALLOW stayed selector-based: ztunnel makes it
    // deny-all, so requests the baseline allowed are now denied.
    let broken = Mesh::sidecar()
        .replace(namespace(json!({"istio.io/dataplane-mode": "ambient"})))
        .replace(pod("api-1", "api", false, false))
        .replace(pod("web-1", "web", false, false));
    let report = evaluate(&broken.snapshot(), &Options { baseline: Some(baseline), ..Options::default() });
    let failures: Vec<&Finding> = report.findings.iter().filter(|f| f.id == ids::POLICY_EQUIVALENCE).collect();
    assert!(!failures.is_empty() && failures.iter().all(|f| f.severity == Severity::Fail), "{failures:#?}");
    assert!(failures.iter().any(|f| f.message.starts_with("tightened")), "{failures:#?}");
    assert!(!report.ready);
}

#[test]
fn protection_that_still_exempts_callers_without_sidecars_is_too_wide() {
    let mut exempting_web = protection();
    exempting_web["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"] =
        json!(["cluster.local/ns/shop/sa/waypoint", "cluster.local/ns/shop/sa/shop-web"]);
    let during = Mesh::sidecar()
        .with(target_ref_policy())
        .with(waypoint())
        .replace(namespace(json!({"istio.io/rev": "default", "istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})))
        .replace(pod("api-1", "api", true, true))
        .replace(pod("web-1", "web", true, true))
        .with(exempting_web.clone());
    assert!(
        severities(&during.report(), ids::BYPASS_PROTECTION_TOO_WIDE).is_empty(),
        "web still has a sidecar: it skips the waypoint legitimately"
    );
    let after = during.replace(pod("web-1", "web", false, false)).replace(pod("api-1", "api", false, false));
    assert_eq!(severities(&after.report(), ids::BYPASS_PROTECTION_TOO_WIDE), vec![Severity::Fail]);
}

#[test]
fn an_object_whose_spec_does_not_decode_keeps_the_mesh_from_being_ready() {
    let report = Mesh::sidecar()
        .with(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "broken", "namespace": "shop"}, "spec": {"hosts": 12, "http": "nope"}}))
        .report();
    assert!(has(&report, "invalid-object", Severity::Fail), "{:#?}", report.findings);
    assert!(!report.ready, "the check cannot vouch for a configuration it could not read");
}

/// Issue 16: an input with nothing oc-ambient reads is not READY (it used to be: no finding
/// failed because nothing was looked at), and the reason says so.
#[test]
fn an_empty_input_is_not_ready() {
    let snapshot = Snapshot::from_objects(vec![
        serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "shop"}}),
        )
        .unwrap(),
    ]);
    let report = evaluate(&snapshot, &Options::default());
    assert!(!report.ready, "{:#?}", report.findings);
    let verdict = report.findings.iter().find(|f| f.id == ids::CONVERSION_VERDICT).expect("a conversion verdict");
    assert!(verdict.message.contains("no object oc-ambient reads"), "{}", verdict.message);
}

/// Issue 16: the check never promises a waypoint copy that convert refuses to make; here the
/// policy selects no workload, so convert cannot tell which Services to target.
#[test]
fn a_policy_convert_refuses_is_not_promised_a_waypoint_copy() {
    let report = Mesh::sidecar()
        .with(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "ghost", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "ghost"}}, "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}))
        .report();
    let finding = report
        .findings
        .iter()
        .find(|f| f.id == ids::AUTHZ_NEEDS_WAYPOINT && f.object.as_ref().is_some_and(|o| o.name == "ghost"))
        .expect("finding");
    assert_eq!(finding.severity, Severity::Warn);
    assert!(finding.message.contains("which the translator cannot make: spec.selector"), "{}", finding.message);
    assert_eq!(severities(&report, ids::CONVERSION_VERDICT), vec![Severity::Fail]);
}
