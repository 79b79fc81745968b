//! `oc-ambient-rollback` against the simulated cluster (issue 12): bookinfo migrated with the
//! suite's own commands up to a step, then rolled back, must equal the sidecar era again; an
//! interrupted rollback finishes from another machine; a migration by hand is rolled back from a
//! backup; dry runs, consent and permissions behave as for the other mutating commands.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use oc_ambient_common::change::ResourceRef;
use oc_ambient_common::engine::apply::{api, api_resource, with_type};
use oc_ambient_common::kinds::Kind;
use oc_ambient_simulator::SimulatedCluster;
use serde_json::{Value, json};

use crate::check_live::run_check;
use crate::enable::{replica_sets, settled_versions, versions};
use crate::support::{accepting_windows, connect, enable, run_plugin, text, waypoint, window_ids};

fn rollback(kubeconfig: &Path, state_dir: &Path, args: &[&str]) -> Output {
    run_plugin("oc-ambient-rollback", kubeconfig, state_dir, args)
}

/// What the acceptance compares, per object of these kinds.
const COMPARED: [Kind; 12] = [
    Kind::Namespace,
    Kind::Istio,
    Kind::IstioCni,
    Kind::ZTunnel,
    Kind::VirtualService,
    Kind::DestinationRule,
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
    Kind::PeerAuthentication,
    Kind::Gateway,
    Kind::HttpRoute,
    Kind::Service,
];

/// The cluster as the acceptance compares it: labels, annotations and fields of every object of
/// [`COMPARED`] without uid, resourceVersion, managedFields, generation, timestamps and status
/// (and without the suite's own state namespace), plus, per bookinfo pod, whether it has a sidecar
/// and whether that speaks HBONE.
pub(crate) async fn mesh_state(client: &kube::Client) -> BTreeMap<String, Value> {
    mesh_state_with_pods_of(client, &["bookinfo"]).await
}

/// [`mesh_state`] with the pods of `namespaces`.
pub(crate) async fn mesh_state_with_pods_of(client: &kube::Client, namespaces: &[&str]) -> BTreeMap<String, Value> {
    let list_api = |kind: Kind| {
        let target = ResourceRef::new(kind, None, "");
        let resource = api_resource(&target);
        Api::<DynamicObject>::all_with(client.clone(), &resource)
    };
    let mut found = BTreeMap::new();
    for kind in COMPARED {
        let Ok(list) = list_api(kind).list(&ListParams::default()).await else { continue };
        for object in list.items {
            let namespace = object.metadata.namespace.clone().unwrap_or_default();
            let name = object.metadata.name.clone().unwrap_or_default();
            if namespace == "oc-ambient" || (kind == Kind::Namespace && name == "oc-ambient") {
                continue;
            }
            let mut data = object.data.clone();
            data.as_object_mut().map(|map| map.remove("status"));
            let labels = object.metadata.labels.clone().filter(|labels| !labels.is_empty());
            let annotations = object.metadata.annotations.clone().filter(|annotations| !annotations.is_empty());
            found.insert(
                format!("{} {namespace}/{name}", kind.name()),
                json!({"labels": labels, "annotations": annotations, "data": data}),
            );
        }
    }
    for namespace in namespaces {
        let pods: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &api_resource(&ResourceRef::new(Kind::Pod, Some(namespace), "")),
        );
        let mut sidecars: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .map(|pod| with_type(Kind::Pod, pod))
            .map(|pod| {
                let model = oc_ambient_common::model::Pod::of(&pod);
                let labels = oc_ambient_common::mesh::labels(&pod);
                let workload = labels.get("app").or(labels.get("gateway.networking.k8s.io/gateway-name"));
                format!("{:?}/{:?} sidecar={} hbone={}", workload, labels.get("version"), model.sidecar, model.hbone)
            })
            .collect();
        sidecars.sort();
        found.insert(format!("pods {namespace}"), json!(sidecars));
    }
    found
}

/// Waits until the cluster equals `wanted` (deleted namespaces and rollouts take a moment), else
/// fails naming every object that differs.
pub(crate) async fn assert_back_to(client: &kube::Client, wanted: &BTreeMap<String, Value>, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let namespaces: Vec<&str> = wanted.keys().filter_map(|key| key.strip_prefix("pods ")).collect();
    loop {
        let found = mesh_state_with_pods_of(client, &namespaces).await;
        let differences: Vec<String> = found
            .keys()
            .chain(wanted.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|key| found.get(*key) != wanted.get(*key))
            .map(|key| format!("{key}:\n  now    {}\n  before {}", show(found.get(key)), show(wanted.get(key))))
            .collect();
        if differences.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{when}: the cluster differs from before:\n{}", differences.join("\n"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(absent)".into(), Value::to_string)
}

fn assert_ok(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", text(output));
}

/// Bookinfo migrated with the suite up to step `last` (2, 3, 5, 7 or 9).
fn migrate(kubeconfig: &Path, state: &Path, last: u8) {
    assert_ok(&enable(kubeconfig, state, &["--yes"]));
    if last >= 3 {
        assert_ok(&enable(kubeconfig, state, &["bookinfo", "--until", "sidecar-hbone", "--yes"]));
    }
    if last >= 5 {
        assert_ok(&waypoint(kubeconfig, state, &["bookinfo", "--until", "policies-migrated", "--yes"]));
    }
    if last >= 7 {
        assert_ok(&enable(kubeconfig, state, &["bookinfo", "--until", "ambient-enrolled", "--yes"]));
        assert_ok(&accepting_windows(waypoint, kubeconfig, state, &["bookinfo"]));
    }
    if last >= 9 {
        assert_ok(&accepting_windows(enable, kubeconfig, state, &["bookinfo"]));
    }
    let (report, code) = run_check(&["-n", "bookinfo", "--step", &last.to_string()], Some(kubeconfig));
    assert_eq!(code, Some(0), "{report:#}");
}

/// The whole cluster as `oc get -o yaml` dumps it, written to `path` (a baseline for the check).
async fn dump(kubeconfig: &Path, path: &Path) {
    let connection = connect(kubeconfig.to_path_buf()).await;
    let snapshot =
        oc_ambient_common::live::load(&connection, &oc_ambient_common::live::LoadOptions::default()).await.unwrap();
    let items: Vec<&DynamicObject> = snapshot.kinds().flat_map(|(kind, _)| snapshot.all(kind)).collect();
    let text = serde_yaml_ng::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The severities of the check's `policy-equivalence` findings for bookinfo against `baseline`:
/// a `fail` per request answered differently, else one `pass` saying every outcome matches.
fn equivalence_to(kubeconfig: &Path, baseline: &Path) -> Vec<String> {
    let (report, _) = run_check(&["-n", "bookinfo", "--baseline", &baseline.to_string_lossy()], Some(kubeconfig));
    let findings = report["findings"].as_array().unwrap().iter();
    let equivalence = findings.filter(|finding| finding["id"] == "policy-equivalence");
    equivalence.map(|finding| finding["severity"].as_str().unwrap_or_default().to_string()).collect()
}

/// A user edits the rules of an HTTPRoute Step 5 created: the rollback reports it, leaves it and
/// rolls back everything else; a rerun with the edit accepted (`--accept edit:<ref>`) deletes it.
async fn edited_route_survives_until_accepted(client: &kube::Client, kubeconfig: &Path, state: &Path) {
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "bookinfo",
        &api_resource(&ResourceRef::new(Kind::HttpRoute, Some("bookinfo"), "")),
    );
    let generated =
        routes.list(&ListParams::default().labels("app.kubernetes.io/managed-by=oc-ambient")).await.unwrap();
    let name = generated.items.first().and_then(|route| route.metadata.name.clone()).expect("Step 5 made a route");
    let edit = json!({"spec": {"rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}]}});
    routes.patch(&name, &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();

    let partial = accepting_windows(rollback, kubeconfig, state, &["--all"]);
    assert_ok(&partial);
    let accept = format!("edit:HTTPRoute/bookinfo/{name}");
    assert!(String::from_utf8_lossy(&partial.stderr).contains(&accept), "{}", text(&partial));
    assert!(routes.get_opt(&name).await.unwrap().is_some(), "the edited route is left alone");
    assert_ok(&accepting_windows(rollback, kubeconfig, state, &["--all", "--accept", &accept]));
    assert!(routes.get_opt(&name).await.unwrap().is_none(), "accepted, the edited route goes");
}

fn phase(kubeconfig: &Path) -> String {
    let (report, _) = run_check(&["-n", "bookinfo"], Some(kubeconfig));
    let namespaces = report["namespaces"].as_array().unwrap();
    namespaces.iter().find(|ns| ns["name"] == "bookinfo").unwrap()["phase"].as_str().unwrap().to_string()
}

/// The acceptance walk on one cluster: roll back everything after Step 3, after Step 5 and after
/// the whole migration (each time the cluster equals the sidecar era again), `--to-step 5` from
/// the finished migration, and a second rollback that has nothing left to do. Dry runs, consent
/// and a view-only identity are tried on the finished migration, where the rollback is largest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_brings_back_the_sidecar_era_after_any_step() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    let original = mesh_state(&client).await;
    assert_eq!(phase(&kubeconfig), "sidecar");
    let sidecar_era = state.path().join("sidecar-era.yaml");
    dump(&kubeconfig, &sidecar_era).await;

    for last in [2, 3, 5, 7] {
        migrate(&kubeconfig, state.path(), last);
        if last == 5 {
            edited_route_survives_until_accepted(&client, &kubeconfig, state.path()).await;
        }
        assert_ok(&accepting_windows(rollback, &kubeconfig, state.path(), &["--all"]));
        assert_back_to(&client, &original, &format!("after step {last} and --all")).await;
    }

    migrate(&kubeconfig, state.path(), 9);
    let migrated = equivalence_to(&kubeconfig, &sidecar_era);
    assert!(
        migrated.iter().all(|severity| severity != "fail"),
        "Step 9 ends with the sidecar era's outcomes (its windows close within its plan): {migrated:?}"
    );
    // A client-side dry run prints the plan; a server-side one sends it with dryRun=All: neither
    // stores anything, nor does a run without consent or with a view-only identity.
    let before = settled_versions(&client).await;
    let planned = rollback(&kubeconfig, state.path(), &["--all", "--dry-run", "-o", "json"]);
    assert_ok(&planned);
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let actions = plan["actions"].as_array().unwrap();
    assert!(actions.iter().all(|action| action["id"].as_str().unwrap().starts_with("undo:step")), "{plan:#}");
    assert!(actions.iter().any(|action| action["step"] == 9) && actions.iter().any(|action| action["step"] == 2));
    let accepts: Vec<String> = window_ids(&plan).into_iter().flat_map(|id| ["--accept".to_string(), id]).collect();
    let with_accepts = |extra: &[&str]| -> Vec<String> {
        ["--all"].iter().chain(extra).map(|arg| arg.to_string()).chain(accepts.iter().cloned()).collect()
    };
    let args = with_accepts(&["--dry-run=server", "--yes"]);
    assert_ok(&rollback(&kubeconfig, state.path(), &args.iter().map(String::as_str).collect::<Vec<_>>()));
    let args = with_accepts(&[]);
    let refused = rollback(&kubeconfig, state.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"), "{}", text(&refused));
    let args = with_accepts(&["--context", "viewer", "--yes"]);
    let viewer = rollback(&kubeconfig, state.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(viewer.status.code(), Some(2), "{}", text(&viewer));
    let stderr = String::from_utf8_lossy(&viewer.stderr);
    assert!(stderr.lines().any(|line| line.starts_with("error:") && line.contains("forbidden")), "{}", text(&viewer));
    assert_eq!(versions(&client).await, before, "dry runs, refusals and denials store nothing");

    // --to-step 5 leaves bookinfo with its waypoint and migrated policies, sidecars back.
    assert_ok(&accepting_windows(rollback, &kubeconfig, state.path(), &["bookinfo", "--to-step", "5"]));
    assert_eq!(phase(&kubeconfig), "policies-migrated");

    assert_ok(&accepting_windows(rollback, &kubeconfig, state.path(), &["--all"]));
    assert_back_to(&client, &original, "after the whole migration and --all").await;
    assert_eq!(phase(&kubeconfig), "sidecar");
    assert_eq!(equivalence_to(&kubeconfig, &sidecar_era), ["pass"], "the verifier sees the sidecar era again");
    // The rollback is journalled: a second one has nothing to do.
    let again = rollback(&kubeconfig, state.path(), &["--all", "--yes", "-o", "json"]);
    assert_ok(&again);
    let plan: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(plan["actions"].as_array().map(Vec::len), Some(0), "{plan:#}");
}

/// A rollback killed during its restarts, finished from a second machine (a fresh working
/// directory: the journal comes from the cluster), ends where an uninterrupted one does, and no
/// workload is restarted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rollback_finishes_from_another_machine() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let first_machine = tempfile::tempdir().unwrap();
    let original = mesh_state(&client).await;
    migrate(&kubeconfig, first_machine.path(), 5);

    let planned = rollback(&kubeconfig, first_machine.path(), &["--all", "--dry-run", "-o", "json"]);
    assert_ok(&planned);
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("oc-ambient-rollback"));
    command.arg("--kubeconfig").arg(&kubeconfig).arg("--state-dir").arg(first_machine.path()).args(["--all", "--yes"]);
    for id in window_ids(&serde_json::from_slice(&planned.stdout).unwrap()) {
        command.args(["--accept", &id]);
    }
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let journal = first_machine.path().join("journal.json");
    let undo_restarts = || {
        std::fs::read_to_string(&journal)
            .ok()
            .and_then(|text| serde_json::from_str::<Vec<Value>>(&text).ok())
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["state"] == "started" && e["change"]["action"] == "restart")
                    .filter(|e| e["action"].as_str().is_some_and(|id| id.starts_with("undo:")))
                    .count()
            })
            .unwrap_or(0)
    };
    crate::support::eventually("two undo restarts journalled", Duration::from_secs(240), || async {
        (undo_restarts() >= 2).then_some(())
    })
    .await;
    child.kill().unwrap();
    let killed = child.wait().unwrap();
    assert_eq!(killed.code(), None, "the rollback was killed midway, not finished: {killed:?}");

    let second_machine = tempfile::tempdir().unwrap();
    assert_ok(&accepting_windows(rollback, &kubeconfig, second_machine.path(), &["--all"]));
    assert_back_to(&client, &original, "after the interrupted rollback and its rerun").await;
    let sets = replica_sets(&client).await;
    // The original ReplicaSet, Step 3's restart, and the rollback's one restart.
    assert!(sets.values().all(|count| *count == 3), "each Deployment restarted once by the rollback: {sets:?}");
    assert!(sets.len() >= 6, "{sets:?}");
}

/// A namespace migrated by hand through the API (no journal) is rolled back from a backup file:
/// what carries the suite's managed-by label and is not in the backup goes, the rest comes back,
/// and an object the user created meanwhile survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_by_hand_is_rolled_back_from_a_backup() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.plane().kubeconfig().to_path_buf();
    let state = tempfile::tempdir().unwrap();
    let original = mesh_state(&client).await;

    // The backup, as a user dumps it with `oc get ... -o yaml`.
    let mut items = Vec::new();
    for kind in COMPARED {
        let target = ResourceRef::new(kind, None, "");
        if let Ok(list) =
            Api::<DynamicObject>::all_with(client.clone(), &api_resource(&target)).list(&ListParams::default()).await
        {
            items.extend(list.items.into_iter().map(|object| with_type(kind, object)));
        }
    }
    let backup = state.path().join("by-hand-backup.yaml");
    std::fs::write(
        &backup,
        serde_yaml_ng::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap(),
    )
    .unwrap();

    // Steps 4 and 5 by hand: the translator's output applied; the namespace enrolled; and a
    // policy of the user's own.
    let converted = waypoint(&kubeconfig, state.path(), &["convert", "-n", "bookinfo", "-o", "json"]);
    let conversion: Value = serde_json::from_slice(&converted.stdout).unwrap();
    let connection = connect(kubeconfig.clone()).await;
    let by_hand = PatchParams::apply("by-hand").force();
    for item in conversion["items"].as_array().unwrap() {
        let object: DynamicObject = serde_json::from_value(item.clone()).unwrap();
        let target = ResourceRef::of(&object).unwrap();
        let api = api(&connection, &target, &api_resource(&target));
        api.patch(&target.name, &by_hand, &Patch::Apply(&object)).await.unwrap();
    }
    let own = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "users-own", "namespace": "bookinfo"},
        "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "action": "ALLOW", "rules": [{}]}});
    let own: DynamicObject = serde_json::from_value(own).unwrap();
    let own_ref = ResourceRef::of(&own).unwrap();
    api(&connection, &own_ref, &api_resource(&own_ref))
        .patch("users-own", &by_hand, &Patch::Apply(&own))
        .await
        .unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let label = json!({"metadata": {"labels": {"istio.io/dataplane-mode": "ambient"}}});
    namespaces.patch("bookinfo", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();

    // No journal: the rollback says so and names --from-backup.
    let without = rollback(&kubeconfig, state.path(), &["bookinfo", "--all", "--yes"]);
    assert_eq!(without.status.code(), Some(2), "{}", text(&without));
    assert!(String::from_utf8_lossy(&without.stderr).contains("--from-backup"), "{}", text(&without));

    let backup_arg = backup.to_string_lossy().to_string();
    let restored =
        accepting_windows(rollback, &kubeconfig, state.path(), &["bookinfo", "--all", "--from-backup", &backup_arg]);
    assert_ok(&restored);
    let mut wanted = original.clone();
    let own_key = "AuthorizationPolicy bookinfo/users-own".to_string();
    let mut now = mesh_state(&client).await;
    assert!(now.remove(&own_key).is_some(), "the user's own policy survives");
    wanted.remove(&own_key);
    // What remains equals the sidecar era (the waypoint's pods and Service go with it).
    let deadline = Instant::now() + Duration::from_secs(120);
    while now != wanted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        now = mesh_state(&client).await;
        now.remove(&own_key);
    }
    let differing: Vec<&String> =
        now.keys().chain(wanted.keys()).filter(|key| now.get(*key) != wanted.get(*key)).collect();
    assert!(differing.is_empty(), "differs from the backup: {differing:#?}");
}

/// A journal longer than one object can hold is split across ConfigMaps, and a second machine (a
/// fresh directory) reads it whole from the cluster.
#[tokio::test]
async fn a_long_journal_is_chunked_and_read_back_from_another_machine() {
    use oc_ambient_common::engine::journal::{Entry, EntryState, Journal};
    let plane = crate::support::plane();
    let connection = connect(plane.kubeconfig().to_path_buf()).await;
    let mut noise = crate::support::noise(0x2545_f491_4f6c_dd1d);
    let first_machine = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(&connection, first_machine.path()).await.unwrap();
    let target = ResourceRef::new(Kind::Namespace, None, "journal-test");
    let entry = |index: usize, prior: Option<DynamicObject>| Entry {
        action: format!("step6:label:Namespace/journal-test-{index}"),
        state: EntryState::Started,
        at: "2026-01-01T00:00:00Z".into(),
        change: oc_ambient_common::change::Change::Restart { target: target.clone() },
        prior,
        accepted: Vec::new(),
    };
    for index in 0..23 {
        let prior = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("big-{index}"), "namespace": "journal-test"}, "data": {"noise": noise(100 * 1024)}}))
        .unwrap();
        journal.entries.push(entry(index, Some(prior)));
    }
    journal.record(&connection, entry(23, None)).await.unwrap();
    let local = std::fs::read_to_string(first_machine.path().join("journal.json")).unwrap();
    assert!(local.len() > 2 * 1024 * 1024, "the journal is {} bytes", local.len());

    let second_machine = tempfile::tempdir().unwrap();
    let read = Journal::open(&connection, second_machine.path()).await.unwrap();
    assert_eq!(read.entries, journal.entries);
    let chunks = crate::support::state_chunks(&connection, "oc-ambient-journal-").await;
    assert!(chunks >= 3, "{chunks} ConfigMaps");
}
