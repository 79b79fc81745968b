//! `oc ambient-check`: typed checks over a [`Snapshot`], replacing the guide's Step 1 assessment
//! and its nine validation checkpoints (which grep `oc get` tables).
//!
//! [`evaluate`] is a pure function: the same snapshot gives the same report whether it came from a
//! live cluster or from a customer's YAML dump. A check that needs a kind the snapshot does not
//! cover says so with an `info` finding rather than guessing ("never crash, never guess").
//!
//! The catalogue ids are a contract (scripts and later gates match on them); see [`ids`].

pub mod cluster;
pub mod config;
pub mod facts;
pub mod monitoring;
pub mod phase;
pub mod sizing;
pub mod steps;

use serde::Serialize;

use crate::kinds::Kind;
use crate::mesh::ObjectRef;
use crate::parallel;
use crate::snapshot::{Coverage, Snapshot};

/// The stable ids of the catalogue.
pub mod ids {
    pub const OPENSHIFT_VERSION: &str = "openshift-version";
    pub const OSSM_OPERATOR_VERSION: &str = "ossm-operator-version";
    pub const ISTIO_VERSION: &str = "istio-version";
    pub const ISTIO_HEALTHY: &str = "istio-healthy";
    pub const CNI_TYPE: &str = "cni-type";
    pub const OVN_ROUTING_VIA_HOST: &str = "ovn-routing-via-host";
    pub const GATEWAY_API_CRDS: &str = "gateway-api-crds";
    pub const TRUSTED_ZTUNNEL_NAMESPACE: &str = "trusted-ztunnel-namespace";
    pub const ZTUNNEL_READY: &str = "ztunnel-ready";
    pub const MULTICLUSTER: &str = "multicluster";
    pub const VM_WORKLOADS: &str = "vm-workloads";
    pub const SPIRE: &str = "spire";
    pub const PEERAUTHENTICATION_DISABLE: &str = "peerauthentication-disable";
    pub const ENVOYFILTER: &str = "envoyfilter";
    pub const SIDECAR_RESOURCE: &str = "sidecar-resource";
    pub const TRAFFIC_ANNOTATIONS: &str = "traffic-annotations";
    pub const VIRTUALSERVICE_CONVERSION: &str = "virtualservice-conversion";
    pub const DESTINATIONRULE_SUBSETS: &str = "destinationrule-subsets";
    pub const AUTHZ_NEEDS_WAYPOINT: &str = "authz-needs-waypoint";
    pub const L7_DENY_NO_EFFECT: &str = "l7-deny-no-effect";
    pub const L7_ALLOW_DENY_ALL: &str = "l7-allow-deny-all";
    pub const L4_ALLOW_NEEDS_WAYPOINT_PRINCIPAL: &str = "l4-allow-needs-waypoint-principal";
    pub const TARGETREFS_WITHOUT_WAYPOINT: &str = "targetrefs-without-waypoint";
    pub const BYPASS_PROTECTION_MISSING: &str = "bypass-protection-missing";
    pub const BYPASS_PROTECTION_DENIES_WAYPOINT: &str = "bypass-protection-denies-waypoint";
    pub const BYPASS_PROTECTION_TOO_WIDE: &str = "bypass-protection-too-wide";
    pub const INVALID_CONDITION_KEY: &str = "invalid-condition-key";
    pub const SEQUENCE_AMBIENT_BEFORE_HBONE: &str = "sequence-ambient-before-hbone";
    pub const SEQUENCE_SIDECARS_REMOVED_BEFORE_WAYPOINT: &str = "sequence-sidecars-removed-before-waypoint";
    pub const SEQUENCE_WAYPOINT_BEFORE_AMBIENT: &str = "sequence-waypoint-before-ambient";
    pub const INPUT_COVERAGE: &str = "input-coverage";
    pub const POLICY_EQUIVALENCE: &str = "policy-equivalence";
    pub const CONVERSION_VERDICT: &str = "conversion-verdict";
    // Monitoring (what ambient changes for metrics; see `monitoring`).
    pub const MONITORING_SIDECAR_REPORTER: &str = "monitoring-sidecar-reporter";
    pub const MONITORING_ENVOY_STATS: &str = "monitoring-envoy-stats";
    pub const MONITORING_SIDECAR_SCRAPE: &str = "monitoring-sidecar-scrape";
    pub const MONITORING_PODMONITOR_MISSING: &str = "monitoring-podmonitor-missing";
    pub const TELEMETRY_NOT_CONVERTED: &str = "telemetry-not-converted";
    // Waypoint sizing (see `sizing`).
    pub const WAYPOINT_SIZING: &str = "waypoint-sizing";
    // Step checkpoints (--step N).
    pub const ISTIO_AMBIENT_PROFILE: &str = "istio-ambient-profile";
    pub const ISTIO_CNI_AMBIENT: &str = "istio-cni-ambient";
    pub const HBONE_SIDECARS: &str = "hbone-sidecars";
    pub const WAYPOINT_DEPLOYED: &str = "waypoint-deployed";
    pub const VERSION_SERVICES: &str = "version-services";
    pub const HTTPROUTES: &str = "httproutes";
    pub const WAYPOINT_POLICIES: &str = "waypoint-policies";
    pub const AMBIENT_ENROLLED: &str = "ambient-enrolled";
    pub const SIDECARS_RETAINED: &str = "sidecars-retained";
    pub const WAYPOINT_ACTIVE: &str = "waypoint-active";
    pub const REPLACED_CONFIG_REMOVED: &str = "replaced-config-removed";
    pub const SIDECARS_REMOVED: &str = "sidecars-removed";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fail,
    Warn,
    Info,
    Pass,
}

/// One result of one check on one object (or the cluster).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub object: Option<ObjectRef>,
    pub message: String,
    pub remediation: Option<String>,
}

impl Finding {
    pub fn new(id: &'static str, severity: Severity, object: Option<ObjectRef>, message: impl Into<String>) -> Self {
        Finding { id, severity, object, message: message.into(), remediation: None }
    }

    pub fn fix(mut self, remediation: impl Into<String>) -> Self {
        self.remediation = Some(remediation.into());
        self
    }
}

/// What the report says about the cluster as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSummary {
    pub openshift: Option<String>,
    pub ossm: Option<String>,
    pub istio: Option<String>,
    pub istio_profile: Option<String>,
    pub cni: Option<String>,
    #[serde(rename = "gatewayAPI")]
    pub gateway_api: Option<String>,
    pub ztunnel: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodCounts {
    pub total: usize,
    pub sidecar: usize,
    pub hbone: usize,
    pub ambient: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceReport {
    pub name: String,
    pub phase: phase::Phase,
    pub waypoint_needed: bool,
    pub waypoint_reasons: Vec<String>,
    pub pods: PodCounts,
    /// The namespace's waypoints: resources, what they serve, and the recommendation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waypoints: Vec<sizing::WaypointSizing>,
}

/// The whole report; `-o json` prints exactly this.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub kind: &'static str,
    pub ready: bool,
    /// True when some kinds could not be read (no permission, or absent from offline input):
    /// findings that need them are replaced by `input-coverage` notes.
    pub partial: bool,
    pub cluster: ClusterSummary,
    pub namespaces: Vec<NamespaceReport>,
    pub findings: Vec<Finding>,
}

/// Which namespaces to report on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every namespace with injection, ambient or mesh config (the default).
    #[default]
    Mesh,
    /// Every namespace.
    All,
    /// These namespaces.
    Only(Vec<String>),
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub scope: Scope,
    /// `--step N`: run the checkpoint of that step of the guide (1 to 9) instead of the assessment.
    pub step: Option<u8>,
    /// `--baseline`: the sidecar-era configuration this mesh was migrated from; when known, every
    /// request the current state allows or routes differently is a `policy-equivalence` failure.
    pub baseline: Option<Snapshot>,
}

/// How many differences are listed one by one before the rest are summed up.
const MAX_LISTED_DIFFERENCES: usize = 20;

/// Compares the current state with the sidecar-era baseline on every representative request
/// (issue: "policy-equivalence"), within the namespaces in scope.
fn equivalence_findings(baseline: &Snapshot, current: &Snapshot, namespaces: &[String]) -> Vec<Finding> {
    let scope: std::collections::BTreeSet<String> = namespaces.iter().cloned().collect();
    let verification = crate::equivalence::verify(baseline, current, Some(&scope));
    let unexpected: Vec<&crate::equivalence::Difference> = verification.unexpected().collect();
    let unexpected_requests = verification.unexpected_requests();
    let expected = verification.differing_requests() - unexpected_requests;
    let mut findings: Vec<Finding> = unexpected
        .iter()
        .take(MAX_LISTED_DIFFERENCES)
        .map(|difference| {
            let target = &difference.request.destination;
            let object = (target.address == crate::equivalence::Address::Service)
                .then(|| ObjectRef::new("Service", Some(&target.namespace), &target.name));
            Finding::new(
                ids::POLICY_EQUIVALENCE,
                Severity::Fail,
                object,
                format!(
                    "{} {}{}: {}",
                    difference.class.word(),
                    difference.request,
                    if difference.count() > 1 {
                        format!(" (and the same from {} sources treated alike)", difference.count() - 1)
                    } else {
                        String::new()
                    },
                    difference.explanation()
                ),
            )
            .fix("compare with `oc ambient-waypoint convert --verify` on the baseline; fix the policy or route before going on")
        })
        .collect();
    if unexpected.len() > MAX_LISTED_DIFFERENCES {
        let listed: usize = unexpected.iter().take(MAX_LISTED_DIFFERENCES).map(|difference| difference.count()).sum();
        findings.push(Finding::new(
            ids::POLICY_EQUIVALENCE,
            Severity::Fail,
            None,
            format!(
                "{} more requests differ from the baseline (see `-o json` of convert --verify)",
                unexpected_requests - listed
            ),
        ));
    }
    if unexpected.is_empty() {
        findings.push(Finding::new(
            ids::POLICY_EQUIVALENCE,
            Severity::Pass,
            None,
            format!(
                "{} requests evaluated: every outcome matches the baseline{}",
                verification.requests,
                if expected > 0 {
                    format!(" but {expected} intended ones (pod-address traffic now sent through the waypoint)")
                } else {
                    String::new()
                }
            ),
        ));
    }
    findings
}

/// Checks need these kinds; missing coverage is reported once per kind, not per check.
fn coverage_findings(snapshot: &Snapshot, needed: &[Kind]) -> Vec<Finding> {
    needed
        .iter()
        .filter_map(|kind| {
            let message = match snapshot.coverage(*kind) {
                Coverage::Listed | Coverage::NotServed => return None,
                Coverage::NotInInput => {
                    format!("the input holds no {}; checks that need them were skipped", kind.info().plural)
                }
                Coverage::Forbidden(detail) => {
                    format!("{detail}; checks that need {} were skipped", kind.info().plural)
                }
            };
            Some(Finding::new(ids::INPUT_COVERAGE, Severity::Info, None, message))
        })
        .collect()
}

/// The kinds the assessment reads.
const ASSESSMENT_KINDS: &[Kind] = &[
    Kind::Namespace,
    Kind::Node,
    Kind::Pod,
    Kind::Service,
    Kind::ClusterVersion,
    Kind::ClusterServiceVersion,
    Kind::OperatorNetwork,
    Kind::Istio,
    Kind::IstioCni,
    Kind::ZTunnel,
    Kind::VirtualService,
    Kind::DestinationRule,
    Kind::AuthorizationPolicy,
    Kind::PeerAuthentication,
    Kind::Gateway,
    Kind::HttpRoute,
];

/// Evaluates the snapshot.
pub fn evaluate(snapshot: &Snapshot, options: &Options) -> Report {
    let context = phase::MeshContext::new(snapshot);
    let namespaces = phase::namespaces_in_scope(snapshot, &context, &options.scope);
    let mut findings = coverage_findings(snapshot, ASSESSMENT_KINDS);
    // Optional APIs that are not served leave nothing unread; monitoring kinds denied to the
    // caller do (their note is added with the monitoring checks).
    let partial = !findings.is_empty() || monitoring::unreadable(snapshot);
    let namespace_reports: Vec<NamespaceReport> =
        namespaces.iter().map(|name| phase::namespace_report(snapshot, &context, name)).collect();
    // The conversion's verdict judges sidecar-era configuration: once a namespace has moved on
    // (a waypoint deployed, policies migrated), the Step checkpoints and --baseline judge it.
    let sidecar_era = namespace_reports.iter().all(|report| {
        matches!(report.phase, phase::Phase::NotMeshed | phase::Phase::Sidecar | phase::Phase::SidecarHbone)
    });
    match options.step {
        Some(step) => findings.extend(steps::checkpoint(step, snapshot, &context, &namespaces)),
        None => {
            let selected = match &options.scope {
                Scope::Only(selected) => selected.clone(),
                Scope::Mesh | Scope::All => Vec::new(),
            };
            // The conversion's verdict is most of the assessment's work on a large mesh, and its
            // conversion runs on one core: the other findings are made beside it.
            let (conversion, (configuration, operation)) = parallel::join(
                || config::ConversionView::new(snapshot, &selected),
                || {
                    let mut configuration = cluster::prerequisites(snapshot, &context);
                    configuration.extend(config::blockers(snapshot));
                    configuration.extend(config::not_honoured(snapshot));
                    let mut operation = config::policy_traps(snapshot, &context, &namespaces);
                    operation.extend(monitoring::monitoring(snapshot, &context, &namespaces));
                    operation.extend(sizing::findings(snapshot, &context, &namespaces));
                    (configuration, operation)
                },
            );
            findings.extend(configuration);
            // With --baseline the question is what changed outcomes, which the conversion of the
            // current state does not answer.
            if sidecar_era && options.baseline.is_none() {
                findings.extend(conversion.findings());
            }
            findings.extend(config::work_to_do(&context, &namespaces, &conversion));
            findings.extend(operation);
        }
    }
    if let Some(baseline) = &options.baseline {
        findings.extend(equivalence_findings(baseline, snapshot, &namespaces));
    }
    for report in &namespace_reports {
        findings.extend(phase::sequencing(snapshot, &context, &report.name));
    }
    if let Scope::Only(selected) = &options.scope {
        // `-n`: findings about other application namespaces are out of scope; cluster-level ones
        // (no namespace, or the control plane's and operators' namespaces) stay.
        let infrastructure = crate::mesh::infrastructure_namespaces(snapshot);
        findings.retain(|finding| match finding.object.as_ref().and_then(|object| object.namespace.as_ref()) {
            Some(namespace) => selected.contains(namespace) || infrastructure.contains(namespace),
            None => true,
        });
    }
    findings.sort_by(|a, b| (a.severity, a.id, &a.object).cmp(&(b.severity, b.id, &b.object)));
    findings.dedup();
    Report {
        kind: "AmbientCheckReport",
        ready: !findings.iter().any(|finding| finding.severity == Severity::Fail),
        partial,
        cluster: cluster::summary(snapshot, &context),
        namespaces: namespace_reports,
        findings,
    }
}

#[cfg(test)]
mod tests;
