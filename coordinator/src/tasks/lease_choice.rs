//! The task a worker leases next, read from the ready index (`tasks/active_tasks.rs`) rather
//! than from every pending task. The choice is [`queue_order::select`]'s over every pending
//! task (the tests hold it to that), made over a few candidates:
//!
//! - from each bucket of the ready index (one organisation, one base priority, oldest first),
//!   the first task that may be leased now ([`queue_order::eligible`]);
//! - every pending task of a repository whose mirror the asking worker holds.
//!
//! Why no other task can win: take the best task W over all. If its mirror is the worker's, it
//! is a candidate. If not, let Y be the first eligible task of W's bucket. Y is at least as old
//! as W, so it has waited at least as long and its effective priority is no lower (same
//! organisation, same base priority, aging counted from the same last service); on equal
//! priority Y ties W on the organisation, is not behind W on placement (W's is not the
//! worker's), and is older: Y ranks at least as high as W, so W is Y and a candidate.
//!
//! Cost: one step per bucket plus the ineligible tasks at the head of each (in backoff, their
//! repository busy, or left to another worker's mirror), plus the pending tasks of the
//! worker's mirrors; not the queue's depth.

use std::collections::HashSet;

use crate::model::{RepoId, TaskId, TaskRecord};
use crate::tasks::active_tasks::ActiveTasks;
use crate::tasks::kinds;
use crate::tasks::lease_state::TaskState;
use crate::tasks::queue_order::{self, Candidate, Placement, QueueContext};

/// What the choice reads besides the active tasks.
pub(crate) struct Look<'a> {
    pub ctx: QueueContext<'a>,
    /// Repositories under maintenance: none of their tasks is leased meanwhile.
    pub maintenance: &'a HashSet<RepoId>,
    /// The repositories whose mirrors the asking worker holds.
    pub held: &'a HashSet<RepoId>,
    /// Where a repository's mirror is, seen from the asking worker, given when its task became
    /// ready (`WorkerRegistry::with_placement`).
    pub place: &'a dyn Fn(&RepoId, i64) -> Placement,
    pub now_ms: i64,
}

/// The task to lease next, or `None` when nothing may be leased now.
pub(crate) fn choose<'a>(active: &'a ActiveTasks, look: &Look<'_>) -> Option<&'a TaskId> {
    let mut cands: Vec<Candidate<'a>> = Vec::new();
    for bucket in active.ready_buckets() {
        let first = bucket
            .filter_map(|t| candidate(t, look))
            .find(|c| queue_order::eligible(c, &look.ctx, look.now_ms));
        cands.extend(first);
    }
    cands.extend(
        active
            .pending_of(look.held)
            .filter(|t| kinds::uses_mirror_cache(t.kind))
            .filter_map(|t| candidate(t, look)),
    );
    queue_order::select(&cands, &look.ctx, look.now_ms).map(|c| c.task_id)
}

/// A pending task as the choice sees it; `None` for one that is not pending or whose
/// repository is under maintenance (a verify or restore would find packs deleted under it;
/// backups wait through `busy` already).
pub(crate) fn candidate<'a>(t: &'a TaskRecord, look: &Look<'_>) -> Option<Candidate<'a>> {
    let TaskState::Pending { not_before_ms } = t.lease.state else {
        return None;
    };
    if look.maintenance.contains(&t.repo_id) {
        return None;
    }
    // A mirror another worker holds is left to it for the affinity wait, counted from when
    // the task became ready (enqueued, or its backoff over).
    let placement = if kinds::uses_mirror_cache(t.kind) {
        (look.place)(&t.repo_id, t.enqueued_at_ms.max(not_before_ms))
    } else {
        Placement::Anywhere
    };
    Some(Candidate {
        task_id: &t.id,
        org_id: &t.org_id,
        repo_id: &t.repo_id,
        exclusive: kinds::exclusive(t.kind),
        priority: t.priority,
        enqueued_at_ms: t.enqueued_at_ms,
        seq: t.seq,
        not_before_ms,
        placement,
    })
}

#[cfg(test)]
#[path = "lease_choice_tests.rs"]
mod tests;
