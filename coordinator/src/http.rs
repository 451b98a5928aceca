//! The coordinator's HTTP port: Prometheus metrics and a liveness probe.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::core::Core;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder (installed once; tests start many coordinators).
pub fn prometheus() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}

pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let core = core.clone();
                async move {
                    update_gauges(&core).await;
                    prometheus().map(|h| h.render()).unwrap_or_default()
                }
            }),
        )
}

/// Gauges are computed when scraped, so they are never stale.
pub async fn update_gauges(core: &Core) {
    let (depth, leased, oldest_ms) = core.queue_depths().await;
    for p in 0..=crate::queue::MAX_PRIORITY {
        let n = depth.get(&p).copied().unwrap_or(0);
        metrics::gauge!("repovault_queue_depth", "priority" => p.to_string()).set(n as f64);
    }
    metrics::gauge!("repovault_tasks_leased").set(leased as f64);
    metrics::gauge!("repovault_queue_oldest_ready_seconds").set(oldest_ms as f64 / 1000.0);
    let (slots, used) = core.workers.capacity();
    metrics::gauge!("repovault_worker_slots").set(slots as f64);
    metrics::gauge!("repovault_worker_slots_used").set(used as f64);
    let pending: u64 = depth.values().sum();
    // Slots wanted: everything running plus everything waiting, for an autoscaler to divide by
    // slots per worker.
    metrics::gauge!("repovault_desired_worker_slots").set((pending + leased) as f64);
}
