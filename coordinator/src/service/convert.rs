//! Records to protocol messages, and the wire's enum and id fields to the domain's closed sets
//! and typed ids: a request's ids are decoded here once, naming the field when one is refused.

use crate::model::{BackupId, DrillId, OrgId, RepoId, RestoreId, SnapshotId, TaskId};
use repovault_common::domain::{FromWire, WireError};
use repovault_proto::v1 as pb;
use tonic::Status as RpcStatus;

use crate::clock::format_ms;
use crate::forge_access::org_discovery::SyncReport;
use crate::model::{
    BackupRecord, DrillRecord, OrgCredential, OrgRecord, RepoRecord, RepoStats, RestoreRecord,
    RestoreType, Status, Verification, VerifyStatus,
};

/// An enum field of a request as its closed set; unspecified or unknown is `invalid_argument`
/// naming the field.
pub fn enum_field<T: FromWire>(value: i32, field: &'static str) -> Result<T, RpcStatus> {
    T::from_wire(value, field).map_err(|e| RpcStatus::invalid_argument(e.to_string()))
}

/// An optional enum field: `default` when unspecified, `invalid_argument` when unknown.
pub fn enum_field_or<T: FromWire>(
    value: i32,
    field: &'static str,
    default: T,
) -> Result<T, RpcStatus> {
    if value == 0 {
        Ok(default)
    } else {
        enum_field(value, field)
    }
}

/// An id type a request field decodes to.
pub trait WireId: Sized {
    fn decode(value: &str, field: &'static str) -> Result<Self, WireError>;
}

macro_rules! wire_id {
    ($($t:ty),*) => {
        $(impl WireId for $t {
            fn decode(value: &str, field: &'static str) -> Result<Self, WireError> {
                <$t>::from_wire(value, field)
            }
        })*
    };
}

wire_id!(
    BackupId, DrillId, OrgId, RepoId, RestoreId, SnapshotId, TaskId
);

/// A required id field of a request; empty or malformed is `invalid_argument` naming the field.
pub fn id_field<T: WireId>(value: &str, field: &'static str) -> Result<T, RpcStatus> {
    T::decode(value, field).map_err(|e| RpcStatus::invalid_argument(e.to_string()))
}

/// An optional id field: `None` when empty, `invalid_argument` naming the field when malformed.
pub fn optional_id_field<T: WireId>(
    value: &str,
    field: &'static str,
) -> Result<Option<T>, RpcStatus> {
    if value.is_empty() {
        Ok(None)
    } else {
        id_field(value, field).map(Some)
    }
}

fn opt_time(ms: Option<i64>) -> String {
    ms.map(format_ms).unwrap_or_default()
}

/// An organisation as the admin sees it: never its key or credential secret.
pub fn org(o: &OrgRecord) -> pb::Org {
    let (app_id, installation_id) = match &o.credential {
        Some(OrgCredential::App {
            app_id,
            installation_id,
            ..
        }) => (*app_id, *installation_id),
        _ => (0, 0),
    };
    pb::Org {
        id: o.id.to_string(),
        name: o.name.clone(),
        provider: o.provider.into(),
        created_at: format_ms(o.created_at_ms),
        api_url: o.api_url.clone().unwrap_or_default(),
        credential: o
            .credential
            .as_ref()
            .map_or("none", OrgCredential::kind)
            .to_string(),
        app_id,
        installation_id,
        has_ca_cert: o.ca_cert_pem.is_some(),
        storage: o
            .storage
            .clone()
            .unwrap_or_else(|| crate::storage_locations::DEFAULT_LOCATION.to_string()),
        copy_to: o.copy_to.clone().unwrap_or_default(),
        tier_after_days: o
            .tier_after_days
            .unwrap_or(crate::tiering::lifecycle_policy::DEFAULT_TIER_AFTER_DAYS),
        last_sync_at: opt_time(o.last_sync_at_ms),
        schedule: o.schedule.schedule.clone().unwrap_or_default(),
        timezone: o.schedule.timezone.clone().unwrap_or_default(),
        full_every_days: o
            .schedule
            .full_every_days
            .unwrap_or(crate::schedule::policy::DEFAULT_FULL_EVERY_DAYS),
        drill: o.schedule.drill.clone().unwrap_or_else(|| "default".into()),
    }
}

pub fn sync(r: &SyncReport) -> pb::SyncOrgResponse {
    pb::SyncOrgResponse {
        org: r.org.clone(),
        listed: r.listed as u64,
        added: r.added.clone(),
        renamed: r
            .renamed
            .iter()
            .map(|x| pb::RenamedRepo {
                repo_id: x.repo_id.to_string(),
                from: x.from.clone(),
                to: x.to.clone(),
            })
            .collect(),
        archived: r.archived.clone(),
        unarchived: r.unarchived.clone(),
        deleted: r.deleted.clone(),
        restored: r.restored.clone(),
        unchanged: r.unchanged as u64,
        synced_at: format_ms(r.synced_at_ms),
    }
}

pub fn repo(r: &RepoRecord, s: &RepoStats) -> pb::Repo {
    pb::Repo {
        id: r.id.to_string(),
        org: r.org_name.clone(),
        name: r.name.clone(),
        full_name: r.full_name(),
        url: r.url.clone(),
        has_token: r.sealed_token.is_some(),
        created_at: format_ms(r.created_at_ms),
        last_backup_id: s
            .last_backup_id
            .clone()
            .map(String::from)
            .unwrap_or_default(),
        last_backup_status: s
            .last_status
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        incomplete: s.last_success_incomplete.clone(),
        last_backup_at: opt_time(s.last_finished_at_ms),
        forge_id: r.forge_id.unwrap_or_default(),
        archived: r.archived,
        deleted: r.deleted,
        schedule: r.schedule.clone().unwrap_or_default(),
        effective_schedule: String::new(),
        on_push: r.on_push.is_some(),
        skipped_slots: Vec::new(),
    }
}

pub fn backup(b: &BackupRecord) -> pb::Backup {
    pb::Backup {
        id: b.id.to_string(),
        repo: format!("{}/{}", b.org_name, b.repo_name),
        org_id: b.org_id.to_string(),
        repo_id: b.repo_id.to_string(),
        r#type: b.backup_type.into(),
        trigger: b.trigger.into(),
        status: b.status.into(),
        error: b.error.clone().unwrap_or_default(),
        created_at: format_ms(b.created_at_ms),
        started_at: opt_time(b.started_at_ms),
        finished_at: opt_time(b.finished_at_ms),
        size_bytes: b.size_bytes,
        added_bytes: b.added_bytes,
        counts: Some(pb::Counts::from(&b.counts)),
        components: repovault_common::manifest::components_to_proto(&b.components),
        snapshot_id: b.snapshot_id.clone().map(String::from).unwrap_or_default(),
        parent_snapshot_id: b
            .parent_snapshot_id
            .clone()
            .map(String::from)
            .unwrap_or_default(),
        task_id: b.task_id.to_string(),
        attempt: b.attempt,
        bytes_received: b.bytes_received,
        priority: u32::from(b.priority),
        worker_id: b.worker_id.clone().unwrap_or_default(),
        // Set by the caller that knows the agreements (`admin.rs::backups`, from `Escrow::escrowed`).
        is_escrowed: false,
        copy: copy_text(b.copy.as_ref()),
        verification: match (&b.verification, b.status) {
            (Some(v), _) => Some(verification(v)),
            // Completed before verification existed, or by a worker that sent no checks.
            (None, Status::Completed) => Some(pb::Verification {
                status: VerifyStatus::Pending.into(),
                ..Default::default()
            }),
            (None, _) => None,
        },
    }
}

pub fn verification(v: &Verification) -> pb::Verification {
    pb::Verification {
        status: v.status.into(),
        checks: v.checks.iter().map(check_to_proto).collect(),
        run: v.run.into(),
        finished_at: opt_time(v.finished_at_ms),
        packs_read: v.packs_read,
        bytes_read: v.bytes_read,
        task_id: v.task_id.clone().map(String::from).unwrap_or_default(),
    }
}

/// A second copy as shown (`Backup.copy`, `TimelineEntry.copy`, `RepoHealth.copy`): "done at
/// LOCATION", "pending at ...", "failed at ...: why"; empty without a copy.
pub fn copy_text(copy: Option<&crate::model::CopyState>) -> String {
    copy.map(|c| match &c.detail {
        Some(d) if c.status != crate::model::CopyStatus::Done => {
            format!("{} at {}: {d}", c.status.as_str(), c.location)
        }
        _ => format!("{} at {}", c.status.as_str(), c.location),
    })
    .unwrap_or_default()
}

pub fn drill(d: &DrillRecord) -> pb::Drill {
    pb::Drill {
        id: d.id.to_string(),
        org: d.org_name.clone(),
        repo: d.repo_full_name.clone(),
        backup_id: d.backup_id.to_string(),
        status: d.outcome().into(),
        trigger: d.trigger.into(),
        checks: d.checks.iter().map(check_to_proto).collect(),
        summary: d.summary.clone().unwrap_or_default(),
        error: d.error.clone().unwrap_or_default(),
        created_at: format_ms(d.created_at_ms),
        finished_at: opt_time(d.finished_at_ms),
        task_id: d.task_id.to_string(),
        from_copy: d.from_copy,
    }
}

pub fn restore(r: &RestoreRecord) -> pb::Restore {
    pb::Restore {
        id: r.id.to_string(),
        backup_id: r.backup_id.to_string(),
        repo: r.repo_full_name.clone(),
        r#type: r.restore_type.into(),
        target: r.target.into(),
        target_url: r.target_url.clone().unwrap_or_default(),
        status: r.status.into(),
        error: r.error.clone().unwrap_or_default(),
        created_at: format_ms(r.created_at_ms),
        finished_at: opt_time(r.finished_at_ms),
        refs_pushed: r.refs_pushed,
        artifact_bytes: r.artifact_bytes,
        artifact_sha256: r.artifact_sha256.clone().unwrap_or_default(),
        task_id: r.task_id.to_string(),
        target_repo: r.target_repo.clone().unwrap_or_default(),
        summary: r.summary.clone().unwrap_or_default(),
        // Only a forge `full_repo` restore grants access; for the rest it does not apply.
        access: if r.restore_type == RestoreType::FullRepo && r.target_repo.is_some() {
            pb::RestoreAccess::from(r.access).into()
        } else {
            pb::RestoreAccess::Unspecified.into()
        },
        // Filled by the service, which holds the link signer (`AdminApi::restore_with_link`).
        download_url: String::new(),
        download_expires_at: String::new(),
        artifact_expired: r.download.artifact_expired_at_ms.is_some(),
    }
}

/// A backup's browsed listing or document.
pub fn browsed(b: crate::catalog::browse::Browsed) -> pb::BrowseBackupResponse {
    pb::BrowseBackupResponse {
        items: b
            .items
            .into_iter()
            .map(|i| pb::BrowseItem {
                number: i.number,
                title: i.title,
                state: i.state,
                author: i.author,
                updated_at: i.updated_at,
                comments: i.comments,
                reviews_or_assets: i.reviews_or_assets,
            })
            .collect(),
        document_json: b.document_json,
    }
}

/// A repository's message with its schedule in force (`"daily (Europe/Berlin)"`) and skipped
/// slots.
pub fn repo_with_schedule(
    mut repo: pb::Repo,
    view: crate::schedule::schedule_runs::RepoScheduleView,
) -> pb::Repo {
    if let Some((s, tz)) = view.effective {
        repo.effective_schedule = if tz.is_empty() {
            s
        } else {
            format!("{s} ({tz})")
        };
    }
    repo.skipped_slots = view.skipped_slots.into_iter().map(format_ms).collect();
    repo
}

/// A check of a verification or a drill as its message.
pub fn check_to_proto(c: &crate::model::CheckResult) -> pb::CheckResult {
    pb::CheckResult {
        name: c.name.clone(),
        result: c.result.into(),
        detail: c.detail.clone(),
        warning: c.warning,
        incomplete: c.incomplete,
    }
}
