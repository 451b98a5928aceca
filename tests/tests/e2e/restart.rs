//! The coordinator restarted on the same data directory loses nothing, and the catalog rebuilt
//! from storage alone equals the store's view. A coordinator process killed or stopped during a
//! backup costs that backup nothing: the worker keeps its lease across the restarts.
//!
//! Test names contain `restart` so that nextest runs them one at a time.

use std::time::Duration;

use repovault_common::domain::FromWire;
use repovault_common::timing::Timing;
use repovault_coordinator::model::Status;
use repovault_proto::v1 as pb;
use repovault_tests::cluster::{Cluster, restic};
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gate::GatedProxy;
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::process::{CoordinatorProcess, Stop};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_mid_queue_loses_nothing_and_catalog_rebuilds_from_storage() {
    let mut c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    for i in 0..4 {
        rich_repo(src.path(), &format!("r{i}.git")).unwrap();
        c.core()
            .registry
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
        .registry
        .add_repo("org/gone", &daemon.url("missing.git"), None)
        .await
        .unwrap();
    let failed = c.core().backups.run_backup("org/gone").await.unwrap();
    let failed = c
        .wait_backup(&failed.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    c.stop_workers().await;
    let queued: Vec<repovault_common::domain::BackupId> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(
                c.core()
                    .backups
                    .run_backup(&format!("org/r{i}"))
                    .await
                    .unwrap()
                    .id,
            );
        }
        v
    };
    let before_list = c.core().registry.list_backups(None).await.unwrap();
    assert_eq!(before_list.len(), 7);

    c.restart_coordinator().await.unwrap();
    let queue = c.core().queue.queue_snapshot().await;
    assert_eq!(queue.len(), 4, "every queued task survived the restart");
    let after_list = c.core().registry.list_backups(None).await.unwrap();
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
    let victim = c.core().registry.get_backup(&queued[0]).await.unwrap();
    let object = c
        .storage_root()
        .join(repovault_common::storage::catalog_object_path(
            victim.org_id.as_str(),
            victim.repo_id.as_str(),
            victim.id.as_str(),
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
    let full_before = c.core().registry.list_backups(None).await.unwrap();
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
    let (repos, backups) = c.core().catalog.rebuild_catalog().await.unwrap();
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
    assert_eq!(
        c.core().registry.list_backups(None).await.unwrap(),
        full_before
    );
    c.shutdown().await;
}

/// The test-process binary: the real `repovault` CLI, run as coordinator and worker processes.
const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");
/// Heartbeat of the coordinator process: TTL 4 s, takeover grace 5 s, write deadline 3 s (see
/// `common::timing`), so a restart that costs a lease shows within seconds.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// One backup, held mid-fetch by a closed gate in front of its source, survives three restarts
/// of the coordinator process (stopped with `how` each time): the worker re-attaches its lease,
/// the backup completes as attempt 1 on the same worker, and storage holds exactly one snapshot.
async fn three_coordinator_restarts_during_one_backup(how: Stop) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let source = rich_repo(&src, "r.git").unwrap();
    let daemon = GitDaemon::start(&src).unwrap();
    let gate = GatedProxy::start(daemon.port()).unwrap();
    let mut coord =
        CoordinatorProcess::start(BIN, dir.path(), &format!("{}ms", HEARTBEAT.as_millis()))
            .await
            .unwrap();
    let mut admin = coord.admin().await.unwrap();
    admin
        .add_org(pb::AddOrgRequest {
            name: "org".into(),
            provider: repovault_common::domain::Provider::Git.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .add_repo(pb::AddRepoRequest {
            org: "org".into(),
            name: "r".into(),
            url: gate.git_url("r.git"),
            token: String::new(),
        })
        .await
        .unwrap();
    let _worker = coord.spawn_worker("w", &["--drain-grace", "5s"]).unwrap();
    let backup = admin
        .run_backup(pb::RunBackupRequest {
            repo: "org/r".into(),
            r#type: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .backup
        .unwrap();

    // Leased to the worker, whose fetch is now waiting at the gate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let leased = loop {
        let b = get_backup(&coord, &backup.id).await;
        if b.status == i32::from(repovault_common::domain::TaskStatus::Running)
            && !b.worker_id.is_empty()
            && gate.connections() > 0
        {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backup did not reach its fetch: {b:?}\n{}",
            coord.worker_log("w")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(leased.attempt, 1);

    for round in 1..=3 {
        coord.stop(how).await.unwrap();
        coord.restart().await.unwrap();
        // Past the takeover grace (TTL + 1 s) and two more heartbeats: a lease nobody re-attached
        // would have been reaped by now.
        let hold = Timing::new(HEARTBEAT).unwrap().takeover_grace() + HEARTBEAT * 2;
        let until = tokio::time::Instant::now() + hold;
        while tokio::time::Instant::now() < until {
            let b = get_backup(&coord, &backup.id).await;
            assert!(
                b.status == i32::from(repovault_common::domain::TaskStatus::Running)
                    && b.attempt == 1
                    && b.worker_id == leased.worker_id,
                "after coordinator restart {round} ({how:?}) the backup lost its lease: {b:?}\n\
                 worker log:\n{}\n{}",
                coord.worker_log("w"),
                coord.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The worker is back under its own id, holding the task.
        let mut admin = coord.admin().await.unwrap();
        let workers = admin
            .list_workers(pb::ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner()
            .workers;
        assert!(
            workers
                .iter()
                .any(|w| w.id == leased.worker_id && w.tasks.contains(&leased.task_id)),
            "after restart {round} the worker is not registered under its id with the task: \
             {workers:?}"
        );
    }

    gate.open();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let done = loop {
        let b = get_backup(&coord, &backup.id).await;
        if repovault_common::domain::TaskStatus::from_wire(b.status, "status")
            .is_ok_and(repovault_common::domain::TaskStatus::is_terminal)
        {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backup did not finish: {b:?}\n{}",
            coord.worker_log("w")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (done.status, done.attempt, done.worker_id.as_str()),
        (
            repovault_common::domain::TaskStatus::Completed.into(),
            1,
            leased.worker_id.as_str()
        ),
        "{done:?}\nworker log:\n{}",
        coord.worker_log("w")
    );
    // Every ref but GitHub's regenerated merge refs, as any backup of the fixture.
    let refs = repovault_tests::fixtures::refs(&source).unwrap();
    let expected = refs
        .keys()
        .filter(|k| !(k.starts_with("refs/pull/") && k.ends_with("/merge")))
        .count();
    assert_eq!(
        done.counts.as_ref().map(|c| c.refs as usize),
        Some(expected)
    );

    // Storage holds exactly that one snapshot, and the catalog that one backup.
    let mut admin = coord.admin().await.unwrap();
    let key = admin
        .export_org_key(pb::ExportOrgKeyRequest { org: "org".into() })
        .await
        .unwrap()
        .into_inner();
    let key_file = dir.path().join("org.key");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)
            .unwrap();
        f.write_all(key.key.as_bytes()).unwrap();
    }
    let repo = coord.storage_root().join(&done.org_id).join(&done.repo_id);
    let out = restic(&repo, &key_file, &["snapshots", "--json"]).unwrap();
    let snapshots: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = snapshots.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, vec![done.snapshot_id.as_str()], "snapshots in storage");
    let listed = admin
        .list_backups(pb::ListBackupsRequest {
            repo: "org/r".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .backups;
    assert_eq!(
        listed.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        vec![done.id.as_str()]
    );
    let log = coord.worker_log("w");
    assert!(
        !log.contains("interrupting"),
        "the worker interrupted its task:\n{log}"
    );
    coord.stop(Stop::Term).await.unwrap();
}

async fn get_backup(coord: &CoordinatorProcess, id: &str) -> pb::Backup {
    let mut admin = coord.admin().await.unwrap();
    admin
        .get_backup(pb::GetBackupRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .backup
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_coordinator_killed_three_times_during_one_backup() {
    three_coordinator_restarts_during_one_backup(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_coordinator_stopped_three_times_during_one_backup() {
    three_coordinator_restarts_during_one_backup(Stop::Term).await;
}

/// A worker at its commit point while the coordinator restarts: ConfirmLease and then
/// CompleteTask each meet a coordinator that is down for a second, retry, and succeed against
/// the restarted one under the same lease (attempt 1); a stale lease is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_during_the_commit_point_is_ridden_out() {
    // TTL 4 s, write deadline 3 s: a one-second outage fits, as it must in production (16 s).
    let mut c = Cluster::start_with(0, "1s").await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "r.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/r", &daemon.url("r.git"), None)
        .await
        .unwrap();
    let backup = c.core().backups.run_backup("org/r").await.unwrap();

    // A worker of our own: registered, holding the backup's lease.
    let join = std::fs::read_to_string(c.join_token_file()).unwrap();
    let join = repovault_common::secret::Secret::new(join.trim());
    let mut client =
        repovault_worker::coordinator_client::connect(&c.url(), &join, None, None).unwrap();
    let reg = client
        .register_worker(pb::RegisterWorkerRequest {
            protocol_version: repovault_proto::PROTOCOL_VERSION,
            name: "committer".into(),
            slots: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let timing = Timing::from_heartbeat_ms(reg.timing.unwrap().heartbeat_interval_ms).unwrap();
    let task = client
        .acquire_task(pb::AcquireTaskRequest {
            worker_id: reg.worker_id.clone(),
            free_slots: 1,
            wait_ms: 10_000,
            cached_repo_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .expect("leased");
    let token = task.lease.unwrap();
    assert_eq!(token.attempt, 1);
    let lease =
        repovault_worker::tasks::LeaseView::new(token.clone(), &timing, timing.write_deadline());

    let worker_id: repovault_common::domain::WorkerId = reg.worker_id.parse().unwrap();
    // Down for a second around ConfirmLease.
    let outage = Duration::from_secs(1);
    c.coordinator.take().unwrap().shutdown().await;
    let (restarted, confirmed) = tokio::join!(
        async {
            tokio::time::sleep(outage).await;
            c.restart_coordinator().await
        },
        repovault_worker::commit::confirm_lease(&client, &worker_id, &lease)
    );
    restarted.unwrap();
    assert!(confirmed.unwrap() > 0, "the lease was confirmed");

    // A stale attempt is refused at once, not retried.
    let stale = repovault_worker::tasks::LeaseView::new(
        pb::LeaseToken {
            task_id: token.task_id.clone(),
            attempt: 2,
        },
        &timing,
        timing.write_deadline(),
    );
    let started = std::time::Instant::now();
    let refused = repovault_worker::commit::confirm_lease(&client, &worker_id, &stale).await;
    assert!(
        matches!(
            refused,
            Err(repovault_worker::commit::CallError::Refused {
                code: tonic::Code::FailedPrecondition,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));

    // The restarted coordinator does not know the worker yet; its heartbeat renews the lease
    // all the same, and asks it to register again.
    let sent = std::time::Instant::now();
    let hb = client
        .heartbeat(pb::HeartbeatRequest {
            worker_id: reg.worker_id.clone(),
            held: vec![token.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hb.reregister);
    assert_eq!(hb.renewed, vec![token.clone()]);
    *lease.renewed_at.lock() = sent;

    // Down again around CompleteTask (a failure given back: nothing is written to storage).
    let completion = pb::CompleteTaskRequest {
        worker_id: reg.worker_id.clone(),
        lease: Some(token.clone()),
        success: false,
        error: "source unreachable".into(),
        retryable: true,
        ..Default::default()
    };
    c.coordinator.take().unwrap().shutdown().await;
    let (restarted, completed) = tokio::join!(
        async {
            tokio::time::sleep(outage).await;
            c.restart_coordinator().await
        },
        repovault_worker::commit::complete_task(&client, &completion, &lease)
    );
    restarted.unwrap();
    completed.unwrap();
    let t = c
        .core()
        .queue
        .task_status(&token.task_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (t.lease.attempt, t.lease.failures),
        (1, 1),
        "attempt 1's completion was accepted: {t:?}"
    );
    let b = c.core().registry.get_backup(&backup.id).await.unwrap();
    assert_eq!(b.error.as_deref(), Some("source unreachable"));
    c.shutdown().await;
}
