//! Helpers for the coordinator's unit tests: a coordinator on a memory store, records as a
//! completion leaves them.

use std::sync::Arc;
use std::time::Duration;

use repovault_common::crypto::MasterKey;
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;

use super::{Coordinator, CoordinatorParts};
use crate::clock::{Clock, SystemClock};
use crate::kv::{KvBackend, MemoryKv};
use crate::model::{BackupType, RepoRecord, Status, Trigger, VerifyStatus};
use crate::store::{Batch, Store};

/// A snapshot id of the right shape (64 hex digits).
pub(crate) const SNAPSHOT: &str =
    "abababababababababababababababababababababababababababababababab";

/// `text` as an id of a test record (the id rule holds for the short ids tests use: `o`, `r1`).
pub(crate) fn tid<T: TryFrom<String, Error = repovault_common::domain::InvalidId>>(
    text: &str,
) -> T {
    T::try_from(text.to_string()).expect("a test id")
}

/// A leased task's token as the worker service decodes it.
pub(crate) fn utc(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .timestamp_millis()
}

/// A core on a memory store, with fs storage under `dir`.
pub(crate) async fn core(dir: &std::path::Path) -> Arc<Coordinator> {
    core_on(dir, Arc::new(SystemClock)).await
}

/// A core as [`core`] makes it, with the plain git organisation `acme` and its repository
/// `acme/NAME` (source `file:///src/NAME`, never fetched).
pub(crate) async fn core_with_repo(
    dir: &std::path::Path,
    name: &str,
) -> (Arc<Coordinator>, crate::model::RepoRecord) {
    let c = core(dir).await;
    let repo = add_acme_repo(&c, name).await;
    (c, repo)
}

/// Adds the plain git organisation `acme` and its repository `acme/NAME` (source
/// `file:///src/NAME`, never fetched) to `c`.
pub(crate) async fn add_acme_repo(c: &Coordinator, name: &str) -> crate::model::RepoRecord {
    c.registry
        .add_org("acme", crate::model::Provider::Git)
        .await
        .expect("org");
    c.registry
        .add_repo(
            &format!("acme/{name}"),
            &format!("file:///src/{name}"),
            None,
        )
        .await
        .expect("repo")
}

/// Registers a worker named `name` with one slot; returns its id.
pub(crate) async fn one_slot_worker(c: &Coordinator, name: &str) -> String {
    c.fleet
        .register_worker(crate::coordinator::WorkerHello {
            name: name.into(),
            slots: 1,
            ..Default::default()
        })
        .await
        .worker_id
}

/// A new core on a memory store and storage under `dir`, reading time from `clock`.
pub(crate) async fn core_on(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Arc<Coordinator> {
    core_on_kv(dir, clock, Arc::new(MemoryKv::new())).await
}

/// A new core on the store `kv` and storage under `dir`.
pub(crate) async fn core_on_kv(
    dir: &std::path::Path,
    clock: Arc<dyn Clock>,
    kv: Arc<dyn KvBackend>,
) -> Arc<Coordinator> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Coordinator::new(
        CoordinatorParts {
            store: Store::new(kv),
            clock,
            storage_config: StorageConfig::fs(dir.display().to_string()),
            master: MasterKey::generate(),
            timing: Timing::new(Duration::from_secs(5)).expect("timing"),
            max_attempts: 3,
        },
        tx,
    )
    .await
    .expect("core")
}

/// A new core on `c`'s store, storage and master key, as a restarted coordinator starts: the
/// persisted tasks and leases loaded, the worker registry empty.
pub(crate) async fn restart(c: &Coordinator) -> Arc<Coordinator> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Coordinator::new(
        CoordinatorParts {
            store: c.store.clone(),
            clock: c.clock.clone(),
            storage_config: c.storage_config.clone(),
            master: c.catalog.secrets.master().clone(),
            timing: c.timing,
            max_attempts: c.queue.max_attempts,
        },
        tx,
    )
    .await
    .expect("restarted core")
}

/// A completed, verified backup of `repo` finished at `at`, in the store as a completion
/// leaves it (record and stats); returns its id.
pub(crate) async fn completed_backup(
    c: &Coordinator,
    repo: &RepoRecord,
    at: i64,
) -> crate::model::BackupId {
    let mut b =
        crate::tasks::kinds::new_backup(repo, BackupType::Full, Trigger::Manual, 8, &tid("t"), at);
    b.status = Status::Completed;
    b.finished_at_ms = Some(at);
    b.snapshot_id = Some(tid(SNAPSHOT));
    b.size_bytes = 1000;
    let mut stats = c.store.stats(&repo.id).await.expect("stats");
    stats.record(&b);
    stats.last_success_verification = Some(VerifyStatus::Verified);
    let mut batch = Batch::default();
    batch.backup(&b).stats(&repo.id, &stats);
    c.store.apply(batch).await.expect("apply");
    b.id
}
