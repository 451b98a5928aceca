//! The coordinator's HTTP port: Prometheus metrics (or on a port of their own), liveness and
//! readiness probes, push webhooks and download links
//! (`GET /downloads/<restore-id>?expires=<unix>&sig=<hex>`, see `downloads.rs`).

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::coordinator::Coordinator;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder (installed once; tests start many coordinators).
pub fn prometheus() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(
            || match crate::metric_families::builder().install_recorder() {
                Ok(h) => {
                    crate::metric_families::describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            },
        )
        .clone()
}

/// The HTTP routes; `/readyz` answers `readiness`'s verdict (200, or 503 naming what fails).
/// `/metrics` is among them when `with_metrics`; else it has a listener of its own
/// ([`metrics_router`]).
pub fn router(
    core: Arc<Coordinator>,
    readiness: Arc<crate::readiness::Readiness>,
    with_metrics: bool,
) -> Router {
    let routes = routes(core.clone(), readiness);
    if with_metrics {
        routes.merge(metrics_router(core))
    } else {
        routes
    }
}

/// `/metrics` alone.
pub fn metrics_router(core: Arc<Coordinator>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let core = core.clone();
            async move {
                update_gauges(&core).await;
                // Reads /proc: off the runtime's threads.
                let _ = tokio::task::spawn_blocking(crate::metric_families::update_process).await;
                prometheus().map(|h| h.render()).unwrap_or_default()
            }
        }),
    )
}

fn routes(core: Arc<Coordinator>, readiness: Arc<crate::readiness::Readiness>) -> Router {
    let downloads = core.clone();
    let hooks = core.clone();
    Router::new()
        .route(
            crate::forge_access::PUSH_WEBHOOK_PATH,
            axum::routing::post(move |query, headers, body| {
                crate::schedule::webhook_bursts::http::deliver(hooks.clone(), query, headers, body)
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let verdict = readiness.verdict();
                async move {
                    match verdict {
                        Ok(()) => (axum::http::StatusCode::OK, "ready\n".to_string()),
                        Err(why) => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        )
        .route(
            "/downloads/{id}",
            get(move |path, query| download(downloads.clone(), path, query)),
        )
}

/// Gauges are computed when scraped, so they are never stale.
pub async fn update_gauges(core: &Coordinator) {
    let (depth, leased, oldest_ms) = core.queue.queue_depths().await;
    for p in 0..=crate::tasks::queue_order::MAX_PRIORITY {
        let n = depth.get(&p).copied().unwrap_or(0);
        metrics::gauge!("repovault_queue_depth", "priority" => p.to_string()).set(n as f64);
    }
    metrics::gauge!("repovault_tasks_leased").set(leased as f64);
    metrics::gauge!("repovault_queue_oldest_ready_seconds").set(oldest_ms as f64 / 1000.0);
    let (slots, used) = core.queue.workers.capacity();
    metrics::gauge!("repovault_worker_slots").set(slots as f64);
    metrics::gauge!("repovault_worker_slots_used").set(used as f64);
    pool_gauges(core);
    let pending: u64 = depth.values().sum();
    // Slots wanted: everything running plus everything waiting, for an autoscaler to divide by
    // slots per worker.
    metrics::gauge!("repovault_desired_worker_slots").set((pending + leased) as f64);
    metrics::gauge!(crate::scaling::METRIC)
        .set(f64::from(core.scaling.desired_for(pending + leased)));
    if let Err(e) = core.health.update_health_gauges().await {
        tracing::warn!(error = %e, "health gauges not updated");
    }
}

/// Workers, slots and slots in use per worker pool. A pool once reported and now without
/// workers reads 0 rather than keeping its last figures.
fn pool_gauges(core: &Coordinator) {
    static REPORTED: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let now = core.queue.workers.capacity_by_pool();
    let mut reported = REPORTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    reported.extend(now.keys().cloned());
    for pool in reported.iter() {
        let c = now.get(pool).copied().unwrap_or_default();
        metrics::gauge!("repovault_pool_workers", "pool" => pool.clone()).set(c.workers as f64);
        metrics::gauge!("repovault_pool_worker_slots", "pool" => pool.clone()).set(c.slots as f64);
        metrics::gauge!("repovault_pool_worker_slots_used", "pool" => pool.clone())
            .set(c.used as f64);
    }
}

#[derive(serde::Deserialize)]
struct LinkQuery {
    #[serde(default)]
    expires: String,
    #[serde(default)]
    sig: String,
}

/// Serves a download link: 403 when altered (signature, expiry or restore changed), 410 when
/// expired or the artifact was deleted, 404 for an unknown restore; else the artifact with
/// `Content-Length`, `Content-Disposition` and its SHA-256 in `X-Repovault-Sha256`. The query
/// (which holds the signature) is never logged.
async fn download(
    core: Arc<Coordinator>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<LinkQuery>,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use futures::TryStreamExt;

    use crate::downloads::DownloadRefusal;
    use repovault_common::links::LinkRefusal;

    let refuse = |code: StatusCode, msg: String| (code, format!("{msg}\n")).into_response();
    let (r, path) = match core
        .downloads
        .open_download(&id, &q.expires, &q.sig, core.now_ms())
        .await
    {
        Ok(v) => v,
        Err(e) => {
            let code = match &e {
                DownloadRefusal::NotFound => StatusCode::NOT_FOUND,
                DownloadRefusal::Link(LinkRefusal::Altered) => StatusCode::FORBIDDEN,
                DownloadRefusal::Link(LinkRefusal::Expired(_)) | DownloadRefusal::Deleted(_) => {
                    StatusCode::GONE
                }
                DownloadRefusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            metrics::counter!("repovault_download_link_refused_total", "code" => code.as_u16().to_string()).increment(1);
            return refuse(code, e.to_string());
        }
    };
    let unavailable = |e: opendal::Error| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("download artifact: {e}"),
        )
    };
    let storage = match core.locations.operator_for(&r.org_id).await {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("download artifact: {e}"),
            );
        }
    };
    let len = match storage.stat(&path).await {
        Ok(m) => m.content_length(),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
            return refuse(StatusCode::GONE, "the download no longer exists".into());
        }
        Err(e) => return unavailable(e),
    };
    let stream = match storage.reader_with(&path).chunk(1 << 20).await {
        Ok(reader) => match reader.into_bytes_stream(..).await {
            Ok(s) => s,
            Err(e) => return unavailable(e),
        },
        Err(e) => return unavailable(e),
    };
    let ext = path.rsplit_once('.').map_or("bin", |(_, e)| e);
    let content_type = match ext {
        "zip" => "application/zip",
        "tar" => "application/x-tar",
        _ => "application/octet-stream",
    };
    let name = r.repo_full_name.replace('/', "-");
    let disposition = format!("attachment; filename=\"{name}-{}.{ext}\"", r.id);
    let mut resp =
        axum::body::Body::from_stream(stream.map_err(std::io::Error::other)).into_response();
    let h = resp.headers_mut();
    let mut set = |k: header::HeaderName, v: String| {
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(header::CONTENT_LENGTH, len.to_string());
    set(header::CONTENT_TYPE, content_type.into());
    set(header::CONTENT_DISPOSITION, disposition);
    set(header::CACHE_CONTROL, "no-store".into());
    set(
        header::HeaderName::from_static("x-repovault-sha256"),
        r.artifact_sha256.clone().unwrap_or_default(),
    );
    resp
}
