//! Restore tasks: leased with the target's credential (the sealed plain git token, or the
//! credential organisation's token), their completion records what was pushed or written, and
//! damage a restore met fails every backup using the damaged packs.

use repovault_common::secret::Secret;

use crate::error::{CoreResult, not_found};
use crate::model::{
    BackupRecord, OrgCredential, OrgRecord, Provider, RepoRecord, RestoreRecord, Status, TaskRecord,
};
use crate::secrets::SealContext;
use crate::store::Batch;

use super::lease_spec::{LeaseSpec, RestoreSpec};
use super::{Completion, Kind, LeaseCtx};
use crate::forge_access::rate_budgets::Grant;
use crate::tasks::lease_access::RepoAccess;
use crate::tasks::task_queue::TaskQueue;

pub(crate) struct RestoreKind;

impl Kind for RestoreKind {
    /// The target credential's organisation, when the restore has no sealed token of its own.
    async fn credential_org(
        q: &TaskQueue,
        task: &TaskRecord,
        org: &OrgRecord,
        _repo: &RepoRecord,
    ) -> CoreResult<Option<OrgRecord>> {
        Ok(match q.store.restore(&task.restore_subject()?).await? {
            Some(r) if r.sealed_target_token.is_none() => match &r.target_credential_org_id {
                Some(id) if *id == org.id => Some(org.clone()),
                Some(id) => q.store.org(id).await?,
                None => None,
            },
            _ => None,
        })
    }

    /// The restore spec (snapshot, target and its token) and the restore record marked running.
    async fn lease(
        q: &TaskQueue,
        l: &LeaseCtx<'_>,
        access: &mut RepoAccess,
        _rate: &mut Option<Grant>,
        batch: &mut Batch,
    ) -> CoreResult<LeaseSpec> {
        let task = l.task;
        let mut r = q
            .store
            .restore(&task.restore_subject()?)
            .await?
            .ok_or_else(|| not_found("restore", task.subject_id.clone()))?;
        if r.from_copy {
            // The copy holds the same repository files (the same keys) at the same paths.
            access.storage = q.locations.copy_lease_storage(l.org).await?;
        }
        let b = q
            .registry
            .backup_record(&r.backup_id)
            .await?
            .ok_or_else(|| not_found("backup", r.backup_id.clone()))?;
        r.status = Status::Running;
        let (token, same_credential, credential_provider) =
            restore_target_token(q, &r, l.org).await?;
        let (target_owner, target_name) = r
            .target_repo
            .as_deref()
            .and_then(|t| t.split_once('/'))
            .map(|(o, n)| (o.to_string(), n.to_string()))
            .unwrap_or_default();
        let spec = LeaseSpec::Restore(Box::new(RestoreSpec {
            restore_id: r.id.clone(),
            backup_id: r.backup_id.clone(),
            snapshot_id: b.snapshot_id,
            restore_type: r.restore_type,
            target: r.target,
            target_url: r.target_url.clone(),
            target_token: token,
            artifact_path: r.artifact_path.clone(),
            // A target repository lives on the forge of the organisation whose credential
            // creates it (the source's own by default); a target URL is plain git.
            target_provider: match &r.target_repo {
                Some(_) => credential_provider.unwrap_or(l.org.provider),
                None => Provider::Git,
            },
            target_owner,
            target_name,
            target_api_url: r.target_api_url.clone(),
            target_ca_cert_pem: r.target_ca_cert_pem.clone(),
            create_target: r.create_target,
            target_is_source_credential: same_credential,
            access: r.access,
        }));
        batch.restore(&r);
        Ok(spec)
    }

    /// The restore record with the attempt's outcome (`Pending` again when it will be retried)
    /// and, on success, what the worker pushed or wrote.
    async fn commit(
        q: &TaskQueue,
        c: &Completion<'_>,
        batch: &mut Batch,
    ) -> CoreResult<Option<BackupRecord>> {
        let (task, status) = (c.task, c.status);
        let mut r = q
            .store
            .restore(&task.restore_subject()?)
            .await?
            .ok_or_else(|| not_found("restore", task.subject_id.clone()))?;
        r.status = if status.is_terminal() {
            status
        } else {
            Status::Pending
        };
        r.error = task
            .lease
            .last_error
            .clone()
            .filter(|_| status != Status::Completed);
        if c.report.success {
            let res = c.report.restore().cloned().unwrap_or_default();
            r.refs_pushed = res.refs_pushed;
            r.artifact_bytes = res.artifact_bytes;
            r.artifact_sha256 = (!res.artifact_sha256.is_empty()).then_some(res.artifact_sha256);
            r.summary = (!res.summary.is_empty()).then_some(res.summary);
        }
        if status.is_terminal() {
            r.finished_at_ms = Some(c.now);
        }
        batch.restore(&r);
        Ok(None)
    }

    /// Damage the restore found when it could not restore (`CompleteTaskRequest.verify`).
    async fn after_commit(q: &TaskQueue, c: &Completion<'_>, _finished: Option<BackupRecord>) {
        if let Some(r) = c.report.verify() {
            q.ledger.fail_damage_found(c.task, r, c.now).await;
        }
    }

    /// The restore record with the task's status and last error.
    async fn requeue(
        q: &TaskQueue,
        task: &TaskRecord,
        status: Status,
        now: i64,
        batch: &mut Batch,
    ) -> CoreResult<Option<BackupRecord>> {
        if let Some(mut r) = q.store.restore(&task.restore_subject()?).await? {
            r.status = status;
            r.error = task.lease.last_error.clone();
            if status.is_terminal() {
                r.finished_at_ms = Some(now);
            }
            batch.restore(&r);
        }
        Ok(None)
    }
}

/// The token a restore's lease carries for its target, and whether it is the source's own
/// credential (then the lease's rate budget admits the target's requests): the sealed
/// plain git token, or the credential organisation's token (an App's cached installation
/// token, minted when the restore was started or by a backup since).
pub(crate) async fn restore_target_token(
    q: &TaskQueue,
    r: &RestoreRecord,
    source_org: &OrgRecord,
) -> CoreResult<(Secret, bool, Option<Provider>)> {
    if let Some(s) = &r.sealed_target_token {
        return Ok((
            q.secrets.open(SealContext::RestoreToken(&r.id), s)?,
            false,
            None,
        ));
    }
    let Some(org_id) = &r.target_credential_org_id else {
        return Ok((Secret::default(), false, None));
    };
    let org = q
        .store
        .org(org_id)
        .await?
        .ok_or_else(|| not_found("organisation", org_id.clone()))?;
    let token = match &org.credential {
        Some(OrgCredential::Token { sealed_token }) => q
            .secrets
            .open(SealContext::OrgCredential(&org.id), sealed_token)?,
        Some(OrgCredential::App { .. }) => q.forge.cached_forge_token(&org).unwrap_or_default(),
        None => Secret::default(),
    };
    Ok((token, org.id == source_org.id, Some(org.provider)))
}
