use std::path::Path;

use serde_json::json;

use super::*;
use crate::model::dataplane::proxy_container;
use crate::snapshot::parse_documents;

const INPUT: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template: {metadata: {labels: {app: api}}, spec: {serviceAccountName: api, containers: [{name: api}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: shop}
spec:
  selector: {matchLabels: {app: batch}}
  template:
    metadata: {labels: {app: batch}, annotations: {sidecar.istio.io/inject: 'false'}}
    spec: {containers: [{name: batch}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-7d9f-a, namespace: shop, labels: {app: api, pod-template-hash: 7d9f}}
spec: {serviceAccountName: api, containers: [{name: api}]}
---
apiVersion: v1
kind: Pod
metadata: {name: batch-1, namespace: shop, labels: {app: batch}}
spec: {containers: [{name: batch}]}
---
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: shop, labels: {run: debug}}
spec: {containers: [{name: debug}, {name: istio-proxy}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: shop, uid: u-1, resourceVersion: '7'}
spec: {action: ALLOW}
";

fn input() -> Snapshot {
    Snapshot::from_objects(parse_documents(Path::new("test.yaml"), INPUT).unwrap())
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

fn policy_ref() -> ResourceRef {
    ResourceRef::new(Kind::AuthorizationPolicy, Some("shop"), "allow")
}

fn namespace_ref() -> ResourceRef {
    ResourceRef::new(Kind::Namespace, None, "shop")
}

fn deployment(name: &str) -> ResourceRef {
    ResourceRef::new(Kind::Deployment, Some("shop"), name)
}

fn pod_has_sidecar(snapshot: &Snapshot, name: &str) -> bool {
    let pod = snapshot.get(Kind::Pod, Some("shop"), name).unwrap();
    proxy_container(&pod.data["spec"]).is_some()
}

fn set_labels(target: ResourceRef, labels: &[(&str, Option<&str>)]) -> Change {
    let labels = labels.iter().map(|(key, value)| (key.to_string(), value.map(str::to_string))).collect();
    Change::SetLabels { target, labels }
}

#[test]
fn apply_merges_into_a_namesake_and_creates_the_rest() {
    let replacement = object(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "allow", "namespace": "shop"}, "spec": {"action": "DENY"}}));
    let new = object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"}}));
    let changes = [Change::Apply { object: replacement.clone() }, Change::Apply { object: new }];
    let simulation = simulate(&input(), &changes);
    assert_eq!(simulation.refused, Vec::new());
    let [applied] = simulation.snapshot.all(Kind::AuthorizationPolicy) else { panic!("one policy") };
    assert_eq!(applied.data["spec"], json!({"action": "DENY"}));
    assert_eq!(applied.metadata.uid.as_deref(), Some("u-1"), "server-side apply keeps the object");
    assert!(simulation.snapshot.get(Kind::Service, Some("shop"), "api").is_some());
    assert_eq!(changes[1].target(), Ok(ResourceRef::new(Kind::Service, Some("shop"), "api")));
}

#[test]
fn a_partial_apply_merges_maps_and_replaces_the_rest() {
    let existing = object(json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default",
        "labels": {"team": "mesh"}}, "spec": {"profile": "default", "version": "v1.27.0",
        "values": {"pilot": {"replicas": 2}, "meshConfig": {"discoverySelectors": [{"a": "b"}]}}}}));
    let partial = object(json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default",
        "labels": {"owner": "oc-ambient"}}, "spec": {"profile": "ambient",
        "values": {"pilot": {"trustedZtunnelNamespace": "ztunnel"}, "meshConfig": {"discoverySelectors": []}}}}));
    let simulation = simulate(&Snapshot::from_objects([existing]), &[Change::Apply { object: partial }]);
    let istio = &simulation.snapshot.all(Kind::Istio)[0];
    assert_eq!(
        istio.data["spec"],
        json!({"profile": "ambient", "version": "v1.27.0", "values": {
            "pilot": {"replicas": 2, "trustedZtunnelNamespace": "ztunnel"}, "meshConfig": {"discoverySelectors": []}}})
    );
    assert_eq!(istio.metadata.labels.as_ref().map(BTreeMap::len), Some(2));
}

#[test]
fn a_restart_under_an_ambient_control_plane_gives_hbone_sidecars() {
    let istio = |profile: &str| {
        object(json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
            "spec": {"profile": profile}}))
    };
    for (profile, hbone) in [("default", false), ("ambient", true)] {
        let mut snapshot = input();
        snapshot.insert(istio(profile));
        let restarted = simulate(&snapshot, &[Change::Restart { target: deployment("api") }]).snapshot;
        let pod = restarted.get(Kind::Pod, Some("shop"), "api-7d9f-a").unwrap();
        let proxy = proxy_container(&pod.data["spec"]).unwrap();
        assert_eq!(crate::model::dataplane::hbone_enabled(proxy), hbone, "profile {profile}");
    }
}

#[test]
fn apply_of_an_unknown_kind_is_refused() {
    let config =
        object(json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "c", "namespace": "shop"}}));
    let simulation = simulate(&input(), &[Change::Apply { object: config }]);
    let unknown = ResourceRefError::UnknownKind { group: String::new(), kind: "LimitRange".into() };
    assert_eq!(simulation.refused[0].reason, RefusalReason::Invalid(unknown));
    assert_eq!(simulation.snapshot.len(), input().len());
}

#[test]
fn delete_holds_to_its_preconditions() {
    let delete = |uid: Option<&str>, resource_version: Option<&str>| Change::Delete {
        target: policy_ref(),
        uid: uid.map(str::to_string),
        resource_version: resource_version.map(str::to_string),
    };
    let stale = simulate(&input(), &[delete(Some("u-0"), None), delete(None, Some("6"))]);
    assert!(stale.snapshot.get(Kind::AuthorizationPolicy, Some("shop"), "allow").is_some(), "nothing deleted");
    assert_eq!(stale.refused.len(), 2);
    assert_eq!(
        stale.refused[0].reason,
        RefusalReason::Precondition {
            target: policy_ref(),
            field: "uid",
            expected: "u-0".into(),
            found: Some("u-1".into())
        }
    );
    assert_eq!(stale.refused[1].index, 1);
    assert!(stale.refused[1].to_string().contains("change 1 (delete AuthorizationPolicy shop/allow) refused"));

    let current = simulate(&input(), &[delete(Some("u-1"), Some("7")), delete(Some("u-1"), None)]);
    assert_eq!(current.refused, Vec::new(), "deleting what is gone does nothing");
    assert!(current.snapshot.get(Kind::AuthorizationPolicy, Some("shop"), "allow").is_none());
}

#[test]
fn labels_are_set_and_removed() {
    let changes = [set_labels(
        namespace_ref(),
        &[("istio-injection", None), ("istio.io/dataplane-mode", Some("ambient")), ("absent", None)],
    )];
    let simulation = simulate(&input(), &changes);
    let namespace = simulation.snapshot.get(Kind::Namespace, None, "shop").unwrap();
    assert_eq!(labels(namespace), &BTreeMap::from([("istio.io/dataplane-mode".into(), "ambient".into())]));

    let missing = simulate(&input(), &[set_labels(deployment("gone"), &[("a", Some("b"))])]);
    assert_eq!(missing.refused[0].reason, RefusalReason::NotFound { target: deployment("gone") });
}

#[test]
fn a_restart_admits_pods_under_the_labels_of_that_moment() {
    let restarts = || {
        vec![
            Change::Restart { target: deployment("api") },
            Change::Restart { target: deployment("batch") },
            Change::Restart { target: ResourceRef::new(Kind::Pod, Some("shop"), "debug") },
        ]
    };
    // The namespace injects: api gets its sidecar, batch opts out in its template.
    let injected = simulate(&input(), &restarts()).snapshot;
    assert!(pod_has_sidecar(&injected, "api-7d9f-a"));
    assert!(!pod_has_sidecar(&injected, "batch-1"));
    assert!(pod_has_sidecar(&injected, "debug"));
    let api = injected.get(Kind::Pod, Some("shop"), "api-7d9f-a").unwrap();
    assert_eq!(api.data["spec"]["serviceAccountName"], "api", "the pod is recreated from the template");

    // Relabelled without a restart, pods keep what they had; restarted, they lose it.
    let mut changes = vec![set_labels(namespace_ref(), &[("istio-injection", None)])];
    let relabelled = simulate(&injected, &changes).snapshot;
    assert!(pod_has_sidecar(&relabelled, "api-7d9f-a"));
    changes.extend(restarts());
    let restarted = simulate(&injected, &changes).snapshot;
    assert!(!pod_has_sidecar(&restarted, "api-7d9f-a"));
    assert!(!pod_has_sidecar(&restarted, "debug"));
}

#[test]
fn only_workloads_restart() {
    let simulation = simulate(&input(), &[Change::Restart { target: namespace_ref() }]);
    assert_eq!(simulation.refused[0].reason, RefusalReason::NotRestartable { target: namespace_ref() });
}

#[test]
fn references_read_objects_and_print_like_reports() {
    let policy = input().get(Kind::AuthorizationPolicy, Some("shop"), "allow").cloned().unwrap();
    let reference = ResourceRef::of(&policy).unwrap();
    assert_eq!(reference, policy_ref());
    assert_eq!(reference.to_string(), "AuthorizationPolicy shop/allow");
    assert_eq!(ObjectRef::from(&reference), ObjectRef::of(&policy));
    assert_eq!(namespace_ref().to_string(), "Namespace shop");
    let unnamed = object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}));
    assert_eq!(ResourceRef::of(&unnamed), Err(ResourceRefError::Unnamed { kind: Kind::Pod }));
}

#[test]
fn changes_and_references_have_a_stable_json_form() {
    let changes = vec![
        Change::Apply {
            object: object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "shop"}, "spec": {"gatewayClassName": "istio-waypoint"}})),
        },
        Change::Delete { target: policy_ref(), uid: Some("u-1".into()), resource_version: Some("7".into()) },
        Change::Delete {
            target: ResourceRef::new(Kind::IstioGateway, Some("shop"), "old"),
            uid: None,
            resource_version: None,
        },
        set_labels(namespace_ref(), &[("istio-injection", None), ("istio.io/dataplane-mode", Some("ambient"))]),
        Change::Restart { target: deployment("api") },
    ];
    let text = serde_json::to_string_pretty(&changes).unwrap();
    insta::assert_snapshot!(text);
    let read: Vec<Change> = serde_json::from_str(&text).unwrap();
    assert_eq!(read, changes);
    let unknown =
        serde_json::from_value::<ResourceRef>(json!({"kind": "Gateway", "group": "example.com", "name": "x"}));
    assert!(
        unknown.unwrap_err().to_string().contains("Gateway (group \"example.com\") is not a kind oc-ambient knows")
    );
}

/// A Service `namespace/name` with a uid, so that duplicates of a key can be told apart.
fn keyed_service(namespace: &str, name: &str, uid: &str) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "uid": uid}}))
    .unwrap()
}

proptest::proptest! {
    /// `simulate` carries out runs of deletions in one pass per kind; the result, refusals
    /// included, is what applying the changes one at a time gives, whatever the duplicates,
    /// preconditions, repeated and missing targets, and the creations in between; and so is
    /// `apply_all_owned`'s.
    #[test]
    fn simulate_deletes_in_batches_exactly_as_one_at_a_time(
        input in proptest::collection::vec((0usize..2, 0usize..3, 0usize..2), 0..12),
        changes in proptest::collection::vec((0usize..2, 0usize..3, 0usize..3, proptest::bool::weighted(0.2)), 0..16),
    ) {
        let namespaces = ["a", "b"];
        let names = ["x", "y", "z"];
        let objects = input.iter().map(|(ns, name, uid)| keyed_service(namespaces[*ns], names[*name], &uid.to_string()));
        let snapshot = Snapshot::from_objects(objects);
        // Both indexes built, as after a planner's lookups, so that removals keep them up to date.
        proptest::prop_assert!(snapshot.in_namespace(Kind::Service, "a").count() <= input.len());
        // uid 2 is in no object: a precondition that fails.
        let changes: Vec<Change> = changes
            .iter()
            .map(|(ns, name, uid, create)| {
                if *create {
                    Change::Apply { object: keyed_service(namespaces[*ns], names[*name], "new") }
                } else {
                    Change::Delete {
                        target: ResourceRef::new(Kind::Service, Some(namespaces[*ns]), names[*name]),
                        uid: (*uid > 0).then(|| (uid - 1).to_string()),
                        resource_version: None,
                    }
                }
            })
            .collect();
        let batched = simulate(&snapshot, &changes);
        let mut one_at_a_time = snapshot.clone();
        let refused: Vec<usize> = changes
            .iter()
            .enumerate()
            .filter_map(|(index, change)| apply_in_place(&mut one_at_a_time, change).err().map(|_| index))
            .collect();
        let uids = |snapshot: &Snapshot| -> Vec<(Option<String>, Option<String>, Option<String>)> {
            let metadata = snapshot.all(Kind::Service).iter().map(|object| &object.metadata);
            metadata.map(|m| (m.namespace.clone(), m.name.clone(), m.uid.clone())).collect()
        };
        proptest::prop_assert_eq!(uids(&batched.snapshot), uids(&one_at_a_time));
        proptest::prop_assert_eq!(batched.refused.iter().map(|r| r.index).collect::<Vec<_>>(), refused);
        // Consuming the changes (new objects moved, not copied) changes nothing either.
        let mut owned = snapshot.clone();
        let owned_refused = apply_all_owned(&mut owned, changes.clone());
        proptest::prop_assert_eq!(uids(&owned), uids(&batched.snapshot));
        proptest::prop_assert_eq!(&owned_refused, &batched.refused);
        for namespace in namespaces {
            for name in names {
                let found = |snapshot: &Snapshot| snapshot.get(Kind::Service, Some(namespace), name).map(|o| o.metadata.uid.clone());
                proptest::prop_assert_eq!(found(&batched.snapshot), found(&one_at_a_time), "{}/{}", namespace, name);
                // And the index agrees with a scan of the list.
                let scanned = batched.snapshot.all(Kind::Service).iter().find(|o| {
                    o.metadata.namespace.as_deref() == Some(namespace) && o.metadata.name.as_deref() == Some(name)
                });
                proptest::prop_assert_eq!(found(&batched.snapshot), scanned.map(|o| o.metadata.uid.clone()));
                let listed = |snapshot: &Snapshot| snapshot.in_namespace(Kind::Service, namespace).map(|o| o.metadata.uid.clone()).collect::<Vec<_>>();
                proptest::prop_assert_eq!(listed(&batched.snapshot), listed(&one_at_a_time));
            }
        }
    }
}
