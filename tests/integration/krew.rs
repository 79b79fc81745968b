//! krew packaging (issue 13): the manifests are valid by krew's own validator, and the archives
//! `scripts/release.sh` builds install with krew and run as kubectl plugins through its links.

use std::path::{Path, PathBuf};
use std::process::Command;

const TASKS: [&str; 4] = ["check", "enable", "waypoint", "rollback"];

fn validate(manifest: &Path) {
    let validator = oc_ambient_testenv::binary::krew_dir().unwrap().join("validate-krew-manifest");
    let output = Command::new(validator).arg("-skip-install").arg("-manifest").arg(manifest).output().unwrap();
    assert!(
        output.status.success(),
        "{} is not a valid krew manifest:\n{}{}",
        manifest.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_committed_krew_manifest_holds_one_valid_plugin_per_command() {
    let text = std::fs::read_to_string(oc_ambient_testenv::workspace_root().join("krew-manifest.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for document in text.split("\n---\n").skip(1) {
        let name = document.lines().find_map(|line| line.strip_prefix("  name: ")).expect("metadata.name").to_string();
        // krew reads one plugin per file, named after the plugin.
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, document).unwrap();
        validate(&path);
        names.push(name);
    }
    assert_eq!(names, TASKS.map(|task| format!("ambient-{task}")));
}

#[test]
fn the_release_archive_installs_with_krew_and_runs_as_a_kubectl_plugin() {
    let root = oc_ambient_testenv::workspace_root();
    let dist = tempfile::tempdir().unwrap();
    // Builds the release binaries unless they are current (CI builds them before the tests).
    let release = Command::new("bash")
        .arg(root.join("scripts/release.sh"))
        .arg(dist.path())
        .env("RELEASE_URL", "https://example.invalid/oc-ambient")
        .output()
        .unwrap();
    assert!(release.status.success(), "release.sh: {}", String::from_utf8_lossy(&release.stderr));
    let archives: Vec<PathBuf> = std::fs::read_dir(dist.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    assert_eq!(archives.len(), 1, "one archive for the host: {archives:?}");
    let listing = Command::new("tar").arg("-tzf").arg(&archives[0]).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for entry in ["LICENSE", "oc-ambient-check", "oc-ambient-enable", "oc-ambient-waypoint", "oc-ambient-rollback"] {
        assert!(listing.lines().any(|line| line.trim_start_matches("./") == entry), "{entry} in:\n{listing}");
    }

    let krew = oc_ambient_testenv::binary::krew_dir().unwrap().join("krew");
    let krew_root = tempfile::tempdir().unwrap();
    for task in TASKS {
        let manifest = dist.path().join(format!("krew/ambient-{task}.yaml"));
        validate(&manifest);
        let install = Command::new(&krew)
            .args(["install", "--no-update-index"])
            .arg(format!("--manifest={}", manifest.display()))
            .arg(format!("--archive={}", archives[0].display()))
            .env("KREW_ROOT", krew_root.path())
            .output()
            .unwrap();
        assert!(
            install.status.success(),
            "krew install ambient-{task}: {}{}",
            String::from_utf8_lossy(&install.stdout),
            String::from_utf8_lossy(&install.stderr)
        );
    }
    let kubectl_dir = oc_ambient_testenv::binary::kubectl_dir().unwrap();
    let path = format!("{}:{}:/usr/bin:/bin", krew_root.path().join("bin").display(), kubectl_dir.display());
    for task in TASKS {
        let help =
            Command::new("kubectl").args([&format!("ambient-{task}"), "--help"]).env("PATH", &path).output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "kubectl ambient-{task} --help: {}", String::from_utf8_lossy(&help.stderr));
        assert!(text.contains(&format!("Usage: kubectl ambient-{task}")), "{text}");
    }
}
