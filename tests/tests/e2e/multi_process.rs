//! Workers as real child processes of the CLI, paused (SIGSTOP) and killed (SIGKILL) in the
//! middle of a backup: the lease expires, another worker runs the task again, and exactly one
//! snapshot (the committed attempt's) remains for the task. A stale worker cannot complete.
//!
//! Test names contain `multi_process` so that nextest runs them one at a time.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use repovault_coordinator::model::{BackupRecord, Status};
use repovault_proto::v1 as pb;
use repovault_proto::v1::worker_service_client::WorkerServiceClient;
use repovault_tests::cluster::{Cluster, restic};
use repovault_tests::fixtures;
use repovault_tests::gitserver::GitDaemon;

const WAIT: Duration = Duration::from_secs(120);
const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// Kills (and reaps) the worker process on drop, also when a test fails; a stopped process is
/// continued first so that it can die.
struct ProcessGuard {
    child: Child,
}

impl ProcessGuard {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {}", self.pid());
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-CONT", &self.pid()]).status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One organisation `org` with the repository `org/big` served by a git daemon, the worker
/// process `name`, and a first backup by that process (it initialises the snapshot repository,
/// so the interrupted backup that follows is not the repository's first). Then the source grows
/// to a history big enough that the second backup takes a while; that backup is enqueued and
/// the call returns as soon as the process holds its lease (attempt 1).
struct Scenario {
    cluster: Cluster,
    _src: tempfile::TempDir,
    _daemon: GitDaemon,
    source: PathBuf,
    process: ProcessGuard,
    name: &'static str,
    /// Length of the process log before the interrupted backup.
    log_mark: usize,
    first: BackupRecord,
    /// The interrupted backup as leased by the process.
    leased: BackupRecord,
}

async fn scenario(name: &'static str) -> Scenario {
    let cluster = Cluster::start(0).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let source = fixtures::big_repo(src.path(), "big.git", 3, 3).unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    cluster
        .core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    cluster
        .core()
        .registry
        .add_repo("org/big", &daemon.url("big.git"), None)
        .await
        .unwrap();
    let process = ProcessGuard {
        child: cluster.spawn_worker_process(BIN, name).unwrap(),
    };
    let first = cluster.backup_ok("org/big").await.unwrap();
    assert_eq!(first.attempt, 1);

    // A new, much bigger history under the same name.
    std::fs::remove_dir_all(&source).unwrap();
    let source = fixtures::big_repo(src.path(), "big.git", 3000, 100).unwrap();

    let log_mark = cluster.process_log(name).len();
    let b = cluster.core().backups.run_backup("org/big").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let leased = loop {
        let r = cluster.core().registry.get_backup(&b.id).await.unwrap();
        // Leased, and the process has started the task: it is now somewhere in open, fetch or
        // snapshot (the big fetch takes seconds).
        let started = cluster
            .process_log(name)
            .get(log_mark..)
            .is_some_and(|l| l.contains("task started"));
        if r.status == Status::Running && r.worker_id.is_some() && started {
            break r;
        }
        assert!(
            !r.status.is_terminal() && tokio::time::Instant::now() < deadline,
            "backup was not leased to the worker process: {r:?}\n{}",
            cluster.process_log(name)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(leased.attempt, 1);
    Scenario {
        cluster,
        _src: src,
        _daemon: daemon,
        source,
        process,
        name,
        log_mark,
        first,
        leased,
    }
}

impl Scenario {
    /// Waits for the reaper to take the lease of attempt 1 back.
    async fn wait_requeued(&self) {
        let id = &self.leased.id;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.cluster.core().registry.get_backup(id).await.unwrap();
            assert!(
                r.status != Status::Completed,
                "the interrupted worker completed attempt {} before it was interrupted",
                r.attempt
            );
            if r.status == Status::Pending {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lease did not expire: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts an in-process worker and waits for it to complete the backup.
    async fn finish_on_another_worker(&mut self) -> BackupRecord {
        self.cluster.add_worker().await.unwrap();
        self.wait_done().await
    }

    async fn wait_done(&self) -> BackupRecord {
        let id = self.leased.id.clone();
        let done = self.cluster.wait_backup(&id, WAIT).await.unwrap();
        assert_eq!(
            done.status,
            Status::Completed,
            "backup failed: {:?}",
            done.error
        );
        assert!(done.attempt >= 2, "completed by attempt {}", done.attempt);
        assert_ne!(done.worker_id, self.leased.worker_id);
        assert_eq!(done.task_id, self.leased.task_id);
        assert_eq!(
            done.snapshot_id.as_ref().map(|s| s.as_str().len()),
            Some(64)
        );
        done
    }

    fn repo_path(&self) -> PathBuf {
        let repo = &self.first;
        self.cluster
            .storage_root()
            .join(repo.org_id.as_str())
            .join(repo.repo_id.as_str())
    }

    async fn key_file(&self) -> PathBuf {
        let (_, key) = self
            .cluster
            .core()
            .registry
            .export_org_key("org")
            .await
            .unwrap();
        let path = self.cluster.dir.path().join("org.key");
        if !path.exists() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            f.write_all(key.expose().as_bytes()).unwrap();
        }
        path
    }

    /// Asserts (waiting a while for the reconciler, which forgets refused snapshots
    /// asynchronously) that the task has exactly one snapshot, the committed one, and that the
    /// repository holds nothing but the two committed backups.
    async fn assert_one_snapshot(&self, done: &BackupRecord) {
        let repo = self.repo_path();
        let key = self.key_file().await;
        let tag = format!("task={}", done.task_id);
        let expected = done.snapshot_id.clone().unwrap().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let (for_task, all) = loop {
            let for_task = snapshot_ids(&repo, &key, &["--tag", &tag]);
            let all = snapshot_ids(&repo, &key, &[]);
            if (for_task == [expected.clone()] && all.len() == 2)
                || tokio::time::Instant::now() > deadline
            {
                break (for_task, all);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(for_task, vec![expected.clone()], "snapshots of the task");
        let mut want = vec![
            self.first.snapshot_id.clone().unwrap().to_string(),
            expected,
        ];
        want.sort();
        let mut all = all;
        all.sort();
        assert_eq!(
            all, want,
            "every snapshot of the repository is a committed backup"
        );
    }

    /// The process log after the interrupted backup was enqueued.
    fn log_since_mark(&self) -> String {
        let log = self.cluster.process_log(self.name);
        log.get(self.log_mark..).unwrap_or_default().to_string()
    }
}

/// Full ids of the snapshots `restic snapshots --json [ARGS]` lists.
fn snapshot_ids(repo: &Path, key: &Path, args: &[&str]) -> Vec<String> {
    let mut a = vec!["snapshots", "--json"];
    a.extend_from_slice(args);
    let out = restic(repo, key, &a).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn register_request() -> pb::RegisterWorkerRequest {
    pb::RegisterWorkerRequest {
        protocol_version: repovault_proto::PROTOCOL_VERSION,
        name: "impostor".into(),
        slots: 1,
        capabilities: vec!["git".into()],
        ..Default::default()
    }
}

/// A completion of `attempt` by `worker_id` with a plausible but fake backup result.
fn fake_completion(worker_id: &str, task_id: &str, attempt: u32) -> pb::CompleteTaskRequest {
    pb::CompleteTaskRequest {
        worker_id: worker_id.to_string(),
        lease: Some(pb::LeaseToken {
            task_id: task_id.to_string(),
            attempt,
        }),
        success: true,
        error: String::new(),
        retryable: false,
        result: Some(pb::complete_task_request::Result::Backup(
            pb::BackupResult {
                snapshot_id: "ab".repeat(32),
                manifest_json: "{}".into(),
                size_bytes: 1,
                added_bytes: 1,
                counts: Some(pb::Counts {
                    branches: 1,
                    tags: 0,
                    commits: 1,
                    refs: 1,
                    ..Default::default()
                }),
                bytes_received: 1,
                master_key: String::new(),
                components: Default::default(),
                verification: None,
            },
        )),
        lease_lost: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_process_worker_paused_past_its_lease() {
    let mut s = scenario("paused").await;
    // Paused as soon as the task runs: somewhere in open, fetch or snapshot.
    s.process.signal("-STOP");

    s.wait_requeued().await;
    let done = s.finish_on_another_worker().await;

    // The paused worker wakes up long after its lease expired: whatever it was doing, its
    // completion is refused and no snapshot of its attempt survives.
    s.process.signal("-CONT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = s.log_since_mark();
        if log.contains("completion refused") || tokio::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Shown only when the test fails (nextest captures it).
    eprintln!("paused worker log since the backup was enqueued:\n{log}");
    assert!(
        log.contains("completion refused"),
        "the paused worker never had its completion refused:\n{log}"
    );
    assert!(
        log.contains("FailedPrecondition"),
        "the refusal is a stale lease (FailedPrecondition):\n{log}"
    );
    assert!(
        !log.contains("completion accepted"),
        "the paused worker's completion was accepted:\n{log}"
    );
    assert!(
        matches!(s.process.child.try_wait(), Ok(None)),
        "the worker process survived the pause:\n{log}"
    );

    // The record is still the committed attempt's.
    let after = s
        .cluster
        .core()
        .registry
        .get_backup(&done.id)
        .await
        .unwrap();
    assert_eq!(
        after, done,
        "the stale completion changed the backup record"
    );
    s.assert_one_snapshot(&done).await;

    // The committed backup is of the big history.
    let refs = fixtures::refs(&s.source).unwrap();
    assert_eq!(done.counts.refs as usize, refs.len());
    drop(s.process);
    s.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_process_worker_killed_mid_backup() {
    let mut s = scenario("killed").await;
    s.process.signal("-KILL");
    let status = s.process.child.wait().unwrap();
    assert!(!status.success());
    let stale_worker = s.leased.worker_id.clone().unwrap();
    let task_id = s.leased.task_id.clone();

    let url = s.cluster.url();
    let token = std::fs::read_to_string(s.cluster.join_token_file()).unwrap();
    let token = token.trim().to_string();
    let mut client = WorkerServiceClient::connect(url.clone()).await.unwrap();

    // Without the join token, or with a wrong one, a worker cannot even register.
    let e = client
        .register_worker(register_request())
        .await
        .expect_err("registered without a token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = client
        .register_worker(with_token(register_request(), "not-the-join-token"))
        .await
        .expect_err("registered with a wrong token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = client
        .complete_task(fake_completion(&stale_worker, task_id.as_str(), 1))
        .await
        .expect_err("completed without a token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let impostor = client
        .register_worker(with_token(register_request(), &token))
        .await
        .unwrap()
        .into_inner()
        .worker_id;

    // Re-leased to an in-process worker; while that attempt runs, attempt 1 cannot complete,
    // neither from the worker that held it nor from another one.
    let id = s.leased.id.clone();
    s.wait_requeued().await;
    s.cluster.add_worker().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let released = loop {
        let r = s.cluster.core().registry.get_backup(&id).await.unwrap();
        if r.attempt >= 2 {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not re-leased: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for w in [&stale_worker, &impostor] {
        let e = client
            .complete_task(with_token(fake_completion(w, task_id.as_str(), 1), &token))
            .await
            .expect_err("a stale lease completed");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    }
    if released.status == Status::Running {
        // The impostor cannot complete the current attempt either: it does not hold it.
        let e = client
            .complete_task(with_token(
                fake_completion(&impostor, task_id.as_str(), released.attempt),
                &token,
            ))
            .await
            .expect_err("a worker completed a lease it does not hold");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    }

    let done = s.wait_done().await;
    assert_ne!(
        done.snapshot_id.clone().map(String::from),
        Some("ab".repeat(32))
    );

    // After the commit, the stale completion is still refused and changes nothing.
    let e = client
        .complete_task(with_token(
            fake_completion(&stale_worker, task_id.as_str(), 1),
            &token,
        ))
        .await
        .expect_err("a stale lease completed a committed task");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let after = s
        .cluster
        .core()
        .registry
        .get_backup(&done.id)
        .await
        .unwrap();
    assert_eq!(
        after, done,
        "the stale completion changed the backup record"
    );

    let done = s.cluster.core().registry.get_backup(&id).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    s.assert_one_snapshot(&done).await;
    let log = s.log_since_mark();
    assert!(
        !log.contains("completion accepted"),
        "the killed worker completed:\n{log}"
    );
    s.cluster.shutdown().await;
}
