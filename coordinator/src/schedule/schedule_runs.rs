//! Scheduled and on-push backups: the materialiser (due runs, exactly once per slot), the
//! schedule settings, and push webhooks (registration on the forge, deliveries, bursts).
//!
//! Exactly once per slot: the last slot materialised for a repository is persisted in
//! `schedule-state/<repo-id>`, in the same transaction as the backup it enqueues, so a
//! coordinator that stops between the two neither loses nor repeats the run.

use crate::model::{OrgId, RepoId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::catalog::org_registry::Registry;
use crate::clock::Clock;
use crate::forge_access::ForgeAccess;
use crate::secrets::Secrets;
use crate::store::Store;
use crate::tasks::kinds::Backups;
use crate::tasks::task_queue::TaskQueue;

use crate::error::{CoreError, CoreResult};
use crate::model::{BackupType, OrgRecord, RepoRecord, ScheduleSettings, TaskKind, Trigger};
use crate::schedule::webhook_bursts::Bursts;
use crate::schedule::{self, BackupKind, Due, Plan, Schedule, TypeInputs};
use crate::store::Batch;
use crate::tasks::queue_order::PRIORITY_SCHEDULED;

/// How often the materialiser looks for due runs: runs are placed at per-repository offsets
/// with one-second resolution over windows of at least 30 s (half a one-minute cron slot), so
/// a 10 s look keeps each run within 10 s of its place while a tick over 100,000 repositories
/// (well under a second, see the scheduler benchmark) costs under a tenth of the time.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(10);

/// How often open push bursts are looked at: a burst's backup starts at most this late after
/// its due time, which is set this much early (see [`Schedules::push_delay_ms`]).
pub const PUSH_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Default delay from the first push of a burst to its backup: 2 minutes, long enough for a
/// burst of pushes (a branch and its tags, a merge train) to collapse into one backup (README,
/// "On push").
pub const DEFAULT_PUSH_DELAY: std::time::Duration = std::time::Duration::from_secs(120);

/// At most this many runs are enqueued per tick (one store transaction each): after an outage
/// the catch-up of 100,000 repositories is paced at 1,000 per 10 s instead of one burst; what
/// is left stays due and goes next tick.
pub const MAX_ENQUEUE_PER_TICK: usize = 1000;

/// Runs per store transaction: three writes each (task, backup, schedule state), within the
/// store's 127 writes per transaction (`kv::MAX_TXN_OPS`).
const TXN_ITEMS: usize = 40;

/// Scheduled and on-push backups: the schedule clock, push bursts and webhook settings in memory,
/// the schedule state of each repository in the store. Methods: this file (ticks, schedule
/// settings) and `push_backups.rs` (webhooks and push bursts).
pub struct Schedules {
    clock: parking_lot::RwLock<Arc<dyn Clock>>,
    pub(crate) store: Store,
    pub(crate) queue: Arc<TaskQueue>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) backups: Arc<Backups>,
    pub(crate) forge: Arc<ForgeAccess>,
    pub(crate) secrets: Arc<Secrets>,
    pub(crate) bursts: parking_lot::Mutex<Bursts>,
    push_delay_ms: AtomicI64,
    /// Where the forge delivers webhooks: `<http_public_url>/webhooks/github`.
    hook_base: parking_lot::RwLock<Option<String>>,
    /// One tick at a time.
    tick: tokio::sync::Mutex<()>,
}

impl Schedules {
    /// Scheduling on `clock` (the coordinator's).
    pub fn new(
        clock: Arc<dyn Clock>,
        store: Store,
        queue: Arc<TaskQueue>,
        registry: Arc<Registry>,
        backups: Arc<Backups>,
        forge: Arc<ForgeAccess>,
        secrets: Arc<Secrets>,
    ) -> Self {
        Self {
            clock: parking_lot::RwLock::new(clock),
            store,
            queue,
            registry,
            backups,
            forge,
            secrets,
            bursts: Default::default(),
            push_delay_ms: AtomicI64::new(ms(DEFAULT_PUSH_DELAY)),
            hook_base: Default::default(),
            tick: Default::default(),
        }
    }
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Schedules {
    /// Moves schedule time alone onto `clock`, on a running coordinator: the end-to-end tests
    /// and the scheduler benchmark run slots on a manual clock while leases keep the wall clock.
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.write() = clock;
    }
    pub fn now_ms(&self) -> i64 {
        self.clock.read().now_ms()
    }
    pub fn set_push_delay(&self, d: std::time::Duration) {
        self.push_delay_ms.store(ms(d), Ordering::SeqCst);
    }
    /// The delay a burst is given: the configured one less one push tick, so the backup
    /// starts at most the configured delay after the first push.
    pub(crate) fn push_delay_ms(&self) -> i64 {
        (self.push_delay_ms.load(Ordering::SeqCst) - ms(PUSH_TICK)).max(0)
    }
    pub fn set_public_url(&self, base: &str) {
        *self.hook_base.write() = Some(base.trim_end_matches('/').to_string());
    }
    /// Where the forge delivers a repository's pushes:
    /// `<http_public_url>/webhooks/<forge>?repo=<repo-id>` (`forge_access::PUSH_WEBHOOK_PATH`). The id finds the repository (and
    /// its secret) without reading the body or scanning the store.
    pub fn hook_url(&self, repo_id: &RepoId) -> Option<String> {
        self.hook_base.read().as_ref().map(|b| {
            format!(
                "{b}{}?repo={repo_id}",
                crate::forge_access::PUSH_WEBHOOK_PATH
            )
        })
    }
    pub fn open_bursts(&self) -> usize {
        self.bursts.lock().len()
    }
}

/// What one materialiser tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Repositories with a schedule looked at.
    pub scheduled: usize,
    pub enqueued: usize,
    pub skipped: usize,
    /// Due, left for the next tick ([`MAX_ENQUEUE_PER_TICK`]).
    pub deferred: usize,
}

/// The effective schedule of a repository: its own, `None` to inherit its organisation's.
/// A repository's own schedule that takes it out of its organisation's (`repo set --schedule
/// none`); absent, the repository inherits the organisation's.
pub const REPO_NOT_SCHEDULED: &str = "none";

/// The schedule and zone in force for a repository whose own schedule is `own`: its own, else
/// its organisation's; `None` when it is not scheduled (no schedule, or [`REPO_NOT_SCHEDULED`]).
pub(crate) fn effective(own: Option<&String>, org: &OrgRecord) -> Option<(String, String)> {
    let s = own.or(org.schedule.schedule.as_ref())?.clone();
    if s == REPO_NOT_SCHEDULED {
        return None;
    }
    Some((s, org.schedule.timezone.clone().unwrap_or_default()))
}

fn invalid(e: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidArgument(e.to_string())
}

impl Schedules {
    /// Computes due runs and enqueues them (scheduled backups, priority
    /// [`PRIORITY_SCHEDULED`]: below manual ones), skipping (and recording) a slot whose
    /// repository still has a backup pending or running. Disconnected organisations and
    /// deleted repositories are skipped.
    pub async fn materialise_schedules(&self) -> CoreResult<TickReport> {
        let _tick = self.tick.lock().await;
        let now = self.now_ms();
        let mut report = TickReport::default();
        let orgs: HashMap<OrgId, OrgRecord> = self
            .store
            .orgs()
            .await?
            .into_iter()
            .filter(|o| !o.disconnected)
            .map(|o| (o.id.clone(), o))
            .collect();
        if orgs.is_empty() {
            return Ok(report);
        }
        let repos = self.store.repo_schedule_views().await?;
        let mut states = self.store.schedule_states().await?;
        let busy: HashSet<RepoId> = {
            let q = self.queue.state.lock().await;
            q.active
                .values()
                .filter(|t| t.kind == TaskKind::Backup)
                .map(|t| t.repo_id.clone())
                .collect()
        };
        // (schedule, zone) -> (latest slot, previous slot), computed once per tick.
        type Slots = Option<((i64, i64), Option<(i64, i64)>)>;
        let mut plans: HashMap<(String, String), (Slots, bool)> = HashMap::new();
        let mut runs = Vec::new();
        let mut skips = Vec::new();
        for repo in &repos {
            if repo.deleted {
                continue;
            }
            let Some(org) = orgs.get(&repo.org_id) else {
                continue;
            };
            let Some(key) = effective(repo.schedule.as_ref(), org) else {
                continue;
            };
            let (slots, weekly) = *plans
                .entry(key)
                .or_insert_with_key(|(s, tz)| {
                    match Schedule::parse(s).and_then(|sc| Plan::new(&sc, tz)) {
                        Ok(p) => {
                            let latest = p.slot_at(now);
                            let prev = latest
                                .and_then(|(s, _)| p.slot_at(s - 1));
                            (latest.map(|l| (l, prev)), p.schedule == Schedule::Weekly)
                        }
                        Err(e) => {
                            tracing::warn!(schedule = %s, timezone = %tz, error = %e, "schedule not usable");
                            (None, false)
                        }
                    }
                })
                ;
            let Some((latest, prev)) = slots else {
                continue;
            };
            report.scheduled += 1;
            let mut state = states.remove(&repo.id).unwrap_or_default();
            let Due::Run(slot) =
                schedule::due(repo.id.as_str(), latest, prev, state.last_slot_ms, now)
            else {
                continue;
            };
            if report.enqueued + report.skipped >= MAX_ENQUEUE_PER_TICK {
                report.deferred += 1;
                continue;
            }
            if busy.contains(&repo.id) {
                state.skip(slot);
                skips.push((repo.id.clone(), state));
                report.skipped += 1;
                metrics::counter!("repovault_schedule_slots_skipped_total").increment(1);
                tracing::info!(org = %org.name, repo_id = %repo.id, slot = %crate::clock::format_ms(slot), "scheduled run skipped: the previous backup still runs");
                continue;
            }
            let stats = self.store.stats(&repo.id).await?;
            let backup_type = schedule::backup_type(&TypeInputs {
                kind: BackupKind::Scheduled { weekly },
                last_success_at_ms: stats.last_success_at_ms,
                last_full_at_ms: stats.last_full_at_ms,
                connected_at_ms: org.full_after_ms,
                full_every_days: org.schedule.full_every_days.unwrap_or(0),
                now_ms: now,
            });
            state.last_slot_ms = Some(slot);
            let Some(full) = self.store.repo(&repo.id).await? else {
                continue;
            };
            runs.push((full, backup_type, state));
            report.enqueued += 1;
        }
        for chunk in skips.chunks(TXN_ITEMS) {
            let mut batch = Batch::default();
            for (id, state) in chunk {
                batch.schedule_state(id, state);
            }
            self.store.apply(batch).await?;
        }
        self.enqueue_scheduled(runs).await?;
        metrics::counter!("repovault_schedule_runs_total").increment(report.enqueued as u64);
        if report.enqueued + report.skipped > 0 {
            tracing::info!(
                enqueued = report.enqueued,
                skipped = report.skipped,
                deferred = report.deferred,
                "scheduled runs materialised"
            );
        }
        Ok(report)
    }

    /// Enqueues scheduled runs, each with its repository's new schedule state in the same
    /// transaction, [`TXN_ITEMS`] runs per transaction under one hold of the queue lock (one
    /// store commit per run would cap a tick at the disk's commit rate). A run equal to an
    /// active backup collapses onto it; its state is written all the same.
    async fn enqueue_scheduled(
        &self,
        runs: Vec<(RepoRecord, BackupType, crate::model::ScheduleState)>,
    ) -> CoreResult<()> {
        let items = runs
            .iter()
            .map(|(repo, backup_type, state)| {
                let mut always = Batch::default();
                always.schedule_state(&repo.id, state);
                crate::tasks::kinds::backup_enqueue(
                    repo,
                    *backup_type,
                    Trigger::Schedule,
                    PRIORITY_SCHEDULED,
                    always,
                )
            })
            .collect();
        self.queue.enqueue_all(items, TXN_ITEMS).await?;
        Ok(())
    }

    /// `org set`: schedule, time zone, full-backup interval. `schedule` `"none"` clears it.
    pub async fn set_org_schedule(
        &self,
        name: &str,
        schedule: Option<&str>,
        timezone: Option<&str>,
        full_every_days: Option<u32>,
        drill: Option<&str>,
    ) -> CoreResult<OrgRecord> {
        let mut org = self.registry.org_named(name).await?;
        let mut s: ScheduleSettings = org.schedule.clone();
        if let Some(v) = drill {
            s.drill = match v.trim() {
                "none" => Some("none".into()),
                "" | "default" => None,
                v => Some(Schedule::parse(v).map_err(invalid)?.as_str().to_string()),
            };
        }
        if let Some(v) = schedule {
            s.schedule = match v.trim() {
                "" | "none" => None,
                v => Some(Schedule::parse(v).map_err(invalid)?.as_str().to_string()),
            };
        }
        if let Some(tz) = timezone {
            schedule::parse_tz(tz).map_err(invalid)?;
            s.timezone = Some(tz.trim().to_string()).filter(|t| !t.is_empty());
        }
        if let Some(n) = full_every_days {
            if !(1..=366).contains(&n) {
                return Err(invalid("--full-every-days must be within 1..=366"));
            }
            s.full_every_days = Some(n);
        }
        org.schedule = s;
        let mut batch = Batch::default();
        batch.org(&org);
        self.store.apply(batch).await?;
        tracing::info!(org = %org.name, schedule = ?org.schedule, "schedule set");
        Ok(org)
    }

    /// `repo set --schedule`: its own schedule, `inherit`, or `none` ([`REPO_NOT_SCHEDULED`]).
    pub async fn set_repo_schedule(
        &self,
        full_name: &str,
        schedule: &str,
    ) -> CoreResult<RepoRecord> {
        let mut repo = self.registry.repo_named(full_name).await?;
        repo.schedule = match schedule.trim() {
            "inherit" | "" => None,
            REPO_NOT_SCHEDULED => Some(REPO_NOT_SCHEDULED.to_string()),
            v => Some(Schedule::parse(v).map_err(invalid)?.as_str().to_string()),
        };
        let mut batch = Batch::default();
        batch.repo(&repo);
        self.store.apply(batch).await?;
        tracing::info!(repo = %repo.full_name(), schedule = ?repo.schedule, "schedule set");
        Ok(repo)
    }

    /// The effective schedule and zone of a repository, for display (`None`: not scheduled).
    pub async fn repo_schedule(&self, repo: &RepoRecord) -> CoreResult<Option<(String, String)>> {
        let Some(org) = self.store.org(&repo.org_id).await? else {
            return Ok(None);
        };
        Ok(effective(repo.schedule.as_ref(), &org))
    }

    /// A repository's schedule for display: the schedule in force with its zone, and the slots
    /// skipped because the previous backup still ran.
    pub async fn repo_schedule_view(&self, repo: &RepoRecord) -> CoreResult<RepoScheduleView> {
        Ok(RepoScheduleView {
            effective: self.repo_schedule(repo).await?,
            skipped_slots: self.store.schedule_state(&repo.id).await?.skipped_slots,
        })
    }
}

/// [`Schedules::repo_schedule_view`].
pub struct RepoScheduleView {
    /// The schedule in force and its time zone (empty: UTC); `None` when not scheduled.
    pub effective: Option<(String, String)>,
    /// Slots skipped, in ms since the epoch.
    pub skipped_slots: Vec<i64>,
}

/// The materialiser and push loops, until `stop`.
pub async fn run(schedules: Arc<Schedules>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut push = tokio::time::interval(PUSH_TICK);
    push.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = schedules.materialise_schedules().await {
                    tracing::warn!(error = %e, "schedule materialiser");
                }
            }
            _ = push.tick() => {
                if let Err(e) = schedules.start_push_backups().await {
                    tracing::warn!(error = %e, "push backups");
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "schedule_runs_tests.rs"]
mod tests;
