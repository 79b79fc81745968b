//! Locating, or building once per machine, the kube-testenv multi-call binary.
//!
//! The binary is cached under a name that hashes the Go module's inputs, so it is rebuilt only
//! when `testenv/go/go.mod`, `go.sum`, `main.go` or `build.sh` change, and a file lock keeps
//! several test binaries from building it at the same time.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

/// The Go module's directory in this checkout.
pub fn go_module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// Where built binaries are cached: `$OC_AMBIENT_CACHE`, else `$XDG_CACHE_HOME/oc-ambient`, else
/// `~/.cache/oc-ambient`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OC_AMBIENT_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("oc-ambient");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("oc-ambient")
}

/// A digest of everything that goes into the binary.
pub fn input_digest(module: &Path) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    for name in ["go.mod", "go.sum", "main.go", "build.sh"] {
        let path = module.join(name);
        let bytes = fs::read(&path).map_err(|source| Error::Io { what: format!("read {}", path.display()), source })?;
        hasher.update(name.as_bytes());
        hasher.update(&bytes);
    }
    let digest = hasher.finalize();
    Ok(digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect())
}

/// The path of a ready kube-testenv binary: `$OC_AMBIENT_KUBE_TESTENV` if set, else the cached
/// build for the current inputs, building it first if needed.
pub fn ensure_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("OC_AMBIENT_KUBE_TESTENV") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Binary(format!("OC_AMBIENT_KUBE_TESTENV={} is not a file", path.display())))
        };
    }
    let module = go_module_dir();
    let digest = input_digest(&module)?;
    let target = cache_dir().join(format!("kube-testenv-{digest}"));
    build_once(target, "kube-testenv", "the Kubernetes control plane", |partial| {
        let status = Command::new("bash")
            .arg(module.join("build.sh"))
            .arg(partial)
            .status()
            .map_err(|source| Error::Io { what: "run testenv/go/build.sh (is bash installed?)".into(), source })?;
        if !status.success() {
            return Err(Error::Binary(format!(
                "testenv/go/build.sh failed ({status}); is Go installed and the module proxy reachable?"
            )));
        }
        Ok(())
    })
}

/// `target` in the cache, built by `build` into a `.partial` path and renamed into place, so a
/// `target` that exists is complete; a file lock named after `lock` keeps several test binaries
/// from building it at the same time, and the one that waited finds it built.
fn build_once(
    target: PathBuf,
    lock: &str,
    what: &str,
    build: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<PathBuf, Error> {
    if target.exists() {
        return Ok(target);
    }
    let cache = cache_dir();
    fs::create_dir_all(&cache).map_err(|source| Error::Io { what: format!("create {}", cache.display()), source })?;
    let lock_path = cache.join(format!("{lock}.lock"));
    let lock = File::create(&lock_path)
        .map_err(|source| Error::Io { what: format!("create {}", lock_path.display()), source })?;
    lock.lock().map_err(|source| Error::Io { what: format!("lock {}", lock_path.display()), source })?;
    if target.exists() {
        return Ok(target);
    }
    crate::tell_developer(&format!("building {what} into {} (once per machine)", target.display()));
    let mut partial = target.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    // What an interrupted build left.
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_file(&partial);
    build(&partial)?;
    fs::rename(&partial, &target)
        .map_err(|source| Error::Io { what: format!("install {}", target.display()), source })?;
    Ok(target)
}

/// A directory holding `kubectl` (a link to the kube-testenv binary, which runs kubectl v1.34 when
/// invoked under that name), for tests that drive kubectl itself, such as plugin discovery.
pub fn kubectl_dir() -> Result<PathBuf, Error> {
    let binary = ensure_binary()?;
    let name = binary.file_name().and_then(|name| name.to_str()).unwrap_or("kube-testenv");
    let dir = cache_dir().join(format!("{name}-bin"));
    let link = dir.join("kubectl");
    if !link.exists() {
        fs::create_dir_all(&dir).map_err(|source| Error::Io { what: format!("create {}", dir.display()), source })?;
        let partial = dir.join(format!("kubectl.{}", std::process::id()));
        let _ = fs::remove_file(&partial);
        std::os::unix::fs::symlink(&binary, &partial)
            .map_err(|source| Error::Io { what: format!("link {}", partial.display()), source })?;
        fs::rename(&partial, &link)
            .map_err(|source| Error::Io { what: format!("install {}", link.display()), source })?;
    }
    Ok(dir)
}

/// The krew version the packaging tests install with (served by the Go module proxy).
pub const KREW_VERSION: &str = "v0.4.3";

/// A directory holding `krew` and krew's own manifest validator, `validate-krew-manifest`, built
/// once per machine from the `sigs.k8s.io/krew` module (as the control plane is), so the suite's
/// manifests are judged by krew's rules rather than ours.
pub fn krew_dir() -> Result<PathBuf, Error> {
    let dir = cache_dir().join(format!("krew-{KREW_VERSION}"));
    build_once(dir, "krew", &format!("krew {KREW_VERSION}"), |partial| {
        for tool in ["krew", "validate-krew-manifest"] {
            let status = Command::new("go")
                .args(["install", &format!("sigs.k8s.io/krew/cmd/{tool}@{KREW_VERSION}")])
                .env("GOBIN", partial)
                .status()
                .map_err(|source| Error::Io { what: "run go install (is Go installed?)".into(), source })?;
            if !status.success() {
                return Err(Error::Binary(format!(
                    "go install sigs.k8s.io/krew/cmd/{tool}@{KREW_VERSION} failed ({status}); is the module proxy reachable?"
                )));
            }
        }
        Ok(())
    })
}
