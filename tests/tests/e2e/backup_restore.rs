//! Backups of real repositories through the cluster, restored and compared with the source.

use std::time::Duration;

use repovault_coordinator::model::Status;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::{self, evolve, reachable_objects, refs, rich_repo};
use repovault_tests::gitserver::{GitDaemon, GitHttp};

const WAIT: Duration = Duration::from_secs(120);

/// Restores `backup_id` into a fresh bare repository served by `daemon` and returns its path.
pub(crate) async fn restore_to_new(
    c: &Cluster,
    daemon: &GitDaemon,
    backup_id: &str,
    name: &str,
) -> std::path::PathBuf {
    let target = daemon.base().join(name);
    fixtures::git(daemon.base(), &["init", "-q", "--bare", "-b", "main", name]).unwrap();
    let r = c
        .core()
        .restores
        .start_restore(
            &backup_id.parse().unwrap(),
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::New,
            &daemon.url(name),
            None,
        )
        .await
        .unwrap();
    let r = c.wait_restore(&r.id, WAIT).await.unwrap();
    assert_eq!(r.status, Status::Completed, "restore failed: {:?}", r.error);
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rich_repositories_back_up_and_restore_exactly() {
    let c = Cluster::start(2).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    fixtures::empty_repo(src.path(), "empty.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let http = GitHttp::start(src.path(), Some("s3cret-token")).unwrap();

    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/rich", &daemon.url("rich.git"), None)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/empty", &daemon.url("empty.git"), None)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo(
            "org/rich-http",
            &http.url("rich.git"),
            Some(repovault_common::secret::Secret::new("s3cret-token")),
        )
        .await
        .unwrap();

    // Both repositories back up concurrently on two workers.
    let (a, b, h) = tokio::join!(
        c.backup_ok("org/rich"),
        c.backup_ok("org/empty"),
        c.backup_ok("org/rich-http")
    );
    let (a, b, h) = (a.unwrap(), b.unwrap(), h.unwrap());

    let source_refs = refs(&rich).unwrap();
    let expected: std::collections::BTreeMap<String, String> = source_refs
        .iter()
        .filter(|(k, _)| !(k.starts_with("refs/pull/") && k.ends_with("/merge")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(
        expected.keys().any(|k| k.contains("naïve")),
        "fixture has the non-ASCII branch"
    );
    assert_eq!(a.counts.refs as usize, expected.len());
    assert_eq!(a.counts.tags, 2);
    assert_eq!(
        h.counts, a.counts,
        "HTTP with a token sees the same repository"
    );
    assert_eq!(
        b.counts.refs, 0,
        "an empty repository backs up with no refs"
    );
    assert!(
        a.size_bytes > 4 * 1024 * 1024,
        "the 4 MiB binary is in the backup"
    );
    assert_eq!(a.snapshot_id.as_ref().map(|s| s.as_str().len()), Some(64));

    // Restore to a new empty repository: exactly the refs and objects of the source (minus the
    // pull merge refs, which are not mirrored).
    let restored = restore_to_new(&c, &daemon, a.id.as_str(), "restored.git").await;
    assert_eq!(refs(&restored).unwrap(), expected);
    let mut src_objects = reachable_objects(&rich).unwrap();
    let merge_only: Vec<String> = fixtures::git(
        &rich,
        &[
            "rev-list",
            "--objects",
            "refs/pull/1/merge",
            "--not",
            "--branches",
            "--tags",
            "refs/notes/commits",
            "refs/pull/1/head",
        ],
    )
    .unwrap()
    .lines()
    .filter_map(|l| l.split_whitespace().next().map(str::to_string))
    .collect();
    for o in merge_only {
        src_objects.remove(&o);
    }
    assert_eq!(reachable_objects(&restored).unwrap(), src_objects);
    // A target that already has refs is refused.
    let again = c
        .core()
        .restores
        .start_restore(
            &a.id,
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::New,
            &daemon.url("restored.git"),
            None,
        )
        .await
        .unwrap();
    let again = c.wait_restore(&again.id, WAIT).await.unwrap();
    assert_eq!(again.status, Status::Failed);
    assert!(again.error.unwrap_or_default().contains("not empty"));

    // Download: the artifact is the bare repository.
    let r = c
        .core()
        .restores
        .start_restore(
            &a.id,
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::Download,
            "",
            None,
        )
        .await
        .unwrap();
    let r = c.wait_restore(&r.id, WAIT).await.unwrap();
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    assert!(r.artifact_bytes > 4 * 1024 * 1024);

    // The empty backup restores to an empty repository.
    let restored_empty = restore_to_new(&c, &daemon, b.id.as_str(), "restored-empty.git").await;
    assert!(refs(&restored_empty).unwrap().is_empty());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_backup_fetches_only_what_changed_and_both_restore() {
    let c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let http = GitHttp::start(src.path(), None).unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/rich", &http.url("rich.git"), None)
        .await
        .unwrap();

    let before = refs(&rich).unwrap();
    let served0 = http.bytes_served();
    let first = c.backup_ok("org/rich").await.unwrap();
    let served_first = http.bytes_served() - served0;

    evolve(src.path(), "rich.git").unwrap();
    let after = refs(&rich).unwrap();
    assert_ne!(before, after);
    let served1 = http.bytes_served();
    let second = c.backup_ok("org/rich").await.unwrap();
    let served_second = http.bytes_served() - served1;

    // Bytes received, on the wire and as the worker counted them.
    assert!(
        served_second * 20 < served_first,
        "second fetch served {served_second} bytes, first {served_first}"
    );
    assert!(
        second.bytes_received * 20 < first.bytes_received,
        "{} vs {}",
        second.bytes_received,
        first.bytes_received
    );
    // Bytes stored: the new snapshot adds a small fraction of the first.
    assert!(
        second.added_bytes * 10 < first.added_bytes,
        "{} vs {}",
        second.added_bytes,
        first.added_bytes
    );
    assert_eq!(
        second.parent_snapshot_id, first.snapshot_id,
        "the parent is named explicitly"
    );

    let strip = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| !k.ends_with("/merge"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let r2 = restore_to_new(&c, &daemon, second.id.as_str(), "second.git").await;
    assert_eq!(refs(&r2).unwrap(), strip(&after));
    assert!(
        !refs(&r2)
            .unwrap()
            .contains_key(&format!("refs/heads/{}", fixtures::EVOLVE_DELETED_BRANCH))
    );
    let r1 = restore_to_new(&c, &daemon, first.id.as_str(), "first.git").await;
    assert_eq!(
        refs(&r1).unwrap(),
        strip(&before),
        "the first backup still restores the old state"
    );

    // Nothing changed at the source: the third backup repeats the second's tree, stores
    // nothing, rests its read-back on the second's, and restores like it.
    let third = c.backup_ok("org/rich").await.unwrap();
    assert_eq!(third.parent_snapshot_id, second.snapshot_id);
    assert_ne!(third.snapshot_id, second.snapshot_id);
    assert_eq!(third.added_bytes, 0, "{third:#?}");
    assert_eq!(third.size_bytes, second.size_bytes);
    let checks = &third.verification.as_ref().expect("verified").checks;
    let zip = checks.iter().find(|c| c.name == "zip_integrity").unwrap();
    assert!(
        zip.detail.contains("nothing new stored") && zip.detail.contains(second.id.as_str()),
        "{checks:#?}"
    );
    assert!(
        checks
            .iter()
            .all(|c| c.result != repovault_coordinator::model::CheckOutcome::Fail),
        "{checks:#?}"
    );
    let r3 = restore_to_new(&c, &daemon, third.id.as_str(), "third.git").await;
    assert_eq!(refs(&r3).unwrap(), strip(&after));

    // History is listed newest first.
    let list = c
        .core()
        .registry
        .list_backups(Some("org/rich"))
        .await
        .unwrap();
    assert_eq!(
        list.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        vec![third.id.clone(), second.id.clone(), first.id.clone()]
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_without_the_cache_rebuilds_it_from_the_latest_snapshot() {
    let mut c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "rich.git").unwrap();
    let http = GitHttp::start(src.path(), None).unwrap();
    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/rich", &http.url("rich.git"), None)
        .await
        .unwrap();
    let first = c.backup_ok("org/rich").await.unwrap();
    // A new worker with an empty cache takes over.
    c.stop_workers().await;
    c.add_worker().await.unwrap();
    let served = http.bytes_served();
    let second = c.backup_ok("org/rich").await.unwrap();
    let served_second = http.bytes_served() - served;
    assert!(
        served_second * 20 < first.bytes_received,
        "seeded from the snapshot: served {served_second} bytes"
    );
    assert_eq!(second.counts, first.counts);
    c.shutdown().await;
}
