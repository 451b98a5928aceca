//! The fleet as the admin sees it: the connected workers and the queue, with effective
//! priorities and lease states.

use repovault_proto::v1 as pb;

use crate::clock::format_ms;
use crate::coordinator::Coordinator;

/// `ListWorkers`: every registered worker with the tasks it holds.
pub(super) fn workers(core: &Coordinator) -> pb::ListWorkersResponse {
    let workers = core
        .queue
        .workers
        .list()
        .into_iter()
        .map(|w| pb::Worker {
            running: u32::try_from(w.tasks.len()).unwrap_or(u32::MAX),
            tasks: w.tasks.into_iter().map(String::from).collect(),
            id: w.id,
            name: w.name,
            slots: w.slots,
            draining: w.draining,
            registered_at: format_ms(w.registered_at_ms),
            last_heartbeat_at: format_ms(w.last_heartbeat_ms),
        })
        .collect();
    pb::ListWorkersResponse { workers }
}

/// `GetQueue`: the active tasks, highest effective priority first.
pub(super) async fn queue(core: &Coordinator) -> pb::GetQueueResponse {
    let mut entries = Vec::new();
    for (t, eff) in core.queue.queue_snapshot().await {
        let repo = core.store.repo(&t.repo_id).await.ok().flatten();
        let (state, worker, not_before) = match &t.lease.state {
            crate::tasks::lease_state::TaskState::Leased { worker_id, .. } => {
                ("leased", worker_id.clone(), String::new())
            }
            crate::tasks::lease_state::TaskState::Pending { not_before_ms } => (
                "pending",
                String::new(),
                if *not_before_ms > 0 {
                    format_ms(*not_before_ms)
                } else {
                    String::new()
                },
            ),
            s => (s.name(), String::new(), String::new()),
        };
        entries.push(pb::QueueEntry {
            task_id: t.id.to_string(),
            kind: t.kind.into(),
            repo: repo.as_ref().map(|r| r.full_name()).unwrap_or_default(),
            org: repo.map(|r| r.org_name).unwrap_or_default(),
            priority: u32::from(t.priority),
            effective_priority: u32::from(eff),
            state: state.into(),
            attempt: t.lease.attempt,
            worker_id: worker,
            enqueued_at: format_ms(t.enqueued_at_ms),
            not_before,
        });
    }
    pb::GetQueueResponse { entries }
}
