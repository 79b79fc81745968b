//! istiod's Gateway API controller: the `istio` and `istio-waypoint` GatewayClasses, and for each
//! Gateway of those classes the Deployment, Service and ServiceAccount istiod generates (named
//! `<gateway>-istio` for ingress gateways, `<gateway>` for waypoints), with the Gateway status
//! (`Accepted`, `Programmed` once a pod is ready, addresses, listeners) and the parent status of
//! the HTTPRoutes attached to it.
//!
//! A Gateway's `spec.infrastructure.parametersRef` to a ConfigMap customizes what is generated, as
//! Istio's gateway deployment controller does: the `deployment` key (YAML) is merged into the
//! Deployment (strategic merge: containers by name) and the `podDisruptionBudget` key becomes a
//! PodDisruptionBudget selecting the gateway's pods, on every reconcile.
//!
//! Ingress Services are of type LoadBalancer; the simulator also plays the cloud load balancer
//! and assigns them addresses from 10.0.147.96 upwards, in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::Error;
use crate::resources::{api, apply, condition, from_json, patch_status};

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
pub const INGRESS_CLASS: &str = "istio";
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
const GATEWAY_CONTROLLER: &str = "istio.io/gateway-controller";
const MESH_CONTROLLER: &str = "istio.io/mesh-controller";
/// The label istiod puts on everything it generates for a Gateway.
const MANAGED_LABEL: &str = "gateway.istio.io/managed";

fn gvk(kind: &str) -> GroupVersionKind {
    GroupVersionKind::gvk(GATEWAY_GROUP, "v1", kind)
}

/// The name istiod gives the generated objects of a Gateway.
pub fn generated_name(gateway: &str, class: &str) -> String {
    if class == WAYPOINT_CLASS { gateway.to_string() } else { format!("{gateway}-{class}") }
}

struct Context {
    client: Client,
    next_address: AtomicU32,
}

/// The objects istiod generates for a Gateway, customized by the `parameters` (the data of the
/// ConfigMap its `spec.infrastructure.parametersRef` names).
fn generated_objects(
    gateway: &DynamicObject,
    class: &str,
    parameters: &BTreeMap<String, String>,
) -> Result<Vec<DynamicObject>, Error> {
    let gateway_name = gateway.name_any();
    let namespace = gateway.namespace().unwrap_or_default();
    let name = generated_name(&gateway_name, class);
    let waypoint = class == WAYPOINT_CLASS;
    let owners = json!([{"apiVersion": format!("{GATEWAY_GROUP}/v1"), "kind": "Gateway", "name": gateway_name, "uid": gateway.metadata.uid, "controller": true, "blockOwnerDeletion": true}]);
    let mut labels = json!({
        "gateway.networking.k8s.io/gateway-name": gateway_name,
        "gateway.networking.k8s.io/gateway-class-name": class,
        "istio.io/gateway-name": gateway_name,
        MANAGED_LABEL: "istio.io-gateway-controller",
    });
    let mut pod_labels = labels.clone();
    pod_labels["sidecar.istio.io/inject"] = json!("false");
    if waypoint {
        pod_labels["istio.io/dataplane-mode"] = json!("none");
        labels["istio.io/waypoint-for"] =
            json!(gateway.labels().get("istio.io/waypoint-for").cloned().unwrap_or_else(|| "service".into()));
    }
    let listener_ports: Vec<Value> = gateway.data["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|listener| {
            let port = listener["port"].as_i64().unwrap_or_default();
            let protocol = listener["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase();
            json!({"name": format!("{protocol}-{port}"), "port": port, "protocol": "TCP", "appProtocol": protocol})
        })
        .collect();
    let mut ports = vec![json!({"name": "status-port", "port": 15021, "protocol": "TCP", "appProtocol": "tcp"})];
    ports.extend(listener_ports);
    let args = if waypoint {
        json!(["proxy", "waypoint", "--domain", "$(POD_NAMESPACE).svc.cluster.local"])
    } else {
        json!(["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local"])
    };
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": gateway_name}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {"istio.io/rev": "default", "inject.istio.io/templates": if waypoint { "waypoint" } else { "gateway" }}},
                "spec": {"serviceAccountName": name, "containers": [{
                    "name": "istio-proxy", "image": format!("{}:1.27.3", crate::injector::PROXY_IMAGE), "args": args,
                    "ports": [{"name": "status-port", "containerPort": 15021, "protocol": "TCP"}],
                }]},
            },
        },
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
        "spec": {"type": if waypoint { "ClusterIP" } else { "LoadBalancer" }, "selector": {"gateway.networking.k8s.io/gateway-name": gateway_name}, "ports": ports},
    });
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners}});
    if let Some(overlay) = parameter(parameters, "deployment")? {
        strategic_merge(&mut deployment, &overlay);
    }
    let mut objects = vec![deployment, service, account];
    if let Some(overlay) = parameter(parameters, "podDisruptionBudget")? {
        let mut budget = json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
            "spec": {"selector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": gateway_name}}},
        });
        strategic_merge(&mut budget, &overlay);
        objects.push(budget);
    }
    objects.into_iter().map(|value| from_json("gateway object", value)).collect()
}

/// One key of the parameters, parsed as YAML.
fn parameter(parameters: &BTreeMap<String, String>, key: &str) -> Result<Option<Value>, Error> {
    parameters
        .get(key)
        .map(|text| serde_yaml_ng::from_str(text).map_err(|err| Error::Invalid(format!("parametersRef {key}: {err}"))))
        .transpose()
}

/// Kubernetes' strategic merge as far as the customization uses it: objects merge key by key,
/// lists of objects with a `name` merge by name, anything else is replaced.
fn strategic_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => strategic_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(overlay)) if overlay.iter().all(|item| item.get("name").is_some()) => {
            for item in overlay {
                match base.iter_mut().find(|existing| existing.get("name") == item.get("name")) {
                    Some(existing) => strategic_merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// The data of the ConfigMap a Gateway's `spec.infrastructure.parametersRef` names (empty when
/// it names none, or one that does not exist).
async fn parameters_of(
    client: &Client,
    gateway: &DynamicObject,
    namespace: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let reference = &gateway.data["spec"]["infrastructure"]["parametersRef"];
    let Some(name) = reference["name"].as_str().filter(|_| reference["kind"] == "ConfigMap") else {
        return Ok(BTreeMap::new());
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(config_maps.get_opt(name).await?.and_then(|config_map| config_map.data).unwrap_or_default())
}

/// The address the Gateway reports: the load balancer's for ingress, the cluster IP for waypoints.
async fn gateway_address(
    context: &Context,
    namespace: &str,
    name: &str,
    waypoint: bool,
) -> Result<Option<String>, Error> {
    let services: Api<Service> = Api::namespaced(context.client.clone(), namespace);
    let Some(service) = services.get_opt(name).await? else { return Ok(None) };
    if waypoint {
        return Ok(service.spec.and_then(|spec| spec.cluster_ip));
    }
    let assigned = service.status.and_then(|status| status.load_balancer?.ingress?.into_iter().next()?.ip);
    if assigned.is_some() {
        return Ok(assigned);
    }
    let index = context.next_address.fetch_add(1, Ordering::Relaxed);
    let ip = format!("10.0.{}.{}", 147 + (96 + index) / 256, (96 + index) % 256);
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
    services.patch_status(name, &Default::default(), &kube::api::Patch::Merge(status)).await?;
    Ok(Some(ip))
}

/// Marks the HTTPRoutes whose parent is this Gateway as accepted, and counts them per listener.
async fn attach_routes(
    client: &Client,
    gateway: &DynamicObject,
    namespace: &str,
    controller: &str,
) -> Result<i64, Error> {
    let routes = api(client, &gvk("HTTPRoute"), Some(namespace));
    let gateway_name = gateway.name_any();
    let mut attached = 0;
    for route in routes.list(&ListParams::default()).await?.items {
        let parents: Vec<Value> = route.data["spec"]["parentRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|parent| {
                parent["name"] == gateway_name.as_str()
                    && parent["kind"].as_str().unwrap_or("Gateway") == "Gateway"
                    && parent["namespace"].as_str().unwrap_or(namespace) == namespace
            })
            .cloned()
            .collect();
        if parents.is_empty() {
            continue;
        }
        attached += 1;
        let generation = route.metadata.generation;
        let statuses: Vec<Value> = parents
            .into_iter()
            .map(|parent| {
                json!({"parentRef": parent, "controllerName": controller, "conditions": [
                    condition(&Value::Null, "Accepted", true, "Accepted", "Route was valid", generation),
                    condition(&Value::Null, "ResolvedRefs", true, "ResolvedRefs", "All references resolved", generation)]})
            })
            .collect();
        if route.data["status"]["parents"].as_array().map(|existing| existing.len()) != Some(statuses.len()) {
            patch_status(&routes, &route.name_any(), json!({"parents": statuses})).await?;
        }
    }
    Ok(attached)
}

async fn reconcile(gateway: Arc<DynamicObject>, context: Arc<Context>) -> Result<Action, Error> {
    let class = gateway.data["spec"]["gatewayClassName"].as_str().unwrap_or_default().to_string();
    if gateway.metadata.deletion_timestamp.is_some() || (class != INGRESS_CLASS && class != WAYPOINT_CLASS) {
        return Ok(Action::await_change());
    }
    let client = &context.client;
    let namespace = gateway.namespace().unwrap_or_default();
    let name = generated_name(&gateway.name_any(), &class);
    let waypoint = class == WAYPOINT_CLASS;
    let parameters = parameters_of(client, &gateway, &namespace).await?;
    for object in generated_objects(&gateway, &class, &parameters)? {
        apply(client, &object).await?;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let ready = deployments.get_opt(&name).await?.and_then(|d| d.status?.ready_replicas).unwrap_or(0) > 0;
    let address = gateway_address(&context, &namespace, &name, waypoint).await?;
    let controller = if waypoint { MESH_CONTROLLER } else { GATEWAY_CONTROLLER };
    let attached = attach_routes(client, &gateway, &namespace, controller).await?;
    let generation = gateway.metadata.generation;
    let programmed = ready && address.is_some();
    let (reason, message) = if programmed {
        ("Programmed", format!("Resource programmed, assigned to service(s) {name}.{namespace}.svc.cluster.local"))
    } else {
        ("Pending", format!("Deployment {name} has no ready replicas"))
    };
    let listeners: Vec<Value> = gateway.data["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|listener| {
            let kinds = if listener["protocol"] == "HBONE" { json!([]) } else { json!([{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}, {"group": GATEWAY_GROUP, "kind": "GRPCRoute"}]) };
            json!({"name": listener["name"], "supportedKinds": kinds, "attachedRoutes": if waypoint { 0 } else { attached }, "conditions": [
                condition(&Value::Null, "Accepted", true, "Accepted", "No errors found", generation),
                condition(&Value::Null, "Conflicted", false, "NoConflicts", "No errors found", generation),
                condition(&Value::Null, "Programmed", programmed, reason, "", generation),
                condition(&Value::Null, "ResolvedRefs", true, "ResolvedRefs", "No errors found", generation)]})
        })
        .collect();
    let status = json!({
        "addresses": address.map(|ip| vec![json!({"type": "IPAddress", "value": ip})]).unwrap_or_default(),
        "conditions": [condition(&Value::Null, "Accepted", true, "Accepted", "Resource accepted", generation), condition(&Value::Null, "Programmed", programmed, reason, &message, generation)],
        "listeners": listeners,
    });
    let old = &gateway.data["status"];
    let summary = |status: &Value| {
        (
            status["addresses"].clone(),
            status["conditions"][1]["status"].clone(),
            status["listeners"].as_array().map(|l| l.iter().map(|l| l["attachedRoutes"].clone()).collect::<Vec<_>>()),
        )
    };
    if summary(old) != summary(&status) {
        patch_status(&api(client, &gvk("Gateway"), Some(&namespace)), &gateway.name_any(), status).await?;
    }
    // Routes created after the Gateway are picked up on the next pass.
    Ok(Action::requeue(Duration::from_secs(if programmed { 5 } else { 1 })))
}

fn error_policy(_gateway: Arc<DynamicObject>, error: &Error, _context: Arc<Context>) -> Action {
    tracing::warn!("gateway controller: {error}");
    Action::requeue(Duration::from_secs(1))
}

/// Whether the Gateway API is installed (the "CRDs missing" scenario has none).
pub async fn gateway_api_installed(client: &Client) -> Result<bool, Error> {
    match client.list_api_group_resources(&format!("{GATEWAY_GROUP}/v1")).await {
        Ok(resources) => Ok(resources.resources.iter().any(|resource| resource.kind == "Gateway")),
        Err(err) if crate::resources::is_not_found(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Creates the GatewayClasses istiod installs, accepted.
async fn install_classes(client: &Client) -> Result<(), Error> {
    let classes = api(client, &gvk("GatewayClass"), None);
    for (name, controller, description) in [
        (INGRESS_CLASS, GATEWAY_CONTROLLER, "The default Istio GatewayClass"),
        (WAYPOINT_CLASS, MESH_CONTROLLER, "The default Istio waypoint GatewayClass"),
    ] {
        let class: DynamicObject = from_json(
            "gateway class",
            json!({
                "apiVersion": format!("{GATEWAY_GROUP}/v1"), "kind": "GatewayClass",
                "metadata": {"name": name}, "spec": {"controllerName": controller, "description": description},
            }),
        )?;
        let created = apply(client, &class).await?;
        patch_status(&classes, name, json!({"conditions": [condition(&Value::Null, "Accepted", true, "Accepted", "Handled by Istio controller", created.metadata.generation)]})).await?;
    }
    Ok(())
}

/// Runs the gateway controller until the task is dropped; returns at once without Gateway API.
pub async fn run(client: Client) -> Result<(), Error> {
    if !gateway_api_installed(&client).await? {
        tracing::info!("gateway controller: the Gateway API is not installed");
        return Ok(());
    }
    install_classes(&client).await?;
    let gateways = api(&client, &gvk("Gateway"), None);
    let routes = api(&client, &gvk("HTTPRoute"), None);
    let context = Arc::new(Context { client: client.clone(), next_address: AtomicU32::new(0) });
    Controller::new_with(gateways, watcher::Config::default(), ApiResource::from_gvk(&gvk("Gateway")))
        .owns(Api::<Deployment>::all(client.clone()), watcher::Config::default().labels(MANAGED_LABEL))
        .watches_with(routes, ApiResource::from_gvk(&gvk("HTTPRoute")), watcher::Config::default(), |route| {
            let namespace = route.namespace().unwrap_or_default();
            route.data["spec"]["parentRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|parent| parent["name"].as_str())
                .map(|name| ObjectRef::new_with(name, ApiResource::from_gvk(&gvk("Gateway"))).within(&namespace))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, context)
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_objects_carry_the_class_suffix_and_waypoints_keep_the_gateway_name() {
        assert_eq!(generated_name("bookinfo-gateway", INGRESS_CLASS), "bookinfo-gateway-istio");
        assert_eq!(generated_name("waypoint", WAYPOINT_CLASS), "waypoint");
        let gateway: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "ns", "uid": "u"},
            "spec": {"gatewayClassName": WAYPOINT_CLASS, "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]},
        }))
        .unwrap();
        let objects = generated_objects(&gateway, WAYPOINT_CLASS, &BTreeMap::new()).unwrap();
        let pod_labels = &objects[0].data["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["gateway.networking.k8s.io/gateway-name"], "waypoint");
        assert_eq!(pod_labels["sidecar.istio.io/inject"], "false");
        assert_eq!(objects[1].data["spec"]["type"], "ClusterIP");
        assert_eq!(objects[1].data["spec"]["ports"][1]["port"], 15008);
        assert_eq!(objects.len(), 3, "no parameters: no PodDisruptionBudget");
    }

    #[test]
    fn parameters_customize_the_deployment_and_add_a_disruption_budget() {
        let gateway: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "ns", "uid": "u"},
            "spec": {"gatewayClassName": WAYPOINT_CLASS, "listeners": []},
        }))
        .unwrap();
        let parameters = BTreeMap::from([
            (
                "deployment".to_string(),
                "spec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - name: istio-proxy\n        resources: {requests: {memory: 128Mi}}\n".to_string(),
            ),
            ("podDisruptionBudget".to_string(), "spec: {minAvailable: 1}".to_string()),
        ]);
        let objects = generated_objects(&gateway, WAYPOINT_CLASS, &parameters).unwrap();
        let spec = &objects[0].data["spec"];
        assert_eq!(spec["replicas"], 2);
        let containers = spec["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "merged by name");
        assert_eq!(containers[0]["resources"]["requests"]["memory"], "128Mi");
        assert!(containers[0]["image"].is_string(), "the rest of the container is kept");
        let budget = &objects[3];
        assert_eq!(budget.types.as_ref().unwrap().kind, "PodDisruptionBudget");
        assert_eq!(budget.data["spec"]["minAvailable"], 1);
        assert_eq!(
            budget.data["spec"]["selector"]["matchLabels"]["gateway.networking.k8s.io/gateway-name"],
            "waypoint"
        );
    }
}
