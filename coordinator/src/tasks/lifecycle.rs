//! Task lifecycle, generic over kinds: a task's record, the long-poll and lease, confirm,
//! progress, the commit of a completion, release, cancel, reap. What differs by kind (how it is
//! enqueued and leased, what its completion commits, what a re-queue writes) is in `kinds/`;
//! what a lease carries of the repository in `lease_access.rs`; the queue's state, enqueueing and
//! read-only views in `task_queue.rs`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::catalog::reconcile::ForgetRequest;
use crate::error::{CoreError, CoreResult, not_found};
use crate::model::{
    BackupRecord, OrgCredential, OrgId, RepoId, RepoRecord, Status, TaskId, TaskRecord,
};
use crate::store::Batch;
use crate::tasks::lease_state::{Outcome, TaskState};
use crate::tasks::queue_order::{Candidate, Placement, QueueContext, select};

use crate::tasks::kinds::lease_spec::LeasedTask;
use crate::tasks::kinds::outcome::TaskReport;
use crate::tasks::kinds::{self, Completion, LeaseCtx};
use crate::tasks::task_progress::{Progress, WorkerProgress};
use crate::tasks::task_queue::TaskQueue;

/// What one look at the queue found.
enum Leasing {
    Leased(Box<LeasedTask>),
    /// The best task's repository has no snapshot repository yet: the coordinator creates it
    /// (outside the queue lock) before anyone may back it up.
    NeedsRepository(Box<RepoRecord>),
    /// The best task's organisation authenticates as a GitHub App and no fresh installation
    /// token is cached: the coordinator mints one (outside the queue lock) first.
    NeedsToken(Box<crate::model::OrgRecord>),
    Nothing,
}

/// What the coordinator did with a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionOutcome {
    Committed,
    /// A failure that will be retried after backoff.
    Requeued,
    Failed,
}

/// A lease as a worker presents it, decoded where its call arrived (`service/worker.rs`): the
/// task and the attempt (the fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub task_id: TaskId,
    pub attempt: u32,
}

impl TaskQueue {
    /// Long-poll for a task: returns as soon as one is leased to `worker_id`, or `None` after
    /// `wait`. A draining worker gets nothing. `cached` (the repositories whose mirrors the
    /// worker holds) replaces what the worker said before, and places backups: see
    /// `queue_order::Placement`.
    pub async fn acquire(
        &self,
        worker_id: &str,
        cached: HashSet<RepoId>,
        wait: Duration,
    ) -> CoreResult<Option<LeasedTask>> {
        let deadline = tokio::time::Instant::now() + wait;
        // Organisations whose installation token this call minted (or failed to): each is minted
        // at most once per call, so a failing mint, or a token stale at once (a skewed clock),
        // leases without a token rather than spins; the source then refuses the backup with its
        // own error, which is retried with backoff.
        let mut minted = HashSet::new();
        // An unknown worker's word is ignored here and refused by the loop's first look.
        self.workers.set_cached(worker_id, cached);
        loop {
            if !self.workers.is_known(worker_id) {
                return Err(CoreError::UnknownWorker(worker_id.to_string()));
            }
            if self.workers.is_draining(worker_id) {
                return Ok(None);
            }
            // Register interest before looking, so a notify between the look and the wait is
            // not lost.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_lease(worker_id, &minted).await? {
                Leasing::Leased(t) => return Ok(Some(*t)),
                Leasing::NeedsToken(org) => {
                    if let Err(e) = self.forge.forge_token(&org).await {
                        tracing::warn!(org = %org.name, error = %e, "no installation token for a lease");
                    }
                    minted.insert(org.id.clone());
                    continue;
                }
                Leasing::NeedsRepository(repo) => {
                    // Created outside the queue lock; then look again at once.
                    self.catalog.ensure_snapshot_repo(&repo).await?;
                    continue;
                }
                Leasing::Nothing => {}
            }
            // Tasks in backoff become ready without a notify: look again at least every second.
            let tick = tokio::time::Instant::now() + Duration::from_secs(1);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline.min(tick)) => {}
                _ = self.stopping.cancelled() => return Ok(None),
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    async fn try_lease(&self, worker_id: &str, minted: &HashSet<OrgId>) -> CoreResult<Leasing> {
        let now = self.clock.now_ms();
        // The queue lock is held from the choice to the lease's store transaction, across the
        // store reads of the repository, organisation and the kind's records. Kept because the
        // lease must be durable before it is visible (a restarted coordinator honours persisted
        // leases only), and between the choice and that write nothing may lease, complete,
        // reap or cancel the chosen task or take its repository; without the hold the queue
        // would need a "being leased" state that every other path honours. The slow parts (a
        // snapshot repository's creation, an installation token's mint) already run outside it
        // (`Leasing::Needs*`). Cost: every queue operation (other workers' acquires,
        // completions, confirms, progress events, the reaper) waits for these reads and one
        // store commit per lease.
        let mut q = self.state.lock().await;
        let busy = q.busy_repos();
        let mut candidates: Vec<Candidate> = q
            .active
            .values()
            // Nothing reads a repository while maintenance prunes it (a verify or restore
            // would find packs deleted under it); backups wait through `busy` already.
            .filter(|t| !q.maintenance.contains(&t.repo_id))
            .filter_map(|t| match t.lease.state {
                TaskState::Pending { not_before_ms } => Some(Candidate {
                    task_id: t.id.clone(),
                    org_id: t.org_id.clone(),
                    repo_id: t.repo_id.clone(),
                    exclusive: kinds::exclusive(t.kind),
                    priority: t.priority,
                    enqueued_at_ms: t.enqueued_at_ms,
                    seq: t.seq,
                    not_before_ms,
                    placement: Placement::Anywhere,
                }),
                _ => None,
            })
            .collect();
        self.place(worker_id, &q, &mut candidates);
        let ctx = QueueContext {
            org_served: &q.org_served,
            busy_repos: &busy,
        };
        let Some(choice) = select(&candidates, &ctx, now) else {
            return Ok(Leasing::Nothing);
        };
        let task_id = choice.task_id.clone();
        let Some(mut task) = q.active.get(&task_id).cloned() else {
            return Ok(Leasing::Nothing);
        };
        let repo = self
            .store
            .repo(&task.repo_id)
            .await?
            .ok_or_else(|| not_found("repository", task.repo_id.clone()))?;
        if kinds::needs_snapshot_repo(&task, &repo) {
            return Ok(Leasing::NeedsRepository(Box::new(repo)));
        }
        let org = self
            .store
            .org(&task.org_id)
            .await?
            .ok_or_else(|| not_found("organisation", task.org_id.clone()))?;
        // The organisation whose credential the lease will carry (the source's for a backup,
        // the target credential's for a restore to a forge).
        let credential_org = kinds::credential_org(self, &task, &org, &repo).await?;
        if let Some(cred) = credential_org
            && !minted.contains(&cred.id)
            && matches!(cred.credential, Some(OrgCredential::App { .. }))
            && self.forge.cached_forge_token(&cred).is_none()
        {
            return Ok(Leasing::NeedsToken(Box::new(cred)));
        }
        let attempt = task.lease.lease(worker_id, now, &self.policy)?;
        let mut batch = Batch::default();
        batch.task(&task);
        let lease = Lease {
            task_id: task.id.clone(),
            attempt,
        };
        let mut access = crate::tasks::lease_access::repo_access(
            &self.secrets,
            &self.forge,
            &org,
            &repo,
            self.locations.lease_storage(&org).await?,
        )?;
        let mut rate = None;
        let l = LeaseCtx {
            task: &task,
            org: &org,
            worker_id,
            lease: &lease,
            now,
        };
        let spec = kinds::lease(self, &l, &mut access, &mut rate, &mut batch).await?;
        let leased = LeasedTask {
            lease,
            repo: access,
            rate,
            spec,
        };
        self.store.apply(batch).await?;
        q.lease_seq += 1;
        let seq = q.lease_seq;
        q.org_served.insert(task.org_id.clone(), (seq, now));
        q.lease_started.insert(task.id.clone(), now);
        q.active.insert(task.id.clone(), task.clone());
        drop(q);
        self.workers.assign(worker_id, &task.id);
        tracing::info!(task = %task.id, attempt, worker = %worker_id, repo = %repo.full_name(), kind = task.kind.as_str(), "leased");
        self.progress.publish(&Progress {
            task_id: task.id.clone(),
            attempt,
            phase: "leased".into(),
            status: Status::Running,
            error: String::new(),
            report: WorkerProgress {
                worker_id: worker_id.to_string(),
                ..Default::default()
            },
        });
        Ok(Leasing::Leased(Box::new(leased)))
    }

    /// Sets each candidate's placement as seen from `worker_id`, for the kinds that work in the
    /// mirror cache: a mirror another connected worker holds is left to it for the affinity
    /// wait counted from when the task became ready (enqueued, or its backoff over).
    fn place(&self, worker_id: &str, q: &crate::tasks::task_queue::Queue, cands: &mut [Candidate]) {
        let wait_ms = self.affinity_wait_ms.load(Ordering::Relaxed);
        let users: Vec<usize> = (0..cands.len())
            .filter(|&i| {
                q.active
                    .get(&cands[i].task_id)
                    .is_some_and(|t| kinds::uses_mirror_cache(t.kind))
            })
            .collect();
        let placements = self.workers.placements(
            worker_id,
            users.iter().map(|&i| {
                let c = &cands[i];
                (&c.repo_id, c.enqueued_at_ms.max(c.not_before_ms))
            }),
            wait_ms,
        );
        for (i, p) in users.into_iter().zip(placements) {
            cands[i].placement = p;
        }
    }

    /// The fence before a commit-relevant write: succeeds only for the current, unexpired lease.
    pub async fn confirm_lease(&self, worker_id: &str, tok: &Lease) -> CoreResult<i64> {
        let now = self.clock.now_ms();
        let q = self.state.lock().await;
        let t = q
            .active
            .get(&tok.task_id)
            .ok_or_else(|| stale(tok, "the task is no longer active"))?;
        check_holder(t, worker_id, tok)?;
        Ok(t.lease.remaining_ms(tok.attempt, now)?)
    }

    /// Records a progress event of a current lease. An event of a stale attempt of an active
    /// task is refused (the service then tells that worker to stop).
    pub async fn task_event(&self, tok: &Lease, ev: &WorkerProgress) -> CoreResult<()> {
        {
            let q = self.state.lock().await;
            // Progress that arrives after the completion (the stream and the completion travel
            // separately) is dropped quietly: there is nothing left to cancel.
            let Some(t) = q.active.get(&tok.task_id) else {
                return Ok(());
            };
            t.lease.check(tok.attempt, self.clock.now_ms())?;
        }
        self.progress.publish(&Progress {
            task_id: tok.task_id.clone(),
            attempt: tok.attempt,
            phase: ev.phase.clone(),
            status: Status::Running,
            error: String::new(),
            report: ev.clone(),
        });
        Ok(())
    }

    /// The commit point. A successful backup exists when, and only when, this accepts it.
    pub async fn complete(&self, tok: &Lease, req: &TaskReport) -> CoreResult<CompletionOutcome> {
        let now = self.clock.now_ms();
        // The queue lock is held from the holder and attempt check to the commit transaction,
        // across the kind's reads. Kept because this is the commit fence: if it were released in
        // between, the reaper or a cancel could re-queue the task and another attempt lease it
        // while this one commits, and a backup would then have two committed attempts (or a
        // committed snapshot whose task runs again). Cost: queue operations wait for the kind's
        // reads and one store commit per completion; the work after the commit (catalog
        // object, verification and drill outcomes, damaged packs) runs after the lock is released.
        let mut q = self.state.lock().await;
        let Some(current) = q.active.get(&tok.task_id) else {
            drop(q);
            self.forget_rejected(tok, req);
            return Err(stale(tok, "the task is no longer active"));
        };
        if let Err(e) = check_holder(current, &req.worker_id, tok)
            .and_then(|_| Ok(current.lease.check(tok.attempt, now)?))
        {
            drop(q);
            self.forget_rejected(tok, req);
            metrics::counter!("repovault_stale_completions_total").increment(1);
            return Err(e);
        }
        let mut task = current.clone();
        let outcome = if req.success {
            Outcome::Success
        } else if req.lease_lost {
            Outcome::Interrupted {
                error: format!(
                    "attempt {} gave its lease back: {}",
                    tok.attempt,
                    if req.error.is_empty() {
                        "lost on the coordinator's side"
                    } else {
                        &req.error
                    }
                ),
            }
        } else {
            Outcome::Failure {
                error: if req.error.is_empty() {
                    "worker reported failure without a message".into()
                } else {
                    req.error.clone()
                },
                retryable: req.retryable,
            }
        };
        task.lease.finish(tok.attempt, outcome, now, &self.policy)?;
        if req.success {
            task.committed_attempt = Some(tok.attempt);
        }
        let status = task.lease.state.status();
        let mut batch = Batch::default();
        batch.task(&task);
        let done = Completion {
            task: &task,
            report: req,
            attempt: tok.attempt,
            status,
            now,
        };
        let finished = kinds::commit(self, &done, &mut batch).await?;
        if req.success && kinds::uses_mirror_cache(task.kind) {
            // The worker's cache now holds this mirror; noted before the commit makes the
            // completion visible, so a backup enqueued on seeing it is placed there even before
            // the worker's next acquire says so.
            self.workers.note_cached(&req.worker_id, &task.repo_id);
        }
        // Commit: the store transaction is the point of no return.
        self.store.apply(batch).await?;
        let terminal = task.lease.state.is_terminal();
        let leased_at = q.lease_started.remove(&task.id);
        if terminal {
            q.active.remove(&task.id);
        } else {
            q.active.insert(task.id.clone(), task.clone());
        }
        drop(q);
        self.workers.unassign(&req.worker_id, &task.id);
        if !terminal {
            self.ready.notify_waiters();
        }
        let outcome = match status {
            Status::Completed => CompletionOutcome::Committed,
            Status::Failed => CompletionOutcome::Failed,
            _ => CompletionOutcome::Requeued,
        };
        let outcome_label = match outcome {
            CompletionOutcome::Committed => "completed",
            CompletionOutcome::Failed => "failed",
            CompletionOutcome::Requeued => "retry",
        };
        metrics::counter!("repovault_tasks_finished_total", "kind" => task.kind.as_str(), "outcome" => outcome_label)
            .increment(1);
        crate::metric_families::observe_completion(task.kind, outcome_label, leased_at, now, req);
        tracing::info!(task = %task.id, attempt = tok.attempt, worker = %req.worker_id, outcome = ?outcome, "completion accepted");
        kinds::after_commit(self, &done, finished).await;
        self.publish_state(&task, tok.attempt, &req.worker_id);
        Ok(outcome)
    }

    /// Gives a lease back without counting a failure.
    pub async fn release(&self, worker_id: &str, tok: &Lease, reason: &str) -> CoreResult<()> {
        let now = self.clock.now_ms();
        let mut q = self.state.lock().await;
        let current = q
            .active
            .get(&tok.task_id)
            .ok_or_else(|| stale(tok, "the task is no longer active"))?;
        check_holder(current, worker_id, tok)?;
        let mut task = current.clone();
        task.lease.release(tok.attempt, now)?;
        self.persist_requeue(&task).await?;
        q.active.insert(task.id.clone(), task.clone());
        drop(q);
        self.workers.unassign(worker_id, &task.id);
        tracing::info!(task = %task.id, attempt = tok.attempt, worker = %worker_id, reason, "released");
        self.ready.notify_waiters();
        self.publish_state(&task, tok.attempt, worker_id);
        Ok(())
    }

    /// Cancels an active task: it fails at once with `reason` (no retry) and its lease is
    /// revoked (the holder's next heartbeat or progress event is answered with a revocation, so
    /// its worker stops; its completion is refused as stale). Returns whether it was active.
    pub(crate) async fn cancel_task(&self, task_id: &TaskId, reason: &str) -> CoreResult<bool> {
        let now = self.clock.now_ms();
        let mut q = self.state.lock().await;
        let Some(mut task) = q.active.get(task_id).cloned() else {
            return Ok(false);
        };
        let worker = match &task.lease.state {
            TaskState::Leased { worker_id, .. } => worker_id.clone(),
            _ => String::new(),
        };
        task.lease.state = TaskState::Failed {
            at_ms: now,
            error: reason.to_string(),
        };
        task.lease.last_error = Some(reason.to_string());
        if let Some(b) = self.persist_requeue(&task).await? {
            metrics::counter!("repovault_backups_total", "outcome" => b.status.as_str())
                .increment(1);
        }
        q.lease_started.remove(&task.id);
        q.active.remove(&task.id);
        drop(q);
        if !worker.is_empty() {
            self.workers.unassign(&worker, &task.id);
        }
        tracing::info!(task = %task.id, worker = %worker, reason, "cancelled");
        self.publish_state(&task, task.lease.attempt, &worker);
        Ok(true)
    }

    /// Re-queues expired leases (with backoff) or fails tasks after their last attempt.
    pub async fn reap(&self) -> CoreResult<usize> {
        let now = self.clock.now_ms();
        let mut q = self.state.lock().await;
        let expired: Vec<TaskId> = q
            .active
            .values()
            .filter(|t| t.lease.expires_at_ms().is_some_and(|e| e <= now))
            .map(|t| t.id.clone())
            .collect();
        let mut finished = Vec::new();
        for id in &expired {
            let Some(mut task) = q.active.get(id).cloned() else {
                continue;
            };
            let worker = match &task.lease.state {
                TaskState::Leased { worker_id, .. } => worker_id.clone(),
                _ => String::new(),
            };
            let attempt = task.lease.attempt;
            if q.inherited.remove(id) == Some(attempt) {
                // Its holder never came back after the restart: not the task's failure.
                task.lease.reap_inherited(now, &self.policy);
                tracing::warn!(task = %task.id, attempt, worker = %worker, "inherited lease not taken back; re-queued");
            } else {
                task.lease.reap(now, &self.policy);
                tracing::warn!(task = %task.id, attempt, worker = %worker, "lease expired");
            }
            metrics::counter!("repovault_lease_expiries_total").increment(1);
            if let Some(b) = self.persist_requeue(&task).await? {
                finished.push(b);
            }
            self.workers.unassign(&worker, &task.id);
            q.lease_started.remove(&task.id);
            if task.lease.state.is_terminal() {
                q.active.remove(&task.id);
            } else {
                q.active.insert(task.id.clone(), task.clone());
            }
            self.publish_state(&task, attempt, &worker);
            // The expired attempt may still write a snapshot; look for it after its write
            // deadline has certainly passed.
            let _ = self.forget_tx.send(ForgetRequest::Repo {
                repo_id: task.repo_id.clone(),
            });
        }
        drop(q);
        for b in finished {
            kinds::after_backup_finished(self, &b).await;
        }
        if !expired.is_empty() {
            self.ready.notify_waiters();
        }
        Ok(expired.len())
    }

    /// Persists a task that went back to the queue or failed without a completion, with its
    /// record's status. Returns the backup record when it became terminal (its catalog object
    /// is the caller's, after the queue lock). Callers hold the queue lock, for the reason
    /// `complete` does: the re-queue must be durable before another attempt can be leased. The
    /// outcome of a verify or drill that failed for good is recorded here too, so also under
    /// the lock (a few store reads and one write; they are rare).
    async fn persist_requeue(&self, task: &TaskRecord) -> CoreResult<Option<BackupRecord>> {
        let now = self.clock.now_ms();
        let status = task.lease.state.status();
        let mut batch = Batch::default();
        batch.task(task);
        let terminal = kinds::requeue(self, task, status, now, &mut batch).await?;
        self.store.apply(batch).await?;
        kinds::after_requeue(self, task, status).await;
        Ok(terminal)
    }

    fn forget_rejected(&self, tok: &Lease, req: &TaskReport) {
        if let Some(snapshot_id) = req.backup().and_then(|b| b.snapshot_id.clone()) {
            let _ = self.forget_tx.send(ForgetRequest::Snapshot {
                task_id: tok.task_id.clone(),
                attempt: tok.attempt,
                snapshot_id,
            });
        }
    }

    fn publish_state(&self, task: &TaskRecord, attempt: u32, worker_id: &str) {
        let status = task.lease.state.status();
        self.progress.publish(&Progress {
            task_id: task.id.clone(),
            attempt,
            phase: match status {
                Status::Completed => "done".into(),
                Status::Failed => "failed".into(),
                Status::Pending => "queued".into(),
                Status::Running => "running".into(),
            },
            status,
            error: task
                .lease
                .last_error
                .clone()
                .filter(|_| status != Status::Completed)
                .unwrap_or_default(),
            report: WorkerProgress {
                worker_id: worker_id.to_string(),
                ..Default::default()
            },
        });
    }
}

fn stale(tok: &Lease, why: &str) -> CoreError {
    CoreError::FailedPrecondition(format!(
        "lease of task {} attempt {} is stale: {why}",
        tok.task_id, tok.attempt
    ))
}

pub(crate) fn check_holder(t: &TaskRecord, worker_id: &str, tok: &Lease) -> CoreResult<()> {
    match &t.lease.state {
        TaskState::Leased { worker_id: w, .. }
            if w == worker_id && t.lease.attempt == tok.attempt =>
        {
            Ok(())
        }
        _ => Err(stale(
            tok,
            &format!(
                "the task is {} at attempt {}",
                t.lease.state.name(),
                t.lease.attempt
            ),
        )),
    }
}
