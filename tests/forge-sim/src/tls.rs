//! The simulator's own certificate authority, made at start-up: clients trust `ca.pem`
//! (`GIT_SSL_CAINFO` for git, `SSL_CERT_FILE` for Python, a root certificate for reqwest and
//! octocrab), and the server presents a certificate for `localhost` and `127.0.0.1` signed by it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Tls {
    pub server_config: Arc<ServerConfig>,
    /// PEM of the CA certificate, also written to `ca_path`.
    pub ca_pem: String,
    pub ca_path: PathBuf,
}

/// Makes a CA and a server certificate for `hosts` (names or IP addresses), writes the CA to
/// `dir/ca.pem`.
pub fn make(dir: &Path, hosts: &[String]) -> anyhow::Result<Tls> {
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "repovault forge-sim test CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).context("CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().context("server key")?;
    let mut leaf_params = CertificateParams::new(hosts.to_vec()).context("server params")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "forge-sim");
    leaf_params.distinguished_name = dn;
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .context("server certificate")?;

    let ca_pem = ca_cert.pem();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca_pem).with_context(|| format!("writing {}", ca_path.display()))?;

    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("TLS server config")?;
    // git and python speak HTTP/1.1; octocrab (hyper) too unless told otherwise.
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        server_config: Arc::new(server_config),
        ca_pem,
        ca_path,
    })
}
