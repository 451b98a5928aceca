//! Tracing set-up for every binary: `RUST_LOG` is respected, default `info`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr. Idempotent (tests call it repeatedly).
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
