//! The operator's view: one state per repository (here), the summary over many
//! (`health_summary.rs`) and a repository's timeline (`health_timeline.rs`).
//! Pure: everything, `now` included, comes in as arguments; the shell (`health_view.rs`)
//! gathers the inputs.
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

mod health_summary;
mod health_timeline;
/// The shell: the health view and timeline over the store, and the health gauges.
pub mod health_view;

use serde::Serialize;

use crate::model::{RepoRecord, RepoStats, Status, VerifyStatus};
use crate::schedule::{Plan, repo_offset_ms};

pub use health_summary::{Summary, oldest_success_age_s, summary};
pub use health_timeline::{SIZE_JUMP_FACTOR, TimelineEntry, timeline};

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
    let (state, message) = verdict(
        repo,
        stats,
        disconnected,
        schedule,
        active,
        last_error,
        now_ms,
    );
    RepoHealth {
        state,
        message,
        incomplete: stats.last_success_incomplete.clone(),
        last_backup_at_ms: stats.last_finished_at_ms,
        next_run_at_ms: next_run(repo, disconnected, schedule),
    }
}

/// When the repository's next scheduled run is due: the next slot's start plus the
/// repository's stable offset into it. `None` when paused, deleted at the source or not
/// scheduled.
fn next_run(repo: &RepoRecord, disconnected: bool, schedule: &ScheduleInput) -> Option<i64> {
    if disconnected || repo.deleted {
        return None;
    }
    schedule
        .slots
        .and_then(|s| s.next)
        .map(|(start, len)| start + repo_offset_ms(repo.id.as_str(), len))
}

/// The state and its message, by the rules of the module documentation, first match wins.
fn verdict(
    repo: &RepoRecord,
    stats: &RepoStats,
    disconnected: bool,
    schedule: &ScheduleInput,
    active: Option<Active>,
    last_error: Option<&str>,
    now_ms: i64,
) -> (State, String) {
    if disconnected {
        (State::Paused, "organisation disconnected".to_string())
    } else if let Some(a) = active {
        let m = match a {
            Active::Queued => "queued",
            Active::Running => "running",
        };
        (State::Pending, m.to_string())
    } else if stats.last_status.is_none() {
        (State::Never, String::new())
    } else if stats.last_status == Some(Status::Failed) {
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
                crate::clock::format_ms(slot)
            ),
        )
    } else if stats.last_success_verification != Some(VerifyStatus::Verified) {
        (
            State::Pending,
            "the latest backup is not verified yet".to_string(),
        )
    } else {
        (State::BackedUp, String::new())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    pub(super) const H: i64 = 3_600_000;
    /// 2026-11-23T10:30:00Z
    pub(super) const NOW: i64 = 1_795_429_800_000;

    pub(super) fn repo(id: &str) -> RepoRecord {
        RepoRecord {
            id: crate::coordinator::testing::tid(id),
            org_id: crate::coordinator::testing::tid("o"),
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

    pub(super) fn stats(status: Option<Status>, finished: i64, success: Option<i64>) -> RepoStats {
        RepoStats {
            last_status: status,
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

    pub(super) fn hourly() -> ScheduleInput {
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
}
