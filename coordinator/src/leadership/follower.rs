//! What a follower serves on the coordinator's addresses while another coordinator leads.
//!
//! - gRPC: the health service (the process SERVING, the admin and worker services NOT_SERVING,
//!   so load balancers and probes send nothing here), and for every admin, worker and scaler
//!   call an UNAVAILABLE answer that names the leader, also in the [`LEADER_HEADER`] metadata,
//!   which clients given several addresses follow. Every answer, health's included, carries it.
//! - HTTP: `/healthz` (alive), `/readyz` (503: not the leader, naming it), `/metrics` (with
//!   `repovault_coordinator_leader 0`), and 503 naming the leader for anything else (a
//!   webhook, a download link), so nothing is accepted that only the leader can honour.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use repovault_proto::v1::admin_service_server::AdminServiceServer;
use repovault_proto::v1::worker_service_server::WorkerServiceServer;

use super::{LEADER_HEADER, LeaderView};
use crate::config::Settings;
use crate::server::{ServerError, bind, grpc_builder, local, without_nagle};
use crate::service::admin::AdminApi;
use crate::service::worker::WorkerApi;

/// A running follower's servers.
pub struct FollowerHandle {
    pub grpc_addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FollowerHandle {
    /// Stops serving and waits until every listener is closed, so the leader can bind them.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// What a follower says instead of answering.
fn refusal(leader: &LeaderView) -> String {
    match leader.get() {
        Some(l) => format!(
            "this coordinator is a follower; the leader is {} at {}",
            l.name, l.grpc_url
        ),
        None => match leader.problem() {
            Some(why) => format!(
                "this coordinator is a follower and no leader can be elected: the state store does not answer ({why})"
            ),
            None => "this coordinator is a follower and no leader is elected yet; try again in a few seconds".into(),
        },
    }
}

fn with_leader<B>(mut resp: http::Response<B>, leader: &LeaderView) -> http::Response<B> {
    if let Some(l) = leader.get()
        && let Ok(v) = http::HeaderValue::from_str(&l.grpc_url)
    {
        resp.headers_mut().insert(LEADER_HEADER, v);
    }
    resp
}

/// Answers every call of service `S` with UNAVAILABLE and the leader's address.
struct Refuse<S> {
    leader: LeaderView,
    service: PhantomData<fn() -> S>,
}

impl<S> Clone for Refuse<S> {
    fn clone(&self) -> Self {
        Self {
            leader: self.leader.clone(),
            service: PhantomData,
        }
    }
}

impl<S: NamedService> NamedService for Refuse<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Refuse<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<B>) -> Self::Future {
        let status = tonic::Status::unavailable(refusal(&self.leader));
        std::future::ready(Ok(with_leader(status.into_http(), &self.leader)))
    }
}

/// Service `S` with the leader's address added to every answer.
#[derive(Clone)]
struct Annotate<S> {
    inner: S,
    leader: LeaderView,
}

impl<S: NamedService> NamedService for Annotate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for Annotate<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone may not be ready; take the one that was polled ready (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let leader = self.leader.clone();
        Box::pin(async move { Ok(with_leader(inner.call(req).await?, &leader)) })
    }
}

/// Serves the follower's face on the configured addresses until [`FollowerHandle::shutdown`].
pub async fn start(settings: &Settings, leader: LeaderView) -> Result<FollowerHandle, ServerError> {
    crate::http::prometheus();
    metrics::gauge!("repovault_coordinator_leader").set(0.0);
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    for s in &crate::readiness::SERVICES[1..] {
        reporter
            .set_service_status(*s, tonic_health::ServingStatus::NotServing)
            .await;
    }
    let listener = bind(settings.listen).await?;
    let grpc_addr = local(&listener, settings.listen)?;
    let router = grpc_builder(settings)?
        .add_service(Annotate {
            inner: health,
            leader: leader.clone(),
        })
        .add_service(Refuse::<AdminServiceServer<AdminApi>> {
            leader: leader.clone(),
            service: PhantomData,
        })
        .add_service(Refuse::<WorkerServiceServer<WorkerApi>> {
            leader: leader.clone(),
            service: PhantomData,
        })
        .add_service(Refuse::<
            repovault_proto::keda::external_scaler_server::ExternalScalerServer<
                crate::scaling::KedaScaler,
            >,
        > {
            leader: leader.clone(),
            service: PhantomData,
        });
    {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let served = router
                .serve_with_incoming_shutdown(without_nagle(listener), stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "follower gRPC server stopped");
            }
        }));
    }

    let tls = match &settings.tls {
        Some(id) => {
            Some(crate::http_listener::acceptor(id).map_err(|e| ServerError::Tls(e.to_string()))?)
        }
        None => None,
    };
    let separate_metrics = settings.metrics_listen.is_some();
    let mut listeners = Vec::new();
    if let Some(addr) = settings.http_listen {
        listeners.push((addr, http_router(leader.clone(), !separate_metrics)));
    }
    if let Some(addr) = settings.metrics_listen {
        listeners.push((addr, metrics_router()));
    }
    for (addr, app) in listeners {
        let l = bind(addr).await?;
        tasks.push(tokio::spawn(crate::http_listener::serve(
            l,
            app,
            tls.clone(),
            stop.clone(),
        )));
    }
    tracing::info!(grpc = %grpc_addr, "following: serving health and the leader's address");
    Ok(FollowerHandle {
        grpc_addr,
        stop,
        tasks,
    })
}

fn metrics_router() -> Router {
    Router::new().route(
        "/metrics",
        get(|| async {
            // Reads /proc: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(crate::metric_families::update_process).await;
            crate::http::prometheus()
                .map(|h| follower_families(&h.render()))
                .unwrap_or_default()
        }),
    )
}

/// The families a follower reports: whether it leads, its build and its process. A member that
/// led before still holds its last queue, fleet and health figures in the process's recorder;
/// reported beside the leader's, they would be counted twice by every `sum()` over the group.
const FOLLOWER_FAMILIES: &[&str] = &[
    "repovault_coordinator_leader",
    "repovault_build_info",
    "process_",
];

/// `text` (Prometheus's exposition format) without the families a follower must not report.
fn follower_families(text: &str) -> String {
    let keep = |name: &str| FOLLOWER_FAMILIES.iter().any(|f| name.starts_with(f));
    text.lines()
        .filter(|line| {
            let name = match line.strip_prefix("# ") {
                // `# HELP name ...`, `# TYPE name ...`
                Some(rest) => rest.split_whitespace().nth(1).unwrap_or_default(),
                None => line.split(['{', ' ']).next().unwrap_or_default(),
            };
            name.is_empty() || keep(name)
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

fn http_router(leader: LeaderView, with_metrics: bool) -> Router {
    let unready = leader.clone();
    let elsewhere = leader;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok (follower)\n" }))
        .route(
            "/readyz",
            get(move || {
                let msg = refusal(&unready);
                async move { (http::StatusCode::SERVICE_UNAVAILABLE, format!("{msg}\n")) }
            }),
        )
        .fallback(move || {
            let msg = refusal(&elsewhere);
            async move { (http::StatusCode::SERVICE_UNAVAILABLE, format!("{msg}\n")) }
        });
    if with_metrics {
        app.merge(metrics_router())
    } else {
        app
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_reports_only_its_leadership_build_and_process() {
        let text = "# HELP repovault_queue_depth Ready tasks.\n# TYPE repovault_queue_depth gauge\nrepovault_queue_depth{priority=\"8\"} 3\n# HELP repovault_coordinator_leader 1 while leading.\n# TYPE repovault_coordinator_leader gauge\nrepovault_coordinator_leader 0\nprocess_threads 12\nrepovault_build_info{version=\"0.1.0\"} 1\n";
        assert_eq!(
            follower_families(text),
            "# HELP repovault_coordinator_leader 1 while leading.\n# TYPE repovault_coordinator_leader gauge\nrepovault_coordinator_leader 0\nprocess_threads 12\nrepovault_build_info{version=\"0.1.0\"} 1\n"
        );
    }
}
