//! Fairness through the real core: org A enqueues 5,000 backups, org B then enqueues 10 at the
//! same priority; all of B's start within the next 20 leases. The core runs on the memory store
//! (the conformance suite shows it behaves as redb does).
#![allow(clippy::unwrap_used)]

use repovault_coordinator::tasks::kinds::lease_spec::LeaseSpec;
use std::sync::Arc;
use std::time::Duration;

use repovault_common::crypto::MasterKey;
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;
use repovault_coordinator::clock::SystemClock;
use repovault_coordinator::coordinator::{Coordinator, CoordinatorParts};
use repovault_coordinator::kv::MemoryKv;
use repovault_coordinator::store::Store;
use repovault_coordinator::tasks::queue_order::PRIORITY_SCHEDULED;
use repovault_coordinator::tasks::worker_registry::WorkerEntry;

async fn core(dir: &std::path::Path) -> Arc<Coordinator> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Coordinator::new(
        CoordinatorParts {
            store: Store::new(Arc::new(MemoryKv::new())),
            clock: Arc::new(SystemClock),
            storage_config: StorageConfig::fs(dir.display().to_string()),
            master: MasterKey::generate(),
            timing: Timing::new(Duration::from_secs(5)).unwrap(),
            max_attempts: 3,
        },
        tx,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_tenant_is_served_within_twenty_leases_of_a_large_one() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path()).await;
    core.registry
        .add_org("a", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    core.registry
        .add_org("b", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    let mut a_repos = Vec::new();
    for i in 0..5000 {
        a_repos.push(
            core.registry
                .add_repo(&format!("a/r{i}"), &format!("file:///src/a/r{i}"), None)
                .await
                .unwrap(),
        );
    }
    for r in &a_repos {
        core.backups
            .enqueue_backup(
                r,
                repovault_common::domain::BackupType::Full,
                repovault_common::domain::Trigger::Schedule,
                PRIORITY_SCHEDULED,
            )
            .await
            .unwrap();
    }
    core.queue.workers.register(WorkerEntry {
        id: "w".into(),
        name: "w".into(),
        slots: 10_000,
        pool: "bootstrap".into(),
        token_id: None,
        draining: false,
        registered_at_ms: 0,
        last_heartbeat_ms: i64::MAX / 2,
        tasks: Default::default(),
    });
    // A has been served for a while before B arrives.
    for _ in 0..50 {
        let t = core
            .queue
            .acquire("w", Default::default(), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.repo.org_name, "a");
    }
    let mut b_backups = Vec::new();
    for i in 0..10 {
        let r = core
            .registry
            .add_repo(&format!("b/r{i}"), &format!("file:///src/b/r{i}"), None)
            .await
            .unwrap();
        b_backups.push(
            core.backups
                .enqueue_backup(
                    &r,
                    repovault_common::domain::BackupType::Full,
                    repovault_common::domain::Trigger::Schedule,
                    PRIORITY_SCHEDULED,
                )
                .await
                .unwrap()
                .id,
        );
    }
    let mut started_b = 0;
    for _ in 0..20 {
        let t = core
            .queue
            .acquire("w", Default::default(), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        if t.repo.org_name == "b" {
            started_b += 1;
        }
    }
    assert_eq!(
        started_b, 10,
        "all of B's backups start within the next 20 leases"
    );
    // And a manual backup (priority 8) of A overtakes the scheduled rest.
    let manual = core.backups.run_backup("a/r4999").await.unwrap();
    let t = core
        .queue
        .acquire("w", Default::default(), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    match &t.spec {
        LeaseSpec::Backup(b) => assert_eq!(b.backup_id.as_str(), manual.id.as_str()),
        other => panic!("a backup spec: {other:?}"),
    }
}
