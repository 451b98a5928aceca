//! The task queue component (its state, construction, enqueueing and read-only views); what is
//! done with the tasks (leasing, completing, re-queueing, reaping) is `lifecycle.rs`; which
//! task goes next is `queue_order.rs`; the lease state machine is `lease_state.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use repovault_common::timing::Timing;

use crate::catalog::catalog_objects::Catalog;
use crate::catalog::org_registry::Registry;
use crate::catalog::reconcile::ForgetRequest;
use crate::clock::Clock;
use crate::error::CoreResult;
use crate::forge_access::ForgeAccess;
use crate::model::{OrgId, RepoId, RepoRecord, TaskId, TaskKind, TaskRecord, VerifyMode};
use crate::secrets::Secrets;
use crate::store::{Batch, Store};
use crate::tasks::active_tasks::ActiveTasks;
use crate::tasks::lease_state::{LeasePolicy, TaskState};
use crate::tasks::queue_order::Candidate;
use crate::tasks::task_progress::ProgressHub;
use crate::tasks::worker_registry::WorkerRegistry;
use crate::verification::verify_ledger::VerifyLedger;

/// The active (non-terminal) tasks and the fairness bookkeeping of the queue.
#[derive(Default)]
pub(crate) struct Queue {
    /// Pending and leased tasks, indexed. Lease expiries here run ahead of the store:
    /// heartbeats renew in memory only.
    pub(crate) active: ActiveTasks,
    /// Enqueue order, for FIFO among equals.
    pub(crate) next_seq: u64,
    /// Lease order, for "served least recently".
    pub(crate) lease_seq: u64,
    /// Organisation -> (lease_seq, time) of its last lease.
    pub(crate) org_served: HashMap<OrgId, (u64, i64)>,
    /// Repositories under maintenance (forget, prune, purge: `maintenance/`): no backup of
    /// them is leased meanwhile.
    pub(crate) maintenance: HashSet<RepoId>,
    /// Task -> attempt of the leases loaded from the store at start whose holder has not
    /// renewed them with this coordinator yet (`tasks/fleet.rs`). One that expires so was ended by the
    /// restart, not by the task: the reaper re-queues it without counting a failure. Keyed by
    /// attempt too, so an entry left behind never applies to a later lease of the task.
    pub(crate) inherited: HashMap<TaskId, u32>,
    /// Task -> when this coordinator granted its current lease, for the duration histogram
    /// (`metric_families.rs`); leases inherited from a previous run have none.
    pub(crate) lease_started: HashMap<TaskId, i64>,
}

impl Queue {
    /// Whether no exclusive task (a backup: `kinds::Kind::EXCLUSIVE`) of `repo` may be leased
    /// now: a leased one holds it, or it is under maintenance.
    pub(crate) fn is_busy(&self, repo: &RepoId) -> bool {
        self.active.is_written(repo) || self.maintenance.contains(repo)
    }
}

/// The task queue: the active tasks under one lock, the signal that wakes long-polling acquires,
/// the lease policy, the workers holding leases and the progress they stream; and what the task
/// kinds read and write when a lease is granted or a completion committed (the store, the
/// catalog, secrets, forge access, the registry and the verification ledger).
///
/// Ordering and atomicity: every change to a task is written to the store in one transaction
/// together with the record it produces (backup or restore), staged under the queue lock, so
/// the store applies the queue's changes in the order the queue decided them. Enqueues and
/// re-queues wait for their commit under the lock; a lease or a completion is applied to memory
/// at once and awaited after the lock (group commit), told to its worker only once durable, and
/// taken back from the store's record if its commit fails (`lifecycle.rs`, `settle`).
/// Lease renewals are the exception: heartbeats stay in memory (a write per heartbeat would
/// dominate the store's load), and a queue loaded after a restart honours every persisted lease
/// for a takeover grace before reaping it.
///
/// Methods: this file (construction, loading, enqueueing, read-only views) and `lifecycle.rs`
/// (leasing, completing, re-queueing, reaping).
pub struct TaskQueue {
    /// The queue's state. Held across a store commit where the queue and the store must change
    /// together (leasing, completing, re-queueing, enqueueing: see `lifecycle.rs`).
    pub(crate) state: Mutex<Queue>,
    /// Woken whenever a task may have become ready (enqueue, release, re-queue).
    pub(crate) ready: Notify,
    pub(crate) policy: LeasePolicy,
    /// Attempts a task gets before it fails for good.
    pub(crate) max_attempts: u32,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) secrets: Arc<Secrets>,
    pub(crate) forge: Arc<ForgeAccess>,
    pub(crate) locations: Arc<crate::storage_locations::StorageLocations>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) ledger: Arc<VerifyLedger>,
    /// Progress streamed by the workers, fanned out to watchers.
    pub progress: ProgressHub,
    /// The connected workers and the tasks each holds.
    pub workers: WorkerRegistry,
    /// Snapshots to forget (uncommitted attempts), drained by the reconciler.
    pub(crate) forget_tx: tokio::sync::mpsc::UnboundedSender<ForgetRequest>,
    /// Cancelled when the coordinator stops: long-polling acquires end.
    pub(crate) stopping: CancellationToken,
    /// How long a ready backup is left to the worker holding its repository's mirror
    /// (`queue_order::Placement`), in milliseconds: [`DEFAULT_AFFINITY_WAIT`] or the config's.
    pub(crate) affinity_wait_ms: AtomicI64,
}

/// The default bound on how long a ready backup waits for the worker holding its mirror: 30 s.
/// An incremental backup of the benchmark repository (20,000 commits, 50 MiB) takes about 2 s
/// and its first backup 5 s (README, Performance), so a busy holder usually frees a slot well
/// within the bound, while the clone or re-seed it saves grows with the repository (minutes for
/// gigabytes); an idle holder is in a long-poll and takes the task at once.
pub const DEFAULT_AFFINITY_WAIT: Duration = Duration::from_secs(30);

/// What a [`TaskQueue`] is built from.
pub struct TaskQueueParts {
    pub timing: Timing,
    pub max_attempts: u32,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub catalog: Arc<Catalog>,
    pub secrets: Arc<Secrets>,
    pub forge: Arc<ForgeAccess>,
    pub locations: Arc<crate::storage_locations::StorageLocations>,
    pub registry: Arc<Registry>,
    pub ledger: Arc<VerifyLedger>,
    pub forget_tx: tokio::sync::mpsc::UnboundedSender<ForgetRequest>,
    pub stopping: CancellationToken,
}

/// A task to enqueue (its subject record is built by the caller with the task's id).
pub(crate) struct NewTask<'a> {
    pub kind: TaskKind,
    pub repo: &'a RepoRecord,
    pub priority: u8,
    /// Equal active tasks collapse onto one: an enqueue with the key of an active task returns
    /// that task and writes nothing of its own.
    pub key: String,
    pub mode: Option<VerifyMode>,
}

/// The subject record of a new task, built once the task's id and the time are known: the
/// subject's id and the records to write with the task.
pub(crate) type Subject<'a> = Box<dyn FnOnce(&TaskId, i64) -> (String, Batch) + Send + 'a>;

/// One enqueue of [`TaskQueue::enqueue_all`]: the task, its subject, and what is written
/// whether or not the task collapses onto an active one.
pub(crate) struct Enqueue<'a> {
    pub task: NewTask<'a>,
    pub subject: Subject<'a>,
    pub always: Batch,
}

impl<'a> Enqueue<'a> {
    /// The enqueue of a task whose subject is an existing record (a verification's backup, a
    /// drill's record written by the caller): nothing is written with the task.
    pub(crate) fn of_existing(
        kind: TaskKind,
        repo: &'a RepoRecord,
        subject: &'a str,
        mode: Option<VerifyMode>,
        priority: u8,
        key: String,
    ) -> Self {
        Self {
            task: NewTask {
                kind,
                repo,
                priority,
                key,
                mode,
            },
            subject: Box::new(move |_, _| (subject.to_string(), Batch::default())),
            always: Batch::default(),
        }
    }
}

/// An enqueue's outcome: the new task, or the active one it collapsed onto.
pub(crate) struct Enqueued {
    pub record: TaskRecord,
    pub created: bool,
}

impl TaskQueue {
    /// A queue leasing for `timing`'s lease TTL, with the active tasks of `parts.store` loaded.
    /// Leases persisted by a previous run are honoured for the takeover grace: their holders
    /// take them back by heartbeat or by registering again with their previous id
    /// (`tasks/fleet.rs`); one nobody took back is re-queued without counting a failure.
    pub async fn load(parts: TaskQueueParts) -> CoreResult<Self> {
        let h = i64::try_from(parts.timing.heartbeat().as_millis()).unwrap_or(i64::MAX);
        let policy = LeasePolicy {
            ttl_ms: i64::try_from(parts.timing.lease_ttl().as_millis()).unwrap_or(i64::MAX),
            // Retry after one heartbeat, doubling, at most 5 minutes: a flapping source is not
            // hammered, and a worker lost to a restart is replaced within seconds.
            backoff_base_ms: h,
            backoff_max_ms: 5 * 60 * 1000,
        };
        let now = parts.clock.now_ms();
        let grace = i64::try_from(parts.timing.takeover_grace().as_millis()).unwrap_or(i64::MAX);
        let mut q = Queue::default();
        let mut max_seq = 0;
        for mut t in parts.store.tasks().await? {
            max_seq = max_seq.max(t.seq);
            if t.lease.state.is_terminal() {
                continue;
            }
            if let TaskState::Leased { expires_at_ms, .. } = &mut t.lease.state {
                *expires_at_ms = now + grace;
                q.inherited.insert(t.id.clone(), t.lease.attempt);
            }
            q.active.insert(t);
        }
        q.next_seq = max_seq + 1;
        tracing::info!(active = q.active.len(), "loaded queue");
        Ok(Self {
            state: Mutex::new(q),
            ready: Notify::new(),
            policy,
            max_attempts: parts.max_attempts,
            store: parts.store,
            clock: parts.clock,
            catalog: parts.catalog,
            secrets: parts.secrets,
            forge: parts.forge,
            locations: parts.locations,
            registry: parts.registry,
            ledger: parts.ledger,
            progress: ProgressHub::default(),
            workers: WorkerRegistry::default(),
            forget_tx: parts.forget_tx,
            stopping: parts.stopping,
            affinity_wait_ms: AtomicI64::new(duration_ms(DEFAULT_AFFINITY_WAIT)),
        })
    }

    /// Sets how long a ready backup is left to the worker holding its mirror (0: not at all;
    /// the holder is still preferred among equals). Applies from the next look at the queue.
    pub fn set_affinity_wait(&self, wait: Duration) {
        self.affinity_wait_ms
            .store(duration_ms(wait), Ordering::Relaxed);
    }

    /// Enqueues one task, or returns the active task with the same key ([`Self::enqueue_all`]).
    pub(crate) async fn enqueue(&self, e: Enqueue<'_>) -> CoreResult<Enqueued> {
        let mut out = self.enqueue_all(vec![e], 1).await?;
        out.pop()
            .ok_or_else(|| crate::error::CoreError::Internal("an enqueue returned no task".into()))
    }

    /// Enqueues tasks, `per_txn` to a store transaction under one hold of the queue lock (one
    /// commit per task would cap a large enqueue at the disk's commit rate). A task whose key
    /// equals an active task's collapses onto it: its subject is not built and only its
    /// `always` records are written. Returns one outcome per enqueue, in order.
    ///
    /// The queue lock is held across the store writes: the collapse check and the enqueue
    /// sequence must agree with what the store holds, and a task is durable before any worker
    /// can lease it. Cost: queue operations wait for one store commit per transaction.
    pub(crate) async fn enqueue_all(
        &self,
        items: Vec<Enqueue<'_>>,
        per_txn: usize,
    ) -> CoreResult<Vec<Enqueued>> {
        let mut out = Vec::with_capacity(items.len());
        if items.is_empty() {
            return Ok(out);
        }
        let mut q = self.state.lock().await;
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let now = self.clock.now_ms();
            let mut batch = Batch::default();
            let mut created: Vec<TaskRecord> = Vec::new();
            for e in items.by_ref().take(per_txn.max(1)) {
                batch.extend(e.always);
                // Equal to an active task, or to one created earlier in this call.
                if let Some(t) = q
                    .active
                    .with_key(&e.task.key)
                    .or_else(|| created.iter().find(|t| t.idempotency_key == e.task.key))
                {
                    out.push(Enqueued {
                        record: t.clone(),
                        created: false,
                    });
                    continue;
                }
                let id = crate::ids::new_task_id();
                let (subject, records) = (e.subject)(&id, now);
                let mut task = self.new_task(&mut q, id, &e.task, &subject, now);
                task.mode = e.task.mode;
                batch.task(&task).extend(records);
                // In order with the collapsed ones; only an applied transaction returns `out`.
                out.push(Enqueued {
                    record: task.clone(),
                    created: true,
                });
                created.push(task);
            }
            self.store.apply(batch).await?;
            for t in created {
                metrics::counter!("repovault_tasks_enqueued_total", "kind" => t.kind.as_str())
                    .increment(1);
                q.active.insert(t);
            }
        }
        drop(q);
        self.ready.notify_waiters();
        Ok(out)
    }

    /// A new pending task (not yet in the queue or the store), next in enqueue order.
    fn new_task(
        &self,
        q: &mut Queue,
        id: TaskId,
        new: &NewTask<'_>,
        subject: &str,
        now: i64,
    ) -> TaskRecord {
        let seq = q.next_seq;
        q.next_seq += 1;
        TaskRecord {
            id,
            kind: new.kind,
            org_id: new.repo.org_id.clone(),
            repo_id: new.repo.id.clone(),
            subject_id: subject.to_string(),
            priority: new.priority,
            enqueued_at_ms: now,
            seq,
            lease: crate::tasks::lease_state::LeaseState::new(self.max_attempts),
            idempotency_key: new.key.clone(),
            committed_attempt: None,
            mode: None,
        }
    }
    /// The status of a task as the store and queue know it.
    pub async fn task_status(&self, task_id: &TaskId) -> CoreResult<Option<TaskRecord>> {
        if let Some(t) = self.state.lock().await.active.get(task_id) {
            return Ok(Some(t.clone()));
        }
        Ok(self.store.task(task_id).await?)
    }

    /// The queue as the CLI shows it: every active task, best first (highest effective
    /// priority, then enqueue order, then id: the order `GetQueue` pages in).
    pub async fn queue_snapshot(&self) -> Vec<(TaskRecord, u8)> {
        let now = self.clock.now_ms();
        let q = self.state.lock().await;
        let mut v: Vec<(TaskRecord, u8)> = q
            .active
            .values()
            .map(|t| {
                let served = q.org_served.get(&t.org_id).map(|s| s.1);
                let c = Candidate {
                    task_id: &t.id,
                    org_id: &t.org_id,
                    repo_id: &t.repo_id,
                    exclusive: true,
                    priority: t.priority,
                    enqueued_at_ms: t.enqueued_at_ms,
                    seq: t.seq,
                    not_before_ms: 0,
                    placement: crate::tasks::queue_order::Placement::Anywhere,
                };
                (
                    t.clone(),
                    crate::tasks::queue_order::effective_priority(&c, served, now),
                )
            })
            .collect();
        v.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(a.0.seq.cmp(&b.0.seq))
                .then_with(|| a.0.id.cmp(&b.0.id))
        });
        v
    }

    /// Queue depth by priority, for metrics.
    pub async fn queue_depths(&self) -> (BTreeMap<u8, u64>, u64, i64) {
        let now = self.clock.now_ms();
        let q = self.state.lock().await;
        let mut depth = BTreeMap::new();
        let mut leased = 0;
        let mut oldest = 0;
        for t in q.active.values() {
            match t.lease.state {
                TaskState::Pending { not_before_ms } => {
                    *depth.entry(t.priority).or_insert(0) += 1;
                    if not_before_ms <= now {
                        oldest = oldest.max(now - t.enqueued_at_ms);
                    }
                }
                TaskState::Leased { .. } => leased += 1,
                _ => {}
            }
        }
        (depth, leased, oldest)
    }

    /// Whether a task with this id and attempt was committed, or may still be (for the
    /// reconciler): `Some(true)` keep, `Some(false)` forget, `None` unknown task.
    ///
    /// Only "keep" is taken from this queue's memory. "Forget" is read from the store's record,
    /// which is what any coordinator of a group reads: a leader deposed without knowing it yet
    /// judges from a queue its successor has moved on from. The answer cannot turn later: an
    /// attempt that is neither committed nor the record's current lease never commits (a
    /// completion of an attempt other than the current lease's is refused), and leases are
    /// written to the store before anyone sees them.
    pub async fn snapshot_verdict(
        &self,
        task_id: &TaskId,
        attempt: u32,
    ) -> CoreResult<Option<bool>> {
        let open = |t: &TaskRecord| {
            matches!(t.lease.state, TaskState::Leased { .. }) && t.lease.attempt == attempt
        };
        if let Some(t) = self.state.lock().await.active.get(task_id)
            && open(t)
        {
            return Ok(Some(true));
        }
        Ok(self
            .store
            .task(task_id)
            .await?
            .map(|t| t.committed_attempt == Some(attempt) || open(&t)))
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use crate::model::{BackupType, Trigger};
    use crate::store::Batch;
    use crate::tasks::kinds::backup_enqueue;

    /// Equal enqueues collapse onto one task also within one call.
    #[tokio::test]
    async fn equal_enqueues_in_one_call_make_one_task() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, repo) = crate::coordinator::testing::core_with_repo(dir.path(), "r").await;
        let item = || {
            backup_enqueue(
                &repo,
                BackupType::Full,
                Trigger::Schedule,
                5,
                Batch::default(),
            )
        };
        let out = c
            .queue
            .enqueue_all(vec![item(), item()], 40)
            .await
            .expect("enqueue");
        assert_eq!(
            out.iter().map(|e| e.created).collect::<Vec<_>>(),
            [true, false]
        );
        assert_eq!(out[0].record.id, out[1].record.id);
        assert_eq!(c.queue.queue_snapshot().await.len(), 1);
    }

    /// A leader's queue that fell behind its store (a deposed leader, unaware yet) never calls
    /// the snapshot of an attempt its successor leased or committed uncommitted: "forget" is
    /// the store's answer, not the queue's.
    #[tokio::test]
    async fn a_snapshot_is_forgotten_only_on_the_stores_word() {
        use crate::tasks::lease_state::TaskState;
        let dir = tempfile::tempdir().expect("dir");
        let (c, _) = crate::coordinator::testing::core_with_repo(dir.path(), "a").await;
        let worker_id = crate::coordinator::testing::one_slot_worker(&c, "w").await;
        c.backups.run_backup("acme/a").await.expect("backup");
        let leased = c
            .queue
            .acquire(&worker_id, Default::default(), std::time::Duration::ZERO)
            .await
            .expect("acquire")
            .expect("a lease");
        let id = leased.lease.task_id.clone();
        let put_record = |t: &crate::model::TaskRecord| {
            let mut b = Batch::default();
            b.task(t);
            let store = c.store.clone();
            async move { store.apply(b).await.expect("write") }
        };
        assert_eq!(
            c.queue.snapshot_verdict(&id, 1).await.expect("v"),
            Some(true)
        );
        assert_eq!(
            c.queue.snapshot_verdict(&id, 2).await.expect("v"),
            Some(false)
        );

        // A successor leased attempt 2 (this queue still holds attempt 1).
        let mut successor = c.store.task(&id).await.expect("read").expect("record");
        successor.lease.attempt = 2;
        put_record(&successor).await;
        assert_eq!(
            c.queue.snapshot_verdict(&id, 2).await.expect("v"),
            Some(true)
        );
        // ... and committed it.
        successor.lease.state = TaskState::Completed { at_ms: 1 };
        successor.committed_attempt = Some(2);
        put_record(&successor).await;
        assert_eq!(
            c.queue.snapshot_verdict(&id, 2).await.expect("v"),
            Some(true)
        );
        // Attempt 3 was never leased by anyone: forget.
        assert_eq!(
            c.queue.snapshot_verdict(&id, 3).await.expect("v"),
            Some(false)
        );
    }
}
