//! Errors that end a command, and the exit codes they map to.
//!
//! Each layer has its own `thiserror` enum; every message names what failed, on which object, and
//! what to do, in one line, because plugin output is read by people in a terminal and by scripts.

use std::path::PathBuf;
use std::process::ExitCode;

/// The exit codes every plugin shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; for checks: ready, nothing failed.
    Success = 0,
    /// Ran to the end, but the answer is "no": not ready, not equivalent, not converted faithfully.
    NotReady = 1,
    /// Could not evaluate: bad input, no access, unreachable cluster.
    Error = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A command failure: one message line and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub exit: Exit,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure { message: message.into(), exit }
    }
}

/// Any error of the suite ends the command with exit code 2 ("could not evaluate"), on one line.
impl<E: std::error::Error> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure { message: one_line(&err.to_string()), exit: Exit::Error }
    }
}

/// Failures to reach or authenticate to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read kubeconfig {path}: {reason}")]
    KubeconfigUnreadable { path: PathBuf, reason: String },
    #[error("invalid kubeconfig: {0}")]
    KubeconfigInvalid(String),
    #[error("context {0:?} not found in the kubeconfig; list them with `kubectl config get-contexts`")]
    UnknownContext(String),
    #[error("no kubeconfig found (set --kubeconfig or KUBECONFIG) and not running inside a cluster")]
    NoConfiguration,
    #[error("cannot reach the API server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the API server at {url} refused the credentials: {reason}")]
    Unauthorized { url: String, reason: String },
}

/// Failures of one API request, named by verb and resource so RBAC problems can be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("forbidden: cannot {verb} {resource}{scope}; ask for RBAC permission to {verb} {resource}", scope = scope_text(.namespace))]
    Forbidden { verb: String, resource: String, namespace: Option<String> },
    #[error("the {crd} CustomResourceDefinition is not installed; install it before running this step")]
    MissingCrd { crd: String },
    #[error("{verb} {resource}{scope}: {message}", scope = scope_text(.namespace))]
    Failed { verb: String, resource: String, namespace: Option<String>, message: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

fn scope_text(namespace: &Option<String>) -> String {
    match namespace {
        Some(ns) => format!(" in namespace {ns}"),
        None => String::new(),
    }
}

impl ApiError {
    /// Classifies a kube error for one request (`verb` on `resource`) by its HTTP status, so a 403
    /// reads as an RBAC problem and a 404 on a list as a missing CRD.
    pub fn from_kube(err: kube::Error, verb: &str, resource: &str, namespace: Option<&str>, crd: Option<&str>) -> Self {
        let namespace = namespace.map(str::to_string);
        if let kube::Error::Api(status) = &err {
            if status.code == 403 {
                return ApiError::Forbidden { verb: verb.into(), resource: resource.into(), namespace };
            }
            if status.code == 404
                && let Some(crd) = crd
            {
                return ApiError::MissingCrd { crd: crd.into() };
            }
        }
        ApiError::Failed {
            verb: verb.into(),
            resource: resource.into(),
            namespace,
            message: one_line(&err.to_string()),
        }
    }
}

/// Collapses a multi-line error chain into one line for terminal output.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_verb_resource_and_scope() {
        let err = ApiError::Forbidden {
            verb: "list".into(),
            resource: "authorizationpolicies.security.istio.io".into(),
            namespace: Some("bookinfo".into()),
        };
        assert_eq!(
            err.to_string(),
            "forbidden: cannot list authorizationpolicies.security.istio.io in namespace bookinfo; ask for RBAC permission to list authorizationpolicies.security.istio.io"
        );
    }

    #[test]
    fn exit_codes_are_stable() {
        assert_eq!(Exit::Success as u8, 0);
        assert_eq!(Exit::NotReady as u8, 1);
        assert_eq!(Exit::Error as u8, 2);
    }
}
