//! Loading prepared objects into a control plane as they would be on a real cluster: created
//! (server-side apply, so reloading is idempotent) and with their `status` written through the
//! status subresource, which a create alone ignores.

use std::collections::BTreeMap;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, Scope, pinned_kind};
use kube::{Client, ResourceExt};

use crate::Error;

const MANAGER: &str = "oc-ambient-testenv";

/// Namespaces and service accounts first: pods need both to exist.
fn order(object: &DynamicObject) -> u8 {
    match object.types.as_ref().map(|t| t.kind.as_str()) {
        Some("Namespace") | Some("CustomResourceDefinition") => 0,
        Some("ServiceAccount") => 1,
        Some("Pod") => 3,
        _ => 2,
    }
}

/// Creates or updates every object, then writes its status.
pub async fn apply_all(client: &Client, objects: &[DynamicObject]) -> Result<(), Error> {
    let mut resources: BTreeMap<(String, String), (ApiResource, ApiCapabilities)> = BTreeMap::new();
    let mut sorted: Vec<&DynamicObject> = objects.iter().collect();
    sorted.sort_by_key(|object| order(object));
    for object in sorted {
        let types = object
            .types
            .as_ref()
            .ok_or_else(|| Error::Fixtures(format!("{} has no apiVersion/kind", object.name_any())))?;
        let key = (types.api_version.clone(), types.kind.clone());
        if !resources.contains_key(&key) {
            let (group, version) = match types.api_version.rsplit_once('/') {
                Some((group, version)) => (group.to_string(), version.to_string()),
                None => (String::new(), types.api_version.clone()),
            };
            let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
            resources.insert(key.clone(), pinned_kind(client, &gvk).await?);
        }
        let (resource, capabilities) = &resources[&key];
        let api: Api<DynamicObject> = match (&capabilities.scope, object.namespace()) {
            (Scope::Namespaced, Some(namespace)) => Api::namespaced_with(client.clone(), &namespace, resource),
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), resource),
            (Scope::Cluster, _) => Api::all_with(client.clone(), resource),
        };
        let mut body = object.clone();
        body.metadata.resource_version = None;
        body.metadata.uid = None;
        body.metadata.managed_fields = None;
        let name = object.name_any();
        let applied = api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
        if let Some(status) = object.data.get("status") {
            replace_status(&api, applied, status).await?;
        }
    }
    Ok(())
}

/// Writes `status` with a replace, not a merge patch: merge patches drop `null` fields that some
/// status schemas require (ClusterVersion's availableUpdates). Controllers may update the object
/// meanwhile (nodes, say), so a conflict is retried on the fresh object.
async fn replace_status(
    api: &Api<DynamicObject>,
    mut current: DynamicObject,
    status: &serde_json::Value,
) -> Result<(), Error> {
    let name = current.name_any();
    for _ in 0..10 {
        current.data["status"] = status.clone();
        let bytes = serde_json::to_vec(&current).map_err(|err| Error::Fixtures(err.to_string()))?;
        match api.replace_status(&name, &PostParams::default(), bytes).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(response)) if response.code == 409 => current = api.get(&name).await?,
            Err(err) => return Err(err.into()),
        }
    }
    Err(Error::Fixtures(format!("status of {name} kept conflicting")))
}
