//! A loopback HTTPS server for the parts the API server calls out to: istiod's injection webhook
//! and the kubelets' container-log endpoint. One accept loop, so both stop the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Error;

/// Serves `handle` over TLS (certificate and key in PEM) on a loopback port until the returned
/// task is aborted; `what` names the server in errors.
pub async fn serve<H, F>(
    what: &str,
    cert_pem: &str,
    key_pem: &str,
    handle: H,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, hyper::Error>> + Send + 'static,
{
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|err| Error::Tls(err.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|err| Error::Tls(err.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| Error::Tls(err.to_string()))?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| Error::Io { what: format!("bind the {what} port"), source })?;
    let address =
        listener.local_addr().map_err(|source| Error::Io { what: format!("read the {what} port"), source })?;
    let what = what.to_string();
    // Connections live in a JoinSet owned by the accept loop, so aborting the returned task also
    // drops the API server's keep-alive connections: a stopped server answers nothing.
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let (acceptor, handle, what) = (acceptor.clone(), handle.clone(), what.clone());
                    connections.spawn(async move {
                        let Ok(stream) = acceptor.accept(stream).await else { return };
                        let service = hyper::service::service_fn(handle);
                        if let Err(err) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                            tracing::debug!("{what} connection: {err}");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Ok((address, task))
}
