//! Task lifecycle, generic over kinds: a task's record, the long-poll and lease, confirm,
//! progress, the commit of a completion; a task's way back to the queue (release, cancel,
//! reap) is `requeue.rs`. What differs by kind (how it is
//! enqueued and leased, what its completion commits, what a re-queue writes) is in `kinds/`;
//! what a lease carries of the repository in `lease_access.rs`; the queue's state, enqueueing and
//! read-only views in `task_queue.rs`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::catalog::reconcile::ForgetRequest;
use crate::error::{CoreError, CoreResult, not_found};
use crate::model::{OrgCredential, OrgId, RepoId, RepoRecord, Status, TaskId, TaskRecord};
use crate::store::Batch;
use crate::tasks::lease_choice::{Look, choose};
use crate::tasks::lease_state::{Outcome, TaskState};
use crate::tasks::queue_order::QueueContext;

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
        // The queue lock is held from the choice to the staging of the lease's store
        // transaction, across the store reads of the repository, organisation and the kind's
        // records: between the choice and the staging nothing may lease, complete, reap or
        // cancel the chosen task or take its repository. Staged under the lock, the lease
        // commits in order with every other change the queue decides; awaited after the lock
        // is released, it shares a store commit with the leases and completions staged
        // meanwhile (group commit: `kv/group_commit.rs`). The lease is durable before it is
        // visible to its worker (a restarted coordinator honours persisted leases only); the
        // queue's memory runs ahead of the store only until the commit, and goes back to the
        // store's record if it fails (`settle`). The slow parts (a snapshot repository's
        // creation, an installation token's mint) run outside the lock (`Leasing::Needs*`).
        let mut q = self.state.lock().await;
        let Some(task_id) = self.choose(worker_id, &q, now) else {
            return Ok(Leasing::Nothing);
        };
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
        let staged = self.store.stage(batch)?;
        q.lease_seq += 1;
        let seq = q.lease_seq;
        q.org_served.insert(task.org_id.clone(), (seq, now));
        q.lease_started.insert(task.id.clone(), now);
        q.active.insert(task.clone());
        drop(q);
        self.settle(staged, &task).await?;
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

    /// The task `worker_id` leases next (`lease_choice.rs`), under one look at the fleet.
    fn choose(
        &self,
        worker_id: &str,
        q: &crate::tasks::task_queue::Queue,
        now: i64,
    ) -> Option<TaskId> {
        let wait_ms = self.affinity_wait_ms.load(Ordering::Relaxed);
        let busy = |r: &RepoId| q.is_busy(r);
        self.workers
            .with_placement(worker_id, wait_ms, |held, place| {
                let look = Look {
                    ctx: QueueContext {
                        org_served: &q.org_served,
                        busy: &busy,
                    },
                    maintenance: &q.maintenance,
                    held,
                    place,
                    now_ms: now,
                };
                choose(&q.active, &look).cloned()
            })
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
        // The queue lock is held from the holder and attempt check to the staging of the commit
        // transaction, across the kind's reads. This is the commit fence: if it were released
        // in between, the reaper or a cancel could re-queue the task and another attempt lease
        // it while this one commits, and a backup would then have two committed attempts (or a
        // committed snapshot whose task runs again). Once staged, the commit takes effect
        // before anything the queue decides later, so the wait for it runs after the lock is
        // released and shares a store commit with others (group commit); the worker hears
        // "committed" only once it is durable. The work after the commit (catalog object,
        // verification and drill outcomes, damaged packs) runs after the lock too.
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
        let staged = self.store.stage(batch)?;
        let terminal = task.lease.state.is_terminal();
        let leased_at = q.lease_started.remove(&task.id);
        if terminal {
            q.active.remove(&task.id);
        } else {
            q.active.insert(task.clone());
        }
        drop(q);
        self.settle(staged, &task).await?;
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

    /// Waits for a change of `task` staged under the queue lock (and already applied to the
    /// queue's memory) to become durable. If it failed, the task's memory goes back to the
    /// store's record, read after every write staged before the read; as every change to a
    /// task is staged under the queue lock, which this holds, nothing newer is on its way. A
    /// lease the store still holds is renewed for one TTL: its holder was heard a moment ago
    /// and may retry its completion.
    async fn settle(&self, staged: crate::store::Staged, task: &TaskRecord) -> CoreResult<()> {
        let Err(e) = staged.await else {
            return Ok(());
        };
        tracing::warn!(task = %task.id, error = %e, "a task change was not committed; the queue takes the store's record back");
        let mut q = self.state.lock().await;
        match self.store.task(&task.id).await {
            Ok(Some(mut t)) if !t.lease.state.is_terminal() => {
                let renewed = self.clock.now_ms() + self.policy.ttl_ms;
                if let TaskState::Leased { expires_at_ms, .. } = &mut t.lease.state {
                    *expires_at_ms = (*expires_at_ms).max(renewed);
                }
                q.active.insert(t);
            }
            Ok(_) => {
                q.active.remove(&task.id);
                q.lease_started.remove(&task.id);
            }
            Err(read) => {
                // The store cannot say: the queue keeps what it decided, and a restart (or a
                // new leader) reloads the store's truth.
                tracing::error!(task = %task.id, error = %read, "the task's record could not be read back after a failed commit");
            }
        }
        drop(q);
        self.ready.notify_waiters();
        Err(e.into())
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

    pub(super) fn publish_state(&self, task: &TaskRecord, attempt: u32, worker_id: &str) {
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

pub(super) fn stale(tok: &Lease, why: &str) -> CoreError {
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

#[cfg(test)]
#[path = "failed_commit_tests.rs"]
mod failed_commit_tests;
