//! Task kinds as types: what is specific to backups, restores, verifications and drills.
//!
//! The queue (`tasks/lifecycle.rs`) owns the generic mechanics: selection, the lease state machine, the
//! store transaction that commits a completion or a re-queue, and the queue lock. Each kind owns
//! what differs, in one module implementing [`Kind`]: which organisation's credential its lease
//! carries, what its lease spec holds and marks running, what its completion writes in the
//! commit transaction and does after it, and what a re-queue or a final failure without a
//! completion writes. The one match over [`TaskKind`] is [`with_kind!`]; the dispatch methods
//! below are the queue's only way in. Adding a kind is one module, one `TaskKind` variant and
//! one arm of that macro.

mod backup_kind;
mod backup_requests;
mod drill_kind;
pub mod lease_spec;
pub mod outcome;
mod restore_kind;
mod restore_requests;
mod verify_kind;
pub use backup_requests::Backups;
pub(crate) use backup_requests::backup_enqueue;
pub use restore_requests::{RestoreRequest, Restores};

pub(crate) use backup_kind::after_backup_finished;
#[cfg(test)]
pub(crate) use backup_kind::new_backup;

use crate::error::CoreResult;
use crate::forge_access::rate_budgets::Grant;
use crate::model::{BackupRecord, OrgRecord, RepoRecord, Status, TaskKind, TaskRecord};
use crate::store::Batch;
use crate::tasks::lease_access::RepoAccess;
use crate::tasks::lifecycle::Lease;
use lease_spec::LeaseSpec;
use outcome::TaskReport;

use crate::tasks::task_queue::TaskQueue;

/// Runs `$body` with the type `$k` naming the [`Kind`] implementation of `$kind`: the one
/// exhaustive match over task kinds.
macro_rules! with_kind {
    ($kind:expr, $k:ident => $body:expr) => {
        match $kind {
            TaskKind::Backup => {
                type $k = backup_kind::BackupKind;
                $body
            }
            TaskKind::Restore => {
                type $k = restore_kind::RestoreKind;
                $body
            }
            TaskKind::Verify => {
                type $k = verify_kind::VerifyKind;
                $body
            }
            TaskKind::Drill => {
                type $k = drill_kind::DrillKind;
                $body
            }
        }
    };
}

/// A lease being built: the task (already leased in the caller's copy) and what was read for it.
pub(crate) struct LeaseCtx<'a> {
    pub task: &'a TaskRecord,
    /// The task's organisation (the source's).
    pub org: &'a OrgRecord,
    pub worker_id: &'a str,
    /// The lease being granted.
    pub lease: &'a Lease,
    pub now: i64,
}

/// A completion the queue accepted (holder and attempt checked, lease state finished).
pub(crate) struct Completion<'a> {
    /// The task with its finished lease state.
    pub task: &'a TaskRecord,
    pub report: &'a TaskReport,
    pub attempt: u32,
    /// The task's status after the completion (`Pending` when it will be retried).
    pub status: Status,
    pub now: i64,
}

/// What one kind of task does differently. Associated functions taking the [`TaskQueue`] (which
/// holds what the kinds read and write), so a kind holds no state of its own; the defaults are "nothing specific".
pub(crate) trait Kind {
    /// Whether a task of this kind takes its repository alone (no other task of the repository
    /// is leased meanwhile; see `queue_order.rs`). A leased exclusive task also keeps maintenance off
    /// its repository as a writer (`Queue::busy_repos`); a leased non-exclusive one as a reader
    /// (`Queue::read_repos`).
    const EXCLUSIVE: bool = false;

    /// Whether a task of this kind works in the worker's mirror cache of its repository (a
    /// backup fetches into it): such a task is placed on the worker holding that mirror
    /// (`queue_order::Placement`). Restores, verifications and drills read the snapshot.
    const USES_MIRROR_CACHE: bool = false;

    /// Whether the repository's snapshot repository must exist before a lease (the coordinator
    /// then creates it outside the queue lock and looks again).
    fn needs_snapshot_repo(_repo: &RepoRecord) -> bool {
        false
    }

    /// The organisation whose credential the lease will carry, when one must be resolved (an
    /// App organisation's installation token is then minted first, outside the queue lock).
    async fn credential_org(
        _q: &TaskQueue,
        _task: &TaskRecord,
        _org: &OrgRecord,
        _repo: &RepoRecord,
    ) -> CoreResult<Option<OrgRecord>> {
        Ok(None)
    }

    /// The lease's spec; takes from `access` what the worker may not see of the repository,
    /// sets `rate` when the lease draws on the credential's rate budget, and adds to `batch`,
    /// the lease's own transaction, the kind's record marked running.
    async fn lease(
        q: &TaskQueue,
        l: &LeaseCtx<'_>,
        access: &mut RepoAccess,
        rate: &mut Option<Grant>,
        batch: &mut Batch,
    ) -> CoreResult<LeaseSpec>;

    /// Adds to `batch`, the commit transaction, what this completion writes besides the task.
    /// Returns the backup record that ended with it, for the work after the commit. An error
    /// refuses the completion (nothing is written).
    async fn commit(
        _q: &TaskQueue,
        _c: &Completion<'_>,
        _batch: &mut Batch,
    ) -> CoreResult<Option<BackupRecord>> {
        Ok(None)
    }

    /// Work after the commit transaction, outside the queue lock. Errors are logged: the
    /// completion is already committed.
    async fn after_commit(_q: &TaskQueue, _c: &Completion<'_>, _finished: Option<BackupRecord>) {}

    /// Adds to `batch` what a task going back to the queue (release, lease expiry) or failing
    /// without a completion (last attempt expired, cancelled) writes: its record with `status`.
    /// Returns the backup record when it became terminal.
    async fn requeue(
        _q: &TaskQueue,
        _task: &TaskRecord,
        _status: Status,
        _now: i64,
        _batch: &mut Batch,
    ) -> CoreResult<Option<BackupRecord>> {
        Ok(None)
    }

    /// Work after a re-queue's transaction (still under the queue lock: see `lifecycle.rs`).
    /// Errors are logged.
    async fn after_requeue(_q: &TaskQueue, _task: &TaskRecord, _status: Status) {}
}

/// Whether a task of `kind` takes its repository alone ([`Kind::EXCLUSIVE`]).
pub(crate) fn exclusive(kind: TaskKind) -> bool {
    with_kind!(kind, K => K::EXCLUSIVE)
}

/// Whether a task of `kind` works in the worker's mirror cache ([`Kind::USES_MIRROR_CACHE`]).
pub(crate) fn uses_mirror_cache(kind: TaskKind) -> bool {
    with_kind!(kind, K => K::USES_MIRROR_CACHE)
}

/// The error a verify or drill outcome records when the task ended without success: the
/// completion's message, or the lease's last error.
fn check_error(task: &TaskRecord, req: &TaskReport) -> Option<String> {
    (!req.success).then(|| {
        if req.error.is_empty() {
            task.lease.last_error.clone().unwrap_or_default()
        } else {
            req.error.clone()
        }
    })
}

/// [`Kind::needs_snapshot_repo`] of the task's kind.
pub(crate) fn needs_snapshot_repo(task: &TaskRecord, repo: &RepoRecord) -> bool {
    with_kind!(task.kind, K => K::needs_snapshot_repo(repo))
}

/// [`Kind::credential_org`] of the task's kind.
pub(crate) async fn credential_org(
    q: &TaskQueue,
    task: &TaskRecord,
    org: &OrgRecord,
    repo: &RepoRecord,
) -> CoreResult<Option<OrgRecord>> {
    with_kind!(task.kind, K => K::credential_org(q, task, org, repo).await)
}

/// [`Kind::lease`] of the task's kind.
pub(crate) async fn lease(
    q: &TaskQueue,
    l: &LeaseCtx<'_>,
    access: &mut RepoAccess,
    rate: &mut Option<Grant>,
    batch: &mut Batch,
) -> CoreResult<LeaseSpec> {
    with_kind!(l.task.kind, K => K::lease(q, l, access, rate, batch).await)
}

/// [`Kind::commit`] of the task's kind.
pub(crate) async fn commit(
    q: &TaskQueue,
    c: &Completion<'_>,
    batch: &mut Batch,
) -> CoreResult<Option<BackupRecord>> {
    with_kind!(c.task.kind, K => K::commit(q, c, batch).await)
}

/// [`Kind::after_commit`] of the task's kind.
pub(crate) async fn after_commit(
    q: &TaskQueue,
    c: &Completion<'_>,
    finished: Option<BackupRecord>,
) {
    with_kind!(c.task.kind, K => K::after_commit(q, c, finished).await)
}

/// [`Kind::requeue`] of the task's kind.
pub(crate) async fn requeue(
    q: &TaskQueue,
    task: &TaskRecord,
    status: Status,
    now: i64,
    batch: &mut Batch,
) -> CoreResult<Option<BackupRecord>> {
    with_kind!(task.kind, K => K::requeue(q, task, status, now, batch).await)
}

/// [`Kind::after_requeue`] of the task's kind.
pub(crate) async fn after_requeue(q: &TaskQueue, task: &TaskRecord, status: Status) {
    with_kind!(task.kind, K => K::after_requeue(q, task, status).await)
}
