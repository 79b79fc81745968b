//! Errors that end a command, and the exit codes they map to.
//!
//! Each layer has its own `thiserror` enum: [`ClientError`] (reaching and authenticating to the
//! cluster), [`ApiError`] (one API request), `InputError` (offline input, in `snapshot`) and
//! `StateError` (a migration state file, in `equivalence::state`). A command returns [`Error`],
//! which wraps each layer explicitly, so a caller can tell a conflict from a permission denial, a
//! timeout or a refused consent by matching, not by reading text.
//!
//! Every message names what failed, on which object, and what to do. The error line is printed
//! once, by [`crate::app::run`], as `error: <message>: <cause>: <cause>` on one line (see
//! [`chain_line`]), because plugin output is read by people in a terminal and by scripts.
//!
//! Exit codes, decided in one place ([`Error::exit`]):
//!
//! | outcome                                                        | exit |
//! |----------------------------------------------------------------|------|
//! | done; for checks: ready, nothing failed                        | 0    |
//! | the answer is "no": not ready, not equivalent, not faithful    | 1    |
//! | [`Error::ConsentRefused`]: nothing was changed, on purpose     | 1    |
//! | a plan refused by a gate, windows not accepted, consent declined | 1  |
//! | every other [`Error`]: could not evaluate or finish (input, access, API, a wait timed out) | 2 |
//!
//! The "no" answers are not errors: commands return them as `Ok(Exit::NotReady)`.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::engine::EngineError;
use crate::equivalence::state::StateError;
use crate::snapshot::InputError;

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

/// Why a command ended without its answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot write the JSON output")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the YAML output")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A change needs consent, and there is no terminal to ask on and no `--yes`.
    #[error(
        "{action} changes the cluster and needs consent, but there is no terminal to ask on; rerun with --yes to proceed"
    )]
    ConsentRefused { action: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `--bundle`: the archive could not be written.
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// The planner refused: a gate of the guide's order, or nothing it can plan.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// The command exists but its engine has not landed; it connected and changed nothing.
    #[error("{command}: {what} is not implemented in this version; nothing was changed on {server}")]
    NotImplemented { command: String, what: String, server: String },
}

impl Error {
    /// The exit code of this error; the table is in the module docs.
    pub fn exit(&self) -> Exit {
        match self {
            Error::ConsentRefused { .. }
            | Error::Plan(_)
            | Error::Engine(EngineError::WindowsNotAccepted(_) | EngineError::Declined) => Exit::NotReady,
            Error::Engine(EngineError::WaitTimedOut { .. } | EngineError::NoJournal(_)) => Exit::Error,
            Error::Client(_)
            | Error::Api(_)
            | Error::Input(_)
            | Error::State(_)
            | Error::Json(_)
            | Error::Yaml(_)
            | Error::Bundle(_)
            | Error::NotImplemented { .. } => Exit::Error,
        }
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

/// One API request, as RBAC names it: what a failure says was attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The RBAC verb: get, list, create, patch, delete...
    pub verb: String,
    /// `plural.group` (`plural` for the core group), as in RBAC rules.
    pub resource: String,
    pub namespace: Option<String>,
    /// The object's name, for requests on one object.
    pub name: Option<String>,
}

impl Request {
    pub fn new(verb: &str, resource: &str) -> Self {
        Request { verb: verb.into(), resource: resource.into(), namespace: None, name: None }
    }

    pub fn in_namespace(mut self, namespace: Option<&str>) -> Self {
        self.namespace = namespace.map(str::to_string);
        self
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The object or collection: `deployments.apps/reviews in namespace bookinfo`.
    pub fn object(&self) -> String {
        let mut text = self.resource.clone();
        if let Some(name) = &self.name {
            text = format!("{text}/{name}");
        }
        if let Some(namespace) = &self.namespace {
            text = format!("{text} in namespace {namespace}");
        }
        text
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.object())
    }
}

/// Failures of one API request, classified by HTTP status so each can be acted on. The request and
/// kube's error are boxed to keep `Result`s small on the success path.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 403: RBAC does not allow the request.
    #[error("forbidden: cannot {request}; ask for RBAC permission to {} {}", request.verb, request.resource)]
    Forbidden { request: Box<Request> },
    /// 404 on a custom resource: its CustomResourceDefinition is not installed.
    #[error("the {crd} CustomResourceDefinition is not installed; install it before running this step")]
    MissingCrd { crd: String },
    /// 409: the object changed since it was read; a plan made from the old version is stale.
    #[error("conflict: {} changed since it was read ({message}); re-read and re-plan", request.object())]
    Conflict { request: Box<Request>, message: String },
    /// 429 or 5xx: the server could not serve the request now; trying later may work.
    #[error("cannot {request}: the API server answered {code} ({message}); {}", retry_advice(*.retry_after))]
    Unavailable { request: Box<Request>, code: u16, message: String, retry_after: Option<Duration> },
    /// No answer in time, from the server (504) or within `--request-timeout`.
    #[error("cannot {request}: no answer in time; raise --request-timeout or retry")]
    Timeout { request: Box<Request> },
    /// Any other refusal by the server (400 bad request, 422 invalid, ...), with its own words.
    #[error("cannot {request}: {message} ({code} {reason})")]
    Rejected { request: Box<Request>, code: u16, reason: String, message: String },
    /// The request got no answer the suite could use (transport, TLS, decoding).
    #[error("cannot {request}")]
    Failed {
        request: Box<Request>,
        #[source]
        source: Box<kube::Error>,
    },
    /// The server does not serve aggregated discovery, which the loader relies on.
    #[error("cannot read discovery {path}: the server does not speak aggregated discovery (Kubernetes >= 1.30 needed)")]
    NoAggregatedDiscovery {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

fn retry_advice(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(after) => format!("retry after {}s", after.as_secs().max(1)),
        None => "retry later".into(),
    }
}

impl ApiError {
    /// Classifies a kube error for one request by its HTTP status. `crd` names the
    /// CustomResourceDefinition that serves the resource, if it is a custom one, so a 404 on it
    /// reads as a missing CRD.
    ///
    /// kube 2.0 keeps only the status body (code, reason, message) of a failed request, not its
    /// headers, so a Retry-After header does not reach this classification.
    pub fn from_kube(err: kube::Error, request: Request, crd: Option<String>) -> Self {
        let request = Box::new(request);
        let kube::Error::Api(status) = &err else {
            return if caused_by_timeout(&err) {
                ApiError::Timeout { request }
            } else {
                ApiError::Failed { request, source: Box::new(err) }
            };
        };
        let message = one_line(&status.message);
        match (status.code, crd) {
            (403, _) => ApiError::Forbidden { request },
            (404, Some(crd)) => ApiError::MissingCrd { crd },
            (409, _) => ApiError::Conflict { request, message },
            (504, _) => ApiError::Timeout { request },
            (code @ (429 | 500..=599), _) => ApiError::Unavailable { request, code, message, retry_after: None },
            (code, _) => ApiError::Rejected { request, code, reason: status.reason.clone(), message },
        }
    }
}

/// True when an I/O time-out (hyper-timeout's, for `--request-timeout`) is somewhere in the chain.
fn caused_by_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    causes(err)
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut))
}

/// The error and its causes, outermost first.
fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |err| err.source())
}

/// The error and its causes on one line, `message: cause: cause`, whitespace collapsed. A cause
/// whose text the line already holds is skipped: many errors repeat their source in their message.
pub fn chain_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    for cause in causes(err) {
        let text = one_line(&cause.to_string());
        if line.is_empty() {
            line = text;
        } else if !text.is_empty() && !line.contains(&text) {
            line = format!("{line}: {text}");
        }
    }
    line
}

/// Collapses a multi-line text into one line for terminal output.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use kube::core::ErrorResponse;

    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(ErrorResponse {
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
        })
    }

    fn list_policies() -> Request {
        Request::new("list", "authorizationpolicies.security.istio.io").in_namespace(Some("bookinfo"))
    }

    #[test]
    fn forbidden_names_verb_resource_and_namespace() {
        let err = ApiError::from_kube(status(403, "Forbidden", "denied"), list_policies(), None);
        assert!(matches!(err, ApiError::Forbidden { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "forbidden: cannot list authorizationpolicies.security.istio.io in namespace bookinfo; ask for RBAC permission to list authorizationpolicies.security.istio.io"
        );
    }

    #[test]
    fn not_found_on_a_custom_resource_is_a_missing_crd() {
        let crd = "authorizationpolicies.security.istio.io";
        let err = ApiError::from_kube(
            status(404, "NotFound", "the server could not find"),
            list_policies(),
            Some(crd.into()),
        );
        assert!(matches!(err, ApiError::MissingCrd { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("the {crd} CustomResourceDefinition is not installed")), "{err}");

        let pods = Request::new("get", "pods").in_namespace(Some("bookinfo")).named("gone");
        let err = ApiError::from_kube(status(404, "NotFound", "pods \"gone\" not found"), pods, None);
        assert!(matches!(err, ApiError::Rejected { code: 404, .. }), "a built-in kind has no CRD: {err:?}");
    }

    #[test]
    fn conflict_names_the_object_and_says_to_re_plan() {
        let request = Request::new("patch", "deployments.apps").in_namespace(Some("bookinfo")).named("reviews-v1");
        let message = "Operation cannot be fulfilled on deployments.apps \"reviews-v1\": the object has been modified";
        let err = ApiError::from_kube(status(409, "Conflict", message), request, None);
        assert!(matches!(err, ApiError::Conflict { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with("conflict: deployments.apps/reviews-v1 in namespace bookinfo changed"), "{text}");
        assert!(text.ends_with("re-read and re-plan"), "{text}");
    }

    #[test]
    fn throttling_and_server_errors_are_unavailable() {
        let err = ApiError::from_kube(status(429, "TooManyRequests", "Too many requests"), list_policies(), None);
        assert!(matches!(err, ApiError::Unavailable { code: 429, retry_after: None, .. }), "{err:?}");
        assert!(err.to_string().ends_with("answered 429 (Too many requests); retry later"), "{err}");

        let err = ApiError::from_kube(status(500, "InternalError", "etcd\n  leader changed"), list_policies(), None);
        assert!(matches!(err, ApiError::Unavailable { code: 500, .. }), "{err:?}");
        assert!(err.to_string().contains("answered 500 (etcd leader changed)"), "{err}");

        let err = ApiError::from_kube(status(504, "Timeout", "timed out"), list_policies(), None);
        assert!(matches!(err, ApiError::Timeout { .. }), "{err:?}");
    }

    #[test]
    fn a_retry_after_is_advised_when_given() {
        let err = ApiError::Unavailable {
            request: Box::new(list_policies()),
            code: 429,
            message: "Too many requests".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(err.to_string().ends_with("; retry after 3s"), "{err}");
    }

    #[test]
    fn an_io_time_out_is_a_timeout() {
        let timed_out = kube::Error::ReadEvents(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let err = ApiError::from_kube(timed_out, list_policies(), None);
        assert!(matches!(err, ApiError::Timeout { .. }), "{err:?}");

        let reset = kube::Error::ReadEvents(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let err = ApiError::from_kube(reset, list_policies(), None);
        assert!(matches!(err, ApiError::Failed { .. }), "{err:?}");
    }

    #[test]
    fn other_refusals_keep_the_servers_words() {
        let err =
            ApiError::from_kube(status(422, "Invalid", "spec.replicas: Invalid value: -1"), list_policies(), None);
        assert!(err.to_string().ends_with(": spec.replicas: Invalid value: -1 (422 Invalid)"), "{err}");
    }

    #[test]
    fn the_chain_line_walks_causes_once_each_on_one_line() {
        let read = InputError::Read {
            path: "/nonexistent/dump.yaml".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "No such file"),
        };
        assert_eq!(
            chain_line(&Error::from(read)),
            "cannot read /nonexistent/dump.yaml: No such file",
            "a cause the message already holds is not repeated"
        );

        let failed = ApiError::Failed {
            request: Box::new(list_policies()),
            source: Box::new(kube::Error::ReadEvents(std::io::Error::other("connection\n   reset"))),
        };
        assert_eq!(
            chain_line(&Error::from(failed)),
            "cannot list authorizationpolicies.security.istio.io in namespace bookinfo: Error reading events stream: connection reset"
        );

        let json = serde_json::from_str::<serde_json::Value>("{").map(|_| ()).map_err(Error::from);
        let line = json.map_err(|err| chain_line(&err)).expect_err("invalid JSON");
        assert!(line.starts_with("cannot write the JSON output: EOF while parsing"), "{line}");
    }

    #[test]
    fn consent_refusal_exits_1_and_everything_else_2() {
        let refused = Error::ConsentRefused { action: "enrolling bookinfo".into() };
        assert_eq!(refused.exit(), Exit::NotReady);
        assert!(refused.to_string().contains("rerun with --yes"), "{refused}");
        let not_implemented =
            Error::NotImplemented { command: "oc ambient-enable".into(), what: "x".into(), server: "https://s".into() };
        let cannot_evaluate = [
            Error::from(ClientError::NoConfiguration),
            Error::from(ApiError::Forbidden { request: Box::new(list_policies()) }),
            Error::from(ApiError::Conflict { request: Box::new(list_policies()), message: String::new() }),
            Error::from(InputError::Empty { path: "d".into() }),
            not_implemented,
        ];
        for err in cannot_evaluate {
            assert_eq!(err.exit(), Exit::Error, "{err}");
        }
    }

    #[test]
    fn exit_codes_are_stable() {
        assert_eq!(Exit::Success as u8, 0);
        assert_eq!(Exit::NotReady as u8, 1);
        assert_eq!(Exit::Error as u8, 2);
    }
}
