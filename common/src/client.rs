//! Building a Kubernetes client the way kubectl does.
//!
//! `--kubeconfig` wins; otherwise every path in `KUBECONFIG` is merged (first file wins per key),
//! then `~/.kube/config`, then the in-cluster service account. `--context` picks a context, else
//! the current one; the context's namespace is the default namespace. The first request (server
//! version) proves the connection within `--request-timeout`, so an unreachable server fails fast
//! with one line naming its URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::GlobalArgs;
use crate::error::{ClientError, chain_line, one_line};
use crate::printer::Printer;

/// A connected client, with what the user should see about it.
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    pub server: String,
    pub context: Option<String>,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    pub server_version: String,
    requests: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("server", &self.server).field("context", &self.context).finish()
    }
}

impl Connection {
    /// API requests sent so far through this connection (shown with `-v`).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Loads the kubeconfig kubectl would use, without connecting.
pub fn load_kubeconfig(args: &GlobalArgs) -> Result<Option<Kubeconfig>, ClientError> {
    if let Some(path) = &args.kubeconfig {
        if !path.exists() {
            return Err(ClientError::KubeconfigUnreadable { path: path.clone(), reason: "no such file".into() });
        }
        return Kubeconfig::read_from(path)
            .map(Some)
            .map_err(|err| ClientError::KubeconfigInvalid(format!("{}: {}", path.display(), chain_line(&err))));
    }
    if let Some(config) = Kubeconfig::from_env()
        .map_err(|err| ClientError::KubeconfigInvalid(format!("KUBECONFIG: {}", chain_line(&err))))?
    {
        return Ok(Some(config));
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    match home.map(|home| home.join(".kube").join("config")) {
        Some(path) if path.exists() => Kubeconfig::read_from(&path)
            .map(Some)
            .map_err(|err| ClientError::KubeconfigInvalid(format!("{}: {}", path.display(), chain_line(&err)))),
        _ => Ok(None),
    }
}

/// Resolves the client configuration for the flags.
pub async fn resolve_config(args: &GlobalArgs) -> Result<Config, ClientError> {
    let mut config = match load_kubeconfig(args)? {
        Some(kubeconfig) => {
            if let Some(context) = &args.context
                && !kubeconfig.contexts.iter().any(|named| &named.name == context)
            {
                return Err(ClientError::UnknownContext(context.clone()));
            }
            let options = KubeConfigOptions { context: args.context.clone(), cluster: None, user: None };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|err| ClientError::KubeconfigInvalid(chain_line(&err)))?
        }
        None if args.context.is_some() => {
            return Err(ClientError::UnknownContext(args.context.clone().unwrap_or_default()));
        }
        None => Config::incluster().map_err(|_| ClientError::NoConfiguration)?,
    };
    config.connect_timeout = Some(args.request_timeout);
    config.read_timeout = Some(args.request_timeout);
    config.write_timeout = Some(args.request_timeout);
    if let Some(namespace) = &args.namespace {
        config.default_namespace = namespace.clone();
    }
    Ok(config)
}

/// Connects and proves the connection with one request.
pub async fn connect(args: &GlobalArgs, printer: &Printer) -> Result<Connection, ClientError> {
    let config = resolve_config(args).await?;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let namespace = config.default_namespace.clone();
    let context = match &args.context {
        Some(context) => Some(context.clone()),
        None => load_kubeconfig(args)?.and_then(|kubeconfig| kubeconfig.current_context),
    };
    printer.detail(&format!(
        "connecting to {server} (context {}, namespace {namespace}, timeout {:?})",
        context.as_deref().unwrap_or("<in-cluster>"),
        args.request_timeout
    ));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|err| ClientError::KubeconfigInvalid(chain_line(&err)))?
        .with_layer(&tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            counter.fetch_add(1, Ordering::Relaxed);
            request
        }))
        .build();
    let version = tokio::time::timeout(args.request_timeout + Duration::from_millis(500), client.apiserver_version())
        .await
        .map_err(|_| ClientError::Unreachable {
            url: server.clone(),
            reason: format!("no answer within {:?}", args.request_timeout),
        })?
        .map_err(|err| classify_connect_error(&server, err))?;
    printer.detail(&format!("connected to {server}: Kubernetes {}", version.git_version));
    Ok(Connection { client, server, context, namespace, server_version: version.git_version, requests })
}

fn classify_connect_error(server: &str, err: kube::Error) -> ClientError {
    if let kube::Error::Api(status) = &err
        && status.code == 401
    {
        return ClientError::Unauthorized { url: server.into(), reason: one_line(&status.message) };
    }
    let reason = chain_line(&err);
    ClientError::Unreachable { url: server.into(), reason }
}

/// The default timeout when a caller builds flags by hand.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
