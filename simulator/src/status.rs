//! The status istiod writes in ambient mode where the suite reads it: the `ZtunnelAccepted` and
//! `WaypointAccepted` conditions of AuthorizationPolicies, and the `istio.io/WaypointBound`
//! condition of Services that use a waypoint. istiod writes them only while the control plane
//! runs with an ambient profile, so nothing appears in the sidecar-mode scenarios.
//!
//! Condition types and reasons follow istiod 1.27 (see the shared fixture
//! `corpus/istio/istio/pkg/config/analysis/analyzers/testdata/condition-analyzer.yaml`); the
//! messages are close to istiod's but not byte-identical. As in Istio 1.27 (istio/istio#61126), a
//! DENY policy whose rules are all HTTP-level is reported accepted by ztunnel although ztunnel
//! cannot enforce it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::Error;
use crate::gateway::{GATEWAY_GROUP, WAYPOINT_CLASS, gateway_api_installed};
use crate::injector::is_ambient_profile;
use crate::resources::{api, condition, follow_with_triggers, is_not_found, patch_status};
use crate::sail::Component;

pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
pub const USE_WAYPOINT_NAMESPACE_LABEL: &str = "istio.io/use-waypoint-namespace";
pub const WAYPOINT_BOUND: &str = "istio.io/WaypointBound";

fn policy_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk("security.istio.io", "v1", "AuthorizationPolicy")
}

fn gateway_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk(GATEWAY_GROUP, "v1", "Gateway")
}

/// A condition as istiod words it: (type, ok, reason, message).
pub type Verdict = (&'static str, bool, &'static str, String);

/// The HTTP-level attributes a policy's rules use (ztunnel enforces only L4 ones).
pub fn http_attributes(spec: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for rule in spec["rules"].as_array().into_iter().flatten() {
        for to in rule["to"].as_array().into_iter().flatten() {
            for key in ["methods", "notMethods", "paths", "notPaths", "hosts", "notHosts"] {
                if to["operation"].get(key).is_some() {
                    found.push(key.to_string());
                }
            }
        }
        for from in rule["from"].as_array().into_iter().flatten() {
            for key in ["requestPrincipals", "notRequestPrincipals"] {
                if from["source"].get(key).is_some() {
                    found.push(key.to_string());
                }
            }
        }
        for when in rule["when"].as_array().into_iter().flatten() {
            if let Some(key) = when["key"].as_str().filter(|key| key.starts_with("request.")) {
                found.push(key.to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Where a policy is enforced in ambient mode and what istiod says about it. `waypoint_of` names
/// the waypoint (namespace/name) a target of the policy's namespace is bound to, if any.
pub fn policy_verdict(spec: &Value, waypoint_of: impl Fn(&str, &str) -> Option<String>) -> Verdict {
    if let Some(targets) = spec["targetRefs"].as_array().filter(|targets| !targets.is_empty()) {
        let bound: Vec<String> = targets
            .iter()
            .filter_map(|target| {
                waypoint_of(target["kind"].as_str().unwrap_or_default(), target["name"].as_str().unwrap_or_default())
            })
            .collect();
        return match bound.first() {
            Some(waypoint) if bound.len() == targets.len() => {
                ("WaypointAccepted", true, "Accepted", format!("bound to {waypoint}"))
            }
            Some(_) => {
                ("WaypointAccepted", true, "PartiallyInvalid", "some targetRefs are not bound to a waypoint".into())
            }
            None => ("WaypointAccepted", false, "TargetNotFound", "not bound to a waypoint".into()),
        };
    }
    match spec["action"].as_str().unwrap_or("ALLOW") {
        "CUSTOM" => ("ZtunnelAccepted", false, "UnsupportedValue", "ztunnel does not support the CUSTOM action".into()),
        "ALLOW" => {
            let http = http_attributes(spec);
            if http.is_empty() {
                ("ZtunnelAccepted", true, "Accepted", "attached to ztunnel".into())
            } else {
                let message = format!(
                    "ztunnel does not support HTTP attributes (found: {}). In ambient mode you must use a waypoint proxy to enforce HTTP rules. Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested.",
                    http.join(", ")
                );
                ("ZtunnelAccepted", false, "UnsupportedValue", message)
            }
        }
        _ => ("ZtunnelAccepted", true, "Accepted", "attached to ztunnel".into()),
    }
}

/// The waypoint a Service uses: its own `istio.io/use-waypoint` label, else its namespace's.
fn waypoint_label(
    service: &BTreeMap<String, String>,
    namespace: &BTreeMap<String, String>,
    service_namespace: &str,
) -> Option<(String, String)> {
    let (labels, name) = match service.get(USE_WAYPOINT_LABEL) {
        Some(name) => (service, name),
        None => (namespace, namespace.get(USE_WAYPOINT_LABEL)?),
    };
    if name == "none" {
        return None;
    }
    let waypoint_namespace =
        labels.get(USE_WAYPOINT_NAMESPACE_LABEL).cloned().unwrap_or_else(|| service_namespace.to_string());
    Some((waypoint_namespace, name.clone()))
}

#[derive(Clone)]
struct Stores {
    istios: Store<DynamicObject>,
    gateways: Store<DynamicObject>,
    namespaces: Store<Namespace>,
    services: Store<Service>,
}

/// Whether a control plane runs with an ambient profile (istiod then writes ambient status).
fn ambient_control_plane(istios: &Store<DynamicObject>) -> bool {
    istios.state().iter().any(|istio| istio.data["spec"]["profile"].as_str().is_some_and(is_ambient_profile))
}

impl Stores {
    fn ambient(&self) -> bool {
        ambient_control_plane(&self.istios)
    }

    /// A Programmed waypoint Gateway `namespace/name`.
    fn waypoint(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        let key = ObjectRef::new_with(name, ApiResource::from_gvk(&gateway_gvk())).within(namespace);
        self.gateways.get(&key).filter(|gateway| gateway.data["spec"]["gatewayClassName"] == WAYPOINT_CLASS)
    }

    fn service_waypoint(&self, service: &Service) -> Option<(String, String)> {
        let namespace = service.namespace().unwrap_or_default();
        let namespace_labels =
            self.namespaces.get(&ObjectRef::new(&namespace)).map(|ns| ns.labels().clone()).unwrap_or_default();
        waypoint_label(service.labels(), &namespace_labels, &namespace)
    }
}

fn programmed(gateway: &DynamicObject) -> bool {
    gateway.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Programmed" && c["status"] == "True")
}

/// Replaces the condition of `type_` in `existing`, keeping the transition time when unchanged;
/// `None` when nothing changes.
fn merged_conditions(
    existing: &Value,
    verdict: Option<&Verdict>,
    remove: &[&str],
    generation: Option<i64>,
) -> Option<Value> {
    let current: Vec<Value> = existing.as_array().cloned().unwrap_or_default();
    let mut next: Vec<Value> = current.iter().filter(|c| !remove.iter().any(|t| c["type"] == *t)).cloned().collect();
    if let Some((type_, ok, reason, message)) = verdict {
        next.push(condition(existing, type_, *ok, reason, message, generation));
    }
    let key = |conditions: &Vec<Value>| {
        let mut keys: Vec<String> =
            conditions.iter().map(|c| format!("{}{}{}{}", c["type"], c["status"], c["reason"], c["message"])).collect();
        keys.sort();
        keys
    };
    (key(&current) != key(&next)).then_some(Value::Array(next))
}

struct Context {
    client: Client,
    stores: Stores,
}

async fn reconcile_policy(policy: Arc<DynamicObject>, context: Arc<Context>) -> Result<Action, Error> {
    let stores = &context.stores;
    let namespace = policy.namespace().unwrap_or_default();
    let verdict = stores.ambient().then(|| {
        policy_verdict(&policy.data["spec"], |kind, name| match kind {
            "Gateway" => stores.waypoint(&namespace, name).map(|_| format!("{namespace}/{name}")),
            "Service" => {
                let service = stores.services.get(&ObjectRef::new(name).within(&namespace))?;
                let (waypoint_namespace, waypoint) = stores.service_waypoint(&service)?;
                stores.waypoint(&waypoint_namespace, &waypoint).map(|_| format!("{waypoint_namespace}/{waypoint}"))
            }
            _ => None,
        })
    });
    let existing = &policy.data["status"]["conditions"];
    if let Some(conditions) = merged_conditions(
        existing,
        verdict.as_ref(),
        &["ZtunnelAccepted", "WaypointAccepted"],
        policy.metadata.generation,
    ) {
        let policies = api(&context.client, &policy_gvk(), Some(&namespace));
        match patch_status(&policies, &policy.name_any(), json!({"conditions": conditions})).await {
            Err(Error::Kube(err)) if is_not_found(&err) => {}
            other => other?,
        }
    }
    Ok(Action::await_change())
}

async fn reconcile_service(service: Arc<Service>, context: Arc<Context>) -> Result<Action, Error> {
    let stores = &context.stores;
    let verdict: Option<Verdict> =
        stores.service_waypoint(&service).filter(|_| stores.ambient()).map(|(namespace, name)| {
            match stores.waypoint(&namespace, &name) {
                Some(gateway) if programmed(&gateway) => {
                    (WAYPOINT_BOUND, true, "Bound", format!("bound to {namespace}/{name}"))
                }
                Some(_) => (
                    WAYPOINT_BOUND,
                    false,
                    "WaypointIsNotReady",
                    format!("waypoint \"{namespace}/{name}\" is not ready"),
                ),
                None => (WAYPOINT_BOUND, false, "NoWaypoint", format!("waypoint \"{namespace}/{name}\" not found")),
            }
        });
    let existing =
        serde_json::to_value(service.status.as_ref().and_then(|status| status.conditions.clone())).unwrap_or_default();
    if let Some(conditions) =
        merged_conditions(&existing, verdict.as_ref(), &[WAYPOINT_BOUND], service.metadata.generation)
    {
        let services: Api<Service> = Api::namespaced(context.client.clone(), &service.namespace().unwrap_or_default());
        let patch = json!({"status": {"conditions": conditions}});
        match services.patch_status(&service.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Err(err) if is_not_found(&err) => {}
            other => {
                other?;
            }
        }
    }
    Ok(Action::await_change())
}

fn error_policy<K>(_object: Arc<K>, error: &Error, _context: Arc<Context>) -> Action {
    tracing::warn!("istiod status: {error}");
    Action::requeue(Duration::from_secs(1))
}

/// Runs istiod's status writers until the task is dropped; without the Gateway API there are no
/// waypoints and nothing to write.
pub async fn run(client: Client) -> Result<(), Error> {
    if !gateway_api_installed(&client).await? {
        return Ok(());
    }
    let istio_resource = ApiResource::from_gvk(&Component::Istio.gvk());
    let gateway_resource = ApiResource::from_gvk(&gateway_gvk());
    let policy_resource = ApiResource::from_gvk(&policy_gvk());
    let istio_writer = reflector::store::Writer::new(istio_resource.clone());
    let gateway_writer = reflector::store::Writer::new(gateway_resource.clone());
    let namespace_writer = reflector::store::Writer::<Namespace>::default();
    let service_writer = reflector::store::Writer::<Service>::default();
    let stores = Stores {
        istios: istio_writer.as_reader(),
        gateways: gateway_writer.as_reader(),
        namespaces: namespace_writer.as_reader(),
        services: service_writer.as_reader(),
    };
    let ([istio_changes, istio_changes_for_services], follow_istios) =
        follow_with_triggers(api(&client, &Component::Istio.gvk(), None), istio_writer);
    let ([gateway_changes, gateway_changes_for_services], follow_gateways) =
        follow_with_triggers(api(&client, &gateway_gvk(), None), gateway_writer);
    let ([namespace_changes, namespace_changes_for_services], follow_namespaces) =
        follow_with_triggers(Api::<Namespace>::all(client.clone()), namespace_writer);
    let ([service_changes, service_changes_for_services], follow_services) =
        follow_with_triggers(Api::<Service>::all(client.clone()), service_writer);
    let policies =
        Controller::new_with(api(&client, &policy_gvk(), None), watcher::Config::default(), policy_resource.clone());
    // The Service controller runs on the same watch as the store the policy verdicts read.
    let services = Controller::for_stream(service_changes_for_services, stores.services.clone());

    // A control plane change can change any verdict; while ambient, a waypoint change can too,
    // and a Service or namespace change those of its namespace. Unchanged statuses are not
    // written, and outside ambient nothing but the control plane triggers work (the large
    // scenario's thousands of objects stay cheap).
    let policy_store = policies.store();
    let service_store = stores.services.clone();
    let istio_store = stores.istios.clone();
    let ambient = move || ambient_control_plane(&istio_store);
    let policies_in = move |namespace: Option<String>| {
        let refs: Vec<ObjectRef<DynamicObject>> = policy_store
            .state()
            .iter()
            .filter(|policy| namespace.is_none() || policy.namespace() == namespace)
            .map(|policy| ObjectRef::from_obj_with(policy.as_ref(), policy_resource.clone()))
            .collect();
        refs
    };
    let services_in = move |namespace: Option<String>| {
        let refs: Vec<ObjectRef<Service>> = service_store
            .state()
            .iter()
            .filter(|service| namespace.is_none() || service.namespace() == namespace)
            .map(|service| ObjectRef::from_obj(service.as_ref()))
            .collect();
        refs
    };
    let policies = {
        let (all, by_gateway, by_service, by_namespace) =
            (policies_in.clone(), policies_in.clone(), policies_in.clone(), policies_in);
        let (gateway_ambient, service_ambient, namespace_ambient) = (ambient.clone(), ambient.clone(), ambient.clone());
        policies
            .watches_stream_with(istio_changes, move |_| all(None), istio_resource.clone())
            .watches_stream_with(
                gateway_changes,
                move |_| if gateway_ambient() { by_gateway(None) } else { Vec::new() },
                gateway_resource.clone(),
            )
            .watches_stream(service_changes, move |service| {
                if service_ambient() { by_service(service.namespace()) } else { Vec::new() }
            })
            .watches_stream(namespace_changes, move |namespace| {
                if namespace_ambient() { by_namespace(Some(namespace.name_any())) } else { Vec::new() }
            })
    };
    let ready = stores.clone();
    let context = Arc::new(Context { client: client.clone(), stores });
    let policies =
        policies.run(reconcile_policy, error_policy, context.clone()).for_each(|_| futures::future::ready(()));
    let services = {
        let (all, by_gateway, by_namespace) = (services_in.clone(), services_in.clone(), services_in);
        let (gateway_ambient, namespace_ambient) = (ambient.clone(), ambient);
        services
            .watches_stream_with(istio_changes_for_services, move |_| all(None), istio_resource)
            .watches_stream_with(
                gateway_changes_for_services,
                move |_| if gateway_ambient() { by_gateway(None) } else { Vec::new() },
                gateway_resource,
            )
            .watches_stream(namespace_changes_for_services, move |namespace| {
                if namespace_ambient() { by_namespace(Some(namespace.name_any())) } else { Vec::new() }
            })
    };
    let services = services.run(reconcile_service, error_policy, context).for_each(|_| futures::future::ready(()));
    let controllers = async move {
        // Verdicts are read from the stores: none before they hold the cluster's state.
        let _ = tokio::join!(
            ready.istios.wait_until_ready(),
            ready.gateways.wait_until_ready(),
            ready.namespaces.wait_until_ready(),
            ready.services.wait_until_ready()
        );
        tokio::join!(policies, services);
    };
    tokio::join!(follow_istios, follow_gateways, follow_namespaces, follow_services, controllers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_policies_with_http_rules_are_refused_by_ztunnel_and_l4_ones_accepted() {
        let l7 = json!({"selector": {}, "action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]});
        let (type_, ok, reason, message) = policy_verdict(&l7, |_, _| None);
        assert_eq!((type_, ok, reason), ("ZtunnelAccepted", false, "UnsupportedValue"));
        assert!(message.contains("found: methods"), "{message}");
        let l4 = json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}]});
        assert!(policy_verdict(&l4, |_, _| None).1);
    }

    #[test]
    fn http_only_deny_policies_are_claimed_accepted_as_istio_1_27_does() {
        let deny = json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]});
        assert_eq!(policy_verdict(&deny, |_, _| None).0, "ZtunnelAccepted");
        assert!(policy_verdict(&deny, |_, _| None).1);
        assert!(!policy_verdict(&json!({"action": "CUSTOM"}), |_, _| None).1);
    }

    #[test]
    fn target_ref_policies_are_accepted_only_when_bound_to_a_waypoint() {
        let targeted = json!({"targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}], "rules": [{}]});
        assert_eq!(
            policy_verdict(&targeted, |_, _| Some("ns/waypoint".into())),
            ("WaypointAccepted", true, "Accepted", "bound to ns/waypoint".into())
        );
        assert_eq!(policy_verdict(&targeted, |_, _| None).2, "TargetNotFound");
    }

    #[test]
    fn the_service_label_wins_over_the_namespace_label_and_none_opts_out() {
        let labels = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()
        };
        let namespace = labels(&[(USE_WAYPOINT_LABEL, "waypoint")]);
        assert_eq!(waypoint_label(&labels(&[]), &namespace, "ns"), Some(("ns".into(), "waypoint".into())));
        let own = labels(&[(USE_WAYPOINT_LABEL, "reviews-wp"), (USE_WAYPOINT_NAMESPACE_LABEL, "shared")]);
        assert_eq!(waypoint_label(&own, &namespace, "ns"), Some(("shared".into(), "reviews-wp".into())));
        assert_eq!(waypoint_label(&labels(&[(USE_WAYPOINT_LABEL, "none")]), &namespace, "ns"), None);
    }

    #[test]
    fn conditions_change_only_when_the_verdict_does() {
        let verdict: Verdict = ("ZtunnelAccepted", true, "Accepted", "attached to ztunnel".into());
        let first = merged_conditions(&Value::Null, Some(&verdict), &["ZtunnelAccepted"], Some(1)).unwrap();
        assert_eq!(merged_conditions(&first, Some(&verdict), &["ZtunnelAccepted"], Some(1)), None);
        assert_eq!(merged_conditions(&first, None, &["ZtunnelAccepted"], Some(1)), Some(json!([])));
    }
}
