//! Forgets snapshots that were never committed.
//!
//! A lease cannot stop a paused worker from writing to object storage: it may wake after its lease
//! expired and write the snapshot file of an attempt the coordinator will refuse. Such snapshots
//! carry their task id and attempt as tags; this reconciler asks the task queue whether that
//! attempt was (or may still be) committed, and forgets it when not. It runs when a stale
//! completion is refused (the snapshot id is known), when a lease expires or a backup finishes (the
//! repository is swept), and on a timer. The timed pass also removes the stale temporaries of
//! failed writes (`temporaries.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use repovault_common::manifest::tag_value;

use crate::catalog::snapshot_repos::snapshot_op;
use crate::error::CoreResult;
use crate::model::{RepoId, SnapshotId, TaskId};

#[derive(Debug, Clone)]
pub enum ForgetRequest {
    /// A refused completion named this snapshot.
    Snapshot {
        task_id: TaskId,
        attempt: u32,
        snapshot_id: SnapshotId,
    },
    /// Sweep one repository.
    Repo { repo_id: RepoId },
}

impl ForgetRequest {
    fn repo_id(&self) -> Option<&RepoId> {
        match self {
            ForgetRequest::Repo { repo_id } => Some(repo_id),
            ForgetRequest::Snapshot { .. } => None,
        }
    }
}

/// Repositories whose latest reconcile sweep failed, with the error, for the health view. In
/// memory: after a restart the first periodic sweep finds them again.
#[derive(Debug, Default)]
pub struct SweepFailures {
    failing: parking_lot::Mutex<std::collections::BTreeMap<RepoId, String>>,
}

impl SweepFailures {
    fn set(&self, repo_id: &RepoId, error: String) {
        self.failing.lock().insert(repo_id.clone(), error);
    }

    fn clear(&self, repo_id: &RepoId) {
        self.failing.lock().remove(repo_id);
    }

    /// Why the latest sweep of this repository failed; `None` when it succeeded (or never ran).
    pub fn get(&self, repo_id: &RepoId) -> Option<String> {
        self.failing.lock().get(repo_id).cloned()
    }

    pub fn count(&self) -> usize {
        self.failing.lock().len()
    }
}

/// The reconciler: forgets the snapshots of attempts that were never committed (on request and
/// in a periodic sweep) and removes the temporaries of failed writes. Methods: this file and
/// `temporaries.rs`.
pub struct Reconciler {
    pub(crate) store: crate::store::Store,
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
    pub(crate) timing: repovault_common::timing::Timing,
    pub(crate) locations: Arc<crate::storage_locations::StorageLocations>,
    pub(crate) catalog: Arc<crate::catalog::catalog_objects::Catalog>,
    pub(crate) queue: Arc<crate::tasks::task_queue::TaskQueue>,
    /// Repositories whose latest sweep failed, for the health view.
    pub sweep_failures: SweepFailures,
}

impl Reconciler {
    pub fn new(
        store: crate::store::Store,
        clock: Arc<dyn crate::clock::Clock>,
        timing: repovault_common::timing::Timing,
        locations: Arc<crate::storage_locations::StorageLocations>,
        catalog: Arc<crate::catalog::catalog_objects::Catalog>,
        queue: Arc<crate::tasks::task_queue::TaskQueue>,
    ) -> Self {
        Self {
            store,
            clock,
            timing,
            locations,
            catalog,
            queue,
            sweep_failures: SweepFailures::default(),
        }
    }

    /// Runs until the channel closes.
    pub async fn run(
        self: Arc<Self>,
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
                }) => self.forget_refused(task_id, *attempt, snapshot_id).await,
                Some(r @ ForgetRequest::Repo { .. }) => match r.repo_id() {
                    Some(id) => {
                        let result = self.sweep_repo(id).await;
                        if result.is_ok() {
                            self.sweep_failures.clear(id);
                        }
                        result.map(|_| ())
                    }
                    None => Ok(()),
                },
                None => {
                    // Temporaries of failed writes go with the periodic pass (`temporaries.rs`).
                    if let Err(e) = self.sweep_temporaries(self.clock.now_ms()).await {
                        tracing::warn!(error = %e, "sweeping temporaries failed; the next sweep retries");
                    }
                    self.sweep_all().await
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, request = ?req, "reconcile failed; the next sweep retries");
            }
        }
    }

    /// Sweeps every repository that has a backup, each on its own: a repository whose snapshots
    /// cannot be listed (damaged config, unreadable storage) is reported (a warning naming it,
    /// `repovault_reconcile_failures_total`, the gauge `repovault_reconcile_failing_repos` and the
    /// health view through [`SweepFailures`]) and the sweep goes on with the next one, so one
    /// broken repository never leaves the others' uncommitted snapshots in place. Errs only when
    /// the list of repositories itself cannot be read.
    async fn sweep_all(&self) -> CoreResult<()> {
        for r in self.store.repos().await? {
            let result = match self.store.stats(&r.id).await {
                Ok(stats) if stats.last_backup_id.is_none() => Ok(0),
                Ok(_) => self.sweep_repo(&r.id).await,
                Err(e) => Err(e.into()),
            };
            self.note_sweep(&r.id, &r.full_name(), result);
        }
        metrics::gauge!("repovault_reconcile_failing_repos")
            .set(self.sweep_failures.count() as f64);
        Ok(())
    }

    /// Records how one repository's sweep ended (see [`sweep_all`]).
    fn note_sweep(&self, repo_id: &RepoId, full_name: &str, result: CoreResult<usize>) {
        match result {
            Ok(_) => self.sweep_failures.clear(repo_id),
            Err(e) => {
                metrics::counter!("repovault_reconcile_failures_total").increment(1);
                tracing::warn!(repo = %full_name, repo_id = %repo_id, error = %e, "reconcile of a repository failed; the others are swept, the next sweep retries it");
                self.sweep_failures.set(repo_id, e.to_string());
            }
        }
    }

    /// A task id's snapshot for which no completion was accepted: forget it once the task queue
    /// confirms the attempt can no longer be committed.
    async fn forget_refused(
        &self,
        task_id: &TaskId,
        attempt: u32,
        snapshot_id: &SnapshotId,
    ) -> CoreResult<()> {
        if self.queue.snapshot_verdict(task_id, attempt).await? != Some(false) {
            return Ok(());
        }
        let Some(task) = self
            .store
            .task(task_id)
            .await?
            .or(self.queue.task_status(task_id).await?)
        else {
            return Ok(());
        };
        let Some(repo) = self.catalog.open_repo(&task.repo_id).await? else {
            return Ok(());
        };
        // The verdict came from this coordinator's queue; a leader deposed meanwhile (paused,
        // cut off) would judge from a queue its successor has moved on from, and could forget
        // the snapshot of an attempt the successor committed.
        self.store.confirm_term().await?;
        let id = snapshot_id.to_string();
        let forgotten = snapshot_op(move || {
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
    pub async fn sweep_repo(&self, repo_id: &RepoId) -> CoreResult<usize> {
        let Some(repo) = self.catalog.open_repo(repo_id).await? else {
            return Ok(0);
        };
        let (repo, snapshots) = snapshot_op(move || {
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
            // A tag this coordinator did not write names no task of it: left alone.
            let Ok(task) = TaskId::from_wire(task, "snapshot tag task") else {
                continue;
            };
            if self.queue.snapshot_verdict(&task, attempt).await? == Some(false) {
                doomed.push(s.id.clone());
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let n = doomed.len();
        let ids = doomed.clone();
        // As in `forget_refused`: only while this coordinator's queue is the one that counts.
        self.store.confirm_term().await?;
        snapshot_op(move || repo.forget(&ids)).await?;
        metrics::counter!("repovault_uncommitted_snapshots_forgotten_total").increment(n as u64);
        tracing::warn!(repo = %repo_id, snapshots = ?doomed, "forgot uncommitted snapshots");
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::testing;
    use repovault_common::repo::BackupRequest;
    use repovault_common::storage::snapshot_repo_path;

    #[tokio::test(flavor = "multi_thread")]
    async fn one_unreadable_repository_does_not_stop_the_sweep_of_the_others() {
        let dir = tempfile::tempdir().expect("dir");
        let c = testing::core(dir.path()).await;
        c.registry
            .add_org("acme", crate::model::Provider::Git)
            .await
            .expect("org");
        for n in ["a", "b"] {
            let r = c
                .registry
                .add_repo(&format!("acme/{n}"), &format!("file:///src/{n}"), None)
                .await
                .expect("repo");
            c.catalog
                .ensure_snapshot_repo(&r)
                .await
                .expect("snapshot repository");
            testing::completed_backup(&c, &r, 1_000).await;
        }
        // The sweep visits repositories in the store's order: break the first one it visits.
        let order = c.store.repos().await.expect("repos");
        let (broken, healthy) = (&order[0], &order[1]);

        // The healthy one holds a snapshot of an attempt that can no longer be committed: its
        // task is queued again (not leased).
        let pending = c
            .backups
            .run_backup(&healthy.full_name())
            .await
            .expect("run");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).expect("src");
        std::fs::write(src.join("f"), "data\n").expect("file");
        let sr = c
            .catalog
            .open_repo(&healthy.id)
            .await
            .expect("open")
            .expect("exists");
        let req = BackupRequest {
            host: "repovault".into(),
            label: healthy.full_name(),
            tags: vec![format!("task={}", pending.task_id), "attempt=1".into()],
            parent: None,
            as_path: "/repovault".into(),
            exclude: Vec::new(),
        };
        snapshot_op(move || sr.backup(&src, &req, &|| Ok(())))
            .await
            .expect("uncommitted snapshot");

        // The broken one's config is garbage: its snapshots cannot be listed.
        let config = dir
            .path()
            .join(snapshot_repo_path(
                broken.org_id.as_str(),
                broken.id.as_str(),
            ))
            .join("config");
        std::fs::write(&config, b"not a restic config").expect("damage");

        c.reconciler
            .sweep_all()
            .await
            .expect("the sweep goes on past the broken repository");
        let sr = c
            .catalog
            .open_repo(&healthy.id)
            .await
            .expect("open")
            .expect("exists");
        let left = snapshot_op(move || sr.snapshots()).await.expect("list");
        assert!(left.is_empty(), "uncommitted snapshot forgotten: {left:?}");
        let why = c.reconciler.sweep_failures.get(&broken.id);
        assert!(why.is_some(), "the broken repository is reported");
        assert_eq!(c.reconciler.sweep_failures.get(&healthy.id), None);
        assert_eq!(c.reconciler.sweep_failures.count(), 1);
        // The health view names it.
        let h = c.health.report("acme").await.expect("health");
        assert_eq!(
            h.rows.iter().filter(|r| r.housekeeping.is_some()).count(),
            1
        );
        let row = h
            .rows
            .iter()
            .find(|r| r.repo.full_name() == broken.full_name())
            .expect("row");
        assert!(row.housekeeping.is_some());
    }
}
