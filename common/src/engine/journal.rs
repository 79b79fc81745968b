//! The journal and the backup: what the engine did, and what was there before.
//!
//! Before each action the engine records the prior state of what the action touches, and after
//! it marks the action done; before the first action of a migration it backs up everything the
//! guide's Section 2.4 names plus every object the plan touches. Both live in two places: a local
//! directory (the path is printed) and the cluster, so that a colleague on another machine can
//! resume or roll back. In the cluster they are ConfigMaps in the `oc-ambient` namespace; a
//! ConfigMap holds at most about 1 MiB, so both documents are gzip-compressed and split across
//! numbered ConfigMaps (`oc-ambient-backup-N`, `oc-ambient-journal-N`), as Helm stores its
//! releases: a long journal (each entry carries the prior object) never hits the limit.
//!
//! The journal is append-only JSON: a rerun after an interruption reads it to recognise actions
//! already done (a restart is never issued twice: once journalled as started, a rerun only waits),
//! and `oc ambient-rollback` reads it to undo exactly what was done (the entries are the core's
//! [`crate::journal::Entry`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::change::merge;
use crate::client::Connection;
use crate::error::{ApiError, Request};

/// Field manager of every write the suite makes.
pub const FIELD_MANAGER: &str = "oc-ambient";
const JOURNAL_CONFIGMAP: &str = "oc-ambient-journal";
const BACKUP_CONFIGMAP: &str = "oc-ambient-backup";
/// Label on chunk 0 of a chunked document: how many chunks it has.
const CHUNKS_LABEL: &str = "oc-ambient.io/chunks";
/// Bytes of compressed document per ConfigMap, under the API server's 1 MiB object limit with room
/// for metadata and base64 (binaryData is base64 in JSON: 4/3 of this).
const CHUNK_BYTES: usize = 700 * 1024;

pub use crate::journal::{Entry, EntryState, STATE_NAMESPACE};

/// The journal of one cluster, local and in the cluster.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    pub entries: Vec<Entry>,
    /// The state namespace is known to exist (created at the first record, not at every one).
    namespace_ready: bool,
}

impl Journal {
    /// Reads the journal: the cluster's copy when it has one (it is the shared truth), else the
    /// local one.
    pub async fn open(connection: &Connection, dir: &Path) -> Result<Journal, ApiError> {
        let local: Vec<Entry> = std::fs::read_to_string(dir.join("journal.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let remote = read_chunked(connection, JOURNAL_CONFIGMAP).await?;
        let namespace_ready = remote.is_some();
        let entries = match remote {
            Some(text) => serde_json::from_str(&text).map_err(|err| corrupt(JOURNAL_CONFIGMAP, &err.to_string()))?,
            None => local,
        };
        Ok(Journal { dir: dir.to_path_buf(), entries, namespace_ready })
    }

    /// When the action was last journalled as started, if it was not finished since.
    pub fn started_at(&self, action: &str) -> Option<&str> {
        let last = self.entries.iter().rev().find(|entry| entry.action == action)?;
        (last.state == EntryState::Started).then_some(last.at.as_str())
    }

    /// Appends an entry and writes both copies before returning: nothing happens that is not
    /// recorded first.
    pub async fn record(&mut self, connection: &Connection, entry: Entry) -> Result<(), ApiError> {
        self.entries.push(entry);
        let text = serde_json::to_string_pretty(&self.entries).unwrap_or_default();
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(self.dir.join("journal.json"), &text))
            .map_err(|err| local_failure(&self.dir, err))?;
        if !self.namespace_ready {
            ensure_state_namespace(connection).await?;
            self.namespace_ready = true;
        }
        write_chunked(connection, JOURNAL_CONFIGMAP, &text).await
    }
}

/// Writes the backup: a local multi-document YAML file (returned) and gzip chunks in numbered
/// ConfigMaps.
pub async fn write_backup(connection: &Connection, dir: &Path, objects: &[DynamicObject]) -> Result<PathBuf, ApiError> {
    // One YAML document per object, not one List: the input limits bound each document, and a
    // mesh's backup can be larger than any one of them.
    let text: String = objects
        .iter()
        .filter_map(|object| serde_yaml_ng::to_string(object).ok())
        .map(|document| format!("---\n{document}"))
        .collect();
    let path = dir.join("backup.yaml");
    std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &text)).map_err(|err| local_failure(dir, err))?;
    ensure_state_namespace(connection).await?;
    write_chunked(connection, BACKUP_CONFIGMAP, &text).await?;
    Ok(path)
}

/// Reads the in-cluster backup back (for rollback from another machine, and for tests).
pub async fn read_backup(connection: &Connection) -> Result<Option<String>, ApiError> {
    read_chunked(connection, BACKUP_CONFIGMAP).await
}

/// Writes `text` gzip-compressed across ConfigMaps `<name>-0`, `<name>-1`, ... of the state
/// namespace; chunk 0 says how many there are, and is written last, so a reader never sees a count
/// of chunks not written yet.
async fn write_chunked(connection: &Connection, name: &str, text: &str) -> Result<(), ApiError> {
    let compressed = compress(text.as_bytes()).map_err(|err| corrupt(name, &err.to_string()))?;
    let chunks: Vec<&[u8]> = compressed.chunks(CHUNK_BYTES).collect();
    for (index, chunk) in chunks.iter().enumerate().rev() {
        let body = json!({
            "metadata": {"labels": {CHUNKS_LABEL: chunks.len().to_string()}},
            "binaryData": {"data.gz": BASE64.encode(chunk)},
        });
        write_configmap(connection, &format!("{name}-{index}"), body).await?;
    }
    Ok(())
}

/// Reads a document [`write_chunked`] wrote; None when there is none.
async fn read_chunked(connection: &Connection, name: &str) -> Result<Option<String>, ApiError> {
    let Some(first) = read_configmap(connection, &format!("{name}-0")).await? else { return Ok(None) };
    let count: usize = first
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(CHUNKS_LABEL))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    let mut compressed = Vec::new();
    for index in 0..count {
        let chunk = if index == 0 {
            Some(first.clone())
        } else {
            read_configmap(connection, &format!("{name}-{index}")).await?
        };
        let encoded = chunk
            .as_ref()
            .and_then(|cm| cm.data.pointer("/binaryData/data.gz"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        compressed.extend(BASE64.decode(encoded).map_err(|err| corrupt(name, &err.to_string()))?);
    }
    let mut text = String::new();
    GzDecoder::new(compressed.as_slice()).read_to_string(&mut text).map_err(|err| corrupt(name, &err.to_string()))?;
    Ok(Some(text))
}

fn corrupt(name: &str, message: &str) -> ApiError {
    ApiError::Rejected {
        request: Box::new(Request::new("read", &format!("the in-cluster document {name}"))),
        code: 0,
        reason: "Corrupt".into(),
        message: message.into(),
    }
}

fn compress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn configmaps(connection: &Connection) -> Api<DynamicObject> {
    let resource = kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    Api::namespaced_with(connection.client.clone(), STATE_NAMESPACE, &resource)
}

async fn read_configmap(connection: &Connection, name: &str) -> Result<Option<DynamicObject>, ApiError> {
    let request = Request::new("get", "configmaps").in_namespace(Some(STATE_NAMESPACE)).named(name);
    match configmaps(connection).get_opt(name).await {
        Ok(found) => Ok(found),
        // No state namespace yet: nothing was journalled on this cluster.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(err) => Err(ApiError::from_kube(err, request, None)),
    }
}

/// Creates the state namespace when missing (server-side apply: a no-op when it exists).
async fn ensure_state_namespace(connection: &Connection) -> Result<(), ApiError> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(connection.client.clone());
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": STATE_NAMESPACE,
        "labels": {crate::mesh::labels::MANAGED_BY: crate::mesh::labels::MANAGED_BY_VALUE}}});
    namespaces
        .patch(STATE_NAMESPACE, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(namespace))
        .await
        .map(|_| ())
        .map_err(|err| ApiError::from_kube(err, Request::new("patch", "namespaces").named(STATE_NAMESPACE), None))
}

/// Applies a ConfigMap of the state namespace (server-side apply).
async fn write_configmap(connection: &Connection, name: &str, body: Value) -> Result<(), ApiError> {
    let mut document =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": STATE_NAMESPACE}});
    merge(&mut document, body);
    let patch = || async {
        configmaps(connection)
            .patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(document.clone()))
            .await
            .map(|_| ())
            .map_err(|err| {
                ApiError::from_kube(
                    err,
                    Request::new("patch", "configmaps").in_namespace(Some(STATE_NAMESPACE)).named(name),
                    None,
                )
            })
    };
    super::with_retries(WRITE_RETRIES, patch).await
}

/// How long a journal or backup write is retried while the server cannot take it.
const WRITE_RETRIES: std::time::Duration = std::time::Duration::from_secs(60);

fn local_failure(dir: &Path, err: std::io::Error) -> ApiError {
    ApiError::Rejected {
        request: Box::new(Request::new("write", &format!("the local state directory {}", dir.display()))),
        code: 0,
        reason: "LocalWrite".into(),
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_round_trips() {
        let text = "kind: List\n".repeat(1000);
        let compressed = compress(text.as_bytes()).unwrap();
        assert!(compressed.len() < text.len() / 10);
        let mut back = String::new();
        GzDecoder::new(compressed.as_slice()).read_to_string(&mut back).unwrap();
        assert_eq!(back, text);
    }
}
