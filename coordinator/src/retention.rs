//! The retention planner: which backups of one repository to keep and which to drop, as a pure
//! function of the backups, the organisation's policy, the repository's escrow agreements, the
//! repository's state and the time. No I/O; the maintenance loop (`core/retention.rs`) acts on
//! the plan.
//!
//! Counts follow restic's `forget --keep-*` semantics (as in rustic_core's `forget`): walking
//! the successful backups newest first, `keep_last` keeps the first N, and `keep_hourly` (daily,
//! weekly, monthly) keeps the newest backup of each of the last N hours (days, ISO weeks,
//! months) that have a backup. Periods are in UTC. Independently, every backup younger than
//! `days` is kept. Whatever the policy says, a plan never drops: the latest successful backup,
//! the latest verified one (when newer backups failed verification, the last one known
//! good stays), the latest backup of any status (the health view reads it), an unfinished one,
//! an escrowed
//! one, nor any backup of a repository deleted or archived at the source or of a disconnected
//! organisation (kept until purged).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Default retention in days: 90, the default the README's design decisions state ("Retention").
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// An organisation's retention policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Backups younger than this are kept.
    #[serde(default = "default_days")]
    pub days: u32,
    #[serde(default)]
    pub keep_last: Option<u32>,
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    #[serde(default)]
    pub keep_daily: Option<u32>,
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    #[serde(default)]
    pub keep_monthly: Option<u32>,
}

fn default_days() -> u32 {
    DEFAULT_RETENTION_DAYS
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            days: DEFAULT_RETENTION_DAYS,
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
        }
    }
}

impl RetentionPolicy {
    /// Whether this policy keeps every backup `other` keeps, whatever the backups: each rule is
    /// at least as generous (more days, higher counts; an absent count is 0). Every rule of the
    /// planner only keeps more when its number grows, and a backup is kept when any rule keeps
    /// it, so a change from `other` to such a policy removes nothing.
    pub fn keeps_all_of(&self, other: &RetentionPolicy) -> bool {
        let n = |v: Option<u32>| v.unwrap_or(0);
        self.days >= other.days
            && n(self.keep_last) >= n(other.keep_last)
            && n(self.keep_hourly) >= n(other.keep_hourly)
            && n(self.keep_daily) >= n(other.keep_daily)
            && n(self.keep_weekly) >= n(other.keep_weekly)
            && n(self.keep_monthly) >= n(other.keep_monthly)
    }

    /// One line for messages and the audit log, e.g. `days 30, keep-last 5`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("days {}", self.days)];
        for (name, v) in [
            ("keep-last", self.keep_last),
            ("keep-hourly", self.keep_hourly),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
        ] {
            if let Some(n) = v {
                parts.push(format!("{name} {n}"));
            }
        }
        parts.join(", ")
    }
}

/// The backups `new` drops that `old` keeps: what changing a repository's policy would remove
/// (backups `old` drops already go at the next run anyway).
pub fn newly_dropped(old: &Plan, new: &Plan) -> Vec<String> {
    new.drop
        .iter()
        .filter(|id| !old.drop.contains(id))
        .cloned()
        .collect()
}

/// What the planner needs of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupView {
    pub id: String,
    /// When it finished (its creation time while unfinished), ms since the epoch.
    pub time_ms: i64,
    pub state: BackupState,
    /// Its latest verification passed.
    pub verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupState {
    /// Completed: it has a snapshot.
    Succeeded,
    Failed,
    /// Pending or running.
    Unfinished,
}

/// One escrow agreement of the repository. While active, every finished backup of the
/// repository is escrowed (those that existed when it was enabled and those completed since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowWindow {
    pub created_at_ms: i64,
    pub until_ms: Option<i64>,
    pub released_at_ms: Option<i64>,
}

impl EscrowWindow {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.released_at_ms.is_none() && self.until_ms.is_none_or(|u| now_ms < u)
    }
}

/// Whether any agreement is active at `now_ms`: then every finished backup is escrowed.
pub fn escrow_active(escrow: &[EscrowWindow], now_ms: i64) -> bool {
    escrow.iter().any(|w| w.is_active(now_ms))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepoState {
    pub deleted_or_archived_at_source: bool,
    pub org_disconnected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeepReason {
    LatestSuccessful,
    LatestVerified,
    Latest,
    Unfinished,
    Escrowed,
    SourceGone,
    OrgDisconnected,
    WithinDays,
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl KeepReason {
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::LatestSuccessful => "latest successful",
            KeepReason::LatestVerified => "latest verified",
            KeepReason::Latest => "latest",
            KeepReason::Unfinished => "unfinished",
            KeepReason::Escrowed => "escrowed",
            KeepReason::SourceGone => "deleted or archived at the source",
            KeepReason::OrgDisconnected => "organisation disconnected",
            KeepReason::WithinDays => "within the retention days",
            KeepReason::Last => "keep-last",
            KeepReason::Hourly => "hourly",
            KeepReason::Daily => "daily",
            KeepReason::Weekly => "weekly",
            KeepReason::Monthly => "monthly",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Kept backups (newest first) and why.
    pub keep: Vec<(String, Vec<KeepReason>)>,
    /// Dropped backups, newest first.
    pub drop: Vec<String>,
}

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

/// Plans one repository.
pub fn plan(
    backups: &[BackupView],
    policy: &RetentionPolicy,
    escrow: &[EscrowWindow],
    repo_state: RepoState,
    now_ms: i64,
) -> Plan {
    let mut sorted: Vec<&BackupView> = backups.iter().collect();
    sorted.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then(b.id.cmp(&a.id)));
    let mut reasons: BTreeMap<usize, Vec<KeepReason>> = BTreeMap::new();
    let mut add = |i: usize, r: KeepReason| reasons.entry(i).or_default().push(r);

    let escrowed = escrow_active(escrow, now_ms);
    let max_age_ms = i64::from(policy.days).saturating_mul(DAY_MS);
    if let Some(i) = sorted
        .iter()
        .position(|b| b.state == BackupState::Succeeded)
    {
        add(i, KeepReason::LatestSuccessful);
        // Only named when it is not the latest successful one already.
        if let Some(v) = sorted
            .iter()
            .position(|b| b.state == BackupState::Succeeded && b.verified)
            .filter(|v| *v != i)
        {
            add(v, KeepReason::LatestVerified);
        }
    }
    if !sorted.is_empty() {
        add(0, KeepReason::Latest);
    }
    // Count buckets: (reason, remaining, last period kept).
    let mut buckets: Vec<(KeepReason, u32, Option<Period>)> = [
        (KeepReason::Hourly, policy.keep_hourly),
        (KeepReason::Daily, policy.keep_daily),
        (KeepReason::Weekly, policy.keep_weekly),
        (KeepReason::Monthly, policy.keep_monthly),
    ]
    .into_iter()
    .filter_map(|(r, n)| n.filter(|n| *n > 0).map(|n| (r, n, None)))
    .collect();
    let mut last_left = policy.keep_last.unwrap_or(0);
    for (i, b) in sorted.iter().enumerate() {
        if b.state == BackupState::Unfinished {
            add(i, KeepReason::Unfinished);
            continue;
        }
        if escrowed && b.time_ms <= now_ms {
            add(i, KeepReason::Escrowed);
        }
        if repo_state.deleted_or_archived_at_source {
            add(i, KeepReason::SourceGone);
        }
        if repo_state.org_disconnected {
            add(i, KeepReason::OrgDisconnected);
        }
        if now_ms.saturating_sub(b.time_ms) < max_age_ms {
            add(i, KeepReason::WithinDays);
        }
        if b.state != BackupState::Succeeded {
            continue;
        }
        if last_left > 0 {
            last_left -= 1;
            add(i, KeepReason::Last);
        }
        let Some(t) = DateTime::from_timestamp_millis(b.time_ms) else {
            continue;
        };
        for (reason, left, last) in buckets.iter_mut() {
            let p = period(*reason, t);
            if *left > 0 && *last != Some(p) {
                *left -= 1;
                *last = Some(p);
                add(i, *reason);
            }
        }
    }

    let mut out = Plan::default();
    for (i, b) in sorted.iter().enumerate() {
        match reasons.remove(&i) {
            Some(mut r) => {
                r.sort();
                r.dedup();
                out.keep.push((b.id.clone(), r));
            }
            None => out.drop.push(b.id.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 60 * 60 * 1000;
    /// 2026-06-15T12:00:00Z, a Monday.
    const NOW: i64 = 1_781_524_800_000;

    fn ok(id: &str, age_ms: i64) -> BackupView {
        BackupView {
            id: id.into(),
            time_ms: NOW - age_ms,
            state: BackupState::Succeeded,
            verified: true,
        }
    }
    fn failed(id: &str, age_ms: i64) -> BackupView {
        BackupView {
            state: BackupState::Failed,
            ..ok(id, age_ms)
        }
    }
    fn days(n: u32) -> RetentionPolicy {
        RetentionPolicy {
            days: n,
            ..Default::default()
        }
    }
    fn dropped(p: &Plan) -> Vec<&str> {
        let mut v: Vec<&str> = p.drop.iter().map(String::as_str).collect();
        v.sort();
        v
    }
    fn reasons<'a>(p: &'a Plan, id: &str) -> &'a [KeepReason] {
        &p.keep.iter().find(|(k, _)| k == id).expect(id).1
    }

    #[test]
    fn shortening_is_told_from_lengthening_and_counted() {
        let keep_last = |n| RetentionPolicy {
            keep_last: Some(n),
            ..days(1)
        };
        assert!(days(90).keeps_all_of(&days(30)));
        assert!(!days(0).keeps_all_of(&days(90)));
        assert!(keep_last(5).keeps_all_of(&days(1)));
        assert!(!days(90).keeps_all_of(&keep_last(5)), "a count dropped");
        assert_eq!(keep_last(5).describe(), "days 1, keep-last 5");

        let backups = [
            ok("d", 0),
            ok("c", 2 * HOUR),
            ok("b", 30 * HOUR),
            ok("a", 80 * HOUR),
        ];
        let now = |p: &RetentionPolicy| plan(&backups, p, &[], RepoState::default(), NOW);
        let (old, new) = (now(&days(90)), now(&days(0)));
        // The latest stays whatever the policy; the other three would go.
        assert_eq!(newly_dropped(&old, &new), ["c", "b", "a"]);
        assert!(newly_dropped(&new, &old).is_empty());
        // Two days keep c and b: only a goes.
        assert_eq!(newly_dropped(&old, &now(&days(2))), ["a"]);
    }

    #[test]
    fn default_policy_is_90_days() {
        assert_eq!(RetentionPolicy::default().days, 90);
        let parsed: RetentionPolicy = serde_json::from_str("{}").expect("empty policy");
        assert_eq!(parsed, RetentionPolicy::default());
    }

    #[test]
    fn drops_exactly_what_is_older_than_the_days() {
        let b = [
            ok("new", HOUR),
            ok("edge", 10 * DAY_MS - 1),
            ok("old", 10 * DAY_MS),
            ok("older", 40 * DAY_MS),
        ];
        let p = plan(&b, &days(10), &[], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["old", "older"]);
        assert_eq!(
            reasons(&p, "new"),
            [
                KeepReason::LatestSuccessful,
                KeepReason::Latest,
                KeepReason::WithinDays
            ]
        );
        assert_eq!(reasons(&p, "edge"), [KeepReason::WithinDays]);
    }

    #[test]
    fn never_drops_the_latest_successful_backup() {
        // All old, and newer failures: the newest success stays, as does the newest record.
        let b = [
            failed("f1", 100 * DAY_MS),
            ok("s1", 200 * DAY_MS),
            ok("s0", 300 * DAY_MS),
            failed("f0", 400 * DAY_MS),
        ];
        let p = plan(&b, &days(90), &[], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["f0", "s0"]);
        assert_eq!(reasons(&p, "s1"), [KeepReason::LatestSuccessful]);
        assert_eq!(reasons(&p, "f1"), [KeepReason::Latest]);
    }

    #[test]
    fn never_drops_the_latest_verified_backup() {
        // The two newest completed but failed verification (a broken fetch stored a broken
        // mirror): the last one known good stays though it is past the days.
        let unverified = |id: &str, age| BackupView {
            verified: false,
            ..ok(id, age)
        };
        let b = [
            unverified("u1", 100 * DAY_MS),
            unverified("u0", 150 * DAY_MS),
            ok("v1", 200 * DAY_MS),
            ok("v0", 300 * DAY_MS),
        ];
        let p = plan(&b, &days(90), &[], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["u0", "v0"]);
        assert_eq!(reasons(&p, "v1"), [KeepReason::LatestVerified]);
        assert_eq!(
            reasons(&p, "u1"),
            [KeepReason::LatestSuccessful, KeepReason::Latest]
        );
    }

    #[test]
    fn unfinished_backups_are_never_dropped() {
        let b = [
            BackupView {
                id: "p".into(),
                time_ms: NOW - 200 * DAY_MS,
                state: BackupState::Unfinished,
                verified: false,
            },
            ok("s", 100 * DAY_MS),
            ok("s0", 300 * DAY_MS),
        ];
        let p = plan(&b, &days(1), &[], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["s0"]);
        assert!(reasons(&p, "p").contains(&KeepReason::Unfinished));
    }

    #[test]
    fn escrow_keeps_everything_while_active_and_nothing_after() {
        let b = [ok("a", HOUR), ok("b", 100 * DAY_MS), ok("c", 200 * DAY_MS)];
        let active = EscrowWindow {
            created_at_ms: NOW - 150 * DAY_MS,
            until_ms: Some(NOW + DAY_MS),
            released_at_ms: None,
        };
        let p = plan(&b, &days(90), &[active], RepoState::default(), NOW);
        assert!(p.drop.is_empty(), "{p:?}");
        assert!(reasons(&p, "c").contains(&KeepReason::Escrowed));
        // Expired, or released: ordinary retention again.
        let p = plan(&b, &days(90), &[active], RepoState::default(), NOW + DAY_MS);
        assert_eq!(dropped(&p), ["b", "c"]);
        let released = EscrowWindow {
            released_at_ms: Some(NOW - 1),
            ..active
        };
        let p = plan(&b, &days(90), &[released], RepoState::default(), NOW);
        assert_eq!(dropped(&p), ["b", "c"]);
        assert!(escrow_active(&[released, active], NOW));
        let open_ended = EscrowWindow {
            until_ms: None,
            ..active
        };
        assert!(open_ended.is_active(NOW + 1000 * DAY_MS));
    }

    #[test]
    fn source_gone_and_disconnected_keep_everything() {
        let b = [
            ok("a", 100 * DAY_MS),
            ok("b", 200 * DAY_MS),
            failed("c", 300 * DAY_MS),
        ];
        for (state, reason) in [
            (
                RepoState {
                    deleted_or_archived_at_source: true,
                    org_disconnected: false,
                },
                KeepReason::SourceGone,
            ),
            (
                RepoState {
                    deleted_or_archived_at_source: false,
                    org_disconnected: true,
                },
                KeepReason::OrgDisconnected,
            ),
        ] {
            let p = plan(&b, &days(1), &[], state, NOW);
            assert!(p.drop.is_empty(), "{p:?}");
            assert!(reasons(&p, "b").contains(&reason));
        }
    }

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
