//! The fleet as the admin sees it: the connected workers with their pools, the worker pools'
//! join tokens (create, list, revoke: `worker_pools/`), and the queue, with effective priorities
//! and lease states.

use repovault_proto::v1 as pb;
use tonic::{Response, Status};

use crate::audit::AuditDetail;
use crate::clock::format_ms;
use crate::coordinator::Coordinator;
use crate::worker_pools::TokenView;
use crate::worker_pools::token_plan::TokenState;

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
            pool: w.pool,
            token_id: w.token_id.unwrap_or_default(),
        })
        .collect();
    pb::ListWorkersResponse { workers }
}

/// A token as listed (never its secret nor its hash).
fn token_pb(v: &TokenView) -> pb::WorkerToken {
    let t = &v.record;
    let opt_time = |ms: Option<i64>| ms.map(format_ms).unwrap_or_default();
    pb::WorkerToken {
        id: t.id.clone(),
        pool: t.pool.clone(),
        state: match v.state {
            TokenState::Active => pb::WorkerTokenState::Active,
            TokenState::Expired => pb::WorkerTokenState::Expired,
            TokenState::Revoked => pb::WorkerTokenState::Revoked,
        }
        .into(),
        created_at: format_ms(t.created_at_ms),
        created_by: t.created_by.clone(),
        expires_at: opt_time(t.expires_at_ms),
        revoked_at: opt_time(t.revoked_at_ms),
        revoked_by: t.revoked_by.clone().unwrap_or_default(),
        workers: u32::try_from(v.workers).unwrap_or(u32::MAX),
    }
}

/// `CreateWorkerToken`: the secret is in this answer only; the audit entry names the token's
/// id and pool.
pub(super) async fn create_token(
    core: &Coordinator,
    r: pb::CreateWorkerTokenRequest,
    by: &str,
) -> Result<Response<pb::CreateWorkerTokenResponse>, Status> {
    let (view, secret) = core
        .worker_pools
        .create(&r.pool, r.expires_in_seconds, by)
        .await?;
    let token = token_pb(&view);
    let detail = format!(
        "join token {} for pool {}{}",
        token.id,
        token.pool,
        if token.expires_at.is_empty() {
            String::new()
        } else {
            format!(", expires {}", token.expires_at)
        }
    );
    let mut response = Response::new(pb::CreateWorkerTokenResponse {
        token: Some(token),
        secret: secret.expose().to_string(),
    });
    response.extensions_mut().insert(AuditDetail(detail));
    Ok(response)
}

/// `ListWorkerTokens`: newest first. A coordinator holds few tokens, so the list is read
/// whole, sorted and cut.
pub(super) async fn list_tokens(
    core: &Coordinator,
    r: pb::ListWorkerTokensRequest,
) -> Result<Response<pb::ListWorkerTokensResponse>, Status> {
    use crate::paging::{self, Order};
    use crate::service::paged::{List, Listing};
    let listing = Listing::new(List::WorkerTokens, &r.pool);
    let page = listing.page(r.page_size, &r.page_token)?;
    let pool = Some(r.pool.as_str()).filter(|p| !p.is_empty());
    let found = paging::sort_and_cut(
        core.worker_pools.list(pool).await?,
        |v| super::admin_lists::newest_first_key(v.record.created_at_ms, &v.record.id),
        Order::Descending,
        &page,
    );
    let (tokens, next_page_token) = listing.respond(found.map(|v| token_pb(&v)));
    Ok(Response::new(pb::ListWorkerTokensResponse {
        tokens,
        next_page_token,
    }))
}

/// `RevokeWorkerToken`: the audit entry says which workers it refused and how many leases went
/// back to the queue.
pub(super) async fn revoke_token(
    core: &Coordinator,
    r: pb::RevokeWorkerTokenRequest,
    by: &str,
) -> Result<Response<pb::RevokeWorkerTokenResponse>, Status> {
    let done = core.worker_pools.revoke(&r.id, by).await?;
    let detail = format!(
        "join token {} of pool {}: {} worker(s) refused{}, {} task(s) re-queued",
        done.token.record.id,
        done.token.record.pool,
        done.workers.len(),
        if done.workers.is_empty() {
            String::new()
        } else {
            format!(" ({})", done.workers.join(", "))
        },
        done.requeued
    );
    let mut response = Response::new(pb::RevokeWorkerTokenResponse {
        token: Some(token_pb(&done.token)),
        workers_refused: done.workers,
        tasks_requeued: u32::try_from(done.requeued).unwrap_or(u32::MAX),
    });
    response.extensions_mut().insert(AuditDetail(detail));
    Ok(response)
}

/// `GetQueue`: the active tasks, highest effective priority first, then first enqueued; the
/// queue is copied whole (it is in memory, already in the page key's order) and cut.
pub(super) async fn queue(
    core: &Coordinator,
    r: pb::GetQueueRequest,
) -> Result<Response<pb::GetQueueResponse>, Status> {
    use crate::paging::{self, KeyPart, Order, SortKey};
    use crate::service::paged::{List, Listing};
    let listing = Listing::new(List::Queue, "");
    let page = listing.page(r.page_size, &r.page_token)?;
    let found = paging::cut(
        core.queue.queue_snapshot().await,
        |(t, eff)| {
            SortKey::new([
                KeyPart::Int(-i64::from(*eff)),
                KeyPart::Int(i64::try_from(t.seq).unwrap_or(i64::MAX)),
                KeyPart::from(t.id.to_string()),
            ])
        },
        Order::Ascending,
        &page,
    );
    let mut entries = Vec::with_capacity(found.items.len());
    for (key, (t, eff)) in found.items {
        entries.push((key, queue_entry(core, &t, eff).await));
    }
    let (entries, next_page_token) = listing.respond(paging::Paged {
        items: entries,
        more: found.more,
    });
    Ok(Response::new(pb::GetQueueResponse {
        entries,
        next_page_token,
    }))
}

async fn queue_entry(core: &Coordinator, t: &crate::model::TaskRecord, eff: u8) -> pb::QueueEntry {
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
    pb::QueueEntry {
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
    }
}
