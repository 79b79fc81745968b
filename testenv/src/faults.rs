//! A fault-injecting proxy in front of the API server, so tests can prove that a client survives
//! conflicts, throttling, server errors, slow answers and dropped connections.
//!
//! The proxy serves HTTPS on a loopback port with a certificate from the plane's CA, so the
//! plane's kubeconfig CA trusts it, and requires a client certificate signed by that CA. Each
//! request first meets the rules injected with [`FaultProxy::inject`]; the first rule that matches
//! answers with a Kubernetes `Status`, waits before forwarding, or closes the connection without an
//! answer. Requests no rule stops are forwarded, and the answer is streamed back unbuffered, so
//! watches pass through. Request bodies are read whole before forwarding (they are small objects).
//!
//! **Identity.** The proxy forwards each request with the caller's *own* client certificate: it
//! holds the plane's PKI, recognises which of the kubeconfig's identities (`admin`, `viewer`)
//! presented the certificate, and forwards through a client of that identity. The API server thus
//! authenticates and authorises exactly the caller, with no impersonation: RBAC, the groups and
//! `SelfSubjectReview` are what they would be without the proxy. Impersonation headers derived
//! from the certificate's CN and O would also keep RBAC, but need an X.509 parser, give the proxy
//! impersonation rights, and change what the server records (the impersonating user). Other
//! certificates of the CA are refused with 401.
//!
//! Every request is logged ([`FaultProxy::requests`]) with its status and the rule that hit it,
//! so a test can count requests or check that every write carried `dryRun=All`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube::Client;
use kube::client::Body;
use regex::Regex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{ADMIN_CONTEXT, ControlPlane, Error, VIEWER_CONTEXT, client_from, write};

/// What a matching rule does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer `code` with a Kubernetes `Status` body without forwarding; with `retry_after_seconds`
    /// also a `Retry-After` header and `details.retryAfterSeconds`, as the API server throttles.
    Respond { code: u16, retry_after_seconds: Option<u64> },
    /// Wait this long, then forward.
    Delay(Duration),
    /// Close the connection without an answer.
    Drop,
}

impl Action {
    /// A `Status` answer with `code` (409, 500, ...).
    pub fn status(code: u16) -> Action {
        Action::Respond { code, retry_after_seconds: None }
    }

    /// 429 Too Many Requests with `Retry-After: seconds`.
    pub fn throttle(seconds: u64) -> Action {
        Action::Respond { code: 429, retry_after_seconds: Some(seconds) }
    }
}

/// A rule: which requests, how many times, and what to do to them.
#[derive(Debug, Clone)]
pub struct Fault {
    action: Action,
    target: Regex,
    method: Option<Method>,
    times: usize,
}

impl Fault {
    /// `action` on the next request, of any method, whose `path?query` matches the regular
    /// expression `target` (a plain path such as `/configmaps/settings` is one).
    pub fn new(action: Action, target: &str) -> Result<Fault, Error> {
        Ok(Fault { action, target: Regex::new(target)?, method: None, times: 1 })
    }

    /// Only requests with this method.
    pub fn method(self, method: Method) -> Fault {
        Fault { method: Some(method), ..self }
    }

    /// On the next `times` matching requests instead of one.
    pub fn times(self, times: usize) -> Fault {
        Fault { times, ..self }
    }

    fn matches(&self, method: &Method, target: &str) -> bool {
        self.times > 0 && self.method.as_ref().is_none_or(|wanted| wanted == method) && self.target.is_match(target)
    }
}

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// The status answered; None when the connection was closed without an answer.
    pub status: Option<u16>,
    /// The rule (its index from [`FaultProxy::inject`]) that hit the request.
    pub fault: Option<usize>,
}

/// The rules and the log, shared by the connections.
#[derive(Debug, Default)]
struct Faults {
    rules: Mutex<Vec<Fault>>,
    log: Mutex<Vec<RequestRecord>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Faults {
    /// The first rule matching the request, which it uses up once.
    fn take(&self, method: &Method, target: &str) -> Option<(usize, Action)> {
        let mut rules = lock(&self.rules);
        let (index, rule) = rules.iter_mut().enumerate().find(|(_, rule)| rule.matches(method, target))?;
        rule.times -= 1;
        Some((index, rule.action.clone()))
    }
}

/// A running proxy; dropping it closes the port and every open connection.
#[derive(Debug)]
pub struct FaultProxy {
    kubeconfig: PathBuf,
    server: String,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    /// Starts a [`FaultProxy`] in front of this plane's API server, on the current runtime.
    pub async fn fault_proxy(&self) -> Result<FaultProxy, Error> {
        FaultProxy::start(self).await
    }
}

fn tls_error(err: impl std::fmt::Display) -> Error {
    Error::Tls(err.to_string())
}

impl FaultProxy {
    /// Starts a proxy in front of `plane`'s API server, on the current runtime.
    pub async fn start(plane: &ControlPlane) -> Result<FaultProxy, Error> {
        let pki = plane.pki();
        let serving = pki.issue_serving("oc-ambient-fault-proxy", vec!["127.0.0.1".into(), "localhost".into()])?;
        let mut identities = Vec::new();
        for (pem, context) in [(&pki.admin, ADMIN_CONTEXT), (&pki.viewer, VIEWER_CONTEXT)] {
            let certificate = CertificateDer::from_pem_slice(pem.cert.as_bytes()).map_err(tls_error)?;
            identities.push((certificate, plane.client_for(context).await?));
        }
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&pki.ca.cert, &serving.cert, &serving.key)?));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| Error::Io { what: "bind the fault proxy port".into(), source })?;
        let address =
            listener.local_addr().map_err(|source| Error::Io { what: "read the fault proxy port".into(), source })?;
        let server = format!("https://{address}");
        let kubeconfig = plane.dir().join(format!("kubeconfig-fault-proxy-{}", address.port()));
        write(&kubeconfig, &plane.kubeconfig_text(&server))?;
        let faults = Arc::new(Faults::default());
        let task = tokio::spawn(serve(listener, acceptor, Arc::new(identities), faults.clone()));
        Ok(FaultProxy { kubeconfig, server, faults, task })
    }

    /// A kubeconfig like the plane's (same contexts and users) whose server is this proxy.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A client for `context` through the proxy.
    pub async fn client_for(&self, context: &str) -> Result<Client, Error> {
        client_from(&self.kubeconfig, context).await
    }

    /// Adds a rule after those already injected and returns its index (see
    /// [`RequestRecord::fault`]); earlier rules win when several match.
    pub fn inject(&self, fault: Fault) -> usize {
        let mut rules = lock(&self.faults.rules);
        rules.push(fault);
        rules.len() - 1
    }

    /// Every request received so far, in the order they were answered (or dropped).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.faults.log).clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TLS that presents `cert` and requires a client certificate signed by the CA `ca`.
fn server_config(ca: &str, cert: &str, key: &str) -> Result<rustls::ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).map_err(tls_error)?).map_err(tls_error)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(tls_error)?;
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(tls_error)?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(tls_error)?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error)
}

/// Client certificates the proxy recognises, each with a client of that identity.
type Identities = Vec<(CertificateDer<'static>, Client)>;

/// Accepts connections until aborted. Connections live in a JoinSet owned by this loop, so
/// aborting it also closes every open connection, watches included.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, identities: Arc<Identities>, faults: Arc<Faults>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let identities = identities.clone();
                let faults = faults.clone();
                connections.spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let presented = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
                    let upstream = identities
                        .iter()
                        .find(|(certificate, _)| Some(certificate) == presented)
                        .map(|(_, client)| client.clone());
                    let service = hyper::service::service_fn(move |request| {
                        handle(upstream.clone(), faults.clone(), request)
                    });
                    // A dropped fault or a vanished client ends the connection with an error; nothing to do.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Why the proxy closes a connection without an answer.
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    #[error("dropped by a fault rule")]
    Dropped,
    #[error("reading the request body: {0}")]
    Body(#[from] hyper::Error),
    #[error("the API server did not answer: {0}")]
    Upstream(#[from] kube::Error),
}

async fn handle(
    upstream: Option<Client>,
    faults: Arc<Faults>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Unanswered> {
    let method = request.method().clone();
    let target = request.uri().path_and_query().map_or_else(|| request.uri().path().to_string(), ToString::to_string);
    let fault = faults.take(&method, &target);
    let outcome = match (&fault, upstream) {
        (Some((_, Action::Drop)), _) => Err(Unanswered::Dropped),
        (Some((_, Action::Respond { code, retry_after_seconds })), _) => {
            Ok(status_response(*code, *retry_after_seconds))
        }
        (_, None) => Ok(status_response(StatusCode::UNAUTHORIZED.as_u16(), None)),
        (Some((_, Action::Delay(delay))), Some(client)) => {
            tokio::time::sleep(*delay).await;
            forward(&client, request).await
        }
        (None, Some(client)) => forward(&client, request).await,
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (target, None),
    };
    lock(&faults.log).push(RequestRecord {
        method,
        path,
        query,
        status: outcome.as_ref().ok().map(|response| response.status().as_u16()),
        fault: fault.map(|(index, _)| index),
    });
    outcome
}

/// Forwards a request with `client`'s identity and streams the answer back.
async fn forward(client: &Client, request: Request<Incoming>) -> Result<Response<Body>, Unanswered> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    remove_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    let response = client.send(Request::from_parts(parts, Body::from(body))).await?;
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body))
}

/// Headers about one connection, which hyper sets again for the next hop.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::TE, header::TRAILER, header::UPGRADE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

/// The `Status` the API server answers with for `code`.
fn status_response(code: u16, retry_after_seconds: Option<u64>) -> Response<Body> {
    let reason = match code {
        401 => "Unauthorized",
        409 => "Conflict",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    };
    let message = if code == 401 {
        "the fault proxy forwards only the admin and viewer identities of the plane's kubeconfig".to_string()
    } else {
        format!("injected by the fault proxy: {reason}")
    };
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    let mut response = Response::builder().status(code).header(header::CONTENT_TYPE, "application/json");
    if let Some(seconds) = retry_after_seconds {
        status["details"] = json!({"retryAfterSeconds": seconds});
        response = response.header(header::RETRY_AFTER, seconds);
    }
    response.body(Body::from(status.to_string().into_bytes())).unwrap_or_else(|_| {
        let mut fallback = Response::new(Body::empty());
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_hits_as_many_times_as_asked() {
        let faults = Faults::default();
        lock(&faults.rules).extend([
            Fault::new(Action::status(409), "/configmaps/settings$").unwrap().method(Method::PATCH).times(2),
            Fault::new(Action::Drop, "/configmaps").unwrap(),
        ]);
        let settings = "/api/v1/namespaces/demo/configmaps/settings";
        assert_eq!(faults.take(&Method::GET, settings).map(|(index, _)| index), Some(1), "wrong method");
        assert_eq!(faults.take(&Method::PATCH, settings), Some((0, Action::status(409))));
        assert_eq!(faults.take(&Method::PATCH, settings), Some((0, Action::status(409))));
        assert_eq!(faults.take(&Method::PATCH, settings), None, "both rules used up");
    }

    #[test]
    fn a_rule_matches_the_query_too() {
        let fault = Fault::new(Action::Drop, r"dryRun=All").unwrap();
        assert!(fault.matches(&Method::PATCH, "/api/v1/namespaces/demo/pods/a?dryRun=All&fieldManager=x"));
        assert!(!fault.matches(&Method::PATCH, "/api/v1/namespaces/demo/pods/a?fieldManager=x"));
        assert!(Fault::new(Action::Drop, "(").is_err());
    }

    #[tokio::test]
    async fn throttling_answers_like_the_api_server() {
        let response = status_response(429, Some(7));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let body = response.into_body().collect_bytes().await.unwrap();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (&status["kind"], &status["reason"], &status["code"], &status["details"]["retryAfterSeconds"]),
            (&json!("Status"), &json!("TooManyRequests"), &json!(429), &json!(7))
        );
    }
}
