//! Every plugin binary installs under the names kubectl and oc look up, connects to the control
//! plane, and fails cleanly (one line, no panic) when it cannot.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{plane, plugin};

const PLUGINS: [&str; 4] = ["oc-ambient-check", "oc-ambient-enable", "oc-ambient-waypoint", "oc-ambient-rollback"];

/// The arguments a plugin cannot run without: how far `oc-ambient-rollback` goes back is never
/// a default.
fn required_args(plugin: &str) -> &'static [&'static str] {
    if plugin == "oc-ambient-rollback" { &["--all"] } else { &[] }
}

fn cargo_output_dir() -> PathBuf {
    let binary = assert_cmd::cargo::cargo_bin("oc-ambient-check");
    binary.parent().expect("binaries live in a directory").to_path_buf()
}

/// The plugins installed by `scripts/install.sh` into a temporary prefix, with their plugin names.
pub(crate) fn installed() -> tempfile::TempDir {
    let prefix = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(oc_ambient_testenv::workspace_root().join("scripts/install.sh"))
        .arg(cargo_output_dir())
        .arg(prefix.path())
        .status()
        .unwrap();
    assert!(status.success(), "install.sh failed");
    prefix
}

fn kubeconfig_for(server: &str, dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: '{server}', insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: abc}}}}]
contexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]
current-context: ctx
"
        ),
    )
    .unwrap();
    path
}

/// stderr of a failed run: exactly one line, no panic or backtrace.
fn assert_one_clean_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).to_string();
    assert_eq!(text.trim_end().lines().count(), 1, "one line expected, got:\n{text}");
    assert!(!text.contains("panicked") && !text.contains("backtrace"), "{text}");
    text
}

#[test]
fn every_plugin_connects_and_says_so_with_verbose() {
    let plane = plane();
    for name in PLUGINS {
        let output = plugin(name)
            .args(required_args(name))
            .arg("--kubeconfig")
            .arg(plane.kubeconfig())
            .arg("-v")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!("connected to {}: Kubernetes v1.34.4", plane.server());
        assert!(stderr.contains(&expected), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn an_unreachable_server_fails_within_the_request_timeout_naming_its_url() {
    // A listener that completes the TCP handshake and then never answers: the worst case.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("https://127.0.0.1:{}", silent.local_addr().unwrap().port());
    // A port with nothing behind it: connection refused.
    let closed_url = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let dir = tempfile::tempdir().unwrap();
    for (url, label) in [(&silent_url, "silent"), (&closed_url, "refused")] {
        let kubeconfig = kubeconfig_for(url, dir.path());
        for name in PLUGINS {
            let started = Instant::now();
            let output = plugin(name)
                .args(required_args(name))
                .args(["--request-timeout", "2s", "--kubeconfig"])
                .arg(&kubeconfig)
                .timeout(Duration::from_secs(20))
                .output()
                .unwrap();
            let elapsed = started.elapsed();
            assert_eq!(output.status.code(), Some(2), "{name} ({label})");
            assert!(elapsed < Duration::from_secs(6), "{name} ({label}) took {elapsed:?} with a 2s timeout");
            let line = assert_one_clean_line(&output.stderr);
            assert!(line.contains(url.as_str()), "{name} ({label}) must name {url}: {line}");
        }
    }
}

#[test]
fn a_malformed_kubeconfig_or_unknown_context_is_one_line() {
    let plane = plane();
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken");
    std::fs::write(&broken, "clusters: [this is: not: valid").unwrap();
    for name in PLUGINS {
        let output = plugin(name).args(required_args(name)).arg("--kubeconfig").arg(&broken).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let line = assert_one_clean_line(&output.stderr);
        assert!(line.contains("kubeconfig"), "{name}: {line}");

        let output = plugin(name)
            .args(required_args(name))
            .arg("--kubeconfig")
            .arg(plane.kubeconfig())
            .args(["--context", "nope"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let line = assert_one_clean_line(&output.stderr);
        assert!(line.contains("context \"nope\" not found"), "{name}: {line}");
    }
}

#[test]
fn kubectl_finds_the_installed_plugins_and_help_shows_what_was_typed() {
    let prefix = installed();
    let kubectl_dir = oc_ambient_testenv::binary::kubectl_dir().unwrap();
    let path = format!("{}:{}:/usr/bin:/bin", prefix.path().join("bin").display(), kubectl_dir.display());

    let listed = Command::new("kubectl").args(["plugin", "list"]).env("PATH", &path).output().unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "kubectl plugin list: {}{stdout}", String::from_utf8_lossy(&listed.stderr));
    for task in ["check", "enable", "waypoint", "rollback"] {
        assert!(stdout.contains(&format!("kubectl-ambient_{task}")), "kubectl plugin list misses {task}:\n{stdout}");
        let help =
            Command::new("kubectl").args([&format!("ambient-{task}"), "--help"]).env("PATH", &path).output().unwrap();
        let help_text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "kubectl ambient-{task} --help failed");
        assert!(help_text.contains(&format!("Usage: kubectl ambient-{task}")), "{help_text}");
        assert!(help_text.contains("--kubeconfig") && help_text.contains("--context"), "{help_text}");

        let version = Command::new("kubectl")
            .args([&format!("ambient-{task}"), "--version"])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    }
    // oc looks for oc-ambient_check first: the link is there, and it shows `oc ambient-check`.
    let oc_help = Command::new(prefix.path().join("bin/oc-ambient_check")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&oc_help.stdout).contains("Usage: oc ambient-check"));
}

/// Completion scripts for every name a shell runs (the binary and its kubectl-/oc- plugin links):
/// each is for that name, and bash really completes the shared flags with it.
#[test]
fn completion_scripts_complete_every_installed_name() {
    let prefix = installed();
    for task in ["check", "enable", "waypoint", "rollback"] {
        for name in [format!("oc-ambient-{task}"), format!("kubectl-ambient_{task}"), format!("oc-ambient_{task}")] {
            let binary = prefix.path().join("bin").join(&name);
            for shell in ["bash", "zsh", "fish"] {
                let output = Command::new(&binary).args(["--completion", shell]).output().unwrap();
                let script = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "{name} --completion {shell}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(script.contains(&name) && script.contains("kubeconfig"), "{name} {shell}:\n{script}");
            }
            // Source the bash script and ask it to complete `NAME --kubec`, as bash would on TAB.
            let probe = format!(
                r#"source <("{binary}" --completion bash)
function=$(complete -p {name} | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=({name} --kubec); COMP_CWORD=1; COMP_LINE="{name} --kubec"; COMP_POINT=${{#COMP_LINE}}
"$function" {name} --kubec {name}
printf '%s\n' "${{COMPREPLY[@]}}""#,
                binary = binary.display()
            );
            let completed = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
            let words = String::from_utf8_lossy(&completed.stdout);
            assert!(
                words.lines().any(|word| word.trim() == "--kubeconfig"),
                "{name}: {words}{}",
                String::from_utf8_lossy(&completed.stderr)
            );
        }
    }
}

/// `kubectl ambient-check <TAB>`: kubectl's own completion (`kubectl __complete`, what its
/// shell scripts call) finds `kubectl_complete-ambient_check` and offers the plugin's flags and
/// their values.
#[test]
fn kubectl_completes_the_arguments_of_every_plugin() {
    let prefix = installed();
    let kubectl_dir = oc_ambient_testenv::binary::kubectl_dir().unwrap();
    let path = format!("{}:{}:/usr/bin:/bin", prefix.path().join("bin").display(), kubectl_dir.display());
    let complete = |words: &[&str]| {
        let output = Command::new("kubectl").arg("__complete").args(words).env("PATH", &path).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    for task in ["check", "enable", "waypoint", "rollback"] {
        let plugin = format!("ambient-{task}");
        let words = complete(&[&plugin, "--kubec"]);
        assert!(words.contains(&"--kubeconfig".to_string()), "{plugin}: {words:?}");
        let words = complete(&[&plugin, "-o", ""]);
        assert!(
            ["table", "json", "yaml"].iter().all(|format| words.contains(&format.to_string())),
            "{plugin}: {words:?}"
        );
    }
    let words = complete(&["ambient-enable", "--until", "amb"]);
    assert!(words.contains(&"ambient-enrolled".to_string()) && words.contains(&"ambient".to_string()), "{words:?}");
    let words = complete(&["ambient-waypoint", "co"]);
    assert!(words.contains(&"convert".to_string()), "{words:?}");
}
