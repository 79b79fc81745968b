//! Istio semantics the translation has to keep, one test per class (issue 16): each converts a
//! small sidecar-era namespace and runs the verifier on the result at the end of the migration
//! (`convert --verify`), so a faithful translation shows no unexpected difference, and one Istio
//! 1.27 and Gateway API v1.3 cannot express is refused with its reason.

use super::scope::tests::snapshot_of;
use super::{Conversion, ConvertOptions, convert};
use crate::equivalence::verify::{Verification, verify_change};
use crate::snapshot::Snapshot;

/// A sidecar-era namespace: productpage calls reviews (port 9080) and ratings (Service port 80 to
/// container port 8080, named `http-web`); batch is a second caller.
const SHOP: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: productpage, namespace: shop}
spec:
  selector: {matchLabels: {app: productpage}}
  template:
    metadata: {labels: {app: productpage}}
    spec: {serviceAccountName: productpage, containers: [{name: app}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: shop}
spec:
  selector: {matchLabels: {app: batch}}
  template:
    metadata: {labels: {app: batch}}
    spec: {serviceAccountName: batch, containers: [{name: app}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews}}
    spec: {serviceAccountName: reviews, containers: [{name: app, ports: [{containerPort: 9080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ratings, namespace: shop}
spec:
  selector: {matchLabels: {app: ratings}}
  template:
    metadata: {labels: {app: ratings}}
    spec: {serviceAccountName: ratings, containers: [{name: app, ports: [{name: http-web, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: shop}
spec: {selector: {app: productpage}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {selector: {app: ratings}, ports: [{name: http, port: 80, targetPort: http-web}]}
";

/// Converts `SHOP` plus `extra` for namespace shop and verifies the conversion at the end of the
/// migration.
fn convert_and_verify(extra: &str) -> (Conversion, Verification) {
    let input: Snapshot = snapshot_of(&format!("{SHOP}---\n{extra}"));
    let options = ConvertOptions { namespaces: vec!["shop".into()], ..ConvertOptions::default() };
    let conversion = convert(&input, &options);
    let verification = verify_change(&input, conversion.changes(), &["shop".to_string()], None);
    (conversion, verification)
}

/// The unexpected differences in words, the first few.
fn unexpected(verification: &Verification) -> Vec<String> {
    verification
        .unexpected()
        .take(6)
        .map(|d| format!("{} {}: {}", d.class.word(), d.request, d.explanation()))
        .collect()
}

fn assert_faithful(conversion: &Conversion, verification: &Verification) {
    assert!(conversion.is_faithful(), "{:#?}", conversion.unsupported);
    assert_eq!(unexpected(verification), Vec::<String>::new());
}

fn refusal<'c>(conversion: &'c Conversion, policy: &str) -> Option<&'c str> {
    conversion.unsupported.iter().find(|u| u.object.name == policy).map(|u| u.reason.as_str())
}

#[test]
fn an_allow_nothing_baseline_admits_the_waypoint_at_ztunnel() {
    let (conversion, verification) = convert_and_verify(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: shop}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-get, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/productpage]}}]
    to: [{operation: {methods: [GET]}}]",
    );
    assert_faithful(&conversion, &verification);
}

#[test]
fn identity_checks_in_conditions_and_service_accounts_exempt_the_waypoint_exactly() {
    let (conversion, verification) = convert_and_verify(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-productpage, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{when: [{key: source.principal, notValues: [cluster.local/ns/shop/sa/productpage]}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-from-shop, namespace: shop}
spec:
  selector: {matchLabels: {app: ratings}}
  rules:
  - to: [{operation: {ports: ['8080']}}]
    when: [{key: source.namespace, values: [shop]}, {key: source.principal, notValues: [cluster.local/ns/shop/sa/batch]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-batch, namespace: shop}
spec:
  selector: {matchLabels: {app: productpage}}
  action: DENY
  rules: [{from: [{source: {notServiceAccounts: [shop/reviews, shop/ratings]}}], to: [{operation: {ports: ['9080']}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l7, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]",
    );
    assert_faithful(&conversion, &verification);
}

#[test]
fn a_deny_outside_the_waypoints_namespace_exempts_the_waypoint_not_its_namespace() {
    let (conversion, verification) = convert_and_verify(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-friends, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {notNamespaces: [shop, friends]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l7, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]",
    );
    assert_faithful(&conversion, &verification);
}

#[test]
fn an_audit_policy_gets_no_bypass_protection() {
    let (conversion, verification) = convert_and_verify(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-writes, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: AUDIT
  rules: [{to: [{operation: {methods: [POST]}}]}]",
    );
    assert_faithful(&conversion, &verification);
    assert!(
        !conversion.items.iter().any(|item| item
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.ends_with("-ztunnel-protection"))),
        "AUDIT decides nothing, so nothing needs protecting"
    );
}

#[test]
fn a_mesh_wide_l4_policy_is_copied_to_each_waypoint_and_admits_it() {
    let (conversion, verification) = convert_and_verify(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shop-internal, namespace: istio-system}
spec:
  rules: [{from: [{source: {namespaces: [shop]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-get, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/productpage]}}]
    to: [{operation: {methods: [GET]}}]",
    );
    assert_faithful(&conversion, &verification);
    let names: Vec<String> = conversion
        .items
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item.metadata.namespace.as_deref().unwrap_or_default(),
                item.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    assert!(names.contains(&"shop/allow-nothing-waypoint".to_string()), "{names:?}");
    assert!(!names.iter().any(|name| name.starts_with("istio-system/waypoint")), "no waypoint in the root namespace");
    assert!(conversion.replaces.iter().all(|replaced| replaced.namespace.as_deref() != Some("istio-system")));
}

#[test]
fn a_mesh_wide_l7_policy_is_refused_with_the_reason() {
    let (conversion, _) = convert_and_verify(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*]}}]}]",
    );
    let reason = refusal(&conversion, "no-admin").expect("refused");
    assert!(reason.contains("mesh-wide policy (root namespace istio-system) with paths"), "{reason}");
    assert!(conversion.replaces.is_empty(), "{:?}", conversion.replaces);
    assert!(
        !conversion.items.iter().any(|item| item.metadata.namespace.as_deref() == Some("istio-system")),
        "nothing goes to the root namespace"
    );
}

#[test]
fn policy_ports_become_service_ports_at_the_waypoint() {
    let (conversion, verification) = convert_and_verify(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-get, namespace: shop}
spec:
  selector: {matchLabels: {app: ratings}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/productpage]}}]
    to: [{operation: {ports: ['8080'], methods: [GET]}}]",
    );
    assert_faithful(&conversion, &verification);
    let copy = conversion.items.iter().find(|item| item.metadata.name.as_deref() == Some("ratings-get-waypoint"));
    assert_eq!(
        copy.map(|copy| copy.data["spec"]["rules"][0]["to"][0]["operation"]["ports"].clone()),
        Some(serde_json::json!(["80"])),
        "ratings maps Service port 80 to the named container port http-web, 8080"
    );
}

const API_ROUTE: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}}, {uri: {prefix: /static/}}]
    route: [{destination: {host: ratings, port: {number: 80}}}]";

#[test]
fn istio_prefixes_compare_characters_after_conversion_too() {
    let (conversion, verification) = convert_and_verify(API_ROUTE);
    assert_faithful(&conversion, &verification);
    let route = conversion.items.iter().find(|item| item.types.as_ref().is_some_and(|t| t.kind == "HTTPRoute"));
    let paths = route.map(|route| route.data["spec"]["rules"][0]["matches"].clone());
    assert_eq!(
        paths,
        Some(serde_json::json!([
            {"path": {"type": "PathPrefix", "value": "/api"}},
            {"path": {"type": "RegularExpression", "value": "/api[^/].*"}},
            {"path": {"type": "RegularExpression", "value": "/static/.*"}}
        ]))
    );
}

#[test]
fn a_prefix_that_a_later_rule_or_a_rewrite_would_cut_short_is_refused() {
    let (conversion, _) = convert_and_verify(&format!(
        "{API_ROUTE}
  - route: [{{destination: {{host: reviews}}}}]"
    ));
    let reason = refusal(&conversion, "reviews").expect("refused");
    assert!(reason.contains("RegularExpression /api[^/].*"), "{reason}");
    let (conversion, _) = convert_and_verify(&API_ROUTE.replace("    route:", "    rewrite: {uri: /}\n    route:"));
    let reason = refusal(&conversion, "reviews").expect("refused");
    assert!(reason.contains("an Istio prefix that does not end a path segment"), "{reason}");
}

#[test]
fn a_service_with_its_own_waypoint_is_protected_and_admitted_for_that_waypoint() {
    let own_waypoint = SHOP.replace(
        "metadata: {name: reviews, namespace: shop}\nspec: {selector",
        "metadata: {name: reviews, namespace: shop, labels: {istio.io/use-waypoint: reviews-wp}}\nspec: {selector",
    );
    assert_ne!(own_waypoint, SHOP);
    let input = snapshot_of(&format!(
        "{own_waypoint}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: reviews-wp, namespace: shop, labels: {{istio.io/waypoint-for: service}}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: shop, labels: {{istio.io/waypoint-for: service}}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews-get, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/shop/sa/productpage]}}}}]
    to: [{{operation: {{methods: [GET]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews-callers, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  rules: [{{from: [{{source: {{namespaces: [shop]}}}}]}}]"
    ));
    let options = ConvertOptions { namespaces: vec!["shop".into()], ..ConvertOptions::default() };
    let conversion = convert(&input, &options);
    let verification = verify_change(&input, conversion.changes(), &["shop".to_string()], None);
    assert_faithful(&conversion, &verification);
    let protection = conversion
        .items
        .iter()
        .find(|item| item.metadata.name.as_deref() == Some("reviews-ztunnel-protection"))
        .expect("protection");
    let exempt = &protection.data["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"];
    let exempt: Vec<&str> = exempt.as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
    assert!(exempt.contains(&"cluster.local/ns/shop/sa/reviews-wp"), "{exempt:?}");
    assert!(!exempt.contains(&"cluster.local/ns/shop/sa/waypoint"), "not the namespace's waypoint: {exempt:?}");
}

#[test]
fn policies_and_routes_of_pods_behind_a_headless_service_only_are_refused() {
    let (conversion, verification) = convert_and_verify(
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {serviceAccountName: db, containers: [{name: db}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, selector: {app: db}, ports: [{name: http, port: 8000}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-reads, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: shop}
spec:
  hosts: [db]
  http: [{timeout: 3s, route: [{destination: {host: db}}]}]",
    );
    let policy = refusal(&conversion, "db-reads").expect("the policy is refused");
    assert!(policy.contains("selected by no Service with a cluster IP"), "{policy}");
    let route = refusal(&conversion, "db").expect("the route is refused");
    assert!(route.contains("Service shop/db is headless"), "{route}");
    assert!(!verification.is_equivalent(), "the verifier sees the policy lost at the waypoint too");
}

#[test]
fn a_custom_authorizer_reachable_only_inside_the_pod_is_refused() {
    let (conversion, _) = convert_and_verify(
        "apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: default}
spec:
  values:
    meshConfig:
      extensionProviders:
      - {name: local-authz, envoyExtAuthzHttp: {service: 127.0.0.1, port: 9191}}
      - {name: shared-authz, envoyExtAuthzGrpc: {service: authz.auth.svc.cluster.local, port: 9000}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: local, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: local-authz}
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shared, namespace: shop}
spec:
  selector: {matchLabels: {app: ratings}}
  action: CUSTOM
  provider: {name: shared-authz}
  rules: [{to: [{operation: {paths: [/admin*]}}]}]",
    );
    let reason = refusal(&conversion, "local").expect("refused");
    assert!(reason.contains("the CUSTOM provider local-authz is 127.0.0.1"), "{reason}");
    assert!(refusal(&conversion, "shared").is_none(), "{:?}", conversion.unsupported);
    assert!(conversion.items.iter().any(|item| item.metadata.name.as_deref() == Some("shared-waypoint")));
}

#[test]
fn traffic_policies_of_a_namespace_without_a_waypoint_are_reported() {
    let input = snapshot_of(&format!(
        "{SHOP}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: shop}}
spec:
  host: reviews
  trafficPolicy: {{loadBalancer: {{simple: LEAST_REQUEST}}, outlierDetection: {{consecutive5xxErrors: 3}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: shop}}
spec: {{host: ratings, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}"
    ));
    let conversion = convert(&input, &ConvertOptions::default());
    assert!(conversion.items.is_empty(), "nothing in shop needs a waypoint: {:?}", conversion.items);
    let reason = refusal(&conversion, "reviews").expect("reported");
    assert!(reason.contains("in ambient only a waypoint does, and namespace shop gets none"), "{reason}");
    assert!(refusal(&conversion, "ratings").is_none(), "ISTIO_MUTUAL alone is what HBONE does");
}
