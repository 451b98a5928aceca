//! What a lease hands a worker: the lease token, the repository's access, the first rate grant
//! and the kind's spec. Built by the queue and the kinds as typed values; the worker service
//! turns them into the task message (`service/worker_convert.rs`), so the queue is not tied to
//! the wire's shape.

use std::time::Duration;

use repovault_common::forge::AccessScope;
use repovault_common::secret::Secret;

use crate::forge_access::rate_budgets::Grant;
use crate::model::{
    BackupId, BackupType, DrillId, Provider, RestoreId, RestoreTarget, RestoreType, SnapshotId,
    Trigger,
};
use crate::tasks::lease_access::RepoAccess;
use crate::tasks::lifecycle::Lease;

/// A task leased to a worker.
#[derive(Debug, Clone)]
pub struct LeasedTask {
    pub lease: Lease,
    pub repo: RepoAccess,
    /// The first permits of the rate budget of `repo.credential_id` (`None` without one).
    pub rate: Option<Grant>,
    pub spec: LeaseSpec,
}

/// What the worker is to do, by kind.
#[derive(Debug, Clone)]
pub enum LeaseSpec {
    Backup(BackupSpec),
    /// Boxed: a restore's spec is much the largest.
    Restore(Box<RestoreSpec>),
    Verify(VerifySpec),
    Drill(DrillSpec),
}

/// A backup to take.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    pub backup_id: BackupId,
    pub backup_type: BackupType,
    pub trigger: Trigger,
    /// The parent snapshot, named from the catalog; `None` for the first backup.
    pub parent_snapshot_id: Option<SnapshotId>,
    /// The backup that wrote the parent snapshot (the last successful one of any type).
    pub parent_backup_id: Option<BackupId>,
    /// The parent's mirror failed `git fsck`: a worker without the cache clones from the
    /// source instead of seeding from the parent snapshot.
    pub parent_mirror_damaged: bool,
    /// The parent passed every verification check (an unchanged source may repeat its tree).
    pub parent_verified: bool,
}

/// A restore to run.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    pub restore_id: RestoreId,
    pub backup_id: BackupId,
    /// `None` when the backup has no snapshot (the worker refuses the restore).
    pub snapshot_id: Option<SnapshotId>,
    pub restore_type: RestoreType,
    pub target: RestoreTarget,
    pub target_url: Option<String>,
    /// The target's token (empty when none).
    pub target_token: Secret,
    /// Where to put a download artifact, relative to the storage root.
    pub artifact_path: Option<String>,
    /// A forge target: the repository `target_owner/target_name` on `target_api_url`
    /// (trusting `target_ca_cert_pem`); empty owner and name for plain git and downloads.
    pub target_provider: Provider,
    pub target_owner: String,
    pub target_name: String,
    pub target_api_url: Option<String>,
    pub target_ca_cert_pem: Option<String>,
    /// Create the target repository when it does not exist.
    pub create_target: bool,
    /// Whether `target_token` is the source's own credential (the lease's rate budget then
    /// admits its requests).
    pub target_is_source_credential: bool,
    /// Which access to grant in the target.
    pub access: AccessScope,
}

/// A verification to run.
#[derive(Debug, Clone)]
pub enum VerifySpec {
    /// `backup verify`: every check of the backup's snapshot; `snapshot_id` `None` when the
    /// backup was deleted since (the worker refuses it for good, ending the task).
    Manual {
        backup_id: BackupId,
        snapshot_id: Option<SnapshotId>,
    },
    /// The read-back rotation: every pack of the repository not read within `max_age`.
    Rotation { max_age: Duration },
}

/// A restore drill to run.
#[derive(Debug, Clone)]
pub struct DrillSpec {
    pub drill_id: DrillId,
    pub backup_id: BackupId,
    pub snapshot_id: SnapshotId,
}
