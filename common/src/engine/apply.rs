//! One change, written to the API server the safe way.
//!
//! - `Apply` is server-side apply with field manager `oc-ambient`: the suite owns exactly the
//!   fields it sets (forcing ownership of those fields only, as `kubectl apply --server-side
//!   --force-conflicts` does: the user asked for these values).
//! - `Delete` carries the uid and resourceVersion preconditions of the object that was planned
//!   from: a conflict means the object changed since, so re-read and re-plan, never overwrite.
//! - `Replace` reads the object and updates it with the restored labels, annotations and fields
//!   (`change::replaced`), under the plan's `resourceVersion` precondition when it has one, unless
//!   only the object's status changed since (same generation).
//! - `SetLabels` is a JSON merge patch of `metadata.labels` (`null` removes a label).
//! - `Restart` sets `kubectl.kubernetes.io/restartedAt` on the pod template, as
//!   `kubectl rollout restart` does.
//!
//! `--dry-run=server` sends every write with `dryRun=All`: the API server validates and
//! admits it, and stores nothing.

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};

use super::journal::FIELD_MANAGER;
use crate::change::{Change, ResourceRef};
use crate::client::Connection;
use crate::error::{ApiError, Request};
use crate::kinds::Kind;

/// The pod-template annotation `kubectl rollout restart` sets; its value is the restart's stamp.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// How often a `Replace` reads and updates an object whose status keeps changing under it.
const STATUS_RACE_ATTEMPTS: u32 = 3;

/// One read and update of a [`Change::Replace`].
async fn replace(
    api: &Api<DynamicObject>,
    target: &ResourceRef,
    object: &DynamicObject,
    resource_version: Option<&str>,
    params: &PostParams,
) -> Result<(), kube::Error> {
    match api.get_opt(&target.name).await? {
        // Already restored (a retry after a lost answer): nothing to send, and the precondition
        // would no longer hold.
        Some(live) if crate::change::replaced(&live, object) == live => Ok(()),
        Some(live) => {
            let mut restored = crate::change::replaced(&live, object);
            if resource_version.is_some() && !only_status_changed(&live, object) {
                restored.metadata.resource_version = resource_version.map(str::to_string);
            }
            api.replace(&target.name, params, &restored).await.map(|_| ())
        }
        None => Err(kube::Error::Api(kube::core::ErrorResponse {
            status: "Failure".into(),
            message: format!("{target} does not exist"),
            reason: "NotFound".into(),
            code: 404,
        })),
    }
}

/// True when `live` differs from the object a `Replace` was planned from in its status at most:
/// the `metadata.generation` the plan saw (which `planned` carries) is still the live one, which
/// the API server raises on every change but those of status and metadata. An operator reporting
/// health (Sail on its `Istio` while the rollback takes ztunnel away) then does not fail the
/// restore, which replaces labels and annotations with the planned ones anyway. Kinds without a
/// generation keep the plan's resourceVersion precondition.
fn only_status_changed(live: &DynamicObject, planned: &DynamicObject) -> bool {
    live.metadata.generation.is_some() && live.metadata.generation == planned.metadata.generation
}

/// The API resource of a reference, at the version the suite reads.
pub fn api_resource(target: &ResourceRef) -> ApiResource {
    let info = target.kind.info();
    let version = info.versions[0];
    ApiResource {
        group: info.group.into(),
        version: version.into(),
        api_version: info.api_version(),
        kind: info.name.into(),
        plural: info.plural.into(),
    }
}

pub fn api(connection: &Connection, target: &ResourceRef, resource: &ApiResource) -> Api<DynamicObject> {
    match &target.namespace {
        Some(namespace) => Api::namespaced_with(connection.client.clone(), namespace, resource),
        None => Api::all_with(connection.client.clone(), resource),
    }
}

/// The object a change touches, as it is now (None when it does not exist), with its type, as
/// the journal and the backup keep it.
pub async fn fetch(connection: &Connection, target: &ResourceRef) -> Result<Option<DynamicObject>, ApiError> {
    let resource = api_resource(target);
    api(connection, target, &resource)
        .get_opt(&target.name)
        .await
        .map(|found| found.map(|object| with_type(target.kind, object)))
        .map_err(|err| ApiError::from_kube(err, request("get", target), None))
}

/// Objects read from the API (a get, a list, a watch) carry no apiVersion and kind of their own;
/// snapshots, backups and journals classify objects by them.
pub fn with_type(kind: Kind, mut object: DynamicObject) -> DynamicObject {
    if object.types.is_none() {
        let info = kind.info();
        object.types = Some(kube::core::TypeMeta { api_version: info.api_version(), kind: info.name.into() });
    }
    object
}

/// The verb and resource RBAC must allow for a change.
pub fn permission(change: &Change) -> Option<(&'static str, ResourceRef)> {
    let target = change.target().ok()?;
    let verb = match change {
        Change::Delete { .. } => "delete",
        Change::Replace { .. } => "update",
        Change::Apply { .. } | Change::SetLabels { .. } | Change::Restart { .. } => "patch",
    };
    Some((verb, target))
}

pub fn request(verb: &str, target: &ResourceRef) -> Request {
    Request::new(verb, &target.kind.info().resource()).in_namespace(target.namespace.as_deref()).named(&target.name)
}

/// Sends one change (`dry_run`: with `dryRun=All`).
pub async fn apply(connection: &Connection, change: &Change, dry_run: bool, now: &str) -> Result<(), ApiError> {
    let invalid = |reason: String| ApiError::Rejected {
        request: Box::new(Request::new("apply", "a planned change")),
        code: 0,
        reason: "InvalidChange".into(),
        message: reason,
    };
    let target = change.target().map_err(|err| invalid(err.to_string()))?;
    let resource = api_resource(&target);
    let merge = PatchParams { dry_run, ..PatchParams::default() };
    let result = match change {
        Change::Apply { object } => {
            // The object's own apiVersion (a ZTunnel may be v1alpha1), with the kind's plural.
            let resource = match &object.types {
                Some(types) => ApiResource {
                    plural: resource.plural.clone(),
                    ..ApiResource::from_gvk(
                        &kube::core::GroupVersionKind::try_from(types).map_err(|err| invalid(err.to_string()))?,
                    )
                },
                None => resource,
            };
            api(connection, &target, &resource)
                .patch(
                    &target.name,
                    &PatchParams { dry_run, ..PatchParams::apply(FIELD_MANAGER).force() },
                    &Patch::Apply(object),
                )
                .await
                .map(|_| ())
        }
        Change::Replace { object, resource_version } => {
            let api = api(connection, &target, &resource);
            let params = PostParams { dry_run, ..PostParams::default() };
            let mut attempts = 1;
            loop {
                match replace(&api, &target, object, resource_version.as_deref(), &params).await {
                    // The status changed between the read and the update: read again.
                    Err(kube::Error::Api(status)) if status.code == 409 && attempts < STATUS_RACE_ATTEMPTS => {
                        attempts += 1;
                    }
                    other => break other,
                }
            }
        }
        Change::Delete { uid, resource_version, .. } => {
            let delete = DeleteParams {
                dry_run,
                preconditions: Some(Preconditions { uid: uid.clone(), resource_version: resource_version.clone() }),
                ..DeleteParams::default()
            };
            match api(connection, &target, &resource).delete(&target.name, &delete).await {
                // Already gone: what the change wanted.
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                other => other.map(|_| ()),
            }
        }
        Change::SetLabels { labels, .. } => {
            let body = json!({"metadata": {"labels": labels}});
            api(connection, &target, &resource).patch(&target.name, &merge, &Patch::Merge(body)).await.map(|_| ())
        }
        Change::Restart { .. } => {
            let body: Value = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
            api(connection, &target, &resource).patch(&target.name, &merge, &Patch::Merge(body)).await.map(|_| ())
        }
    };
    let verb = match change {
        Change::Delete { .. } => "delete",
        Change::Replace { .. } => "update",
        _ => "patch",
    };
    result.map_err(|err| ApiError::from_kube(err, request(verb, &target), None))
}
