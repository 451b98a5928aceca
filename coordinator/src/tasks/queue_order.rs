//! Which pending task runs next: a pure function of the queue, the time and who was served last.
//!
//! Priority is 0-10 (manual backup 8, interactive restore 9, scheduled 5, maintenance 2). A task
//! ages one level per [`AGING_STEP`] of waiting, so nothing starves. Waiting counts from the later
//! of the task's enqueue time and the last time its organisation was served: an organisation that
//! is being served does not age, one that is not catches up. Among equal effective priorities the
//! organisation served least recently goes first, so one tenant's 5,000 tasks interleave with
//! another's 10 instead of running ahead of them. At most one backup per repository runs at once.
//!
//! Placement comes after priority and fairness: among tasks of equal rank a worker takes the
//! backups of repositories whose mirrors it holds first, and a backup whose mirror another
//! connected worker holds is left to that worker for a bounded time ([`Placement::Elsewhere`]):
//! an incremental fetch into a warm mirror costs a fraction of a re-seed from the snapshot or a
//! fresh clone.

use repovault_common::domain::{OrgId, RepoId, TaskId};
use std::collections::HashMap;

/// One priority level per 5 minutes waited: a scheduled backup (5) overtakes manual ones (8)
/// after 15 minutes of not being served, long before an hourly schedule comes round again.
pub const AGING_STEP_MS: i64 = 5 * 60 * 1000;
pub const MAX_PRIORITY: u8 = 10;

pub const PRIORITY_MANUAL_BACKUP: u8 = 8;
pub const PRIORITY_RESTORE: u8 = 9;
pub const PRIORITY_SCHEDULED: u8 = 5;
pub const PRIORITY_MAINTENANCE: u8 = 2;

/// A pending task as the choice sees it, borrowing its ids from the queue: a lease looks at
/// every active task, so building the candidates copies no string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub task_id: &'a TaskId,
    pub org_id: &'a OrgId,
    pub repo_id: &'a RepoId,
    /// Backups are exclusive per repository; restores are not.
    pub exclusive: bool,
    pub priority: u8,
    pub enqueued_at_ms: i64,
    /// Monotonic enqueue sequence: FIFO among tasks enqueued in the same millisecond.
    pub seq: u64,
    pub not_before_ms: i64,
    /// Where the repository's mirror is, as seen from the asking worker.
    pub placement: Placement,
}

/// Where a candidate's repository mirror is cached, from the asking worker's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// No connected worker holds it (or the task does not use the mirror cache).
    #[default]
    Anywhere,
    /// The asking worker holds it.
    Here,
    /// Another connected, non-draining worker holds it: the task is left to that worker until
    /// `until_ms` (when it became ready plus the affinity wait), then anyone may take it.
    Elsewhere { until_ms: i64 },
}

/// What the queue knows besides the candidates.
pub struct QueueContext<'a> {
    /// Organisation -> the sequence number of its last lease (higher = more recent) and when.
    pub org_served: &'a HashMap<OrgId, (u64, i64)>,
    /// Whether a repository has a running exclusive (backup) task, or is under maintenance.
    pub busy: &'a dyn Fn(&RepoId) -> bool,
}

pub fn effective_priority(c: &Candidate<'_>, org_last_served_ms: Option<i64>, now_ms: i64) -> u8 {
    let since = org_last_served_ms.map_or(c.enqueued_at_ms, |s| s.max(c.enqueued_at_ms));
    let waited = (now_ms - since).max(0);
    let boost = u8::try_from(waited / AGING_STEP_MS).unwrap_or(MAX_PRIORITY);
    c.priority.saturating_add(boost).min(MAX_PRIORITY)
}

/// Higher is better: effective priority, then organisation served longer ago (never served
/// first), then a mirror the asking worker holds, then older task (enqueue time, then enqueue
/// sequence). Within one organisation and base priority, an older task never ranks below a
/// newer one of the same placement: the ready index (`tasks/lease_choice.rs`) relies on it.
type RankKey = (
    u8,
    std::cmp::Reverse<u64>,
    bool,
    std::cmp::Reverse<i64>,
    std::cmp::Reverse<u64>,
);

/// Whether `c` may be leased now: its backoff is over, its repository is not held by a
/// backup (when it is one), and no other worker's mirror is waiting for it.
pub fn eligible(c: &Candidate<'_>, ctx: &QueueContext<'_>, now_ms: i64) -> bool {
    if c.not_before_ms > now_ms || (c.exclusive && (ctx.busy)(c.repo_id)) {
        return false;
    }
    !matches!(c.placement, Placement::Elsewhere { until_ms } if now_ms < until_ms)
}

/// Picks the next task to lease, or `None` when nothing is ready.
pub fn select<'c, 'a: 'c>(
    candidates: impl IntoIterator<Item = &'c Candidate<'a>>,
    ctx: &QueueContext<'_>,
    now_ms: i64,
) -> Option<&'c Candidate<'a>> {
    let mut best: Option<(&Candidate<'a>, RankKey)> = None;
    for c in candidates {
        if !eligible(c, ctx, now_ms) {
            continue;
        }
        let served = ctx.org_served.get(c.org_id);
        let prio = effective_priority(c, served.map(|s| s.1), now_ms);
        let key = (
            prio,
            std::cmp::Reverse(served.map_or(0, |s| s.0)),
            c.placement == Placement::Here,
            std::cmp::Reverse(c.enqueued_at_ms),
            std::cmp::Reverse(c.seq),
        );
        if best.as_ref().is_none_or(|(_, k)| key > *k) {
            best = Some((c, key));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Leaks its ids (a test's few): a candidate borrows them from the queue.
    fn leak<T>(v: T) -> &'static T {
        Box::leak(Box::new(v))
    }

    fn cand(id: &str, org: &str, repo: &str, prio: u8, at: i64, seq: u64) -> Candidate<'static> {
        Candidate {
            task_id: leak(id.parse().expect("task id")),
            org_id: leak(org.parse().expect("org id")),
            repo_id: leak(repo.parse().expect("repo id")),
            exclusive: true,
            priority: prio,
            enqueued_at_ms: at,
            seq,
            not_before_ms: 0,
            placement: Placement::Anywhere,
        }
    }

    /// Simulates `n` leases (each task completes at once) and returns the order of task ids.
    fn drain(mut cands: Vec<Candidate<'static>>, n: usize, now: i64) -> Vec<String> {
        let mut served = HashMap::new();
        let busy = HashSet::<RepoId>::new();
        let mut out = Vec::new();
        for lease in 1..=n as u64 {
            let ctx = QueueContext {
                org_served: &served,
                busy: &|r| busy.contains(r),
            };
            let Some(c) = select(&cands, &ctx, now).cloned() else {
                break;
            };
            served.insert(c.org_id.clone(), (lease, now));
            cands.retain(|x| x.task_id != c.task_id);
            out.push(c.task_id.as_str().to_string());
        }
        out
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let c = vec![
            cand("a", "o", "r1", 5, 0, 1),
            cand("b", "o", "r2", 8, 1, 2),
            cand("c", "o", "r3", 5, 2, 3),
        ];
        assert_eq!(drain(c, 3, 10), ["b", "a", "c"]);
    }

    #[test]
    fn a_big_tenant_does_not_starve_a_small_one() {
        let mut c: Vec<Candidate<'static>> = (0..5000)
            .map(|i| cand(&format!("a{i}"), "A", &format!("ra{i}"), 5, 0, i))
            .collect();
        // A has already been served a while when B arrives.
        let order_before = drain(c.clone(), 100, 1000);
        assert!(order_before.iter().all(|t| t.starts_with('a')));
        c.extend((0..10).map(|i| {
            cand(
                &format!("b{i}"),
                "B",
                &format!("rb{i}"),
                5,
                1000,
                10_000 + i,
            )
        }));
        let order = drain(c, 20, 1000);
        let b_count = order.iter().filter(|t| t.starts_with('b')).count();
        assert_eq!(
            b_count, 10,
            "all of B's tasks start within 20 leases: {order:?}"
        );
    }

    #[test]
    fn aging_lifts_a_waiting_task_but_not_a_served_org() {
        let now = 20 * AGING_STEP_MS;
        let low = cand("low", "L", "r1", 2, 0, 1);
        let high = cand("high", "H", "r2", 8, now, 2);
        let served = HashMap::new();
        assert_eq!(effective_priority(&low, None, now), MAX_PRIORITY);
        let busy = HashSet::<RepoId>::new();
        let ctx = QueueContext {
            org_served: &served,
            busy: &|r| busy.contains(r),
        };
        assert_eq!(
            select([&low, &high], &ctx, now).map(|c| c.task_id.as_str()),
            Some("low")
        );
        // An organisation served a moment ago has not been waiting.
        assert_eq!(effective_priority(&low, Some(now - 1), now), 2);
    }

    #[test]
    fn one_backup_per_repository_and_not_before() {
        let a = cand("a", "o", "r1", 8, 0, 1);
        let mut b = cand("b", "o", "r2", 5, 0, 2);
        let served = HashMap::new();
        let busy: HashSet<RepoId> = ["r1".parse().expect("repo id")].into();
        let ctx = QueueContext {
            org_served: &served,
            busy: &|r| busy.contains(r),
        };
        assert_eq!(
            select([&a, &b], &ctx, 10).map(|c| c.task_id.as_str()),
            Some("b")
        );
        b.not_before_ms = 100;
        assert_eq!(select([&a, &b], &ctx, 10), None);
        let mut restore = cand("s", "o", "r1", 9, 0, 3);
        restore.exclusive = false;
        assert_eq!(
            select([&a, &restore], &ctx, 10).map(|c| c.task_id.as_str()),
            Some("s")
        );
    }

    #[test]
    fn a_held_mirror_goes_first_among_equals_and_elsewhere_waits_its_bound() {
        let served = HashMap::new();
        let busy = HashSet::<RepoId>::new();
        let ctx = QueueContext {
            org_served: &served,
            busy: &|r| busy.contains(r),
        };
        let older = cand("older", "o", "r1", 5, 0, 1);
        let mut mine = cand("mine", "o", "r2", 5, 0, 2);
        mine.placement = Placement::Here;
        assert_eq!(
            select([&older, &mine], &ctx, 10).map(|c| c.task_id.as_str()),
            Some("mine"),
            "among equals the worker's own mirror first"
        );
        // Priority still comes first.
        let urgent = cand("urgent", "o", "r3", 8, 0, 3);
        assert_eq!(
            select([&mine, &urgent], &ctx, 10).map(|c| c.task_id.as_str()),
            Some("urgent")
        );
        let mut theirs = cand("theirs", "o", "r4", 9, 0, 4);
        theirs.placement = Placement::Elsewhere { until_ms: 100 };
        assert_eq!(
            select([&older, &theirs], &ctx, 99).map(|c| c.task_id.as_str()),
            Some("older"),
            "another worker's mirror is left to it until the bound"
        );
        assert_eq!(
            select([&older, &theirs], &ctx, 100).map(|c| c.task_id.as_str()),
            Some("theirs"),
            "after the bound anyone takes it, at its own rank"
        );
        assert_eq!(select([&theirs], &ctx, 99), None);
    }
}
