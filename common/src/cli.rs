//! Flags every plugin shares, and the name the user typed.
//!
//! kubectl rejects its own flags placed before a plugin name, so each plugin parses `--kubeconfig`,
//! `--context`, `-n` and friends itself, with kubectl's spelling and meaning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use oc_ambient_core::snapshot::InputLimits;

/// Connection and output flags, flattened into every plugin's command line.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Namespace to act on (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// When to colour the output; `auto` colours only a terminal and honours NO_COLOR.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Say more on stderr (connection, API requests, timings). Repeat for debug logs.
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only results and errors: no progress, no notes.
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// How long to wait for a single request to the API server (e.g. 30s, 1m, 500ms).
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = oc_ambient_core::duration::parse_duration)]
    pub request_timeout: Duration,
}

/// The flags of every command that changes the cluster, resolved once into
/// [`crate::engine::EngineOptions`].
#[derive(Debug, Clone, Args)]
pub struct ChangeArgs {
    /// `client`: print the plan and send nothing; `server`: send every write with dryRun=All
    /// (validated and admitted by the API server, stored nowhere).
    #[arg(long, value_enum, value_name = "MODE", default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: crate::engine::DryRun,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Accept a window the plan names (a difference in outcomes no order of actions avoids), or a
    /// loss the conversion reports (`unsupported:<Kind>/<ns>/<name>:<field>`); repeatable.
    #[arg(long = "accept", value_name = "ID")]
    pub accept: Vec<String>,
    /// How long to wait for each action's result (a rollout, a resource becoming healthy).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = oc_ambient_core::duration::parse_duration)]
    pub timeout: Duration,
    /// How many namespaces migrate at once, one action (one rollout) each at a time. Every state
    /// this can reach is gated as the plan's own order is, so more may show more windows.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub concurrency: u16,
    /// Where the journal and the backup are kept locally (also kept in the cluster, namespace
    /// oc-ambient). Default: $XDG_STATE_HOME/oc-ambient/<server>, else ~/.local/state/oc-ambient/<server>.
    #[arg(long, value_name = "DIR", env = "OC_AMBIENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Where the engine keeps its local journal and backup for the cluster at `server` when
/// `--state-dir` is not given: `$XDG_STATE_HOME/oc-ambient/SERVER` (else `~/.local/state/...`).
pub fn default_state_dir(server: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    let server: String = server.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
    base.join("oc-ambient").join(server)
}

impl ChangeArgs {
    pub fn options(&self, output: OutputFormat, server: &str) -> crate::engine::EngineOptions {
        let state_dir = self.state_dir.clone().unwrap_or_else(|| default_state_dir(server));
        crate::engine::EngineOptions {
            dry_run: self.dry_run,
            yes: self.yes,
            accept: self.accept.clone(),
            timeout: self.timeout,
            concurrency: usize::from(self.concurrency),
            output,
            state_dir,
        }
    }
}

/// Bounds on offline input (`-f`, `--from-dir`, `--baseline`): input beyond them is refused with
/// exit code 2 before it is parsed, so hostile or mistaken files cannot take unbounded time or
/// memory. The defaults are far above a real cluster's dumps; raise them for an unusual one.
#[derive(Debug, Clone, Copy, Args)]
pub struct InputLimitArgs {
    /// Refuse a document whose `[...]`/`{...}` collections nest deeper than N levels.
    #[arg(long, value_name = "N", default_value_t = InputLimits::DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// Refuse a single YAML or JSON document (a `kind: List` dump is one) larger than BYTES.
    #[arg(long, value_name = "BYTES", default_value_t = InputLimits::DEFAULT_MAX_DOCUMENT_BYTES)]
    pub max_document_bytes: usize,
    /// Refuse input holding more than N objects in all (lists flattened).
    #[arg(long, value_name = "N", default_value_t = InputLimits::DEFAULT_MAX_OBJECTS)]
    pub max_objects: usize,
}

impl InputLimitArgs {
    pub fn limits(&self) -> InputLimits {
        InputLimits {
            max_depth: self.max_depth,
            max_document_bytes: self.max_document_bytes,
            max_objects: self.max_objects,
        }
    }
}

/// `-A/--all-namespaces`, for the plugins where it applies.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct AllNamespaces {
    /// Act on every namespace of the mesh.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// How the user invoked the plugin, for `--help` and messages: `oc ambient-check` when run by `oc`
/// as `oc-ambient_check`, `kubectl ambient-check` for `kubectl-ambient_check`, else the binary name.
pub fn invocation_name(argv0: &str, binary: &str) -> String {
    let base = Path::new(argv0).file_name().and_then(|name| name.to_str()).unwrap_or(binary);
    for host in ["oc", "kubectl"] {
        if let Some(plugin) = base.strip_prefix(host).and_then(|rest| rest.strip_prefix('-'))
            && (plugin.contains('_') || host == "kubectl")
        {
            // The host turned each dash inside the typed word into an underscore.
            return format!("{host} {}", plugin.replace('_', "-"));
        }
    }
    base.to_string()
}

/// The name of this process as the user typed it.
pub fn current_invocation(binary: &str) -> String {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    invocation_name(&argv0.to_string_lossy(), binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_shows_what_the_user_typed() {
        assert_eq!(invocation_name("/usr/bin/oc-ambient_check", "oc-ambient-check"), "oc ambient-check");
        assert_eq!(invocation_name("/x/kubectl-ambient_enable", "oc-ambient-enable"), "kubectl ambient-enable");
        assert_eq!(invocation_name("target/debug/oc-ambient-check", "oc-ambient-check"), "oc-ambient-check");
        assert_eq!(invocation_name("", "oc-ambient-check"), "oc-ambient-check");
    }
}
