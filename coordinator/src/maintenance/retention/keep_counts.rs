//! The count rules of the retention planner, with restic's `forget --keep-*` semantics (as in
//! rustic_core's `forget`): fed the successful backups newest first, `keep_last` keeps the
//! first N, and each period count (hourly, daily, ISO-weekly, monthly, in UTC) keeps the newest
//! backup of each of the last N periods that have one.

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::{KeepReason, RetentionPolicy};

/// A period: (year, day or week or month, hour, 0).
type Period = (i32, u32, u32, u32);

/// Period keys of one timestamp, for the hourly, daily, weekly and monthly counts.
fn period(kind: KeepReason, t: DateTime<Utc>) -> Period {
    match kind {
        KeepReason::Hourly => (t.year(), t.ordinal(), t.hour(), 0),
        KeepReason::Daily => (t.year(), t.ordinal(), 0, 0),
        KeepReason::Weekly => {
            let w = t.iso_week();
            (w.year(), w.week(), 0, 0)
        }
        _ => (t.year(), t.month(), 0, 0),
    }
}

/// The count rules (`keep_last` and the periods), fed the successful backups newest first.
pub(super) struct Counts {
    /// How many more backups `keep_last` keeps.
    last_left: u32,
    /// The period counts the policy sets (a count of 0 is off).
    periods: Vec<PeriodCount>,
}

struct PeriodCount {
    reason: KeepReason,
    /// How many more periods it keeps a backup of.
    left: u32,
    /// The period of the backup it kept last: the newer backups of a period come first, so
    /// the first one seen in a period is the one kept.
    last: Option<Period>,
}

impl Counts {
    pub(super) fn new(policy: &RetentionPolicy) -> Counts {
        let periods = [
            (KeepReason::Hourly, policy.keep_hourly),
            (KeepReason::Daily, policy.keep_daily),
            (KeepReason::Weekly, policy.keep_weekly),
            (KeepReason::Monthly, policy.keep_monthly),
        ]
        .into_iter()
        .filter_map(|(reason, n)| {
            n.filter(|n| *n > 0).map(|left| PeriodCount {
                reason,
                left,
                last: None,
            })
        })
        .collect();
        Counts {
            last_left: policy.keep_last.unwrap_or(0),
            periods,
        }
    }

    /// Counts the next successful backup, finished at `time_ms`; returns the counts that keep
    /// it.
    pub(super) fn take(&mut self, time_ms: i64) -> Vec<KeepReason> {
        let mut kept = Vec::new();
        if self.last_left > 0 {
            self.last_left -= 1;
            kept.push(KeepReason::Last);
        }
        let Some(t) = DateTime::from_timestamp_millis(time_ms) else {
            return kept;
        };
        for count in &mut self.periods {
            let p = period(count.reason, t);
            if count.left > 0 && count.last != Some(p) {
                count.left -= 1;
                count.last = Some(p);
                kept.push(count.reason);
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{HOUR, NOW, dropped, failed, ok, reasons};
    use super::super::{BackupView, DAY_MS, Plan, RepoState, plan};
    use super::*;

    #[test]
    fn keep_last_counts_successful_backups_newest_first() {
        let b = [
            ok("a", 100 * DAY_MS),
            failed("x", 101 * DAY_MS),
            ok("b", 102 * DAY_MS),
            ok("c", 103 * DAY_MS),
        ];
        let policy = RetentionPolicy {
            days: 1,
            keep_last: Some(2),
            ..Default::default()
        };
        let p = plan(&b, &policy, &[], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["c", "x"]);
        assert!(reasons(&p, "b").contains(&KeepReason::Last));
    }

    #[test]
    fn daily_keeps_the_newest_of_each_of_the_last_n_days() {
        // Two backups on each of four days, 200 days ago and older.
        let base = 200 * DAY_MS;
        let b: Vec<BackupView> = (0..4)
            .flat_map(|d| {
                [
                    ok(&format!("d{d}-late"), base + d * DAY_MS),
                    ok(&format!("d{d}-early"), base + d * DAY_MS + HOUR),
                ]
            })
            .collect();
        let policy = RetentionPolicy {
            days: 0,
            keep_daily: Some(3),
            ..Default::default()
        };
        let p = plan(&b, &policy, &[], RepoState::default(), NOW);
        assert_eq!(
            dropped(&p),
            ["d0-early", "d1-early", "d2-early", "d3-early", "d3-late"]
        );
        assert_eq!(reasons(&p, "d2-late"), [KeepReason::Daily]);
    }

    #[test]
    fn hourly_weekly_and_monthly_periods() {
        // h0 at 11:30 on Sunday 2025-05-11; w1 a week before, m1 in April.
        let base = 400 * DAY_MS + 30 * 60_000;
        let b = [
            ok("h0", base),
            ok("h0b", base + 60_000),
            ok("h1", base + HOUR + 60_000),
            ok("w1", base + 7 * DAY_MS),
            ok("m1", base + 40 * DAY_MS),
        ];
        let hourly = RetentionPolicy {
            days: 0,
            keep_hourly: Some(2),
            ..Default::default()
        };
        let p = plan(&b, &hourly, &[], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["h0b", "m1", "w1"]);
        let weekly = RetentionPolicy {
            days: 0,
            keep_weekly: Some(3),
            ..Default::default()
        };
        let p = plan(&b, &weekly, &[], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["h0b", "h1"]);
        let monthly = RetentionPolicy {
            days: 0,
            keep_monthly: Some(2),
            ..Default::default()
        };
        let p = plan(&b, &monthly, &[], RepoState::default(), NOW);
        // h0 is the newest of May, m1 the newest of April.
        assert_eq!(dropped(&p), ["h0b", "h1", "w1"]);
        assert!(reasons(&p, "m1").contains(&KeepReason::Monthly));
    }

    #[test]
    fn counts_ignore_failed_backups_and_zero_means_off() {
        let b = [
            ok("a", 100 * DAY_MS),
            failed("f", 101 * DAY_MS),
            ok("b", 200 * DAY_MS),
        ];
        let policy = RetentionPolicy {
            days: 0,
            keep_last: Some(0),
            keep_daily: Some(0),
            ..Default::default()
        };
        let p = plan(&b, &policy, &[], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["b", "f"]);
        assert!(plan(&[], &policy, &[], RepoState::default(), NOW) == Plan::default());
    }
}
