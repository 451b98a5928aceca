//! Running one leased task: its context, the dispatch on its kind, its completion; and the
//! progress stream all tasks share.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use pb::complete_task_request::Result as Outcome;
use repovault_common::domain::WorkerId;
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::cache::MirrorCache;
use crate::commit::CallError;
use crate::coordinator_client::Client;
use crate::progress::{Progress, RESEND};
use crate::tasks::leased::{self, Leased};
use crate::tasks::{self, LeaseView, TaskContext, TaskError};

use super::{Held, Session, Work};

/// Registers the task's lease as held (the heartbeat renews it from now on) and builds its
/// context, with an operator for the storage its lease names. A lease whose storage cannot be
/// used is not started: the error says why, secrets scrubbed.
pub(super) fn start_task(
    s: &Session,
    task: &pb::Task,
    work: &Work,
    cache: &Arc<MirrorCache>,
    cfg: &super::WorkerConfig,
) -> Result<Arc<TaskContext>, String> {
    let spec = task
        .repo
        .as_ref()
        .and_then(|r| r.storage.clone())
        .unwrap_or_default();
    let storage = work.storages.operator(&spec).map_err(|e| {
        repovault_common::redact::scrub(
            &format!("storage from the lease: {e}"),
            &lease_secrets(task),
        )
    })?;
    let token = task.lease.clone().unwrap_or_default();
    let lease = Arc::new(LeaseView::new(token.clone(), &s.timing, s.write_deadline));
    work.held.hold(lease.clone());
    Ok(Arc::new(TaskContext {
        worker_id: s.worker_id.clone(),
        storage,
        scratch: cfg.scratch_dir.clone(),
        cache: cache.clone(),
        local_paths: cfg.local_paths.clone(),
        progress: Progress::new(work.events.clone(), &s.worker_id, token),
        lease,
        client: s.client.clone(),
        runtime: tokio::runtime::Handle::current(),
        forge: crate::forge::TaskForge::new(
            s.client.clone(),
            &s.worker_id,
            task,
            work.pauses.clone(),
        ),
        full_check_every: cfg.full_check_every,
    }))
}

/// Completes a lease that could not be started as failed, not retryable (its storage cannot be
/// used; another attempt gets the same lease contents).
pub(super) async fn refuse_task(
    client: &Client,
    worker_id: &WorkerId,
    task: &pb::Task,
    why: String,
) {
    tracing::warn!(error = %why, "task not started");
    let token = task.lease.clone().unwrap_or_default();
    let req = pb::CompleteTaskRequest {
        worker_id: worker_id.into(),
        lease: Some(token),
        error: why,
        ..Default::default()
    };
    if let Err(e) = client.clone().complete_task(req).await {
        tracing::warn!(error = %e.message(), "completion refused; the lease will expire");
    }
}

/// Runs one leased task to its completion: decodes the lease once, dispatches on its kind with
/// one exhaustive `match`, sends the completion (a failure's message one line and scrubbed of the
/// lease's secrets), and lets the lease go.
pub(super) async fn run_task(
    ctx: Arc<TaskContext>,
    task: pb::Task,
    client: &Client,
    worker_id: &WorkerId,
    held: &Held,
) {
    let token = ctx.lease.token.clone();
    tracing::info!("task started");
    let busy = metrics::gauge!(repovault_common::worker_metrics::SLOTS_BUSY);
    busy.increment(1.0);
    let _idle_again = on_drop(move || busy.decrement(1.0));
    let ticker = {
        let p = ctx.progress.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(RESEND);
            loop {
                t.tick().await;
                p.resend();
            }
        })
    };
    let mut req = pb::CompleteTaskRequest {
        worker_id: worker_id.into(),
        lease: Some(token.clone()),
        ..Default::default()
    };
    let outcome: Result<(), TaskError> = match leased::decode(&task) {
        Err(e) => Err(e),
        Ok(Leased {
            ids,
            access,
            provider,
            work,
        }) => {
            let c = ctx.clone();
            match work {
                leased::Work::Backup(w) => tasks::backup::run(c, ids, access, provider, w)
                    .await
                    .map(|r| req.result = Some(Outcome::Backup(r))),
                leased::Work::Restore(w) => tasks::restore::run(c, access, w)
                    .await
                    .map(|r| req.result = Some(Outcome::Restore(r))),
                leased::Work::Verify(w) => tasks::verify::run(c, ids, access, w)
                    .await
                    .map(|r| req.result = Some(Outcome::Verify(r))),
                leased::Work::Drill(w) => tasks::drill::run(c, access, w)
                    .await
                    .map(|r| req.result = Some(Outcome::Drill(r))),
            }
        }
    };
    ticker.abort();
    ctx.forge.finish().await;
    match &outcome {
        Ok(()) => req.success = true,
        Err(e) => {
            // The lease's secrets, and the forge's current token (it may have replaced the
            // lease's), are scrubbed from what is logged and sent.
            let mut secrets = lease_secrets(&task);
            secrets.push(ctx.forge.source_token().await);
            let message = e.wire_message(&secrets);
            tracing::warn!(error = %message, retryable = e.retryable, "task failed");
            req.error = message;
            req.retryable = e.retryable;
            req.result = e.damage_result().map(Outcome::Verify);
            if let Some(loss) = ctx.lease.lost() {
                // Not the task's failure: the attempt is given back without counting.
                tracing::info!(why = loss.as_str(), "giving the attempt back");
                req.lease_lost = true;
            }
        }
    }
    ctx.lease.mark_completing();
    complete(client, &req, &ctx.lease).await;
    held.release(&token);
}

/// Sends a completion, retrying while the coordinator is unreachable and the lease lives (a
/// completion lost to a restart would cost a whole backup). A refusal is final.
async fn complete(client: &Client, req: &pb::CompleteTaskRequest, lease: &LeaseView) {
    match crate::commit::complete_task(client, req, lease).await {
        Ok(()) => tracing::info!(success = req.success, "completion accepted"),
        Err(CallError::Refused { code, message }) => {
            tracing::warn!(code = ?code, error = %message, "completion refused");
        }
        Err(e @ CallError::OutOfTime { .. }) => tracing::error!(
            error = %e,
            "completion could not be delivered; the lease will expire and the task run again"
        ),
    }
}

/// The progress stream of every task of this worker, reopened when it breaks (a coordinator
/// restart); the coordinator's answers on it cancel tasks.
pub(super) async fn stream_events(
    mut client: Client,
    rx: mpsc::Receiver<pb::TaskEvent>,
    over: CancellationToken,
    held: Held,
) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    while !over.is_cancelled() {
        let (tx, out_rx) = mpsc::channel::<pb::TaskEvent>(64);
        let forwarder = {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut rx = rx.lock().await;
                while let Some(ev) = rx.recv().await {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            })
        };
        let call = client.task_events(tokio_stream::wrappers::ReceiverStream::new(out_rx));
        let read_controls = async {
            if let Ok(resp) = call.await {
                let mut controls = resp.into_inner();
                while let Ok(Some(c)) = controls.message().await {
                    let Some(t) = c.lease.filter(|_| c.cancel) else {
                        continue;
                    };
                    if let Some(l) = held.get(&t) {
                        tracing::warn!(task = %t.task_id, "coordinator cancelled the task");
                        l.interrupt.store(true, Ordering::SeqCst);
                    }
                }
            }
        };
        tokio::select! {
            _ = over.cancelled() => {}
            _ = read_controls => {}
        }
        forwarder.abort();
        // The stream broke (coordinator restart): reopen after a pause.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The secrets a task's lease carries, scrubbed from its failure's message before it leaves.
/// The secret options (keys, SAS tokens) of the lease's storage.
fn storage_secrets(access: Option<&pb::RepoAccess>) -> Vec<String> {
    access
        .and_then(|a| a.storage.as_ref())
        .map(|s| {
            s.options
                .iter()
                .filter(|(k, _)| repovault_common::storage::is_secret_option(k))
                .map(|(_, v)| v.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn lease_secrets(task: &pb::Task) -> Vec<Secret> {
    let access = task.repo.as_ref();
    let restore = match task.spec.as_ref() {
        Some(pb::task::Spec::Restore(r)) => Some(r.target_token.clone()),
        _ => None,
    };
    [
        access.map(|a| a.source_token.clone()),
        access.map(|a| a.repo_password.clone()),
        access.map(|a| a.master_key.clone()),
        restore,
    ]
    .into_iter()
    .flatten()
    .chain(storage_secrets(access))
    .filter(|s| !s.is_empty())
    .map(Secret::new)
    .collect()
}

/// Runs `f` when dropped, however the scope ends (a slot counted free again, a session's slots
/// off the gauge).
pub(super) fn on_drop(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
