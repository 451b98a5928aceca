//! The admin service's calls for retention, deletion, purge, connection and escrow: request
//! fields to typed values, the maintenance and escrow components' answers to messages.

use repovault_proto::v1 as pb;

use crate::admin_roles::Role;
use crate::coordinator::Coordinator;
use crate::error::CoreResult;
use crate::escrow_lock::{EscrowLockRecord, LockStatus};
#[cfg(doc)]
use crate::maintenance::escrow_holds::Escrow;
use crate::maintenance::escrow_holds::parse_until;
use crate::maintenance::retention::RetentionPolicy;
use crate::model::{BackupId, EscrowRecord, RepoId};
use std::collections::HashMap;

fn agreement_pb(
    e: &EscrowRecord,
    now_ms: i64,
    lock: Option<&EscrowLockRecord>,
) -> pb::EscrowAgreement {
    let opt = |t: Option<i64>| t.map(crate::clock::format_ms).unwrap_or_default();
    pb::EscrowAgreement {
        storage_lock: Some(storage_lock_pb(lock)),
        id: e.id.clone(),
        repo: e.repo_full_name.clone(),
        agreement: e.agreement.clone(),
        created_by: e.created_by.clone(),
        created_at: crate::clock::format_ms(e.created_at_ms),
        until: opt(e.until_ms),
        released_at: opt(e.released_at_ms),
        released_by: e.released_by.clone().unwrap_or_default(),
        active: e.window().is_active(now_ms),
        key_id: e.key_id.clone().unwrap_or_default(),
    }
}

fn storage_lock_pb(lock: Option<&EscrowLockRecord>) -> pb::EscrowStorageLock {
    let opt = |t: Option<i64>| t.map(crate::clock::format_ms).unwrap_or_default();
    let Some(l) = lock else {
        return pb::EscrowStorageLock {
            status: pb::EscrowLockStatus::Pending.into(),
            ..Default::default()
        };
    };
    let status = match l.status {
        LockStatus::Locked => pb::EscrowLockStatus::Locked,
        LockStatus::Unavailable => pb::EscrowLockStatus::Unavailable,
        LockStatus::Failed => pb::EscrowLockStatus::Failed,
    };
    pb::EscrowStorageLock {
        status: status.into(),
        detail: l.detail.clone().unwrap_or_default(),
        locked_until: opt(l.locked_until_ms),
        checked_at: crate::clock::format_ms(l.checked_at_ms),
    }
}

/// The lock records of the repositories of `agreements`, read once per repository.
async fn lock_records<'a>(
    core: &Coordinator,
    agreements: impl Iterator<Item = &'a EscrowRecord>,
) -> CoreResult<HashMap<RepoId, EscrowLockRecord>> {
    let mut out = HashMap::new();
    for e in agreements {
        if out.contains_key(&e.repo_id) {
            continue;
        }
        if let Some(l) = core.store.escrow_lock(&e.repo_id).await? {
            out.insert(e.repo_id.clone(), l);
        }
    }
    Ok(out)
}

fn policy_pb(p: &RetentionPolicy) -> pb::RetentionPolicy {
    pb::RetentionPolicy {
        days: p.days,
        keep_last: p.keep_last,
        keep_hourly: p.keep_hourly,
        keep_daily: p.keep_daily,
        keep_weekly: p.keep_weekly,
        keep_monthly: p.keep_monthly,
    }
}

pub(super) async fn delete_backup(
    core: &Coordinator,
    r: pb::DeleteBackupRequest,
) -> CoreResult<pb::DeleteBackupResponse> {
    let b = core
        .maintenance
        .delete_backup(&BackupId::from_wire(&r.id, "id")?)
        .await?;
    Ok(pb::DeleteBackupResponse {
        backup: Some(crate::service::convert::backup(&b)),
    })
}

pub(super) async fn purge_repo(
    core: &Coordinator,
    r: pb::PurgeRepoRequest,
) -> CoreResult<pb::PurgeResponse> {
    Ok(pb::PurgeResponse {
        backups_deleted: core.maintenance.purge_repo(&r.repo, r.confirm).await?,
    })
}

pub(super) async fn purge_org(
    core: &Coordinator,
    r: pb::PurgeOrgRequest,
) -> CoreResult<pb::PurgeResponse> {
    Ok(pb::PurgeResponse {
        backups_deleted: core.maintenance.purge_org(&r.org, r.confirm).await?,
    })
}

pub(super) async fn set_org_connected(
    core: &Coordinator,
    r: pb::SetOrgConnectedRequest,
) -> CoreResult<pb::SetOrgConnectedResponse> {
    let org = if r.connected {
        core.maintenance.connect_org(&r.org).await?
    } else {
        core.maintenance.disconnect_org(&r.org).await?
    };
    Ok(pb::SetOrgConnectedResponse {
        org: org.name,
        disconnected: org.disconnected,
        full_after: org
            .full_after_ms
            .map(crate::clock::format_ms)
            .unwrap_or_default(),
    })
}

/// `SetRetention`: changes the policy ([`Escrow::change_retention`]) as a caller with `role`;
/// a request without a policy only reads it (older CLIs; `GetRetention` is the read). Also
/// returns the audit entry's detail for a change: the old and the new policy.
pub(super) async fn set_retention(
    core: &Coordinator,
    r: pb::SetRetentionRequest,
    role: Role,
) -> CoreResult<(pb::SetRetentionResponse, Option<String>)> {
    let Some(p) = r.policy else {
        let org = core.registry.org_named(&r.org).await?;
        let policy = Some(policy_pb(&org.retention));
        return Ok((pb::SetRetentionResponse { policy }, None));
    };
    let policy = RetentionPolicy {
        days: p.days,
        keep_last: p.keep_last,
        keep_hourly: p.keep_hourly,
        keep_daily: p.keep_daily,
        keep_weekly: p.keep_weekly,
        keep_monthly: p.keep_monthly,
    };
    let change = core
        .escrow
        .change_retention(&r.org, policy, role, r.confirm)
        .await?;
    let detail = format!(
        "{} -> {}{}",
        change.old.describe(),
        change.new.describe(),
        match change.removes {
            0 => String::new(),
            n => format!(" ({n} existing backups to be removed)"),
        }
    );
    let response = pb::SetRetentionResponse {
        policy: Some(policy_pb(&change.new)),
    };
    Ok((response, Some(detail)))
}

/// `GetRetention`: the organisation's policy (a read: any role, not audited).
pub(super) async fn get_retention(
    core: &Coordinator,
    r: pb::GetRetentionRequest,
) -> CoreResult<pb::GetRetentionResponse> {
    let org = core.registry.org_named(&r.org).await?;
    Ok(pb::GetRetentionResponse {
        policy: Some(policy_pb(&org.retention)),
    })
}

pub(super) async fn enable_escrow(
    core: &Coordinator,
    r: pb::EnableEscrowRequest,
    created_by: &str,
) -> CoreResult<pb::EnableEscrowResponse> {
    let until = parse_until(&r.until)?;
    let (e, key) = core
        .escrow
        .enable_escrow(&r.repo, &r.agreement, until, created_by)
        .await?;
    Ok(pb::EnableEscrowResponse {
        agreement: Some(agreement_pb(
            &e,
            core.clock.now_ms(),
            core.store.escrow_lock(&e.repo_id).await?.as_ref(),
        )),
        key: key.expose().to_string(),
    })
}

pub(super) async fn release_escrow(
    core: &Coordinator,
    r: pb::ReleaseEscrowRequest,
    released_by: &str,
) -> CoreResult<pb::ReleaseEscrowResponse> {
    let released = core.escrow.release_escrow(&r.repo, released_by).await?;
    let now = core.clock.now_ms();
    let locks = lock_records(core, released.iter()).await?;
    Ok(pb::ReleaseEscrowResponse {
        released: released
            .iter()
            .map(|e| agreement_pb(e, now, locks.get(&e.repo_id)))
            .collect(),
    })
}

/// `ListEscrows`: newest first. A repository holds few agreements, so the list is read whole,
/// sorted and cut.
pub(super) async fn list_escrows(
    core: &Coordinator,
    r: pb::ListEscrowsRequest,
) -> Result<pb::ListEscrowsResponse, tonic::Status> {
    use crate::paging::{self, Order};
    use crate::service::paged::{List, Listing};
    let listing = Listing::new(List::Escrows, &r.repo);
    let page = listing.page(r.page_size, &r.page_token)?;
    let now = core.clock.now_ms();
    let list = core.escrow.list_escrows(Some(&r.repo)).await?;
    let found = paging::sort_and_cut(
        list,
        |(e, _)| super::admin_lists::newest_first_key(e.created_at_ms, &e.id),
        Order::Descending,
        &page,
    );
    let locks = lock_records(core, found.items.iter().map(|(_, (e, _))| e)).await?;
    let (agreements, next_page_token) =
        listing.respond(found.map(|(e, _)| agreement_pb(&e, now, locks.get(&e.repo_id))));
    Ok(pb::ListEscrowsResponse {
        agreements,
        next_page_token,
    })
}

/// Backups as the admin sees them, each with whether an escrow agreement holds it now.
pub(super) async fn backups(
    core: &Coordinator,
    records: &[crate::model::BackupRecord],
) -> CoreResult<Vec<pb::Backup>> {
    let escrowed = core.escrow.escrowed(records).await?;
    Ok(records
        .iter()
        .zip(escrowed)
        .map(|(b, e)| pb::Backup {
            is_escrowed: e,
            ..crate::service::convert::backup(b)
        })
        .collect())
}
