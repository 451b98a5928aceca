//! Forgets snapshots that were never committed.
//!
//! A lease cannot stop a paused worker from writing to object storage: it may wake after its lease
//! expired and write the snapshot file of an attempt the coordinator will refuse. Such snapshots
//! carry their task id and attempt as tags; this reconciler asks the core whether that attempt was
//! (or may still be) committed, and forgets it when not. It runs when a stale completion is
//! refused (the snapshot id is known), when a lease expires or a backup finishes (the repository
//! is swept), and on a timer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use repovault_common::manifest::tag_value;
use repovault_common::repo::{RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_common::storage::snapshot_repo_path;

use crate::core::Core;
use crate::error::{CoreError, CoreResult, not_found};

#[derive(Debug, Clone)]
pub enum ForgetRequest {
    /// A refused completion named this snapshot.
    Snapshot {
        task_id: String,
        attempt: u32,
        snapshot_id: String,
    },
    /// Sweep one repository.
    Repo { repo_id: String },
}

impl ForgetRequest {
    fn repo_id(&self) -> Option<&str> {
        match self {
            ForgetRequest::Repo { repo_id } => Some(repo_id),
            ForgetRequest::Snapshot { .. } => None,
        }
    }
}

/// Runs until the channel closes.
pub async fn run(
    core: Arc<Core>,
    mut rx: mpsc::UnboundedReceiver<ForgetRequest>,
    interval: Duration,
) {
    let mut timer = tokio::time::interval(interval);
    timer.tick().await;
    loop {
        let req = tokio::select! {
            r = rx.recv() => match r { Some(r) => Some(r), None => return },
            _ = timer.tick() => None,
        };
        let result = match &req {
            Some(ForgetRequest::Snapshot {
                task_id,
                attempt,
                snapshot_id,
            }) => forget_refused(&core, task_id, *attempt, snapshot_id).await,
            Some(r @ ForgetRequest::Repo { .. }) => {
                let id = r.repo_id().unwrap_or_default().to_string();
                sweep_repo(&core, &id).await.map(|_| ())
            }
            None => sweep_all(&core).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, request = ?req, "reconcile failed; the next sweep retries");
        }
    }
}

async fn sweep_all(core: &Arc<Core>) -> CoreResult<()> {
    for r in core.store.repos().await? {
        if core.store.stats(&r.id).await?.last_backup_id.is_some() {
            sweep_repo(core, &r.id).await?;
        }
    }
    Ok(())
}

/// A task id's snapshot for which no completion was accepted: forget it once the core confirms
/// the attempt can no longer be committed.
async fn forget_refused(
    core: &Arc<Core>,
    task_id: &str,
    attempt: u32,
    snapshot_id: &str,
) -> CoreResult<()> {
    if core.snapshot_verdict(task_id, attempt).await? != Some(false) {
        return Ok(());
    }
    let Some(task) = core
        .store
        .task(task_id)
        .await?
        .or(core.task_status(task_id).await?)
    else {
        return Ok(());
    };
    let Some(repo) = open_repo(core, &task.repo_id).await? else {
        return Ok(());
    };
    let id = snapshot_id.to_string();
    let forgotten = blocking(move || {
        let exists = repo.snapshots()?.iter().any(|s| s.id == id);
        if exists {
            repo.forget(std::slice::from_ref(&id))?;
        }
        Ok(exists)
    })
    .await?;
    if forgotten {
        metrics::counter!("repovault_uncommitted_snapshots_forgotten_total").increment(1);
        tracing::warn!(task = %task_id, attempt, snapshot = %snapshot_id, "forgot the snapshot of a refused completion");
    }
    Ok(())
}

/// Forgets every snapshot of the repository whose task attempt was not committed. Returns how
/// many were forgotten.
pub async fn sweep_repo(core: &Arc<Core>, repo_id: &str) -> CoreResult<usize> {
    let Some(repo) = open_repo(core, repo_id).await? else {
        return Ok(0);
    };
    let (repo, snapshots) = blocking(move || {
        let s = repo.snapshots()?;
        Ok((repo, s))
    })
    .await?;
    let mut doomed = Vec::new();
    for s in snapshots {
        let (Some(task), Some(attempt)) =
            (tag_value(&s.tags, "task"), tag_value(&s.tags, "attempt"))
        else {
            continue;
        };
        let Ok(attempt) = attempt.parse::<u32>() else {
            continue;
        };
        if core.snapshot_verdict(task, attempt).await? == Some(false) {
            doomed.push(s.id.clone());
        }
    }
    if doomed.is_empty() {
        return Ok(0);
    }
    let n = doomed.len();
    let ids = doomed.clone();
    blocking(move || repo.forget(&ids)).await?;
    metrics::counter!("repovault_uncommitted_snapshots_forgotten_total").increment(n as u64);
    tracing::warn!(repo = %repo_id, snapshots = ?doomed, "forgot uncommitted snapshots");
    Ok(n)
}

/// `None` when no backup ever initialised the snapshot repository (nothing to reconcile).
pub(crate) async fn open_repo(core: &Arc<Core>, repo_id: &str) -> CoreResult<Option<SnapshotRepo>> {
    let (password, master) = core.repo_keys(repo_id).await?;
    let repo = core
        .store
        .repo(repo_id)
        .await?
        .ok_or_else(|| not_found("repository", repo_id))?;
    let spec = RepoSpec {
        operator: core.storage.clone(),
        path: snapshot_repo_path(&repo.org_id, &repo.id),
    };
    blocking(move || {
        let key = RepoKey::new(&password, master.as_ref());
        match SnapshotRepo::open(&spec, key, false) {
            Ok((r, _)) => Ok(Some(r)),
            Err(repovault_common::repo::RepoError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
}

/// rustic_core is synchronous and may panic; a panic is an error here, not a crash.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, repovault_common::repo::RepoError> + Send + 'static,
) -> CoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoreError::Internal(format!("snapshot repository call panicked: {e}")))?
        .map_err(|e| CoreError::Storage(e.to_string()))
}

impl Core {
    /// The organisation key and, when known, the repository's master key.
    pub(crate) async fn repo_keys(&self, repo_id: &str) -> CoreResult<(Secret, Option<Secret>)> {
        let repo = self
            .store
            .repo(repo_id)
            .await?
            .ok_or_else(|| not_found("repository", repo_id))?;
        let org = self
            .store
            .org(&repo.org_id)
            .await?
            .ok_or_else(|| not_found("organisation", repo.org_id.clone()))?;
        let password = self.open(&crate::core::org_key_context(&org.id), &org.sealed_key)?;
        let master = match &repo.sealed_master_key {
            Some(s) => Some(self.open(&crate::core::master_key_context(&repo.id), s)?),
            None => None,
        };
        Ok((password, master))
    }
}
