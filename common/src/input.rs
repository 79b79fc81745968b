//! Offline input: the files and directories a user names (`-f`, `--from-dir`, `--baseline`), or
//! stdin, read into a [`Snapshot`]. The parsing itself is pure and lives in the core; this is
//! the file-system half.
//!
//! Files are read one at a time; each document (and each item of a `kind: List`) is decoded into
//! the fields the caller keeps as it is parsed ([`Fields`]: the check keeps what the suite reads,
//! a rollback from a backup keeps whole objects), so a dump of a large cluster is held once as
//! text, one file at a time, and once as pruned objects.

use std::io::Read;
use std::path::{Path, PathBuf};

use oc_ambient_core::fields::Fields;
use oc_ambient_core::snapshot::{InputError, InputLimits, Snapshot, Source, parse_documents_within};

/// Reads offline input: files and directories (recursively: *.yaml, *.yml, *.json), `-` for
/// stdin. Multi-document streams and `kind: List` are flattened. Every kind present is marked
/// listed; kinds absent stay [`Coverage::NotInInput`]. Input exceeding `limits`, or holding no
/// object at all (empty files, only `---`), is an error: nothing could be evaluated from it.
/// Each object keeps `fields` of it (see [`oc_ambient_core::fields`]), pruned as it is parsed, one
/// file at a time.
pub fn read_snapshot(paths: &[PathBuf], limits: &InputLimits, fields: Fields) -> Result<Snapshot, InputError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut snapshot = Snapshot::new(Source::Files { paths: paths.to_vec() });
    let mut read = 0;
    for file in &files {
        let text = read_input(file)?;
        let remaining = InputLimits { max_objects: limits.max_objects - read, ..*limits };
        let objects = parse_documents_within(file, &text, &remaining, fields).map_err(|err| match err {
            InputError::TooManyObjects { path, .. } => InputError::TooManyObjects { path, limit: limits.max_objects },
            other => other,
        })?;
        read += objects.len();
        for object in objects {
            snapshot.insert_listed(object);
        }
    }
    if read == 0 {
        let inputs = paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(InputError::NoObjects { inputs });
    }
    Ok(snapshot)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), InputError> {
    if path.as_os_str() == "-" {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|source| InputError::Read { path: path.to_path_buf(), source })?;
    if !meta.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| InputError::Read { path: path.to_path_buf(), source })?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    let before = files.len();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if matches!(entry.extension().and_then(|ext| ext.to_str()), Some("yaml" | "yml" | "json")) {
            files.push(entry);
        }
    }
    if files.len() == before {
        return Err(InputError::Empty { path: path.to_path_buf() });
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<String, InputError> {
    let result = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    };
    result.map_err(|source| InputError::Read { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use oc_ambient_core::kinds::Kind;
    use oc_ambient_core::snapshot::Coverage;

    use super::*;

    const DUMP: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: bookinfo, labels: {istio.io/rev: default}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: bookinfo}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: bookinfo}
spec: {action: ALLOW}
"#;

    #[test]
    fn lists_and_streams_are_flattened_and_coverage_follows_the_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dump.yaml"), DUMP).unwrap();
        let snapshot = read_snapshot(&[dir.path().to_path_buf()], &InputLimits::default(), Fields::All).unwrap();
        assert_eq!(snapshot.all(Kind::Namespace).len(), 1);
        assert_eq!(snapshot.all(Kind::AuthorizationPolicy).len(), 1);
        assert!(snapshot.knows(Kind::AuthorizationPolicy));
        assert_eq!(snapshot.coverage(Kind::VirtualService), &Coverage::NotInInput);
        assert_eq!(snapshot.notes.len(), 1, "the ConfigMap is noted as ignored: {:?}", snapshot.notes);
        assert!(snapshot.get(Kind::AuthorizationPolicy, Some("bookinfo"), "allow-get").is_some());
    }

    #[test]
    fn input_without_objects_or_over_the_object_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.yaml");
        let separators = dir.path().join("separators.yaml");
        std::fs::write(&empty, "").unwrap();
        std::fs::write(&separators, "---\n# nothing\n---\n").unwrap();
        for input in [vec![empty.clone()], vec![empty, separators]] {
            let err = read_snapshot(&input, &InputLimits::default(), Fields::All).unwrap_err();
            assert!(matches!(err, InputError::NoObjects { .. }), "{err}");
        }
        let dump = dir.path().join("dump.yaml");
        std::fs::write(&dump, DUMP).unwrap();
        let limits = InputLimits { max_objects: 4, ..InputLimits::default() };
        assert!(
            read_snapshot(std::slice::from_ref(&dump), &limits, Fields::All).is_ok(),
            "three objects are within four"
        );
        let err = read_snapshot(&[dump.clone(), dump], &limits, Fields::All).unwrap_err();
        assert!(matches!(err, InputError::TooManyObjects { limit: 4, .. }), "the limit is over all files: {err}");
    }
}
