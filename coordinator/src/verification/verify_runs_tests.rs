use crate::model::RepoId;
use std::time::Duration;

use super::*;
use crate::coordinator::Coordinator;
use crate::coordinator::testing::{completed_backup, core, core_with_repo};
use crate::service::worker_convert::lease_token;
use crate::store::Batch;
use crate::tasks::kinds::lease_spec::{LeaseSpec, VerifySpec};
use crate::tasks::worker_registry::WorkerEntry;
use pb::complete_task_request::Result as Outcome;
use repovault_proto::v1 as pb;

fn worker(c: &Coordinator) {
    c.queue.workers.register(WorkerEntry {
        id: "w".into(),
        name: "w".into(),
        slots: 4,
        pool: "bootstrap".into(),
        token_id: None,
        draining: false,
        registered_at_ms: 0,
        last_heartbeat_ms: i64::MAX / 2,
        tasks: Default::default(),
    });
}

fn pass(name: &str) -> pb::CheckResult {
    pb::CheckResult {
        name: name.into(),
        result: CheckOutcome::Pass.into(),
        detail: "ok".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn backup_verify_queues_once_leases_and_records_the_outcome() {
    let dir = tempfile::tempdir().expect("dir");
    let (c, r) = core_with_repo(dir.path(), "a").await;
    let first = completed_backup(&c, &r, 1_000).await;
    let id = completed_backup(&c, &r, 2_000).await;

    let (b, task) = c.verification.verify_backup(&id).await.expect("verify");
    let v = b.verification.expect("pending");
    assert_eq!(
        (v.status, v.task_id.as_ref()),
        (VerifyStatus::Pending, Some(&task))
    );
    // Asked again while it is queued: the same task.
    let (_, again) = c.verification.verify_backup(&id).await.expect("again");
    assert_eq!(again, task);

    worker(&c);
    let t = c
        .queue
        .acquire("w", Default::default(), Duration::ZERO)
        .await
        .expect("acquire")
        .expect("leased");
    let LeaseSpec::Verify(VerifySpec::Manual {
        backup_id,
        snapshot_id,
    }) = &t.spec
    else {
        panic!("a manual verify spec: {:?}", t.spec);
    };
    assert_eq!(backup_id.as_str(), id.as_str());
    assert_eq!(
        snapshot_id.as_ref().map(|s| s.to_string()),
        Some("ab".repeat(32))
    );
    assert!(
        t.repo.source_token.expose().is_empty(),
        "no source credential"
    );
    let running = c.registry.get_backup(&id).await.expect("backup");
    assert_eq!(
        running.verification.map(|v| v.status),
        Some(VerifyStatus::Running)
    );

    let checks = [
        "zip_integrity",
        "git_fsck",
        "metadata_valid",
        "commit_count_match",
    ];
    c.queue
        .complete(
            &t.lease,
            &crate::service::worker_convert::task_report(&pb::CompleteTaskRequest {
                worker_id: "w".into(),
                lease: Some(lease_token(&t.lease)),
                success: true,
                result: Some(Outcome::Verify(pb::VerifyResult {
                    checks: checks.iter().map(|n| pass(n)).collect(),
                    packs_read: 3,
                    bytes_read: 300,
                    ..Default::default()
                })),
                ..Default::default()
            })
            .expect("decoded"),
        )
        .await
        .expect("complete");
    let done = c.registry.get_backup(&id).await.expect("backup");
    let v = done.verification.expect("verification");
    assert_eq!(v.status, VerifyStatus::Verified, "{v:#?}");
    assert_eq!((v.run, v.packs_read), (VerifyRun::Manual, 3));
    // size_match against the backup before it (same size).
    let size = v
        .checks
        .iter()
        .find(|c| c.name == v::SIZE_MATCH)
        .expect("size");
    assert_eq!(size.result, CheckOutcome::Pass, "{size:#?}");
    let stats = c.store.stats(&r.id).await.expect("stats");
    assert_eq!(
        stats.last_success_verification,
        Some(VerifyStatus::Verified)
    );
    // A failed verification of the latest backup reaches the stats (and so health).
    let (_, task2) = c
        .verification
        .verify_backup(&id)
        .await
        .expect("verify again");
    assert_ne!(task2, task);
    let t = c
        .queue
        .acquire("w", Default::default(), Duration::ZERO)
        .await
        .expect("acquire")
        .expect("leased");
    let mut fsck = pass("git_fsck");
    fsck.result = CheckOutcome::Fail.into();
    fsck.detail = "blob 1234 is missing".into();
    c.queue
        .complete(
            &t.lease,
            &crate::service::worker_convert::task_report(&pb::CompleteTaskRequest {
                worker_id: "w".into(),
                lease: Some(lease_token(&t.lease)),
                success: true,
                result: Some(Outcome::Verify(pb::VerifyResult {
                    checks: vec![pass("zip_integrity"), fsck],
                    ..Default::default()
                })),
                ..Default::default()
            })
            .expect("decoded"),
        )
        .await
        .expect("complete");
    let stats = c.store.stats(&r.id).await.expect("stats");
    assert_eq!(stats.last_success_verification, Some(VerifyStatus::Failed));
    assert!(
        stats
            .last_success_verification_detail
            .as_deref()
            .is_some_and(|d| d.contains("blob 1234")),
        "{stats:#?}"
    );
    let _ = first;
}

#[tokio::test]
async fn a_verification_of_a_backup_deleted_meanwhile_ends_instead_of_blocking_the_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let c = core(dir.path()).await;
    c.registry
        .add_org("acme", crate::model::Provider::Git)
        .await
        .expect("org");
    let r = c
        .registry
        .add_repo("acme/a", "file:///a", None)
        .await
        .expect("repo");
    let id = completed_backup(&c, &r, 1_000).await;
    c.verification.verify_backup(&id).await.expect("verify");
    // Gone from the store and from the catalog, as `backup delete` leaves it.
    let mut batch = Batch::default();
    batch.delete_backup(&r.id, &id);
    c.store.apply(batch).await.expect("delete");
    let object = repovault_common::storage::catalog_object_path(
        r.org_id.as_str(),
        r.id.as_str(),
        id.as_str(),
    );
    c.storage
        .delete(&object)
        .await
        .expect("delete the catalog object");
    assert!(c.registry.backup_record(&id).await.expect("read").is_none());
    worker(&c);
    let t = c
        .queue
        .acquire("w", Default::default(), Duration::ZERO)
        .await
        .expect("a lease, not an error")
        .expect("leased");
    assert!(
        matches!(
            &t.spec,
            LeaseSpec::Verify(VerifySpec::Manual {
                snapshot_id: None,
                ..
            })
        ),
        "{:?}",
        t.spec
    );
}

#[tokio::test]
async fn the_rotation_visits_due_repositories_oldest_first_at_most_two_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let c = core(dir.path()).await;
    c.registry
        .add_org("acme", crate::model::Provider::Git)
        .await
        .expect("org");
    let day = 86_400_000;
    let mut repos = Vec::new();
    for i in 0..5 {
        let r = c
            .registry
            .add_repo(&format!("acme/r{i}"), "file:///r", None)
            .await
            .expect("repo");
        // r0 first backed up longest ago.
        completed_backup(&c, &r, 1_000 + i64::from(i) * day).await;
        repos.push(r);
    }
    c.registry
        .add_repo("acme/never", "file:///n", None)
        .await
        .expect("never backed up");
    let rotations = || async {
        c.queue
            .queue_snapshot()
            .await
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| t.mode == Some(VerifyMode::Rotation))
            .collect::<Vec<_>>()
    };
    // Six days after the first backup: nothing is due (visits every 7 days).
    assert_eq!(
        c.verification
            .run_rotation_once(1_000 + 6 * day)
            .await
            .expect("pass"),
        0
    );
    // Much later: all five are due, two are queued, the oldest first.
    let now = 1_000 + 40 * day;
    assert_eq!(
        c.verification.run_rotation_once(now).await.expect("pass"),
        2
    );
    let queued: Vec<RepoId> = rotations()
        .await
        .iter()
        .map(|t| t.repo_id.clone())
        .collect();
    let mut want = vec![repos[0].id.clone(), repos[1].id.clone()];
    want.sort();
    let mut got = queued.clone();
    got.sort();
    assert_eq!(got, want);
    // While they are in flight, nothing more.
    assert_eq!(
        c.verification.run_rotation_once(now).await.expect("pass"),
        0
    );
    // A visit finishes: the next oldest takes its place, and the visited one is not due
    // again until a week later.
    let t = rotations()
        .await
        .into_iter()
        .find(|t| t.repo_id == repos[0].id)
        .expect("r0");
    c.ledger
        .finish_rotation(
            &t,
            Some(&crate::tasks::kinds::outcome::VerifyResult {
                packs_read: 4,
                bytes_read: 400,
                ..Default::default()
            }),
            None,
            c.now_ms(),
        )
        .await
        .expect("finish");
    c.queue.cancel_task(&t.id, "visited").await.expect("done");
    let m = c
        .store
        .maintenance(&repos[0].id)
        .await
        .expect("maintenance");
    assert!(
        m.last_readback_at_ms.is_some() && m.readback_damage.is_none(),
        "{m:?}"
    );
    assert_eq!(
        c.verification.run_rotation_once(now).await.expect("pass"),
        1
    );
    let got: Vec<RepoId> = rotations()
        .await
        .iter()
        .map(|t| t.repo_id.clone())
        .collect();
    assert!(
        got.contains(&repos[2].id) && !got.contains(&repos[0].id),
        "{got:?}"
    );
}

/// Results a worker sends are decoded at the service edge (`service/worker_convert.rs`, which
/// refuses a check result this build does not know); here, a result without checks.
#[tokio::test]
async fn completed_verifications_without_checks_stay_pending() {
    let dir = tempfile::tempdir().expect("dir");
    let c = core(dir.path()).await;
    c.registry
        .add_org("acme", crate::model::Provider::Git)
        .await
        .expect("org");
    let r = c
        .registry
        .add_repo("acme/a", "file:///a", None)
        .await
        .expect("repo");
    let id = completed_backup(&c, &r, 1_000).await;
    let b = c.registry.get_backup(&id).await.expect("backup");
    // No checks at all (an older worker): pending, not verified.
    assert_eq!(
        c.ledger.automatic_verification(
            &b,
            Some(&crate::tasks::kinds::outcome::VerifyResult::default()),
            None,
            5
        ),
        None
    );
}
