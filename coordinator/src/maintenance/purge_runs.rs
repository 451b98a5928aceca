//! Removing backups on request and taking repositories and organisations out: `backup delete`,
//! `repo purge`, `org purge`, `org disconnect` / `org connect`, and setting an organisation's
//! retention. Each claims its repository in the queue as the retention run does
//! (`maintenance_runs.rs`), so no backup of it is leased meanwhile.

use crate::model::BackupId;
use std::sync::Arc;

use repovault_common::names::parse_full_name;

use crate::error::{CoreError, CoreResult, not_found};
use crate::maintenance::maintenance_runs::Maintenance;
use crate::maintenance::maintenance_runs::first_line;
use crate::maintenance::retention;
use crate::model::{BackupRecord, OrgRecord, RepoRecord};
use crate::store::Batch;

/// Between two deletes of a purge's prefix: a quarter second, short against the write of one
/// pack or artifact that a cancelled attempt may still finish.
const PURGE_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

impl Maintenance {
    /// `backup delete`: removes one finished backup now (its data goes at the repository's next
    /// prune). Refused for an escrowed backup, for every caller, until the agreement is released
    /// or expires; refused for an unfinished one.
    pub async fn delete_backup(&self, backup_id: &BackupId) -> CoreResult<BackupRecord> {
        let b = self.registry.get_backup(backup_id).await?;
        let repo = self
            .store
            .repo(&b.repo_id)
            .await?
            .ok_or_else(|| not_found("repository", b.repo_id.clone()))?;
        let now = self.clock.now_ms();
        if let Some(e) = self.store.active_escrow(&repo.id, now).await? {
            return Err(CoreError::FailedPrecondition(format!(
                "backup {backup_id} is escrowed (agreement {} on {}, {}): it cannot be deleted until `repovault escrow release {}`{}",
                e.id,
                repo.full_name(),
                first_line(&e.agreement),
                repo.full_name(),
                e.until_ms
                    .map(|u| format!(
                        " or the agreement expires at {}",
                        crate::clock::format_ms(u)
                    ))
                    .unwrap_or_default()
            )));
        }
        if !b.status.is_terminal() {
            return Err(CoreError::FailedPrecondition(format!(
                "backup {backup_id} is {}: wait for it to finish",
                b.status.as_str()
            )));
        }
        let Some(_claim) = self.claim(&repo.id).await else {
            return Err(CoreError::FailedPrecondition(format!(
                "a backup of {} is running: retry when it has finished",
                repo.full_name()
            )));
        };
        // Again under the claim: an agreement made meanwhile counts.
        if self.store.active_escrow(&repo.id, now).await?.is_some() {
            return Err(CoreError::FailedPrecondition(format!(
                "backup {backup_id} is escrowed: it cannot be deleted until `repovault escrow release {}`",
                repo.full_name()
            )));
        }
        let history = self.repo_history(&repo).await?;
        let sr = match b.snapshot_id {
            Some(_) => self.catalog.open_repo(&repo.id).await?.map(Arc::new),
            None => None,
        };
        self.remove_backups(&repo, &[&b], sr, &history).await?;
        tracing::info!(backup = %backup_id, repo = %repo.full_name(), "backup deleted by an admin");
        Ok(b)
    }

    /// `repo purge ORG/NAME --confirm`: deletes every backup, the snapshot repository and every
    /// object under the repository's storage prefix, and the repository's records. Refused
    /// without `confirm`, while an escrow agreement is active, and while a task of it is
    /// pending or running.
    pub async fn purge_repo(&self, full_name: &str, confirm: bool) -> CoreResult<u64> {
        parse_full_name(full_name).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
        let repo = self.registry.repo_named(full_name).await?;
        if !confirm {
            return Err(CoreError::InvalidArgument(format!(
                "purge deletes every backup of {full_name} and its snapshot repository, irrecoverably: repeat with --confirm"
            )));
        }
        self.purge_checks(&repo).await?;
        self.purge_one(&repo).await
    }

    /// `org purge ORG --confirm`: purges every repository of the organisation, then the
    /// organisation itself (its key and credential). Checks every repository before deleting
    /// anything.
    pub async fn purge_org(&self, name: &str, confirm: bool) -> CoreResult<u64> {
        let org = self.registry.org_named(name).await?;
        if !confirm {
            return Err(CoreError::InvalidArgument(format!(
                "purge deletes every backup of organisation {name} and its snapshot repositories, irrecoverably: repeat with --confirm"
            )));
        }
        let repos = self.store.org_repos(&org.id).await?;
        for r in &repos {
            self.purge_checks(r).await?;
        }
        let mut removed = 0;
        for r in &repos {
            removed += self.purge_one(r).await?;
        }
        match self
            .locations
            .operator(&org)
            .await?
            .delete_with(&format!("{}/", org.id))
            .recursive(true)
            .await
        {
            Ok(()) => {}
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut batch = Batch::default();
        batch.delete_org(&org);
        for d in self.store.drills(&org.id).await? {
            batch.delete_drill(&org.id, &d.id);
        }
        batch.delete_drill_state(&org.id);
        self.store.apply(batch).await?;
        tracing::warn!(org = %org.name, backups = removed, "organisation purged");
        Ok(removed)
    }

    async fn purge_checks(&self, repo: &RepoRecord) -> CoreResult<()> {
        if let Some(e) = self
            .store
            .active_escrow(&repo.id, self.clock.now_ms())
            .await?
        {
            return Err(CoreError::FailedPrecondition(format!(
                "{} is under escrow (agreement {}): release it first (`repovault escrow release {}`)",
                repo.full_name(),
                e.id,
                repo.full_name()
            )));
        }
        let q = self.queue.state.lock().await;
        if let Some(t) = q.active.values().find(|t| t.repo_id == repo.id) {
            return Err(CoreError::FailedPrecondition(format!(
                "{} has a {} task {} pending or running: wait for it (disconnect the organisation to stop scheduled backups)",
                repo.full_name(),
                t.kind.as_str(),
                t.id
            )));
        }
        Ok(())
    }

    async fn purge_one(&self, repo: &RepoRecord) -> CoreResult<u64> {
        let Some(_claim) = self.claim(&repo.id).await else {
            return Err(CoreError::FailedPrecondition(format!(
                "a backup of {} is running: retry when it has finished",
                repo.full_name()
            )));
        };
        let history = self.repo_history(repo).await?;
        // Storage first: a crash leaves records of a purged repository, and a repeated purge
        // finishes the job (the other way round would leave unreachable data).
        self.delete_prefix(&repo.org_id, &format!("{}/{}/", repo.org_id, repo.id))
            .await?;
        let mut batch = Batch::default();
        for b in &history {
            batch.delete_backup(&repo.id, &b.id);
            batch.clear_catalog_pending(&repo.id, &b.id);
        }
        for e in self.store.escrows(Some(&repo.id)).await? {
            batch.delete_escrow(&repo.id, &e.id);
        }
        // Its drills name backups that are gone.
        for d in self.store.drills(&repo.org_id).await? {
            if d.repo_id == repo.id {
                batch.delete_drill(&repo.org_id, &d.id);
            }
        }
        batch.delete_repo(repo);
        self.store.apply(batch).await?;
        tracing::warn!(repo = %repo.full_name(), backups = history.len(), "repository purged");
        Ok(history.len() as u64)
    }

    /// Deletes everything under `prefix`. The claim keeps new attempts off, but an attempt
    /// cancelled or revoked just before may still be writing (an artifact, a pack) until its
    /// write deadline, which precedes its lease's expiry: a delete that failed for a passing
    /// reason (a directory that filled again while it was removed: opendal marks it temporary)
    /// is tried again every [`PURGE_RETRY`] for one lease TTL, after which no such attempt
    /// writes. Any other failure is returned at once.
    async fn delete_prefix(&self, org_id: &crate::model::OrgId, prefix: &str) -> CoreResult<()> {
        let storage = self.locations.operator_for(org_id).await?;
        // Wall time, not the coordinator's clock: this waits for a writer, whatever time tests
        // pretend it is.
        let ttl =
            std::time::Duration::from_millis(u64::try_from(self.queue.policy.ttl_ms).unwrap_or(0));
        let until = tokio::time::Instant::now() + ttl;
        loop {
            match storage.delete_with(prefix).recursive(true).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.is_temporary() && tokio::time::Instant::now() < until => {
                    tracing::info!(prefix, error = %e, "purge: deleting again (a late write of a cancelled attempt)");
                    tokio::time::sleep(PURGE_RETRY).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `org disconnect`: pauses the organisation's schedules; credentials and backups stay, and
    /// retention drops nothing of it until it is reconnected or purged.
    pub async fn disconnect_org(&self, name: &str) -> CoreResult<OrgRecord> {
        self.set_connected(name, false).await
    }

    /// `org connect`: resumes the schedules; the next backup of each repository is full
    /// (`OrgRecord::full_after_ms`).
    pub async fn connect_org(&self, name: &str) -> CoreResult<OrgRecord> {
        self.set_connected(name, true).await
    }

    async fn set_connected(&self, name: &str, connected: bool) -> CoreResult<OrgRecord> {
        let mut org = self.registry.org_named(name).await?;
        if org.disconnected != connected {
            return Ok(org);
        }
        org.disconnected = !connected;
        if connected {
            org.full_after_ms = Some(self.clock.now_ms());
        }
        let mut batch = Batch::default();
        batch.org(&org);
        self.store.apply(batch).await?;
        tracing::info!(org = %org.name, connected, "organisation connection changed");
        Ok(org)
    }

    /// Sets an organisation's retention policy.
    pub async fn set_retention(
        &self,
        name: &str,
        policy: retention::RetentionPolicy,
    ) -> CoreResult<OrgRecord> {
        let mut org = self.registry.org_named(name).await?;
        org.retention = policy;
        let mut batch = Batch::default();
        batch.org(&org);
        self.store.apply(batch).await?;
        Ok(org)
    }
}
