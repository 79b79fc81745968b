//! The OpenShift and OLM objects the suite reads to judge the platform: `ClusterVersion`
//! `version`, the config and operator `Network` `cluster`, and the OSSM 3 ClusterServiceVersion
//! (from the operator's bundle manifest, with the version and phase of the scenario).

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::json;

use crate::Error;
use crate::kubelet::now;
use crate::resources::{api, apply, from_json, patch_status};

/// The namespace OLM installs cluster-wide operators into.
pub const OPERATORS_NAMESPACE: &str = "openshift-operators";
/// The bundle manifest of the Sail operator, relative to the fixtures directory.
const CSV_MANIFEST: &str = "samples/sail-operator/bundle/manifests/servicemeshoperator3.clusterserviceversion.yaml";

/// What a scenario's platform looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    /// e.g. `4.19.9`.
    pub openshift_version: String,
    /// The OSSM operator version, e.g. `3.2.0`.
    pub ossm_version: String,
    /// The OLM phase of the operator's CSV.
    pub csv_phase: String,
    /// `spec.defaultNetwork.type` of the operator Network.
    pub network_type: String,
    /// `ovnKubernetesConfig.gatewayConfig.routingViaHost`.
    pub routing_via_host: bool,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            openshift_version: "4.19.9".into(),
            ossm_version: "3.2.0".into(),
            csv_phase: "Succeeded".into(),
            network_type: "OVNKubernetes".into(),
            routing_via_host: true,
        }
    }
}

impl Platform {
    /// The Kubernetes version of the platform's kubelets (OpenShift 4.N ships Kubernetes 1.(N+13)).
    pub fn kubelet_version(&self) -> String {
        let minor: u32 = self.openshift_version.split('.').nth(1).and_then(|minor| minor.parse().ok()).unwrap_or(19);
        format!("v1.{}.5", minor + 13)
    }

    fn channel(&self) -> String {
        let mut parts = self.openshift_version.split('.');
        format!("stable-{}.{}", parts.next().unwrap_or("4"), parts.next().unwrap_or("19"))
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> GroupVersionKind {
    GroupVersionKind::gvk(group, version, kind)
}

/// The OSSM operator CSV of `version` from the bundle manifest.
fn operator_csv(fixtures: &std::path::Path, platform: &Platform) -> Result<DynamicObject, Error> {
    let path = fixtures.join(CSV_MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|source| Error::Io { what: format!("read {}", path.display()), source })?;
    let mut csv: DynamicObject =
        serde_yaml_ng::from_str(&text).map_err(|err| Error::Invalid(format!("{}: {err}", path.display())))?;
    let version = &platform.ossm_version;
    csv.metadata.name = Some(format!("servicemeshoperator3.v{version}"));
    csv.metadata.namespace = Some(OPERATORS_NAMESPACE.into());
    csv.data["spec"]["version"] = json!(version);
    let previous = previous_release(version);
    if let Some(previous) = previous {
        csv.data["spec"]["replaces"] = json!(format!("servicemeshoperator3.v{previous}"));
    }
    if let Some(status) = csv.data.as_object_mut() {
        status.remove("status");
    }
    Ok(csv)
}

/// The release an OSSM version replaces in the channel (3.2.0 replaces 3.1.3, 3.2.1 replaces 3.2.0).
fn previous_release(version: &str) -> Option<String> {
    let parts: Vec<u32> = version.split('.').map(|part| part.parse().ok()).collect::<Option<_>>()?;
    match parts.as_slice() {
        [major, minor, 0] if *minor > 0 => Some(format!("{major}.{}.3", minor - 1)),
        [major, minor, patch] if *patch > 0 => Some(format!("{major}.{minor}.{}", patch - 1)),
        _ => None,
    }
}

/// Creates the platform objects with their status.
pub async fn install(client: &Client, platform: &Platform) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = from_json("namespace", json!({"metadata": {"name": OPERATORS_NAMESPACE}}))?;
    if namespaces.get_opt(OPERATORS_NAMESPACE).await?.is_none() {
        namespaces.create(&Default::default(), &namespace).await?;
    }
    let version = &platform.openshift_version;
    let image = format!("quay.io/openshift-release-dev/ocp-release@sha256:{:0>64}", version.replace('.', ""));
    let cluster_version: DynamicObject = from_json(
        "cluster version",
        json!({
            "apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": "version"},
            "spec": {"clusterID": "00000000-0000-4000-8000-000000000419", "channel": platform.channel()},
        }),
    )?;
    apply(client, &cluster_version).await?;
    let now = now();
    patch_status(&api(client, &gvk("config.openshift.io", "v1", "ClusterVersion"), None), "version", json!({
        "desired": {"version": version, "image": image, "channels": [platform.channel()]},
        "history": [{"state": "Completed", "version": version, "image": image, "startedTime": now, "completionTime": now, "verified": false}],
        "observedGeneration": 1, "versionHash": "simulated", "availableUpdates": [],
        "conditions": [
            {"type": "Available", "status": "True", "lastTransitionTime": now, "message": format!("Done applying {version}")},
            {"type": "Failing", "status": "False", "lastTransitionTime": now},
            {"type": "Progressing", "status": "False", "lastTransitionTime": now, "message": format!("Cluster version is {version}")},
        ],
    })).await?;

    let cluster_network = json!([{"cidr": "10.128.0.0/14", "hostPrefix": 23}]);
    // config.openshift.io Network has no status subresource: its status is written with it.
    let config_network: DynamicObject = from_json(
        "network config",
        json!({
            "apiVersion": "config.openshift.io/v1", "kind": "Network", "metadata": {"name": "cluster"},
            "spec": {"networkType": platform.network_type, "clusterNetwork": cluster_network, "serviceNetwork": ["172.30.0.0/16"]},
            "status": {"networkType": platform.network_type, "clusterNetwork": cluster_network, "serviceNetwork": ["172.30.0.0/16"], "clusterNetworkMTU": 1400},
        }),
    )?;
    apply(client, &config_network).await?;
    let mut default_network = json!({"type": platform.network_type});
    if platform.network_type == "OVNKubernetes" {
        default_network["ovnKubernetesConfig"] = json!({"mtu": 1400, "genevePort": 6081, "gatewayConfig": {"routingViaHost": platform.routing_via_host, "ipForwarding": "Restricted"}});
    }
    let operator_network: DynamicObject = from_json(
        "network operator",
        json!({
            "apiVersion": "operator.openshift.io/v1", "kind": "Network", "metadata": {"name": "cluster"},
            "spec": {"managementState": "Managed", "clusterNetwork": cluster_network, "serviceNetwork": ["172.30.0.0/16"], "defaultNetwork": default_network},
        }),
    )?;
    apply(client, &operator_network).await?;

    let csv = operator_csv(&oc_ambient_testenv::fixtures_dir(), platform)?;
    let name = csv.metadata.name.clone().unwrap_or_default();
    apply(client, &csv).await?;
    let phase = &platform.csv_phase;
    let reason = if phase == "Succeeded" { "InstallSucceeded" } else { "ComponentUnhealthy" };
    patch_status(&api(client, &gvk("operators.coreos.com", "v1alpha1", "ClusterServiceVersion"), Some(OPERATORS_NAMESPACE)), &name, json!({
        "phase": phase, "reason": reason, "message": if phase == "Succeeded" { "install strategy completed with no errors" } else { "installing: waiting for deployment servicemesh-operator3 to become ready" },
        "lastUpdateTime": now, "lastTransitionTime": now,
        "conditions": [{"phase": phase, "reason": reason, "lastUpdateTime": now, "lastTransitionTime": now}],
    })).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn field<'a>(object: &'a DynamicObject, path: &[&str]) -> &'a Value {
        path.iter().fold(&object.data, |value, key| &value[*key])
    }

    #[test]
    fn releases_replace_their_predecessor_in_the_channel() {
        assert_eq!(previous_release("3.2.0").as_deref(), Some("3.1.3"));
        assert_eq!(previous_release("3.1.2").as_deref(), Some("3.1.1"));
        assert_eq!(previous_release("3.0.0"), None);
        assert_eq!(previous_release("x"), None);
    }

    #[test]
    fn the_csv_comes_from_the_bundle_with_the_scenario_version() {
        let platform = Platform { ossm_version: "3.1.0".into(), ..Platform::default() };
        let csv = operator_csv(&oc_ambient_testenv::fixtures_dir(), &platform).unwrap();
        assert_eq!(csv.metadata.name.as_deref(), Some("servicemeshoperator3.v3.1.0"));
        assert_eq!(field(&csv, &["spec", "version"]), "3.1.0");
        assert_eq!(field(&csv, &["spec", "displayName"]), "Red Hat OpenShift Service Mesh 3");
        assert_eq!(Platform { openshift_version: "4.18.3".into(), ..Platform::default() }.kubelet_version(), "v1.31.5");
    }
}
