//! Worker pools and their join tokens: created, listed and revoked by the admin (`repovault
//! workers token ...`), checked at the worker service's door on every call.
//!
//! A token is minted for a named pool and shown once (`token_plan.rs`: `rvj_` and 256 random
//! bits); the store keeps its SHA-256 with its id, pool, creator, creation time, optional expiry
//! and revocation (`pool_token_record.rs`, `store/pool_token_records.rs`). The door's memory
//! (`join_door.rs`) holds every token's hash, loaded at start and kept in step by create and
//! revoke, so checking a worker's heartbeat never reads the store. The configured join token
//! keeps working beside them as the pool `bootstrap`.
//!
//! A worker registers with the pool of the token it presented (the workers list shows it, the
//! audit log names each join). Revoking a token refuses its workers' next call, whatever it is,
//! forgets them, and puts their leases back in the queue at once, without counting a failure: a
//! revoked worker is not waited for until its lease's TTL runs out.

pub mod join_door;
pub mod pool_token_record;
#[cfg(test)]
mod revocation_tests;
pub mod token_plan;

use std::sync::Arc;

use crate::audit::{AuditEntry, AuditLog};
use crate::clock::Clock;
use crate::error::{CoreError, CoreResult, not_found};
use crate::forge_access::ForgeAccess;
use crate::store::Store;
use crate::tasks::lease_state::TaskState;
use crate::tasks::lifecycle::Lease;
use crate::tasks::task_queue::TaskQueue;

use join_door::DoorEntry;
pub use join_door::{JoinDoor, JoinIdentity, JoinRefusal};
use pool_token_record::PoolTokenRecord;
use token_plan::{PlanError, TokenHash, TokenState};

/// A token as listed: its record, its state now, and how many registered workers joined with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    pub record: PoolTokenRecord,
    pub state: TokenState,
    pub workers: usize,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub token: TokenView,
    /// The workers that had joined with it: refused from now on, and forgotten.
    pub workers: Vec<String>,
    /// Their leases put back in the queue.
    pub requeued: usize,
}

/// Characters of a worker's self-chosen name kept in its join's audit entry: a host or pod
/// name fits (Kubernetes caps pod names at 253), a flood of bytes does not.
const MAX_AUDITED_NAME: usize = 253;

/// The reason a revoked worker's leases are released with (the task's log and progress say it).
const REVOKED_REASON: &str = "the worker's join token was revoked";

impl From<PlanError> for CoreError {
    fn from(e: PlanError) -> Self {
        CoreError::InvalidArgument(e.to_string())
    }
}

/// See the module documentation.
pub struct WorkerPools {
    store: Store,
    clock: Arc<dyn Clock>,
    queue: Arc<TaskQueue>,
    /// A released lease's unspent rate permits go back to the budget.
    forge: Arc<ForgeAccess>,
    door: Arc<JoinDoor>,
    audit: AuditLog,
}

impl WorkerPools {
    /// The pools of `store`, with every stored token loaded into a fresh door. A record whose
    /// hash is not a hash (written by hand) is left out with a warning: it can admit nobody.
    pub async fn load(
        store: Store,
        clock: Arc<dyn Clock>,
        queue: Arc<TaskQueue>,
        forge: Arc<ForgeAccess>,
    ) -> CoreResult<Self> {
        let door = Arc::new(JoinDoor::default());
        for t in store.pool_tokens().await? {
            let Some(hash) = TokenHash::from_hex(&t.hash) else {
                tracing::warn!(token = %t.id, "a stored join token holds no usable hash; it admits nobody");
                continue;
            };
            door.insert(hash, door_entry(&t));
        }
        let audit = AuditLog::new(store.kv());
        Ok(Self {
            store,
            clock,
            queue,
            forge,
            door,
            audit,
        })
    }

    /// The door's memory, for the worker service's guard.
    pub fn door(&self) -> Arc<JoinDoor> {
        self.door.clone()
    }

    /// Creates a token for `pool` that expires `expires_in_secs` from now (`None`: never), made
    /// by `by`. Returns it as listed and its secret, which exists nowhere else from now on.
    pub async fn create(
        &self,
        pool: &str,
        expires_in_secs: Option<u64>,
        by: &str,
    ) -> CoreResult<(TokenView, repovault_common::secret::Secret)> {
        token_plan::check_pool(pool)?;
        let now = self.clock.now_ms();
        let expires_at_ms = token_plan::expires_at(now, expires_in_secs)?;
        let minted = token_plan::mint(&mut rand::rng());
        let record = PoolTokenRecord {
            id: token_plan::new_token_id(&mut rand::rng()),
            pool: pool.to_string(),
            hash: minted.hash.to_hex(),
            created_at_ms: now,
            created_by: by.to_string(),
            expires_at_ms,
            revoked_at_ms: None,
            revoked_by: None,
        };
        // Stored first: a token the door admits is always one a restarted coordinator knows.
        self.store.create_pool_token(&record).await?;
        self.door.insert(minted.hash, door_entry(&record));
        tracing::info!(token = %record.id, pool, by, expires_at_ms = ?expires_at_ms, "worker pool join token created");
        Ok((self.view(record, now), minted.secret))
    }

    /// Every token (of `pool` when given), revoked and expired ones included, in no particular
    /// order (the caller sorts and pages).
    pub async fn list(&self, pool: Option<&str>) -> CoreResult<Vec<TokenView>> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .pool_tokens()
            .await?
            .into_iter()
            .filter(|t| pool.is_none_or(|p| t.pool == p))
            .map(|t| self.view(t, now))
            .collect())
    }

    /// Revokes the token `id` (by `by`): the door refuses it from now on, and every worker that
    /// joined with it is forgotten and its leases re-queued at once. Revoking a revoked token
    /// changes nothing in the store and sweeps again (a worker that slipped in is caught).
    pub async fn revoke(&self, id: &str, by: &str) -> CoreResult<Revoked> {
        if !token_plan::is_token_id(id) {
            return Err(CoreError::InvalidArgument(format!(
                "id {id:?} is not a join token id (jt and 10 letters or digits)"
            )));
        }
        let mut record = self
            .store
            .pool_token(id)
            .await?
            .ok_or_else(|| not_found("join token", id))?;
        let now = self.clock.now_ms();
        if record.revoked_at_ms.is_none() {
            record.revoked_at_ms = Some(now);
            record.revoked_by = Some(by.to_string());
            // Stored first: a restarted coordinator refuses it too.
            self.store.put_pool_token(&record).await?;
        }
        self.door.revoke(id);
        let (workers, requeued) = self.sweep(id).await?;
        tracing::warn!(token = %id, pool = %record.pool, by, workers = workers.len(), requeued, "worker pool join token revoked");
        Ok(Revoked {
            token: self.view(record, now),
            workers,
            requeued,
        })
    }

    /// Forgets every registered worker that joined with token `id` and re-queues its leases
    /// (without a failure: the task did nothing wrong). Returns the workers and how many leases
    /// went back. The door refuses the token already, so none of them takes a new lease.
    async fn sweep(&self, id: &str) -> CoreResult<(Vec<String>, usize)> {
        let mut workers = Vec::new();
        let mut requeued = 0;
        for w in self.queue.workers.joined_with(id) {
            // Forgotten first: an acquire of it waiting for work then ends (unknown worker)
            // instead of taking the lease released next.
            self.queue.workers.forget(&w.id);
            requeued += self.release_leases(&w.id, w.tasks.iter()).await?;
            workers.push(w.id);
        }
        Ok((workers, requeued))
    }

    /// Releases the leases `worker_id` holds on `tasks` (each at its current attempt, if it is
    /// still that worker's); returns how many it released.
    pub async fn release_leases(
        &self,
        worker_id: &str,
        tasks: impl Iterator<Item = &repovault_common::domain::TaskId>,
    ) -> CoreResult<usize> {
        let mut released = 0;
        for task_id in tasks {
            let Some(t) = self.queue.task_status(task_id).await? else {
                continue;
            };
            let held =
                matches!(&t.lease.state, TaskState::Leased { worker_id: w, .. } if w == worker_id);
            if !held {
                continue;
            }
            let lease = Lease {
                task_id: task_id.clone(),
                attempt: t.lease.attempt,
            };
            self.forge.release_permits(&lease);
            match self.queue.release(worker_id, &lease, REVOKED_REASON).await {
                Ok(()) => released += 1,
                // Completed or reaped meanwhile: nothing left to release.
                Err(CoreError::FailedPrecondition(_) | CoreError::Lease(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    /// Whether a call that passed the door as `identity` may still act: false once its token
    /// was revoked or expired since (an acquire's long-poll, a registration in flight).
    pub fn still_admits(&self, identity: &JoinIdentity) -> bool {
        self.door.still_admits(identity, self.clock.now_ms())
    }

    /// Writes a worker's registration to the audit log: the worker, its name and pool and the
    /// token's id (never the token). A store that cannot take it is logged loudly; the
    /// registration stands.
    pub async fn audit_join(
        &self,
        worker_id: &str,
        name: &str,
        identity: &JoinIdentity,
        resumed: bool,
        peer: Option<std::net::SocketAddr>,
    ) {
        let token = identity.token_id.as_deref().map_or_else(
            || "the configured join token".to_string(),
            |t| format!("join token {t}"),
        );
        let again = if resumed { " again" } else { "" };
        // The name is the worker's own word: bounded, so a registration cannot bloat the log.
        let name: String = name.chars().take(MAX_AUDITED_NAME).collect();
        let entry = AuditEntry {
            at_ms: self.clock.now_ms(),
            caller: format!("worker {worker_id} ({name})"),
            role: "worker".into(),
            method: "RegisterWorker".into(),
            outcome: "ok".into(),
            peer: peer.map(|p| p.to_string()).unwrap_or_default(),
            detail: format!(
                "worker {worker_id} ({name}) joined{again} pool {} with {token}",
                identity.pool
            ),
        };
        if let Err(e) = self.audit.append(&entry).await {
            tracing::error!(error = %e, worker = %worker_id, "could not write the audit log");
        }
    }

    fn view(&self, record: PoolTokenRecord, now_ms: i64) -> TokenView {
        let state = token_plan::state_at(record.expires_at_ms, record.revoked_at_ms, now_ms);
        let workers = self.queue.workers.joined_with(&record.id).len();
        TokenView {
            record,
            state,
            workers,
        }
    }
}

fn door_entry(t: &PoolTokenRecord) -> DoorEntry {
    DoorEntry {
        id: t.id.clone(),
        pool: t.pool.clone(),
        expires_at_ms: t.expires_at_ms,
        revoked: t.revoked_at_ms.is_some(),
    }
}
