//! The work a worker does under a lease.

pub mod backup;
pub mod drill;
pub mod leased;
pub mod restore;
pub mod restore_forge;
pub mod restore_meta;
mod task_error;
pub mod verify;
pub mod zip;

pub use task_error::{Source, TaskError};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use repovault_common::domain::WorkerId;
use repovault_proto::v1 as pb;

use crate::progress::Progress;

/// The lease a task runs under, as the worker sees it.
pub struct LeaseView {
    pub token: pb::LeaseToken,
    /// When the coordinator last renewed this lease (monotonic: a paused process sees the pause).
    pub renewed_at: Mutex<Instant>,
    /// Past this long without renewal, the task writes nothing more.
    pub write_deadline: Duration,
    /// How long the lease lives without renewal (the coordinator's TTL).
    pub lease_ttl: Duration,
    /// The heartbeat interval: the pace of renewals, and the longest pause between retries of
    /// a call at the commit point (`commit.rs`).
    pub heartbeat: Duration,
    /// Set when the lease is revoked, the task cancelled, or the worker gives up on it.
    pub interrupt: Arc<AtomicBool>,
    /// Set when the lease was lost on the coordinator's side (revoked, or not renewed while the
    /// coordinator was unreachable): a failure of the task then is not the task's own, and the
    /// worker gives the task back (ReleaseTask) instead of failing the attempt.
    lost: Mutex<Option<LeaseLoss>>,
    /// Set once the task's work is over and its completion is being sent: the lease ends with
    /// the completion, so a revocation crossing it interrupts nothing.
    completing: AtomicBool,
}

/// How a lease was lost on the coordinator's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLoss {
    /// The coordinator answered that this worker no longer holds it.
    Revoked,
    /// The coordinator did not renew it within the write deadline (unreachable, restarting).
    NotRenewed,
}

impl LeaseLoss {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseLoss::Revoked => "lease revoked by the coordinator",
            LeaseLoss::NotRenewed => "lease not renewed: the coordinator was unreachable",
        }
    }
}

impl LeaseView {
    pub fn new(
        token: pb::LeaseToken,
        timing: &repovault_common::timing::Timing,
        write_deadline: Duration,
    ) -> Self {
        Self {
            token,
            renewed_at: Mutex::new(Instant::now()),
            write_deadline,
            lease_ttl: timing.lease_ttl(),
            heartbeat: timing.heartbeat(),
            interrupt: Arc::default(),
            lost: Mutex::new(None),
            completing: AtomicBool::new(false),
        }
    }

    /// The coordinator revoked the lease: the task stops, and its failure is not counted.
    /// The task's work is over; its completion is on its way.
    pub fn mark_completing(&self) {
        self.completing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the task's completion is on its way (see [`Self::mark_completing`]).
    pub fn is_completing(&self) -> bool {
        self.completing.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn revoke(&self) {
        self.lost.lock().get_or_insert(LeaseLoss::Revoked);
        self.interrupt
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How the lease was lost on the coordinator's side, if it was.
    pub fn lost(&self) -> Option<LeaseLoss> {
        *self.lost.lock()
    }

    /// Time left to write under the lease (`None`: none, or the task was interrupted).
    pub fn write_time_left(&self) -> Option<Duration> {
        if self.interrupt.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let left = self
            .write_deadline
            .checked_sub(self.renewed_at.lock().elapsed())?;
        (!left.is_zero()).then_some(left)
    }

    /// Time the lease has left on this worker's clock (`None`: none).
    pub fn life_left(&self) -> Option<Duration> {
        let left = self
            .lease_ttl
            .checked_sub(self.renewed_at.lock().elapsed())?;
        (!left.is_zero()).then_some(left)
    }

    /// Whether writes are still allowed on this worker's own clock.
    pub fn may_write(&self) -> Result<(), String> {
        let since = self.renewed_at.lock().elapsed();
        if self.interrupt.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("the task was interrupted (lease revoked or worker stopping)".into());
        }
        if since >= self.write_deadline {
            self.lost.lock().get_or_insert(LeaseLoss::NotRenewed);
            return Err(format!(
                "lease not renewed for {since:?} (write deadline {:?}); not writing",
                self.write_deadline
            ));
        }
        Ok(())
    }
}

/// What the runner hands every task.
pub struct TaskContext {
    pub worker_id: WorkerId,
    pub storage: opendal::Operator,
    pub scratch: std::path::PathBuf,
    pub cache: Arc<crate::cache::MirrorCache>,
    /// Where local (file://) sources and targets may be (see [`crate::local_paths`]).
    pub local_paths: crate::local_paths::LocalPaths,
    pub progress: Progress,
    pub lease: Arc<LeaseView>,
    pub client: crate::coordinator_client::Client,
    pub runtime: tokio::runtime::Handle,
    /// The forge's rate budget and current token for this lease (see [`crate::forge`]).
    pub forge: crate::forge::TaskForge,
    /// How old a mirror's last full git_fsck may be before a backup checks all of it again
    /// (see [`crate::session::WorkerConfig::full_check_every`]).
    pub full_check_every: std::time::Duration,
}

impl TaskContext {
    /// Refuses, permanently, a source or target URL that is local and not allowed: outside the
    /// configured roots, or inside this worker's cache, scratch or storage directory. Called by
    /// every task before it runs git on a URL from the lease. Runs on the blocking pool.
    pub async fn check_local_url(&self, url: &str) -> Result<(), TaskError> {
        let policy = self.local_paths.clone();
        let url = url.to_string();
        let mut own = vec![self.cache.root().to_path_buf(), self.scratch.clone()];
        let info = self.storage.info();
        if info.scheme() == "fs" {
            own.push(std::path::PathBuf::from(info.root()));
        }
        blocking(move || {
            let own: Vec<&std::path::Path> = own.iter().map(|p| p.as_path()).collect();
            policy.check(&url, &own).map_err(TaskError::permanent_from)
        })
        .await
    }

    /// The commit fence: called by the snapshot repository just before it writes the snapshot
    /// file. Checks the local write deadline, then confirms the lease with the coordinator,
    /// retrying through an outage while the write deadline allows (`commit.rs`).
    /// Blocking (runs on the blocking pool, inside the snapshot call).
    pub fn confirm_lease(&self) -> Result<(), String> {
        self.lease.may_write()?;
        let res = self.runtime.block_on(crate::commit::confirm_lease(
            &self.client,
            &self.worker_id,
            &self.lease,
        ));
        match res {
            Ok(remaining_ms) if remaining_ms > 0 => self.lease.may_write(),
            Ok(_) => Err("lease has no time left".into()),
            Err(e @ crate::commit::CallError::Refused { .. }) => Err(e.to_string()),
            Err(e) => {
                self.lease.may_write()?;
                Err(e.to_string())
            }
        }
    }
}

/// Runs blocking work (gix, rustic) off the async runtime; a panic becomes a retryable error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
) -> Result<T, TaskError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        TaskError::retryable("internal error (panic) in a blocking step").with_source(e)
    })?
}

/// Removes a directory tree if it exists.
pub(crate) fn remove_all(path: &std::path::Path) -> Result<(), TaskError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TaskError::retryable(format!("clearing {}", path.display())).with_source(e)),
    }
}

/// An empty scratch directory `name` for one task (what an earlier attempt left is cleared).
/// On the blocking pool: what an earlier attempt left can be a restored mirror of gigabytes.
pub(crate) async fn fresh_scratch(
    ctx: &TaskContext,
    name: &str,
) -> Result<std::path::PathBuf, TaskError> {
    let work = ctx.scratch.join(name);
    let dir = work.clone();
    blocking(move || {
        remove_all(&dir)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| TaskError::retryable(format!("scratch {}", dir.display())).with_source(e))
    })
    .await?;
    Ok(work)
}

/// Removes a task's scratch directory whatever the task's outcome, on the blocking pool (it can
/// hold gigabytes). A failure is only logged: the next attempt's [`fresh_scratch`] clears it.
pub(crate) async fn discard_scratch(work: std::path::PathBuf) {
    let shown = work.display().to_string();
    if let Err(e) = blocking(move || remove_all(&work)).await {
        tracing::warn!(path = %shown, error = %e.message, "could not remove a task's scratch directory");
    }
}
