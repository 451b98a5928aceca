//! Restores: the types × targets a restore may take, where a forge restore goes and with which
//! credential, listing and cancelling.
//!
//! Valid combinations ([`RestoreCombination`]); anything else is refused naming them:
//! - `full_repo` to `new`: `--org ORG --name NAME` on the source's forge (or on the forge of
//!   `--credential-org`), with the credential of the repovault organisation named `ORG` when
//!   there is one, else of `--credential-org`, else of the source's organisation; or `--url` for
//!   plain git (with its own token). The worker creates the repository, or it must exist with no
//!   refs.
//! - `full_repo` to `original`: the source's organisation, `--name NAME` required, and the
//!   repository must not exist (checked here, with the forge, before anything is queued; the
//!   worker never overwrites either).
//! - `full_repo` to `download`: a tar of the bare repository in storage, streamed to the CLI.
//! - `issues_only`, `wiki_only`, `releases_only` to `existing`: `--into ORG/NAME`, a repository
//!   that exists (checked here); append-only.
//! - `download_zip` to `download`.
//!
//! Access: a `full_repo` restore to a forge grants direct collaborators only, unless
//! the request's [`AccessScope`] asks for team grants or everyone; any other restore (which
//! restores no settings) refuses a wider scope rather than ignoring it.

use crate::model::{BackupId, RestoreId};
use repovault_common::forge::AccessScope;
use repovault_common::names::{parse_full_name, validate_git_url, validate_name};
use repovault_common::secret::Secret;

use crate::error::{CoreError, CoreResult, not_found};
use crate::ids;
use crate::model::{OrgRecord, RestoreRecord, RestoreTarget, RestoreType, Status};
use crate::secrets::SealContext;
use crate::tasks::queue_order::PRIORITY_RESTORE;
use repovault_common::domain::RestoreCombination;

use std::sync::Arc;

use crate::catalog::org_registry::Registry;
use crate::forge_access::ForgeAccess;
use crate::model::{RepoRecord, TaskKind};
use crate::secrets::Secrets;
use crate::store::{Batch, Store};
use crate::tasks::task_queue::{Enqueue, NewTask, TaskQueue};

/// What an admin asks for (`StartRestoreRequest`).
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub backup_id: BackupId,
    pub combination: RestoreCombination,
    /// Plain git target URL (`full_repo` to `new`).
    pub url: String,
    /// The plain git target's token.
    pub token: Option<Secret>,
    /// Forge target owner (`full_repo` to `new`).
    pub org: String,
    /// Forge target name (`full_repo` to `new` or `original`).
    pub name: String,
    /// A repovault organisation whose forge and credential to use.
    pub credential_org: String,
    /// `ORG/NAME` of an existing repository (`existing`).
    pub into: String,
    /// Lifetime of a download's first link (validated by the caller); `None`: 6 h.
    pub link_ttl_ms: Option<i64>,
    /// Which access a forge `full_repo` restore grants.
    pub access: AccessScope,
    /// Read the backup from the organisation's second copy (the primary is lost).
    pub from_copy: bool,
}

impl RestoreRequest {
    /// A request with no target details, direct access and the default link lifetime.
    pub fn new(backup_id: BackupId, combination: RestoreCombination) -> Self {
        Self {
            backup_id,
            combination,
            url: String::new(),
            token: None,
            org: String::new(),
            name: String::new(),
            credential_org: String::new(),
            into: String::new(),
            link_ttl_ms: None,
            access: AccessScope::Direct,
            from_copy: false,
        }
    }
}

/// A restore from the second copy needs a copy of the backup that was read back there, and a
/// target outside storage (a download's artifact would land in the copy's location, where no
/// link points).
fn check_copy(backup: &crate::model::BackupRecord, target: RestoreTarget) -> CoreResult<()> {
    if target == RestoreTarget::Download {
        return Err(invalid(
            "--from-copy restores to a repository (--target new, original or existing), not to a download",
        ));
    }
    match &backup.copy {
        Some(c) if c.status == crate::model::CopyStatus::Done => Ok(()),
        Some(c) => Err(CoreError::FailedPrecondition(format!(
            "backup {}'s copy at {} is {}{}",
            backup.id,
            c.location,
            c.status.as_str(),
            c.detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ))),
        None => Err(CoreError::FailedPrecondition(format!(
            "backup {} has no second copy (org set ORG --copy-to NAME)",
            backup.id
        ))),
    }
}

fn invalid(m: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument(m.into())
}

/// A scope wider than direct collaborators only where access is restored at all: `full_repo`
/// to a forge (`new` without `--url`, or `original`). Elsewhere it is refused, not ignored.
fn check_access(req: &RestoreRequest) -> CoreResult<()> {
    let forge_settings = req.combination.restore_type() == RestoreType::FullRepo
        && matches!(
            req.combination.target(),
            RestoreTarget::New | RestoreTarget::Original
        )
        && req.url.is_empty();
    if req.access == AccessScope::Direct || forge_settings {
        return Ok(());
    }
    Err(invalid(format!(
        "--access {} is for full_repo restores to a forge (--target new --org ORG --name NAME, or --target original): only they restore collaborators and teams",
        req.access.as_str()
    )))
}

/// Restore requests: checked, recorded with their task in one transaction, listed, cancelled.
pub struct Restores {
    queue: Arc<TaskQueue>,
    registry: Arc<Registry>,
    store: Store,
    secrets: Arc<Secrets>,
    forge: Arc<ForgeAccess>,
}

impl Restores {
    pub fn new(
        queue: Arc<TaskQueue>,
        registry: Arc<Registry>,
        store: Store,
        secrets: Arc<Secrets>,
        forge: Arc<ForgeAccess>,
    ) -> Self {
        Self {
            queue,
            registry,
            store,
            secrets,
            forge,
        }
    }

    /// Enqueues a restore task for a restore record, written with it in one transaction; sets
    /// the record's task id.
    async fn enqueue_restore(
        &self,
        repo: &RepoRecord,
        restore: &mut RestoreRecord,
        priority: u8,
    ) -> CoreResult<()> {
        let mut r = restore.clone();
        let enqueued = self
            .queue
            .enqueue(Enqueue {
                task: NewTask {
                    kind: TaskKind::Restore,
                    repo,
                    priority,
                    key: format!("restore:{}", restore.id),
                    mode: None,
                },
                subject: Box::new(move |task_id, _now| {
                    r.task_id = task_id.clone();
                    let mut batch = Batch::default();
                    batch.restore(&r);
                    (r.id.to_string(), batch)
                }),
                always: Batch::default(),
            })
            .await?;
        restore.task_id = enqueued.record.id;
        Ok(())
    }

    /// A restore of `backup_id` to plain git (`url`) or a download: see
    /// [`Coordinator::start_restore_request`].
    pub async fn start_restore(
        &self,
        backup_id: &BackupId,
        restore_type: RestoreType,
        target: RestoreTarget,
        url: &str,
        token: Option<Secret>,
    ) -> CoreResult<RestoreRecord> {
        let combination =
            RestoreCombination::new(restore_type, target).map_err(|e| invalid(e.to_string()))?;
        let mut req = RestoreRequest::new(backup_id.clone(), combination);
        req.url = url.to_string();
        req.token = token;
        self.start_restore_request(req).await
    }

    /// Validates and queues a restore (priority 9). Forge targets are checked with the forge
    /// first: `original` must not exist, `existing` must exist.
    pub async fn start_restore_request(&self, req: RestoreRequest) -> CoreResult<RestoreRecord> {
        check_access(&req)?;
        let (restore_type, target) = (req.combination.restore_type(), req.combination.target());
        let backup = self.registry.get_backup(&req.backup_id).await?;
        if backup.status != Status::Completed || backup.snapshot_id.is_none() {
            return Err(CoreError::FailedPrecondition(format!(
                "backup {} is {}, only a completed backup can be restored",
                req.backup_id,
                backup.status.as_str()
            )));
        }
        let repo = self
            .store
            .repo(&backup.repo_id)
            .await?
            .ok_or_else(|| not_found("repository", backup.repo_id.clone()))?;
        let source_org = self
            .store
            .org(&repo.org_id)
            .await?
            .ok_or_else(|| not_found("organisation", repo.org_id.clone()))?;
        let id = ids::new_restore_id();
        let mut restore = RestoreRecord {
            id: id.clone(),
            backup_id: backup.id.clone(),
            org_id: repo.org_id.clone(),
            repo_id: repo.id.clone(),
            repo_full_name: repo.full_name(),
            restore_type,
            target,
            target_url: None,
            sealed_target_token: None,
            status: Status::Pending,
            error: None,
            created_at_ms: self.queue.clock.now_ms(),
            finished_at_ms: None,
            refs_pushed: 0,
            artifact_path: None,
            artifact_bytes: 0,
            artifact_sha256: None,
            // Replaced by the task's id when it is enqueued (`enqueue_restore`).
            task_id: ids::new_task_id(),
            target_repo: None,
            target_api_url: None,
            target_ca_cert_pem: None,
            target_credential_org_id: None,
            create_target: false,
            summary: None,
            access: req.access,
            download: crate::model::DownloadState {
                link_ttl_ms: req.link_ttl_ms,
                ..Default::default()
            },
            from_copy: req.from_copy,
        };
        if req.from_copy {
            check_copy(&backup, target)?;
        }
        let forge_args = !req.org.is_empty() || !req.name.is_empty() || !req.into.is_empty();
        match target {
            RestoreTarget::Download => {
                if forge_args || !req.url.is_empty() || !req.credential_org.is_empty() {
                    return Err(invalid(
                        "target download takes no --org, --name, --into, --url or --credential-org",
                    ));
                }
                let ext = if restore_type == RestoreType::DownloadZip {
                    "zip"
                } else {
                    "tar"
                };
                restore.artifact_path =
                    Some(format!("{}/{}/downloads/{id}.{ext}", repo.org_id, repo.id));
            }
            RestoreTarget::New if !req.url.is_empty() => {
                if forge_args || !req.credential_org.is_empty() {
                    return Err(invalid(
                        "target new takes either --url URL (plain git) or --org ORG --name NAME (a forge), not both",
                    ));
                }
                let u = validate_git_url(&req.url).map_err(|e| invalid(e.to_string()))?;
                restore.target_url = Some(u.to_string());
                restore.sealed_target_token = req
                    .token
                    .filter(|t| !t.is_empty())
                    .map(|t| self.secrets.seal(SealContext::RestoreToken(&id), &t));
            }
            RestoreTarget::New | RestoreTarget::Original | RestoreTarget::Existing => {
                if !req.url.is_empty() || req.token.as_ref().is_some_and(|t| !t.is_empty()) {
                    return Err(invalid(format!(
                        "target {} restores to a forge with an organisation's credential: --url and a token are for plain git (full_repo to new)",
                        target
                    )));
                }
                let (owner, name) = match target {
                    RestoreTarget::New => {
                        if req.org.is_empty() || req.name.is_empty() || !req.into.is_empty() {
                            return Err(invalid(
                                "target new needs --org ORG --name NAME (or --url URL for plain git)",
                            ));
                        }
                        (req.org.clone(), req.name.clone())
                    }
                    RestoreTarget::Original => {
                        if req.name.is_empty() || !req.org.is_empty() || !req.into.is_empty() {
                            return Err(invalid(format!(
                                "target original needs --name NAME (a new repository in {}) and takes no --org or --into",
                                source_org.name
                            )));
                        }
                        (source_org.name.clone(), req.name.clone())
                    }
                    _ => {
                        if req.into.is_empty() || !req.org.is_empty() || !req.name.is_empty() {
                            return Err(invalid(format!(
                                "{} needs --into ORG/NAME (an existing repository) and takes no --org or --name",
                                restore_type
                            )));
                        }
                        parse_full_name(&req.into).map_err(|e| invalid(e.to_string()))?
                    }
                };
                validate_name("organisation", &owner).map_err(|e| invalid(e.to_string()))?;
                validate_name("repository", &name).map_err(|e| invalid(e.to_string()))?;
                let cred = self
                    .restore_credential_org(&source_org, &owner, &req.credential_org)
                    .await?;
                let exists = self.forge.repo_exists(&cred, &owner, &name).await?;
                match (target, exists) {
                    (RestoreTarget::Original, true) => {
                        return Err(CoreError::FailedPrecondition(format!(
                            "repository {owner}/{name} already exists: a restore to the original organisation never overwrites; choose another --name"
                        )));
                    }
                    (RestoreTarget::Existing, false) => {
                        return Err(CoreError::FailedPrecondition(format!(
                            "repository {owner}/{name} does not exist: {} restores into an existing repository",
                            restore_type
                        )));
                    }
                    _ => {}
                }
                restore.create_target = target != RestoreTarget::Existing && !exists;
                restore.target_repo = Some(format!("{owner}/{name}"));
                restore.target_api_url =
                    Some(crate::forge_access::org_discovery::endpoint(&cred).api_url);
                restore.target_ca_cert_pem = cred.ca_cert_pem.clone();
                restore.target_credential_org_id = Some(cred.id.clone());
            }
        }
        self.enqueue_restore(&repo, &mut restore, PRIORITY_RESTORE)
            .await?;
        tracing::info!(restore = %restore.id, backup = %backup.id, target = %restore.target, kind = %restore.restore_type, "restore queued");
        Ok(restore)
    }

    /// The repovault organisation whose forge and credential a forge restore to `owner` uses:
    /// `--credential-org` when given; else the GitHub organisation named `owner` when repovault
    /// knows one; else the source's organisation. It must be a GitHub organisation with a
    /// credential.
    async fn restore_credential_org(
        &self,
        source: &OrgRecord,
        owner: &str,
        credential_org: &str,
    ) -> CoreResult<OrgRecord> {
        let org = if !credential_org.is_empty() {
            self.registry.org_named(credential_org).await?
        } else {
            match self.store.org_by_name(owner).await? {
                Some(o) if o.provider.is_forge() => o,
                _ => source.clone(),
            }
        };
        if !org.provider.is_forge() || org.credential.is_none() {
            return Err(CoreError::FailedPrecondition(format!(
                "organisation {:?} is not a forge organisation with a credential: a forge restore needs one (--credential-org ORG), or restore to plain git with --url",
                org.name
            )));
        }
        Ok(org)
    }

    pub async fn get_restore(&self, id: &RestoreId) -> CoreResult<RestoreRecord> {
        self.store
            .restore(id)
            .await?
            .ok_or_else(|| not_found("restore", id))
    }

    /// Restores, newest first; of one repository (`ORG/NAME`) when given.
    pub async fn list_restores(&self, full_name: Option<&str>) -> CoreResult<Vec<RestoreRecord>> {
        let repo_id = match full_name {
            Some(n) if !n.is_empty() => Some(self.registry.repo_named(n).await?.id),
            _ => None,
        };
        let mut out: Vec<RestoreRecord> = self
            .store
            .restores()
            .await?
            .into_iter()
            .filter(|r| repo_id.as_ref().is_none_or(|id| *id == r.repo_id))
            .collect();
        out.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Cancels a pending or running restore: it fails with "cancelled by an administrator" and
    /// its worker stops (the lease is revoked). A finished restore is refused.
    pub async fn cancel_restore(&self, id: &RestoreId) -> CoreResult<RestoreRecord> {
        let r = self.get_restore(id).await?;
        if r.status.is_terminal() {
            return Err(CoreError::FailedPrecondition(format!(
                "restore {id} is {}: only a pending or running restore can be cancelled",
                r.status.as_str()
            )));
        }
        if !self
            .queue
            .cancel_task(&r.task_id, "cancelled by an administrator")
            .await?
        {
            return Err(CoreError::FailedPrecondition(format!(
                "restore {id} has no active task to cancel"
            )));
        }
        self.get_restore(id).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_wider_access_only_where_access_is_restored() {
        let req = |t: &str, target: &str, url: &str, access| {
            let combination =
                RestoreCombination::new(t.parse().unwrap(), target.parse().unwrap()).unwrap();
            let mut r = RestoreRequest::new(crate::coordinator::testing::tid("b"), combination);
            r.url = url.into();
            r.access = access;
            r
        };
        for access in [AccessScope::Direct, AccessScope::Teams, AccessScope::All] {
            assert!(check_access(&req("full_repo", "new", "", access)).is_ok());
            assert!(check_access(&req("full_repo", "original", "", access)).is_ok());
        }
        for (t, target, url) in [
            ("full_repo", "new", "https://git.example/x.git"),
            ("full_repo", "download", ""),
            ("issues_only", "existing", ""),
            ("download_zip", "download", ""),
        ] {
            assert!(check_access(&req(t, target, url, AccessScope::Direct)).is_ok());
            let e = check_access(&req(t, target, url, AccessScope::Teams))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--access teams is for full_repo"),
                "{t} {target}: {e}"
            );
        }
    }
}
