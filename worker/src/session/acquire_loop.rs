//! The acquire loop of one registration: take a slot, long-poll the coordinator for a task,
//! start it; on shutdown or when idle, drain. The heartbeat runs beside it on its own timer
//! (`heartbeat.rs`), so a long-poll or a full set of slots never delays a renewal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use repovault_proto::v1 as pb;

use crate::cache::MirrorCache;
use crate::tasks::LeaseView;
use crate::tasks::leased;

use super::heartbeat::Heartbeat;
use super::task_runner::{refuse_task, run_task, start_task};
use super::{Exit, Session, Work, WorkerConfig, WorkerError};

/// Serves one registration. `Ok(None)`: register again (running tasks go on). On exit, drains:
/// running tasks finish within the grace, the rest are released.
pub(super) async fn serve(
    cfg: &WorkerConfig,
    s: &Session,
    work: &mut Work,
    cache: Arc<MirrorCache>,
    shutdown: CancellationToken,
) -> Result<Option<Exit>, WorkerError> {
    let session_over = CancellationToken::new();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Tell the coordinator at the next heartbeat, so a pending long-poll returns empty at once.
    {
        let (draining, shutdown, over) = (draining.clone(), shutdown.clone(), session_over.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => draining.store(true, Ordering::SeqCst),
                _ = over.cancelled() => {}
            }
        });
    }

    // Heartbeat: own timer, independent of work.
    let hb = Heartbeat {
        client: s.client.clone(),
        worker_id: s.worker_id.clone(),
        held: work.held.clone(),
        pauses: work.pauses.clone(),
        draining: draining.clone(),
        over: session_over.clone(),
        every: s.timing.heartbeat(),
    }
    .spawn();

    let slots = work.slots.clone();
    let mut idle_since = Instant::now();
    let mut client = s.client.clone();
    let exit = loop {
        if shutdown.is_cancelled() {
            break Some(Exit::Shutdown);
        }
        if session_over.is_cancelled() {
            break None;
        }
        while work.running.try_join_next().is_some() {}
        if work.running.is_empty()
            && let Some(idle) = cfg.exit_when_idle
            && idle_since.elapsed() >= idle
        {
            tracing::info!(idle = ?idle, "idle; exiting");
            break Some(Exit::Idle);
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break None },
            _ = shutdown.cancelled() => continue,
            _ = session_over.cancelled() => continue,
            Some(_) = work.running.join_next(), if !work.running.is_empty() => continue,
        };
        // Which mirrors this worker holds, from memory: the coordinator places backups by it.
        let cached_repo_ids = cache
            .cached_repo_ids()
            .into_iter()
            .map(String::from)
            .collect();
        let req = pb::AcquireTaskRequest {
            worker_id: s.worker_id.to_string(),
            free_slots: u32::try_from(slots.available_permits() + 1).unwrap_or(1),
            wait_ms: u64::try_from(s.timing.acquire_wait().as_millis()).unwrap_or(10_000),
            cached_repo_ids,
        };
        // Not abandoned on shutdown or re-registration: the coordinator may already have leased
        // a task to us, and dropping the answer would strand it until its lease expired. The
        // draining heartbeat makes the long-poll return within a second.
        tracing::debug!(free_slots = req.free_slots, "asking for a task");
        let resp = client.acquire_task(req).await;
        match resp {
            Ok(r) => {
                let Some(task) = r.into_inner().task else {
                    if !work.running.is_empty() {
                        idle_since = Instant::now();
                    }
                    continue;
                };
                idle_since = Instant::now();
                tracing::debug!(task = ?task.lease.as_ref().map(|l| &l.task_id), "lease received");
                if shutdown.is_cancelled() || session_over.is_cancelled() {
                    // Leased while we began to drain (or to re-register): give it back at once,
                    // no attempt lost.
                    let req = pb::ReleaseTaskRequest {
                        worker_id: s.worker_id.to_string(),
                        lease: task.lease.clone(),
                        reason: "worker draining".into(),
                    };
                    if let Err(e) = client.release_task(req).await {
                        tracing::warn!(error = %e.message(), "release failed; the lease will expire");
                    }
                    continue;
                }
                let ctx = match start_task(s, &task, work, &cache, cfg) {
                    Ok(ctx) => ctx,
                    Err(why) => {
                        refuse_task(&client, &s.worker_id, &task, why).await;
                        continue;
                    }
                };
                let span = tracing::info_span!("task", task = %ctx.lease.token.task_id, attempt = ctx.lease.token.attempt, kind = leased::kind_of(&task).map_or("none", |k| k.as_str()), repo = %task.repo.as_ref().map(|r| format!("{}/{}", r.org_name, r.repo_name)).unwrap_or_default());
                let (held, client, worker_id) =
                    (work.held.clone(), s.client.clone(), s.worker_id.clone());
                work.running.spawn(
                    async move {
                        let _permit = permit;
                        run_task(ctx, task, &client, &worker_id, &held).await;
                    }
                    .instrument(span),
                );
            }
            Err(e) if e.code() == tonic::Code::NotFound => {
                // The coordinator forgot us (restart or expiry): register again.
                session_over.cancel();
            }
            Err(e) if e.code() == tonic::Code::Unauthenticated => {
                session_over.cancel();
                return Err(WorkerError::Refused(e.message().to_string()));
            }
            Err(e) => {
                tracing::warn!(error = %e.message(), "acquire failed");
                tokio::time::sleep(s.timing.heartbeat()).await;
            }
        }
    };
    if exit.is_some() {
        drain(cfg, s, work, &draining).await;
    }
    session_over.cancel();
    let _ = hb.await;
    Ok(exit)
}

/// Stops acquiring, lets running tasks finish within the grace, then releases the rest.
async fn drain(
    cfg: &WorkerConfig,
    s: &Session,
    work: &mut Work,
    draining: &std::sync::atomic::AtomicBool,
) {
    draining.store(true, Ordering::SeqCst);
    if work.running.is_empty() {
        return;
    }
    tracing::info!(running = work.running.len(), grace = ?cfg.drain_grace, "draining");
    let deadline = tokio::time::sleep(cfg.drain_grace);
    tokio::pin!(deadline);
    let mut client = s.client.clone();
    loop {
        tokio::select! {
            r = work.running.join_next() => if r.is_none() { break },
            _ = &mut deadline => {
                let leases: Vec<Arc<LeaseView>> = work.held.all();
                for l in &leases {
                    l.interrupt.store(true, Ordering::SeqCst);
                    let req = pb::ReleaseTaskRequest { worker_id: s.worker_id.to_string(), lease: Some(l.token.clone()), reason: "worker shutting down".into() };
                    if let Err(e) = client.release_task(req).await {
                        tracing::warn!(task = %l.token.task_id, error = %e.message(), "release failed; the lease will expire");
                    }
                }
                work.running.abort_all();
                while work.running.join_next().await.is_some() {}
                break;
            }
        }
    }
}
