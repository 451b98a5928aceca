//! A worker's life: register, heartbeat on its own timer, acquire up to its slots by long-poll,
//! run tasks, stream progress, complete; drain on shutdown; exit when idle (burst pools).
//!
//! The heartbeat task never waits on work or slots (DESIGN.md §4); it renews every held lease and
//! interrupts tasks whose leases the coordinator revoked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use repovault_common::secret::Secret;
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;
use repovault_proto::PROTOCOL_VERSION;
use repovault_proto::v1 as pb;

use crate::cache::MirrorCache;
use crate::client::{Client, connect};
use crate::progress::{Progress, RESEND};
use crate::tasks::{self, LeaseView, TaskContext, TaskError};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub coordinator: String,
    /// Extra CA (PEM) for an https:// coordinator.
    pub ca_file: Option<PathBuf>,
    pub join_token: Secret,
    pub name: String,
    pub slots: u32,
    /// Exit after this long with nothing to do (burst pools that scale to zero).
    pub exit_when_idle: Option<Duration>,
    pub cache_dir: PathBuf,
    pub cache_max_bytes: Option<u64>,
    pub scratch_dir: PathBuf,
    /// On shutdown, how long running tasks may take before they are released.
    pub drain_grace: Duration,
    /// Where tasks may read and push local repositories (file:// URLs); the cache, scratch and
    /// storage directories are refused whatever it says. Default: nowhere.
    pub local_paths: crate::local_paths::LocalPaths,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("coordinator {url}: {message}")]
    Coordinator { url: String, message: String },
    #[error("coordinator refused this worker: {0}")]
    Refused(String),
    #[error("{0}")]
    Setup(String),
}

/// Why the worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Shutdown,
    Idle,
}

type Held = Arc<Mutex<HashMap<String, Arc<LeaseView>>>>;

/// Runs the worker until `shutdown` is cancelled (then drains) or it has been idle long enough.
pub async fn run(cfg: WorkerConfig, shutdown: CancellationToken) -> Result<Exit, WorkerError> {
    if cfg.slots == 0 {
        return Err(WorkerError::Setup("--slots must be at least 1".into()));
    }
    let client =
        connect(&cfg.coordinator, &cfg.join_token, cfg.ca_file.as_deref()).map_err(|e| {
            WorkerError::Coordinator {
                url: cfg.coordinator.clone(),
                message: e.to_string(),
            }
        })?;
    std::fs::create_dir_all(&cfg.scratch_dir).map_err(|e| {
        WorkerError::Setup(format!("scratch dir {}: {e}", cfg.scratch_dir.display()))
    })?;
    let cache = MirrorCache::new(cfg.cache_dir.clone(), cfg.cache_max_bytes)
        .map_err(|e| WorkerError::Setup(format!("cache dir {}: {e}", cfg.cache_dir.display())))?;
    loop {
        let session = register(&cfg, client.clone()).await?;
        let span = tracing::info_span!("worker", worker = %session.worker_id);
        match serve(&cfg, session, cache.clone(), shutdown.clone())
            .instrument(span)
            .await?
        {
            Some(exit) => return Ok(exit),
            None => {
                tracing::warn!("coordinator asked this worker to register again");
                continue;
            }
        }
    }
}

struct Session {
    client: Client,
    worker_id: String,
    timing: Timing,
    write_deadline: Duration,
    storage: opendal::Operator,
}

async fn register(cfg: &WorkerConfig, mut client: Client) -> Result<Session, WorkerError> {
    let mut delay = Duration::from_millis(200);
    loop {
        let req = pb::RegisterWorkerRequest {
            protocol_version: PROTOCOL_VERSION,
            name: cfg.name.clone(),
            slots: cfg.slots,
            capabilities: vec!["git".into()],
        };
        match client.register_worker(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let t = r.timing.unwrap_or_default();
                let timing = Timing::from_heartbeat_ms(t.heartbeat_interval_ms).map_err(|e| {
                    WorkerError::Refused(format!("coordinator sent unusable timing: {e}"))
                })?;
                let storage = StorageConfig::from_proto(&r.storage.unwrap_or_default())
                    .operator()
                    .map_err(|e| {
                        WorkerError::Setup(format!("storage from the coordinator: {e}"))
                    })?;
                tracing::info!(worker = %r.worker_id, heartbeat = ?timing.heartbeat(), "registered");
                return Ok(Session {
                    client,
                    worker_id: r.worker_id,
                    timing,
                    write_deadline: Duration::from_millis(t.write_deadline_ms),
                    storage,
                });
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unauthenticated
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::InvalidArgument
                ) =>
            {
                return Err(WorkerError::Refused(s.message().to_string()));
            }
            Err(s) => {
                tracing::warn!(error = %s.message(), retry_in = ?delay, "coordinator unreachable");
                tokio::time::sleep(delay).await;
                // Back off to at most 5 s: a restarting coordinator is back within seconds.
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Serves one registration. `Ok(None)`: register again.
async fn serve(
    cfg: &WorkerConfig,
    s: Session,
    cache: Arc<MirrorCache>,
    shutdown: CancellationToken,
) -> Result<Option<Exit>, WorkerError> {
    let held: Held = Arc::default();
    let pauses: Arc<crate::forge::RatePauses> = Arc::default();
    let session_over = CancellationToken::new();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Tell the coordinator at the next heartbeat, so a pending long-poll returns empty at once.
    {
        let (draining, shutdown, over) = (draining.clone(), shutdown.clone(), session_over.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => draining.store(true, Ordering::SeqCst),
                _ = over.cancelled() => {}
            }
        });
    }

    // Heartbeat: own timer, independent of work.
    let hb = {
        let (mut client, worker_id, held, over, draining, pauses) = (
            s.client.clone(),
            s.worker_id.clone(),
            held.clone(),
            session_over.clone(),
            draining.clone(),
            pauses.clone(),
        );
        let every = s.timing.heartbeat();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = over.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let leases: Vec<pb::LeaseToken> =
                    held.lock().values().map(|l| l.token.clone()).collect();
                let sent_at = Instant::now();
                let req = pb::HeartbeatRequest {
                    worker_id: worker_id.clone(),
                    held: leases,
                    draining: draining.load(Ordering::SeqCst),
                    free_slots: 0,
                };
                match tokio::time::timeout(every, client.heartbeat(req)).await {
                    Ok(Ok(r)) => {
                        let r = r.into_inner();
                        pauses.merge(&r.rate_pauses, chrono::Utc::now().timestamp_millis());
                        let h = held.lock();
                        for t in &r.renewed {
                            if let Some(l) = h.get(&t.task_id) {
                                // Renewed as of when we asked, not when the answer came.
                                *l.renewed_at.lock() = sent_at;
                            }
                        }
                        for t in &r.revoked {
                            if let Some(l) = h.get(&t.task_id) {
                                tracing::warn!(task = %t.task_id, attempt = t.attempt, "lease revoked; interrupting");
                                l.interrupt.store(true, Ordering::SeqCst);
                            }
                        }
                        if r.reregister {
                            for l in h.values() {
                                l.interrupt.store(true, Ordering::SeqCst);
                            }
                            over.cancel();
                            return;
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e.message(), "heartbeat failed"),
                    Err(_) => tracing::warn!("heartbeat timed out"),
                }
            }
        })
    };

    // Progress: one stream for every task of this session, reopened when it breaks.
    let (events_tx, events_rx) = mpsc::channel::<pb::TaskEvent>(256);
    let events = {
        let (client, over, held) = (s.client.clone(), session_over.clone(), held.clone());
        tokio::spawn(stream_events(client, events_rx, over, held))
    };

    let slots = Arc::new(Semaphore::new(cfg.slots as usize));
    let mut running = tokio::task::JoinSet::new();
    let mut idle_since = Instant::now();
    let mut client = s.client.clone();
    let mut exit = None;
    loop {
        if shutdown.is_cancelled() {
            exit = Some(Exit::Shutdown);
            break;
        }
        if session_over.is_cancelled() {
            break;
        }
        while running.try_join_next().is_some() {}
        if running.is_empty()
            && let Some(idle) = cfg.exit_when_idle
            && idle_since.elapsed() >= idle
        {
            tracing::info!(idle = ?idle, "idle; exiting");
            exit = Some(Exit::Idle);
            break;
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => continue,
            _ = session_over.cancelled() => continue,
            Some(_) = running.join_next(), if !running.is_empty() => continue,
        };
        let req = pb::AcquireTaskRequest {
            worker_id: s.worker_id.clone(),
            free_slots: u32::try_from(slots.available_permits() + 1).unwrap_or(1),
            wait_ms: u64::try_from(s.timing.acquire_wait().as_millis()).unwrap_or(10_000),
            cached_repo_ids: cache.cached_repo_ids(),
        };
        // Not abandoned on shutdown or re-registration: the coordinator may already have leased
        // a task to us, and dropping the answer would strand it until its lease expired. The
        // draining heartbeat makes the long-poll return within a second.
        let resp = client.acquire_task(req).await;
        match resp {
            Ok(r) => {
                let Some(task) = r.into_inner().task else {
                    if !running.is_empty() {
                        idle_since = Instant::now();
                    }
                    continue;
                };
                idle_since = Instant::now();
                if shutdown.is_cancelled() || session_over.is_cancelled() {
                    // Leased while we began to drain (or to re-register): give it back at once,
                    // no attempt lost.
                    let req = pb::ReleaseTaskRequest {
                        worker_id: s.worker_id.clone(),
                        lease: task.lease.clone(),
                        reason: "worker draining".into(),
                    };
                    if let Err(e) = client.release_task(req).await {
                        tracing::warn!(error = %e.message(), "release failed; the lease will expire");
                    }
                    continue;
                }
                let ctx = start_task(
                    &s,
                    &task,
                    &held,
                    &cache,
                    &events_tx,
                    &cfg.scratch_dir,
                    &pauses,
                    &cfg.local_paths,
                );
                let span = tracing::info_span!("task", task = %ctx.lease.token.task_id, attempt = ctx.lease.token.attempt, kind = %task.kind, repo = %task.repo.as_ref().map(|r| format!("{}/{}", r.org_name, r.repo_name)).unwrap_or_default());
                let (held, mut client, worker_id) =
                    (held.clone(), s.client.clone(), s.worker_id.clone());
                running.spawn(
                    async move {
                        let _permit = permit;
                        run_task(ctx, task, &mut client, &worker_id, &held).await;
                    }
                    .instrument(span),
                );
            }
            Err(e) if e.code() == tonic::Code::NotFound => {
                // The coordinator forgot us (restart or expiry): register again.
                session_over.cancel();
            }
            Err(e) if e.code() == tonic::Code::Unauthenticated => {
                session_over.cancel();
                return Err(WorkerError::Refused(e.message().to_string()));
            }
            Err(e) => {
                tracing::warn!(error = %e.message(), "acquire failed");
                tokio::time::sleep(s.timing.heartbeat()).await;
            }
        }
    }

    // Drain: stop acquiring, let running tasks finish within the grace, then release the rest.
    draining.store(true, Ordering::SeqCst);
    if !running.is_empty() {
        tracing::info!(running = running.len(), grace = ?cfg.drain_grace, "draining");
        let deadline = tokio::time::sleep(cfg.drain_grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = running.join_next() => if r.is_none() { break },
                _ = &mut deadline => {
                    let leases: Vec<Arc<LeaseView>> = held.lock().values().cloned().collect();
                    for l in &leases {
                        l.interrupt.store(true, Ordering::SeqCst);
                        let req = pb::ReleaseTaskRequest { worker_id: s.worker_id.clone(), lease: Some(l.token.clone()), reason: "worker shutting down".into() };
                        if let Err(e) = client.release_task(req).await {
                            tracing::warn!(task = %l.token.task_id, error = %e.message(), "release failed; the lease will expire");
                        }
                    }
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }
    session_over.cancel();
    let _ = hb.await;
    events.abort();
    Ok(exit)
}

fn start_task(
    s: &Session,
    task: &pb::Task,
    held: &Held,
    cache: &Arc<MirrorCache>,
    events: &mpsc::Sender<pb::TaskEvent>,
    scratch: &std::path::Path,
    pauses: &Arc<crate::forge::RatePauses>,
    local_paths: &crate::local_paths::LocalPaths,
) -> Arc<TaskContext> {
    let token = task.lease.clone().unwrap_or_default();
    let lease = Arc::new(LeaseView {
        token: token.clone(),
        renewed_at: Mutex::new(Instant::now()),
        write_deadline: s.write_deadline,
        interrupt: Arc::default(),
    });
    held.lock().insert(token.task_id.clone(), lease.clone());
    Arc::new(TaskContext {
        worker_id: s.worker_id.clone(),
        storage: s.storage.clone(),
        scratch: scratch.to_path_buf(),
        cache: cache.clone(),
        local_paths: local_paths.clone(),
        progress: Progress::new(events.clone(), &s.worker_id, token),
        lease,
        client: s.client.clone(),
        runtime: tokio::runtime::Handle::current(),
        forge: crate::forge::TaskForge::new(s.client.clone(), &s.worker_id, task, pauses.clone()),
    })
}

async fn run_task(
    ctx: Arc<TaskContext>,
    task: pb::Task,
    client: &mut Client,
    worker_id: &str,
    held: &Held,
) {
    let token = ctx.lease.token.clone();
    tracing::info!("task started");
    let ticker = {
        let p = ctx.progress.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(RESEND);
            loop {
                t.tick().await;
                p.resend();
            }
        })
    };
    let mut req = pb::CompleteTaskRequest {
        worker_id: worker_id.to_string(),
        lease: Some(token.clone()),
        ..Default::default()
    };
    let outcome: Result<(), TaskError> = match task.kind.as_str() {
        "backup" => tasks::backup::run(ctx.clone(), task)
            .await
            .map(|r| req.backup = Some(r)),
        "restore" => tasks::restore::run(ctx.clone(), task)
            .await
            .map(|r| req.restore = Some(r)),
        "verify" => tasks::verify::run(ctx.clone(), task)
            .await
            .map(|r| req.verify = Some(r)),
        "drill" => tasks::drill::run(ctx.clone(), task)
            .await
            .map(|r| req.drill = Some(r)),
        other => Err(TaskError::permanent(format!("unknown task kind {other:?}"))),
    };
    ticker.abort();
    ctx.forge.finish().await;
    match &outcome {
        Ok(()) => req.success = true,
        Err(e) => {
            tracing::warn!(error = %e.message, retryable = e.retryable, "task failed");
            req.error = e.message.clone();
            req.retryable = e.retryable;
            req.verify = e.damage_result();
        }
    }
    complete(client, req).await;
    held.lock().remove(&token.task_id);
}

/// Sends a completion, retrying while the coordinator is unreachable (a completion lost to a
/// network blip would cost a whole backup). A refusal is final.
async fn complete(client: &mut Client, req: pb::CompleteTaskRequest) {
    let mut delay = Duration::from_millis(200);
    for _ in 0..8 {
        match client.complete_task(req.clone()).await {
            Ok(_) => {
                tracing::info!(success = req.success, "completion accepted");
                return;
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded
                ) =>
            {
                tracing::warn!(error = %s.message(), "completion not delivered; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(s) => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "completion refused");
                return;
            }
        }
    }
    tracing::error!(
        "completion could not be delivered; the lease will expire and the task run again"
    );
}

async fn stream_events(
    mut client: Client,
    rx: mpsc::Receiver<pb::TaskEvent>,
    over: CancellationToken,
    held: Held,
) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    while !over.is_cancelled() {
        let (tx, out_rx) = mpsc::channel::<pb::TaskEvent>(64);
        let forwarder = {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut rx = rx.lock().await;
                while let Some(ev) = rx.recv().await {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            })
        };
        let call = client.task_events(tokio_stream::wrappers::ReceiverStream::new(out_rx));
        let read_controls = async {
            if let Ok(resp) = call.await {
                let mut controls = resp.into_inner();
                while let Ok(Some(c)) = controls.message().await {
                    let Some(t) = c.lease.filter(|_| c.cancel) else {
                        continue;
                    };
                    let lease = held.lock().get(&t.task_id).cloned();
                    if let Some(l) = lease.filter(|l| l.token.attempt == t.attempt) {
                        tracing::warn!(task = %t.task_id, "coordinator cancelled the task");
                        l.interrupt.store(true, Ordering::SeqCst);
                    }
                }
            }
        };
        tokio::select! {
            _ = over.cancelled() => {}
            _ = read_controls => {}
        }
        forwarder.abort();
        // The stream broke (coordinator restart): reopen after a pause.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
