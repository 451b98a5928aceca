//! The one rustls crypto provider of the workspace.
//!
//! reqwest 0.13 (under gix and opendal) already links aws-lc-rs, so it is our provider; with two
//! providers linked and none installed, rustls panics at the first TLS connection. Every binary
//! and the test harness call [`install_crypto_provider`] first.

/// Installs aws-lc-rs as the process default. Idempotent: a second call (tests start many
/// components in one process) is a no-op.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
