//! The one I/O waiter: watch the kinds a condition reads, keep them in a snapshot, and evaluate
//! the pure condition after every event until it holds or the time is up.
//!
//! The condition itself is a pure function of a [`Snapshot`] (see `plan::Wait::missing` in the
//! core), as kube-runtime splits `Condition<K>` from `await_condition`; so every condition is
//! tested without a cluster, and requests grow with events, never with polling.
//!
//! The waits of a round (`--concurrency`) share one watch per kind: in one namespace, the
//! namespace's; across several, the cluster's, keeping only the objects of those namespaces.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::apply::{api, api_resource, with_type};
use crate::change::ResourceRef;
use crate::client::Connection;
use crate::kinds::Kind;
use crate::snapshot::{Coverage, Snapshot, Source};

/// Waits until `missing` returns None for the objects of `kinds` in `namespaces` (and cluster-scoped
/// ones; all namespaces when empty); on timeout, `Err` says what was still missing.
pub async fn until<F>(
    connection: &Connection,
    kinds: &[Kind],
    namespaces: &BTreeSet<String>,
    timeout: Duration,
    missing: F,
) -> Result<(), String>
where
    F: Fn(&Snapshot) -> Option<String>,
{
    let namespace = match namespaces.len() {
        1 => namespaces.first().map(String::as_str),
        _ => None,
    };
    let wanted = |object: &DynamicObject| {
        namespaces.is_empty() || object.metadata.namespace.as_ref().is_none_or(|ns| namespaces.contains(ns))
    };
    let streams = kinds.iter().map(|kind| {
        let target = ResourceRef::new(*kind, namespace.filter(|_| kind.info().namespaced), "");
        let api = api(connection, &target, &api_resource(&target));
        let kind = *kind;
        watcher::watcher(api, watcher::Config::default()).default_backoff().map(move |event| (kind, event)).boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut store: std::collections::BTreeMap<(Kind, Option<String>, String), DynamicObject> = Default::default();
    let mut listed: BTreeSet<Kind> = Default::default();
    let mut last_missing = String::from("nothing observed yet");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some((kind, event))) = next else {
            return Err(last_missing);
        };
        let key = |object: &DynamicObject| {
            (kind, object.metadata.namespace.clone(), object.metadata.name.clone().unwrap_or_default())
        };
        match event {
            Ok(Event::Apply(object) | Event::InitApply(object)) => {
                if !wanted(&object) {
                    continue;
                }
                store.insert(key(&object), with_type(kind, object));
            }
            Ok(Event::Delete(object)) => {
                store.remove(&key(&object));
            }
            // A re-list (after a lost watch) replaces the kind's objects: until it is done the
            // store holds only part of them, which must not satisfy the condition.
            Ok(Event::Init) => {
                store.retain(|(stored, _, _), _| *stored != kind);
                listed.remove(&kind);
            }
            Ok(Event::InitDone) => {
                listed.insert(kind);
            }
            // The watcher retries after errors, with backoff; a lost connection or a restarted API
            // server only delays the wait.
            Err(_) => continue,
        }
        if listed.len() < kinds.len() {
            continue;
        }
        let mut snapshot = Snapshot::new(Source::Memory);
        for kind in kinds {
            snapshot.set_coverage(*kind, Coverage::Listed);
        }
        for object in store.values() {
            snapshot.insert(object.clone());
        }
        match missing(&snapshot) {
            None => return Ok(()),
            Some(text) => last_missing = text,
        }
    }
}
