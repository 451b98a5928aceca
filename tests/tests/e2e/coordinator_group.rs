//! Two coordinators on a three-member etcd, as separate processes, with worker processes given
//! both addresses: the leader is SIGKILLed while backups run; the other takes over within 10 s
//! and every task completes exactly once (one backup record and one snapshot per repository).
//! Then the new leader is paused (SIGSTOP) until the restarted first one has taken over, and
//! continued: it finds its term over and steps down without committing. An etcd member killed
//! meanwhile changes nothing.
//!
//! Test names contain `killed` so that nextest runs them one at a time.

use std::time::Duration;

use repovault_common::domain::{FromWire, Provider, TaskStatus};
use repovault_proto::v1 as pb;
use repovault_tests::cluster::restic;
use repovault_tests::coordinator_group::CoordinatorGroup;
use repovault_tests::etcd_cluster::EtcdCluster;
use repovault_tests::fixtures;
use repovault_tests::gate::GatedProxy;
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::process::ChildGuard;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");
const REPOS: [&str; 3] = ["r0", "r1", "r2"];

async fn backup(group: &CoordinatorGroup, leader: usize, id: &str) -> pb::Backup {
    let mut admin = group.admin(leader).await.unwrap();
    admin
        .get_backup(pb::GetBackupRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .backup
        .unwrap()
}

async fn wait_done(group: &CoordinatorGroup, leader: usize, id: &str) -> pb::Backup {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let b = backup(group, leader, id).await;
        if TaskStatus::from_wire(b.status, "status").is_ok_and(TaskStatus::is_terminal) {
            return b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backup {id} did not finish: {b:?}\n{}\n{}\n{}",
            group.log(leader),
            group.worker_log("w0"),
            group.worker_log("w1")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_backup(group: &CoordinatorGroup, leader: usize, repo: &str) -> String {
    let mut admin = group.admin(leader).await.unwrap();
    admin
        .run_backup(pb::RunBackupRequest {
            repo: format!("org/{repo}"),
            r#type: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .backup
        .unwrap()
        .id
}

/// Three etcd members, two coordinators (the first leading, the second following), an
/// organisation `org` with `repos` served through a closed gate, and `workers` worker
/// processes given both coordinators' addresses.
struct Fixture {
    etcd: EtcdCluster,
    group: CoordinatorGroup,
    gate: GatedProxy,
    _daemon: GitDaemon,
    _workers: Vec<ChildGuard>,
    _dir: tempfile::TempDir,
}

async fn fixture(repos: &[&str], workers: usize) -> Fixture {
    let etcd = EtcdCluster::start(3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for r in repos {
        fixtures::big_repo(&src, &format!("{r}.git"), 3, 3).unwrap();
    }
    let daemon = GitDaemon::start(&src).unwrap();
    let gate = GatedProxy::start(daemon.port()).unwrap();
    let mut group =
        CoordinatorGroup::configure(BIN, &dir.path().join("group"), &etcd.endpoints(), 2, "1s")
            .unwrap();
    group.start(0).await.unwrap();
    group
        .wait_leading(0, Duration::from_secs(20))
        .await
        .unwrap();
    group.start(1).await.unwrap();
    assert_eq!(
        group.role(1).await,
        Some(false),
        "the second member follows"
    );
    let mut admin = group.admin(0).await.unwrap();
    admin
        .add_org(pb::AddOrgRequest {
            name: "org".into(),
            provider: Provider::Git.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for r in repos {
        admin
            .add_repo(pb::AddRepoRequest {
                org: "org".into(),
                name: (*r).into(),
                url: gate.git_url(&format!("{r}.git")),
                token: String::new(),
            })
            .await
            .unwrap();
    }
    let workers = (0..workers)
        .map(|i| group.spawn_worker(&format!("w{i}"), 1).unwrap())
        .collect();
    Fixture {
        etcd,
        group,
        gate,
        _daemon: daemon,
        _workers: workers,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_group_leader_killed_mid_run_loses_nothing_and_a_paused_one_cannot_commit() {
    let Fixture {
        mut etcd,
        mut group,
        gate,
        _daemon,
        _workers,
        _dir,
    } = fixture(&REPOS, 2).await;
    // A follower's refusal names the leader; its readiness says it is not the one to call.
    let refused = group
        .admin(1)
        .await
        .unwrap()
        .list_orgs(pb::ListOrgsRequest::default())
        .await
        .unwrap_err();
    assert!(
        refused.message().contains(&group.url(0)),
        "{}",
        refused.message()
    );
    assert_eq!(
        refused
            .metadata()
            .get("repovault-leader")
            .and_then(|v| v.to_str().ok()),
        Some(group.url(0).as_str())
    );
    let readyz = reqwest::get(format!("http://{}/readyz", group.members[1].http))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);

    let mut ids = Vec::new();
    for r in REPOS {
        ids.push(run_backup(&group, 0, r).await);
    }
    // Two backups leased and held at the gate, the third queued.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut running = 0;
        for id in &ids {
            let b = backup(&group, 0, id).await;
            if b.status == i32::from(TaskStatus::Running) {
                running += 1;
            }
        }
        if running == 2 && gate.connections() >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "two backups did not reach their fetch\n{}\n{}",
            group.worker_log("w0"),
            group.worker_log("w1")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The leader dies mid-run; one etcd member with it.
    group.kill(0).await.unwrap();
    etcd.kill(2);
    let took = group
        .wait_leading(1, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!("takeover after SIGKILL: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "takeover took {took:?}\n{}",
        group.log(1)
    );
    // The CLI given both addresses finds the leader.
    let out = std::process::Command::new(BIN)
        .args(["--coordinator", &group.urls(), "-o", "json", "repo", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("org/r2"));

    gate.open();
    let mut done = Vec::new();
    for id in &ids {
        let b = wait_done(&group, 1, id).await;
        assert_eq!(
            b.status,
            i32::from(TaskStatus::Completed),
            "{b:?}\n{}",
            group.log(1)
        );
        done.push(b);
    }
    assert_exactly_once(&group, 1, &done).await;
    let leading = metrics_of(&group, 1).await;
    assert!(
        leading.contains("repovault_coordinator_leader 1")
            && leading.contains("repovault_queue_depth"),
        "{leading}"
    );

    // The first member comes back as a follower; the leader is paused past its election lease,
    // the first takes over, and the paused one, continued, finds its term over.
    group.start(0).await.unwrap();
    assert_eq!(group.role(0).await, Some(false));
    group.signal(1, "-STOP").unwrap();
    let took = group
        .wait_leading(0, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!("takeover after SIGSTOP: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "second takeover took {took:?}"
    );
    let again = run_backup(&group, 0, "r0").await;
    group.signal(1, "-CONT").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while group.role(1).await != Some(false) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deposed leader did not step down:\n{}",
            group.log(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = group.log(1);
    assert!(
        log.contains("the leadership was lost"),
        "the deposed leader says why it stepped down:\n{log}"
    );
    // Its metrics say it follows, and keep none of the figures it had while leading (a sum
    // over the group would count them twice).
    let metrics = metrics_of(&group, 1).await;
    assert!(
        metrics.contains("repovault_coordinator_leader 0"),
        "{metrics}"
    );
    assert!(!metrics.contains("repovault_queue_depth"), "{metrics}");
    let b = wait_done(&group, 0, &again).await;
    assert_eq!(b.status, i32::from(TaskStatus::Completed), "{b:?}");
    let listed = backups_of(&group, 0, "r0").await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        group.role(0).await,
        Some(true),
        "the first member still leads"
    );
}

/// The backups of `org/REPO`, as member `leader` lists them.
async fn backups_of(group: &CoordinatorGroup, leader: usize, repo: &str) -> Vec<pb::Backup> {
    group
        .admin(leader)
        .await
        .unwrap()
        .list_backups(pb::ListBackupsRequest {
            repo: format!("org/{repo}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .backups
}

/// Member `i`'s `/metrics`.
async fn metrics_of(group: &CoordinatorGroup, i: usize) -> String {
    reqwest::get(format!("http://{}/metrics", group.members[i].http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Each backup is the only one of its repository in the catalog, and its snapshot the only
/// one in storage.
async fn assert_exactly_once(group: &CoordinatorGroup, leader: usize, done: &[pb::Backup]) {
    let mut admin = group.admin(leader).await.unwrap();
    let key = admin
        .export_org_key(pb::ExportOrgKeyRequest { org: "org".into() })
        .await
        .unwrap()
        .into_inner();
    let key_file = group.dir.join("org.key");
    std::fs::write(&key_file, key.key.as_bytes()).unwrap();
    for (b, r) in done.iter().zip(REPOS) {
        let listed = backups_of(group, leader, r).await;
        assert_eq!(
            listed.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
            vec![b.id.as_str()],
            "catalog of {r}"
        );
        let repo = group.storage_root().join(&b.org_id).join(&b.repo_id);
        let out = restic(&repo, &key_file, &["snapshots", "--json"]).unwrap();
        let snapshots: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        let ids: Vec<&str> = snapshots.iter().filter_map(|s| s["id"].as_str()).collect();
        assert_eq!(ids, vec![b.snapshot_id.as_str()], "snapshots of {r}");
    }
}

/// etcd loses its quorum while a backup runs: within the election lease no coordinator leads,
/// and both say why (the refusal and `/readyz` name the state store); the quorum back, one
/// leads again, and the backup completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_group_etcd_quorum_killed_then_everything_resumes() {
    let Fixture {
        mut etcd,
        group,
        gate,
        _daemon,
        _workers,
        _dir,
    } = fixture(&["r0"], 1).await;
    let id = run_backup(&group, 0, "r0").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while gate.connections() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backup did not reach its fetch\n{}",
            group.worker_log("w0")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    etcd.kill(1);
    etcd.kill(2);
    // The election lease (5 s) runs out without renewals; nobody leads, and each says why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let refusal = loop {
        let mut leaders = 0;
        let mut refused = 0;
        let mut why = String::new();
        for i in 0..2 {
            // Between its leader's and its follower's servers a member does not answer.
            let Ok(mut admin) = group.admin(i).await else {
                continue;
            };
            match admin.list_orgs(pb::ListOrgsRequest::default()).await {
                Ok(_) => leaders += 1,
                Err(s) if s.message().contains("no leader can be elected") => {
                    refused += 1;
                    why = s.message().to_string();
                }
                Err(s) => why = s.message().to_string(),
            }
        }
        if leaders == 0 && refused == 2 {
            break why;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a coordinator still leads without etcd's quorum ({why})\n{}\n{}",
            group.log(0),
            group.log(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(refusal.contains("state store"), "{refusal}");
    let readyz = reqwest::get(format!("http://{}/readyz", group.members[0].http))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);
    assert!(
        readyz
            .text()
            .await
            .unwrap()
            .contains("no leader can be elected")
    );
    assert!(
        group.log(0).contains("the leadership was lost"),
        "{}",
        group.log(0)
    );

    etcd.restart(1).await.unwrap();
    etcd.restart(2).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if group.role(0).await == Some(true) {
            break 0;
        }
        if group.role(1).await == Some(true) {
            break 1;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody leads after the quorum is back\n{}\n{}",
            group.log(0),
            group.log(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    gate.open();
    let done = wait_done(&group, leader, &id).await;
    assert_eq!(
        done.status,
        i32::from(TaskStatus::Completed),
        "{done:?}\n{}",
        group.worker_log("w0")
    );
    assert_exactly_once(&group, leader, &[done]).await;
}

/// The scheduled backups of `org/r0`, as (minute of creation, id): a minute slot's run is
/// created within 40 s of the slot's start (its offset is under half the slot, the
/// materialiser looks every 10 s), so the minute names the slot.
async fn scheduled_runs(group: &CoordinatorGroup, leader: usize) -> Vec<(i64, String)> {
    let mut runs: Vec<(i64, String)> = backups_of(group, leader, "r0")
        .await
        .into_iter()
        .filter(|b| b.trigger == i32::from(pb::Trigger::Schedule))
        .map(|b| {
            let at = chrono::DateTime::parse_from_rfc3339(&b.created_at).unwrap();
            (at.timestamp() / 60, b.id)
        })
        .collect();
    runs.sort();
    runs
}

/// Waits until `org/r0` has a scheduled run of a minute after `after` (or any, for `None`).
async fn wait_scheduled_run(group: &CoordinatorGroup, leader: usize, after: Option<i64>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(110);
    while !scheduled_runs(group, leader)
        .await
        .iter()
        .any(|(m, _)| after.is_none_or(|a| *m > a))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scheduled run after minute {after:?}\n{}",
            group.log(leader)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A schedule of every minute: the leader is SIGKILLed as soon as it has materialised a slot's
/// run, and the other takes over and looks at the schedules within the same minute (its
/// materialiser looks at once on taking over). The slot's state was committed with the run, in
/// one transaction under the leader's fence, so the new leader does not run the slot again; the
/// next minute's slot runs once, from the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_group_leader_killed_after_a_scheduled_run_runs_no_slot_twice() {
    let Fixture {
        etcd: _etcd,
        mut group,
        gate,
        _daemon,
        _workers,
        _dir,
    } = fixture(&REPOS[..1], 1).await;
    gate.open();
    let mut admin = group.admin(0).await.unwrap();
    admin
        .set_org_schedule(pb::SetOrgScheduleRequest {
            org: "org".into(),
            schedule: Some("* * * * *".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_scheduled_run(&group, 0, None).await;
    let slot = scheduled_runs(&group, 0).await[0].0;
    group.kill(0).await.unwrap();
    group
        .wait_leading(1, Duration::from_secs(15))
        .await
        .unwrap();
    let took_over = chrono::Utc::now().timestamp() / 60;
    assert_eq!(
        took_over, slot,
        "the new leader took over within the slot's minute (else this test shows nothing)"
    );
    wait_scheduled_run(&group, 1, Some(slot)).await;
    let runs = scheduled_runs(&group, 1).await;
    let minutes: Vec<i64> = runs.iter().map(|(m, _)| *m).collect();
    let mut distinct = minutes.clone();
    distinct.dedup();
    assert_eq!(minutes, distinct, "a slot ran twice: {runs:?}");
    assert_eq!(minutes[0], slot, "{runs:?}");
}
