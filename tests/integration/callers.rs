//! The verifier's sources on a real cluster (issue 16, "callers"): a dump of an unchanged cluster,
//! taken as a user takes it (`kubectl get ... -o json`), is the same mesh as the cluster read live
//! with `-n`, although each lists other namespaces' workloads differently.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use oc_ambient_simulator::SimulatedCluster;
use serde_json::Value;

use crate::check_live::run_check;
use crate::support::eventually;

/// The mesh kinds a user dumps: workloads, Services, Istio's and Gateway API's configuration.
const NAMESPACED_MESH_KINDS: &str = "pods,services,serviceaccounts,deployments,statefulsets,daemonsets,\
authorizationpolicies.security.istio.io,peerauthentications.security.istio.io,\
virtualservices.networking.istio.io,destinationrules.networking.istio.io,gateways.networking.istio.io,\
gateways.gateway.networking.k8s.io,httproutes.gateway.networking.k8s.io";
const CLUSTER_MESH_KINDS: &str = "namespaces,istios.sailoperator.io";

/// A namespace of callers outside bookinfo, one of which bookinfo's policies admit: the
/// callers a dump of the whole cluster holds and `-n bookinfo` does not list.
const CALLERS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: loadgen, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: loadgen}
spec:
  selector: {matchLabels: {app: client}}
  template: {metadata: {labels: {app: client}}, spec: {serviceAccountName: default, containers: [{name: client, image: curl}]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: loadgen-reads-details, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: details}}
  action: ALLOW
  rules: [{from: [{source: {namespaces: [loadgen]}}], to: [{operation: {methods: [GET]}}]}]
";

/// `kubectl get KINDS SCOPE -o json`, written to `path`.
fn kubectl_dump(kubeconfig: &Path, kinds: &str, scope: &[&str], path: &Path) {
    let kubectl = oc_ambient_testenv::binary::kubectl_dir().unwrap().join("kubectl");
    let output = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", kinds, "-o", "json"])
        .args(scope)
        .output()
        .unwrap();
    assert!(output.status.success(), "kubectl get {kinds}: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::write(path, &output.stdout).unwrap();
}

/// The check's `policy-equivalence` findings for bookinfo against `baseline`, as severity and message.
fn equivalence(kubeconfig: &Path, baseline: &[&Path]) -> Vec<(String, String)> {
    let mut args = vec!["-n", "bookinfo"];
    for path in baseline {
        args.extend(["--baseline", path.to_str().unwrap()]);
    }
    let (report, _) = run_check(&args, Some(kubeconfig));
    let findings = report["findings"].as_array().unwrap().iter();
    findings
        .filter(|finding| finding["id"] == "policy-equivalence")
        .map(|finding| {
            let text = |key: &str| finding[key].as_str().unwrap_or_default().to_string();
            (text("severity"), text("message"))
        })
        .collect()
}

// The simulator runs in this process: the plugin runs block one thread, so the simulator needs others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_cluster_is_equal_to_its_own_dump_of_all_namespaces_or_of_one() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let callers = oc_ambient_common::snapshot::parse_documents(Path::new("callers.yaml"), CALLERS).unwrap();
    oc_ambient_testenv::objects::apply_all(&client, &callers).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "loadgen");
    eventually("the loadgen client's pod runs with its sidecar", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|pod| {
                    let running = pod.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Running");
                    let sidecar =
                        pod.spec.as_ref().is_some_and(|spec| spec.containers.iter().any(|c| c.name == "istio-proxy"));
                    running && sidecar
                })
                .then_some(())
        }
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let (all, cluster_scoped, one) =
        (dir.path().join("all.json"), dir.path().join("cluster.json"), dir.path().join("bookinfo.json"));
    kubectl_dump(&kubeconfig, &format!("{CLUSTER_MESH_KINDS},{NAMESPACED_MESH_KINDS}"), &["-A"], &all);
    kubectl_dump(&kubeconfig, NAMESPACED_MESH_KINDS, &["-n", "bookinfo"], &one);
    kubectl_dump(&kubeconfig, CLUSTER_MESH_KINDS, &[], &cluster_scoped);
    let dumped: Value = serde_json::from_slice(&std::fs::read(&all).unwrap()).unwrap();
    assert!(
        dumped["items"].as_array().unwrap().iter().any(|item| item["metadata"]["namespace"] == "loadgen"),
        "the dump of all namespaces holds the callers -n does not list"
    );

    for baseline in [vec![all.as_path()], vec![one.as_path()], vec![one.as_path(), cluster_scoped.as_path()]] {
        let findings = equivalence(&kubeconfig, &baseline);
        assert!(!findings.is_empty(), "the baseline {baseline:?} was compared");
        let failures: Vec<_> = findings.iter().filter(|(severity, _)| severity != "pass").collect();
        assert_eq!(failures, Vec::<&(String, String)>::new(), "baseline {baseline:?}");
    }
}

/// A sidecar-era mesh whose web Service validates end-user tokens of one issuer.
const TOKEN_MESH: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}, spec: {serviceAccountName: web, containers: [{name: web, image: web}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: shop}
spec:
  selector: {matchLabels: {app: client}}
  template: {metadata: {labels: {app: client}}, spec: {serviceAccountName: client, containers: [{name: c, image: curl}]}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: 'https://idp.example', jwksUri: 'https://idp.example/keys'}]
";

const DENY_TOKENS: &str = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-end-users, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {requestPrincipals: ['*']}}]}]
";

#[test]
fn the_check_sees_a_deny_on_token_bearing_requests_go() {
    let dir = tempfile::tempdir().unwrap();
    let (baseline, current) = (dir.path().join("baseline.yaml"), dir.path().join("current.yaml"));
    std::fs::write(&baseline, format!("{TOKEN_MESH}{DENY_TOKENS}")).unwrap();
    std::fs::write(&current, TOKEN_MESH).unwrap();
    let args = ["-f", current.to_str().unwrap(), "--baseline", baseline.to_str().unwrap()];
    let (report, code) = run_check(&args, None);
    let failures: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["id"] == "policy-equivalence" && finding["severity"] == "fail")
        .filter_map(|finding| finding["message"].as_str())
        .collect();
    assert!(!failures.is_empty(), "{report:#}");
    assert!(
        failures.iter().any(|message| message.starts_with("loosened shop/client -> svc shop/web:80 GET /")
            && message.contains("authorization=Bearer iss=https://idp.example")),
        "{failures:#?}"
    );
    assert_ne!(code, Some(0), "a loosened outcome fails the check");
    // The same configuration on both sides: no difference, tokens or not.
    let same = ["-f", current.to_str().unwrap(), "--baseline", current.to_str().unwrap()];
    let (report, _) = run_check(&same, None);
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().filter(|f| f["id"] == "policy-equivalence").all(|f| f["severity"] == "pass"), "{report:#}");
}
