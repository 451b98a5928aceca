//! The summary of a health view: counts of the repositories by state, and the age of the
//! oldest last success for the per-organisation gauge. Pure.

use serde::Serialize;

use super::{RepoHealth, State};
use crate::model::RepoStats;

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

/// Counts `all` by state, with the latest finished backup and the soonest next run among them.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::super::tests::{H, NOW, hourly, repo, stats};
    use super::super::{Active, ScheduleInput, state};
    use super::*;
    use crate::model::Status;

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
}
