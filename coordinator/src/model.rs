//! The records the coordinator keeps. Times are milliseconds since the Unix epoch.

pub use crate::second_copy::copy_state::{CopyState, CopyStatus};
pub use crate::storage_locations::location_record::StorageLocationRecord;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use repovault_common::forge::AccessScope;
use repovault_common::manifest::{ComponentStatus, Counts};

use crate::tasks::lease_state::LeaseState;

/// The closed sets the records hold, with their stored spellings.
pub use repovault_common::domain::{
    BackupId, DrillId, OrgId, RepoId, RestoreId, SnapshotId, TaskId,
};
pub use repovault_common::domain::{
    BackupType, CheckOutcome, DrillStatus, Provider, RestoreTarget, RestoreType, TaskKind,
    TaskStatus as Status, Trigger, VerifyMode, VerifyRun, VerifyStatus,
};

/// An optional id as stored: absent, `null` and `""` are all "none". Ids are not checked when
/// read (a record reads as it was written), so without this an empty string written by an older
/// build would read back as `Some` of an empty id.
fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    use serde::de::IntoDeserializer;
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => T::deserialize(s.into_deserializer()).map(Some),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub id: OrgId,
    pub name: String,
    /// Plain git (repositories added by URL) or a forge (repositories discovered).
    pub provider: Provider,
    pub created_at_ms: i64,
    /// The organisation's key (restic password of its snapshot repositories), sealed.
    pub sealed_key: String,
    /// The forge's REST API base (`https://api.github.com`, or GitHub Enterprise's
    /// `https://HOST/api/v3`); `None` for plain git.
    #[serde(default)]
    pub api_url: Option<String>,
    /// A PEM CA certificate trusted for `api_url` besides the system's (not a secret).
    #[serde(default)]
    pub ca_cert_pem: Option<String>,
    /// How the coordinator authenticates to the forge; `None` for plain git.
    #[serde(default)]
    pub credential: Option<OrgCredential>,
    /// The last completed discovery.
    #[serde(default)]
    pub last_sync_at_ms: Option<i64>,
    /// `org disconnect`: schedules paused; credentials and every backup kept (retention drops
    /// nothing of it) until `org connect` or `org purge`.
    #[serde(default)]
    pub disconnected: bool,
    /// Set by `org connect` (a reconnect): the first backup of each of its repositories that
    /// starts after this time is full (the type policy, `schedule::policy`).
    #[serde(default)]
    pub full_after_ms: Option<i64>,
    /// How long its backups are kept (`maintenance/retention/`).
    #[serde(default)]
    pub retention: crate::maintenance::retention::RetentionPolicy,
    /// When its repositories are backed up (`schedule/`); absent in older records: none.
    #[serde(default)]
    pub schedule: ScheduleSettings,
    /// The storage location its new backups go to (`storage_locations/`); `None`: the
    /// default location (the coordinator's configured storage).
    #[serde(default)]
    pub storage: Option<String>,
    /// The location every completed backup is also copied to (`second_copy/`); `None`: none.
    #[serde(default)]
    pub copy_to: Option<String>,
    /// Days its packs stay in the standard tier before the lifecycle policy moves them
    /// (`tiering/`); `None`: the default.
    #[serde(default)]
    pub tier_after_days: Option<u32>,
}

/// An organisation's schedule settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSettings {
    /// `hourly`, `daily`, `weekly`, `monthly` or a five-field cron expression; `None`: no
    /// scheduled backups.
    #[serde(default)]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in; `None`: UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// A full backup at least this often; `None`: 7 days.
    #[serde(default)]
    pub full_every_days: Option<u32>,
    /// Restore drills: a schedule, or `none`; `None`: the configured default.
    #[serde(default)]
    pub drill: Option<String>,
}

/// A push webhook repovault registered on the forge repository (`repo set --on-push`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnPushHook {
    /// The forge's hook id (to remove it).
    pub hook_id: u64,
    /// The hook's secret, sealed with [`crate::secrets::SealContext::WebhookSecret`].
    pub sealed_secret: String,
}

/// The fields of a [`RepoRecord`] the materialiser looks at every tick.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepoScheduleView {
    pub id: RepoId,
    pub org_id: OrgId,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub schedule: Option<String>,
}

/// Per repository: the materialiser's bookkeeping (`schedule/schedule_runs.rs`), written in the same
/// transaction as the backup it enqueues.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The start of the last slot materialised (run or skipped).
    pub last_slot_ms: Option<i64>,
    /// Slots skipped because the previous backup still ran (newest last, at most
    /// [`ScheduleState::SKIPPED_KEPT`]).
    #[serde(default)]
    pub skipped_slots: Vec<i64>,
}

impl ScheduleState {
    /// Skipped slots kept per repository (the timeline shows them beside recent backups).
    pub const SKIPPED_KEPT: usize = 50;

    pub fn skip(&mut self, slot_ms: i64) {
        self.last_slot_ms = Some(slot_ms);
        self.skipped_slots.push(slot_ms);
        let n = self.skipped_slots.len();
        if n > Self::SKIPPED_KEPT {
            self.skipped_slots.drain(..n - Self::SKIPPED_KEPT);
        }
    }
}

/// A forge credential. Secrets are sealed with the context
/// [`crate::secrets::SealContext::OrgCredential`] of their organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OrgCredential {
    /// A personal (or fine-grained) token, sealed.
    Token { sealed_token: String },
    /// A GitHub App installation: the app's RSA private key (PEM), sealed. Installation tokens
    /// are minted from it by the coordinator and never stored.
    App {
        app_id: u64,
        installation_id: u64,
        sealed_private_key: String,
    },
}

impl OrgCredential {
    /// `token` or `app`.
    pub fn kind(&self) -> &'static str {
        match self {
            OrgCredential::Token { .. } => "token",
            OrgCredential::App { .. } => "app",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRecord {
    pub id: RepoId,
    pub org_id: OrgId,
    pub org_name: String,
    pub name: String,
    pub url: String,
    /// The source token, sealed; `None` for anonymous sources.
    pub sealed_token: Option<String>,
    /// The snapshot repository's master key, sealed, once a worker has reported it.
    pub sealed_master_key: Option<String>,
    pub created_at_ms: i64,
    /// The forge's repository id (GitHub's `id`): stable across renames, so discovery follows
    /// a renamed repository instead of adding a new one. `None` for plain git.
    #[serde(default)]
    pub forge_id: Option<u64>,
    /// Archived on the forge.
    #[serde(default)]
    pub archived: bool,
    /// Gone from the forge (deleted, or no longer visible to the credential). Its backups are
    /// kept; it is not backed up any more.
    #[serde(default)]
    pub deleted: bool,
    /// A schedule overriding its organisation's (`repo set --schedule`); `None`: inherit.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The push webhook, when backups also run on push (`repo set --on-push`).
    #[serde(default)]
    pub on_push: Option<OnPushHook>,
}

impl RepoRecord {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.org_name, self.name)
    }
}

/// Per repository: what the health view and the next backup need, without reading history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoStats {
    #[serde(default, deserialize_with = "empty_as_none")]
    pub last_backup_id: Option<BackupId>,
    pub last_status: Option<Status>,
    pub last_finished_at_ms: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub last_success_id: Option<BackupId>,
    pub last_success_at_ms: Option<i64>,
    /// The parent of the next backup.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub last_snapshot_id: Option<SnapshotId>,
    pub completed_total: u64,
    pub failed_total: u64,
    pub added_bytes_total: u64,
    /// Components the last successful backup did not include (`settings`, ...): it counts as
    /// incomplete until one includes them.
    #[serde(default)]
    pub last_success_incomplete: Vec<String>,
    /// The last successful full backup (type policy: a full one at least every 7 days).
    #[serde(default)]
    pub last_full_at_ms: Option<i64>,
    /// The first successful backup (the read-back rotation counts a repository's age from it).
    #[serde(default)]
    pub first_success_at_ms: Option<i64>,
    /// The last successful backup's size (`size_match` compares the next one with it).
    #[serde(default)]
    pub last_success_size_bytes: Option<u64>,
    /// The last successful backup's verification status and, when not verified, why.
    #[serde(default)]
    pub last_success_verification: Option<VerifyStatus>,
    #[serde(default)]
    pub last_success_verification_detail: Option<String>,
}

impl RepoStats {
    /// Folds in one terminal backup, the newest so far (completion, final failure, and the
    /// rebuild from the catalog all go through here, so they cannot disagree).
    pub fn record(&mut self, b: &BackupRecord) {
        self.last_backup_id = Some(b.id.clone());
        self.last_status = Some(b.status);
        self.last_finished_at_ms = b.finished_at_ms;
        match b.status {
            Status::Completed => {
                self.last_success_id = Some(b.id.clone());
                self.last_success_at_ms = b.finished_at_ms;
                self.last_snapshot_id = b.snapshot_id.clone();
                self.last_success_incomplete = b
                    .components
                    .iter()
                    .filter(|(_, c)| !c.is_complete())
                    .map(|(k, _)| k.clone())
                    .collect();
                if b.backup_type == BackupType::Full {
                    self.last_full_at_ms = b.finished_at_ms;
                }
                self.last_success_size_bytes = Some(b.size_bytes);
                if self.first_success_at_ms.is_none() {
                    self.first_success_at_ms = b.finished_at_ms;
                }
                self.note_verification(b);
                self.completed_total += 1;
                self.added_bytes_total += b.added_bytes;
            }
            Status::Failed => self.failed_total += 1,
            Status::Pending | Status::Running => {}
        }
    }

    /// When the repository's oldest packs were read: at its first backup (stats written before
    /// that was kept fall back to the latest success). The read-back rotation counts from it.
    pub fn first_backup_at_ms(&self) -> Option<i64> {
        self.first_success_at_ms.or(self.last_success_at_ms)
    }

    /// Takes in a backup's (new) verification when it is the last successful backup.
    pub fn note_verification(&mut self, b: &BackupRecord) {
        if self.last_success_id.as_ref() != Some(&b.id) {
            return;
        }
        let v = b.verification.as_ref();
        self.last_success_verification = Some(v.map_or(VerifyStatus::Pending, |v| v.status));
        self.last_success_verification_detail = v.and_then(crate::verification::failure_summary);
    }
}

/// One backup. Also the content of its catalog object (`<org>/<repo>/catalog/<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: BackupId,
    pub org_id: OrgId,
    pub repo_id: RepoId,
    pub org_name: String,
    pub repo_name: String,
    pub backup_type: BackupType,
    pub trigger: Trigger,
    pub status: Status,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub size_bytes: u64,
    pub added_bytes: u64,
    pub counts: Counts,
    /// Per component, as the worker reported it (empty for plain git and older records).
    #[serde(default)]
    pub components: BTreeMap<String, ComponentStatus>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub snapshot_id: Option<SnapshotId>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub parent_snapshot_id: Option<SnapshotId>,
    pub task_id: TaskId,
    pub attempt: u32,
    pub bytes_received: u64,
    pub priority: u8,
    pub worker_id: Option<String>,
    /// The latest verification; `None` while the backup runs, and for backups made
    /// before verification existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Its second copy (`org set --copy-to`, `second_copy/`); `None` without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyState>,
}

/// One check of a verification or a drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub result: CheckOutcome,
    pub detail: String,
    /// A pass worth showing (size growth).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
    /// A skip because part of the repository was not backed up: blocks `verified`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

/// A backup's latest verification (`verification/mod.rs` decides the status from the checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub status: VerifyStatus,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    pub run: VerifyRun,
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    #[serde(default)]
    pub packs_read: u64,
    #[serde(default)]
    pub bytes_read: u64,
    /// The verify task of a `manual` run.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub task_id: Option<TaskId>,
}

/// One restore drill: a backup restored into a scratch repository and compared with
/// its manifest. `drill/<org-id>/<drill-id>` in the store, the newest [`DrillRecord::KEPT`] per
/// organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub id: DrillId,
    pub org_id: OrgId,
    pub org_name: String,
    pub repo_id: RepoId,
    pub repo_full_name: String,
    pub backup_id: BackupId,
    pub snapshot_id: SnapshotId,
    pub trigger: Trigger,
    /// The task's status; a completed drill `passed` or not.
    pub status: Status,
    #[serde(default)]
    pub passed: Option<bool>,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    pub task_id: TaskId,
    /// Read from the organisation's second copy (`drill run --from-copy`).
    #[serde(default)]
    pub from_copy: bool,
}

impl DrillRecord {
    /// Drills kept per organisation.
    pub const KEPT: usize = 50;

    pub fn outcome(&self) -> DrillStatus {
        match (self.status, self.passed) {
            (Status::Completed, Some(true)) => DrillStatus::Passed,
            (Status::Completed, _) | (Status::Failed, _) => DrillStatus::Failed,
            (Status::Pending, _) => DrillStatus::Pending,
            (Status::Running, _) => DrillStatus::Running,
        }
    }
}

/// Per organisation: the drill materialiser's last slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillState {
    pub last_slot_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub id: RestoreId,
    pub backup_id: BackupId,
    pub org_id: OrgId,
    pub repo_id: RepoId,
    pub repo_full_name: String,
    pub restore_type: RestoreType,
    pub target: RestoreTarget,
    pub target_url: Option<String>,
    pub sealed_target_token: Option<String>,
    pub status: Status,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub refs_pushed: u64,
    pub artifact_path: Option<String>,
    pub artifact_bytes: u64,
    pub artifact_sha256: Option<String>,
    pub task_id: TaskId,
    /// A forge target: the repository `OWNER/NAME` restored into (absent for plain git and
    /// downloads), its REST API and CA, and the repovault organisation whose credential is
    /// used (absent: the token in `sealed_target_token`, or none).
    #[serde(default)]
    pub target_repo: Option<String>,
    #[serde(default)]
    pub target_api_url: Option<String>,
    #[serde(default)]
    pub target_ca_cert_pem: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub target_credential_org_id: Option<OrgId>,
    /// Create the target repository (`full_repo` to `new` or `original`).
    #[serde(default)]
    pub create_target: bool,
    /// The worker's one-line account of what was restored.
    #[serde(default)]
    pub summary: Option<String>,
    /// Which access a forge restore grants; a record from before this field reads as the
    /// default, direct collaborators only.
    #[serde(default)]
    pub access: AccessScope,
    /// A download artifact's lifetime (`downloads.rs`).
    #[serde(default)]
    pub download: DownloadState,
    /// Read from the organisation's second copy (`restore start --from-copy`).
    #[serde(default)]
    pub from_copy: bool,
}

/// How long a restore's download artifact lives, and whether it was deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadState {
    /// Lifetime of the first link, counted from completion; `None`: the default (6 h).
    #[serde(default)]
    pub link_ttl_ms: Option<i64>,
    /// The latest expiry of a link minted since (`restore link`): the artifact lives until the
    /// later of this and the first link's expiry.
    #[serde(default)]
    pub links_until_ms: Option<i64>,
    /// When the expiry loop deleted the artifact (`artifact_expired`).
    #[serde(default)]
    pub artifact_expired_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub kind: TaskKind,
    pub org_id: OrgId,
    pub repo_id: RepoId,
    /// The backup or restore this task produces: a backup id (backup and manual verify tasks),
    /// a restore id, a drill id, or a repository id (a rotation verify task), as `kind` and
    /// `mode` say. It stays a string, read through the typed
    /// accessors below: an enum would need `kind` (a sibling field) to be read, so it could not
    /// keep the stored form, a bare string.
    pub subject_id: String,
    pub priority: u8,
    pub enqueued_at_ms: i64,
    pub seq: u64,
    pub lease: LeaseState,
    /// Equal triggers collapse onto this task while it is pending or running.
    pub idempotency_key: String,
    /// The attempt whose completion was accepted.
    pub committed_attempt: Option<u32>,
    /// A verify task's mode (`manual` or `rotation`); `None` for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<VerifyMode>,
}

impl TaskRecord {
    /// The subject of a backup or verify task.
    pub fn backup_subject(&self) -> crate::error::CoreResult<BackupId> {
        self.subject()
    }

    /// The subject of a restore task.
    pub fn restore_subject(&self) -> crate::error::CoreResult<RestoreId> {
        self.subject()
    }

    /// The subject of a drill task.
    pub fn drill_subject(&self) -> crate::error::CoreResult<DrillId> {
        self.subject()
    }

    /// Every subject was written from a typed id, so a malformed one is a damaged record.
    fn subject<T: TryFrom<String, Error = repovault_common::domain::InvalidId>>(
        &self,
    ) -> crate::error::CoreResult<T> {
        T::try_from(self.subject_id.clone()).map_err(|e| {
            crate::error::CoreError::Internal(format!("task {}: stored subject: {e}", self.id))
        })
    }
}

/// An escrow agreement on one repository. While active (not released, not expired),
/// every finished backup of the repository is escrowed: retention keeps it and `backup delete`
/// refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowRecord {
    pub id: String,
    pub org_id: OrgId,
    pub repo_id: RepoId,
    pub repo_full_name: String,
    /// Parties and reference, as given (`--agreement` or `--agreement-file`).
    pub agreement: String,
    pub created_by: String,
    pub created_at_ms: i64,
    /// Expiry (`--until`); `None`: until released.
    pub until_ms: Option<i64>,
    pub released_at_ms: Option<i64>,
    pub released_by: Option<String>,
    /// The restic key added to the repository's snapshot repository for the escrow agent.
    pub key_id: Option<String>,
}

impl EscrowRecord {
    pub fn window(&self) -> crate::maintenance::retention::EscrowWindow {
        crate::maintenance::retention::EscrowWindow {
            created_at_ms: self.created_at_ms,
            until_ms: self.until_ms,
            released_at_ms: self.released_at_ms,
        }
    }
}

/// Per repository: the maintenance bookkeeping (`maintenance/maintenance_runs.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    /// The last prune (either phase).
    pub last_prune_at_ms: Option<i64>,
    /// Snapshots were forgotten since the last prune: their data awaits one.
    #[serde(default)]
    pub prune_wanted: bool,
    /// The last prune marked packs for deletion: a second run deletes them.
    #[serde(default)]
    pub second_phase_due: bool,
    /// The 30-day read-back rotation: when it last read this repository's due packs,
    /// and what it found.
    #[serde(default)]
    pub last_readback_at_ms: Option<i64>,
    #[serde(default)]
    pub readback_damage: Option<String>,
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
