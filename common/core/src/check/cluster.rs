//! Cluster prerequisites (the guide's Step 1 and Step 2 facts) and the cluster summary.

use kube_core::DynamicObject;
use serde_json::Value;

use super::facts::{parse_version, str_at, version_text};
use super::phase::MeshContext;
use super::{ClusterSummary, Finding, Severity, ids};
use crate::kinds::Kind;
use crate::mesh::ObjectRef;
use crate::snapshot::{Coverage, Snapshot};

const MIN_OPENSHIFT: (u64, u64, u64) = (4, 19, 0);
const MIN_OSSM: (u64, u64, u64) = (3, 2, 0);
const MIN_ISTIO: (u64, u64, u64) = (1, 27, 0);

/// The OpenShift version: the desired version of ClusterVersion `version`.
pub fn openshift_version(snapshot: &Snapshot) -> Option<String> {
    let cluster_version = snapshot.get(Kind::ClusterVersion, None, "version")?;
    str_at(cluster_version, "/status/desired/version")
        .or_else(|| str_at(cluster_version, "/status/history/0/version"))
        .map(str::to_string)
}

/// The newest `servicemeshoperator3` ClusterServiceVersion.
fn ossm_csv(snapshot: &Snapshot) -> Option<&DynamicObject> {
    snapshot
        .all(Kind::ClusterServiceVersion)
        .iter()
        .filter(|csv| csv.metadata.name.as_deref().is_some_and(|name| name.starts_with("servicemeshoperator3.")))
        .max_by_key(|csv| str_at(csv, "/spec/version").and_then(parse_version))
}

fn main_istio(snapshot: &Snapshot) -> Option<&DynamicObject> {
    let istios = snapshot.all(Kind::Istio);
    istios.iter().find(|istio| istio.metadata.name.as_deref() == Some("default")).or(istios.first())
}

fn istio_profile(istio: &DynamicObject) -> String {
    str_at(istio, "/spec/profile").unwrap_or("default").to_string()
}

fn ztunnel(snapshot: &Snapshot) -> Option<&DynamicObject> {
    snapshot.all(Kind::ZTunnel).first()
}

fn network(snapshot: &Snapshot) -> Option<&DynamicObject> {
    snapshot.get(Kind::OperatorNetwork, None, "cluster")
}

/// The Gateway API bundle version from the HTTPRoute CRD's annotation.
fn gateway_api_version(snapshot: &Snapshot) -> Option<String> {
    snapshot
        .get(Kind::CustomResourceDefinition, None, "httproutes.gateway.networking.k8s.io")
        .and_then(|crd| crd.metadata.annotations.as_ref()?.get("gateway.networking.k8s.io/bundle-version").cloned())
}

pub fn summary(snapshot: &Snapshot, _context: &MeshContext) -> ClusterSummary {
    let istio = main_istio(snapshot);
    ClusterSummary {
        openshift: openshift_version(snapshot),
        ossm: ossm_csv(snapshot).and_then(|csv| str_at(csv, "/spec/version")).map(str::to_string),
        istio: istio.and_then(|istio| str_at(istio, "/spec/version")).and_then(parse_version).map(version_text),
        istio_profile: istio.map(istio_profile),
        cni: network(snapshot).and_then(|n| str_at(n, "/spec/defaultNetwork/type")).map(str::to_string),
        gateway_api: gateway_api_version(snapshot),
        ztunnel: ztunnel(snapshot).and_then(|z| str_at(z, "/status/state")).map(str::to_string),
    }
}

/// An info finding for a check whose input is missing, or None when the kind was listed.
fn skipped(snapshot: &Snapshot, kind: Kind, id: &'static str, what: &str) -> Option<Finding> {
    match snapshot.coverage(kind) {
        Coverage::Listed => None,
        Coverage::NotServed => {
            Some(Finding::new(id, Severity::Info, None, format!("{what}: not served by this cluster; skipped")))
        }
        _ => {
            Some(Finding::new(id, Severity::Info, None, format!("{what}: no {} to read; skipped", kind.info().plural)))
        }
    }
}

pub fn prerequisites(snapshot: &Snapshot, context: &MeshContext) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(openshift_checks(snapshot));
    findings.extend(ossm_check(snapshot));
    findings.extend(istio_checks(snapshot));
    findings.push(gateway_api_check(snapshot));
    findings.extend(ambient_checks(snapshot, context));
    findings.extend(context.invalid.iter().cloned());
    findings
}

fn openshift_checks(snapshot: &Snapshot) -> Vec<Finding> {
    if let Some(finding) = skipped(snapshot, Kind::ClusterVersion, ids::OPENSHIFT_VERSION, "OpenShift version") {
        return vec![finding];
    }
    let Some(version) = openshift_version(snapshot) else {
        return vec![Finding::new(
            ids::OPENSHIFT_VERSION,
            Severity::Info,
            None,
            "not an OpenShift cluster (no ClusterVersion); OpenShift checks skipped",
        )];
    };
    let mut findings = Vec::new();
    let reference = Some(ObjectRef::new("ClusterVersion", None, "version"));
    match parse_version(&version) {
        Some(parsed) if parsed >= MIN_OPENSHIFT => findings.push(Finding::new(
            ids::OPENSHIFT_VERSION,
            Severity::Pass,
            reference,
            format!("OpenShift {version}"),
        )),
        _ => findings.push(
            Finding::new(
                ids::OPENSHIFT_VERSION,
                Severity::Fail,
                reference,
                format!("OpenShift {version} is older than 4.19"),
            )
            .fix("upgrade OpenShift to 4.19 or newer (Gateway API CRDs and ambient support)"),
        ),
    }
    let Some(network) = network(snapshot) else {
        findings.extend(skipped(snapshot, Kind::OperatorNetwork, ids::CNI_TYPE, "cluster network").or_else(|| {
            Some(Finding::new(ids::CNI_TYPE, Severity::Fail, None, "Network.operator.openshift.io cluster not found"))
        }));
        return findings;
    };
    let reference = Some(ObjectRef::new("Network", None, "cluster"));
    let cni = str_at(network, "/spec/defaultNetwork/type").unwrap_or("<unset>");
    if cni == "OVNKubernetes" {
        findings.push(Finding::new(ids::CNI_TYPE, Severity::Pass, reference.clone(), "CNI is OVNKubernetes"));
        let via_host = network.data.pointer("/spec/defaultNetwork/ovnKubernetesConfig/gatewayConfig/routingViaHost");
        if via_host.and_then(Value::as_bool) == Some(true) {
            findings.push(Finding::new(
                ids::OVN_ROUTING_VIA_HOST,
                Severity::Pass,
                reference,
                "OVN routingViaHost is on",
            ));
        } else {
            findings.push(
                Finding::new(ids::OVN_ROUTING_VIA_HOST, Severity::Fail, reference, "OVN-Kubernetes gatewayConfig.routingViaHost is not true; ztunnel traffic redirection needs it")
                    .fix("oc patch network.operator cluster --type merge -p '{\"spec\":{\"defaultNetwork\":{\"ovnKubernetesConfig\":{\"gatewayConfig\":{\"routingViaHost\":true}}}}}'"),
            );
        }
    } else {
        findings.push(
            Finding::new(
                ids::CNI_TYPE,
                Severity::Fail,
                reference,
                format!("CNI is {cni}; ambient mode on OpenShift needs OVNKubernetes"),
            )
            .fix("migrate the cluster network to OVN-Kubernetes before enabling ambient"),
        );
    }
    findings
}

fn ossm_check(snapshot: &Snapshot) -> Option<Finding> {
    if let Some(finding) = skipped(snapshot, Kind::ClusterServiceVersion, ids::OSSM_OPERATOR_VERSION, "OSSM operator") {
        return Some(finding);
    }
    let Some(csv) = ossm_csv(snapshot) else {
        return Some(
            Finding::new(
                ids::OSSM_OPERATOR_VERSION,
                Severity::Fail,
                None,
                "the servicemeshoperator3 ClusterServiceVersion is not installed",
            )
            .fix("install OpenShift Service Mesh 3.2 or newer from OperatorHub"),
        );
    };
    let reference = Some(ObjectRef::of(csv));
    let version = str_at(csv, "/spec/version").unwrap_or("<unknown>");
    let phase = str_at(csv, "/status/phase").unwrap_or("<unknown>");
    let new_enough = parse_version(version).is_some_and(|v| v >= MIN_OSSM);
    Some(if new_enough && phase == "Succeeded" {
        Finding::new(
            ids::OSSM_OPERATOR_VERSION,
            Severity::Pass,
            reference,
            format!("OSSM operator {version} Succeeded"),
        )
    } else if !new_enough {
        Finding::new(
            ids::OSSM_OPERATOR_VERSION,
            Severity::Fail,
            reference,
            format!("OSSM operator {version} is older than 3.2.0"),
        )
        .fix("upgrade the servicemeshoperator3 subscription to 3.2 or newer")
    } else {
        Finding::new(
            ids::OSSM_OPERATOR_VERSION,
            Severity::Fail,
            reference,
            format!("OSSM operator {version} is in phase {phase}, not Succeeded"),
        )
        .fix("check the operator's install plan and events: oc get csv -n openshift-operators")
    })
}

fn istio_checks(snapshot: &Snapshot) -> Vec<Finding> {
    if let Some(finding) = skipped(snapshot, Kind::Istio, ids::ISTIO_VERSION, "Istio control plane") {
        return vec![finding];
    }
    let istios = snapshot.all(Kind::Istio);
    if istios.is_empty() {
        return vec![
            Finding::new(
                ids::ISTIO_VERSION,
                Severity::Fail,
                None,
                "no Istio resource: there is no control plane to migrate",
            )
            .fix("create the Istio resource (Sail operator) first"),
        ];
    }
    let mut findings = Vec::new();
    for istio in istios {
        let reference = Some(ObjectRef::of(istio));
        let version = str_at(istio, "/spec/version").unwrap_or("<unset>");
        match parse_version(version) {
            Some(parsed) if parsed >= MIN_ISTIO => findings.push(Finding::new(
                ids::ISTIO_VERSION,
                Severity::Pass,
                reference.clone(),
                format!("Istio {version}"),
            )),
            _ => findings.push(
                Finding::new(
                    ids::ISTIO_VERSION,
                    Severity::Fail,
                    reference.clone(),
                    format!("Istio {version} is older than 1.27"),
                )
                .fix("update spec.version of the Istio resource to v1.27 or newer (OSSM 3.2)"),
            ),
        }
        let state = str_at(istio, "/status/state").unwrap_or("<no status>");
        findings.push(if state == "Healthy" {
            Finding::new(ids::ISTIO_HEALTHY, Severity::Pass, reference, "Istio is Healthy")
        } else {
            Finding::new(ids::ISTIO_HEALTHY, Severity::Fail, reference, format!("Istio state is {state}, not Healthy"))
                .fix("oc describe istio; fix the control plane before migrating")
        });
    }
    findings
}

fn gateway_api_check(snapshot: &Snapshot) -> Finding {
    let served_at_v1 =
        |kind: Kind| snapshot.served_versions(kind).map(|versions| versions.iter().any(|version| version == "v1"));
    match (served_at_v1(Kind::Gateway), served_at_v1(Kind::HttpRoute)) {
        (Some(true), Some(true)) => Finding::new(
            ids::GATEWAY_API_CRDS,
            Severity::Pass,
            None,
            format!(
                "Gateway API served at v1 ({})",
                gateway_api_version(snapshot).unwrap_or_else(|| "version unknown".into())
            ),
        ),
        (None, _) | (_, None) => Finding::new(
            ids::GATEWAY_API_CRDS,
            Severity::Info,
            None,
            "Gateway API CRDs: the input holds no CRDs or discovery; skipped",
        ),
        _ => Finding::new(
            ids::GATEWAY_API_CRDS,
            Severity::Fail,
            None,
            "Gateway and HTTPRoute are not served at gateway.networking.k8s.io/v1",
        )
        .fix("install the Gateway API v1.3 standard CRDs (OpenShift 4.19 ships them)"),
    }
}

/// ztunnel and trust checks, once ambient is (being) enabled.
fn ambient_checks(snapshot: &Snapshot, context: &MeshContext) -> Vec<Finding> {
    let Some(istio) = main_istio(snapshot) else { return Vec::new() };
    let ambient_profile = istio_profile(istio) == "ambient";
    let any_enrolled = context.model.described_namespaces().any(|namespace| context.labels(namespace).ambient);
    let ztunnel = ztunnel(snapshot);
    if !ambient_profile && ztunnel.is_none() && !any_enrolled {
        return vec![Finding::new(ids::ZTUNNEL_READY, Severity::Info, None, "ambient is not enabled yet (Step 2)")];
    }
    let mut findings = Vec::new();
    let ztunnel_namespace = ztunnel.and_then(|z| str_at(z, "/spec/namespace")).unwrap_or("ztunnel");
    if ambient_profile {
        findings.push(trusted_ztunnel_namespace(istio, ztunnel_namespace));
    }
    findings.push(ztunnel_ready(snapshot, context, ztunnel, ztunnel_namespace));
    findings
}

/// istiod must trust the namespace ztunnel runs in (`values.pilot.trustedZtunnelNamespace`).
pub fn trusted_ztunnel_namespace(istio: &DynamicObject, ztunnel_namespace: &str) -> Finding {
    let trusted = str_at(istio, "/spec/values/pilot/trustedZtunnelNamespace");
    let reference = Some(ObjectRef::of(istio));
    if trusted == Some(ztunnel_namespace) {
        return Finding::new(
            ids::TRUSTED_ZTUNNEL_NAMESPACE,
            Severity::Pass,
            reference,
            format!("istiod trusts ztunnel in {ztunnel_namespace}"),
        );
    }
    Finding::new(
        ids::TRUSTED_ZTUNNEL_NAMESPACE,
        Severity::Fail,
        reference,
        format!("values.pilot.trustedZtunnelNamespace is {} but ztunnel runs in {ztunnel_namespace}", trusted.unwrap_or("unset")),
    )
    .fix(format!(
        "oc patch istio {} --type merge -p '{{\"spec\":{{\"values\":{{\"pilot\":{{\"trustedZtunnelNamespace\":\"{ztunnel_namespace}\"}}}}}}}}'",
        istio.metadata.name.as_deref().unwrap_or("default")
    ))
}

/// ztunnel Healthy, with a running, ready pod on every node.
pub fn ztunnel_ready(
    snapshot: &Snapshot,
    context: &MeshContext,
    ztunnel: Option<&DynamicObject>,
    namespace: &str,
) -> Finding {
    let Some(ztunnel) = ztunnel else {
        return Finding::new(ids::ZTUNNEL_READY, Severity::Fail, None, "no ZTunnel resource")
            .fix("create a ZTunnel resource with spec.namespace: ztunnel (Step 2.3)");
    };
    let reference = Some(ObjectRef::of(ztunnel));
    let state = str_at(ztunnel, "/status/state").unwrap_or("<no status>");
    if state != "Healthy" {
        return Finding::new(
            ids::ZTUNNEL_READY,
            Severity::Fail,
            reference,
            format!("ZTunnel state is {state}, not Healthy"),
        )
        .fix(format!("oc get daemonset -n {namespace}; oc describe ztunnel"));
    }
    if !snapshot.knows(Kind::Node) || !snapshot.knows(Kind::Pod) {
        return Finding::new(
            ids::ZTUNNEL_READY,
            Severity::Info,
            reference,
            "ZTunnel Healthy; nodes or pods not in the input, so per-node coverage is unchecked",
        );
    }
    let nodes: Vec<&str> = snapshot.all(Kind::Node).iter().filter_map(|node| node.metadata.name.as_deref()).collect();
    let covered: Vec<&str> = context
        .pods_in(namespace)
        .iter()
        .filter(|pod| pod.ready && pod.labels.get("app").map(String::as_str) == Some("ztunnel"))
        .filter_map(|pod| pod.node)
        .collect();
    let missing: Vec<&str> = nodes.iter().copied().filter(|node| !covered.contains(node)).collect();
    if missing.is_empty() {
        Finding::new(
            ids::ZTUNNEL_READY,
            Severity::Pass,
            reference,
            format!("ztunnel ready on all {} nodes", nodes.len()),
        )
    } else {
        Finding::new(
            ids::ZTUNNEL_READY,
            Severity::Fail,
            reference,
            format!("no ready ztunnel pod on {} of {} nodes: {}", missing.len(), nodes.len(), missing.join(", ")),
        )
        .fix(format!("oc get pods -n {namespace} -o wide; check node selectors, taints and resources"))
    }
}
