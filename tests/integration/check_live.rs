//! `oc-ambient-check` live against a real API server, and offline on a dump of the same cluster
//! written through the API: both must reach the same findings.

use std::path::Path;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use oc_ambient_common::kinds::ALL;
use oc_ambient_testenv::{ControlPlane, Options};
use serde_json::Value;

use crate::support::plugin;

/// Writes every kind the suite reads as `oc get <kind> -A -o yaml` would: one `kind: List` file
/// per kind, full objects.
pub async fn dump(client: &Client, dir: &Path) {
    for info in ALL {
        let version = info.versions[0];
        let api_version = if info.group.is_empty() { version.to_string() } else { format!("{}/{version}", info.group) };
        let resource = ApiResource {
            group: info.group.into(),
            version: version.into(),
            api_version: api_version.clone(),
            kind: info.name.into(),
            plural: info.plural.into(),
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let Ok(list) = api.list(&ListParams::default()).await else { continue };
        let items: Vec<Value> = list
            .items
            .into_iter()
            .map(|mut object| {
                object.types = Some(kube::core::TypeMeta { api_version: api_version.clone(), kind: info.name.into() });
                serde_json::to_value(object).unwrap()
            })
            .collect();
        let document = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        std::fs::write(dir.join(format!("{}.yaml", info.plural)), serde_yaml_ng::to_string(&document).unwrap())
            .unwrap();
    }
}

/// The report without the notes that only say what an input did not contain: an offline dump
/// cannot tell an empty kind from a missing one.
pub fn comparable(report: &Value) -> Value {
    let mut report = report.clone();
    report.as_object_mut().unwrap().remove("partial");
    let findings =
        report["findings"].as_array().unwrap().iter().filter(|f| f["id"] != "input-coverage").cloned().collect();
    report["findings"] = Value::Array(findings);
    report
}

pub fn run_check(args: &[&str], kubeconfig: Option<&Path>) -> (Value, Option<i32>) {
    let mut command = plugin("oc-ambient-check");
    if let Some(kubeconfig) = kubeconfig {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    let output = command.args(args).args(["-o", "json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("{err}: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr)));
    (report, output.status.code())
}

#[tokio::test]
async fn live_and_offline_agree_on_the_example_mesh() {
    let plane = ControlPlane::start(Options::default()).await.unwrap();
    let client = plane.client().await.unwrap();
    let example = oc_ambient_testenv::workspace_root().join("examples/sidecar-mesh.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    let objects = oc_ambient_common::snapshot::parse_documents(&example, &text).unwrap();
    oc_ambient_testenv::objects::apply_all(&client, &objects).await.unwrap();

    let (live, live_code) = run_check(&[], Some(plane.kubeconfig()));
    assert_eq!(live["partial"], false, "live mode lists every kind");
    assert_eq!(live["namespaces"][0]["phase"], "sidecar");
    assert_eq!(live["cluster"]["gatewayAPI"], "v1.3.0", "from the real CRD's bundle annotation");

    let dir = tempfile::tempdir().unwrap();
    dump(&client, dir.path()).await;
    let (offline, offline_code) = run_check(&["--from-dir", dir.path().to_str().unwrap()], None);
    assert_eq!(comparable(&live), comparable(&offline));
    assert_eq!(live_code, offline_code);

    // The dump the example was written as gives the same answers too (it lacks only the CRDs).
    let (from_example, _) = run_check(&["-f", example.to_str().unwrap()], None);
    let without_crd_check = |report: &Value| {
        let mut report = comparable(report);
        let findings: Vec<Value> =
            report["findings"].as_array().unwrap().iter().filter(|f| f["id"] != "gateway-api-crds").cloned().collect();
        report["findings"] = Value::Array(findings);
        report["cluster"]["gatewayAPI"] = Value::Null;
        report
    };
    assert_eq!(without_crd_check(&live), without_crd_check(&from_example));
}

#[tokio::test]
async fn a_user_without_list_rights_gets_a_partial_report_not_a_crash() {
    let plane = crate::support::plane();
    let output = plugin("oc-ambient-check")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig())
        .args(["--context", "viewer", "-A", "-o", "json", "-v"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{err}; stderr: {stderr}"));
    assert_eq!(report["partial"], true, "the view role cannot list secrets or nodes");
    let notes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "input-coverage")
        .filter_map(|f| f["message"].as_str())
        .collect();
    assert!(notes.iter().any(|n| n.contains("forbidden: cannot list nodes")), "{notes:?}");
    assert!(stderr.contains("no permission to list"), "-v says what was denied: {stderr}");
}

#[tokio::test]
async fn a_namespace_admin_can_check_their_namespace() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
    use kube::api::{ObjectMeta, PostParams};

    let plane = crate::support::plane();
    let client = plane.client().await.unwrap();
    let namespace = plane.namespace(&client, "check-nsadmin").await.unwrap();
    let user = format!("{namespace}-admin");
    // Namespace-scoped rights only: view and mesh reads inside the namespace, and get on the
    // namespace itself (what an OpenShift project admin has), through RoleBindings.
    let get_namespace = ClusterRole {
        metadata: ObjectMeta { name: Some(format!("{namespace}-get-namespace")), ..Default::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["namespaces".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(client.clone()).create(&PostParams::default(), &get_namespace).await.unwrap();
    for role in ["view".to_string(), "oc-ambient-mesh-reader".to_string(), format!("{namespace}-get-namespace")] {
        let binding = RoleBinding {
            metadata: ObjectMeta { name: Some(role.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "ClusterRole".into(), name: role },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "User".into(),
                name: user.clone(),
                ..Default::default()
            }]),
        };
        Api::<RoleBinding>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
    }
    let labelled = serde_json::json!({"metadata": {"labels": {"istio.io/rev": "default"}}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(&namespace, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&labelled))
        .await
        .unwrap();

    // The admin's certificate, impersonating the namespace admin (kubeconfig `as:`).
    let mut config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(plane.kubeconfig()).unwrap()).unwrap();
    config["users"][0]["user"]["as"] = Value::String(user.clone());
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kubeconfig.path(), serde_yaml_ng::to_string(&config).unwrap()).unwrap();

    let (report, code) = run_check(&["-n", &namespace], Some(kubeconfig.path()));
    assert_eq!(report["partial"], true, "cluster-scoped kinds are out of reach");
    assert_eq!(report["namespaces"][0]["name"], namespace.as_str());
    assert_eq!(report["namespaces"][0]["phase"], "sidecar", "the namespace's own labels were read with get");
    assert!(matches!(code, Some(0 | 1)), "evaluated, not an error");
}

/// The check reads pruned objects from the watch cache (`LoadOptions::for_check`); on clusters with
/// injected pods, a SPIFFE CSI volume, a remote secret and a half-done migration it must report
/// exactly what it reports from whole objects read consistently, live and from a dump, for the
/// assessment and every step's checkpoint.
#[tokio::test]
async fn the_check_reports_the_same_from_the_fields_it_reads_as_from_whole_objects() {
    use oc_ambient_common::check::{Options as CheckOptions, Scope, evaluate};
    use oc_ambient_common::fields::Fields;
    use oc_ambient_common::kinds::Kind;
    use oc_ambient_common::live::{ListScope, LoadOptions, load};

    for scenario in ["blocker-spiffe-csi", "blocker-remote-secret", "half-migrated-wrong-order"] {
        let cluster = oc_ambient_simulator::SimulatedCluster::start(scenario).await.unwrap();
        let connection = crate::support::connect(cluster.plane().kubeconfig().to_path_buf()).await;
        let whole = load(&connection, &LoadOptions::default()).await.unwrap();
        let read = load(&connection, &LoadOptions::for_check(ListScope::AllNamespaces)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        dump(&cluster.client().await.unwrap(), dir.path()).await;
        let read_offline = |fields| {
            oc_ambient_common::input::read_snapshot(&[dir.path().to_path_buf()], &Default::default(), fields).unwrap()
        };
        let (dump_whole, dump_read) = (read_offline(Fields::All), read_offline(Fields::Read));

        let size = |snapshot: &oc_ambient_common::snapshot::Snapshot, kind| {
            serde_json::to_string(snapshot.all(kind)).unwrap().len()
        };
        assert!(size(&read, Kind::Pod) * 2 < size(&whole, Kind::Pod), "{scenario}: injected pods shrink by half");
        assert_eq!(read.all(Kind::Pod).len(), whole.all(Kind::Pod).len());
        let namespace = &read.all(Kind::Namespace)[0];
        assert!(namespace.data.get("spec").is_none(), "{scenario}: namespaces are read as metadata only");
        assert!(namespace.metadata.labels.is_some(), "{scenario}: with their labels");
        for step in std::iter::once(None).chain((1..=9).map(Some)) {
            let options = CheckOptions { scope: Scope::All, step, baseline: None };
            let expected = serde_json::to_value(evaluate(&whole, &options)).unwrap();
            assert_eq!(serde_json::to_value(evaluate(&read, &options)).unwrap(), expected, "{scenario} {step:?}");
            let offline = serde_json::to_value(evaluate(&dump_read, &options)).unwrap();
            let offline_whole = serde_json::to_value(evaluate(&dump_whole, &options)).unwrap();
            assert_eq!(offline, offline_whole, "{scenario} {step:?}: the dump, pruned while parsed");
        }
    }
}
