//! Retention, driven by the time passed to `run_retention_once` (no sleeping): it
//! removes exactly the expired backups and their data (storage shrinks after the two-phase
//! prune), but keeps the latest successful one, the escrowed ones, and every backup of a
//! repository deleted at the source.

use std::path::{Path, PathBuf};
use std::time::Duration;

use repovault_coordinator::maintenance::maintenance_runs::MaintenanceOptions;
use repovault_coordinator::maintenance::retention::RetentionPolicy;
use repovault_tests::cluster::{Cluster, restic};
use repovault_tests::fixtures::{git, git_command, pseudo_random_bytes, rich_repo, run};
use repovault_tests::gitserver::GitDaemon;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

/// A bare repository with `main` (small) and branch `big` (a 4 MiB pseudo-random file).
fn repo_with_big_branch(base: &Path, name: &str) -> PathBuf {
    let bare = base.join(name);
    git(
        base,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    )
    .unwrap();
    let work = base.join(format!("{name}.work"));
    git(base, &["init", "-q", "-b", "main", work.to_str().unwrap()]).unwrap();
    std::fs::write(work.join("README"), "small\n").unwrap();
    git(&work, &["add", "-A"]).unwrap();
    git(&work, &["commit", "-q", "-m", "small"]).unwrap();
    git(&work, &["checkout", "-q", "-b", "big"]).unwrap();
    std::fs::write(work.join("big.bin"), pseudo_random_bytes(7, 4 << 20)).unwrap();
    git(&work, &["add", "-A"]).unwrap();
    git(&work, &["commit", "-q", "-m", "big"]).unwrap();
    git(
        &work,
        &["push", "-q", bare.to_str().unwrap(), "main", "big"],
    )
    .unwrap();
    bare
}

fn snapshot_count(repo: &Path, key: &Path) -> usize {
    let out = restic(repo, key, &["snapshots", "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_drops_exactly_the_expired_and_prune_shrinks_storage() {
    let c = Cluster::start(1).await.unwrap();
    let core = c.core().clone();
    let src = tempfile::tempdir().unwrap();
    let bare = repo_with_big_branch(src.path(), "a.git");
    rich_repo(src.path(), "gone.git").unwrap();
    rich_repo(src.path(), "esc.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let org = core
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    for n in ["a", "gone", "esc"] {
        core.registry
            .add_repo(&format!("org/{n}"), &daemon.url(&format!("{n}.git")), None)
            .await
            .unwrap();
    }
    core.maintenance
        .set_retention(
            "org",
            RetentionPolicy {
                days: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // a: b1 holds the big branch; then the branch goes at the source and from the worker's
    // mirror (repacked), so b2 shares none of its data. b2 is far smaller than b1, which
    // size_match would flag, and retention would then keep b1 as the latest verified backup:
    // this test is about the policy, so the shrink threshold is off.
    core.ledger.options.write().size.shrink_fail_below_percent = 0;
    let a1 = c.backup_ok("org/a").await.unwrap();
    git(&bare, &["update-ref", "-d", "refs/heads/big"]).unwrap();
    let mirror = c
        .data_dir()
        .parent()
        .unwrap()
        .join("cache-0")
        .join(a1.repo_id.as_str())
        .join("code.git");
    assert!(mirror.is_dir(), "worker mirror at {}", mirror.display());
    git(&mirror, &["update-ref", "-d", "refs/heads/big"]).unwrap();
    run(git_command(&mirror).args(["reflog", "expire", "--expire=now", "--all"])).unwrap();
    run(git_command(&mirror).args(["gc", "-q", "--prune=now"])).unwrap();
    let a2 = c.backup_ok("org/a").await.unwrap();

    let g1 = c.backup_ok("org/gone").await.unwrap();
    let g2 = c.backup_ok("org/gone").await.unwrap();
    let e1 = c.backup_ok("org/esc").await.unwrap();
    let e2 = c.backup_ok("org/esc").await.unwrap();

    // gone: deleted at the source (as discovery records it).
    let mut gone = core.registry.repo_named("org/gone").await.unwrap();
    gone.deleted = true;
    let mut batch = repovault_coordinator::store::Batch::default();
    batch.repo(&gone);
    core.store.apply(batch).await.unwrap();
    // esc: under an escrow agreement.
    let (_agreement, _key) = core
        .escrow
        .enable_escrow("org/esc", "ACME Ltd / Bank plc, ref ESC-1", None, "test")
        .await
        .unwrap();

    let (_, org_key) = core.registry.export_org_key("org").await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("org.key");
    std::fs::write(&key_file, org_key.expose()).unwrap();
    let a_repo = c
        .storage_root()
        .join(org.id.as_str())
        .join(a1.repo_id.as_str());
    assert_eq!(snapshot_count(&a_repo, &key_file), 2);
    let before = dir_bytes(&a_repo.join("data"));

    let opts = MaintenanceOptions {
        keep_delete: Duration::ZERO,
        ..Default::default()
    };
    // A day later: nothing is older than the policy's one day.
    let t0 = repovault_coordinator::clock::system_now_ms();
    let r = core
        .maintenance
        .run_retention_once(t0 + DAY_MS / 2, &opts)
        .await
        .unwrap();
    assert_eq!(r.backups_removed, 0, "{r:?}");

    // Two days later: exactly a1 goes (a2 is the latest successful); gone and esc keep all.
    let r = core
        .maintenance
        .run_retention_once(t0 + 2 * DAY_MS, &opts)
        .await
        .unwrap();
    assert_eq!(r.backups_removed, 1, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    assert_eq!(r.prunes, 1, "first phase: {r:?}");
    assert!(core.registry.backup_record(&a1.id).await.unwrap().is_none());
    let left: Vec<repovault_common::domain::BackupId> = core
        .registry
        .list_backups(None)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    for kept in [&a2.id, &g1.id, &g2.id, &e1.id, &e2.id] {
        assert!(left.contains(kept), "{kept} kept: {left:?}");
    }
    assert_eq!(left.len(), 5, "{left:?}");
    assert_eq!(snapshot_count(&a_repo, &key_file), 1);

    // The second phase (keep_delete after the first) deletes the marked packs: storage shrinks
    // by at least most of the big file.
    let r = core
        .maintenance
        .run_retention_once(t0 + 2 * DAY_MS + 60_000, &opts)
        .await
        .unwrap();
    assert_eq!(r.prunes, 1, "second phase: {r:?}");
    let after = dir_bytes(&a_repo.join("data"));
    assert!(
        after + (3 << 20) < before,
        "storage of org/a shrank: {before} -> {after}"
    );
    // Stock restic finds the repository sound and restores the kept backup.
    restic(&a_repo, &key_file, &["check", "--read-data"]).unwrap();
    let out = keys.path().join("restored");
    restic(
        &a_repo,
        &key_file,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .unwrap();
    assert!(out.join("code.git/HEAD").is_file());
    // A third run right after prunes nothing more (at most weekly).
    let r = core
        .maintenance
        .run_retention_once(t0 + 2 * DAY_MS + 120_000, &opts)
        .await
        .unwrap();
    assert_eq!((r.prunes, r.backups_removed), (0, 0), "{r:?}");

    // Released: the escrowed repository follows the policy again (its latest stays); the
    // repository deleted at the source still keeps everything.
    core.escrow.release_escrow("org/esc", "test").await.unwrap();
    let r = core
        .maintenance
        .run_retention_once(t0 + 3 * DAY_MS, &opts)
        .await
        .unwrap();
    assert_eq!(r.backups_removed, 1, "{r:?}");
    assert!(core.registry.backup_record(&e1.id).await.unwrap().is_none());
    assert!(core.registry.backup_record(&e2.id).await.unwrap().is_some());
    assert!(core.registry.backup_record(&g1.id).await.unwrap().is_some());
    c.shutdown().await;
}

/// Maintenance never runs beside a backup of the same repository: a leased backup makes the
/// repository busy, and retention skips it until the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_skips_a_repository_whose_backup_runs() {
    let mut c = Cluster::start(1).await.unwrap();
    let core = c.core().clone();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "r.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    core.registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    core.registry
        .add_repo("org/r", &daemon.url("r.git"), None)
        .await
        .unwrap();
    core.maintenance
        .set_retention(
            "org",
            RetentionPolicy {
                days: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let b1 = c.backup_ok("org/r").await.unwrap();
    c.backup_ok("org/r").await.unwrap();
    c.stop_workers().await;

    // A backup leased to a worker that holds it.
    let now = repovault_coordinator::clock::system_now_ms();
    core.queue
        .workers
        .register(repovault_coordinator::tasks::worker_registry::WorkerEntry {
            id: "holder".into(),
            name: "holder".into(),
            slots: 1,
            pool: "bootstrap".into(),
            token_id: None,
            draining: false,
            registered_at_ms: now,
            last_heartbeat_ms: now,
            tasks: Default::default(),
        });
    core.backups.run_backup("org/r").await.unwrap();
    let task = core
        .queue
        .acquire("holder", Default::default(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(task.is_some(), "the backup is leased");

    let opts = MaintenanceOptions {
        keep_delete: Duration::ZERO,
        ..Default::default()
    };
    let r = core
        .maintenance
        .run_retention_once(now + 2 * DAY_MS, &opts)
        .await
        .unwrap();
    assert_eq!((r.skipped_busy, r.backups_removed), (1, 0), "{r:?}");
    assert!(core.registry.backup_record(&b1.id).await.unwrap().is_some());
    // Deleting one backup waits for the running one too.
    let err = core.maintenance.delete_backup(&b1.id).await;
    assert!(
        matches!(err, Err(repovault_coordinator::error::CoreError::FailedPrecondition(ref m)) if m.contains("running")),
        "{err:?}"
    );
    c.shutdown().await;
}

/// All files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A failed attempt's pack (written, never indexed: the disk filled before the index) is
/// removed by the next prune once the attempt is over, while every pack the kept backup
/// references stays and the repository stays sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_removes_the_packs_of_a_failed_attempt_and_keeps_referenced_ones() {
    // A 2 s heartbeat: the hand-registered worker below never heartbeats, and under a loaded
    // machine the test's own steps outlasted the default test heartbeat's lease TTL (the reaper
    // then forgot the worker before it acquired).
    let mut c = Cluster::start_with(1, "2s").await.unwrap();
    let core = c.core().clone();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "r.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let org = core
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    core.registry
        .add_repo("org/r", &daemon.url("r.git"), None)
        .await
        .unwrap();
    let b1 = c.backup_ok("org/r").await.unwrap();
    let repo_dir = c
        .storage_root()
        .join(org.id.as_str())
        .join(b1.repo_id.as_str());
    let referenced = files_under(&repo_dir.join("data"));
    assert!(!referenced.is_empty());
    c.stop_workers().await;

    // The next backup is leased to a worker that writes one pack and then fails with a full
    // disk, leaving the pack behind without an index.
    let now = repovault_coordinator::clock::system_now_ms();
    core.queue
        .workers
        .register(repovault_coordinator::tasks::worker_registry::WorkerEntry {
            id: "holder".into(),
            name: "holder".into(),
            slots: 1,
            pool: "bootstrap".into(),
            token_id: None,
            draining: false,
            registered_at_ms: now,
            last_heartbeat_ms: now,
            tasks: Default::default(),
        });
    let b2 = core.backups.run_backup("org/r").await.unwrap();
    let task = core
        .queue
        .acquire("holder", Default::default(), Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the backup is leased");
    let orphan_id = "5e".repeat(32);
    let orphan = repo_dir.join("data").join(&orphan_id[..2]).join(&orphan_id);
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, pseudo_random_bytes(3, 1 << 20)).unwrap();
    let lease = task.lease.clone();
    core.queue
        .complete(
            &lease,
            &repovault_coordinator::tasks::kinds::outcome::TaskReport {
                worker_id: "holder".into(),
                success: false,
                error: "writing a pack: No space left on device (os error 28)".into(),
                retryable: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let b2 = c
        .wait_backup(&b2.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        b2.status,
        repovault_coordinator::model::Status::Failed,
        "{b2:?}"
    );

    // Retention has nothing to drop, but the failed attempt's data is due for a prune, which
    // deletes the pack no index lists once it is keep_delete old (zero here).
    let opts = MaintenanceOptions {
        keep_delete: Duration::ZERO,
        ..Default::default()
    };
    let t = repovault_coordinator::clock::system_now_ms();
    let r = core
        .maintenance
        .run_retention_once(t + 60_000, &opts)
        .await
        .unwrap();
    assert_eq!((r.backups_removed, r.prunes, r.errors), (0, 1, 0), "{r:?}");
    assert!(r.pruned_bytes >= 1 << 20, "{r:?}");
    assert!(!orphan.exists(), "the failed attempt's pack is removed");
    for p in &referenced {
        assert!(p.exists(), "referenced pack {} kept", p.display());
    }
    // Once pruned, the same failure does not prune again.
    let r = core
        .maintenance
        .run_retention_once(t + 120_000, &opts)
        .await
        .unwrap();
    assert_eq!(r.prunes, 0, "{r:?}");

    let (_, org_key) = core.registry.export_org_key("org").await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("org.key");
    std::fs::write(&key_file, org_key.expose()).unwrap();
    restic(&repo_dir, &key_file, &["check", "--read-data"]).unwrap();
    assert_eq!(snapshot_count(&repo_dir, &key_file), 1);
    c.shutdown().await;
}
