//! The operator's view: one state per repository, the summary over many, and a
//! repository's timeline. Pure: everything, `now` included, comes in as arguments; the core
//! (`core/health.rs`) gathers the inputs.
//!
//! States, first match wins:
//! 1. `paused`: its organisation is disconnected (schedules paused).
//! 2. `pending`: a backup of it is queued or running.
//! 3. `never`: no backup of it has finished yet.
//! 4. `error`: its latest backup failed (with that backup's message).
//! 5. `error`: its latest backup failed verification (with the failing checks).
//! 6. `late`: a scheduled run is overdue (see [`is_late`]).
//! 7. `pending`: its latest backup's verification has not finished (or predates verification).
//! 8. `backed_up`: otherwise; so `backed_up` needs the latest backup verified.

use serde::Serialize;

use crate::model::{BackupRecord, DrillRecord, RepoRecord, RepoStats, Status, VerifyStatus};
use crate::schedule::{Plan, repo_offset_ms};

/// A repository's state in the health view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    BackedUp,
    Pending,
    Error,
    Never,
    Paused,
    Late,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::BackedUp => "backed_up",
            State::Pending => "pending",
            State::Error => "error",
            State::Never => "never",
            State::Paused => "paused",
            State::Late => "late",
        }
    }
}

/// A backup of the repository that is not finished, as the queue has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    Queued,
    Running,
}

/// The slots of a repository's effective schedule around `now`, computed once per
/// (schedule, zone) by [`Slots::of`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slots {
    /// Start of the slot before the one containing now: its run must have succeeded by now,
    /// a whole slot later.
    pub previous_ms: Option<i64>,
    /// Start and length of the next slot.
    pub next: Option<(i64, i64)>,
}

impl Slots {
    pub fn of(plan: &Plan, now_ms: i64) -> Self {
        let previous_ms = plan
            .slot_at(now_ms)
            .and_then(|(s, _)| plan.prev_slot(s - 1));
        let next = plan
            .next_slot(now_ms)
            .and_then(|s| plan.next_slot(s).map(|n| (s, n - s)));
        Self { previous_ms, next }
    }
}

/// The repository's schedule, as health needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleInput {
    /// `None`: not scheduled (or the schedule does not parse).
    pub slots: Option<Slots>,
    /// The last slot the materialiser handled for it (run or skipped); `None`: its schedule
    /// has not reached a slot yet (a schedule just switched on starts with the next slot).
    pub last_slot_ms: Option<i64>,
}

/// One repository in the health view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoHealth {
    pub state: State,
    /// The failed backup's error (`error`), `queued`/`running` (`pending`), why it is late.
    pub message: String,
    /// Components the last successful backup did not include.
    pub incomplete: Vec<String>,
    /// When its latest backup finished (whatever its outcome).
    pub last_backup_at_ms: Option<i64>,
    /// When its next scheduled run is due (slot start plus its stable offset); `None`: not
    /// scheduled, paused, or deleted at the source.
    pub next_run_at_ms: Option<i64>,
}

/// Late: the slot before the current one started, a whole slot length has passed since (the
/// grace: one slot, so a run spread into its slot and then slow still has the rest of the
/// slot and the whole next one), and no backup has succeeded since that slot started. A
/// repository the materialiser never handled, or created after that slot, is not late.
pub fn is_late(
    repo: &RepoRecord,
    stats: &RepoStats,
    schedule: &ScheduleInput,
    _now_ms: i64,
) -> Option<i64> {
    let previous = schedule.slots?.previous_ms?;
    schedule.last_slot_ms?;
    if repo.deleted || repo.created_at_ms > previous {
        return None;
    }
    match stats.last_success_at_ms {
        Some(t) if t >= previous => None,
        _ => Some(previous),
    }
}

/// The state of one repository. `disconnected`: its organisation's flag; `last_error`: the
/// error of its latest backup when that failed (read from the record by the caller).
pub fn state(
    repo: &RepoRecord,
    stats: &RepoStats,
    disconnected: bool,
    schedule: &ScheduleInput,
    active: Option<Active>,
    last_error: Option<&str>,
    now_ms: i64,
) -> RepoHealth {
    let next_run_at_ms = if disconnected || repo.deleted {
        None
    } else {
        schedule
            .slots
            .and_then(|s| s.next)
            .map(|(start, len)| start + repo_offset_ms(&repo.id, len))
    };
    let (state, message) = if disconnected {
        (State::Paused, "organisation disconnected".to_string())
    } else if let Some(a) = active {
        let m = match a {
            Active::Queued => "queued",
            Active::Running => "running",
        };
        (State::Pending, m.to_string())
    } else if stats.last_status.is_none() {
        (State::Never, String::new())
    } else if stats.last_status.as_deref() == Some(Status::Failed.as_str()) {
        (
            State::Error,
            last_error.unwrap_or("the latest backup failed").to_string(),
        )
    } else if stats.last_success_verification == Some(VerifyStatus::Failed) {
        (
            State::Error,
            format!(
                "the latest backup failed verification: {}",
                stats
                    .last_success_verification_detail
                    .as_deref()
                    .unwrap_or("see `backup show`")
            ),
        )
    } else if let Some(slot) = is_late(repo, stats, schedule, now_ms) {
        (
            State::Late,
            format!(
                "no successful backup since the slot of {}",
                crate::core::format_ms(slot)
            ),
        )
    } else if stats.last_success_verification != Some(VerifyStatus::Verified) {
        (
            State::Pending,
            "the latest backup is not verified yet".to_string(),
        )
    } else {
        (State::BackedUp, String::new())
    };
    RepoHealth {
        state,
        message,
        incomplete: stats.last_success_incomplete.clone(),
        last_backup_at_ms: stats.last_finished_at_ms,
        next_run_at_ms,
    }
}

/// Counts over the repositories of a health view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: u64,
    pub backed_up: u64,
    /// With a backup queued or running.
    pub active: u64,
    /// Not yet backed up.
    pub never: u64,
    /// Whose latest backup failed.
    pub failed: u64,
    pub late: u64,
    pub paused: u64,
    /// Backed up, but the last successful backup left components out.
    pub incomplete: u64,
    /// The latest finished backup over all of them.
    pub last_backup_at_ms: Option<i64>,
    /// The soonest next scheduled run.
    pub next_run_at_ms: Option<i64>,
}

pub fn summary<'a>(all: impl IntoIterator<Item = &'a RepoHealth>) -> Summary {
    let mut s = Summary::default();
    for h in all {
        s.total += 1;
        match h.state {
            State::BackedUp => s.backed_up += 1,
            State::Pending => s.active += 1,
            State::Never => s.never += 1,
            State::Error => s.failed += 1,
            State::Late => s.late += 1,
            State::Paused => s.paused += 1,
        }
        if !h.incomplete.is_empty() {
            s.incomplete += 1;
        }
        s.last_backup_at_ms = s.last_backup_at_ms.max(h.last_backup_at_ms);
        s.next_run_at_ms = match (s.next_run_at_ms, h.next_run_at_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    s
}

/// Age in seconds of the oldest last-successful backup among `stats` at `now_ms` (for the
/// per-organisation gauge); repositories never backed up are left out (they count as `never`).
pub fn oldest_success_age_s<'a>(
    stats: impl IntoIterator<Item = &'a RepoStats>,
    now_ms: i64,
) -> Option<f64> {
    stats
        .into_iter()
        .filter_map(|s| s.last_success_at_ms)
        .min()
        .map(|t| (now_ms - t).max(0) as f64 / 1000.0)
}

/// Size grew by more than this factor over the previous completed backup: "more than 200%"
/// (new > 3 × old), a large file committed by mistake.
pub const SIZE_JUMP_FACTOR: u64 = 3;

/// One line of a repository's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimelineEntry {
    Backup {
        at_ms: i64,
        backup: Box<BackupRecord>,
        /// Its size grew more than 200% against the previous completed backup.
        size_jump: bool,
    },
    /// A scheduled slot skipped because the previous backup still ran.
    SkippedSlot { at_ms: i64 },
    /// A restore drill of one of its backups (at its creation).
    Drill { at_ms: i64, drill: Box<DrillRecord> },
}

impl TimelineEntry {
    pub fn at_ms(&self) -> i64 {
        match self {
            TimelineEntry::Backup { at_ms, .. }
            | TimelineEntry::SkippedSlot { at_ms }
            | TimelineEntry::Drill { at_ms, .. } => *at_ms,
        }
    }
}

/// Every backup oldest first (by creation; ties by id), skipped slots interleaved by time, and
/// the size jumps flagged against the previous completed backup.
pub fn timeline(
    mut backups: Vec<BackupRecord>,
    skipped_slots: &[i64],
    drills: Vec<DrillRecord>,
) -> Vec<TimelineEntry> {
    backups.sort_by(|a, b| {
        a.created_at_ms
            .cmp(&b.created_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut out = Vec::with_capacity(backups.len() + skipped_slots.len());
    let mut previous_size: Option<u64> = None;
    for b in backups {
        let completed = b.status == Status::Completed;
        let size_jump = completed
            && previous_size
                .is_some_and(|p| p > 0 && b.size_bytes > p.saturating_mul(SIZE_JUMP_FACTOR));
        if completed {
            previous_size = Some(b.size_bytes);
        }
        out.push(TimelineEntry::Backup {
            at_ms: b.created_at_ms,
            backup: Box::new(b),
            size_jump,
        });
    }
    out.extend(
        skipped_slots
            .iter()
            .map(|&at_ms| TimelineEntry::SkippedSlot { at_ms }),
    );
    out.extend(drills.into_iter().map(|d| TimelineEntry::Drill {
        at_ms: d.created_at_ms,
        drill: Box::new(d),
    }));
    // Stable: backups keep their order among equal times, and come before a slot skipped then.
    out.sort_by_key(TimelineEntry::at_ms);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    const H: i64 = 3_600_000;
    /// 2026-11-23T10:30:00Z
    const NOW: i64 = 1_795_429_800_000;

    fn repo(id: &str) -> RepoRecord {
        RepoRecord {
            id: id.into(),
            org_id: "o".into(),
            org_name: "org".into(),
            name: id.into(),
            url: "git://x/y".into(),
            sealed_token: None,
            sealed_master_key: None,
            created_at_ms: NOW - 100 * H,
            forge_id: None,
            archived: false,
            deleted: false,
            schedule: None,
            on_push: None,
        }
    }

    fn stats(status: Option<Status>, finished: i64, success: Option<i64>) -> RepoStats {
        RepoStats {
            last_status: status.map(|s| s.as_str().to_string()),
            last_finished_at_ms: status.map(|_| finished),
            last_success_at_ms: success,
            last_success_verification: success.map(|_| VerifyStatus::Verified),
            ..Default::default()
        }
    }

    #[test]
    fn backed_up_needs_the_latest_backup_verified() {
        let r = repo("r1");
        let sched = hourly();
        let at = NOW - 20 * 60_000;
        let mut s = stats(Some(Status::Completed), at, Some(at));
        assert_eq!(
            state(&r, &s, false, &sched, None, None, NOW).state,
            State::BackedUp
        );
        for pending in [
            None,
            Some(VerifyStatus::Pending),
            Some(VerifyStatus::Running),
        ] {
            s.last_success_verification = pending;
            let h = state(&r, &s, false, &sched, None, None, NOW);
            assert_eq!(h.state, State::Pending, "{pending:?}");
            assert!(h.message.contains("not verified"), "{}", h.message);
        }
        s.last_success_verification = Some(VerifyStatus::Failed);
        s.last_success_verification_detail = Some("git_fsck fail: missing blob 1234".into());
        let h = state(&r, &s, false, &sched, None, None, NOW);
        assert_eq!(h.state, State::Error);
        assert!(
            h.message.contains("git_fsck fail: missing blob 1234"),
            "{}",
            h.message
        );
        assert_eq!(summary([&h]).failed, 1);
    }

    fn hourly() -> ScheduleInput {
        let plan = Plan::new(&Schedule::parse("hourly").unwrap(), "UTC").unwrap();
        ScheduleInput {
            slots: Some(Slots::of(&plan, NOW)),
            last_slot_ms: Some(NOW - 30 * 60_000),
        }
    }

    #[test]
    fn slots_around_now() {
        let s = hourly().slots.unwrap();
        // Now is 10:30: the current slot began at 10:00, the previous at 09:00, the next at 11:00.
        assert_eq!(s.previous_ms, Some(NOW - 90 * 60_000));
        assert_eq!(s.next, Some((NOW + 30 * 60_000, H)));
    }

    #[test]
    fn each_state() {
        let r = repo("r1");
        let ok = stats(
            Some(Status::Completed),
            NOW - 20 * 60_000,
            Some(NOW - 20 * 60_000),
        );
        let sched = hourly();

        let h = state(&r, &ok, false, &sched, None, None, NOW);
        assert_eq!(h.state, State::BackedUp);
        assert_eq!(h.last_backup_at_ms, Some(NOW - 20 * 60_000));
        let next = h.next_run_at_ms.unwrap();
        assert!(
            (NOW + 30 * 60_000..NOW + 90 * 60_000).contains(&next),
            "{next}"
        );

        let h = state(&r, &ok, true, &sched, Some(Active::Queued), None, NOW);
        assert_eq!((h.state, h.next_run_at_ms), (State::Paused, None));

        let h = state(&r, &ok, false, &sched, Some(Active::Running), None, NOW);
        assert_eq!((h.state, h.message.as_str()), (State::Pending, "running"));

        let never = RepoStats::default();
        let h = state(&r, &never, false, &sched, None, None, NOW);
        assert_eq!((h.state, h.last_backup_at_ms), (State::Never, None));
        let h = state(&r, &never, false, &sched, Some(Active::Queued), None, NOW);
        assert_eq!(h.state, State::Pending);

        let failed = stats(Some(Status::Failed), NOW - H, Some(NOW - 50 * H));
        let h = state(
            &r,
            &failed,
            false,
            &sched,
            None,
            Some("clone: not found"),
            NOW,
        );
        assert_eq!(
            (h.state, h.message.as_str()),
            (State::Error, "clone: not found")
        );

        // Last success at 08:55, before the 09:00 slot, which is a whole slot old at 10:30.
        let stale = stats(
            Some(Status::Completed),
            NOW - 95 * 60_000,
            Some(NOW - 95 * 60_000),
        );
        let h = state(&r, &stale, false, &sched, None, None, NOW);
        assert_eq!(h.state, State::Late, "{h:?}");
        assert!(h.message.contains("09:00"), "{}", h.message);
        // Within the grace: success at 09:05 is after the previous slot's start.
        let fresh = stats(
            Some(Status::Completed),
            NOW - 85 * 60_000,
            Some(NOW - 85 * 60_000),
        );
        assert_eq!(
            state(&r, &fresh, false, &sched, None, None, NOW).state,
            State::BackedUp
        );
        // Not scheduled: never late.
        let none = ScheduleInput::default();
        let h = state(&r, &stale, false, &none, None, None, NOW);
        assert_eq!((h.state, h.next_run_at_ms), (State::BackedUp, None));
        // A schedule the materialiser has not reached yet, or a repository added after the
        // previous slot: not late.
        let fresh_schedule = ScheduleInput {
            last_slot_ms: None,
            ..sched
        };
        assert_eq!(
            state(&r, &stale, false, &fresh_schedule, None, None, NOW).state,
            State::BackedUp
        );
        let mut young = repo("r2");
        young.created_at_ms = NOW - 60 * 60_000;
        assert_eq!(
            state(&young, &stale, false, &sched, None, None, NOW).state,
            State::BackedUp
        );
        // Deleted at the source: no next run, not late.
        let mut gone = repo("r3");
        gone.deleted = true;
        let h = state(&gone, &stale, false, &sched, None, None, NOW);
        assert_eq!((h.state, h.next_run_at_ms), (State::BackedUp, None));
    }

    #[test]
    fn skipped_components_are_reported() {
        let mut s = stats(Some(Status::Completed), NOW, Some(NOW));
        s.last_success_incomplete = vec!["settings".into()];
        let h = state(
            &repo("r"),
            &s,
            false,
            &ScheduleInput::default(),
            None,
            None,
            NOW,
        );
        assert_eq!(h.state, State::BackedUp);
        assert_eq!(h.incomplete, vec!["settings".to_string()]);
    }

    #[test]
    fn summary_over_a_seeded_mix() {
        let sched = hourly();
        let ok = stats(
            Some(Status::Completed),
            NOW - 10 * 60_000,
            Some(NOW - 10 * 60_000),
        );
        let stale = stats(Some(Status::Completed), NOW - 5 * H, Some(NOW - 5 * H));
        let failed = stats(Some(Status::Failed), NOW - 60_000, Some(NOW - 2 * H));
        let mut partial = ok.clone();
        partial.last_success_incomplete = vec!["wiki".into()];
        let never = RepoStats::default();
        let rows = [
            state(&repo("a"), &ok, false, &sched, None, None, NOW),
            state(&repo("b"), &partial, false, &sched, None, None, NOW),
            state(&repo("c"), &stale, false, &sched, None, None, NOW),
            state(&repo("d"), &failed, false, &sched, None, Some("boom"), NOW),
            state(&repo("e"), &never, false, &sched, None, None, NOW),
            state(
                &repo("f"),
                &never,
                false,
                &sched,
                Some(Active::Queued),
                None,
                NOW,
            ),
            state(&repo("g"), &ok, true, &sched, None, None, NOW),
            state(
                &repo("h"),
                &ok,
                false,
                &ScheduleInput::default(),
                None,
                None,
                NOW,
            ),
        ];
        let states: Vec<State> = rows.iter().map(|h| h.state).collect();
        use State::*;
        assert_eq!(
            states,
            [
                BackedUp, BackedUp, Late, Error, Never, Pending, Paused, BackedUp
            ]
        );
        let s = summary(&rows);
        assert_eq!(
            (
                s.total,
                s.backed_up,
                s.active,
                s.never,
                s.failed,
                s.late,
                s.paused,
                s.incomplete
            ),
            (8, 3, 1, 1, 1, 1, 1, 1)
        );
        assert_eq!(s.last_backup_at_ms, Some(NOW - 60_000));
        // The soonest next run among the scheduled, connected ones: in the 11:00 slot.
        let next = s.next_run_at_ms.unwrap();
        assert!((NOW + 30 * 60_000..NOW + 90 * 60_000).contains(&next));
        assert_eq!(
            next,
            rows.iter().filter_map(|h| h.next_run_at_ms).min().unwrap()
        );
        assert_eq!(summary(&[]), Summary::default());
    }

    #[test]
    fn oldest_success_age() {
        let a = stats(Some(Status::Completed), NOW - 10_000, Some(NOW - 10_000));
        let b = stats(Some(Status::Completed), NOW - 70_000, Some(NOW - 70_000));
        let n = RepoStats::default();
        assert_eq!(oldest_success_age_s([&a, &b, &n], NOW), Some(70.0));
        assert_eq!(oldest_success_age_s([&n], NOW), None);
    }

    fn backup(id: &str, created: i64, status: Status, size: u64) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            org_id: "o".into(),
            repo_id: "r".into(),
            org_name: "org".into(),
            repo_name: "r".into(),
            backup_type: crate::model::BackupType::Full,
            trigger: crate::model::Trigger::Manual,
            status,
            error: None,
            created_at_ms: created,
            started_at_ms: None,
            finished_at_ms: None,
            size_bytes: size,
            added_bytes: 0,
            counts: Default::default(),
            components: Default::default(),
            snapshot_id: None,
            parent_snapshot_id: None,
            task_id: String::new(),
            attempt: 1,
            bytes_received: 0,
            priority: 0,
            worker_id: None,
            verification: None,
        }
    }

    fn drill(id: &str, created: i64) -> DrillRecord {
        DrillRecord {
            id: id.into(),
            org_id: "o".into(),
            org_name: "org".into(),
            repo_id: "r".into(),
            repo_full_name: "org/r".into(),
            backup_id: "b1".into(),
            snapshot_id: String::new(),
            trigger: crate::model::Trigger::Schedule,
            status: Status::Completed,
            passed: Some(true),
            checks: Vec::new(),
            summary: None,
            error: None,
            created_at_ms: created,
            finished_at_ms: Some(created + 1),
            task_id: String::new(),
        }
    }

    #[test]
    fn timeline_orders_interleaves_and_flags_jumps() {
        let list = vec![
            backup("b4", 40, Status::Completed, 400),
            backup("b1", 10, Status::Completed, 100),
            backup("b3", 30, Status::Failed, 0),
            backup("b2", 20, Status::Completed, 300),
            backup("b5", 50, Status::Completed, 1201),
        ];
        let t = timeline(list, &[25, 50], vec![drill("d1", 35)]);
        let shape: Vec<(i64, String, bool)> = t
            .iter()
            .map(|e| match e {
                TimelineEntry::Backup {
                    at_ms,
                    backup,
                    size_jump,
                } => (*at_ms, backup.id.clone(), *size_jump),
                TimelineEntry::SkippedSlot { at_ms } => (*at_ms, "skipped".into(), false),
                TimelineEntry::Drill { at_ms, drill } => {
                    (*at_ms, drill.outcome().as_str().into(), false)
                }
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (10, "b1".into(), false),
                // 300 is +200% of 100: not more than 200%.
                (20, "b2".into(), false),
                (25, "skipped".into(), false),
                // A failed backup neither jumps nor resets the reference.
                (30, "b3".into(), false),
                (35, "passed".into(), false),
                (40, "b4".into(), false),
                // 1201 > 3 × 400.
                (50, "b5".into(), true),
                (50, "skipped".into(), false),
            ]
        );
        assert!(timeline(Vec::new(), &[], Vec::new()).is_empty());
    }
}
