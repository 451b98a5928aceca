//! A worker's life: register, heartbeat on its own timer, acquire up to its slots by long-poll,
//! run tasks, stream progress, complete; drain on shutdown; exit when idle (burst pools).
//!
//! The heartbeat task never waits on work or slots (a heartbeat held up behind work would let
//! the lease of a task that is running fine expire); it renews every held lease and interrupts
//! tasks whose leases the coordinator revoked.
//!
//! Running tasks outlive a registration: when the coordinator asks the worker to register again
//! (it restarted, or forgot the worker), the worker presents its previous id and the leases it
//! holds, and keeps running every task whose lease the coordinator kept (`core/fleet.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use pb::complete_task_request::Result as Outcome;
use repovault_common::secret::Secret;
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;
use repovault_proto::PROTOCOL_VERSION;
use repovault_proto::v1 as pb;

use crate::cache::MirrorCache;
use crate::client::{Client, connect};
use crate::commit::CallError;
use crate::progress::{Progress, RESEND};
use crate::tasks::leased::{self, Leased};
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

/// Longest pause between registration attempts while the coordinator is unreachable, before its
/// timing is known: the default heartbeat interval ([`Timing::DEFAULT_HEARTBEAT`]). Once a
/// coordinator has given its timing, the pause is at most its heartbeat interval: a restarted
/// coordinator keeps this worker's leases for its takeover grace (TTL + 1 s, over three
/// heartbeats), so the worker must be back well within that.
const REGISTER_MAX_BACKOFF: Duration = Timing::DEFAULT_HEARTBEAT;

/// What outlives one registration: the running tasks, the leases they hold, the slots they
/// take, and the rate pauses and progress stream they share.
struct Work {
    held: Held,
    running: tokio::task::JoinSet<()>,
    slots: Arc<Semaphore>,
    pauses: Arc<crate::forge::RatePauses>,
    events: mpsc::Sender<pb::TaskEvent>,
}

/// The registration before this one: its worker id (presented again) and heartbeat interval.
struct Previous {
    worker_id: String,
    heartbeat: Duration,
}

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
    // Progress: one stream for every task of this worker, reopened when it breaks.
    let held: Held = Arc::default();
    let (events, events_rx) = mpsc::channel::<pb::TaskEvent>(256);
    let stream_over = CancellationToken::new();
    let stream = tokio::spawn(stream_events(
        client.clone(),
        events_rx,
        stream_over.clone(),
        held.clone(),
    ));
    let mut work = Work {
        held,
        running: tokio::task::JoinSet::new(),
        slots: Arc::new(Semaphore::new(cfg.slots as usize)),
        pauses: Arc::default(),
        events,
    };
    let mut previous = None;
    let exit = loop {
        let session = match register(&cfg, client.clone(), previous.as_ref(), &work.held).await {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        let span = tracing::info_span!("worker", worker = %session.worker_id);
        match serve(&cfg, &session, &mut work, cache.clone(), shutdown.clone())
            .instrument(span)
            .await
        {
            Ok(Some(exit)) => break Ok(exit),
            Ok(None) => {
                tracing::warn!(
                    running = work.running.len(),
                    "coordinator asked this worker to register again"
                );
                previous = Some(Previous {
                    worker_id: session.worker_id,
                    heartbeat: session.timing.heartbeat(),
                });
            }
            Err(e) => break Err(e),
        }
    };
    stream_over.cancel();
    stream.abort();
    exit
}

struct Session {
    client: Client,
    worker_id: String,
    timing: Timing,
    write_deadline: Duration,
    storage: opendal::Operator,
}

/// Registers; after a first registration, presenting the previous id and the held leases. The
/// leases the coordinator kept are renewed as of the request; every other one is revoked.
async fn register(
    cfg: &WorkerConfig,
    mut client: Client,
    previous: Option<&Previous>,
    held: &Held,
) -> Result<Session, WorkerError> {
    let mut delay = Duration::from_millis(200);
    let max_delay = previous.map_or(REGISTER_MAX_BACKOFF, |p| {
        p.heartbeat.min(REGISTER_MAX_BACKOFF)
    });
    loop {
        let req = pb::RegisterWorkerRequest {
            protocol_version: PROTOCOL_VERSION,
            name: cfg.name.clone(),
            slots: cfg.slots,
            capabilities: vec!["git".into()],
            previous_worker_id: previous.map(|p| p.worker_id.clone()).unwrap_or_default(),
            held: held.lock().values().map(|l| l.token.clone()).collect(),
        };
        let sent_at = Instant::now();
        match client.register_worker(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let kept = reattach(held, &r.renewed, sent_at);
                let t = r.timing.unwrap_or_default();
                let timing = Timing::from_heartbeat_ms(t.heartbeat_interval_ms).map_err(|e| {
                    WorkerError::Refused(format!("coordinator sent unusable timing: {e}"))
                })?;
                let storage = StorageConfig::from_proto(&r.storage.unwrap_or_default())
                    .and_then(|c| c.operator())
                    .map_err(|e| {
                        WorkerError::Setup(format!("storage from the coordinator: {e}"))
                    })?;
                tracing::info!(worker = %r.worker_id, heartbeat = ?timing.heartbeat(), kept, "registered");
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
                delay = (delay * 2).min(max_delay);
            }
        }
    }
}

/// After a registration: the held leases in `renewed` were renewed as of `sent_at`; every other
/// one was not kept, and its task stops (its failure is not counted). Returns how many were kept.
fn reattach(held: &Held, renewed: &[pb::LeaseToken], sent_at: Instant) -> usize {
    let h = held.lock();
    let mut kept = 0;
    for l in h.values() {
        if renewed.contains(&l.token) {
            *l.renewed_at.lock() = sent_at;
            kept += 1;
        } else {
            tracing::warn!(task = %l.token.task_id, attempt = l.token.attempt, "lease not kept by the coordinator; interrupting");
            l.revoke();
        }
    }
    kept
}

/// Serves one registration. `Ok(None)`: register again (running tasks go on). On exit, drains:
/// running tasks finish within the grace, the rest are released.
async fn serve(
    cfg: &WorkerConfig,
    s: &Session,
    work: &mut Work,
    cache: Arc<MirrorCache>,
    shutdown: CancellationToken,
) -> Result<Option<Exit>, WorkerError> {
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
            work.held.clone(),
            session_over.clone(),
            draining.clone(),
            work.pauses.clone(),
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
                                l.revoke();
                            }
                        }
                        if r.reregister {
                            // The coordinator restarted (or forgot us): register again under
                            // this id; the running tasks go on, their leases renewed above.
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

    let slots = work.slots.clone();
    let mut idle_since = Instant::now();
    let mut client = s.client.clone();
    let exit = loop {
        if shutdown.is_cancelled() {
            break Some(Exit::Shutdown);
        }
        if session_over.is_cancelled() {
            break None;
        }
        while work.running.try_join_next().is_some() {}
        if work.running.is_empty()
            && let Some(idle) = cfg.exit_when_idle
            && idle_since.elapsed() >= idle
        {
            tracing::info!(idle = ?idle, "idle; exiting");
            break Some(Exit::Idle);
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break None },
            _ = shutdown.cancelled() => continue,
            _ = session_over.cancelled() => continue,
            Some(_) = work.running.join_next(), if !work.running.is_empty() => continue,
        };
        // A directory listing of the cache: on the blocking pool. The hint is advisory, so a
        // failed listing sends none.
        let cached_repo_ids = {
            let cache = cache.clone();
            tokio::task::spawn_blocking(move || cache.cached_repo_ids())
                .await
                .unwrap_or_default()
        };
        let req = pb::AcquireTaskRequest {
            worker_id: s.worker_id.clone(),
            free_slots: u32::try_from(slots.available_permits() + 1).unwrap_or(1),
            wait_ms: u64::try_from(s.timing.acquire_wait().as_millis()).unwrap_or(10_000),
            cached_repo_ids,
        };
        // Not abandoned on shutdown or re-registration: the coordinator may already have leased
        // a task to us, and dropping the answer would strand it until its lease expired. The
        // draining heartbeat makes the long-poll return within a second.
        let resp = client.acquire_task(req).await;
        match resp {
            Ok(r) => {
                let Some(task) = r.into_inner().task else {
                    if !work.running.is_empty() {
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
                let ctx = start_task(s, &task, work, &cache, &cfg.scratch_dir, &cfg.local_paths);
                let span = tracing::info_span!("task", task = %ctx.lease.token.task_id, attempt = ctx.lease.token.attempt, kind = leased::kind_of(&task).map_or("none", |k| k.as_str()), repo = %task.repo.as_ref().map(|r| format!("{}/{}", r.org_name, r.repo_name)).unwrap_or_default());
                let (held, client, worker_id) =
                    (work.held.clone(), s.client.clone(), s.worker_id.clone());
                work.running.spawn(
                    async move {
                        let _permit = permit;
                        run_task(ctx, task, &client, &worker_id, &held).await;
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
    };
    if exit.is_some() {
        drain(cfg, s, work, &draining).await;
    }
    session_over.cancel();
    let _ = hb.await;
    Ok(exit)
}

/// Stops acquiring, lets running tasks finish within the grace, then releases the rest.
async fn drain(
    cfg: &WorkerConfig,
    s: &Session,
    work: &mut Work,
    draining: &std::sync::atomic::AtomicBool,
) {
    draining.store(true, Ordering::SeqCst);
    if work.running.is_empty() {
        return;
    }
    tracing::info!(running = work.running.len(), grace = ?cfg.drain_grace, "draining");
    let deadline = tokio::time::sleep(cfg.drain_grace);
    tokio::pin!(deadline);
    let mut client = s.client.clone();
    loop {
        tokio::select! {
            r = work.running.join_next() => if r.is_none() { break },
            _ = &mut deadline => {
                let leases: Vec<Arc<LeaseView>> = work.held.lock().values().cloned().collect();
                for l in &leases {
                    l.interrupt.store(true, Ordering::SeqCst);
                    let req = pb::ReleaseTaskRequest { worker_id: s.worker_id.clone(), lease: Some(l.token.clone()), reason: "worker shutting down".into() };
                    if let Err(e) = client.release_task(req).await {
                        tracing::warn!(task = %l.token.task_id, error = %e.message(), "release failed; the lease will expire");
                    }
                }
                work.running.abort_all();
                while work.running.join_next().await.is_some() {}
                break;
            }
        }
    }
}

fn start_task(
    s: &Session,
    task: &pb::Task,
    work: &Work,
    cache: &Arc<MirrorCache>,
    scratch: &std::path::Path,
    local_paths: &crate::local_paths::LocalPaths,
) -> Arc<TaskContext> {
    let token = task.lease.clone().unwrap_or_default();
    let lease = Arc::new(LeaseView::new(token.clone(), &s.timing, s.write_deadline));
    work.held
        .lock()
        .insert(token.task_id.clone(), lease.clone());
    Arc::new(TaskContext {
        worker_id: s.worker_id.clone(),
        storage: s.storage.clone(),
        scratch: scratch.to_path_buf(),
        cache: cache.clone(),
        local_paths: local_paths.clone(),
        progress: Progress::new(work.events.clone(), &s.worker_id, token),
        lease,
        client: s.client.clone(),
        runtime: tokio::runtime::Handle::current(),
        forge: crate::forge::TaskForge::new(
            s.client.clone(),
            &s.worker_id,
            task,
            work.pauses.clone(),
        ),
    })
}

async fn run_task(
    ctx: Arc<TaskContext>,
    task: pb::Task,
    client: &Client,
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
    let outcome: Result<(), TaskError> = match leased::decode(&task) {
        Err(e) => Err(e),
        Ok(Leased {
            access,
            provider,
            work,
        }) => {
            let c = ctx.clone();
            match work {
                leased::Work::Backup(w) => tasks::backup::run(c, access, provider, w)
                    .await
                    .map(|r| req.result = Some(Outcome::Backup(r))),
                leased::Work::Restore(w) => tasks::restore::run(c, access, w)
                    .await
                    .map(|r| req.result = Some(Outcome::Restore(r))),
                leased::Work::Verify(w) => tasks::verify::run(c, access, w)
                    .await
                    .map(|r| req.result = Some(Outcome::Verify(r))),
                leased::Work::Drill(spec) => tasks::drill::run(c, access, spec)
                    .await
                    .map(|r| req.result = Some(Outcome::Drill(r))),
            }
        }
    };
    ticker.abort();
    ctx.forge.finish().await;
    match &outcome {
        Ok(()) => req.success = true,
        Err(e) => {
            tracing::warn!(error = %e.message, retryable = e.retryable, "task failed");
            req.error = e.message.clone();
            req.retryable = e.retryable;
            req.result = e.damage_result().map(Outcome::Verify);
            if let Some(loss) = ctx.lease.lost() {
                // Not the task's failure: the attempt is given back without counting.
                tracing::info!(why = loss.as_str(), "giving the attempt back");
                req.lease_lost = true;
            }
        }
    }
    complete(client, &req, &ctx.lease).await;
    held.lock().remove(&token.task_id);
}

/// Sends a completion, retrying while the coordinator is unreachable and the lease lives (a
/// completion lost to a restart would cost a whole backup). A refusal is final.
async fn complete(client: &Client, req: &pb::CompleteTaskRequest, lease: &LeaseView) {
    match crate::commit::complete_task(client, req, lease).await {
        Ok(()) => tracing::info!(success = req.success, "completion accepted"),
        Err(CallError::Refused { code, message }) => {
            tracing::warn!(code = ?code, error = %message, "completion refused");
        }
        Err(e @ CallError::OutOfTime { .. }) => tracing::error!(
            error = %e,
            "completion could not be delivered; the lease will expire and the task run again"
        ),
    }
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
