use super::*;

const DAY: i64 = 24 * 60 * 60 * 1000;

#[test]
fn prune_is_at_most_weekly_and_the_second_phase_waits_for_keep_delete() {
    let opts = MaintenanceOptions::default();
    let now = 100 * DAY;
    let idle = MaintenanceRecord::default();
    assert!(!prune_due(&idle, now, &opts), "nothing forgotten");
    let wanted = MaintenanceRecord {
        prune_wanted: true,
        ..Default::default()
    };
    assert!(prune_due(&wanted, now, &opts), "never pruned");
    let recent = MaintenanceRecord {
        last_prune_at_ms: Some(now - 6 * DAY),
        ..wanted.clone()
    };
    assert!(!prune_due(&recent, now, &opts));
    assert!(prune_due(&recent, now + DAY, &opts));
    let second = MaintenanceRecord {
        last_prune_at_ms: Some(now),
        second_phase_due: true,
        prune_wanted: false,
        ..Default::default()
    };
    assert!(!prune_due(&second, now + 22 * 60 * 60 * 1000, &opts));
    assert!(prune_due(&second, now + 23 * 60 * 60 * 1000, &opts));
}

#[test]
fn first_line_is_short() {
    assert_eq!(
        first_line("ACME / Bank, ref 42\nmore"),
        "ACME / Bank, ref 42"
    );
    assert_eq!(first_line(&"x".repeat(200)).len(), 80);
    assert_eq!(first_line(""), "");
}

/// Deleting a repository's latest successful backup leaves the stats of the one before it:
/// its size (what the next size_match compares with), its verification and the last full
/// backup, not the deleted one's.
#[tokio::test]
async fn deleting_the_latest_success_recomputes_every_latest_field() {
    use crate::model::{BackupType, Trigger, Verification, VerifyRun, VerifyStatus};
    let dir = tempfile::tempdir().expect("dir");
    let (c, repo) = crate::coordinator::testing::core_with_repo(dir.path(), "r").await;
    let backup = |kind, at: i64, size, status| {
        let mut b = crate::tasks::kinds::new_backup(
            &repo,
            kind,
            Trigger::Manual,
            8,
            &crate::ids::new_task_id(),
            at,
        );
        b.status = Status::Completed;
        b.finished_at_ms = Some(at);
        b.size_bytes = size;
        b.verification = Some(Verification {
            status,
            checks: Vec::new(),
            run: VerifyRun::Automatic,
            finished_at_ms: Some(at),
            packs_read: 0,
            bytes_read: 0,
            task_id: None,
        });
        b
    };
    let older = backup(BackupType::Full, DAY, 1000, VerifyStatus::Verified);
    let newer = backup(BackupType::Full, 2 * DAY, 5000, VerifyStatus::Failed);
    let mut stats = c.store.stats(&repo.id).await.expect("stats");
    stats.record(&older);
    stats.record(&newer);
    let mut batch = Batch::default();
    batch.backup(&older).backup(&newer).stats(&repo.id, &stats);
    c.store.apply(batch).await.expect("apply");

    c.maintenance
        .delete_backup(&newer.id)
        .await
        .expect("delete");
    let s = c.store.stats(&repo.id).await.expect("stats");
    assert_eq!(s.last_success_id, Some(older.id.clone()));
    assert_eq!(s.last_success_size_bytes, Some(1000));
    assert_eq!(s.last_success_verification, Some(VerifyStatus::Verified));
    assert_eq!(s.last_full_at_ms, Some(DAY));
    assert_eq!(s.completed_total, 2, "totals count history");
}
