//! Installing the upstream CRDs from the shared fixtures and waiting until they are served.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::Error;

/// Which CRDs to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrdSet {
    /// Sail operator, Istio 1.27, Gateway API v1.3.0 standard, OLM CSV, OpenShift, prometheus-operator's
    /// PodMonitor, ServiceMonitor and PrometheusRule.
    All,
    /// Everything but the Gateway API CRDs (for the "Gateway API missing" scenario).
    WithoutGatewayApi,
    /// None at all.
    None,
}

const GATEWAY_API: &str = "crds/gateway-api/v1.3.0/standard";

/// The CRD files of a set, relative to the fixtures directory.
pub fn files(set: &CrdSet) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "crds/sail-operator/sailoperator.io_istios.yaml",
        "crds/sail-operator/sailoperator.io_istiocnis.yaml",
        "crds/sail-operator/sailoperator.io_ztunnels.yaml",
        "crds/sail-operator/sailoperator.io_istiorevisions.yaml",
        "crds/sail-operator/sailoperator.io_istiorevisiontags.yaml",
        "crds/istio/crd-all.gen.yaml",
        "crds/olm/operators.coreos.com_clusterserviceversions.yaml",
        "crds/openshift/0000_00_cluster-version-operator_01_clusterversions-Default.crd.yaml",
        "crds/openshift/0000_10_config-operator_01_networks.crd.yaml",
        "crds/openshift/0000_70_network_01_networks.crd.yaml",
        "crds/prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
        "crds/prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
        "crds/prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    match set {
        CrdSet::All => {
            for name in ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants"] {
                files.push(Path::new(GATEWAY_API).join(format!("gateway.networking.k8s.io_{name}.yaml")));
            }
        }
        CrdSet::WithoutGatewayApi => {}
        CrdSet::None => files.clear(),
    }
    files
}

/// Reads every CRD document of the set.
pub fn load(fixtures: &Path, set: &CrdSet) -> Result<Vec<CustomResourceDefinition>, Error> {
    let mut crds = Vec::new();
    for relative in files(set) {
        let path = fixtures.join(&relative);
        let text = std::fs::read_to_string(&path).map_err(|err| {
            Error::Fixtures(format!(
                "{}: {err} (set OC_AMBIENT_FIXTURES to the shared fixtures directory)",
                path.display()
            ))
        })?;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Option<CustomResourceDefinition> = serde::Deserialize::deserialize(document)
                .map_err(|err| Error::Fixtures(format!("{}: {err}", path.display())))?;
            if let Some(crd) = value {
                crds.push(crd);
            }
        }
    }
    Ok(crds)
}

/// Creates the CRDs and waits until each is Established.
pub async fn install(client: &Client, fixtures: &Path, set: &CrdSet) -> Result<(), Error> {
    let crds = load(fixtures, set)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let creations = crds.iter().map(|crd| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), crd).await }
    });
    for result in futures::future::join_all(creations).await {
        match result {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    let names: Vec<String> = crds.iter().filter_map(|crd| crd.metadata.name.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = api.list(&Default::default()).await?;
        let pending: Vec<&String> = names
            .iter()
            .filter(|name| {
                !listed.items.iter().any(|crd| {
                    crd.metadata.name.as_ref() == Some(*name)
                        && crd.status.as_ref().and_then(|status| status.conditions.as_ref()).is_some_and(|conditions| {
                            conditions.iter().any(|c| c.type_ == "Established" && c.status == "True")
                        })
                })
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Fixtures(format!("CRDs not Established after 60s: {pending:?}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
