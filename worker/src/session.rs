//! A worker's life: register, heartbeat on its own timer, acquire up to its slots by long-poll,
//! run tasks, stream progress, complete; drain on shutdown; exit when idle (burst pools).
//!
//! This file holds the registration and the life across registrations; beside it:
//! - `session/heartbeat.rs`: the heartbeat, which never waits on work or slots (a heartbeat
//!   held up behind work would let the lease of a task that is running fine expire); it renews
//!   every held lease and interrupts tasks whose leases the coordinator revoked;
//! - `session/acquire_loop.rs`: one registration's acquire loop and the drain;
//! - `session/task_runner.rs`: running one leased task to its completion, and the progress
//!   stream.
//!
//! Running tasks outlive a registration: when the coordinator asks the worker to register again
//! (it restarted, or forgot the worker), the worker presents its previous id and the leases it
//! holds, and keeps running every task whose lease the coordinator kept (the coordinator's
//! `tasks/fleet.rs`).

mod acquire_loop;
mod heartbeat;
mod held_leases;
mod task_runner;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use repovault_common::domain::WorkerId;
use repovault_common::secret::Secret;
use repovault_common::timing::Timing;
use repovault_proto::PROTOCOL_VERSION;
use repovault_proto::v1 as pb;

use crate::cache::MirrorCache;
use crate::coordinator_client::{Client, connect};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub coordinator: String,
    /// Extra CA (PEM) for an https:// coordinator.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key (paths) presented to a coordinator that requires workers to
    /// have one (`tls.require_worker_cert`); `None`: none.
    pub client_cert: Option<repovault_common::grpc::ClientCertFiles>,
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
    /// How old a mirror's last full git_fsck may be before a backup checks every object again;
    /// in between, a backup checks what it received and what moved ([`DEFAULT_FULL_CHECK_EVERY`]).
    pub full_check_every: Duration,
}

/// A week: silent damage to a mirror's files that changes neither their size, times nor inode
/// (a disk's bit rot) is found within a week by the backups themselves, besides the scheduled
/// verification of stored backups; and a week of hourly backups pays one full check in 168.
pub const DEFAULT_FULL_CHECK_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// The leases this worker holds, one per task attempt (`session/held_leases.rs`).
type Held = Arc<held_leases::HeldLeases>;

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
    /// Operators of the storages leases named, reused across tasks (their connection pools).
    storages: crate::storage_operators::StorageOperators,
}

/// The registration before this one: its worker id (presented again) and heartbeat interval.
struct Previous {
    worker_id: WorkerId,
    heartbeat: Duration,
}

/// Runs the worker until `shutdown` is cancelled (then drains) or it has been idle long enough.
pub async fn run(cfg: WorkerConfig, shutdown: CancellationToken) -> Result<Exit, WorkerError> {
    if cfg.slots == 0 {
        return Err(WorkerError::Setup("--slots must be at least 1".into()));
    }
    let slots = metrics::gauge!(repovault_common::worker_metrics::SLOTS);
    slots.increment(f64::from(cfg.slots));
    let n = f64::from(cfg.slots);
    // Off the gauge when the session ends, however it ends.
    let _slots_gone = task_runner::on_drop(move || slots.decrement(n));
    let client = connect(
        &cfg.coordinator,
        &cfg.join_token,
        cfg.ca_file.as_deref(),
        cfg.client_cert.as_ref(),
    )
    .map_err(|e| WorkerError::Coordinator {
        url: cfg.coordinator.clone(),
        message: e.to_string(),
    })?;
    tokio::fs::create_dir_all(&cfg.scratch_dir)
        .await
        .map_err(|e| {
            WorkerError::Setup(format!("scratch dir {}: {e}", cfg.scratch_dir.display()))
        })?;
    // Creates the cache directory: on the blocking pool.
    let cache = {
        let (dir, max) = (cfg.cache_dir.clone(), cfg.cache_max_bytes);
        tokio::task::spawn_blocking(move || MirrorCache::new(dir, max))
            .await
            .map_err(|e| WorkerError::Setup(format!("cache dir: {e}")))?
            .map_err(|e| {
                WorkerError::Setup(format!("cache dir {}: {e}", cfg.cache_dir.display()))
            })?
    };
    // Progress: one stream for every task of this worker, reopened when it breaks.
    let held: Held = Arc::default();
    let (events, events_rx) = mpsc::channel::<pb::TaskEvent>(256);
    let stream_over = CancellationToken::new();
    let stream = tokio::spawn(task_runner::stream_events(
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
        storages: Default::default(),
    };
    let mut previous = None;
    let exit = loop {
        let session = match register(&cfg, client.clone(), previous.as_ref(), &work.held).await {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        let span = tracing::info_span!("worker", worker = %session.worker_id);
        match acquire_loop::serve(&cfg, &session, &mut work, cache.clone(), shutdown.clone())
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
    worker_id: WorkerId,
    timing: Timing,
    write_deadline: Duration,
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
            previous_worker_id: previous
                .map(|p| p.worker_id.to_string())
                .unwrap_or_default(),
            held: held.tokens(),
        };
        let sent_at = Instant::now();
        match client.register_worker(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let worker_id = WorkerId::from_wire(&r.worker_id, "worker_id").map_err(|e| {
                    WorkerError::Refused(format!("coordinator sent an unusable id: {e}"))
                })?;
                let kept = reattach(held, &r.renewed, sent_at);
                let t = r.timing.unwrap_or_default();
                let timing = Timing::from_heartbeat_ms(t.heartbeat_interval_ms).map_err(|e| {
                    WorkerError::Refused(format!("coordinator sent unusable timing: {e}"))
                })?;
                tracing::info!(worker = %worker_id, heartbeat = ?timing.heartbeat(), kept, "registered");
                return Ok(Session {
                    client,
                    worker_id,
                    timing,
                    write_deadline: Duration::from_millis(t.write_deadline_ms),
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
    let mut kept = 0;
    for l in held.all() {
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
