//! `--step N`: the validation checkpoint of each step of the guide, as typed checks over the
//! objects instead of `grep -c "2/2.*Running"` over `oc get` tables.

use kube_core::DynamicObject;

use super::cluster::{prerequisites, trusted_ztunnel_namespace, ztunnel_ready};
use super::config::blockers;
use super::facts::{service_parents, str_at};
use super::phase::{MeshContext, milestones, unprotected};
use super::{Finding, Severity, ids};
use crate::kinds::Kind;
use crate::mesh::networking::service_of_host;
use crate::mesh::{ObjectRef, labels};
use crate::snapshot::Snapshot;

/// The findings of step `step`'s checkpoint for `namespaces`.
pub fn checkpoint(step: u8, snapshot: &Snapshot, context: &MeshContext, namespaces: &[String]) -> Vec<Finding> {
    match step {
        1 => {
            let mut findings: Vec<Finding> = prerequisites(snapshot, context)
                .into_iter()
                .filter(|f| f.id != ids::ZTUNNEL_READY && f.id != ids::TRUSTED_ZTUNNEL_NAMESPACE)
                .collect();
            findings.extend(blockers(snapshot));
            findings
        }
        2 => step2(snapshot, context),
        _ => namespaces.iter().flat_map(|namespace| namespace_checkpoint(step, snapshot, context, namespace)).collect(),
    }
}

fn named(snapshot: &Snapshot, kind: Kind) -> Option<&DynamicObject> {
    let all = snapshot.all(kind);
    all.iter().find(|object| object.metadata.name.as_deref() == Some("default")).or(all.first())
}

fn profile_and_health(
    object: Option<&DynamicObject>,
    kind: &str,
    id: &'static str,
    healthy_id: Option<&'static str>,
) -> Vec<Finding> {
    let Some(object) = object else {
        return vec![
            Finding::new(id, Severity::Fail, None, format!("no {kind} resource"))
                .fix(format!("create the {kind} resource (Step 2)")),
        ];
    };
    let reference = Some(ObjectRef::of(object));
    let profile = str_at(object, "/spec/profile").unwrap_or("default");
    let state = str_at(object, "/status/state").unwrap_or("<no status>");
    let mut findings = vec![if profile == "ambient" {
        Finding::new(id, Severity::Pass, reference.clone(), format!("{kind} profile is ambient"))
    } else {
        Finding::new(id, Severity::Fail, reference.clone(), format!("{kind} profile is {profile}, not ambient")).fix(
            format!(
                "oc patch {} {} --type merge -p '{{\"spec\":{{\"profile\":\"ambient\"}}}}'",
                kind.to_lowercase(),
                object.metadata.name.as_deref().unwrap_or("default")
            ),
        )
    }];
    let health_id = healthy_id.unwrap_or(id);
    findings.push(if state == "Healthy" {
        Finding::new(health_id, Severity::Pass, reference, format!("{kind} is Healthy"))
    } else {
        Finding::new(health_id, Severity::Fail, reference, format!("{kind} state is {state}, not Healthy"))
    });
    findings
}

fn step2(snapshot: &Snapshot, context: &MeshContext) -> Vec<Finding> {
    let mut findings =
        profile_and_health(named(snapshot, Kind::Istio), "Istio", ids::ISTIO_AMBIENT_PROFILE, Some(ids::ISTIO_HEALTHY));
    findings.extend(profile_and_health(named(snapshot, Kind::IstioCni), "IstioCNI", ids::ISTIO_CNI_AMBIENT, None));
    let ztunnel = named(snapshot, Kind::ZTunnel);
    let ztunnel_namespace = ztunnel.and_then(|z| str_at(z, "/spec/namespace")).unwrap_or("ztunnel");
    if let Some(istio) = named(snapshot, Kind::Istio) {
        findings.push(trusted_ztunnel_namespace(istio, ztunnel_namespace));
    }
    findings.push(ztunnel_ready(snapshot, context, ztunnel, ztunnel_namespace));
    findings
}

fn namespace_checkpoint(step: u8, snapshot: &Snapshot, context: &MeshContext, namespace: &str) -> Vec<Finding> {
    let reference = Some(ObjectRef::new("Namespace", None, namespace));
    let needed = !context.waypoint_reasons(namespace).is_empty();
    let facts = milestones(snapshot, context, namespace, needed);
    let labels = context.labels(namespace);
    let pass = |id, message: String| Finding::new(id, Severity::Pass, reference.clone(), message);
    let fail = |id, message: String| Finding::new(id, Severity::Fail, reference.clone(), message);
    match step {
        3 => {
            let sidecars: Vec<_> = context.app_pods(namespace).filter(|pod| pod.sidecar).collect();
            let lacking: Vec<&str> =
                sidecars.iter().filter(|pod| !pod.hbone || !pod.ready).map(|pod| pod.name).collect();
            vec![if sidecars.is_empty() {
                fail(ids::HBONE_SIDECARS, format!("no pods with sidecars in {namespace}"))
            } else if lacking.is_empty() {
                pass(ids::HBONE_SIDECARS, format!("all {} sidecar pods are ready with HBONE", sidecars.len()))
            } else {
                fail(
                    ids::HBONE_SIDECARS,
                    format!(
                        "{} of {} sidecar pods lack HBONE or are not ready: {}",
                        lacking.len(),
                        sidecars.len(),
                        lacking.join(", ")
                    ),
                )
                .fix(format!("oc rollout restart deployment -n {namespace} (after Step 2 made the profile ambient)"))
            }]
        }
        4 => vec![waypoint_deployment(snapshot, context, namespace, needed)],
        5 => step5(snapshot, context, namespace, needed),
        6 => {
            let mut findings = vec![if labels.ambient {
                pass(ids::AMBIENT_ENROLLED, format!("{namespace} is labelled istio.io/dataplane-mode=ambient"))
            } else {
                fail(ids::AMBIENT_ENROLLED, format!("{namespace} is not enrolled in ambient"))
                    .fix(format!("oc label namespace {namespace} istio.io/dataplane-mode=ambient"))
            }];
            let without: Vec<&str> =
                context.app_pods(namespace).filter(|pod| !pod.sidecar).map(|pod| pod.name).collect();
            findings.push(if without.is_empty() {
                pass(ids::SIDECARS_RETAINED, "sidecars are still present (they keep enforcing until Step 9)".into())
            } else {
                fail(
                    ids::SIDECARS_RETAINED,
                    format!("pods without sidecars before waypoints are active: {}", without.join(", ")),
                )
            });
            findings
        }
        7 => vec![if !needed {
            pass(ids::WAYPOINT_ACTIVE, format!("{namespace} needs no waypoint"))
        } else if facts.waypoint_active
            && waypoint_pod_running(context, namespace, labels.use_waypoint.as_deref().unwrap_or_default())
        {
            pass(
                ids::WAYPOINT_ACTIVE,
                format!("waypoint {} is active and running", labels.use_waypoint.unwrap_or_default()),
            )
        } else {
            fail(ids::WAYPOINT_ACTIVE, format!("{namespace} needs a waypoint but none is active and running"))
                .fix(format!("oc label namespace {namespace} istio.io/use-waypoint=waypoint"))
        }],
        8 => {
            let leftovers = replaced_leftovers(context, namespace);
            vec![if leftovers.is_empty() {
                pass(
                    ids::REPLACED_CONFIG_REMOVED,
                    "no sidecar-era L7 policies, VirtualServices or subset DestinationRules remain".into(),
                )
            } else {
                fail(ids::REPLACED_CONFIG_REMOVED, format!("still present: {}", leftovers.join(", ")))
                    .fix("delete them once their waypoint replacements are active (Step 8)")
            }]
        }
        9 => {
            let with_sidecar: Vec<&str> =
                context.app_pods(namespace).filter(|pod| pod.sidecar).map(|pod| pod.name).collect();
            let not_redirected: Vec<&str> =
                context.app_pods(namespace).filter(|pod| !pod.sidecar && !pod.redirected).map(|pod| pod.name).collect();
            let mut findings = vec![if !labels.injection && with_sidecar.is_empty() {
                pass(ids::SIDECARS_REMOVED, "no injection label and no istio-proxy containers".into())
            } else {
                fail(ids::SIDECARS_REMOVED, format!("injection label present: {}; pods with istio-proxy: {}", labels.injection, with_sidecar.join(", ")))
                    .fix(format!("oc label namespace {namespace} istio.io/rev- istio-injection-; oc rollout restart deployment -n {namespace}"))
            }];
            if !not_redirected.is_empty() {
                findings.push(fail(
                    ids::SIDECARS_REMOVED,
                    format!("pods not redirected to ztunnel: {}", not_redirected.join(", ")),
                ));
            }
            findings
        }
        _ => vec![fail("step", format!("there is no step {step}; steps are 1 to 9"))],
    }
}

fn waypoint_pod_running(context: &MeshContext, namespace: &str, waypoint: &str) -> bool {
    context.pods_in(namespace).iter().any(|pod| pod.gateway == Some(waypoint) && pod.ready)
}

fn waypoint_deployment(snapshot: &Snapshot, context: &MeshContext, namespace: &str, needed: bool) -> Finding {
    let reference = Some(ObjectRef::new("Namespace", None, namespace));
    if !needed {
        return Finding::new(
            ids::WAYPOINT_DEPLOYED,
            Severity::Pass,
            reference,
            format!("{namespace} needs no waypoint"),
        );
    }
    let Some(gateway) = context.model.waypoints_in(namespace).next() else {
        return Finding::new(
            ids::WAYPOINT_DEPLOYED,
            Severity::Fail,
            reference,
            format!("no Gateway of class istio-waypoint in {namespace}"),
        )
        .fix("oc ambient-waypoint (or apply the guide's Step 4.2 Gateway)");
    };
    let name = gateway.name.as_str();
    let reference = Some(ObjectRef::new("Gateway", Some(namespace), name));
    let deployment = snapshot
        .in_namespace(Kind::Deployment, namespace)
        .any(|d| labels(d).get(labels::GATEWAY_NAME).map(String::as_str) == Some(name));
    if !gateway.programmed || !deployment || !waypoint_pod_running(context, namespace, name) {
        return Finding::new(
            ids::WAYPOINT_DEPLOYED,
            Severity::Fail,
            reference,
            format!(
                "waypoint {name}: programmed={}, deployment={deployment}, pod running={}",
                gateway.programmed,
                waypoint_pod_running(context, namespace, name)
            ),
        )
        .fix(format!("oc describe gateway {name} -n {namespace}"));
    }
    if context.labels(namespace).use_waypoint.is_some() {
        return Finding::new(
            ids::WAYPOINT_DEPLOYED,
            Severity::Info,
            reference,
            format!("waypoint {name} is deployed and already active"),
        );
    }
    Finding::new(
        ids::WAYPOINT_DEPLOYED,
        Severity::Pass,
        reference,
        format!("waypoint {name} is deployed, running and not yet active"),
    )
}

fn step5(snapshot: &Snapshot, context: &MeshContext, namespace: &str, needed: bool) -> Vec<Finding> {
    let reference = Some(ObjectRef::new("Namespace", None, namespace));
    let mut findings = Vec::new();
    let mut missing_services = Vec::new();
    let mut unrouted = Vec::new();
    for (object, spec) in context.virtual_services_for(namespace) {
        let own = object.metadata.namespace.as_deref().unwrap_or_default();
        for (host, subset) in spec.subset_destinations() {
            if let Some((service, ns)) = service_of_host(host, own) {
                let wanted = format!("{service}-{subset}");
                if snapshot.get(Kind::Service, Some(ns), &wanted).is_none() && !missing_services.contains(&wanted) {
                    missing_services.push(wanted);
                }
            }
        }
        let routed = snapshot.in_namespace(Kind::HttpRoute, namespace).flat_map(service_parents).any(|parent| {
            spec.hosts
                .iter()
                .any(|host| service_of_host(host, own).map(|(service, _)| service) == Some(parent.as_str()))
        });
        if !routed {
            unrouted.push(ObjectRef::of(object).to_string());
        }
    }
    findings.push(if missing_services.is_empty() {
        Finding::new(
            ids::VERSION_SERVICES,
            Severity::Pass,
            reference.clone(),
            "every routed subset has its per-version Service",
        )
    } else {
        Finding::new(
            ids::VERSION_SERVICES,
            Severity::Fail,
            reference.clone(),
            format!("missing per-version Services: {}", missing_services.join(", ")),
        )
        .fix("oc ambient-waypoint convert | oc apply -f -")
    });
    findings.push(if unrouted.is_empty() {
        Finding::new(
            ids::HTTPROUTES,
            Severity::Pass,
            reference.clone(),
            "every mesh VirtualService has an HTTPRoute for its hosts",
        )
    } else {
        Finding::new(
            ids::HTTPROUTES,
            Severity::Fail,
            reference.clone(),
            format!("no HTTPRoute yet for {}", unrouted.join(", ")),
        )
    });
    let uncovered: Vec<String> = context
        .policies_in(namespace)
        .filter(|(_, policy)| !policy.uses_target_refs() && !policy.l7_attributes().is_empty())
        .filter(|(object, _)| {
            let name = object.metadata.name.as_deref().unwrap_or_default();
            !context.policies_in(namespace).any(|(other, p)| {
                p.uses_target_refs() && other.metadata.name.as_deref() == Some(&format!("{name}-waypoint"))
            })
        })
        .map(|(object, _)| ObjectRef::of(object).to_string())
        .collect();
    findings.push(if !needed || uncovered.is_empty() {
        Finding::new(
            ids::WAYPOINT_POLICIES,
            Severity::Pass,
            reference.clone(),
            "every L7 policy has a waypoint-targeted copy",
        )
    } else {
        Finding::new(
            ids::WAYPOINT_POLICIES,
            Severity::Fail,
            reference.clone(),
            format!("no waypoint copy (targetRefs) of {}", uncovered.join(", ")),
        )
    });
    if context.policies_in(namespace).any(|(_, p)| p.uses_target_refs()) {
        let gaps = unprotected(snapshot, context, namespace);
        findings.push(if gaps.is_empty() {
            Finding::new(ids::BYPASS_PROTECTION_MISSING, Severity::Pass, reference, "every pod behind a waypoint-enforced Service has selector-based bypass protection that exempts the waypoint")
        } else {
            let pods: Vec<String> = gaps.iter().map(|(service, pod, protection)| format!("{pod} ({service}, {protection:?})")).collect();
            Finding::new(ids::BYPASS_PROTECTION_MISSING, Severity::Fail, reference, format!("pods without correct bypass protection: {}", pods.join(", ")))
                .fix("oc ambient-waypoint convert generates correct protection (the guide's Step 5.3 policy protects nothing)")
        });
    }
    findings.extend(
        super::config::policy_traps(snapshot, context, &[namespace.to_string()])
            .into_iter()
            .filter(|f| f.id == ids::INVALID_CONDITION_KEY),
    );
    findings
}

fn replaced_leftovers(context: &MeshContext, namespace: &str) -> Vec<String> {
    let mut leftovers: Vec<String> = context
        .policies_in(namespace)
        .filter(|(_, p)| !p.uses_target_refs() && !p.l7_attributes().is_empty())
        .map(|(o, _)| ObjectRef::of(o).to_string())
        .collect();
    leftovers.extend(context.virtual_services_for(namespace).map(|(o, _)| ObjectRef::of(o).to_string()));
    leftovers.extend(context.subset_rules_for(namespace).map(|(o, _)| ObjectRef::of(o).to_string()));
    leftovers
}
