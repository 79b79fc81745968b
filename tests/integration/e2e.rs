//! The migration as a user runs it (issue 13): the four plugins installed as README says, typed
//! through `oc` (a stand-in with oc's plugin lookup, `tests/integration/bin/oc`) and `kubectl`,
//! each command a separate process with nothing but a kubeconfig and a state directory, in the
//! order README gives. After every command the checkpoint of each step it did passes and the
//! check against the backup finds no difference but those the plans announced; at the end the
//! namespace is `ambient`, and `oc ambient-rollback --all` brings the sidecar era back.
//!
//! The bookinfo run is also README's walkthrough: what the user types and what each command
//! prints is rendered into README between markers, and the test fails when README says anything
//! else (`scripts/walkthrough.sh` rewrites it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use oc_ambient_simulator::SimulatedCluster;
use serde_json::Value;

use crate::rollback::{assert_back_to, mesh_state, mesh_state_with_pods_of};
use crate::support::{announced_requests, text};

/// A user's shell: the plugins installed under the names `oc` and `kubectl` look up, `oc` and
/// `kubectl` on PATH, the cluster's kubeconfig and a state directory in the environment.
struct Shell {
    _installed: tempfile::TempDir,
    state: tempfile::TempDir,
    path: String,
    kubeconfig: PathBuf,
    server: String,
    transcript: Vec<String>,
}

/// How the walkthrough names the state directory (the run uses a temporary one).
const STATE_SHOWN: &str = "~/bookinfo-migration";
/// How the walkthrough names the API server (the run's listens on a random local port).
const SERVER_SHOWN: &str = "https://api.cluster.example:6443";
/// Lines of a long output the walkthrough shows: its beginning (the plan) and its end (what
/// happened, or why the command refused).
const HEAD_SHOWN: usize = 20;
const TAIL_SHOWN: usize = 10;

impl Shell {
    fn new(kubeconfig: &Path, server: &str) -> Shell {
        let installed = crate::plugins::installed();
        let stand_in = oc_ambient_testenv::workspace_root().join("tests/integration/bin");
        let kubectl = oc_ambient_testenv::binary::kubectl_dir().unwrap();
        let path = format!(
            "{}:{}:{}:/usr/bin:/bin",
            installed.path().join("bin").display(),
            stand_in.display(),
            kubectl.display()
        );
        Shell {
            _installed: installed,
            state: tempfile::tempdir().unwrap(),
            path,
            kubeconfig: kubeconfig.to_path_buf(),
            server: server.to_string(),
            transcript: Vec::new(),
        }
    }

    /// Runs `line` as the user types it (`$STATE` is the state directory), without showing it.
    fn quietly(&self, line: &str) -> Output {
        let line = line.replace("$STATE", &self.state.path().display().to_string());
        Command::new("bash")
            .args(["-c", &line])
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", self.state.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("OC_AMBIENT_STATE_DIR", self.state.path())
            .output()
            .unwrap()
    }

    /// Runs `line` and adds it, with what it printed, to the walkthrough.
    fn run(&mut self, line: &str) -> Output {
        let output = self.quietly(line);
        let state = self.state.path().display().to_string();
        let shown = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes).replace(&state, STATE_SHOWN).replace(&self.server, SERVER_SHOWN)
        };
        let printed = format!("{}{}", shown(&output.stdout), shown(&output.stderr));
        let lines: Vec<&str> = printed.lines().collect();
        let mut block = format!("$ {}\n", line.replace("$STATE", STATE_SHOWN));
        let (head, tail) = if lines.len() > HEAD_SHOWN + TAIL_SHOWN {
            (&lines[..HEAD_SHOWN], &lines[lines.len() - TAIL_SHOWN..])
        } else {
            (&lines[..], &lines[..0])
        };
        for line in head {
            block.push_str(line.trim_end());
            block.push('\n');
        }
        if !tail.is_empty() {
            block.push_str(&format!("[... {} lines ...]\n", lines.len() - head.len() - tail.len()));
        }
        for line in tail {
            block.push_str(line.trim_end());
            block.push('\n');
        }
        if let Some(code) = output.status.code().filter(|code| *code != 0) {
            block.push_str(&format!("[exit {code}]\n"));
        }
        self.transcript.push(block);
        output
    }

    /// The check's JSON report for `args`, and its exit code.
    fn check(&self, args: &str) -> (Value, Option<i32>) {
        let output = self.quietly(&format!("oc ambient-check {args} -o json"));
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(&output)));
        (report, output.status.code())
    }

    /// `command`, refused for windows its plan names, then again accepting them by the prefix of
    /// their ids (`window:STEP:NAMESPACE:*`), as a user who read them would; returns the requests
    /// the windows announced.
    fn accepting_windows(&mut self, command: &str) -> BTreeSet<String> {
        let planned = self.quietly(&format!("{command} --dry-run -o json"));
        assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
        let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
        let windows = plan["windows"].as_array().cloned().unwrap_or_default();
        let announced = announced_requests(&plan);
        let first = self.run(&format!("{command} --yes"));
        if windows.is_empty() {
            assert_eq!(first.status.code(), Some(0), "{}", text(&first));
            return announced;
        }
        assert_eq!(first.status.code(), Some(1), "windows are refused until accepted: {}", text(&first));
        let prefixes: BTreeSet<&str> = windows
            .iter()
            .filter_map(|window| window["id"].as_str()?.rsplit_once(':').map(|(prefix, _)| prefix))
            .collect();
        let accept: Vec<String> = prefixes.iter().map(|prefix| format!(" --accept '{prefix}:*'")).collect();
        let accepted = self.run(&format!("{command} --yes{}", accept.concat()));
        assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted));
        announced
    }

    /// The checkpoint of each of `steps` passes, for every namespace of `namespaces`.
    fn checkpoints_pass(&self, namespaces: &[&str], steps: &[u8]) {
        for namespace in namespaces {
            for step in steps {
                let (report, code) = self.check(&format!("-n {namespace} --step {step}"));
                assert_eq!(code, Some(0), "the Step {step} checkpoint of {namespace}: {report:#}");
            }
        }
    }

    /// Against the backup, every request to `namespaces` answers as in the sidecar era, but those
    /// the plans announced (windows that stay open until a later command closes them). The check
    /// reads the whole cluster (`-A`): with `-n`, callers in other namespaces are not listed and
    /// their requests would count as changed.
    fn keeps_outcomes(&self, namespaces: &[&str], announced: &BTreeSet<String>) {
        let (report, _) = self.check("-A --baseline $STATE/backup.yaml");
        let findings = report["findings"].as_array().unwrap();
        let equivalence: Vec<&Value> = findings.iter().filter(|f| f["id"] == "policy-equivalence").collect();
        assert!(!equivalence.is_empty(), "the baseline was compared: {report:#}");
        let unannounced: Vec<&str> = equivalence
            .iter()
            .filter(|finding| finding["severity"] == "fail")
            .filter(|finding| namespaces.iter().any(|ns| finding["object"]["namespace"] == *ns))
            .filter_map(|finding| finding["message"].as_str())
            .filter(|message| !announced.iter().any(|request| message.contains(&format!(" {request}: "))))
            .collect();
        assert!(unannounced.is_empty(), "differences no plan announced:\n{}", unannounced.join("\n"));
    }

    fn phase(&self, namespace: &str) -> String {
        let (report, _) = self.check(&format!("-n {namespace}"));
        let namespaces = report["namespaces"].as_array().unwrap();
        let found = namespaces.iter().find(|ns| ns["name"] == namespace).unwrap();
        found["phase"].as_str().unwrap().to_string()
    }

    /// The walkthrough as README shows it.
    fn walkthrough(&self) -> String {
        let blocks: Vec<String> = self.transcript.iter().map(|block| format!("```console\n{block}```\n")).collect();
        blocks.join("\n")
    }
}

fn assert_ok(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", text(output));
}

const BEGIN: &str = "<!-- walkthrough: generated by scripts/walkthrough.sh from a run against the simulator -->\n";
const END: &str = "<!-- end of walkthrough -->\n";

/// README's walkthrough equals this run's, or is rewritten with `OC_AMBIENT_WRITE_WALKTHROUGH=1`.
fn compare_with_readme(walkthrough: &str) {
    let readme_path = oc_ambient_testenv::workspace_root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (Some(begin), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md has no walkthrough markers ({BEGIN:?} .. {END:?})")
    };
    let current = &readme[begin + BEGIN.len()..end];
    if std::env::var_os("OC_AMBIENT_WRITE_WALKTHROUGH").is_some() {
        let updated = format!("{}{BEGIN}{walkthrough}{}", &readme[..begin], &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    if current != walkthrough {
        let first = current.lines().zip(walkthrough.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "README's walkthrough is stale (first difference at its line {}); run scripts/walkthrough.sh\n\
             README: {:?}\nrun:    {:?}",
            first + 1,
            current.lines().nth(first),
            walkthrough.lines().nth(first)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_migrates_bookinfo_with_the_installed_plugins_and_rolls_it_back() {
    let cluster = SimulatedCluster::start("bookinfo-sidecar").await.unwrap();
    let client = cluster.client().await.unwrap();
    let sidecar_era = mesh_state(&client).await;
    let mut shell = Shell::new(cluster.plane().kubeconfig(), cluster.plane().server());
    let ns = ["bookinfo"];

    let first = shell.run("oc ambient-check -n bookinfo");
    assert_ok(&first);
    assert_ok(&shell.run("oc ambient-enable bookinfo --dry-run"));
    let refused = shell.quietly("oc ambient-enable bookinfo");
    assert_eq!(refused.status.code(), Some(1), "no terminal and no --yes: {}", text(&refused));

    // Steps 2 and 3, then the waypoint gate.
    assert_ok(&shell.run("oc ambient-enable bookinfo --yes"));
    shell.checkpoints_pass(&ns, &[2, 3]);
    assert_ok(&shell.run("oc ambient-check -n bookinfo --step 3"));
    let mut announced = BTreeSet::new();
    shell.keeps_outcomes(&ns, &announced);

    // Steps 4 and 5, then the enrolment gate.
    assert_ok(&shell.run("oc ambient-waypoint bookinfo --yes"));
    shell.checkpoints_pass(&ns, &[4, 5]);
    shell.keeps_outcomes(&ns, &announced);

    // Step 6, typed through kubectl.
    assert_ok(&shell.run("kubectl ambient-enable bookinfo --yes"));
    shell.checkpoints_pass(&ns, &[6]);
    shell.keeps_outcomes(&ns, &announced);

    // Step 7 (Step 8 keeps what the sidecars still read), then Step 9 with Step 8's clean-up.
    announced.extend(shell.accepting_windows("oc ambient-waypoint bookinfo"));
    shell.checkpoints_pass(&ns, &[7]);
    shell.keeps_outcomes(&ns, &announced);
    announced.extend(shell.accepting_windows("oc ambient-enable bookinfo"));
    shell.checkpoints_pass(&ns, &[9, 8]);
    shell.keeps_outcomes(&ns, &BTreeSet::new());
    let end = shell.run("oc ambient-check -n bookinfo --baseline $STATE/backup.yaml");
    assert_ok(&end);
    assert_eq!(shell.phase("bookinfo"), "ambient");

    // Everything back.
    shell.accepting_windows("oc ambient-rollback --all");
    assert_back_to(&client, &sidecar_era, "after oc ambient-rollback --all").await;
    assert_ok(&shell.run("oc ambient-check -n bookinfo"));
    assert_eq!(shell.phase("bookinfo"), "sidecar");

    compare_with_readme(&shell.walkthrough());
}

/// The migration's commands, as README orders them, with the steps each takes.
const MIGRATION: [(&str, &[u8]); 5] = [
    ("oc ambient-enable", &[3]),
    ("oc ambient-waypoint", &[4, 5]),
    ("kubectl ambient-enable", &[6]),
    ("oc ambient-waypoint", &[7]),
    ("oc ambient-enable", &[9, 8]),
];

/// One namespace through the whole migration; after each command, the checkpoints of its steps
/// pass and every namespace of `all` keeps its outcomes but announced ones.
fn migrate_namespace(shell: &mut Shell, namespace: &str, all: &[&str], announced: &mut BTreeSet<String>) {
    for (command, steps) in MIGRATION {
        announced.extend(shell.accepting_windows(&format!("{command} {namespace}")));
        shell.checkpoints_pass(&[namespace], steps);
        shell.keeps_outcomes(all, announced);
    }
    assert_eq!(shell.phase(namespace), "ambient");
}

/// `ring:2` (each namespace's `front` calls the other's `back` under an L7 policy) taken to
/// ambient by `migrate`, which adds the requests the plans announced; then no difference is left
/// open, and the rollback brings both namespaces back to the sidecar era. Returns the shell, whose
/// journal holds the run.
async fn ring_migrated_and_rolled_back(migrate: impl FnOnce(&mut Shell, &[&str], &mut BTreeSet<String>)) -> Shell {
    let cluster = SimulatedCluster::start("ring:2").await.unwrap();
    let client = cluster.client().await.unwrap();
    let all = ["ring-0", "ring-1"];
    let sidecar_era = mesh_state_with_pods_of(&client, &all).await;
    let mut shell = Shell::new(cluster.plane().kubeconfig(), cluster.plane().server());
    let mut announced = BTreeSet::new();
    migrate(&mut shell, &all, &mut announced);
    for namespace in all {
        assert_eq!(shell.phase(namespace), "ambient");
    }
    shell.keeps_outcomes(&all, &BTreeSet::new());
    shell.accepting_windows("oc ambient-rollback --all");
    assert_back_to(&client, &sidecar_era, "after oc ambient-rollback --all").await;
    for namespace in all {
        assert_eq!(shell.phase(namespace), "sidecar");
    }
    shell
}

/// Issue 13: the two namespaces migrated one after the other. In the mixed state (one ambient with
/// its waypoint, the other with sidecars) every request of both answers as in the sidecar era, but
/// for the windows the plans announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_that_call_each_other_migrate_one_after_the_other() {
    ring_migrated_and_rolled_back(|shell, all, announced| {
        for namespace in all {
            migrate_namespace(shell, namespace, all, announced);
        }
    })
    .await;
}

/// Issue 14: the same two namespaces migrated side by side (`--concurrency 2`), one command per
/// step for both. Every plan runs in rounds of one action per namespace; the journal shows the
/// two namespaces' rollouts in flight together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_that_call_each_other_migrate_side_by_side() {
    let shell = ring_migrated_and_rolled_back(|shell, all, announced| {
        for (command, steps) in MIGRATION {
            let command = format!("{command} {} --concurrency 2", all.join(" "));
            let planned = shell.quietly(&format!("{command} --dry-run -o json"));
            let plan: Value =
                serde_json::from_slice(&planned.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(&planned)));
            let rounds = plan["rounds"].as_array().cloned().unwrap_or_default();
            assert!(
                rounds.iter().any(|round| round.as_array().is_some_and(|ids| ids.len() == 2)),
                "{command}: {plan:#}"
            );
            announced.extend(shell.accepting_windows(&command));
            shell.checkpoints_pass(all, steps);
            shell.keeps_outcomes(all, announced);
        }
    })
    .await;
    assert!(rollouts_overlapped(&crate::support::journal(shell.state.path())), "no two namespaces rolled out at once");
}

/// Whether the journal shows a restart of one namespace started while one of another namespace
/// was started and not done yet.
fn rollouts_overlapped(journal: &[Value]) -> bool {
    let started_restart = |entry: &Value| entry["change"]["action"] == "restart" && entry["state"] == "started";
    journal.iter().enumerate().filter(|(_, entry)| started_restart(entry)).any(|(started, first)| {
        let done = journal.iter().position(|entry| entry["action"] == first["action"] && entry["state"] == "done");
        let namespace = &first["change"]["target"]["namespace"];
        done.is_some_and(|done| {
            journal[started + 1..done.max(started + 1)]
                .iter()
                .any(|other| started_restart(other) && other["change"]["target"]["namespace"] != *namespace)
        })
    })
}
