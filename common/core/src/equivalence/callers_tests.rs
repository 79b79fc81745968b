//! Who calls: sources and destinations the verifier compares, and the callers the translator's
//! bypass protection must recognise (issue 16, "callers").

use std::collections::BTreeSet;
use std::path::Path;

use kube_core::DynamicObject;

use super::evaluate::{Address, HttpRequest, Request, Target};
use super::topology::{Mode, Topology};
use super::verify::{Class, verify, verify_exhaustive};
use crate::snapshot::{Snapshot, parse_documents};

fn objects(text: &str) -> Vec<DynamicObject> {
    parse_documents(Path::new("callers.yaml"), text).unwrap()
}

fn snapshot(parts: &[&str]) -> Snapshot {
    Snapshot::from_objects(parts.iter().flat_map(|part| objects(part)))
}

/// `shop`: a web Service with two versions, injected sidecars, no policy.
const SHOP: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1, namespace: shop}
spec:
  selector: {matchLabels: {app: web, version: v1}}
  template: {metadata: {labels: {app: web, version: v1}}, spec: {serviceAccountName: web, containers: [{name: web}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v2, namespace: shop}
spec:
  selector: {matchLabels: {app: web, version: v2}}
  template: {metadata: {labels: {app: web, version: v2}}, spec: {serviceAccountName: web, containers: [{name: web}]}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
";

/// Another application namespace with a sidecar client of shop.
const OTHER: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: other}
spec:
  selector: {matchLabels: {app: client}}
  template: {metadata: {labels: {app: client}}, spec: {serviceAccountName: client, containers: [{name: c}]}}
";

/// A Service of shop that only the dump holds.
const LEGACY: &str = "
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
";

/// ztunnel as Istio's chart (and the Sail operator) deploys it: a DaemonSet whose pods run a
/// container named `istio-proxy`.
const ZTUNNEL: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: ztunnel}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ztunnel, namespace: ztunnel}
spec:
  selector: {matchLabels: {app: ztunnel}}
  template:
    metadata: {labels: {app: ztunnel, sidecar.istio.io/inject: 'false'}}
    spec: {serviceAccountName: ztunnel, containers: [{name: istio-proxy, image: 'docker.io/istio/ztunnel:1.27.3', args: [proxy, ztunnel]}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: ztunnel-x7k2p
  namespace: ztunnel
  labels: {app: ztunnel, controller-revision-hash: 5d8f, sidecar.istio.io/inject: 'false'}
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: ztunnel, uid: z, controller: true}]
spec: {serviceAccountName: ztunnel, containers: [{name: istio-proxy, image: 'docker.io/istio/ztunnel:1.27.3', args: [proxy, ztunnel]}]}
status: {phase: Running}
";

fn scope(namespace: &str) -> BTreeSet<String> {
    BTreeSet::from([namespace.to_string()])
}

#[test]
fn a_source_or_destination_only_one_configuration_holds_is_no_outcome_change() {
    // A dump of the whole mesh against the same mesh listed with `-n shop` (no other application
    // namespace), after ztunnel was installed: nothing changed for anyone both sides show.
    let dump = snapshot(&[SHOP, OTHER, LEGACY]);
    let listed = snapshot(&[SHOP, ZTUNNEL]);
    for (before, after) in [(&dump, &listed), (&listed, &dump)] {
        let verification = verify(before, after, Some(&scope("shop")));
        let differences: Vec<String> =
            verification.differences.iter().map(|d| format!("{} {}", d.class.word(), d.request)).collect();
        assert_eq!(differences, Vec::<String>::new());
        assert!(verification.requests > 0, "shop's own callers are still compared");
        assert!(
            verification.notes.iter().any(|note| note.contains("only one configuration holds")),
            "{:?}",
            verification.notes
        );
        let exhaustive = verify_exhaustive(before, after, Some(&scope("shop")));
        assert!(exhaustive.differences.is_empty());
    }
    // A change to a source both sides hold is still one.
    let deny = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-other, namespace: shop}
spec: {action: DENY, rules: [{from: [{source: {namespaces: [other]}}]}]}
";
    let verification = verify(&dump, &snapshot(&[SHOP, OTHER, deny]), Some(&scope("shop")));
    assert!(
        verification.differences.iter().any(|d| d.request.source == "other/client" && d.class == Class::Tightened),
        "{verification:#?}"
    );
}

#[test]
fn a_ztunnel_pod_is_no_sidecar_client() {
    let topology = Topology::from_snapshot(&snapshot(&[SHOP, ZTUNNEL]));
    let ztunnel = topology.workload("ztunnel/ztunnel").expect("ztunnel is read");
    assert_eq!(ztunnel.mode, Mode::OutsideMesh, "its istio-proxy container is the node proxy, not a sidecar");
}

#[test]
fn the_bypass_protection_does_not_exempt_ztunnel() {
    // An L7 DENY and no ALLOW: every sidecar caller is legitimate, ztunnel is none of them.
    let policy = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-deletes, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
";
    let input = snapshot(&[SHOP, OTHER, ZTUNNEL, policy]);
    let options = crate::convert::ConvertOptions { namespaces: vec!["shop".into()], ..Default::default() };
    let conversion = crate::convert::convert(&input, &options);
    let exceptions: Vec<String> = conversion
        .changes()
        .iter()
        .filter_map(|change| match change {
            crate::change::Change::Apply { object }
                if object.metadata.name.as_deref() == Some("web-ztunnel-protection") =>
            {
                object.data.pointer("/spec/rules/0/from/0/source/notPrincipals").cloned()
            }
            _ => None,
        })
        .flat_map(|list| serde_json::from_value::<Vec<String>>(list).unwrap())
        .collect();
    assert!(exceptions.contains(&"cluster.local/ns/other/sa/client".to_string()), "{exceptions:?}");
    assert!(!exceptions.iter().any(|principal| principal.contains("/ns/ztunnel/")), "{exceptions:?}");
}

/// A classic ingress gateway (Istio's gateway chart: pods labelled `istio: ingressgateway`, an
/// injected `istio-proxy`), and a mesh VirtualService sending everything of shop/web to v2.
const CLASSIC_INGRESS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: istio-ingress}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-ingressgateway, namespace: istio-ingress}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  template:
    metadata: {labels: {istio: ingressgateway, app: istio-ingressgateway}}
    spec: {serviceAccountName: istio-ingressgateway, containers: [{name: istio-proxy, image: auto}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec: {host: web, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web, subset: v2}}]}]
";

fn get(source: &str, service: &str) -> Request {
    Request {
        source: source.into(),
        destination: Target { address: Address::Service, namespace: "shop".into(), name: service.into(), port: 80 },
        http: Some(HttpRequest { method: "GET".into(), path: "/".into(), headers: Default::default() }),
    }
}

#[test]
fn a_classic_ingress_gateway_is_an_ingress_caller_that_mesh_virtual_services_do_not_route() {
    let topology = Topology::from_snapshot(&snapshot(&[SHOP, OTHER, CLASSIC_INGRESS]));
    let gateway = topology.workload("istio-ingress/istio-ingressgateway").expect("the gateway is read");
    assert_eq!(gateway.mode, Mode::IngressGateway);
    assert!(gateway.principal.is_some(), "it has a mesh identity");
    let from_gateway = topology.evaluate(&get("istio-ingress/istio-ingressgateway", "web"));
    assert_eq!(
        from_gateway.backend,
        vec!["shop/web-v1", "shop/web-v2"],
        "a mesh-bound VirtualService does not apply at a gateway: {}",
        from_gateway.explanation
    );
    let from_sidecar = topology.evaluate(&get("other/client", "web"));
    assert_eq!(from_sidecar.backend, vec!["shop/web-v2"], "{}", from_sidecar.explanation);
}

#[test]
fn a_destination_host_missing_from_the_input_makes_the_outcome_unknown_not_loosened() {
    let canary = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web-canary}}]}]
";
    let before = snapshot(&[SHOP, OTHER, canary]);
    let after = snapshot(&[SHOP, OTHER]);
    let verification = verify(&before, &after, Some(&scope("shop")));
    let from_client: Vec<_> = verification.differences.iter().filter(|d| d.request.source == "other/client").collect();
    assert!(!from_client.is_empty(), "the VirtualService's removal is seen");
    for difference in from_client {
        assert_eq!(difference.class, Class::Unknown, "{}", difference.explanation());
        assert!(difference.before.unknown && difference.explanation().contains("web-canary"));
        assert!(!difference.expected, "an unknown outcome is not a verdict of equivalence");
    }
    assert!(verification.differences.iter().all(|d| d.class != Class::Loosened));
}

/// The exceptions of the bypass protection the conversion of shop gives `service`.
fn protection_exceptions(input: &Snapshot, service: &str) -> Vec<String> {
    let options = crate::convert::ConvertOptions { namespaces: vec!["shop".into()], ..Default::default() };
    let name = format!("{service}-ztunnel-protection");
    crate::convert::convert(input, &options)
        .changes()
        .iter()
        .filter_map(|change| match change {
            crate::change::Change::Apply { object } if object.metadata.name.as_deref() == Some(name.as_str()) => {
                object.data.pointer("/spec/rules/0/from/0/source/notPrincipals").cloned()
            }
            _ => None,
        })
        .flat_map(|list| serde_json::from_value::<Vec<String>>(list).unwrap())
        .collect()
}

#[test]
fn a_sidecar_pod_whose_controller_is_not_in_the_input_is_a_caller() {
    // A Job's pod and a bare pod, both with sidecars; neither controller is in the input.
    let callers = "
apiVersion: v1
kind: Namespace
metadata: {name: batch, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata:
  name: report-8x2kq
  namespace: batch
  labels: {job-name: report, batch.kubernetes.io/job-name: report}
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: report, uid: j, controller: true}]
spec: {serviceAccountName: report, containers: [{name: report}, {name: istio-proxy}]}
status: {phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: batch, labels: {run: debug}}
spec: {serviceAccountName: debug, containers: [{name: debug}, {name: istio-proxy}]}
status: {phase: Running}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-readers, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/batch/sa/report, cluster.local/ns/batch/sa/debug]}}]
    to: [{operation: {methods: [GET]}}]
";
    let input = snapshot(&[SHOP, callers]);
    let exceptions = protection_exceptions(&input, "web");
    for caller in ["cluster.local/ns/batch/sa/report", "cluster.local/ns/batch/sa/debug"] {
        assert!(exceptions.iter().any(|principal| principal == caller), "{caller} skips the waypoint: {exceptions:?}");
    }
    let topology = Topology::from_snapshot(&input);
    for key in ["batch/report", "batch/debug"] {
        assert_eq!(topology.workload(key).map(|workload| workload.mode), Some(Mode::Sidecar), "{key}");
    }
}

const ISSUER: &str = "https://idp.example";

/// A RequestAuthentication for `app` in bookinfo, trusting [`ISSUER`].
fn request_authentication(app: &str) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
        "metadata": {"name": format!("{app}-jwt"), "namespace": "bookinfo"},
        "spec": {"selector": {"matchLabels": {"app": app}}, "jwtRules": [{"issuer": ISSUER, "jwksUri": "https://idp.example/keys"}]},
    }))
    .unwrap()
}

fn bookinfo_policy(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "bookinfo"}, "spec": spec,
    }))
    .unwrap()
}

fn token_of(request: &Request) -> Option<super::jwt::Token> {
    request.http.as_ref().and_then(|http| super::jwt::Token::of(&http.headers))
}

#[test]
fn a_deny_on_token_bearing_requests_is_seen() {
    // The sidecar era denies reviews to every request with a valid token; without that DENY,
    // token-bearing requests get through: loosened, and only those.
    let mut without = super::tests::sidecar_era();
    without.push(request_authentication("reviews"));
    let mut with_deny = without.clone();
    with_deny.push(bookinfo_policy(
        "no-tokens",
        serde_json::json!({"selector": {"matchLabels": {"app": "reviews"}}, "action": "DENY",
            "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}),
    ));
    let verification = verify(&Snapshot::from_objects(with_deny), &Snapshot::from_objects(without), None);
    assert!(!verification.differences.is_empty(), "the DENY mattered");
    for difference in &verification.differences {
        assert_eq!(difference.class, Class::Loosened, "{}", difference.request);
        assert!(
            matches!(token_of(&difference.request), Some(super::jwt::Token::Valid { ref issuer, .. }) if issuer == ISSUER),
            "only requests with a valid token differ: {}",
            difference.request
        );
    }
    let productpage = "bookinfo/productpage-v1 -> svc bookinfo/reviews:9080 GET /";
    assert!(
        verification.differences.iter().any(|d| d.request.to_string().starts_with(productpage)),
        "productpage's GET with a token: {:#?}",
        verification.differences.iter().map(|d| d.request.to_string()).collect::<Vec<_>>()
    );
}

#[test]
fn an_invalid_token_is_rejected_where_a_request_authentication_applies() {
    let mut objects = super::tests::sidecar_era();
    objects.push(request_authentication("reviews"));
    let topology = Topology::from_snapshot(&Snapshot::from_objects(objects));
    let mut request = Request {
        source: "bookinfo/productpage-v1".into(),
        destination: Target {
            address: Address::Service,
            namespace: "bookinfo".into(),
            name: "reviews".into(),
            port: 9080,
        },
        http: Some(HttpRequest { method: "GET".into(), path: "/".into(), headers: Default::default() }),
    };
    assert!(topology.evaluate(&request).allowed, "no token: accepted");
    let headers = &mut request.http.as_mut().unwrap().headers;
    headers.insert(super::jwt::TOKEN_HEADER.into(), super::jwt::Token::Invalid.header());
    let rejected = topology.evaluate(&request);
    assert!(!rejected.allowed && rejected.explanation.contains("401"), "{}", rejected.explanation);
}

#[test]
fn an_ingress_gateway_presenting_a_token_keeps_access_after_conversion() {
    // productpage admits any caller with a token of the issuer: the gateway's requests carry one.
    let mut objects = super::tests::sidecar_era();
    objects.retain(|object| object.metadata.name.as_deref() != Some("productpage-viewer"));
    objects.push(request_authentication("productpage"));
    objects.push(bookinfo_policy(
        "productpage-viewer",
        serde_json::json!({"selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW", "rules": [{
            "from": [{"source": {"requestPrincipals": [format!("{ISSUER}/*")]}}],
            "to": [{"operation": {"methods": ["GET", "POST"]}}],
        }]}),
    ));
    let input = Snapshot::from_objects(objects);
    let options = crate::convert::ConvertOptions { namespaces: vec!["bookinfo".into()], ..Default::default() };
    let conversion = crate::convert::convert(&input, &options);
    let verification = super::verify::verify_change(&input, conversion.changes(), &["bookinfo".into()], None);
    // Only plaintext clients outside the mesh lose access (the protection denies callers without
    // a mesh identity), which the conversion warns about; every caller with an identity, the
    // gateway first, keeps its outcomes.
    let unexpected: Vec<String> = verification
        .unexpected()
        .filter(|d| d.request.source != super::evaluate::OUTSIDE_CLIENT)
        .map(|d| format!("{} {}: {}", d.class.word(), d.request, d.explanation()))
        .collect();
    assert_eq!(unexpected, Vec::<String>::new());
    assert!(
        conversion.warnings.iter().any(|warning| warning.message.contains("without a mesh identity")),
        "{:#?}",
        conversion.warnings
    );
    let gateway = "bookinfo/bookinfo-gateway -> svc bookinfo/productpage:9080 GET /";
    let before = Topology::from_snapshot(&input);
    let with_token = Request {
        source: "bookinfo/bookinfo-gateway".into(),
        destination: Target {
            address: Address::Service,
            namespace: "bookinfo".into(),
            name: "productpage".into(),
            port: 9080,
        },
        http: Some(HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: [(
                super::jwt::TOKEN_HEADER.to_string(),
                super::jwt::Token::Valid { issuer: ISSUER.into(), subject: "alice".into() }.header(),
            )]
            .into(),
        }),
    };
    assert!(before.evaluate(&with_token).allowed, "{gateway} with a token is allowed in the sidecar era");
    let labelled = conversion.changes().iter().any(|change| {
        matches!(change, crate::change::Change::SetLabels { target, labels } if target.name == "productpage"
            && labels.get(crate::mesh::labels::INGRESS_USE_WAYPOINT) == Some(&Some("true".to_string())))
    });
    assert!(labelled, "the gateway goes through the waypoint, which checks its token");
}

/// shop's web admits only other/client, named in `trust_domain`.
fn web_admits_client_in(trust_domain: &str) -> String {
    format!(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: web-readers, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  action: ALLOW
  rules: [{{from: [{{source: {{principals: ['{trust_domain}/ns/other/sa/client']}}}}]}}]
"
    )
}

fn client_reaches_web(topology: &Topology) -> bool {
    topology.evaluate(&get("other/client", "web")).allowed
}

#[test]
fn a_principal_in_a_trust_domain_alias_names_the_mesh_s_own_workload() {
    let istio = "
apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: default}
spec: {values: {meshConfig: {trustDomain: new.example, trustDomainAliases: [old.example]}}}
";
    for named_in in ["old.example", "new.example", "cluster.local"] {
        let topology = Topology::from_snapshot(&snapshot(&[SHOP, OTHER, istio, &web_admits_client_in(named_in)]));
        assert_eq!(topology.trust_domain, "new.example");
        assert!(client_reaches_web(&topology), "a principal in {named_in} is the client's");
    }
    let elsewhere = Topology::from_snapshot(&snapshot(&[SHOP, OTHER, istio, &web_admits_client_in("other.example")]));
    assert!(!client_reaches_web(&elsewhere), "a foreign trust domain is not an alias");
}

#[test]
fn without_an_istio_resource_the_trust_domain_is_inferred_from_the_principals() {
    let topology = Topology::from_snapshot(&snapshot(&[SHOP, OTHER, &web_admits_client_in("corp.example")]));
    assert_eq!(topology.trust_domain, "corp.example");
    assert!(client_reaches_web(&topology), "the policy's principal is the client's");
    let input = snapshot(&[SHOP, OTHER, &web_admits_client_in("corp.example")]);
    let options = crate::convert::ConvertOptions { namespaces: vec!["shop".into()], ..Default::default() };
    let conversion = crate::convert::convert(&input, &options);
    assert!(
        conversion.warnings.iter().any(|warning| warning.message.contains("corp.example inferred")),
        "{:#?}",
        conversion.warnings
    );
}

#[test]
fn a_caller_whose_sidecar_is_gone_no_longer_skips_the_waypoint_through_the_protection() {
    // During the migration of shop, other/client keeps its sidecar and is exempt from web's
    // protection; once other is ambient too, its pod-address requests meet ztunnel directly and
    // must be refused where the waypoint would refuse them (DELETE), not let through.
    let readers = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-readers, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/other/sa/client]}}], to: [{operation: {methods: [GET]}}]}]
";
    let input = snapshot(&[SHOP, OTHER, readers]);
    let options = crate::convert::ConvertOptions { namespaces: vec!["shop".into()], ..Default::default() };
    let conversion = crate::convert::convert(&input, &options);
    assert!(protection_exceptions(&input, "web").contains(&"cluster.local/ns/other/sa/client".to_string()));
    let everyone_ambient = super::state::MigrationState {
        enrolled: ["shop".to_string(), "other".to_string()].into(),
        waypoints: ["shop".to_string()].into(),
        sidecars: BTreeSet::new(),
    };
    let verification =
        super::verify::verify_change(&input, conversion.changes(), &["shop".into()], Some(&everyone_ambient));
    let unexpected: Vec<String> =
        verification.unexpected().map(|d| format!("{} {}", d.class.word(), d.request)).collect();
    assert!(unexpected.iter().all(|d| !d.starts_with("loosened")), "{unexpected:#?}");
    let delete_to_pod = verification
        .differences
        .iter()
        .find(|d| d.request.to_string() == "other/client -> pod shop/web-v1:8080 DELETE /");
    assert!(delete_to_pod.is_none_or(|d| !d.after.allowed), "{delete_to_pod:#?}");
}

#[test]
fn a_job_or_cron_job_of_the_input_is_a_caller_before_its_pods_exist() {
    // An offline input (a chart) holds the Job and the CronJob, not their pods: the injector will
    // give those pods sidecars, so they are callers the protection must let through.
    let jobs = "
apiVersion: v1
kind: Namespace
metadata: {name: batch, labels: {istio-injection: enabled}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: batch}
spec:
  template:
    metadata: {labels: {app: migrate}}
    spec: {serviceAccountName: migrate, restartPolicy: Never, containers: [{name: m, image: migrate}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: batch}
spec:
  schedule: '0 * * * *'
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: report}}
        spec: {serviceAccountName: report, restartPolicy: Never, containers: [{name: r, image: report}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-readers, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/batch/sa/migrate, cluster.local/ns/batch/sa/report]}}]
    to: [{operation: {methods: [GET]}}]
";
    let input = snapshot(&[SHOP, jobs]);
    let topology = Topology::from_snapshot(&input);
    for key in ["batch/migrate", "batch/report"] {
        assert_eq!(topology.workload(key).map(|workload| workload.mode), Some(Mode::Sidecar), "{key}");
        assert!(topology.evaluate(&get(key, "web")).allowed, "{key} reads web");
    }
    let exceptions = protection_exceptions(&input, "web");
    for caller in ["cluster.local/ns/batch/sa/migrate", "cluster.local/ns/batch/sa/report"] {
        assert!(exceptions.iter().any(|principal| principal == caller), "{caller}: {exceptions:?}");
    }
    // A live Job's pods stand for it: the Job is not a second workload.
    let pod = "
---
apiVersion: v1
kind: Pod
metadata:
  name: migrate-x7k2p
  namespace: batch
  labels: {app: migrate, batch.kubernetes.io/job-name: migrate, job-name: migrate}
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: migrate, uid: j, controller: true}]
spec: {serviceAccountName: migrate, containers: [{name: m}, {name: istio-proxy}]}
status: {phase: Running}
";
    let live = Topology::from_snapshot(&snapshot(&[SHOP, &format!("{jobs}{pod}")]));
    assert_eq!(live.workloads().iter().filter(|workload| workload.name == "migrate").count(), 1);
}
