//! Restore drills: on an organisation's drill schedule (or `org drill`), one backup is
//! restored by a worker into a scratch bare repository, compared with its manifest (ref tips,
//! object count, item counts) and deleted. The outcome is kept per organisation and shown in the
//! health view and the repository's timeline.

use crate::model::BackupId;
use std::sync::Arc;

use crate::catalog::org_registry::Registry;
use crate::error::{CoreError, CoreResult, not_found};
use crate::ids;
use crate::model::{DrillRecord, DrillState, OrgRecord, RepoRecord, Status, TaskKind, Trigger};
use crate::periodic::FirstPass;
use crate::schedule::{self, Plan, Schedule};
use crate::store::Batch;
use crate::store::Store;
use crate::tasks::task_queue::TaskQueue;
use crate::verification::verify_ledger::VerifyLedger;

use crate::tasks::task_queue::Enqueue;

/// Drills run after scheduled backups (5) and before maintenance (2): they prove restores, but
/// nobody waits on them.
const PRIORITY_DRILL: u8 = 3;

/// How often the drill materialiser looks at the schedules. A minute is the schedules'
/// resolution (five-field cron).
pub const DRILL_TICK: std::time::Duration = std::time::Duration::from_secs(60);

/// Restore drills: which repository each organisation drills next, on its schedule, and their records.
pub struct Drills {
    pub(crate) queue: Arc<TaskQueue>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Store,
    pub(crate) ledger: Arc<VerifyLedger>,
}

impl Drills {
    /// The drill schedule in force for an organisation: its own, else the configured default;
    /// `None` when drills are off.
    pub fn drill_schedule(&self, org: &OrgRecord) -> Option<String> {
        match org.schedule.drill.as_deref() {
            Some("none") => None,
            Some(s) => Some(s.to_string()),
            None => self.ledger.options.read().default_drill.clone(),
        }
    }

    /// Queues a drill of `org`: of `backup_id` when given (it must be a completed backup of the
    /// organisation), else of `repo`'s latest completed backup, else of the repository of the
    /// organisation drilled least recently that has a completed backup.
    pub async fn run_drill(
        &self,
        org_name: &str,
        repo: Option<&str>,
        backup_id: Option<&BackupId>,
        trigger: Trigger,
        source: DrillSource,
    ) -> CoreResult<DrillRecord> {
        let org = self.registry.org_named(org_name).await?;
        let (repo, backup) = match (backup_id, repo) {
            (Some(id), _) => {
                let b = self.registry.get_backup(id).await?;
                if b.org_id != org.id {
                    return Err(CoreError::InvalidArgument(format!(
                        "backup {id} is not a backup of organisation {}",
                        org.name
                    )));
                }
                let r = self
                    .store
                    .repo(&b.repo_id)
                    .await?
                    .ok_or_else(|| not_found("repository", b.repo_id.clone()))?;
                (r, b)
            }
            (None, Some(name)) => {
                let full = if name.contains('/') {
                    name.to_string()
                } else {
                    format!("{}/{name}", org.name)
                };
                let r = self.registry.repo_named(&full).await?;
                let stats = self.store.stats(&r.id).await?;
                let id = stats.last_success_id.ok_or_else(|| {
                    CoreError::FailedPrecondition(format!(
                        "{full} has no completed backup to drill"
                    ))
                })?;
                let b = self.registry.get_backup(&id).await?;
                (r, b)
            }
            (None, None) => {
                let r = self.least_recently_drilled(&org).await?.ok_or_else(|| {
                    CoreError::FailedPrecondition(format!(
                        "organisation {} has no repository with a completed backup to drill",
                        org.name
                    ))
                })?;
                let stats = self.store.stats(&r.id).await?;
                let id = stats
                    .last_success_id
                    .ok_or_else(|| not_found("backup", r.full_name()))?;
                let b = self.registry.get_backup(&id).await?;
                (r, b)
            }
        };
        if backup.status != Status::Completed {
            return Err(CoreError::FailedPrecondition(format!(
                "backup {} is {}: only a completed backup can be drilled",
                backup.id,
                backup.status.as_str()
            )));
        }
        if source == DrillSource::Copy {
            copy_is_done(&org, &backup)?;
        }
        let id = ids::new_drill_id();
        let task = self
            .queue
            .enqueue(Enqueue::of_existing(
                TaskKind::Drill,
                &repo,
                id.as_str(),
                None,
                PRIORITY_DRILL,
                format!("drill:{id}"),
            ))
            .await?;
        let drill = DrillRecord {
            id,
            org_id: org.id.clone(),
            org_name: org.name.clone(),
            repo_id: repo.id.clone(),
            repo_full_name: repo.full_name(),
            backup_id: backup.id.clone(),
            snapshot_id: backup.snapshot_id.clone().ok_or_else(|| {
                CoreError::FailedPrecondition(format!("backup {} has no snapshot", backup.id))
            })?,
            trigger,
            status: Status::Pending,
            passed: None,
            checks: Vec::new(),
            summary: None,
            error: None,
            created_at_ms: self.queue.clock.now_ms(),
            finished_at_ms: None,
            task_id: task.record.id.clone(),
            from_copy: source == DrillSource::Copy,
        };
        let mut batch = Batch::default();
        batch.drill(&drill);
        // Only the newest drills are kept per organisation.
        let drills = self.store.drills(&org.id).await?;
        for old in drills
            .iter()
            .rev()
            .skip(DrillRecord::KEPT.saturating_sub(1))
            .filter(|d| d.status.is_terminal())
        {
            batch.delete_drill(&org.id, &old.id);
        }
        self.store.apply(batch).await?;
        tracing::info!(org = %org.name, repo = %drill.repo_full_name, backup = %drill.backup_id, trigger = %trigger, "drill queued");
        Ok(drill)
    }

    /// An organisation's drills, newest first.
    pub async fn list_drills(&self, org_name: &str) -> CoreResult<Vec<DrillRecord>> {
        let org = self.registry.org_named(org_name).await?;
        let mut d = self.store.drills(&org.id).await?;
        d.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        Ok(d)
    }

    /// The repository (not deleted, with a completed backup) whose latest drill is oldest, or
    /// never drilled (those first, by id for a stable order).
    async fn least_recently_drilled(&self, org: &OrgRecord) -> CoreResult<Option<RepoRecord>> {
        let drills = self.store.drills(&org.id).await?;
        let mut best: Option<(i64, RepoRecord)> = None;
        for r in self.store.org_repos(&org.id).await? {
            if r.deleted || self.store.stats(&r.id).await?.last_success_id.is_none() {
                continue;
            }
            let last = drills
                .iter()
                .filter(|d| d.repo_id == r.id)
                .map(|d| d.created_at_ms)
                .max()
                .unwrap_or(i64::MIN);
            if best
                .as_ref()
                .is_none_or(|(b, br)| (last, &r.id) < (*b, &br.id))
            {
                best = Some((last, r));
            }
        }
        Ok(best.map(|(_, r)| r))
    }

    /// One pass of the drill materialiser: an organisation whose drill slot came round gets one
    /// drill. An organisation seen for the first time starts with the current slot without a
    /// drill (switching drills on for many organisations must not start them all at once).
    /// Returns the drills queued.
    pub async fn run_drills_once(&self, now: i64) -> CoreResult<u64> {
        let mut queued = 0;
        for org in self.store.orgs().await? {
            if org.disconnected {
                continue;
            }
            let Some(sched) = self.drill_schedule(&org) else {
                continue;
            };
            let plan = match Schedule::parse(&sched)
                .and_then(|s| Plan::new(&s, org.schedule.timezone.as_deref().unwrap_or("UTC")))
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(org = %org.name, error = %e, "drill schedule not understood");
                    continue;
                }
            };
            let Some(latest) = plan.slot_at(now) else {
                continue;
            };
            let mut state: DrillState = self.store.drill_state(&org.id).await?;
            let Some(last) = state.last_slot_ms else {
                state.last_slot_ms = Some(latest.0);
                let mut batch = Batch::default();
                batch.drill_state(&org.id, &state);
                self.store.apply(batch).await?;
                continue;
            };
            let previous = plan.prev_slot(latest.0 - 1).map(|p| (p, latest.0 - p));
            let schedule::Due::Run(slot) =
                schedule::due(org.id.as_str(), latest, previous, Some(last), now)
            else {
                continue;
            };
            state.last_slot_ms = Some(slot);
            let mut batch = Batch::default();
            batch.drill_state(&org.id, &state);
            self.store.apply(batch).await?;
            match self
                .run_drill(
                    &org.name,
                    None,
                    None,
                    Trigger::Schedule,
                    DrillSource::Primary,
                )
                .await
            {
                Ok(_) => queued += 1,
                // Nothing to drill yet: the slot is spent, the next one tries again.
                Err(CoreError::FailedPrecondition(why)) => {
                    tracing::info!(org = %org.name, why, "no drill this slot");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(queued)
    }

    /// The next drill slot of an organisation, for the health view.
    pub fn next_drill_at(&self, org: &OrgRecord, now: i64) -> Option<i64> {
        let sched = self.drill_schedule(org)?;
        let s = Schedule::parse(&sched).ok()?;
        let plan = Plan::new(&s, org.schedule.timezone.as_deref().unwrap_or("UTC")).ok()?;
        plan.next_slot(now)
    }
}

/// Where a drill reads the backup: the primary storage, or the organisation's second copy
/// (`drill run --from-copy`: proof that the copy alone restores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillSource {
    Primary,
    Copy,
}

/// A drill from the copy needs the backup's copy done: a pending or failed copy would fail the
/// drill for a reason the drill is not about.
fn copy_is_done(org: &crate::model::OrgRecord, b: &crate::model::BackupRecord) -> CoreResult<()> {
    let Some(location) = org.copy_to.as_deref() else {
        return Err(CoreError::FailedPrecondition(format!(
            "organisation {} has no second copy (org set --copy-to)",
            org.name
        )));
    };
    match &b.copy {
        Some(c) if c.status == crate::model::CopyStatus::Done && c.location == location => Ok(()),
        Some(c) => Err(CoreError::FailedPrecondition(format!(
            "backup {}'s copy at {} is {}: a drill from the copy needs it done",
            b.id,
            c.location,
            c.status.as_str()
        ))),
        None => Err(CoreError::FailedPrecondition(format!(
            "backup {} has no copy at {location} yet (copies are made every minute)",
            b.id
        ))),
    }
}

/// The drill loop: a pass every [`DRILL_TICK`] until `stop`.
pub async fn drill_loop(d: Arc<Drills>, stop: tokio_util::sync::CancellationToken) {
    crate::periodic::every(DRILL_TICK, FirstPass::AtStart, &stop, || async {
        match d.run_drills_once(d.queue.clock.now_ms()).await {
            Ok(n) if n > 0 => tracing::info!(queued = n, "restore drills"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "drill pass failed"),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::Coordinator;
    use crate::coordinator::testing::{completed_backup, core, core_with_repo, utc};
    use crate::model::TaskRecord;

    async fn drill_tasks(c: &Coordinator) -> Vec<TaskRecord> {
        c.queue
            .queue_snapshot()
            .await
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| t.kind == TaskKind::Drill)
            .collect()
    }

    #[tokio::test]
    async fn drills_follow_the_schedule_once_per_slot_least_recently_drilled_first() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, a) = core_with_repo(dir.path(), "a").await;
        let b = c
            .registry
            .add_repo("acme/b", "file:///b", None)
            .await
            .expect("b");
        c.registry
            .add_repo("acme/never", "file:///n", None)
            .await
            .expect("never");
        let t0 = utc("2026-11-23T10:30:00Z");
        completed_backup(&c, &a, t0 - 3_600_000).await;
        completed_backup(&c, &b, t0 - 3_600_000).await;
        c.schedules
            .set_org_schedule("acme", None, None, None, Some("daily"))
            .await
            .expect("drill schedule");

        // First sight of the organisation: the current slot is taken without a drill.
        assert_eq!(c.drills.run_drills_once(t0).await.expect("tick"), 0);
        assert_eq!(
            c.drills.run_drills_once(t0 + 60_000).await.expect("tick"),
            0
        );
        assert!(drill_tasks(&c).await.is_empty());

        // The next day's slot, past any offset: one drill, of a repository with a backup.
        let day = 86_400_000;
        assert_eq!(c.drills.run_drills_once(t0 + day).await.expect("tick"), 1);
        assert_eq!(
            c.drills
                .run_drills_once(t0 + day + 60_000)
                .await
                .expect("tick"),
            0
        );
        let first = c.drills.list_drills("acme").await.expect("list");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].trigger, Trigger::Schedule);
        assert_eq!(first[0].status, Status::Pending);
        assert_ne!(first[0].repo_full_name, "acme/never");
        let tasks = drill_tasks(&c).await;
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].subject_id, first[0].id.as_str());

        // The day after: the other repository (least recently drilled).
        assert_eq!(
            c.drills.run_drills_once(t0 + 2 * day).await.expect("tick"),
            1
        );
        let drills = c.drills.list_drills("acme").await.expect("list");
        assert_eq!(drills.len(), 2, "{drills:#?}");
        assert_ne!(drills[0].repo_id, drills[1].repo_id);

        // Off: nothing more.
        c.schedules
            .set_org_schedule("acme", None, None, None, Some("none"))
            .await
            .expect("off");
        assert_eq!(
            c.drills.run_drills_once(t0 + 3 * day).await.expect("tick"),
            0
        );
    }

    #[tokio::test]
    async fn a_manual_drill_names_its_backup_and_refuses_what_cannot_be_drilled() {
        let dir = tempfile::tempdir().expect("dir");
        let c = core(dir.path()).await;
        c.registry
            .add_org("acme", crate::model::Provider::Git)
            .await
            .expect("org");
        c.registry
            .add_org("other", crate::model::Provider::Git)
            .await
            .expect("other");
        let a = c
            .registry
            .add_repo("acme/a", "file:///a", None)
            .await
            .expect("a");
        let o = c
            .registry
            .add_repo("other/o", "file:///o", None)
            .await
            .expect("o");
        c.registry
            .add_repo("acme/empty", "file:///e", None)
            .await
            .expect("empty");
        let id = completed_backup(&c, &a, 1_000).await;
        let foreign = completed_backup(&c, &o, 1_000).await;

        let d = c
            .drills
            .run_drill(
                "acme",
                None,
                Some(&id),
                Trigger::Manual,
                DrillSource::Primary,
            )
            .await
            .expect("drill");
        assert_eq!(
            (d.backup_id.as_str(), d.trigger),
            (id.as_str(), Trigger::Manual)
        );
        assert_eq!(
            d.snapshot_id.as_str(),
            crate::coordinator::testing::SNAPSHOT
        );
        let by_repo = c
            .drills
            .run_drill(
                "acme",
                Some("a"),
                None,
                Trigger::Manual,
                DrillSource::Primary,
            )
            .await
            .expect("by repo");
        assert_eq!(by_repo.backup_id, id);

        let e = c
            .drills
            .run_drill(
                "acme",
                Some("empty"),
                None,
                Trigger::Manual,
                DrillSource::Primary,
            )
            .await
            .expect_err("no backup");
        assert!(e.to_string().contains("no completed backup"), "{e}");
        let e = c
            .drills
            .run_drill(
                "acme",
                None,
                Some(&foreign),
                Trigger::Manual,
                DrillSource::Primary,
            )
            .await
            .expect_err("other org");
        assert!(
            e.to_string().contains("not a backup of organisation acme"),
            "{e}"
        );
    }
}
