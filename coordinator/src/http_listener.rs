//! Serving the HTTP routes on a listener, in plaintext or over TLS with the coordinator's
//! certificate (`[tls]`): webhooks, download links and metrics cross networks as gRPC does.

use std::sync::Arc;

use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::TlsIdentity;

#[derive(Debug, thiserror::Error)]
pub enum HttpTlsError {
    #[error("the TLS certificate chain is not PEM: {0}")]
    Certificate(String),
    #[error("the TLS private key is not PEM: {0}")]
    Key(String),
    #[error("the TLS certificate and key do not go together: {0}")]
    Config(String),
}

/// The rustls acceptor of `id`, offering HTTP/2 and HTTP/1.1.
pub fn acceptor(id: &TlsIdentity) -> Result<tokio_rustls::TlsAcceptor, HttpTlsError> {
    let chain = CertificateDer::pem_slice_iter(&id.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpTlsError::Certificate(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(&id.key_pem).map_err(|e| HttpTlsError::Key(e.to_string()))?;
    // The workspace's one provider (`repovault_common::tls`), named rather than taken from the
    // process default, which an embedding process may not have installed.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpTlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| HttpTlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `stop`: over TLS when `tls` is given, else plaintext.
/// Small answers leave at once (no Nagle), as on the gRPC listener. A connection whose TLS
/// handshake fails is dropped and logged at debug (scanners and plaintext clients are common).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) {
    let Some(acceptor) = tls else {
        let l = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not turn Nagle's algorithm off on an HTTP connection");
            }
        });
        if let Err(e) = axum::serve(l, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
        return;
    };
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
                },
                _ = stop.cancelled() => {}
            }
        });
    }
}
