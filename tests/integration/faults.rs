//! The fault proxy and the API server restart of the test ground: each fault reaches a kube client
//! as the real failure would, and common's classification maps it to its kind.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use oc_ambient_common::error::{ApiError, Request};
use oc_ambient_testenv::{
    ADMIN_CONTEXT, Action, ControlPlane, CrdSet, Fault, FaultProxy, Options, RequestRecord, VIEWER_CONTEXT,
};
use serde_json::json;

use crate::support::{eventually, plane};

/// A namespace with a ConfigMap `settings`, made directly (not through the proxy).
async fn namespace_with_settings(plane: &ControlPlane, prefix: &str) -> String {
    let client = plane.client().await.unwrap();
    let ns = plane.namespace(&client, prefix).await.unwrap();
    let settings: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"mode": "sidecar"}})).unwrap();
    Api::<ConfigMap>::namespaced(client, &ns).create(&PostParams::default(), &settings).await.unwrap();
    ns
}

async fn patch_settings(client: &Client, ns: &str, params: &PatchParams) -> Result<ConfigMap, kube::Error> {
    let patch = Patch::Merge(json!({"data": {"mode": "ambient"}}));
    Api::<ConfigMap>::namespaced(client.clone(), ns).patch("settings", params, &patch).await
}

fn classify(err: kube::Error, ns: &str) -> ApiError {
    ApiError::from_kube(err, Request::new("patch", "configmaps").in_namespace(Some(ns)).named("settings"), None)
}

fn statuses(records: &[RequestRecord], method: &http::Method) -> Vec<Option<u16>> {
    records.iter().filter(|record| record.method == *method).map(|record| record.status).collect()
}

#[tokio::test]
async fn a_conflict_fails_one_patch_and_the_next_succeeds() {
    let plane = plane();
    let ns = namespace_with_settings(plane, "fault-conflict").await;
    let proxy = plane.fault_proxy().await.unwrap();
    let rule =
        proxy.inject(Fault::new(Action::status(409), "/configmaps/settings").unwrap().method(http::Method::PATCH));
    let client = proxy.client_for(ADMIN_CONTEXT).await.unwrap();

    let err = patch_settings(&client, &ns, &PatchParams::default()).await.unwrap_err();
    assert!(matches!(classify(err, &ns), ApiError::Conflict { .. }));
    let patched = patch_settings(&client, &ns, &PatchParams::default()).await.unwrap();
    assert_eq!(patched.data.unwrap()["mode"], "ambient");

    let requests = proxy.requests();
    assert_eq!(statuses(&requests, &http::Method::PATCH), [Some(409), Some(200)]);
    assert_eq!(requests.iter().map(|record| record.fault).collect::<Vec<_>>(), [Some(rule), None]);
}

#[tokio::test]
async fn throttling_carries_retry_after_and_server_errors_repeat_as_asked() {
    let plane = plane();
    let ns = namespace_with_settings(plane, "fault-throttle").await;
    let proxy = plane.fault_proxy().await.unwrap();
    let client = proxy.client_for(ADMIN_CONTEXT).await.unwrap();

    // kube keeps only the Status body of a failed request, so read the header from the raw answer.
    proxy.inject(Fault::new(Action::throttle(7), "/configmaps/settings").unwrap());
    let raw = http::Request::get(format!("/api/v1/namespaces/{ns}/configmaps/settings")).body(Vec::new()).unwrap();
    let response = client.send(raw.map(Into::into)).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "7");

    proxy.inject(Fault::new(Action::throttle(7), "/configmaps/settings").unwrap());
    let err = patch_settings(&client, &ns, &PatchParams::default()).await.unwrap_err();
    assert!(matches!(classify(err, &ns), ApiError::Unavailable { code: 429, .. }));

    proxy.inject(Fault::new(Action::status(500), "/configmaps/settings").unwrap().times(2));
    for _ in 0..2 {
        let err = patch_settings(&client, &ns, &PatchParams::default()).await.unwrap_err();
        assert!(matches!(classify(err, &ns), ApiError::Unavailable { code: 500, .. }));
    }
    patch_settings(&client, &ns, &PatchParams::default()).await.unwrap();
    assert_eq!(statuses(&proxy.requests(), &http::Method::PATCH), [Some(429), Some(500), Some(500), Some(200)]);
}

#[tokio::test]
async fn a_dropped_connection_is_a_transport_error() {
    let plane = plane();
    let ns = namespace_with_settings(plane, "fault-drop").await;
    let proxy = plane.fault_proxy().await.unwrap();
    let rule = proxy.inject(Fault::new(Action::Drop, "/configmaps/settings").unwrap().method(http::Method::PATCH));
    let client = proxy.client_for(ADMIN_CONTEXT).await.unwrap();

    let err = patch_settings(&client, &ns, &PatchParams::default()).await.unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "an answer, not a dropped connection: {err:?}");
    assert!(matches!(classify(err, &ns), ApiError::Failed { .. }));
    patch_settings(&client, &ns, &PatchParams::default()).await.unwrap();
    let patches: Vec<_> = proxy.requests().into_iter().filter(|record| record.method == http::Method::PATCH).collect();
    assert_eq!(
        patches.iter().map(|record| (record.status, record.fault)).collect::<Vec<_>>(),
        [(None, Some(rule)), (Some(200), None)]
    );
}

#[tokio::test]
async fn a_delay_holds_the_request_back() {
    let plane = plane();
    let ns = namespace_with_settings(plane, "fault-delay").await;
    let proxy = plane.fault_proxy().await.unwrap();
    let delay = Duration::from_millis(1500);
    proxy.inject(Fault::new(Action::Delay(delay), "/configmaps/settings").unwrap());
    let configmaps: Api<ConfigMap> = Api::namespaced(proxy.client_for(ADMIN_CONTEXT).await.unwrap(), &ns);

    let started = Instant::now();
    configmaps.get("settings").await.unwrap();
    assert!(started.elapsed() >= delay, "answered after {:?}", started.elapsed());
    let started = Instant::now();
    configmaps.get("settings").await.unwrap();
    assert!(started.elapsed() < delay, "the rule was for one request; took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_watch_streams_through_the_proxy() {
    let plane = plane();
    let ns = namespace_with_settings(plane, "fault-watch").await;
    let proxy = plane.fault_proxy().await.unwrap();
    let through_proxy: Api<ConfigMap> = Api::namespaced(proxy.client_for(ADMIN_CONTEXT).await.unwrap(), &ns);
    let version = through_proxy.get("settings").await.unwrap().resource_version().unwrap();
    let mut events = through_proxy.watch(&WatchParams::default(), &version).await.unwrap().boxed();

    // Changed directly, after the watch started: only a streamed answer can deliver the event.
    patch_settings(&plane.client().await.unwrap(), &ns, &PatchParams::default()).await.unwrap();
    // The server may first replay the object as Added; the patch must follow as Modified.
    let patched = async {
        while let Some(event) = events.try_next().await.unwrap() {
            if let WatchEvent::Modified(configmap) = event {
                return configmap;
            }
        }
        panic!("the watch ended before the patch arrived")
    };
    let configmap = tokio::time::timeout(Duration::from_secs(20), patched).await.unwrap();
    assert_eq!(configmap.data.unwrap()["mode"], "ambient");
    let watch =
        proxy.requests().into_iter().find(|record| record.query.as_deref().is_some_and(|q| q.contains("watch")));
    assert_eq!(watch.and_then(|record| record.status), Some(200));
}

#[tokio::test]
async fn the_proxy_keeps_each_callers_rbac_and_logs_dry_runs() {
    let plane = plane();
    let ns = namespace_with_settings(plane, "fault-rbac").await;
    let proxy = plane.fault_proxy().await.unwrap();

    let viewer = proxy.client_for(VIEWER_CONTEXT).await.unwrap();
    Api::<ConfigMap>::namespaced(viewer.clone(), &ns).get("settings").await.unwrap();
    let err = patch_settings(&viewer, &ns, &PatchParams::default()).await.unwrap_err();
    assert!(matches!(classify(err, &ns), ApiError::Forbidden { .. }));

    let admin = proxy.client_for(ADMIN_CONTEXT).await.unwrap();
    patch_settings(&admin, &ns, &PatchParams::default().dry_run()).await.unwrap();
    let patches: Vec<_> = proxy.requests().into_iter().filter(|record| record.method == http::Method::PATCH).collect();
    assert_eq!(patches.iter().map(|record| record.status).collect::<Vec<_>>(), [Some(403), Some(200)]);
    assert!(patches[1].query.as_deref().is_some_and(|query| query.contains("dryRun=All")), "{patches:?}");
    let unchanged = Api::<ConfigMap>::namespaced(admin, &ns).get("settings").await.unwrap();
    assert_eq!(unchanged.data.unwrap()["mode"], "sidecar", "a dry run changed the object");
}

#[tokio::test]
async fn a_client_works_again_after_the_api_server_restarts() {
    // A plane of its own: restarting the shared one would fail the tests running beside this one.
    let plane = ControlPlane::start(Options { crds: CrdSet::None }).await.unwrap();
    let ns = namespace_with_settings(&plane, "fault-restart").await;
    let proxy: FaultProxy = plane.fault_proxy().await.unwrap();
    let client = proxy.client_for(ADMIN_CONTEXT).await.unwrap();
    patch_settings(&client, &ns, &PatchParams::default()).await.unwrap();

    let before = plane.pids();
    plane.restart_apiserver().await.unwrap();
    let after = plane.pids();
    assert_eq!(before.len(), after.len());
    assert_eq!(before.iter().zip(&after).filter(|(old, new)| old != new).count(), 1, "{before:?} -> {after:?}");

    // The same client: its pooled connections died with the old process, so it retries.
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns);
    let settings = eventually("the ConfigMap read after the restart", Duration::from_secs(30), || async {
        configmaps.get("settings").await.ok()
    })
    .await;
    assert_eq!(settings.data.unwrap()["mode"], "ambient", "etcd kept the patch across the restart");
}
