//! The coordinator restarted on the same data directory loses nothing, and the catalog rebuilt
//! from storage alone equals the store's view.

use std::time::Duration;

use repovault_coordinator::model::Status;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gitserver::GitDaemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_mid_queue_loses_nothing_and_catalog_rebuilds_from_storage() {
    let mut c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.core().add_org("org", "git").await.unwrap();
    for i in 0..4 {
        rich_repo(src.path(), &format!("r{i}.git")).unwrap();
        c.core()
            .add_repo(
                &format!("org/r{i}"),
                &daemon.url(&format!("r{i}.git")),
                None,
            )
            .await
            .unwrap();
    }
    // Two backups done, a failed one for the history, then the workers stop and more are queued.
    c.backup_ok("org/r0").await.unwrap();
    c.backup_ok("org/r1").await.unwrap();
    c.core()
        .add_repo("org/gone", &daemon.url("missing.git"), None)
        .await
        .unwrap();
    let failed = c.core().run_backup("org/gone").await.unwrap();
    let failed = c
        .wait_backup(&failed.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    c.stop_workers().await;
    let queued: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(c.core().run_backup(&format!("org/r{i}")).await.unwrap().id);
        }
        v
    };
    let before_list = c.core().list_backups(None).await.unwrap();
    assert_eq!(before_list.len(), 7);

    c.restart_coordinator().await.unwrap();
    let queue = c.core().queue_snapshot().await;
    assert_eq!(queue.len(), 4, "every queued task survived the restart");
    let after_list = c.core().list_backups(None).await.unwrap();
    assert_eq!(after_list, before_list);

    // Workers come back; everything queued completes.
    c.add_worker().await.unwrap();
    for id in &queued {
        let b = c.wait_backup(id, Duration::from_secs(120)).await.unwrap();
        assert_eq!(b.status, Status::Completed, "{:?}", b.error);
    }

    // Every finished backup's catalog object is written: no marker is left in the outbox.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !c
        .core()
        .store
        .catalog_pending(None)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "catalog markers left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A crash between the store's commit and the catalog write: the record and its marker are in
    // the store, the object is not. The next start writes it.
    let victim = c.core().get_backup(&queued[0]).await.unwrap();
    let object = c
        .storage_root()
        .join(repovault_common::storage::catalog_object_path(
            &victim.org_id,
            &victim.repo_id,
            &victim.id,
        ));
    std::fs::remove_file(&object).unwrap();
    let mut batch = repovault_coordinator::store::Batch::default();
    batch.catalog_pending(&victim.repo_id, &victim.id);
    c.core().store.apply(batch).await.unwrap();
    c.restart_coordinator().await.unwrap();
    assert!(
        object.exists(),
        "start-up repair wrote the missing catalog object"
    );
    assert!(
        c.core()
            .store
            .catalog_pending(None)
            .await
            .unwrap()
            .is_empty()
    );

    // The store's view rebuilt from the catalog objects alone equals the one before.
    let mut views = Vec::new();
    for r in c.core().store.repos().await.unwrap() {
        let mut recent = c.core().store.recent_backups(&r.id).await.unwrap();
        recent.sort_by(|a, b| a.id.cmp(&b.id));
        views.push((
            r.id.clone(),
            recent,
            c.core().store.stats(&r.id).await.unwrap(),
        ));
    }
    let full_before = c.core().list_backups(None).await.unwrap();
    // Wipe the store's backup view, then rebuild from storage.
    for r in c.core().store.repos().await.unwrap() {
        c.core()
            .store
            .replace_backups(&r.id, &[], &Default::default())
            .await
            .unwrap();
    }
    assert_eq!(
        c.core().store.stats(&views[0].0).await.unwrap(),
        Default::default(),
        "the view is gone"
    );
    let (repos, backups) = c.core().rebuild_catalog().await.unwrap();
    assert_eq!((repos, backups), (5, 7));
    for (id, recent, stats) in views {
        let mut rebuilt = c.core().store.recent_backups(&id).await.unwrap();
        rebuilt.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(rebuilt, recent, "recent records of {id}");
        assert_eq!(
            c.core().store.stats(&id).await.unwrap(),
            stats,
            "stats of {id}"
        );
    }
    assert_eq!(c.core().list_backups(None).await.unwrap(), full_before);
    c.shutdown().await;
}
