//! Which backup records stay in the store once their catalog objects are written.

use crate::coordinator::testing::{completed_backup, core_with_repo, tid};
use crate::model::{BackupType, Status, Trigger};
use crate::store::{Batch, RECENT_BACKUPS};

/// The ids of the repository's backup records in the store, sorted.
async fn stored_ids(
    c: &crate::coordinator::Coordinator,
    repo: &crate::model::RepoRecord,
) -> Vec<crate::model::BackupId> {
    let mut ids: Vec<_> = c
        .store
        .recent_backups(&repo.id)
        .await
        .expect("recent")
        .into_iter()
        .map(|b| b.id)
        .collect();
    ids.sort();
    ids
}

/// After a success and three failures, the store holds the newest finished records and the
/// success: the next backup's lease reads the success's verification (a damaged mirror found
/// by its `git fsck` must not be trusted again), whatever failed since.
#[tokio::test]
async fn the_store_keeps_the_newest_records_and_the_last_success() {
    let dir = tempfile::tempdir().expect("dir");
    let (c, repo) = core_with_repo(dir.path(), "a").await;
    let success = completed_backup(&c, &repo, 1_000).await;
    let mut mark = Batch::default();
    mark.catalog_pending(&repo.id, &success);
    c.store.apply(mark).await.expect("mark");
    let mut failed = Vec::new();
    for i in 0..3 {
        let at = 2_000 + i;
        let mut b = crate::tasks::kinds::new_backup(
            &repo,
            BackupType::Incremental,
            Trigger::Schedule,
            5,
            &tid(&format!("t{i}")),
            at,
        );
        b.status = Status::Failed;
        b.finished_at_ms = Some(at);
        let mut stats = c.store.stats(&repo.id).await.expect("stats");
        stats.record(&b);
        let mut batch = Batch::default();
        batch
            .backup(&b)
            .stats(&repo.id, &stats)
            .catalog_pending(&repo.id, &b.id);
        c.store.apply(batch).await.expect("apply");
        failed.push(b.id);
    }
    c.catalog.finish_catalog(&repo.id).await.expect("finish");
    let kept = stored_ids(&c, &repo).await;
    let mut expected: Vec<_> = failed.iter().rev().take(RECENT_BACKUPS).cloned().collect();
    expected.push(success.clone());
    expected.sort();
    assert_eq!(kept, expected);
    // Every record is still listed: the rest from the catalog objects.
    let listed = c.registry.list_backups(Some("acme/a")).await.expect("list");
    assert_eq!(listed.len(), 4);

    // The catalog rebuilt from storage alone keeps the same records.
    c.catalog.rebuild_catalog().await.expect("rebuild");
    let rebuilt = stored_ids(&c, &repo).await;
    assert_eq!(rebuilt, expected);
}
