//! A worker's own `/metrics` (`repovault worker --metrics-listen ADDR`): its families
//! (`repovault_common::worker_metrics`) on a port of its own, so a fleet is watched per worker.
//! In `standalone` the coordinator's recorder is the process's, and the workers' families show
//! on the coordinator's `/metrics` instead.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use repovault_common::worker_metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder with the worker's families; `None` when the process has one
/// already (it then records the worker's families itself).
pub fn install() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            match worker_metrics::with_buckets(PrometheusBuilder::new()).install_recorder() {
                Ok(h) => {
                    worker_metrics::describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "worker metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// Binds `addr` and serves `/metrics` there until `stop`. Fails when the address cannot be
/// bound or the process already has another recorder.
pub async fn serve(addr: SocketAddr, stop: CancellationToken) -> std::io::Result<SocketAddr> {
    let handle = install()
        .ok_or_else(|| std::io::Error::other("this process already records metrics elsewhere"))?;
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move { h.render() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "worker metrics server stopped");
        }
    });
    Ok(bound)
}
