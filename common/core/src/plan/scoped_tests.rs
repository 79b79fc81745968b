//! The planners ask about one namespace at a time, from views built for that namespace alone
//! ([`MeshModel::of_namespace`], [`MeshContext::of_namespace`]) and from conversions sharing one
//! [`Converter`]; these tests hold those views to the whole-mesh ones on every state the bookinfo
//! and generated migrations pass through, so that planning the same input plans the same.

use std::collections::BTreeSet;

use super::tests::{self, after, ambient_ready, bookinfo};
use super::waypoint::{WaypointIntent, plan_waypoint};
use super::*;
use crate::change::apply_in_place;
use crate::check::phase::{MeshContext, milestones, unprotected};
use crate::convert::{ConvertOptions, Converter, convert};
use crate::equivalence::synthetic::{MeshSize, namespace_name, running_cluster};
use crate::kinds::{ALL, Kind};
use crate::model::MeshModel;
use crate::snapshot::Snapshot;

/// `start` and the state after each action of `plan`.
fn states_along(start: &Snapshot, plan: &Plan) -> Vec<Snapshot> {
    let mut state = start.clone();
    let mut states = vec![state.clone()];
    for action in &plan.actions {
        let _refused = apply_in_place(&mut state, &action.change);
        states.push(state.clone());
    }
    states
}

/// The states a whole migration of `namespaces` passes through: enable (Steps 2, 3, then the
/// Step 6 stop), waypoint (Steps 4, 5, 7, 8), enable again (Steps 6, 9), with every state between.
fn migration(start: &Snapshot, namespaces: &[String]) -> Vec<Snapshot> {
    let mut states = Vec::new();
    let mut state = start.clone();
    for round in 0..3 {
        let plan = if round == 1 {
            let intent = WaypointIntent { namespaces: namespaces.to_vec(), ..WaypointIntent::default() };
            plan_waypoint(&state, &intent).unwrap()
        } else {
            plan_enable(&state, &EnableIntent { namespaces: namespaces.to_vec(), ..EnableIntent::default() }).unwrap()
        };
        assert!(!plan.actions.is_empty(), "round {round} plans something");
        states.extend(states_along(&state, &plan));
        state = after(&state, &plan);
    }
    states
}

/// Every namespace the state names, a missing one and the empty one.
fn namespaces_of(state: &Snapshot) -> BTreeSet<String> {
    let mut names: BTreeSet<String> =
        state.all(Kind::Namespace).iter().filter_map(|namespace| namespace.metadata.name.clone()).collect();
    for info in ALL.iter().filter(|info| info.namespaced) {
        names.extend(state.all(info.kind).iter().filter_map(|object| object.metadata.namespace.clone()));
    }
    names.extend(["missing".to_string(), String::new()]);
    names
}

fn names<'o>(objects: impl Iterator<Item = &'o kube_core::DynamicObject>) -> Vec<String> {
    objects.map(|object| crate::mesh::ObjectRef::of(object).to_string()).collect()
}

fn assert_scoped_views_agree(state: &Snapshot) {
    let (model, context) = (MeshModel::new(state), MeshContext::new(state));
    for namespace in namespaces_of(state) {
        let ns = namespace.as_str();
        let one = MeshModel::of_namespace(state, ns);
        assert_eq!(one.namespace(ns), model.namespace(ns), "{ns}");
        assert_eq!(
            names(one.pods_in(ns).iter().map(|pod| pod.object)),
            names(model.pods_in(ns).iter().map(|pod| pod.object))
        );
        assert_eq!(one.workloads_in(ns).collect::<Vec<_>>(), model.workloads_in(ns).collect::<Vec<_>>(), "{ns}");
        assert_eq!(one.waypoints_in(ns).collect::<Vec<_>>(), model.waypoints_in(ns).collect::<Vec<_>>(), "{ns}");
        assert_eq!(one.waypoint_reasons(ns), model.waypoint_reasons(ns), "{ns}");
        assert_eq!(one.principal(ns, "sa"), model.principal(ns, "sa"));

        let scoped = MeshContext::of_namespace(state, ns);
        for needed in [false, true] {
            let (facts, expected) = (milestones(state, &scoped, ns, needed), milestones(state, &context, ns, needed));
            assert_eq!(format!("{facts:?}"), format!("{expected:?}"), "{ns}");
        }
        assert_eq!(unprotected(state, &scoped, ns), unprotected(state, &context, ns), "{ns}");
        assert_eq!(scoped.waypoint_reasons(ns), context.waypoint_reasons(ns), "{ns}");
        assert_eq!(
            names(scoped.policies_in(ns).map(|(object, _)| *object)),
            names(context.policies_in(ns).map(|(object, _)| *object))
        );
        assert_eq!(
            names(scoped.virtual_services_for(ns).map(|(object, _)| *object)),
            names(context.virtual_services_for(ns).map(|(object, _)| *object))
        );
        assert_eq!(
            names(scoped.subset_rules_for(ns).map(|(object, _)| *object)),
            names(context.subset_rules_for(ns).map(|(object, _)| *object))
        );
    }
}

/// One converter converting namespace after namespace gives what a conversion of its own does.
fn assert_shared_conversions_agree(state: &Snapshot) {
    let converter = Converter::new(state);
    let mut options: Vec<ConvertOptions> = namespaces_of(state)
        .into_iter()
        .filter(|namespace| !namespace.is_empty())
        .map(|namespace| ConvertOptions { namespaces: vec![namespace], waypoint: None })
        .collect();
    options.push(ConvertOptions::default());
    options.push(ConvertOptions { namespaces: vec!["bookinfo".into()], waypoint: Some("wp".into()) });
    for options in options {
        assert_eq!(converter.convert(&options).to_json(), convert(state, &options).to_json(), "{options:?}");
    }
}

#[test]
fn namespace_views_and_a_shared_converter_agree_with_the_whole_mesh_along_the_bookinfo_migration() {
    let start = ambient_ready(&bookinfo(false));
    let states = migration(&start, &["bookinfo".to_string()]);
    for state in std::iter::once(&bookinfo(false)).chain(&states) {
        assert_scoped_views_agree(state);
    }
    // Conversions are costlier: the states between the plans' rounds and a sample of the rest.
    for state in states.iter().step_by(7) {
        assert_shared_conversions_agree(state);
    }
}

#[test]
fn namespace_views_and_a_shared_converter_agree_with_the_whole_mesh_along_a_generated_migration() {
    let size = MeshSize { namespaces: 3, services: 5, pods: 2 };
    let namespaces: Vec<String> = (0..size.namespaces).map(namespace_name).collect();
    let start = Snapshot::from_objects(running_cluster(size));
    let states = migration(&start, &namespaces);
    for state in states.iter().step_by(5) {
        assert_scoped_views_agree(state);
    }
    for state in states.iter().step_by(25) {
        assert_shared_conversions_agree(state);
    }
}

#[test]
fn namespace_views_and_a_shared_converter_agree_with_the_whole_mesh_on_cross_namespace_and_odd_objects() {
    let state = Snapshot::from_objects(tests::yaml(
        "apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: b}
spec: {selector: {app: api}, ports: [{name: http, port: 8080, targetPort: web}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: b, labels: {app: api}}
spec: {serviceAccountName: api, containers: [{name: app, ports: [{name: web, containerPort: 9090}]}, {name: istio-proxy}]}
status: {phase: Running, conditions: [{type: Ready, status: 'True'}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: a}
spec: {jobTemplate: {spec: {template: {metadata: {labels: {app: nightly}}, spec: {containers: [{name: job}]}}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: to-api, namespace: a}
spec: {hosts: [api.b.svc.cluster.local], http: [{route: [{destination: {host: api.b.svc.cluster.local, subset: v1}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: a}
spec: {hosts: [web], gateways: [a/edge], http: [{route: [{destination: {host: web}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hostless, namespace: a}
spec: {http: [{route: [{destination: {host: web}}]}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: a}
spec: {host: api.b.svc.cluster.local, subsets: [{name: v1, labels: {app: api}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: nohost, namespace: b}
spec: {subsets: [{name: v1, labels: {app: api}}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l7, namespace: b}
spec: {selector: {matchLabels: {app: api}}, rules: [{to: [{operation: {methods: [GET]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec: {rules: [{to: [{operation: {paths: [/admin]}}]}], action: DENY}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: attached, namespace: a}
spec: {targetRefs: [{kind: Service, group: '', name: web}], rules: [{}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mesh-route, namespace: c}
spec: {parentRefs: [{kind: Service, group: '', name: svc}]}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: d}
spec: {}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: b}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
status: {conditions: [{type: Programmed, status: 'True'}]}
",
    ));
    assert_scoped_views_agree(&state);
    assert_shared_conversions_agree(&state);
}
