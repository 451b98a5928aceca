//! Cache affinity with two worker processes: every later backup of a repository lands on the
//! worker whose mirror cache holds it, and a holder that is gone (killed, so still registered
//! until its heartbeats have been missed for a lease TTL) delays a backup by the affinity wait
//! and no more.

use std::collections::BTreeMap;
use std::time::Duration;

use repovault_coordinator::model::{BackupRecord, Status};
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures;
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::process::ChildGuard;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");
const REPOS: usize = 6;

/// Starts a backup of each of `names` in that order, then waits for all of them.
async fn round(c: &Cluster, names: &[String]) -> BTreeMap<String, BackupRecord> {
    let mut started = Vec::new();
    for n in names {
        started.push((n.clone(), c.core().backups.run_backup(n).await.unwrap().id));
    }
    let mut done = BTreeMap::new();
    for (n, id) in started {
        let b = c.wait_backup(&id, Duration::from_secs(120)).await.unwrap();
        assert_eq!(b.status, Status::Completed, "{n}: {:?}", b.error);
        done.insert(n, b);
    }
    done
}

fn worker_of(b: &BackupRecord) -> String {
    b.worker_id
        .clone()
        .expect("a completed backup names its worker")
}

async fn worker_id_named(c: &Cluster, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(w) = c
            .core()
            .queue
            .workers
            .list()
            .into_iter()
            .find(|w| w.name == name)
        {
            return w.id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker {name} did not register:\n{}",
            c.process_log(name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_follow_the_mirror_and_a_lost_holder_delays_them_only_the_bound() {
    // A 3 s heartbeat: a killed worker stays registered for a lease TTL (3H + 1 s = 10 s), well
    // beyond the 2 s wait used at the end, so there the wait frees its backups, not its expiry.
    let c = Cluster::start_with(0, "3s").await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..REPOS).map(|i| format!("org/r{i}")).collect();
    for i in 0..REPOS {
        fixtures::big_repo(src.path(), &format!("r{i}.git"), 20, 5).unwrap();
    }
    let daemon = GitDaemon::start(src.path()).unwrap();
    for (i, n) in names.iter().enumerate() {
        c.add_git_repo(n, &daemon.url(&format!("r{i}.git")))
            .await
            .unwrap();
    }
    let _a = ChildGuard {
        child: c.spawn_worker_process(BIN, "a").unwrap(),
    };
    let mut b = ChildGuard {
        child: c.spawn_worker_process(BIN, "b").unwrap(),
    };
    let a_id = worker_id_named(&c, "a").await;
    let b_id = worker_id_named(&c, "b").await;

    // The first round lands wherever a slot is free (one slot per worker).
    let first = round(&c, &names).await;
    let holder: BTreeMap<String, String> = first
        .iter()
        .map(|(n, b)| (n.clone(), worker_of(b)))
        .collect();
    let held_by_b: Vec<String> = holder
        .iter()
        .filter(|(_, w)| **w == b_id)
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        !held_by_b.is_empty() && held_by_b.len() < REPOS,
        "both workers should have made first backups: {holder:?}"
    );

    // Later rounds, enqueued in other orders, follow the mirrors.
    let mut reversed = names.clone();
    reversed.reverse();
    let mut rotated = names.clone();
    rotated.rotate_left(REPOS / 2);
    for order in [reversed, rotated] {
        let later = round(&c, &order).await;
        for (n, b) in &later {
            assert_eq!(
                worker_of(b),
                holder[n],
                "{n} was backed up by the worker not holding its mirror (order {order:?})"
            );
        }
    }

    // The holder of some mirrors is killed: still registered, it never asks again. Its
    // repositories' backups wait the bound for it, then go to the other worker.
    let wait = Duration::from_secs(2);
    c.core().queue.set_affinity_wait(wait);
    b.signal("-KILL").unwrap();
    b.wait_exit(Duration::from_secs(10)).await.unwrap();
    // Its closed connection ends its long-poll on the coordinator (the server drops the
    // request). A task enqueued before that could be granted to the dead poll and wait out the
    // lease TTL: a window of any worker's death, not of placement, and not what this measures.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let orphaned = round(&c, &held_by_b).await;
    for (n, r) in &orphaned {
        assert_eq!(worker_of(r), a_id, "{n} went to the killed worker");
        let delay = r.started_at_ms.expect("leased") - r.created_at_ms;
        assert!(
            delay >= i64::try_from(wait.as_millis()).unwrap() - 100,
            "{n} was leased after {delay} ms: the holder, still registered, was not waited for \
             (attempt {}, workers {:?}, holders {holder:?}, b {b_id})",
            r.attempt,
            c.core().queue.workers.list()
        );
        assert!(
            delay <= 6_000,
            "{n} waited {delay} ms for a holder that is gone (the bound is {wait:?})"
        );
    }
}
