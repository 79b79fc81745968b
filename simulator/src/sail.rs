//! The Sail operator (OSSM 3): reconciles `Istio`, `IstioCNI` and `ZTunnel` resources into the
//! workloads the real operator's charts install, and reports their health in `status` the way
//! the operator does (`state`, `Reconciled`/`Ready` conditions, revision counts).
//!
//! Health is not asserted, it is observed: the status follows the readiness of the istiod
//! Deployment and of the CNI and ztunnel DaemonSets, which the controller-manager computes from
//! the pods the simulated kubelets run. A component is made unhealthy by annotating its resource
//! with [`crate::kubelet::FAULT_ANNOTATION`]; the annotation is copied into the pod template, the
//! kubelets keep those pods unready, and the status turns `NotReady` by itself.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::Error;
use crate::injector::{INJECT_PATH, is_ambient_profile};
use crate::kubelet::FAULT_ANNOTATION;
use crate::resources::{api, apply, condition, from_json, patch_status};

/// The API group of the Sail operator.
pub const SAIL_GROUP: &str = "sailoperator.io";

/// The three resources of the operator the simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Istio,
    IstioCni,
    ZTunnel,
}

impl Component {
    pub fn kind(self) -> &'static str {
        match self {
            Component::Istio => "Istio",
            Component::IstioCni => "IstioCNI",
            Component::ZTunnel => "ZTunnel",
        }
    }

    pub fn gvk(self) -> GroupVersionKind {
        GroupVersionKind::gvk(SAIL_GROUP, "v1", self.kind())
    }

    /// The namespace the operator installs into when `spec.namespace` is not set.
    fn default_namespace(self) -> &'static str {
        match self {
            Component::Istio => "istio-system",
            Component::IstioCni => "istio-cni",
            Component::ZTunnel => "ztunnel",
        }
    }

    /// The reason of a `Ready=False` condition, as the operator words it.
    fn not_ready_reason(self) -> &'static str {
        match self {
            Component::Istio => "IstiodNotReady",
            Component::IstioCni => "IstioCNINotReady",
            Component::ZTunnel => "ZTunnelNotReady",
        }
    }
}

/// Where the API server reaches the injector, and the CA it must trust.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    pub ca_bundle_pem: String,
}

struct Context {
    client: Client,
    component: Component,
    webhook: WebhookEndpoint,
}

/// The name of istiod's Deployment and Service for a revision.
pub fn istiod_name(revision: &str) -> String {
    if revision == "default" { "istiod".into() } else { format!("istiod-{revision}") }
}

fn owner_reference(owner: &DynamicObject, component: Component) -> Value {
    json!([{
        "apiVersion": format!("{SAIL_GROUP}/v1"), "kind": component.kind(), "name": owner.name_any(),
        "uid": owner.metadata.uid, "controller": true, "blockOwnerDeletion": true,
    }])
}

/// The pod-template annotations a resource passes down (the fault switch, if set).
fn template_annotations(owner: &DynamicObject) -> Value {
    match owner.annotations().get(FAULT_ANNOTATION) {
        Some(fault) => json!({ FAULT_ANNOTATION: fault }),
        None => json!({}),
    }
}

fn image(component: &str, version: &str) -> String {
    format!("registry.redhat.io/openshift-service-mesh/{component}-rhel9:{}", version.trim_start_matches('v'))
}

fn istiod_objects(
    istio: &DynamicObject,
    namespace: &str,
    webhook: &WebhookEndpoint,
) -> Result<Vec<DynamicObject>, Error> {
    let revision = istio.name_any();
    let spec = &istio.data["spec"];
    let version = spec["version"].as_str().unwrap_or_default();
    let profile = spec["profile"].as_str().unwrap_or_default();
    let ambient = is_ambient_profile(profile);
    let name = istiod_name(&revision);
    let owners = owner_reference(istio, Component::Istio);
    let labels = json!({"app": "istiod", "istio": "pilot", "istio.io/rev": revision});
    let trusted_ztunnel = spec["values"]["pilot"]["trustedZtunnelNamespace"].as_str().unwrap_or_default();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": revision}},
            "template": {
                "metadata": {"labels": labels, "annotations": template_annotations(istio)},
                "spec": {"serviceAccountName": name, "containers": [{
                    "name": "discovery", "image": image("istio-pilot", version),
                    "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info", "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 15010, "protocol": "TCP"}, {"containerPort": 15017, "protocol": "TCP"}],
                    "env": [
                        {"name": "REVISION", "value": revision},
                        {"name": "PILOT_ENABLE_AMBIENT", "value": ambient.to_string()},
                        {"name": "CA_TRUSTED_NODE_ACCOUNTS", "value": if trusted_ztunnel.is_empty() { String::new() } else { format!("{trusted_ztunnel}/ztunnel") }},
                        {"name": "ISTIO_PROFILE", "value": profile},
                    ],
                }]},
            },
        },
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
        "spec": {"selector": {"app": "istiod", "istio.io/rev": revision}, "ports": [
            {"name": "grpc-xds", "port": 15010, "protocol": "TCP"}, {"name": "https-dns", "port": 15012, "protocol": "TCP"},
            {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"}, {"name": "http-monitoring", "port": 15014, "protocol": "TCP"}]},
    });
    let account = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
    });
    let istio_revision = json!({
        "apiVersion": format!("{SAIL_GROUP}/v1"), "kind": "IstioRevision",
        "metadata": {"name": revision, "ownerReferences": owners},
        "spec": {"version": version, "namespace": namespace, "values": revision_values(spec, namespace, &revision)},
    });
    [deployment, service, account, istio_revision, webhook_configuration(istio, webhook)?]
        .into_iter()
        .map(|value| from_json("istiod object", value))
        .collect()
}

/// `spec.values` as the operator stores them in the IstioRevision: with the profile, the
/// control plane namespace and the revision (empty for `default`) folded in.
fn revision_values(spec: &Value, namespace: &str, revision: &str) -> Value {
    let mut values = spec["values"].clone();
    if !values.is_object() {
        values = json!({});
    }
    if let Some(profile) = spec["profile"].as_str() {
        values["profile"] = json!(profile);
    }
    if !values["global"].is_object() {
        values["global"] = json!({});
    }
    values["global"]["istioNamespace"] = json!(namespace);
    values["revision"] = json!(if revision == "default" { "" } else { revision });
    values
}

/// The sidecar injector's registration, with istiod's webhooks and selectors for a revision:
/// `istio.io/rev=<rev>` on the namespace or the pod, and for the `default` revision also
/// `istio-injection=enabled` and the pod label `sidecar.istio.io/inject=true`; the pod label
/// `sidecar.istio.io/inject=false` opts out. Failure policy Fail, as istiod sets it.
fn webhook_configuration(istio: &DynamicObject, webhook: &WebhookEndpoint) -> Result<Value, Error> {
    let revision = istio.name_any();
    let default = revision == "default";
    let url = if default {
        format!("{}{INJECT_PATH}", webhook.base_url)
    } else {
        format!("{}{INJECT_PATH}/{revision}", webhook.base_url)
    };
    let ca_bundle = serde_json::to_value(ByteString(webhook.ca_bundle_pem.clone().into_bytes()))
        .map_err(|err| Error::Invalid(err.to_string()))?;
    let requirement = |key: &str, operator: &str, values: &[&str]| {
        if values.is_empty() {
            json!({"key": key, "operator": operator})
        } else {
            json!({"key": key, "operator": operator, "values": values})
        }
    };
    let hook = |name: &str, namespace_selector: Vec<Value>, object_selector: Vec<Value>| {
        json!({
            "name": name,
            "clientConfig": {"url": url, "caBundle": ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "failurePolicy": "Fail", "sideEffects": "None", "reinvocationPolicy": "Never",
            "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
            "namespaceSelector": {"matchExpressions": namespace_selector},
            "objectSelector": {"matchExpressions": object_selector},
        })
    };
    let not_opted_out = || requirement("sidecar.istio.io/inject", "NotIn", &["false"]);
    let mut hooks = vec![
        hook(
            "rev.namespace.sidecar-injector.istio.io",
            vec![requirement("istio.io/rev", "In", &[&revision]), requirement("istio-injection", "DoesNotExist", &[])],
            vec![not_opted_out()],
        ),
        hook(
            "rev.object.sidecar-injector.istio.io",
            vec![requirement("istio.io/rev", "DoesNotExist", &[]), requirement("istio-injection", "DoesNotExist", &[])],
            vec![not_opted_out(), requirement("istio.io/rev", "In", &[&revision])],
        ),
    ];
    if default {
        hooks.push(hook(
            "namespace.sidecar-injector.istio.io",
            vec![requirement("istio-injection", "In", &["enabled"])],
            vec![not_opted_out()],
        ));
        hooks.push(hook(
            "object.sidecar-injector.istio.io",
            vec![requirement("istio-injection", "DoesNotExist", &[]), requirement("istio.io/rev", "DoesNotExist", &[])],
            vec![
                requirement("sidecar.istio.io/inject", "In", &["true"]),
                requirement("istio.io/rev", "DoesNotExist", &[]),
            ],
        ));
    }
    let name =
        if default { "istio-sidecar-injector".to_string() } else { format!("istio-sidecar-injector-{revision}") };
    Ok(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app": "sidecar-injector", "istio.io/rev": revision}, "ownerReferences": owner_reference(istio, Component::Istio)},
        "webhooks": hooks,
    }))
}

/// The DaemonSet of istio-cni or ztunnel, and its service account.
fn daemonset_objects(
    owner: &DynamicObject,
    component: Component,
    namespace: &str,
) -> Result<Vec<DynamicObject>, Error> {
    let spec = &owner.data["spec"];
    let version = spec["version"].as_str().unwrap_or_default();
    let profile = spec["profile"].as_str().or_else(|| spec["values"]["profile"].as_str()).unwrap_or_default();
    let (name, container, image, host_network, env) = match component {
        Component::IstioCni => (
            "istio-cni-node",
            "install-cni",
            image("istio-cni", version),
            true,
            json!([{"name": "AMBIENT_ENABLED", "value": is_ambient_profile(profile).to_string()}, {"name": "CNI_NETWORK_CONFIG", "value": "istio-cni-config"}]),
        ),
        _ => (
            "ztunnel",
            "istio-proxy",
            image("ztunnel", version),
            false,
            json!([{"name": "CA_ADDRESS", "value": "istiod.istio-system.svc:15012"}]),
        ),
    };
    let labels = json!({"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "sail-operator", "sidecar.istio.io/inject": "false"});
    let account = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owner_reference(owner, component)},
    });
    let daemonset = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owner_reference(owner, component)},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels, "annotations": template_annotations(owner)},
                "spec": {"serviceAccountName": name, "hostNetwork": host_network, "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}, {"operator": "Exists", "effect": "NoExecute"}],
                    "containers": [{"name": container, "image": image, "env": env}]},
            },
        },
    });
    [account, daemonset].into_iter().map(|value| from_json("daemonset object", value)).collect()
}

/// Whether the workload behind a component has all its pods ready at the current spec.
async fn workload_ready(
    client: &Client,
    component: Component,
    owner: &DynamicObject,
    namespace: &str,
) -> Result<bool, Error> {
    Ok(match component {
        Component::Istio => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            api.get_opt(&istiod_name(&owner.name_any())).await?.is_some_and(|deployment| {
                let wanted = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
                let status = deployment.status.unwrap_or_default();
                status.observed_generation >= deployment.metadata.generation
                    && status.updated_replicas.unwrap_or(0) >= wanted
                    && status.ready_replicas.unwrap_or(0) >= wanted
                    && status.replicas.unwrap_or(0) == wanted
            })
        }
        Component::IstioCni | Component::ZTunnel => {
            let name = if component == Component::ZTunnel { "ztunnel" } else { "istio-cni-node" };
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
            api.get_opt(name).await?.is_some_and(|daemonset| {
                let status = daemonset.status.unwrap_or_default();
                status.observed_generation >= daemonset.metadata.generation
                    && status.desired_number_scheduled > 0
                    && status.number_ready == status.desired_number_scheduled
                    && status.updated_number_scheduled.unwrap_or(0) == status.desired_number_scheduled
            })
        }
    })
}

/// How many revisions are referenced by a namespace label.
async fn revisions_in_use(client: &Client, revision: &str) -> Result<i64, Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let by_revision =
        namespaces.list_metadata(&ListParams::default().labels(&format!("istio.io/rev={revision}")).limit(1)).await?;
    let by_default = revision == "default"
        && !namespaces
            .list_metadata(&ListParams::default().labels("istio-injection=enabled").limit(1))
            .await?
            .items
            .is_empty();
    Ok(i64::from(!by_revision.items.is_empty() || by_default))
}

/// True when two statuses differ in more than timestamps.
fn changed(old: &Value, new: &Value) -> bool {
    let strip = |value: &Value| {
        let mut value = value.clone();
        if let Some(conditions) = value["conditions"].as_array_mut() {
            for condition in conditions {
                if let Some(condition) = condition.as_object_mut() {
                    condition.remove("lastTransitionTime");
                }
            }
        }
        value
    };
    strip(old) != strip(new)
}

async fn reconcile(owner: Arc<DynamicObject>, context: Arc<Context>) -> Result<Action, Error> {
    let component = context.component;
    let client = &context.client;
    if owner.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = owner.data["spec"]["namespace"].as_str().unwrap_or(component.default_namespace()).to_string();
    let existing = owner.data["status"].clone();
    let generation = owner.metadata.generation;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let (status, retry) = if namespaces.get_opt(&namespace).await?.is_none() {
        let message = format!("failed to reconcile: namespace {namespace:?} doesn't exist");
        let status = json!({
            "observedGeneration": generation, "state": "ReconcileError",
            "conditions": [condition(&existing["conditions"], "Reconciled", false, "ReconcileError", &message, None),
                           condition(&existing["conditions"], "Ready", false, component.not_ready_reason(), "not reconciled", None)],
        });
        (status, true)
    } else {
        let objects = match component {
            Component::Istio => istiod_objects(&owner, &namespace, &context.webhook)?,
            _ => daemonset_objects(&owner, component, &namespace)?,
        };
        // The IstioRevision as applied: its generation and current status.
        let mut applied_revision = None;
        for object in &objects {
            let applied = apply(client, object).await?;
            if applied.types.as_ref().is_some_and(|types| types.kind == "IstioRevision") {
                applied_revision = Some(applied);
            }
        }
        let ready = workload_ready(client, component, &owner, &namespace).await?;
        let (state, reason, message) = if ready {
            ("Healthy", "Healthy", String::new())
        } else {
            (
                "NotReady",
                component.not_ready_reason(),
                format!("{} pods in {namespace} are not ready", component.kind()),
            )
        };
        let mut status = json!({
            "observedGeneration": generation, "state": state,
            "conditions": [condition(&existing["conditions"], "Reconciled", true, "Reconciled", "", None), condition(&existing["conditions"], "Ready", ready, reason, &message, None)],
        });
        if component == Component::Istio {
            let revision = owner.name_any();
            let in_use = revisions_in_use(client, &revision).await?;
            status["revisions"] = json!({"total": 1, "ready": i64::from(ready), "inUse": in_use});
            status["activeRevisionName"] = json!(revision);
            let revisions = api(client, &GroupVersionKind::gvk(SAIL_GROUP, "v1", "IstioRevision"), None);
            let previous = applied_revision.as_ref().map(|applied| applied.data["status"].clone()).unwrap_or_default();
            let revision_status = json!({
                "observedGeneration": applied_revision.and_then(|applied| applied.metadata.generation), "state": state,
                "conditions": [condition(&previous["conditions"], "Reconciled", true, "Reconciled", "", None), condition(&previous["conditions"], "Ready", ready, reason, &message, None),
                               condition(&previous["conditions"], "InUse", in_use > 0, if in_use > 0 { "ReferencedByWorkloads" } else { "NotReferenced" }, "", None)],
            });
            if changed(&previous, &revision_status) {
                patch_status(&revisions, &revision, revision_status).await?;
            }
        }
        (status, !ready)
    };
    if changed(&existing, &status) {
        patch_status(&api(client, &component.gvk(), None), &owner.name_any(), status).await?;
    }
    // Namespaces and label changes are not watched here: look again while not healthy, and now
    // and then for the in-use count.
    Ok(Action::requeue(if retry { Duration::from_secs(1) } else { Duration::from_secs(10) }))
}

fn error_policy(_owner: Arc<DynamicObject>, error: &Error, context: Arc<Context>) -> Action {
    tracing::warn!("sail {}: {error}", context.component.kind());
    Action::requeue(Duration::from_secs(1))
}

/// Runs the reconciler of one component until the task is dropped.
pub async fn run(client: Client, component: Component, webhook: WebhookEndpoint) {
    let resource = ApiResource::from_gvk(&component.gvk());
    let owners = api(&client, &component.gvk(), None);
    let context = Arc::new(Context { client: client.clone(), component, webhook });
    // The owners are cluster-scoped and their workloads namespaced: `owns` would look the owner up
    // in the workload's namespace, so map owner references to cluster-scoped refs by hand.
    let kind = component.kind();
    let owner_of = move |meta: &kube::api::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .filter(|owner| owner.kind == kind && owner.api_version.starts_with(SAIL_GROUP))
            .map(|owner| ObjectRef::new_with(&owner.name, resource.clone()))
            .collect::<Vec<_>>()
    };
    let controller = Controller::new_with(owners, watcher::Config::default(), ApiResource::from_gvk(&component.gvk()));
    let controller = match component {
        Component::Istio => {
            let revision = ApiResource::from_gvk(&component.gvk());
            controller
                .watches(
                    Api::<Deployment>::all(client.clone()),
                    watcher::Config::default().labels("app=istiod"),
                    move |deployment| owner_of(&deployment.metadata),
                )
                // A namespace labelled for a revision changes that revision's in-use count at once,
                // as the real operator's namespace watch does; "default" also counts
                // `istio-injection=enabled`. A removed label is caught by the periodic requeue.
                .watches(Api::<Namespace>::all(client.clone()), watcher::Config::default(), move |namespace| {
                    let labelled = namespace.labels().get("istio.io/rev").map(String::as_str);
                    let mut names = vec!["default"];
                    names.extend(labelled.filter(|name| *name != "default"));
                    names.into_iter().map(|name| ObjectRef::new_with(name, revision.clone())).collect::<Vec<_>>()
                })
        }
        _ => controller.watches(
            Api::<DaemonSet>::all(client.clone()),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=sail-operator"),
            move |daemonset| owner_of(&daemonset.metadata),
        ),
    };
    controller.run(reconcile, error_policy, context).for_each(|_| futures::future::ready(())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn istio(name: &str, profile: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "sailoperator.io/v1", "kind": "Istio",
            "metadata": {"name": name, "uid": "u1", "annotations": {FAULT_ANNOTATION: "not-ready"}},
            "spec": {"version": "v1.27.3", "namespace": "istio-system", "profile": profile, "values": {"pilot": {"trustedZtunnelNamespace": "ztunnel"}}},
        }))
        .unwrap()
    }

    fn endpoint() -> WebhookEndpoint {
        WebhookEndpoint { base_url: "https://127.0.0.1:9443".into(), ca_bundle_pem: "PEM".into() }
    }

    #[test]
    fn the_default_revision_registers_four_webhooks_at_inject_and_others_two_at_their_path() {
        let default = webhook_configuration(&istio("default", "default"), &endpoint()).unwrap();
        assert_eq!(default["metadata"]["name"], "istio-sidecar-injector");
        assert_eq!(default["webhooks"].as_array().unwrap().len(), 4);
        assert_eq!(default["webhooks"][0]["clientConfig"]["url"], "https://127.0.0.1:9443/inject");
        assert_eq!(default["webhooks"][0]["failurePolicy"], "Fail");
        let canary = webhook_configuration(&istio("canary", "default"), &endpoint()).unwrap();
        assert_eq!(canary["webhooks"].as_array().unwrap().len(), 2);
        assert_eq!(canary["webhooks"][1]["clientConfig"]["url"], "https://127.0.0.1:9443/inject/canary");
    }

    #[test]
    fn istiod_follows_profile_version_and_fault() {
        let objects = istiod_objects(&istio("default", "ambient"), "istio-system", &endpoint()).unwrap();
        let deployment = &objects[0].data["spec"]["template"];
        assert_eq!(deployment["metadata"]["annotations"][FAULT_ANNOTATION], "not-ready");
        let container = &deployment["spec"]["containers"][0];
        assert!(container["image"].as_str().unwrap().ends_with(":1.27.3"));
        assert!(
            container["env"].as_array().unwrap().contains(&json!({"name": "PILOT_ENABLE_AMBIENT", "value": "true"}))
        );
        assert_eq!(objects[3].data["spec"]["values"]["profile"], "ambient");
    }

    #[test]
    fn status_comparison_ignores_transition_times_only() {
        let old =
            json!({"state": "Healthy", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "a"}]});
        let same =
            json!({"state": "Healthy", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "b"}]});
        let worse = json!({"state": "NotReady", "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "b"}]});
        assert!(!changed(&old, &same));
        assert!(changed(&old, &worse));
    }
}
