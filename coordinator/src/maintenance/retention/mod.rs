//! The retention planner: which backups of one repository to keep and which to drop, as a pure
//! function of the backups, the organisation's policy, the repository's escrow agreements, the
//! repository's state and the time. No I/O; the maintenance loop (`maintenance_runs.rs`) acts on
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
//!
//! The policy itself, and how two policies compare, is `retention_policy.rs`; the
//! count rules (`keep_last` and the periods) are `keep_counts.rs`.

mod keep_counts;
mod retention_policy;

use keep_counts::Counts;
pub use retention_policy::{DEFAULT_RETENTION_DAYS, RetentionPolicy};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

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

/// Plans one repository by the rules of the module documentation: every backup is kept for
/// each rule that keeps it (all reasons are listed) or dropped when none does.
pub fn plan(
    backups: &[BackupView],
    policy: &RetentionPolicy,
    escrow: &[EscrowWindow],
    repo_state: RepoState,
    now_ms: i64,
) -> Plan {
    let mut sorted: Vec<&BackupView> = backups.iter().collect();
    sorted.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then(b.id.cmp(&a.id)));
    // The reasons to keep `sorted[i]` are `reasons[i]`; none: it is dropped.
    let mut reasons: Vec<Vec<KeepReason>> = vec![Vec::new(); sorted.len()];
    keep_latest(&sorted, &mut reasons);
    let own = OwnRules {
        escrowed: escrow_active(escrow, now_ms),
        repo_state,
        max_age_ms: i64::from(policy.days).saturating_mul(DAY_MS),
        now_ms,
    };
    let mut counts = Counts::new(policy);
    for (b, kept) in sorted.iter().zip(reasons.iter_mut()) {
        kept.extend(own.reasons(b));
        if b.state == BackupState::Succeeded {
            kept.extend(counts.take(b.time_ms));
        }
    }

    let mut out = Plan::default();
    for (b, mut r) in sorted.iter().zip(reasons) {
        if r.is_empty() {
            out.drop.push(b.id.clone());
        } else {
            r.sort();
            r.dedup();
            out.keep.push((b.id.clone(), r));
        }
    }
    out
}

/// The backups kept whatever the policy, in `sorted` (newest first): the latest successful
/// one, the latest verified one (named only when it is not the latest successful one
/// already), and the latest of any status.
fn keep_latest(sorted: &[&BackupView], reasons: &mut [Vec<KeepReason>]) {
    if let Some(i) = sorted
        .iter()
        .position(|b| b.state == BackupState::Succeeded)
    {
        reasons[i].push(KeepReason::LatestSuccessful);
        if let Some(v) = sorted
            .iter()
            .position(|b| b.state == BackupState::Succeeded && b.verified)
            .filter(|v| *v != i)
        {
            reasons[v].push(KeepReason::LatestVerified);
        }
    }
    if let Some(latest) = reasons.first_mut() {
        latest.push(KeepReason::Latest);
    }
}

/// The rules that keep a backup for what it is, whatever the other backups.
struct OwnRules {
    /// An escrow agreement is active.
    escrowed: bool,
    repo_state: RepoState,
    /// Backups younger than this are kept (the policy's days).
    max_age_ms: i64,
    now_ms: i64,
}

impl OwnRules {
    /// Why `b` is kept by these rules: an unfinished backup only for being unfinished.
    fn reasons(&self, b: &BackupView) -> Vec<KeepReason> {
        if b.state == BackupState::Unfinished {
            return vec![KeepReason::Unfinished];
        }
        [
            (
                self.escrowed && b.time_ms <= self.now_ms,
                KeepReason::Escrowed,
            ),
            (
                self.repo_state.deleted_or_archived_at_source,
                KeepReason::SourceGone,
            ),
            (
                self.repo_state.org_disconnected,
                KeepReason::OrgDisconnected,
            ),
            (
                self.now_ms.saturating_sub(b.time_ms) < self.max_age_ms,
                KeepReason::WithinDays,
            ),
        ]
        .into_iter()
        .filter_map(|(holds, reason)| holds.then_some(reason))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const HOUR: i64 = 60 * 60 * 1000;
    /// 2026-06-15T12:00:00Z, a Monday.
    pub(super) const NOW: i64 = 1_781_524_800_000;

    pub(super) fn ok(id: &str, age_ms: i64) -> BackupView {
        BackupView {
            id: id.into(),
            time_ms: NOW - age_ms,
            state: BackupState::Succeeded,
            verified: true,
        }
    }
    pub(super) fn failed(id: &str, age_ms: i64) -> BackupView {
        BackupView {
            state: BackupState::Failed,
            ..ok(id, age_ms)
        }
    }
    pub(super) fn days(n: u32) -> RetentionPolicy {
        RetentionPolicy {
            days: n,
            ..Default::default()
        }
    }
    pub(super) fn dropped(p: &Plan) -> Vec<&str> {
        let mut v: Vec<&str> = p.drop.iter().map(String::as_str).collect();
        v.sort();
        v
    }
    pub(super) fn reasons<'a>(p: &'a Plan, id: &str) -> &'a [KeepReason] {
        &p.keep.iter().find(|(k, _)| k == id).expect(id).1
    }

    #[test]
    fn newly_dropped_counts_what_a_shorter_policy_removes() {
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
}
