//! Immutable escrow on S3 (moto): an escrowed repository's snapshot objects carry S3 Object Lock
//! in COMPLIANCE mode until the agreement's end, so the storage's own administrator credential
//! cannot destroy them; a bucket without Object Lock says why it is not locked.

use repovault_common::storage::s3_object_lock::{ObjectLockError, S3ObjectLock};
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::{git, rich_repo};
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::object_stores::{ObjectStore, Peer};

use super::github_org::cli;
use super::object_storage::{add_moto_location, out};

fn add_location(c: &Cluster, name: &str, bucket: &str, moto: &ObjectStore) {
    let add = add_moto_location(c, name, bucket, moto);
    assert_eq!(add.status.code(), Some(0), "{}", out(&add));
}

/// The lock of each listed object of a snapshot repository: (relative path, mode, until).
async fn locks_under(
    store: &ObjectStore,
    bucket: &str,
    root: &str,
) -> Vec<(String, Option<String>, Option<String>)> {
    let config = store.storage(bucket);
    let op = config.operator().unwrap();
    let lock = S3ObjectLock::new(&config).unwrap();
    let mut out = Vec::new();
    for e in op.list_with(root).recursive(true).await.unwrap() {
        if e.metadata().is_dir() {
            continue;
        }
        let state = lock.lock_state(e.path()).await.unwrap();
        out.push((
            e.path().strip_prefix(root).unwrap().to_string(),
            state.mode,
            state.retain_until.map(|t| t.to_rfc3339()),
        ));
    }
    out
}

fn escrow_list(c: &Cluster) -> Vec<serde_json::Value> {
    let list = cli(c, &["--output", "json", "escrow", "list"], &[]);
    assert_eq!(list.status.code(), Some(0), "{}", out(&list));
    serde_json::from_slice::<serde_json::Value>(&list.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn escrowed_snapshots_are_locked_against_the_storage_administrator() {
    let store = ObjectStore::start(Peer::Moto).await.unwrap();
    store
        .create_bucket_with_object_lock("locked")
        .await
        .unwrap();
    store.create_bucket("plain").await.unwrap();
    let c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    add_location(&c, "locked", "locked", &store);
    add_location(&c, "plain", "plain", &store);
    c.add_git_repo("acme/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    c.add_git_repo("other/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    for (org, location) in [("acme", "locked"), ("other", "plain")] {
        let set = cli(&c, &["org", "set", org, "--storage", location], &[]);
        assert_eq!(set.status.code(), Some(0), "{}", out(&set));
    }
    let first = c.backup_ok("acme/rich").await.unwrap();
    c.backup_ok("other/rich").await.unwrap();

    let until = (chrono::Utc::now() + chrono::Duration::days(200)).date_naive();
    let locked_until = format!("{}T00:00:00+00:00", until.succ_opt().unwrap());
    let keys = tempfile::tempdir().unwrap();
    for repo in ["acme/rich", "other/rich"] {
        let key = keys.path().join(repo.replace('/', "-"));
        let enable = cli(
            &c,
            &[
                "escrow",
                "enable",
                repo,
                "--agreement",
                "Acme and its customer, ref 7",
                "--until",
                &until.to_string(),
                "--key-to",
                key.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(enable.status.code(), Some(0), "{}", out(&enable));
    }
    assert!(
        escrow_list(&c)
            .iter()
            .all(|a| a["storage_lock"]["status"] == "pending"),
        "{:#?}",
        escrow_list(&c)
    );

    // One pass locks every object of the escrowed repository's snapshots (the escrow key
    // included) until the agreement's end, and nothing outside them.
    let pass = c.core().escrow_locks.run_locks_once().await.unwrap();
    assert_eq!((pass.repos_locked, pass.failed), (1, 0), "{pass:?}");
    let root = format!("{}/{}/", first.org_id, first.repo_id);
    let locks = locks_under(&store, "locked", &root).await;
    let snapshot_files: Vec<_> = locks
        .iter()
        .filter(|(p, _, _)| {
            p == "config"
                || ["data/", "index/", "keys/", "snapshots/"]
                    .iter()
                    .any(|d| p.starts_with(d))
        })
        .collect();
    assert!(
        snapshot_files
            .iter()
            .filter(|(p, _, _)| p.starts_with("keys/"))
            .count()
            >= 2,
        "the organisation's and the escrow agent's keys: {locks:#?}"
    );
    assert_eq!(pass.objects_locked, snapshot_files.len() as u64);
    for (path, mode, until) in &snapshot_files {
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{path}");
        assert_eq!(until.as_deref(), Some(locked_until.as_str()), "{path}");
    }
    assert!(
        locks
            .iter()
            .filter(|(p, _, _)| p.starts_with("catalog/"))
            .all(|(_, mode, _)| mode.is_none()),
        "repovault's own records stay unlocked: {locks:#?}"
    );
    let listed = escrow_list(&c);
    let lock_of = |repo: &str| {
        listed
            .iter()
            .find(|a| a["repo"] == repo)
            .map(|a| a["storage_lock"].clone())
            .unwrap()
    };
    assert_eq!(lock_of("acme/rich")["status"], "locked", "{listed:#?}");
    assert_eq!(
        lock_of("acme/rich")["locked_until"],
        format!("{}T00:00:00.000Z", until.succ_opt().unwrap()),
        "{listed:#?}"
    );
    assert_eq!(lock_of("other/rich")["status"], "unavailable");
    assert!(
        lock_of("other/rich")["detail"]
            .as_str()
            .unwrap()
            .contains("has no Object Lock"),
        "{listed:#?}"
    );
    let table = cli(&c, &["escrow", "list"], &[]);
    assert!(out(&table).contains("locked until"), "{}", out(&table));

    // Nothing changed: the next pass locks nothing. A new backup: the next pass locks what it
    // added (and, again, what was written within the hour before the last pass: an upload's
    // Last-Modified is when it began, so a listing can miss one that finished during it).
    let idle = c.core().escrow_locks.run_locks_once().await.unwrap();
    assert_eq!(idle.objects_locked, 0, "{idle:?}");
    let tip = git(
        &rich,
        &[
            "commit-tree",
            "HEAD^{tree}",
            "-p",
            "HEAD",
            "-m",
            "after escrow",
        ],
    )
    .unwrap();
    git(
        &rich,
        &["update-ref", "refs/heads/after-escrow", tip.trim()],
    )
    .unwrap();
    let second = c.backup_ok("acme/rich").await.unwrap();
    let again = c.core().escrow_locks.run_locks_once().await.unwrap();
    assert!(
        again.objects_locked > pass.objects_locked,
        "{again:?} after {pass:?}"
    );
    let snapshot = format!(
        "{root}snapshots/{}",
        second.snapshot_id.as_ref().unwrap().as_str()
    );
    let admin = S3ObjectLock::new(&store.storage("locked")).unwrap();
    let state = admin.lock_state(&snapshot).await.unwrap();
    assert_eq!(state.mode.as_deref(), Some("COMPLIANCE"));

    // The storage's administrator credential (moto's owner keys) cannot delete a locked version;
    // a plain delete only hides the object behind a delete marker, and the version still reads
    // back whole.
    let pack = snapshot_files
        .iter()
        .find(|(p, _, _)| p.starts_with("data/"))
        .map(|(p, _, _)| format!("{root}{p}"))
        .unwrap();
    let op = store.storage("locked").operator().unwrap();
    let bytes = op.read(&pack).await.unwrap().to_vec();
    let version = admin.lock_state(&pack).await.unwrap().version_id.unwrap();
    let query = format!("versionId={version}");
    let refused = admin
        .send(
            reqwest::Method::DELETE,
            admin.object_url(&pack, Some(&query)),
            &[],
            Vec::new(),
            "deleting a locked version",
        )
        .await;
    match refused {
        Err(ObjectLockError::Refused { body, .. }) => {
            assert!(body.contains("AccessDenied"), "{body}")
        }
        other => panic!("deleting a locked version was not refused: {other:?}"),
    }
    op.delete(&pack).await.unwrap();
    assert!(
        !op.exists(&pack).await.unwrap(),
        "hidden by a delete marker"
    );
    let kept = admin
        .send(
            reqwest::Method::GET,
            admin.object_url(&pack, Some(&query)),
            &[],
            Vec::new(),
            "reading the locked version",
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(kept.to_vec(), bytes, "the locked version is whole");
    c.shutdown().await;
}
