//! A generated mesh for benchmarks, in memory: the shape of the simulator's `large` scenario
//! (namespaces x services x pods; a DestinationRule for every second service, a VirtualService for
//! every third, an AuthorizationPolicy per service, L7 for every fourth), before and after a
//! faithful migration, so the verifier's cost can be measured without a cluster.

use kube_core::DynamicObject;
use serde_json::{Value, json};

use std::collections::BTreeSet;

use crate::change::{Change, ResourceRef, apply_all};
use crate::equivalence::state::MigrationState;
use crate::kinds::Kind;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshSize {
    pub namespaces: usize,
    pub services: usize,
    pub pods: usize,
}

impl Default for MeshSize {
    /// The simulator's default `large` size.
    fn default() -> Self {
        MeshSize { namespaces: 20, services: 5, pods: 2 }
    }
}

impl std::str::FromStr for MeshSize {
    type Err = String;

    /// `NAMESPACESxSERVICESxPODS`, e.g. `20x5x2`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let numbers: Vec<usize> =
            text.split('x').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad_size(text))?;
        match numbers.as_slice() {
            [namespaces, services, pods] if numbers.iter().all(|n| *n > 0) => {
                Ok(MeshSize { namespaces: *namespaces, services: *services, pods: *pods })
            }
            _ => Err(bad_size(text)),
        }
    }
}

fn bad_size(text: &str) -> String {
    format!("invalid mesh size {text:?}: expected NAMESPACESxSERVICESxPODS with positive numbers, e.g. 20x5x2")
}

/// The generated mesh: its sidecar-era objects, and the change a faithful migration makes.
pub struct SyntheticMesh {
    pub sidecar_era: Vec<DynamicObject>,
    /// Objects the migration adds (or replaces by name).
    pub added: Vec<DynamicObject>,
    /// Sidecar-era objects the migration deletes.
    pub removed: Vec<ResourceRef>,
}

impl SyntheticMesh {
    /// The migration as changes: the added objects applied, then the removed ones deleted.
    pub fn changes(&self) -> Vec<Change> {
        migration(self.added.clone(), self.removed.clone()).collect()
    }

    /// The mesh before and after its migration, fully migrated (every namespace enrolled and
    /// behind its waypoint, no sidecars), as the two snapshots the verifier compares. Consumes
    /// the mesh and changes one copy in place, so that nothing but the two snapshots stays
    /// allocated: at 1,000x5x2 a copy is some 100 MiB, and the allocator keeps what a
    /// temporary one took as the process's resident memory.
    pub fn into_migration(self) -> (Snapshot, Snapshot) {
        let SyntheticMesh { sidecar_era, added, removed } = self;
        let before = Snapshot::from_objects(sidecar_era);
        let namespaces: BTreeSet<String> =
            before.all(Kind::Namespace).iter().filter_map(|namespace| namespace.metadata.name.clone()).collect();
        let mut after = before.clone();
        let refused = apply_all(&mut after, &migration(added, removed).collect::<Vec<_>>());
        debug_assert!(refused.is_empty(), "generated changes target generated objects: {refused:?}");
        let migrated =
            MigrationState { enrolled: namespaces.clone(), waypoints: namespaces, sidecars: BTreeSet::new() };
        migrated.apply_in_place(&mut after);
        (before, after)
    }
}

/// The `added` objects applied, then the `removed` ones deleted.
fn migration(added: Vec<DynamicObject>, removed: Vec<ResourceRef>) -> impl Iterator<Item = Change> {
    let applies = added.into_iter().map(|object| Change::Apply { object });
    applies.chain(removed.into_iter().map(|target| Change::Delete { target, uid: None, resource_version: None }))
}

fn object(value: Value) -> DynamicObject {
    // Every value below is a literal object with apiVersion, kind and metadata.name.
    serde_json::from_value(value).unwrap_or_else(|err| unreachable!("generated object: {err}"))
}

pub fn namespace_name(index: usize) -> String {
    format!("mesh-{index:04}")
}

pub fn generate(size: MeshSize) -> SyntheticMesh {
    let mut mesh = SyntheticMesh { sidecar_era: Vec::new(), added: Vec::new(), removed: Vec::new() };
    for index in 0..size.namespaces {
        let ns = namespace_name(index);
        mesh.sidecar_era.push(object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"istio.io/rev": "default"}}})));
        mesh.added.push(object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": ns},
            "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})));
        let waypoint = format!("cluster.local/ns/{ns}/sa/waypoint");
        mesh.added.push(object(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "ztunnel-protection", "namespace": ns},
            "spec": {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": [waypoint]}}]}]}})));
        for service in 0..size.services {
            add_service(&mut mesh, &ns, service, size.pods);
        }
    }
    mesh
}

fn add_service(mesh: &mut SyntheticMesh, ns: &str, service: usize, pods: usize) {
    let app = format!("svc-{service}");
    let service_object = |name: &str, selector: Value| {
        object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 8080}]}}),
        )
    };
    mesh.sidecar_era.push(service_object(&app, json!({"app": app})));
    for pod in 0..pods {
        mesh.sidecar_era.push(object(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{app}-{pod}"), "namespace": ns, "labels": {"app": app, "version": "v1"}},
            "spec": {"serviceAccountName": app, "containers": [{"name": "app"}, {"name": "istio-proxy"}]}})));
    }
    if service.is_multiple_of(2) {
        mesh.sidecar_era.push(object(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": app, "namespace": ns}, "spec": {"host": app, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}})));
        mesh.removed.push(ResourceRef::new(Kind::DestinationRule, Some(ns), &app));
    }
    let mut targets = vec![app.clone()];
    if service.is_multiple_of(3) {
        // A subset route only resolves with the DestinationRule of every second service.
        let destination =
            if service.is_multiple_of(2) { json!({"host": app, "subset": "v1"}) } else { json!({"host": app}) };
        mesh.sidecar_era.push(object(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": app, "namespace": ns},
            "spec": {"hosts": [app], "http": [{"match": [{"headers": {"x-canary": {"exact": "true"}}}], "route": [{"destination": destination}]},
                                              {"route": [{"destination": destination}]}]}})));
        mesh.removed.push(ResourceRef::new(Kind::VirtualService, Some(ns), &app));
        let version = format!("{app}-v1");
        mesh.added.push(service_object(&version, json!({"app": app, "version": "v1"})));
        mesh.added.push(object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": app, "namespace": ns},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": app, "port": 8080}],
                     "rules": [{"matches": [{"headers": [{"name": "x-canary", "value": "true"}]}], "backendRefs": [{"name": version, "port": 8080}]},
                               {"backendRefs": [{"name": version, "port": 8080}]}]}})));
        targets.push(version);
    }
    let mut rule = json!({"from": [{"source": {"namespaces": [ns]}}]});
    if service.is_multiple_of(4) {
        rule["to"] = json!([{"operation": {"methods": ["GET"]}}]);
    }
    mesh.sidecar_era.push(object(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": app}}, "action": "ALLOW", "rules": [rule.clone()]}})));
    // Every policy moves to the waypoint, the L4 ones too: ztunnel sees the waypoint, which is a
    // workload of the same namespace, so `namespaces: [ns]` left there would admit every caller
    // the waypoint forwards (the verifier found this in an earlier version of this generator).
    let target_refs: Vec<Value> =
        targets.iter().map(|name| json!({"kind": "Service", "group": "", "name": name})).collect();
    mesh.added.push(object(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": format!("{app}-waypoint"), "namespace": ns},
        "spec": {"targetRefs": target_refs, "action": "ALLOW", "rules": [rule]}})));
    mesh.removed.push(ResourceRef::new(Kind::AuthorizationPolicy, Some(ns), &app));
}

/// One namespace with a Service and its pod, and a VirtualService for that Service with `rules`
/// header-matched HTTP rules: far beyond what an HTTPRoute holds when `rules` is large, so the
/// translator must refuse it for its size, and quickly.
pub fn virtual_service_with_rules(rules: usize) -> Vec<DynamicObject> {
    let ns = namespace_name(0);
    let http: Vec<Value> = (0..rules)
        .map(|rule| {
            json!({"match": [{"headers": {"x-rule": {"exact": rule.to_string()}}}],
                   "route": [{"destination": {"host": "svc-0"}}]})
        })
        .collect();
    vec![
        object(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"istio.io/rev": "default"}}}),
        ),
        object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc-0", "namespace": ns},
            "spec": {"selector": {"app": "svc-0"}, "ports": [{"name": "http", "port": 8080}]}})),
        object(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "svc-0-0", "namespace": ns, "labels": {"app": "svc-0"}},
            "spec": {"serviceAccountName": "svc-0", "containers": [{"name": "app"}, {"name": "istio-proxy"}]}})),
        object(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "svc-0", "namespace": ns}, "spec": {"hosts": ["svc-0"], "http": http}})),
    ]
}

/// One namespace with a client and a `reviews` Deployment and Service, and one ALLOW policy on
/// `reviews` whose single rule names `principals` principals, `paths` paths and `headers` header
/// conditions: the cross product the verifier must sample instead of enumerating.
pub fn huge_policy(principals: usize, paths: usize, headers: usize) -> Vec<DynamicObject> {
    let ns = namespace_name(0);
    let mut objects = vec![object(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}}),
    )];
    for app in ["reviews", "client"] {
        objects.push(object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 9080}]}})));
        objects.push(object(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": app}}, "template": {"metadata": {"labels": {"app": app}},
                     "spec": {"serviceAccountName": app, "containers": [{"name": "app", "image": "app"}]}}}}),
        ));
    }
    let principals: Vec<String> = (0..principals).map(|i| format!("cluster.local/ns/{ns}/sa/caller-{i}")).collect();
    let paths: Vec<String> = (0..paths).map(|i| format!("/api/v{i}")).collect();
    let conditions: Vec<Value> = (0..headers)
        .map(|i| json!({"key": format!("request.headers[x-h-{i}]"), "values": [format!("v{i}")]}))
        .collect();
    objects.push(object(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
    "metadata": {"name": "huge", "namespace": ns},
    "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "action": "ALLOW", "rules": [{
        "from": [{"source": {"principals": principals}}],
        "to": [{"operation": {"paths": paths, "methods": ["GET"]}}],
        "when": conditions,
    }]}})));
    objects
}

/// The `bookinfo-sidecar` scenario's access rules: each app, the service account that may call
/// it, and with which methods (the ingress gateway `bookinfo-gateway` of class `istio` runs as
/// `bookinfo-gateway-istio`).
pub const BOOKINFO_CALLERS: &[(&str, &str, &[&str])] = &[
    ("productpage", "bookinfo-gateway-istio", &["GET", "POST"]),
    ("reviews", "bookinfo-productpage", &["GET"]),
    ("details", "bookinfo-productpage", &["GET"]),
    ("ratings", "bookinfo-reviews", &["GET"]),
];

/// The scenario's sidecar-era selector AuthorizationPolicies, `<app>-viewer` in `namespace`.
pub fn bookinfo_selector_policies(namespace: &str) -> Vec<DynamicObject> {
    BOOKINFO_CALLERS
        .iter()
        .map(|(app, caller, methods)| {
            object(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": format!("{app}-viewer"), "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": app}}, "action": "ALLOW", "rules": [{
                "from": [{"source": {"principals": [format!("cluster.local/ns/{namespace}/sa/{caller}")]}}],
                "to": [{"operation": {"methods": methods}}],
            }]}}))
        })
        .collect()
}

/// The sidecar era of `size` as a running cluster the planners work on: Sail's Istio and IstioCNI
/// in the default profile, injection on every namespace, and a Deployment owning each Service's
/// pods (running, ready, sidecars without HBONE). For the planning benchmark.
pub fn running_cluster(size: MeshSize) -> Vec<DynamicObject> {
    let mut objects = vec![
        object(json!({"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
            "spec": {"version": "v1.27.0", "namespace": "istio-system", "updateStrategy": {"type": "InPlace"}}})),
        object(json!({"apiVersion": "sailoperator.io/v1", "kind": "IstioCNI", "metadata": {"name": "default"},
            "spec": {"version": "v1.27.0", "namespace": "istio-cni"}})),
        object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})),
    ];
    for mut item in generate(size).sidecar_era {
        let kind = item.types.as_ref().map(|types| types.kind.clone()).unwrap_or_default();
        if kind == "Pod" {
            let app = item.data.pointer("/metadata/labels/app").cloned().unwrap_or_default();
            item.metadata.owner_references =
                Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: format!("{}-5d8f", app.as_str().unwrap_or_default()),
                    uid: "rs".into(),
                    controller: Some(true),
                    ..Default::default()
                }]);
            item.data["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
            if let Some(labels) = item.metadata.labels.as_mut() {
                labels.insert("security.istio.io/tlsMode".into(), "istio".into());
            }
        }
        if kind == "Service" {
            let (ns, app) = (item.metadata.namespace.clone().unwrap_or_default(), item.metadata.name.clone());
            let app = app.unwrap_or_default();
            objects.push(object(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": app, "namespace": ns},
                "spec": {"selector": {"matchLabels": {"app": app}},
                         "template": {"metadata": {"labels": {"app": app, "version": "v1"}},
                                      "spec": {"serviceAccountName": app, "containers": [{"name": "app"}]}}}})));
        }
        objects.push(item);
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::simulate;
    use crate::equivalence::state::MigrationState;
    use crate::equivalence::verify::verify;
    use crate::snapshot::Snapshot;

    #[test]
    fn sizes_parse_and_bad_sizes_are_named() {
        assert_eq!("3x2x1".parse::<MeshSize>(), Ok(MeshSize { namespaces: 3, services: 2, pods: 1 }));
        assert!("3x2".parse::<MeshSize>().unwrap_err().contains("NAMESPACESxSERVICESxPODS"));
        assert!("0x1x1".parse::<MeshSize>().is_err());
    }

    #[test]
    fn the_generated_migration_changes_only_what_it_intends() {
        let size = MeshSize { namespaces: 2, services: 5, pods: 2 };
        let mesh = generate(size);
        let before = Snapshot::from_objects(mesh.sidecar_era.clone());
        let namespaces = (0..size.namespaces).map(namespace_name).collect();
        let migrated =
            MigrationState { enrolled: namespaces, waypoints: Default::default(), sidecars: Default::default() };
        let migrated = MigrationState { waypoints: migrated.enrolled.clone(), ..migrated };
        let after = migrated.apply(&simulate(&before, &mesh.changes()).snapshot);
        let verification = verify(&before, &after, None);
        assert!(verification.requests > 1000);
        assert_eq!(
            verification.unexpected().count(),
            0,
            "{:?}",
            verification.unexpected().next().map(crate::equivalence::Difference::explanation)
        );
        assert!(
            verification.differences.iter().all(|d| d.expected),
            "only pod-address traffic is sent to the waypoint"
        );
        assert!(!verification.differences.is_empty());
        // Forgetting to remove the L7 selector policies turns them into deny-all at ztunnel.
        let applies: Vec<Change> =
            mesh.changes().into_iter().filter(|change| matches!(change, Change::Apply { .. })).collect();
        let kept = migrated.apply(&simulate(&before, &applies).snapshot);
        assert!(verify(&before, &kept, None).unexpected().count() > 0);
    }
}
