//! gRPC client endpoints: plaintext for `http://`, TLS for `https://` (the platform's roots,
//! plus a CA file for private PKI, and a client certificate for a coordinator that asks workers
//! for one).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A client certificate (PEM chain) and its private key (PEM), as paths: the files are read when
/// the endpoint is made, and the key is never held anywhere else or printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("coordinator URL {url:?} is not valid: {reason}")]
    Url { url: String, reason: String },
    #[error("CA file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("client certificate {path}: {reason}")]
    ClientCert { path: String, reason: String },
}

/// An endpoint for `url`. `ca_file` (PEM) is trusted in addition to the platform's roots; it is
/// refused for a plaintext URL, where it would silently do nothing.
pub fn endpoint(url: &str, ca_file: Option<&Path>) -> Result<Endpoint, EndpointError> {
    endpoint_with(url, ca_file, None)
}

/// [`endpoint`], presenting `client` (a certificate and key) in the TLS handshake: mTLS. A client
/// certificate is refused for a plaintext URL, and a file that does not hold what it should is
/// refused naming it (never quoting a key).
pub fn endpoint_with(
    url: &str,
    ca_file: Option<&Path>,
    client: Option<&ClientCertFiles>,
) -> Result<Endpoint, EndpointError> {
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
        if let Some(c) = client {
            tls = tls.identity(client_identity(c)?);
        }
        ep = ep.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    } else if let Some(p) = ca_file {
        return Err(EndpointError::Ca {
            path: p.display().to_string(),
            reason: "a CA file needs an https:// coordinator URL".into(),
        });
    } else if let Some(c) = client {
        return Err(EndpointError::ClientCert {
            path: c.cert_file.display().to_string(),
            reason: "a client certificate needs an https:// coordinator URL".into(),
        });
    }
    Ok(ep)
}

/// Reads a client certificate and key, checking each holds a PEM block of its kind.
fn client_identity(c: &ClientCertFiles) -> Result<Identity, EndpointError> {
    let read = |p: &Path, marker: &str, what: &str| {
        let bad = |reason: String| EndpointError::ClientCert {
            path: p.display().to_string(),
            reason,
        };
        let pem = std::fs::read(p).map_err(|e| bad(e.to_string()))?;
        if String::from_utf8_lossy(&pem).contains(marker) {
            Ok(pem)
        } else {
            Err(bad(format!("holds no PEM {what}")))
        }
    };
    let cert = read(&c.cert_file, "BEGIN CERTIFICATE", "certificate")?;
    let key = read(&c.key_file, "PRIVATE KEY", "private key")?;
    Ok(Identity::from_pem(cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_needs_tls_and_files_that_hold_one() {
        let dir = tempfile::tempdir().expect("dir");
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        std::fs::write(&key, "not a key: s3cr3t").expect("write");
        let files = ClientCertFiles {
            cert_file: cert.clone(),
            key_file: key.clone(),
        };
        let plain = endpoint_with("http://127.0.0.1:1", None, Some(&files)).expect_err("plain");
        assert!(plain.to_string().contains("https://"), "{plain}");
        let e = endpoint_with("https://127.0.0.1:1", None, Some(&files)).expect_err("no key");
        let text = e.to_string();
        assert!(
            text.contains("k.pem") && text.contains("private key"),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
        let missing = ClientCertFiles {
            cert_file: dir.path().join("absent.pem"),
            key_file: key,
        };
        let e = endpoint_with("https://127.0.0.1:1", None, Some(&missing)).expect_err("absent");
        assert!(e.to_string().contains("absent.pem"), "{e}");
        assert!(endpoint_with("https://127.0.0.1:1", None, None).is_ok());
    }
}
