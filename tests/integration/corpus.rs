//! The project's own real-world corpus (issue 16, acceptance 1): the public Istio configurations
//! under `tests/corpus` (tutorials, a workshop, demo applications, progressive-delivery examples;
//! sources and licences in `tests/corpus/SOURCES.md`), each run through the installed binaries as
//! a user would, with these invariants:
//!
//! * no crash and no hang: every command ends, within a time box, with exit 0 or 1;
//! * every object convert emits is valid on the real API server (a server-side dry run, so the
//!   Istio 1.27 and Gateway API v1.3 CRDs' schemas and CEL rules judge it);
//! * one verdict: convert's exit code, `convert --verify`'s, and the check's `conversion-verdict`
//!   (failed exactly when convert would exit 1) agree, and a READY check never meets a convert
//!   that exits 1.
//!
//! Inputs whose verdict is 1 are fine; a disagreement between the three is the bug. The corpus
//! files hold configuration only, so each gets the Services and Deployments its hosts and
//! selectors name (`workloads_for`, shared with the fixtures corpus test), and objects without a
//! namespace go to `default`, as `kubectl apply -f` would put them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;

use crate::convert::{dry_run_create, files_under, read_input, workloads_for};
use crate::support::{plane, plugin};

/// Generous for a debug build on a shared machine; a hang is minutes, not seconds.
const TIME_BOX: Duration = Duration::from_secs(120);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// `owner/repo` of a corpus file.
fn repository(file: &Path) -> String {
    let relative = file.strip_prefix(corpus_dir()).unwrap_or(file);
    relative.iter().take(2).map(|part| part.to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Every corpus file, with its objects placed and completed by the workloads they name, written
/// where the binaries read it.
fn corpus_inputs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    files_under(&corpus_dir(), &mut files);
    files.retain(|file| file.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"));
    let mut inputs = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let label = file.strip_prefix(corpus_dir()).unwrap_or(file).display().to_string();
        let input = read_input(label.clone(), std::slice::from_ref(file));
        let mut objects = input.objects.unwrap_or_else(|err| panic!("{label}: unreadable: {err}"));
        for object in &mut objects {
            object.metadata.namespace.get_or_insert_with(|| "default".to_string());
        }
        let documents: Vec<String> = workloads_for(&objects)
            .iter()
            .chain(&objects)
            .map(|object| serde_yaml_ng::to_string(object).unwrap())
            .collect();
        let path = dir.join(format!("input-{index}.yaml"));
        std::fs::write(&path, documents.join("---\n")).unwrap();
        inputs.push((label, path));
    }
    inputs
}

/// Runs a binary on the input within the time box; its exit code (0 or 1) and stdout.
fn run(label: &str, binary: &str, args: &[&str], input: &Path) -> (i32, Vec<u8>) {
    let output = plugin(binary)
        .args(args)
        .arg("-f")
        .arg(input)
        .timeout(TIME_BOX)
        .output()
        .unwrap_or_else(|err| panic!("{label}: {binary} {args:?}: {err}"));
    let code = output.status.code().unwrap_or_else(|| panic!("{label}: {binary} {args:?} hung or was killed"));
    assert!(
        code == 0 || code == 1,
        "{label}: {binary} {args:?} exited {code}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (code, output.stdout)
}

#[tokio::test]
async fn the_real_world_corpus_gets_one_verdict_and_only_valid_objects() {
    let plane = plane();
    let client = plane.client().await.unwrap();
    let namespace = plane.namespace(&client, "corpus-dry-run").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inputs = corpus_inputs(dir.path());
    let repositories: BTreeSet<String> = inputs.iter().map(|(label, _)| repository(Path::new(label))).collect();
    assert!(inputs.len() >= 50 && repositories.len() >= 6, "{} inputs from {repositories:?}", inputs.len());

    let (mut disagreements, mut rejected, mut faithful, mut emitted) = (Vec::new(), Vec::new(), 0, 0);
    for (label, input) in &inputs {
        let (converted, stdout) = run(label, "oc-ambient-waypoint", &["convert", "-o", "json"], input);
        let conversion: Value = serde_json::from_slice(&stdout).unwrap_or_else(|err| panic!("{label}: {err}"));
        let (verified, _) = run(label, "oc-ambient-waypoint", &["convert", "--verify", "-o", "json"], input);
        let (_, stdout) = run(label, "oc-ambient-check", &["-o", "json"], input);
        let report: Value = serde_json::from_slice(&stdout).unwrap_or_else(|err| panic!("{label}: {err}"));
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        let verdict_failed = findings.iter().any(|f| f["id"] == "conversion-verdict" && f["severity"] == "fail");
        let ready = report["ready"] == true;
        let checked = i32::from(verdict_failed);
        if converted != verified || converted != checked || (ready && converted != 0) {
            disagreements.push(format!(
                "{label}: convert {converted}, --verify {verified}, check conversion-verdict {checked} (ready {ready}); \
                 convert's reasons {}",
                conversion["reasons"]
            ));
        }
        faithful += usize::from(converted == 0);
        if converted != 0 {
            eprintln!("not faithful: {label}: {}", conversion["reasons"]);
            for entry in conversion["unsupported"].as_array().into_iter().flatten() {
                eprintln!("    {} {}: {}", entry["object"]["name"], entry["field"], entry["reason"]);
            }
        }
        for item in conversion["items"].as_array().into_iter().flatten() {
            emitted += 1;
            let object: DynamicObject = serde_json::from_value(item.clone()).unwrap();
            if let Err(err) = dry_run_create(&client, &namespace, &object).await {
                rejected.push(format!("{label}: {}: {err}", object.metadata.name.as_deref().unwrap_or_default()));
            }
        }
    }
    eprintln!(
        "{} inputs from {} repositories: {faithful} converted faithfully, {} not; {emitted} objects emitted",
        inputs.len(),
        repositories.len(),
        inputs.len() - faithful
    );
    assert!(emitted > 40, "the corpus exercises the converter ({emitted} objects)");
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    assert!(rejected.is_empty(), "{} objects rejected by the API server:\n{}", rejected.len(), rejected.join("\n"));
}
