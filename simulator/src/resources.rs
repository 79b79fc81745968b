//! Untyped access to any kind the simulator writes (mesh CRs, Gateway API, OpenShift, OLM), so the
//! scenarios can load upstream YAML as-is and the controllers can patch kinds k8s-openapi lacks.

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::Error;

/// The field manager of every write the simulator makes.
pub const FIELD_MANAGER: &str = "oc-ambient-simulator";

/// The API of a kind, in `namespace` or cluster-wide.
pub fn api(client: &Client, gvk: &GroupVersionKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(gvk);
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// The group/version/kind an object declares.
pub fn gvk_of(object: &DynamicObject) -> Result<GroupVersionKind, Error> {
    let types =
        object.types.as_ref().ok_or_else(|| Error::Invalid(format!("{} has no apiVersion/kind", object.name_any())))?;
    let (group, version) = types.api_version.rsplit_once('/').unwrap_or(("", types.api_version.as_str()));
    Ok(GroupVersionKind::gvk(group, version, &types.kind))
}

/// Creates or updates `object` by server-side apply (the simulator owns what it writes).
pub async fn apply(client: &Client, object: &DynamicObject) -> Result<DynamicObject, Error> {
    let gvk = gvk_of(object)?;
    let name = object.metadata.name.clone().ok_or_else(|| Error::Invalid(format!("a {} without a name", gvk.kind)))?;
    let api = api(client, &gvk, object.metadata.namespace.as_deref());
    let mut body = object.clone();
    body.metadata.resource_version = None;
    body.metadata.managed_fields = None;
    Ok(api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?)
}

/// Creates `object`, or applies it when it exists already: a plain create is much cheaper for the
/// API server than server-side apply, which matters for the thousands of objects of a large mesh.
pub async fn create_or_apply(client: &Client, object: &DynamicObject) -> Result<DynamicObject, Error> {
    let gvk = gvk_of(object)?;
    match api(client, &gvk, object.metadata.namespace.as_deref()).create(&PostParams::default(), object).await {
        Err(kube::Error::Api(status)) if status.code == 409 && status.reason == "AlreadyExists" => {
            apply(client, object).await
        }
        other => Ok(other?),
    }
}

/// Merges `status` into the status subresource of an object.
pub async fn patch_status(api: &Api<DynamicObject>, name: &str, status: Value) -> Result<(), Error> {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    Ok(())
}

/// Builds a typed or untyped object from JSON, reporting what it was meant to be.
pub fn from_json<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|err| Error::Invalid(format!("{what}: {err}")))
}

/// A status condition. When `previous` (a conditions array) holds one of the same type and
/// status, its `lastTransitionTime` is kept, as controllers do.
pub fn condition(
    previous: &Value,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == type_ && c["status"] == status))
        .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
        .unwrap_or_else(crate::kubelet::now);
    let mut condition =
        json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since});
    if let Some(generation) = generation {
        condition["observedGeneration"] = json!(generation);
    }
    condition
}

/// True when the API server answered 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Follows a kind into the store behind `writer` (for lookups from reconcilers and the webhook)
/// until the returned future is dropped.
pub fn follow<K>(api: Api<K>, writer: Writer<K>) -> impl Future<Output = ()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let ([], follow) = follow_with_triggers(api, writer);
    follow
}

/// [`follow`], plus `N` trigger streams for `Controller::watches_stream`. Each yields a changed
/// object only after the store holds the change (or has dropped a deleted object). A reconciler
/// that reads the store must be triggered this way: with a second, separate watch as its
/// trigger, it can run before the store has seen the change, decide on stale state, and not run
/// again until something else changes.
pub fn follow_with_triggers<K, const N: usize>(
    api: Api<K>,
    writer: Writer<K>,
) -> ([impl Stream<Item = Result<K, watcher::Error>> + Send + 'static; N], impl Future<Output = ()>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut senders = Vec::with_capacity(N);
    let triggers = std::array::from_fn(|_| {
        let (sender, receiver) = mpsc::unbounded::<K>();
        senders.push(sender);
        receiver.map(Ok)
    });
    // The objects of a (re)list reach the store together at `InitDone`: trigger them then.
    let mut listed = Vec::new();
    let follow = watcher(api, watcher::Config::default()).default_backoff().reflect(writer).for_each(move |event| {
        let changed = match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => vec![object],
            Ok(watcher::Event::InitApply(object)) => {
                listed.push(object);
                Vec::new()
            }
            Ok(watcher::Event::InitDone) => std::mem::take(&mut listed),
            Ok(watcher::Event::Init) => {
                listed.clear();
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        for object in changed {
            for sender in &senders {
                // A closed channel means its controller has stopped: nothing left to trigger.
                let _ = sender.unbounded_send(object.clone());
            }
        }
        futures::future::ready(())
    });
    (triggers, follow)
}
