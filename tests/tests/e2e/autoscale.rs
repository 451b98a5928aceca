//! `standalone --autoscale MIN..MAX`'s pool, in process: queued work grows it to the
//! desired-worker figure (never above MAX), and once the work is done the workers above MIN
//! leave by themselves.

use std::sync::Arc;
use std::time::Duration;

use repovault_cli::autoscale::{self, Bounds};
use repovault_coordinator::model::Status;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gate::GatedProxy;
use repovault_tests::gitserver::GitDaemon;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_grows_with_the_queue_and_shrinks_when_idle() {
    let c = Cluster::start(0).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    // Fetches wait at a closed gate until the pool has grown: five small backups could
    // otherwise all finish on the first worker before the pool looks again.
    let gate = GatedProxy::start(daemon.port()).unwrap();
    let names = ["a", "b", "c", "d", "e"];
    for name in names {
        rich_repo(src.path(), &format!("{name}.git")).unwrap();
        c.add_git_repo(
            &format!("acme/{name}"),
            &gate.git_url(&format!("{name}.git")),
        )
        .await
        .unwrap();
    }
    // The pool's workers, as the cluster's own: shorter idle time than standalone's 30 s is the
    // test's only liberty (the loop passes it on as given).
    let configs: Vec<_> = (0..8)
        .map(|i| c.worker_config(&format!("auto-{i}"), None).unwrap())
        .collect();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let spawn: Arc<autoscale::Spawn> = Arc::new(move |i: u32, idle: Option<Duration>| {
        let mut cfg = configs[i as usize].clone();
        cfg.exit_when_idle = idle.map(|_| Duration::from_secs(2));
        let s = s.clone();
        Box::pin(async move {
            let _ = repovault_worker::session::run(cfg, s).await;
        })
    });
    let pool = tokio::spawn(autoscale::run(
        c.core().scaling.clone(),
        Bounds { min: 0, max: 2 },
        2,
        spawn,
        stop.clone(),
    ));
    let workers = || async { c.core().queue.workers.list().len() };
    tokio::time::sleep(autoscale::TICK * 2).await;
    assert_eq!(workers().await, 0, "no work, MIN 0: no worker");

    let mut queued = Vec::new();
    for name in names {
        queued.push(
            c.core()
                .backups
                .run_backup(&format!("acme/{name}"))
                .await
                .unwrap(),
        );
    }
    // Five backups over two slots a worker want three workers; MAX is two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut most = 0;
    while tokio::time::Instant::now() < deadline && most < 2 {
        most = most.max(workers().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(most, 2, "the pool grew to MAX");
    gate.open();
    for b in &queued {
        let done = c
            .wait_backup(&b.id, Duration::from_secs(180))
            .await
            .unwrap();
        assert_eq!(done.status, Status::Completed, "{:?}", done.error);
        most = most.max(workers().await);
    }
    assert_eq!(most, 2, "never above MAX");
    // Idle for longer than their idle time: every worker above MIN has left.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline && workers().await > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(workers().await, 0, "the pool shrank back to MIN");
    stop.cancel();
    pool.await.unwrap();
    c.shutdown().await;
}
