//! The operator's view: gathers what [`crate::health`] needs (stats, schedules,
//! the queue, the catalog) and answers `GetHealth` / `GetTimeline`; and the health gauges.
//!
//! "Now" is the schedules' clock (`Schedules::now_ms`), so a test's injected clock moves the
//! health view with the materialiser.

use crate::model::{OrgId, RepoId};
use std::sync::Arc;

use crate::catalog::org_registry::Registry;
use crate::catalog::reconcile::Reconciler;
use crate::schedule::schedule_runs::Schedules;
use crate::store::Store;
use crate::tasks::task_queue::TaskQueue;
use crate::verification::drills::Drills;
use crate::verification::verify_ledger::VerifyLedger;
use std::collections::HashMap;

use crate::error::CoreResult;
use crate::health::{self, Active, RepoHealth, ScheduleInput, Slots};
use crate::model::{
    CopyState, DrillRecord, DrillStatus, OrgRecord, RepoRecord, RepoStats, Status, TaskKind,
    VerifyStatus,
};
use crate::paging::{Page, Paged, SortKey};
use crate::schedule::{Plan, Schedule};
use crate::tasks::lease_state::TaskState;

/// One repository's row of the health view.
pub struct RepoRow {
    pub repo: RepoRecord,
    pub stats: RepoStats,
    pub health: RepoHealth,
    /// Why its latest reconcile sweep failed, if it did.
    pub housekeeping: Option<String>,
    /// The latest successful backup's second copy, when the organisation keeps one.
    pub copy: Option<CopyState>,
}

/// An organisation's latest drill and when the next is due.
pub struct OrgDrill {
    pub org: OrgRecord,
    pub latest: Option<DrillRecord>,
    pub next_at_ms: Option<i64>,
}

/// The health view ([`Health::report`]).
pub struct HealthReport {
    pub rows: Vec<RepoRow>,
    pub summary: health::Summary,
    /// Repositories with a backup whose packs were read back within the bound, and overdue.
    pub readback_current: u64,
    pub readback_overdue: u64,
    pub drills: Vec<OrgDrill>,
}

/// A repository's timeline ([`Health::timeline`]).
pub struct Timeline {
    pub repo: RepoRecord,
    pub entries: Vec<health::TimelineEntry>,
    /// An escrow agreement holds the repository now.
    pub escrowed: bool,
}

/// The health view: per repository and organisation states, the summary, the timeline and the health gauges, computed from the store, the queue, schedules, drills, verification and the reconciler.
pub struct Health {
    pub(crate) store: Store,
    pub(crate) queue: Arc<TaskQueue>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) schedules: Arc<Schedules>,
    pub(crate) drills: Arc<Drills>,
    pub(crate) ledger: Arc<VerifyLedger>,
    pub(crate) reconciler: Arc<Reconciler>,
}

impl Health {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        queue: Arc<TaskQueue>,
        registry: Arc<Registry>,
        schedules: Arc<Schedules>,
        drills: Arc<Drills>,
        ledger: Arc<VerifyLedger>,
        reconciler: Arc<Reconciler>,
    ) -> Self {
        Self {
            store,
            queue,
            registry,
            schedules,
            drills,
            ledger,
            reconciler,
        }
    }
    /// The health of every repository (of `org` when given) with its stats, sorted by full
    /// name.
    pub async fn health(
        &self,
        org: Option<&str>,
    ) -> CoreResult<Vec<(RepoRecord, RepoStats, RepoHealth)>> {
        self.health_rows(org, true).await
    }

    /// `errors`: read the failed backups' messages (a record read each, maybe a catalog
    /// object); the gauges do without.
    async fn health_rows(
        &self,
        org: Option<&str>,
        errors: bool,
    ) -> CoreResult<Vec<(RepoRecord, RepoStats, RepoHealth)>> {
        let repos = self.registry.list_repos(org).await?;
        let states = self.store.schedule_states().await?;
        self.rows_of(repos, states, errors).await
    }

    /// One page of the health view's rows (of `org`; every organisation when empty), read
    /// through the name indexes: only the page's repositories are looked at.
    pub async fn report_rows_page(&self, org: &str, page: &Page) -> CoreResult<Paged<RepoRow>> {
        let found = self.registry.list_repos_page(Some(org), page).await?;
        let mut states = HashMap::with_capacity(found.items.len());
        for (_, (r, _)) in &found.items {
            states.insert(r.id.clone(), self.store.schedule_state(&r.id).await?);
        }
        let (keys, repos): (Vec<SortKey>, Vec<_>) = found.items.into_iter().unzip();
        let rows = self.rows_of(repos, states, true).await?;
        let rows = self.repo_rows(rows).await?;
        Ok(Paged {
            items: keys.into_iter().zip(rows).collect(),
            more: found.more,
        })
    }

    /// The rows as shown: each with its reconcile failure and its latest second copy.
    async fn repo_rows(
        &self,
        rows: Vec<(RepoRecord, RepoStats, RepoHealth)>,
    ) -> CoreResult<Vec<RepoRow>> {
        let mut out = Vec::with_capacity(rows.len());
        let mut copies_to: HashMap<OrgId, Option<String>> = HashMap::new();
        for (repo, stats, health) in rows {
            let copy = self.latest_copy(&repo, &stats, &mut copies_to).await?;
            out.push(RepoRow {
                housekeeping: self.reconciler.sweep_failures.get(&repo.id),
                repo,
                stats,
                health,
                copy,
            });
        }
        Ok(out)
    }

    /// Where the latest successful backup's second copy stands, when the repository's
    /// organisation keeps one (`copies_to` caches each organisation's copy location).
    async fn latest_copy(
        &self,
        repo: &RepoRecord,
        stats: &RepoStats,
        copies_to: &mut HashMap<OrgId, Option<String>>,
    ) -> CoreResult<Option<CopyState>> {
        let location = match copies_to.get(&repo.org_id) {
            Some(l) => l.clone(),
            None => {
                let l = self.store.org(&repo.org_id).await?.and_then(|o| o.copy_to);
                copies_to.insert(repo.org_id.clone(), l.clone());
                l
            }
        };
        let (Some(location), Some(id)) = (location, &stats.last_success_id) else {
            return Ok(None);
        };
        let copy = self.registry.backup_record(id).await?.and_then(|b| b.copy);
        Ok(Some(copy.unwrap_or(CopyState {
            location,
            status: crate::model::CopyStatus::Pending,
            detail: None,
            at_ms: stats.last_success_at_ms.unwrap_or_default(),
        })))
    }

    /// The rows of `repos` (one each, in their order), with `states` the materialiser's state
    /// of each (by repository id; a missing one is the default).
    async fn rows_of(
        &self,
        repos: Vec<(RepoRecord, RepoStats)>,
        mut states: HashMap<RepoId, crate::model::ScheduleState>,
        errors: bool,
    ) -> CoreResult<Vec<(RepoRecord, RepoStats, RepoHealth)>> {
        let now = self.schedules.now_ms();
        let orgs: HashMap<OrgId, OrgRecord> = self
            .store
            .orgs()
            .await?
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        let active: HashMap<RepoId, Active> = {
            let q = self.queue.state.lock().await;
            let mut m = HashMap::new();
            for t in q.active.values().filter(|t| t.kind == TaskKind::Backup) {
                let a = match t.lease.state {
                    TaskState::Leased { .. } => Active::Running,
                    _ => Active::Queued,
                };
                // Running wins over a second, queued one.
                let e = m.entry(t.repo_id.clone()).or_insert(a);
                if a == Active::Running {
                    *e = a;
                }
            }
            m
        };
        // (schedule, zone) -> slots around now, computed once each.
        let mut plans: HashMap<(String, String), Option<Slots>> = HashMap::new();
        let mut out = Vec::with_capacity(repos.len());
        for (repo, stats) in repos {
            let org = orgs.get(&repo.org_id);
            let disconnected = org.is_some_and(|o| o.disconnected);
            let key = org
                .and_then(|o| crate::schedule::schedule_runs::effective(repo.schedule.as_ref(), o));
            let slots = match key {
                Some(k) => *plans.entry(k).or_insert_with_key(|(s, tz)| {
                    Schedule::parse(s)
                        .and_then(|sc| Plan::new(&sc, tz))
                        .ok()
                        .map(|p| Slots::of(&p, now))
                }),
                None => None,
            };
            let schedule = ScheduleInput {
                slots,
                last_slot_ms: states.remove(&repo.id).and_then(|s| s.last_slot_ms),
            };
            let last_error = match (&stats.last_status, &stats.last_backup_id) {
                (Some(Status::Failed), Some(id)) if errors => {
                    self.registry.backup_record(id).await?.and_then(|b| b.error)
                }
                _ => None,
            };
            let h = health::state(
                &repo,
                &stats,
                disconnected,
                &schedule,
                active.get(&repo.id).copied(),
                last_error.as_deref(),
                now,
            );
            out.push((repo, stats, h));
        }
        Ok(out)
    }

    /// The health view of `org` (every organisation when empty): each repository's row with
    /// its reconcile failure, the summary, the read-back counts and each organisation's latest
    /// drill.
    pub async fn report(&self, org: &str) -> CoreResult<HealthReport> {
        let rows = self.health(Some(org)).await?;
        let summary = health::summary(rows.iter().map(|(_, _, h)| h));
        let (readback_current, readback_overdue) = self.readback_counts(&rows).await?;
        let drills = self.drill_health(org).await?;
        let rows = self.repo_rows(rows).await?;
        Ok(HealthReport {
            rows,
            summary,
            readback_current,
            readback_overdue,
            drills,
        })
    }

    /// Repositories with a backup whose packs were read back within the bound, and overdue.
    async fn readback_counts(
        &self,
        rows: &[(RepoRecord, RepoStats, RepoHealth)],
    ) -> CoreResult<(u64, u64)> {
        let now = self.schedules.now_ms();
        let max_age = self.ledger.options.read().readback_max_age;
        let (mut current, mut overdue) = (0, 0);
        for (r, st, _) in rows {
            let Some(first) = st.first_backup_at_ms() else {
                continue;
            };
            let last = self.store.maintenance(&r.id).await?.last_readback_at_ms;
            if crate::verification::readback_overdue(Some(last.unwrap_or(first)), now, max_age) {
                overdue += 1;
            } else {
                current += 1;
            }
        }
        Ok((current, overdue))
    }

    /// The latest drill of each organisation (of `org` when given) and when the next is due.
    async fn drill_health(&self, org: &str) -> CoreResult<Vec<OrgDrill>> {
        let orgs = match org {
            "" => self.store.orgs().await?,
            name => vec![self.registry.org_named(name).await?],
        };
        let now = self.schedules.now_ms();
        let mut out = Vec::with_capacity(orgs.len());
        for o in orgs {
            let latest = self
                .store
                .drills(&o.id)
                .await?
                .into_iter()
                .max_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
            let next_at_ms = self.drills.next_drill_at(&o, now);
            out.push(OrgDrill {
                org: o,
                latest,
                next_at_ms,
            });
        }
        Ok(out)
    }

    /// The timeline of the repository `full_name`: its backups, skipped slots and drills,
    /// oldest first, and whether an escrow agreement holds it now.
    pub async fn timeline(&self, full_name: &str) -> CoreResult<Timeline> {
        let repo = self.registry.repo_named(full_name).await?;
        let backups = self.registry.list_backups(Some(full_name)).await?;
        let skipped = self.store.schedule_state(&repo.id).await?.skipped_slots;
        let escrowed = self
            .store
            .active_escrow(&repo.id, self.schedules.now_ms())
            .await?
            .is_some();
        let drills: Vec<DrillRecord> = self
            .store
            .drills(&repo.org_id)
            .await?
            .into_iter()
            .filter(|d| d.repo_id == repo.id)
            .collect();
        Ok(Timeline {
            entries: health::timeline(backups, &skipped, drills),
            repo,
            escrowed,
        })
    }

    /// The health gauges, set when `/metrics` is scraped (as the queue gauges, so never stale):
    /// repositories by state, late repositories, and per organisation the age of its oldest
    /// last-successful backup (repositories never backed up are left out: they show as
    /// `never`). Organisations removed since keep their last value until the process restarts.
    pub async fn update_health_gauges(&self) -> CoreResult<()> {
        let now = self.schedules.now_ms();
        let rows = self.health_rows(None, false).await?;
        let s = health::summary(rows.iter().map(|(_, _, h)| h));
        metrics::gauge!("repovault_repos_late").set(s.late as f64);
        for (state, n) in [
            ("backed_up", s.backed_up),
            ("pending", s.active),
            ("never", s.never),
            ("error", s.failed),
            ("late", s.late),
            ("paused", s.paused),
        ] {
            metrics::gauge!("repovault_repos", "state" => state).set(n as f64);
        }
        let mut by_org: HashMap<&str, Vec<&RepoStats>> = HashMap::new();
        for (r, stats, _) in &rows {
            by_org.entry(r.org_name.as_str()).or_default().push(stats);
        }
        for (org, stats) in by_org {
            if let Some(age) = health::oldest_success_age_s(stats, now) {
                metrics::gauge!("repovault_oldest_backup_age_seconds", "org" => org.to_string())
                    .set(age);
            }
        }
        // Verification: repositories whose latest backup failed it, and per
        // organisation whether its latest drill passed (1) or not (0; absent before the first).
        let unverified = rows
            .iter()
            .filter(|(_, st, _)| st.last_success_verification == Some(VerifyStatus::Failed))
            .count();
        metrics::gauge!("repovault_repos_unverified").set(unverified as f64);
        for org in self.store.orgs().await? {
            let latest = self
                .store
                .drills(&org.id)
                .await?
                .into_iter()
                .filter(|d| d.status.is_terminal())
                .max_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
            if let Some(d) = latest {
                let passed = if d.outcome() == DrillStatus::Passed {
                    1.0
                } else {
                    0.0
                };
                metrics::gauge!("repovault_drill_passed", "org" => org.name.clone()).set(passed);
            }
        }
        Ok(())
    }
}

/// Why a drill did not pass (its error, or its failing checks); empty when it passed.
#[cfg(test)]
mod tests {
    use crate::coordinator::Coordinator;
    use std::time::Duration;

    use repovault_common::crypto::MasterKey;
    use repovault_common::storage::StorageConfig;
    use repovault_common::timing::Timing;

    use super::*;
    use crate::clock::ManualClock;
    use crate::coordinator::CoordinatorParts;
    use crate::health::State;
    use crate::kv::{KvBackend, MemoryKv};
    use crate::model::ScheduleState;
    use crate::store::{Batch, Store};

    const H: i64 = 3_600_000;

    /// The core gathers schedules, materialiser state and stats: a repository whose last
    /// success predates the previous slot is late, one backed up in this slot is not.
    #[tokio::test]
    async fn late_from_the_stored_schedule_state() {
        let dir = tempfile::tempdir().expect("dir");
        let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        // Hours ahead of the wall clock: the repositories exist before the previous slot.
        let base = crate::clock::system_now_ms() + 3 * H;
        let c = Coordinator::new(
            CoordinatorParts {
                store: Store::new(kv),
                clock: Arc::new(crate::clock::SystemClock),
                storage_config: StorageConfig::fs(dir.path().display().to_string()),
                master: MasterKey::generate(),
                timing: Timing::new(Duration::from_secs(5)).expect("timing"),
                max_attempts: 3,
            },
            tx,
        )
        .await
        .expect("core");
        c.schedules.set_clock(Arc::new(ManualClock::new(base)));
        c.registry
            .add_org("acme", crate::model::Provider::Git)
            .await
            .expect("org");
        let mut ids = Vec::new();
        for i in 0..3 {
            let r = c
                .registry
                .add_repo(&format!("acme/r{i}"), &format!("file:///src/r{i}"), None)
                .await
                .expect("repo");
            ids.push(r.id);
        }
        c.schedules
            .set_org_schedule("acme", Some("hourly"), None, None, None)
            .await
            .expect("schedule");
        let slot = base - base.rem_euclid(H);
        let success = |at: i64| RepoStats {
            last_status: Some(Status::Completed),
            last_finished_at_ms: Some(at),
            last_success_at_ms: Some(at),
            last_success_id: Some(crate::coordinator::testing::tid(&format!("b{at}"))),
            last_success_verification: Some(crate::model::VerifyStatus::Verified),
            ..Default::default()
        };
        let mut batch = Batch::default();
        batch
            .stats(&ids[0], &success(slot - H - 600_000))
            .stats(&ids[1], &success(slot + 1))
            .schedule_state(
                &ids[0],
                &ScheduleState {
                    last_slot_ms: Some(slot),
                    skipped_slots: vec![slot - H],
                },
            )
            .schedule_state(
                &ids[1],
                &ScheduleState {
                    last_slot_ms: Some(slot),
                    skipped_slots: vec![],
                },
            );
        c.store.apply(batch).await.expect("apply");

        let rows = c.health.health(Some("acme")).await.expect("health");
        let states: Vec<State> = rows.iter().map(|(_, _, h)| h.state).collect();
        assert_eq!(states, [State::Late, State::BackedUp, State::Never]);
        for (_, _, h) in &rows {
            let next = h.next_run_at_ms.expect("scheduled");
            assert!((slot + H..slot + H + H / 2).contains(&next), "{h:?}");
        }
        let r = c.health.report("acme").await.expect("report");
        let s = r.summary;
        assert_eq!((s.total, s.late, s.backed_up, s.never), (3, 1, 1, 1));
        c.health.update_health_gauges().await.expect("gauges");

        let t = c.health.timeline("acme/r0").await.expect("timeline");
        assert_eq!(t.entries.len(), 1);
        assert!(
            matches!(t.entries[0], health::TimelineEntry::SkippedSlot { at_ms } if at_ms == slot - H),
            "one skipped slot"
        );
    }
}
