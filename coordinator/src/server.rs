//! Starting a coordinator: gRPC (admin, worker, reflection, health, KEDA's external scaler), HTTP (metrics) and the
//! background loops (reaper, worker expiry, reconciler). Listens on the configured addresses;
//! port 0 picks a free port and the handle reports the real one (in-process tests).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use repovault_proto::v1 as pb;
use repovault_proto::v1::admin_service_server::AdminServiceServer;
use repovault_proto::v1::worker_service_server::WorkerServiceServer;

use crate::config::Settings;
use crate::coordinator::{Coordinator, CoordinatorParts};
use crate::periodic::{FirstPass, every};
use crate::service::admin::AdminApi;
use crate::service::call_auth::JoinGuard;
use crate::service::refusals::RefusalLog;
use crate::service::worker::WorkerApi;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Coordinator(#[from] crate::error::CoreError),
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Long enough for a completion or a store write in flight; a worker's progress stream never
/// ends by itself, so waiting for every connection would never finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

pub struct CoordinatorHandle {
    pub grpc_addr: SocketAddr,
    /// Whether gRPC is served over TLS.
    pub tls: bool,
    pub http_addr: Option<SocketAddr>,
    /// `/metrics` on a listener of its own (`metrics_listen`).
    pub metrics_addr: Option<SocketAddr>,
    pub core: Arc<Coordinator>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl CoordinatorHandle {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.grpc_addr)
    }

    /// Stops serving and the background loops. In-flight calls get [`SHUTDOWN_GRACE`] to finish;
    /// then open streams (workers' progress streams, long-polls, watchers) are cut.
    pub async fn shutdown(self) {
        self.core.stopping.cancel();
        self.shutdown.cancel();
        // One grace for all: a loop stuck in a store call (etcd without quorum answers after
        // its request timeout) must not hold a stepping-down leader for a grace per loop.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
            }
        }
    }
}

pub async fn start(settings: Settings) -> Result<CoordinatorHandle, ServerError> {
    crate::http::prometheus();
    let (forget_tx, forget_rx) = tokio::sync::mpsc::unbounded_channel();
    let core = Coordinator::new(
        CoordinatorParts {
            store: Store::new(settings.kv.clone()),
            clock: Arc::new(crate::clock::SystemClock),
            storage_config: settings.storage.clone(),
            master: settings.master_key.clone(),
            timing: settings.timing,
            max_attempts: settings.max_attempts,
        },
        forget_tx,
    )
    .await?;
    *core.ledger.options.write() = settings.verification.clone();
    core.scaling.configure(settings.scaling);
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();

    let listener =
        TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: settings.listen,
                source,
            })?;
    let grpc_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: settings.listen,
        source,
    })?;
    // Every listener is bound before anything is spawned, so a failed bind leaves nothing
    // running (a new leader retries while its follower face lets the addresses go).
    let http_listener = match settings.http_listen {
        Some(addr) => Some((bind(addr).await?, addr)),
        None => None,
    };
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some((bind(addr).await?, addr)),
        None => None,
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Arc::new(crate::readiness::Readiness::starting());
    for service in crate::readiness::SERVICES {
        health_reporter
            .set_service_status(*service, tonic_health::ServingStatus::NotServing)
            .await;
    }
    // Probed every heartbeat interval: the cadence at which workers notice a coordinator, so a
    // load balancer learns of a failed store or storage no later than the fleet does.
    tasks.push(tokio::spawn(crate::readiness::run(
        readiness.clone(),
        settings.kv.clone(),
        settings.storage.clone(),
        core.storage.clone(),
        health_reporter.clone(),
        settings.timing.heartbeat(),
        shutdown.clone(),
    )));
    // Reflection in both versions (many clients, grpcurl among them, still speak only
    // v1alpha), listing the health service too.
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        b.register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let audit = crate::audit::AuditLog::new(settings.kv.clone());
    let refusals = Arc::new(RefusalLog::new(audit.clone()));
    let admin = crate::service::guard::AdminGuard::new(
        AdminServiceServer::new(AdminApi { core: core.clone() }),
        Arc::new(crate::admin_roles::Callers::new(
            settings.admin_tokens.clone(),
        )),
        audit,
        refusals.clone(),
    );
    let worker = JoinGuard::new(
        WorkerServiceServer::new(WorkerApi { core: core.clone() }),
        crate::service::call_auth::JoinCheck {
            bootstrap: settings.join_token.clone(),
            door: core.worker_pools.door(),
            require_client_certificate: settings
                .tls
                .as_ref()
                .is_some_and(|t| t.require_worker_cert),
            clock: core.clock.clone(),
        },
        refusals.clone(),
    );
    // The summaries of rate-limited refusals ("and K more"), once each window is over.
    {
        let stop = shutdown.clone();
        let clock = core.clock.clone();
        tasks.push(tokio::spawn(async move {
            let window = crate::service::refusals::WINDOW;
            every(window, FirstPass::AtStart, &stop, || {
                refusals.flush(clock.now_ms())
            })
            .await
        }));
    }
    let mut builder = grpc_builder(&settings)?;
    let stop = shutdown.clone();
    let scaling = core.scaling.clone();
    tasks.push(tokio::spawn(async move {
        let result = builder
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(admin)
            .add_service(worker)
            .add_service(
                repovault_proto::keda::external_scaler_server::ExternalScalerServer::new(
                    crate::scaling::KedaScaler {
                        scaling: scaling.clone(),
                    },
                ),
            )
            .serve_with_incoming_shutdown(without_nagle(listener), stop.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    }));

    // Every HTTP listener is TLS when gRPC is: webhooks, download links and metrics cross
    // networks as gRPC does.
    let http_tls = match &settings.tls {
        Some(id) => {
            Some(crate::http_listener::acceptor(id).map_err(|e| ServerError::Tls(e.to_string()))?)
        }
        None => None,
    };
    let http_scheme = if http_tls.is_some() { "https" } else { "http" };
    let http_addr = match http_listener {
        Some((l, addr)) => {
            let bound = local(&l, addr)?;
            let public = settings
                .http_public_url
                .clone()
                .unwrap_or_else(|| format!("{http_scheme}://{bound}"));
            core.downloads.set_base_url(&public);
            core.schedules.set_public_url(&public);
            let app = crate::http::router(
                core.clone(),
                readiness.clone(),
                settings.metrics_listen.is_none(),
            );
            tasks.push(tokio::spawn(crate::http_listener::serve(
                l,
                app,
                http_tls.clone(),
                shutdown.clone(),
            )));
            Some(bound)
        }
        None => None,
    };
    let metrics_addr = match metrics_listener {
        Some((l, addr)) => {
            let bound = local(&l, addr)?;
            tasks.push(tokio::spawn(crate::http_listener::serve(
                l,
                crate::http::metrics_router(core.clone()),
                http_tls.clone(),
                shutdown.clone(),
            )));
            Some(bound)
        }
        None => None,
    };

    // Reaper and worker expiry: every heartbeat interval, so an expired lease is re-queued at
    // most one H after it expires.
    {
        let core = core.clone();
        let stop = shutdown.clone();
        let heartbeat = settings.timing.heartbeat();
        let ttl = i64::try_from(settings.timing.lease_ttl().as_millis()).unwrap_or(i64::MAX);
        tasks.push(tokio::spawn(async move {
            every(heartbeat, FirstPass::AtStart, &stop, || async {
                if let Err(e) = core.queue.reap().await {
                    tracing::warn!(error = %e, "reaper");
                }
                for w in core.queue.workers.expire(core.now_ms(), ttl) {
                    tracing::warn!(worker = %w, "worker silent for a lease TTL; forgotten");
                }
            })
            .await
        }));
    }
    {
        let core = core.clone();
        let stop = shutdown.clone();
        let interval = settings.reconcile_interval;
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = core.reconciler.clone().run(forget_rx, interval) => {}
            }
        }));
    }
    // Periodic discovery of GitHub organisations: each is listed again once its last discovery
    // is `github_sync_interval` old; looked at every minute (or interval, when shorter).
    {
        let core = core.clone();
        let stop = shutdown.clone();
        let interval = settings.github_sync_interval;
        tasks.push(tokio::spawn(async move {
            let look = interval.min(std::time::Duration::from_secs(60));
            every(look, FirstPass::AtStart, &stop, || async {
                // A listing of a large organisation can take minutes: a stop ends it.
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = core.forge.sync_due_orgs(interval) => {}
                }
            })
            .await
        }));
    }
    // Scheduled runs and on-push backups (`schedule/schedule_runs.rs`).
    core.schedules.set_push_delay(settings.push_delay);
    core.queue.set_affinity_wait(settings.affinity_wait);
    {
        let core = core.clone();
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(crate::schedule::schedule_runs::run(
            core.schedules.clone(),
            stop,
        )));
    }
    // Deleting expired download artifacts (`downloads.rs`).
    {
        let downloads = core.downloads.clone();
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(crate::downloads::run_expiry(downloads, stop)));
    }
    // Retention and maintenance.
    {
        let (interval, opts) = settings.retention.clone();
        tasks.push(tokio::spawn(
            crate::maintenance::maintenance_runs::run_loop(
                core.maintenance.clone(),
                interval,
                opts,
                shutdown.clone(),
            ),
        ));
    }
    // Verification: the read-back rotation and the restore drills.
    tasks.push(tokio::spawn(
        crate::verification::verify_runs::rotation_loop(
            core.verification.clone(),
            shutdown.clone(),
        ),
    ));
    tasks.push(tokio::spawn(crate::verification::drills::drill_loop(
        core.drills.clone(),
        shutdown.clone(),
    )));
    // Records of tasks that ended over half an hour ago (`tasks/task_history.rs`).
    tasks.push(tokio::spawn(crate::tasks::task_history::prune_loop(
        core.queue.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::second_copy::copy_loop(
        core.second_copy.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::escrow_lock::lock_loop(
        core.escrow_locks.clone(),
        shutdown.clone(),
    )));
    metrics::gauge!("repovault_coordinator_leader").set(1.0);
    tracing::info!(grpc = %grpc_addr, http = ?http_addr, store = settings.kv.name(), "coordinator serving");
    Ok(CoordinatorHandle {
        grpc_addr,
        tls: settings.tls.is_some(),
        http_addr,
        metrics_addr,
        core,
        shutdown,
        tasks,
    })
}

/// A gRPC server builder with the configured TLS (the leader's and a follower's).
pub(crate) fn grpc_builder(settings: &Settings) -> Result<tonic::transport::Server, ServerError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(id) = &settings.tls {
        let identity = tonic::transport::Identity::from_pem(&id.cert_pem, &id.key_pem);
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &id.client_ca_pem {
            // Workers' client certificates are verified against this CA in the handshake; a
            // client may present none (the admin CLI), and the worker service's door refuses
            // those when `require_worker_cert` is set (`service/call_auth.rs`).
            tls = tls
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    Ok(builder)
}

/// The gRPC listener's connections with Nagle's algorithm off. tonic applies its own
/// `tcp_nodelay` only to listeners it binds itself; on a listener handed to it, a small answer
/// (a lease, a completion's acknowledgement) written after the client's last segment was not yet
/// acknowledged waits for the client's delayed ACK, 40 ms on Linux: a worker then took one task
/// per 40 ms whatever its slots (measured with the fleet benchmark).
pub(crate) fn without_nagle(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        if let Err(e) = conn.set_nodelay(true) {
            // Slower answers, not a refused connection.
            tracing::warn!(error = %e, "could not turn Nagle's algorithm off on a gRPC connection");
        }
        Ok(conn)
    })
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

pub(crate) fn local(l: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    l.local_addr()
        .map_err(|source| ServerError::Bind { addr, source })
}
