//! `oc ambient-check --bundle FILE.tar.gz`: what Section 5.1 of the guide collects by hand, in one
//! archive a support engineer can read without access to the cluster.
//!
//! | file | what |
//! |---|---|
//! | `summary.txt` | what is inside, and what could not be collected and why |
//! | `report.json` | the check report (`AmbientCheckReport`) |
//! | `snapshot.yaml` | every object the check read, Secret values removed (listed in the summary) |
//! | `versions.json` | oc-ambient, Kubernetes, and the mesh versions the check found |
//! | `journal.json` | the change journal, when the suite has changed this cluster |
//! | `events/NAMESPACE.yaml` | the events of each namespace in scope |
//! | `logs/COMPONENT/NAMESPACE/POD/CONTAINER.log` | the last [`TAIL_LINES`] lines (at most [`LIMIT_BYTES`]) of istiod, ztunnel, istio-cni, the waypoints and the application pods |
//!
//! Nothing is guessed and nothing fails the bundle: a log, an event list or the journal that the
//! identity may not read, or a component with no pod, is a line of the summary. Only writing the
//! archive itself can fail.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DynamicObject, ListParams, LogParams};
use serde_json::{Value, json};

use crate::check::Report;
use crate::client::Connection;
use crate::kinds::{ALL, Kind};
use crate::mesh::labels::{GATEWAY_NAME, WAYPOINT_CLASS};
use crate::snapshot::{Coverage, Snapshot};

/// Lines of each container's log, from its end.
pub const TAIL_LINES: i64 = 500;
/// Bytes of each container's log at most.
pub const LIMIT_BYTES: i64 = 256 * 1024;
/// Application pods whose logs are collected, at most (the rest are named in the summary).
pub const MAX_APPLICATION_PODS: usize = 50;

/// Why the archive could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the bundle {path}: {source}")]
pub struct BundleError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The part of the mesh a pod's log belongs to, as Section 5.1 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    Istiod,
    Ztunnel,
    IstioCni,
    Waypoint,
    Application,
}

impl Component {
    pub fn directory(self) -> &'static str {
        match self {
            Component::Istiod => "istiod",
            Component::Ztunnel => "ztunnel",
            Component::IstioCni => "istio-cni",
            Component::Waypoint => "waypoint",
            Component::Application => "application",
        }
    }

    /// The component of a pod, by the labels Sail and istiod give their pods; None for pods of
    /// other gateways and of namespaces out of scope.
    fn of(labels: &BTreeMap<String, String>, in_scope: bool) -> Option<Component> {
        match labels.get("app").map(String::as_str) {
            Some("istiod") => return Some(Component::Istiod),
            Some("ztunnel") => return Some(Component::Ztunnel),
            Some("istio-cni-node") => return Some(Component::IstioCni),
            _ => {}
        }
        if !in_scope {
            return None;
        }
        match labels.get(GATEWAY_NAME) {
            Some(_)
                if labels.get("gateway.networking.k8s.io/gateway-class-name").map(String::as_str)
                    == Some(WAYPOINT_CLASS) =>
            {
                Some(Component::Waypoint)
            }
            Some(_) => None,
            None => Some(Component::Application),
        }
    }
}

/// One container whose log is collected.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogTarget {
    pub component: Component,
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

impl LogTarget {
    pub fn path(&self) -> String {
        format!("logs/{}/{}/{}/{}.log", self.component.directory(), self.namespace, self.pod, self.container)
    }
}

/// The containers whose logs the bundle collects, and what is missing: a component with no pod
/// in the snapshot, application pods beyond [`MAX_APPLICATION_PODS`].
pub fn log_targets(snapshot: &Snapshot, namespaces: &[String]) -> (Vec<LogTarget>, Vec<String>) {
    let mut targets = Vec::new();
    let mut application_pods = 0;
    let mut skipped = 0;
    for pod in snapshot.all(Kind::Pod) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let Some(component) = Component::of(crate::mesh::labels(pod), namespaces.contains(&namespace)) else {
            continue;
        };
        if component == Component::Application {
            application_pods += 1;
            if application_pods > MAX_APPLICATION_PODS {
                skipped += 1;
                continue;
            }
        }
        for container in containers(pod) {
            targets.push(LogTarget {
                component,
                namespace: namespace.clone(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                container,
            });
        }
    }
    targets.sort();
    let mut missing = Vec::new();
    for component in [Component::Istiod, Component::Ztunnel, Component::IstioCni] {
        if !targets.iter().any(|target| target.component == component) {
            missing.push(format!("logs of {}: no pod found", component.directory()));
        }
    }
    if skipped > 0 {
        missing.push(format!(
            "logs of {skipped} more application pods (only the first {MAX_APPLICATION_PODS} are collected)"
        ));
    }
    (targets, missing)
}

/// The containers of a pod that run for its lifetime: its containers and native sidecars.
fn containers(pod: &DynamicObject) -> Vec<String> {
    let named = |pointer: &str, only_sidecars: bool| -> Vec<String> {
        pod.data
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| !only_sidecars || c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    [named("/spec/initContainers", true), named("/spec/containers", false)].concat()
}

/// The snapshot as YAML documents without Secret values, and what was removed.
pub fn redacted_snapshot(snapshot: &Snapshot) -> (String, Vec<String>) {
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
    let mut text = String::new();
    let mut redacted = Vec::new();
    for info in ALL {
        for object in snapshot.all(info.kind) {
            let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
            if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("managedFields");
            }
            if info.kind == Kind::Secret {
                let mut removed: Vec<String> = Vec::new();
                for field in ["data", "stringData"] {
                    if let Some(Value::Object(values)) = value.as_object_mut().and_then(|o| o.remove(field)) {
                        removed.extend(values.keys().map(|key| format!("{field}.{key}")));
                    }
                }
                let annotations = value.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut);
                if annotations.and_then(|annotations| annotations.remove(LAST_APPLIED)).is_some() {
                    removed.push(format!("annotation {LAST_APPLIED}"));
                }
                redacted.push(format!(
                    "Secret {}/{}: {}",
                    object.metadata.namespace.as_deref().unwrap_or_default(),
                    object.metadata.name.as_deref().unwrap_or_default(),
                    if removed.is_empty() { "no values".to_string() } else { removed.join(", ") }
                ));
            }
            text.push_str("---\n");
            text.push_str(&serde_yaml_ng::to_string(&value).unwrap_or_default());
        }
    }
    (text, redacted)
}

/// What the check could not read, from the snapshot's coverage.
fn unread_kinds(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .kinds()
        .filter_map(|(kind, coverage)| match coverage {
            Coverage::Forbidden(detail) => Some(format!("{}: {detail}", kind.info().plural)),
            _ => None,
        })
        .collect()
}

/// The archive being assembled: files in order, and the summary's lines.
#[derive(Debug, Default)]
pub struct Contents {
    pub files: Vec<(String, Vec<u8>)>,
    pub not_collected: Vec<String>,
    pub redacted: Vec<String>,
}

impl Contents {
    fn add(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.files.push((path.into(), bytes.into()));
    }

    /// `summary.txt`: what is inside, what was removed, what could not be collected.
    pub fn summary(&self, written: &str) -> String {
        let mut text = format!("oc-ambient debug bundle, written {written}\n\nContents:\n");
        for (path, bytes) in &self.files {
            text.push_str(&format!("  {path} ({} bytes)\n", bytes.len()));
        }
        text.push_str("\nRedacted (Secret values are never collected):\n");
        if self.redacted.is_empty() {
            text.push_str("  no Secret was read\n");
        }
        for line in &self.redacted {
            text.push_str(&format!("  {line}\n"));
        }
        text.push_str("\nNot collected:\n");
        if self.not_collected.is_empty() {
            text.push_str("  nothing: everything was collected\n");
        }
        for line in &self.not_collected {
            text.push_str(&format!("  {line}\n"));
        }
        text
    }
}

/// Collects everything (never failing on what cannot be read) and writes the archive to `path`;
/// returns what it holds.
pub async fn write(
    connection: &Connection,
    snapshot: &Snapshot,
    report: &Report,
    state_dir: &Path,
    path: &Path,
) -> Result<Contents, BundleError> {
    let namespaces: Vec<String> = report.namespaces.iter().map(|namespace| namespace.name.clone()).collect();
    let mut contents = Contents::default();
    contents.add("report.json", serde_json::to_vec_pretty(report).unwrap_or_default());
    let (snapshot_text, redacted) = redacted_snapshot(snapshot);
    contents.add("snapshot.yaml", snapshot_text);
    contents.redacted = redacted;
    contents.not_collected.extend(unread_kinds(snapshot).into_iter().map(|line| format!("objects: {line}")));
    let versions = json!({"ocAmbient": env!("CARGO_PKG_VERSION"), "kubernetes": connection.server_version, "mesh": report.cluster});
    contents.add("versions.json", serde_json::to_vec_pretty(&versions).unwrap_or_default());

    match crate::engine::journal::Journal::open(connection, state_dir).await {
        Ok(journal) if journal.entries.is_empty() => {}
        Ok(journal) => contents.add("journal.json", serde_json::to_vec_pretty(&journal.entries).unwrap_or_default()),
        Err(err) => contents.not_collected.push(format!("journal: {}", crate::error::chain_line(&err))),
    }

    for namespace in &namespaces {
        let events: Api<Event> = Api::namespaced(connection.client.clone(), namespace);
        match events.list(&ListParams::default()).await {
            Ok(list) => contents
                .add(format!("events/{namespace}.yaml"), serde_yaml_ng::to_string(&list.items).unwrap_or_default()),
            Err(err) => contents.not_collected.push(format!("events of {namespace}: {}", one_line(&err))),
        }
    }

    let (targets, missing) = log_targets(snapshot, &namespaces);
    contents.not_collected.extend(missing);
    for target in targets {
        let pods: Api<Pod> = Api::namespaced(connection.client.clone(), &target.namespace);
        let params = LogParams {
            container: Some(target.container.clone()),
            tail_lines: Some(TAIL_LINES),
            limit_bytes: Some(LIMIT_BYTES),
            ..LogParams::default()
        };
        match pods.logs(&target.pod, &params).await {
            Ok(log) => contents.add(target.path(), log),
            Err(err) => contents.not_collected.push(format!(
                "log of {}/{} container {}: {}",
                target.namespace,
                target.pod,
                target.container,
                one_line(&err)
            )),
        }
    }

    archive(&contents, path).map_err(|source| BundleError { path: path.to_path_buf(), source })?;
    Ok(contents)
}

fn one_line(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.reason),
        other => crate::error::one_line(&other.to_string()),
    }
}

/// Writes `summary.txt` and the files as a gzip-compressed tar.
fn archive(contents: &Contents, path: &Path) -> std::io::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let written = k8s_openapi::chrono::Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
    let summary = contents.summary(&written);
    let file = std::fs::File::create(path)?;
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    let entries = std::iter::once(("summary.txt", summary.as_bytes()))
        .chain(contents.files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())));
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(now);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes)?;
    }
    builder.into_inner()?.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str) -> Snapshot {
        Snapshot::from_objects(crate::snapshot::parse_documents(Path::new("t.yaml"), text).unwrap())
    }

    const PODS: &str = "apiVersion: v1
kind: Pod
metadata: {name: istiod-1, namespace: istio-system, labels: {app: istiod}}
spec: {containers: [{name: discovery}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ztunnel-a, namespace: ztunnel, labels: {app: ztunnel}}
spec: {containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews}}
spec:
  initContainers: [{name: istio-init}, {name: istio-proxy, restartPolicy: Always}]
  containers: [{name: reviews}]
---
apiVersion: v1
kind: Pod
metadata: {name: waypoint-1, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: waypoint, gateway.networking.k8s.io/gateway-class-name: istio-waypoint}}
spec: {containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other-1, namespace: elsewhere, labels: {app: other}}
spec: {containers: [{name: other}]}
";

    #[test]
    fn logs_are_collected_per_component_and_missing_components_are_named() {
        let (targets, missing) = log_targets(&snapshot(PODS), &["shop".to_string()]);
        let paths: Vec<String> = targets.iter().map(LogTarget::path).collect();
        assert_eq!(
            paths,
            [
                "logs/istiod/istio-system/istiod-1/discovery.log",
                "logs/ztunnel/ztunnel/ztunnel-a/istio-proxy.log",
                "logs/waypoint/shop/waypoint-1/istio-proxy.log",
                "logs/application/shop/reviews-1/istio-proxy.log",
                "logs/application/shop/reviews-1/reviews.log",
            ],
            "by component; a native sidecar is collected, an init container is not, other namespaces are not"
        );
        assert_eq!(missing, ["logs of istio-cni: no pod found"]);
    }

    #[test]
    fn secret_values_never_reach_the_snapshot_and_are_listed() {
        let text = "apiVersion: v1
kind: Secret
metadata:
  name: remote
  namespace: istio-system
  labels: {istio/multiCluster: 'true'}
  annotations: {kubectl.kubernetes.io/last-applied-configuration: '{\"data\":{\"token\":\"c2VjcmV0\"}}'}
data: {token: c2VjcmV0}
stringData: {password: hunter2}";
        let (yaml, redacted) = redacted_snapshot(&snapshot(text));
        assert!(!yaml.contains("c2VjcmV0") && !yaml.contains("hunter2"), "{yaml}");
        assert!(yaml.contains("name: remote"), "the Secret itself is kept: {yaml}");
        assert_eq!(
            redacted,
            [
                "Secret istio-system/remote: data.token, stringData.password, annotation kubectl.kubernetes.io/last-applied-configuration"
            ]
        );
    }

    #[test]
    fn the_summary_lists_contents_redactions_and_gaps() {
        let mut contents = Contents::default();
        contents.add("report.json", "{}");
        contents.not_collected.push("events of shop: forbidden".into());
        let summary = contents.summary("2026-01-01T00:00:00Z");
        assert!(summary.contains("report.json (2 bytes)"), "{summary}");
        assert!(summary.contains("no Secret was read"), "{summary}");
        assert!(summary.contains("events of shop: forbidden"), "{summary}");
    }
}
