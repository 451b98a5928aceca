//! Workers and their leases: heartbeats renew what a worker holds, and a worker that registers
//! again (after a coordinator restart, or after it was forgotten) takes its running tasks back
//! under their current attempt instead of losing them.
//!
//! Why a restart costs nothing: leases are persisted with the task, and a restarted coordinator
//! honours them for the takeover grace (`TaskQueue::load`), but its worker registry (in memory) is
//! empty. The worker's next heartbeat is answered `reregister`; it registers again presenting its
//! previous id and the leases it holds. The id is given back unless a live worker has it (so two
//! processes never share one), and every held lease still leased to that id at that attempt is
//! renewed. The heartbeat of a worker not registered yet renews its leases the same way, so they
//! outlive the moment between the heartbeat and the registration.

use std::sync::Arc;

use crate::ids;
use crate::tasks::lease_state::TaskState;
use crate::tasks::worker_registry::WorkerEntry;

use crate::error::{CoreError, CoreResult};
use crate::forge_access::ForgeAccess;
use crate::forge_access::forge_credentials::{PermitAnswer, PermitRequest};
use crate::tasks::lifecycle::{Lease, check_holder};
use crate::tasks::task_queue::{Queue, TaskQueue};

/// A worker's registration, as the service hands it to the fleet.
#[derive(Debug, Clone, Default)]
pub struct WorkerHello {
    pub name: String,
    pub slots: u32,
    /// The id this worker had before (empty for a first registration).
    pub previous_id: String,
    /// The leases its running tasks hold (well-formed ones: the service revokes the others).
    pub held: Vec<Lease>,
    /// The pool and join token it presented (the door's answer).
    pub identity: crate::worker_pools::JoinIdentity,
}

/// What a registration gave the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub worker_id: String,
    /// The previous id was given back.
    pub resumed: bool,
    /// Held leases kept (renewed now, same attempt) and those the worker must abandon.
    pub renewed: Vec<Lease>,
    pub revoked: Vec<Lease>,
}

/// The worker fleet: registration, heartbeats renewing the leases each worker holds, and the rate permits a lease asks for. Its state is the queue's worker registry and lease table (`task_queue.rs`).
pub struct Fleet {
    pub(crate) queue: Arc<TaskQueue>,
    pub(crate) forge: Arc<ForgeAccess>,
}

impl Fleet {
    #[allow(clippy::too_many_arguments)]
    pub fn new(queue: Arc<TaskQueue>, forge: Arc<ForgeAccess>) -> Self {
        Self { queue, forge }
    }
    /// Registers a worker. With a previous id that no live worker holds (no heartbeat within a
    /// lease TTL), the worker gets that id back and keeps every held lease still leased to it
    /// at that attempt; otherwise it gets a fresh id and every held lease is revoked.
    pub async fn register_worker(&self, hello: WorkerHello) -> Registration {
        let now = self.queue.clock.now_ms();
        let entry = |id: &str| WorkerEntry {
            id: id.to_string(),
            name: if hello.name.is_empty() {
                id.to_string()
            } else {
                hello.name.clone()
            },
            slots: hello.slots,
            pool: hello.identity.pool.clone(),
            token_id: hello.identity.token_id.clone(),
            draining: false,
            registered_at_ms: now,
            last_heartbeat_ms: now,
            tasks: Default::default(),
        };
        let previous = hello.previous_id.as_str();
        // Live means what the registry's expiry means: heard from within a lease TTL.
        let resumed = ids::is_worker_id(previous)
            && self
                .queue
                .workers
                .claim(entry(previous), self.queue.policy.ttl_ms);
        let worker_id = if resumed {
            previous.to_string()
        } else {
            // Worker ids stay strings inside the fleet: the registry is keyed by what the
            // wire carries, and a claimed previous id is checked by `ids::is_worker_id`.
            let id = String::from(ids::new_worker_id());
            self.queue.workers.register(entry(&id));
            id
        };
        let (renewed, revoked) = if resumed {
            let mut q = self.queue.state.lock().await;
            self.renew_held(&mut q, &worker_id, &hello.held, now)
        } else {
            (Vec::new(), hello.held.clone())
        };
        for t in &renewed {
            self.queue.workers.assign(&worker_id, &t.task_id);
        }
        if resumed {
            tracing::info!(worker = %worker_id, name = %hello.name, pool = %hello.identity.pool, slots = hello.slots, kept = renewed.len(), revoked = revoked.len(), "worker registered again under its id");
        } else if !previous.is_empty() {
            tracing::warn!(worker = %worker_id, name = %hello.name, revoked = revoked.len(), "worker asked for an id that is live or malformed; registered under a new id, its leases revoked");
        } else {
            tracing::info!(worker = %worker_id, name = %hello.name, pool = %hello.identity.pool, slots = hello.slots, "worker registered");
        }
        Registration {
            worker_id,
            resumed,
            renewed,
            revoked,
        }
    }

    /// Renews every lease the worker holds; answers which were renewed, which it must drop, and
    /// whether it must register again (this coordinator does not know it). The leases of a
    /// worker not registered yet are renewed too, so they outlive its re-registration.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        held: &[Lease],
        draining: bool,
    ) -> (Vec<Lease>, Vec<Lease>, bool) {
        let now = self.queue.clock.now_ms();
        let known = self.queue.workers.heartbeat(worker_id, draining, now);
        let mut q = self.queue.state.lock().await;
        let (renewed, revoked) = self.renew_held(&mut q, worker_id, held, now);
        (renewed, revoked, !known)
    }

    /// A lease's refill of rate permits (`ForgeAccess::request_permits`). Refused
    /// (FAILED_PRECONDITION) unless the lease is the task's current, unexpired attempt; the
    /// queue lock is held for that check only.
    pub async fn request_permits(
        &self,
        tok: &Lease,
        req: &PermitRequest,
    ) -> CoreResult<PermitAnswer> {
        let (org_id, repo_id) = {
            let q = self.queue.state.lock().await;
            let t = q.active.get(&tok.task_id).ok_or_else(|| {
                CoreError::FailedPrecondition(format!(
                    "lease of task {} attempt {} is stale: the task is no longer active",
                    tok.task_id, tok.attempt
                ))
            })?;
            check_holder(t, &req.worker_id, tok)?;
            t.lease.check(tok.attempt, self.queue.clock.now_ms())?;
            (t.org_id.clone(), t.repo_id.clone())
        };
        self.forge
            .request_permits(&org_id, &repo_id, tok, req)
            .await
    }

    /// Renews each of `held` that is the current, unexpired lease of its task held by
    /// `worker_id`; a lease inherited from the previous coordinator is then this one's.
    fn renew_held(
        &self,
        q: &mut Queue,
        worker_id: &str,
        held: &[Lease],
        now: i64,
    ) -> (Vec<Lease>, Vec<Lease>) {
        let mut renewed = Vec::new();
        let mut revoked = Vec::new();
        for tok in held {
            let ok = q.active.update(&tok.task_id, |t| {
                matches!(&t.lease.state, TaskState::Leased { worker_id: w, .. } if w == worker_id)
                    && t.lease.renew(tok.attempt, now, &self.queue.policy).is_ok()
            }) == Some(true);
            if ok {
                q.inherited.remove(&tok.task_id);
                renewed.push(tok.clone());
            } else {
                revoked.push(tok.clone());
            }
        }
        (renewed, revoked)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::coordinator::Coordinator;
    use crate::coordinator::testing::core_on;
    use crate::model::Status;
    use crate::tasks::lease_state::TaskState;

    fn hello(previous: &str, held: &[Lease]) -> WorkerHello {
        WorkerHello {
            name: "w".into(),
            slots: 2,
            previous_id: previous.into(),
            held: held.to_vec(),
            identity: Default::default(),
        }
    }

    /// A core whose one backup is leased to a registered worker, then "restarted": a new core
    /// on the same store, whose registry is empty. Returns (new core, worker id, lease, dir).
    async fn restarted_with_a_lease() -> (
        std::sync::Arc<Coordinator>,
        String,
        Lease,
        tempfile::TempDir,
        std::sync::Arc<ManualClock>,
    ) {
        let dir = tempfile::tempdir().expect("dir");
        let clock = std::sync::Arc::new(ManualClock::new(crate::clock::system_now_ms()));
        let c = core_on(dir.path(), clock.clone()).await;
        c.registry
            .add_org("acme", crate::model::Provider::Git)
            .await
            .expect("org");
        c.registry
            .add_repo("acme/a", "file:///a", None)
            .await
            .expect("repo");
        c.backups.run_backup("acme/a").await.expect("backup");
        let w = c.fleet.register_worker(hello("", &[])).await;
        assert!(!w.resumed);
        let task = c
            .queue
            .acquire(&w.worker_id, Default::default(), Duration::ZERO)
            .await
            .expect("acquire")
            .expect("leased");
        let lease = task.lease.clone();
        assert_eq!(lease.attempt, 1);
        let again = crate::coordinator::testing::restart(&c).await;
        (again, w.worker_id, lease, dir, clock)
    }

    #[tokio::test]
    async fn a_worker_registering_again_keeps_its_leases_under_its_id() {
        let (c, id, lease, _dir, _clock) = restarted_with_a_lease().await;
        let stale = Lease {
            task_id: lease.task_id.clone(),
            attempt: 7,
        };
        let gone = Lease {
            task_id: crate::ids::new_task_id(),
            attempt: 1,
        };

        // The first heartbeat after the restart: unknown, told to register again, and its
        // lease is renewed meanwhile (the wrong attempt and an unknown task are not).
        let (renewed, revoked, reregister) = c
            .fleet
            .heartbeat(&id, &[lease.clone(), stale.clone(), gone.clone()], false)
            .await;
        assert!(reregister);
        assert_eq!(renewed, vec![lease.clone()]);
        assert_eq!(revoked, vec![stale.clone(), gone.clone()]);

        let r = c
            .fleet
            .register_worker(hello(&id, &[lease.clone(), stale.clone()]))
            .await;
        assert_eq!(
            r,
            Registration {
                worker_id: id.clone(),
                resumed: true,
                renewed: vec![lease.clone()],
                revoked: vec![stale],
            }
        );
        let listed = c.queue.workers.list();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].tasks.contains(&lease.task_id));
        // Known again: heartbeats renew as usual, and the lease is the current one.
        let (renewed, _, reregister) = c
            .fleet
            .heartbeat(&id, std::slice::from_ref(&lease), false)
            .await;
        assert!(!reregister);
        assert_eq!(renewed, vec![lease.clone()]);
        assert!(c.queue.confirm_lease(&id, &lease).await.expect("confirm") > 0);
        let t = c
            .queue
            .task_status(&lease.task_id.clone())
            .await
            .expect("status")
            .expect("task");
        assert_eq!((t.lease.attempt, t.lease.failures), (1, 0));
        assert!(matches!(&t.lease.state, TaskState::Leased { worker_id, .. } if *worker_id == id));
    }

    #[tokio::test]
    async fn a_live_id_is_not_given_to_another_process() {
        let (c, id, lease, _dir, _clock) = restarted_with_a_lease().await;
        let first = c
            .fleet
            .register_worker(hello(&id, std::slice::from_ref(&lease)))
            .await;
        assert!(first.resumed);
        // A second process presenting the same id while the first heartbeats: a new id, and
        // none of the leases.
        let second = c
            .fleet
            .register_worker(hello(&id, std::slice::from_ref(&lease)))
            .await;
        assert!(!second.resumed);
        assert_ne!(second.worker_id, id);
        assert!(second.renewed.is_empty());
        assert_eq!(second.revoked, vec![lease.clone()]);
        // The lease is still the first one's.
        assert!(c.queue.confirm_lease(&id, &lease).await.is_ok());
        assert!(
            c.queue
                .confirm_lease(&second.worker_id, &lease,)
                .await
                .is_err()
        );
        // A malformed id is never taken.
        let odd = c
            .fleet
            .register_worker(hello("w../../etc", std::slice::from_ref(&lease)))
            .await;
        assert!(!odd.resumed);
        assert_eq!(odd.revoked, vec![lease]);
    }

    #[tokio::test]
    async fn another_workers_lease_is_not_taken_by_presenting_it() {
        let (c, _id, lease, _dir, _clock) = restarted_with_a_lease().await;
        // A worker that never held it registers with a fresh-looking id of its own.
        let other = ids::new_worker_id();
        let r = c
            .fleet
            .register_worker(hello(other.as_str(), std::slice::from_ref(&lease)))
            .await;
        assert!(r.resumed, "an unknown well-formed id is given back");
        assert!(r.renewed.is_empty());
        assert_eq!(r.revoked, vec![lease]);
    }

    #[tokio::test]
    async fn an_inherited_lease_nobody_takes_back_is_requeued_without_a_failure() {
        let (c, _id, lease, _dir, clock) = restarted_with_a_lease().await;
        // Nobody takes it back within the takeover grace.
        clock.advance(c.timing.takeover_grace() - Duration::from_millis(1));
        assert_eq!(c.queue.reap().await.expect("reap"), 0, "within the grace");
        clock.advance(Duration::from_millis(1));
        assert_eq!(c.queue.reap().await.expect("reap"), 1);
        let t = c
            .queue
            .task_status(&lease.task_id.clone())
            .await
            .expect("status")
            .expect("task");
        assert!(matches!(t.lease.state, TaskState::Pending { .. }), "{t:?}");
        assert_eq!((t.lease.failures, t.lease.interruptions), (0, 1));
        let b = c
            .store
            .backup(&t.repo_id, &t.backup_subject().expect("a backup"))
            .await
            .expect("backup")
            .expect("record");
        assert_eq!(b.status, Status::Pending);
        // The next lease is attempt 2 (fencing) and, should it expire too, counts as usual.
        let w = c.fleet.register_worker(hello("", &[])).await;
        let again = c
            .queue
            .acquire(&w.worker_id, Default::default(), Duration::ZERO)
            .await
            .expect("acquire")
            .expect("leased")
            .lease;
        assert_eq!(again.attempt, 2);
        clock.advance(c.timing.lease_ttl());
        assert_eq!(
            c.queue.reap().await.expect("reap"),
            1,
            "expired after one lease TTL"
        );
        let t = c
            .queue
            .task_status(&lease.task_id.clone())
            .await
            .expect("status")
            .expect("task");
        assert_eq!((t.lease.failures, t.lease.interruptions), (1, 1));
    }
}
