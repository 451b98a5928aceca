//! gRPC client endpoints: plaintext for `http://`, TLS for `https://` (the platform's roots,
//! plus a CA file for private PKI).

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("coordinator URL {url:?} is not valid: {reason}")]
    Url { url: String, reason: String },
    #[error("CA file {path}: {reason}")]
    Ca { path: String, reason: String },
}

/// An endpoint for `url`. `ca_file` (PEM) is trusted in addition to the platform's roots; it is
/// refused for a plaintext URL, where it would silently do nothing.
pub fn endpoint(url: &str, ca_file: Option<&Path>) -> Result<Endpoint, EndpointError> {
    let bad = |reason: String| EndpointError::Url {
        url: url.to_string(),
        reason,
    };
    let mut ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| bad(e.to_string()))?
        // Connection attempts fail fast, so a coordinator restart is noticed within a heartbeat.
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(p) = ca_file {
            let pem = std::fs::read(p).map_err(|e| EndpointError::Ca {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        ep = ep.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    } else if let Some(p) = ca_file {
        return Err(EndpointError::Ca {
            path: p.display().to_string(),
            reason: "a CA file needs an https:// coordinator URL".into(),
        });
    }
    Ok(ep)
}
