//! What a worker reports when a task ends: whether it succeeded, why not, and what the task
//! produced, by kind. The worker service decodes the completion message into these once
//! (`service/worker_convert.rs`), so the queue and the kinds read typed values, never the
//! wire's shape: a malformed field is refused there, naming it, before the queue sees it.

use std::collections::BTreeMap;

use repovault_common::manifest::{ComponentStatus, Counts};
use repovault_common::secret::Secret;

use crate::model::{CheckResult, SnapshotId, TaskRecord};

/// A worker's report that a task attempt ended.
#[derive(Debug, Clone, Default)]
pub struct TaskReport {
    /// The worker that held the lease.
    pub worker_id: String,
    pub success: bool,
    /// Why the attempt failed (empty when it did not, or the worker said nothing).
    pub error: String,
    /// Whether retrying could help (network, storage); false for a missing repository, bad input.
    pub retryable: bool,
    /// The lease was lost on the coordinator's side, not because of the task: a current lease
    /// is then re-queued without counting a failed attempt.
    pub lease_lost: bool,
    /// What the task produced; absent for a failure that found nothing worth reporting.
    pub result: Option<TaskResult>,
}

/// What a task produced, by kind.
#[derive(Debug, Clone)]
pub enum TaskResult {
    /// Boxed: a backup's result is much the largest.
    Backup(Box<BackupResult>),
    Restore(RestoreResult),
    /// A verify task's read-back; for a restore that failed on damaged packs, the damage it
    /// found (`damaged_snapshot_ids` and `damage` only).
    Verify(VerifyResult),
    Drill(DrillResult),
}

/// A backup's result.
#[derive(Debug, Clone, Default)]
pub struct BackupResult {
    /// The snapshot written; `None` when the worker named none (a success is then refused).
    pub snapshot_id: Option<SnapshotId>,
    pub size_bytes: u64,
    pub added_bytes: u64,
    pub counts: Counts,
    pub bytes_received: u64,
    /// The snapshot repository's master key, when the worker opened it by password for the
    /// first time (later opens then skip key derivation).
    pub master_key: Option<Secret>,
    /// Per component: its status and the reason when skipped or failed.
    pub components: BTreeMap<String, ComponentStatus>,
    /// The checks run at the end of the backup (the coordinator adds `size_match`).
    pub verification: Option<VerifyResult>,
}

/// A restore's result.
#[derive(Debug, Clone, Default)]
pub struct RestoreResult {
    pub refs_pushed: u64,
    pub artifact_bytes: u64,
    /// Empty when no artifact was written.
    pub artifact_sha256: String,
    /// One line: what was restored.
    pub summary: String,
}

/// A read-back's result (a backup's, `backup verify`, the rotation).
#[derive(Debug, Clone, Default)]
pub struct VerifyResult {
    pub checks: Vec<CheckResult>,
    pub packs_read: u64,
    pub bytes_read: u64,
    /// The snapshots (full ids, as the worker named them) using a pack found damaged; the
    /// worker has already dropped those packs from the index.
    pub damaged_snapshot_ids: Vec<String>,
    /// What was found damaged (empty when nothing was).
    pub damage: String,
}

/// A restore drill's result.
#[derive(Debug, Clone, Default)]
pub struct DrillResult {
    /// The worker found every check passed.
    pub passed: bool,
    pub checks: Vec<CheckResult>,
    /// One line: what was restored and compared.
    pub summary: String,
    /// When the restore failed, the snapshots using a pack found damaged, and what was found.
    pub damaged_snapshot_ids: Vec<String>,
    pub damage: String,
}

impl TaskReport {
    /// A failure without a result, as recorded when a task fails for good without a
    /// completion (last attempt expired, cancelled): the lease's last error.
    pub fn failed_without_completion(task: &TaskRecord) -> Self {
        Self {
            error: task.lease.last_error.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    pub fn backup(&self) -> Option<&BackupResult> {
        match &self.result {
            Some(TaskResult::Backup(r)) => Some(&**r),
            _ => None,
        }
    }

    pub fn restore(&self) -> Option<&RestoreResult> {
        match &self.result {
            Some(TaskResult::Restore(r)) => Some(r),
            _ => None,
        }
    }

    pub fn verify(&self) -> Option<&VerifyResult> {
        match &self.result {
            Some(TaskResult::Verify(r)) => Some(r),
            _ => None,
        }
    }

    pub fn drill(&self) -> Option<&DrillResult> {
        match &self.result {
            Some(TaskResult::Drill(r)) => Some(r),
            _ => None,
        }
    }
}
