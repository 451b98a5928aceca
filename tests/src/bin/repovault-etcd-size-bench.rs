//! The etcd size benchmark (README, "Performance"): how large the etcd database of a coordinator
//! group grows with `--repos` repositories (default 100,000) backed up every hour, against the
//! goal of 100,000 repositories with 90 days of hourly backups under 1 GiB.
//!
//! ```text
//! cargo build --release -p repovault-tests --bin repovault-etcd-size-bench
//! target/release/repovault-etcd-size-bench [--repos 100000]
//! ```
//!
//! **The records.** One template repository goes through the real path on an in-process
//! coordinator (on a memory store, fs storage in a temporary directory): added with
//! `Registry::add_repo`, its snapshot repository created at its first lease, then two scheduled
//! backups, each enqueued (`Backups::enqueue_backup`), leased (`TaskQueue::acquire`) and
//! completed (`TaskQueue::complete`) with the report a worker sends for a GitHub repository
//! (the 11 components, counts, and its four checks with details in the worker's own wording;
//! the coordinator adds `size_match`), which also writes its catalog object and clears the
//! pending mark. The records that path left (repository, task, backup, stats) are the
//! templates: every repository and backup of the bench is one of them with fresh ids, names
//! and snapshot ids, written through the `Store`'s `Batch`.
//!
//! **The writes per backup** are the final state of what a scheduled backup leaves in the
//! store: its task record (terminal), its backup record (completed), the repository's stats
//! folded with it (`RepoStats::record`), the materialiser's last slot (`schedule-state/`), and,
//! once a repository holds more than `RECENT_BACKUPS`, the deletion of its oldest backup record
//! (what `finish_catalog` does once the catalog object is written; older history lives in
//! those objects in storage). The intermediate versions (pending, running) and the
//! catalog-pending mark are overwritten or deleted within the same backup, so compaction drops
//! them. Each repository also has its record, name index and maintenance record (the
//! rotation's last visit and the last prune); each organisation its record and name index.
//! Backups are written a round at a time (one per repository), 20 repositories to a
//! transaction, 8 transactions in flight. A terminal task record is deleted
//! `task_history::KEEP` after its task ended, by a sweep every `task_history::EVERY`
//! (`coordinator/src/tasks/task_history.rs`): with a backup every hour a repository holds the
//! records of its last [`tasks_kept`] tasks at any time (the current one, and each earlier one
//! until `KEEP` and at most one sweep after it ended), so the bench keeps that many and
//! deletes the one before with the next backup, as the sweep would have by then.
//!
//! **The database.** One etcd member (Debian `etcd-server`) started here with the deployment's
//! flags (`deploy/kubernetes/etcd/etcd-statefulset.yaml`: `--quota-backend-bytes` 4 GiB) and a
//! snapshot every 10,000 raft entries instead of 100,000 (this bench's transactions carry about
//! 100 KB each, so etcd's default would keep about 10 GB of WAL between snapshots; the WAL is
//! not the database and the figure does not depend on it). After every round the history is
//! compacted to the current revision (`etcdctl compact --physical`, what the deployment's
//! `--auto-compaction-mode=revision` does every five minutes); at each measurement the
//! database is defragmented (`etcdctl defrag`) and its size read (`etcdctl endpoint status`:
//! `dbSize`), and every live key is read back to count the bytes by record kind.
//!
//! **The extrapolation.** A repository's steady state is reached once it holds
//! `RECENT_BACKUPS` backup records: from then on every backup deletes one. The database is
//! measured after S = `RECENT_BACKUPS` + 2 backups per repository and after 2S. The bytes a
//! backup leaves for good are the difference over the S backups in between; 90 days of hourly
//! backups (2,160 per repository) cost the size at 2S plus that per-backup figure for each of
//! the 2,160 - 2S backups to come. If nothing a backup writes outlives the steady state, the
//! difference is zero and the size at 2S is the answer.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use repovault_common::crypto::MasterKey;
use repovault_common::domain::{BackupType, Provider, Trigger};
use repovault_common::manifest::{ComponentStatus, Counts, GITHUB_COMPONENTS};
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;
use repovault_coordinator::clock::SystemClock;
use repovault_coordinator::coordinator::{Coordinator, CoordinatorParts, WorkerHello};
use repovault_coordinator::ids;
use repovault_coordinator::kv::{EtcdKv, KeyRange, KvBackend, MemoryKv};
use repovault_coordinator::model::{
    BackupRecord, CheckOutcome, CheckResult, MaintenanceRecord, OrgRecord, RepoRecord, RepoStats,
    ScheduleState, SnapshotId, TaskRecord,
};
use repovault_coordinator::store::{Batch, RECENT_BACKUPS, Store};
use repovault_coordinator::tasks::kinds::outcome::{
    BackupResult, TaskReport, TaskResult, VerifyResult,
};
use repovault_coordinator::tasks::queue_order::PRIORITY_SCHEDULED;
use repovault_coordinator::worker_pools::JoinIdentity;
use repovault_tests::bench::{mib_f, parse_counts, print_header};

const USAGE: &str = "usage: repovault-etcd-size-bench [--repos N]";

/// The deployment's namespace (`deploy/examples/coordinator-etcd.toml`): part of every key.
const NAMESPACE: &str = "repovault/";

/// Repositories per organisation (an MSP's customer with many repositories).
const REPOS_PER_ORG: usize = 1_000;

/// Repositories per transaction: six writes each (task, backup, stats, schedule state, the
/// deleted oldest backup and task), under the store's 127 operations.
const REPOS_PER_TXN: usize = 20;

/// Transactions in flight at once: enough to keep one etcd member's raft loop batching.
const IN_FLIGHT: usize = 8;

/// The goal: 100,000 repositories with 90 days of hourly backups under 1 GiB.
const GOAL_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;
const GOAL_BACKUPS: usize = 90 * 24;

/// One hour: the schedule's period (hourly backups).
const HOUR_MS: i64 = 3_600_000;

/// How long etcd may take to answer its first request: well under a second here; ten leave
/// room for a loaded machine (as `EtcdPeer`'s).
const ETCD_STARTUP: Duration = Duration::from_secs(10);

/// etcdctl's time limit for a compaction or a defragmentation of a database of a few GiB
/// (etcdctl's default of 5 s is meant for single requests; a defrag rewrites the whole file).
const ETCDCTL_TIMEOUT: &str = "--command-timeout=600s";

/// One etcd member with the deployment's flags (see the module documentation).
struct Etcd {
    child: Child,
    endpoint: String,
    _data: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    async fn start() -> Result<Self> {
        let data = tempfile::tempdir()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(data.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .args(["--name", "m1", "--data-dir"])
            .arg(data.path().join("member"))
            .args(["--logger=zap", "--log-level=warn"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("m1={peer}")])
            .args(["--initial-cluster-state", "new"])
            .arg("--quota-backend-bytes=4294967296")
            .arg("--snapshot-count=10000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian: apt-get install etcd-server)")?;
        let e = Self {
            child,
            endpoint: format!("127.0.0.1:{client_port}"),
            _data: data,
        };
        let deadline = Instant::now() + ETCD_STARTUP;
        loop {
            match EtcdKv::connect(std::slice::from_ref(&e.endpoint), "probe/").await {
                Ok(_) => return Ok(e),
                Err(err) if Instant::now() > deadline => {
                    bail!("etcd did not answer within {ETCD_STARTUP:?}: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://{}", self.endpoint))
            .arg(ETCDCTL_TIMEOUT)
            .args(args)
            .output()
            .context("etcdctl (Debian: apt-get install etcd-client)")?;
        if !out.status.success() {
            bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `(revision, dbSize, dbSizeInUse)` from `etcdctl endpoint status`.
    fn status(&self) -> Result<(u64, u64, u64)> {
        let text = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let s = &v[0]["Status"];
        let field = |p: &serde_json::Value| p.as_u64().context("etcdctl endpoint status: a field");
        Ok((
            field(&s["header"]["revision"])?,
            field(&s["dbSize"])?,
            // etcd 3.4 and later; `dbSize` alone before.
            s["dbSizeInUse"].as_u64().unwrap_or(0),
        ))
    }

    /// Compacts the history up to the current revision.
    fn compact(&self) -> Result<()> {
        let (rev, _, _) = self.status()?;
        self.etcdctl(&["compact", &rev.to_string(), "--physical"])?;
        Ok(())
    }

    fn defrag(&self) -> Result<()> {
        self.etcdctl(&["defrag"])?;
        Ok(())
    }

    fn version() -> String {
        Command::new("etcd")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "etcd (version unknown)".into())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A check as a worker reports it.
fn check(name: &str, detail: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        result: CheckOutcome::Pass,
        detail: detail.into(),
        warning: false,
        incomplete: false,
    }
}

fn snapshot_id() -> Result<SnapshotId> {
    let hex = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    Ok(hex.parse()?)
}

/// What a worker reports for an hourly backup of a mid-sized GitHub repository with a wiki:
/// every component included, and its checks worded as `worker/src/verify/` words them.
fn github_report(worker_id: &str, added_bytes: u64) -> Result<TaskReport> {
    let counts = Counts {
        branches: 37,
        tags: 31,
        commits: 8_421,
        refs: 68,
        issues: 412,
        pulls: 388,
        releases: 31,
        wiki_pages: 24,
        lfs_objects: 0,
        attachments: 143,
        comments: 2_911,
        reviews: 704,
        release_assets: 58,
        ..Default::default()
    };
    let components: BTreeMap<String, ComponentStatus> = GITHUB_COMPONENTS
        .iter()
        .map(|c| (c.to_string(), ComponentStatus::included(None)))
        .collect();
    let checks = vec![
        check(
            "zip_integrity",
            "read back 1 of the 23 packs the snapshot references (41.3 KiB); the others were read back before",
        ),
        check(
            "git_fsck",
            "code.git: 12 new objects, 2 moved refs; full check in 6 days; 48213 objects, 47102 reachable from 68 refs; wiki.git: 0 new objects, 0 moved refs; full check in 6 days; 311 objects, 311 reachable from 1 refs",
        ),
        check(
            "metadata_valid",
            "every document parses and matches the manifest: 412 issues, 388 pull requests, 2911 comments, 704 reviews, 31 releases (58 assets), 27 labels, 9 milestones, 6 workflows, 143 attachments",
        ),
        check(
            "commit_count_match",
            "all 68 ref tips equal the source's; main holds 8421 commits at 3f9c2a1b, as the forge counts",
        ),
    ];
    Ok(TaskReport {
        worker_id: worker_id.to_string(),
        success: true,
        result: Some(TaskResult::Backup(Box::new(BackupResult {
            snapshot_id: Some(snapshot_id()?),
            size_bytes: 187_340_112 + added_bytes,
            added_bytes,
            counts,
            bytes_received: 52_117,
            master_key: None,
            components,
            verification: Some(VerifyResult {
                checks,
                packs_read: 1,
                bytes_read: 42_291,
                ..Default::default()
            }),
        }))),
        ..Default::default()
    })
}

/// What the real path leaves in the store for one repository and one scheduled backup.
struct Templates {
    org: OrgRecord,
    repo: RepoRecord,
    task: TaskRecord,
    backup: BackupRecord,
}

/// Runs the template repository through the real path (see the module documentation).
async fn templates(dir: &Path) -> Result<Templates> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let core = Coordinator::new(
        CoordinatorParts {
            store: Store::new(Arc::new(MemoryKv::new())),
            clock: Arc::new(SystemClock),
            storage_config: StorageConfig::fs(dir.join("storage").display().to_string()),
            master: MasterKey::generate(),
            timing: Timing::new(Duration::from_secs(5))?,
            max_attempts: 3,
        },
        tx,
    )
    .await?;
    let org = core
        .registry
        .add_org("msp-customer-0000", Provider::Git)
        .await?;
    let name = "msp-customer-0000/service-repository-000000";
    core.registry
        .add_repo(
            name,
            "https://github.com/msp-customer-0000/service-repository-000000.git",
            None,
        )
        .await?;
    let repo = core
        .store
        .repo_by_name(&org.id, "service-repository-000000")
        .await?
        .context("the template repository")?;
    let worker = core
        .fleet
        .register_worker(WorkerHello {
            name: "template-worker".into(),
            slots: 1,
            previous_id: String::new(),
            held: Vec::new(),
            identity: JoinIdentity::bootstrap(),
        })
        .await
        .worker_id;
    let mut last = None;
    // Two backups: the second has a parent, so its size_match compares with a previous size.
    for added in [187_340_112, 19_811] {
        let b = core
            .backups
            .enqueue_backup(
                &repo,
                BackupType::Incremental,
                Trigger::Schedule,
                PRIORITY_SCHEDULED,
            )
            .await?;
        let leased = core
            .queue
            .acquire(&worker, HashSet::new(), Duration::from_secs(30))
            .await?
            .context("the template backup was not leased")?;
        core.queue
            .complete(&leased.lease, &github_report(&worker, added)?)
            .await?;
        last = Some(b);
    }
    let b = last.context("no template backup")?;
    let backup = core
        .store
        .backup(&repo.id, &b.id)
        .await?
        .context("the template backup record")?;
    if backup.status != repovault_coordinator::model::Status::Completed {
        bail!("the template backup ended {:?}", backup.status);
    }
    if !core.store.catalog_pending(Some(&repo.id)).await?.is_empty() {
        bail!("the template backup's catalog object was not written");
    }
    let task = core
        .store
        .task(&backup.task_id)
        .await?
        .context("the template task record")?;
    let repo = core.store.repo(&repo.id).await?.context("the repository")?;
    core.stopping.cancel();
    Ok(Templates {
        org,
        repo,
        task,
        backup,
    })
}

/// One simulated repository's state between rounds.
struct Repo {
    record: RepoRecord,
    stats: RepoStats,
    schedule: ScheduleState,
    /// Its backup records in the store, oldest first.
    recent: VecDeque<repovault_common::domain::BackupId>,
    /// Its task records in the store, oldest first.
    tasks: VecDeque<repovault_common::domain::TaskId>,
}

/// How many task records an hourly-backed-up repository holds at most: a record goes between
/// `KEEP` and `KEEP + EVERY` after its task ended, so the tasks of the last
/// `1 + (KEEP + EVERY) / 1 h` hours are still there (1 with the coordinator's constants: the
/// current one).
fn tasks_kept() -> usize {
    use repovault_coordinator::tasks::task_history::{EVERY, KEEP};
    1 + usize::try_from((KEEP + EVERY).as_secs() / 3600).unwrap_or(0)
}

/// Organisations and repositories, each cloned from the templates with fresh ids and names.
async fn seed_repos(store: &Store, t: &Templates, n: usize, base: i64) -> Result<Vec<Repo>> {
    let mut repos = Vec::with_capacity(n);
    let orgs = n.div_ceil(REPOS_PER_ORG);
    for o in 0..orgs {
        let mut org = t.org.clone();
        org.id = ids::new_org_id();
        org.name = format!("msp-customer-{o:04}");
        store.create_org(&org).await?;
        let in_org = REPOS_PER_ORG.min(n - o * REPOS_PER_ORG);
        for chunk in (0..in_org).collect::<Vec<_>>().chunks(REPOS_PER_TXN) {
            let mut batch = Batch::default();
            for &i in chunk {
                let mut r = t.repo.clone();
                r.id = ids::new_repo_id();
                r.org_id = org.id.clone();
                r.org_name = org.name.clone();
                r.name = format!("service-repository-{:06}", o * REPOS_PER_ORG + i);
                r.url = format!("https://github.com/{}/{}.git", org.name, r.name);
                // A GitHub repository's id (nine digits today).
                r.forge_id = Some(400_000_000 + (o * REPOS_PER_ORG + i) as u64);
                r.created_at_ms = base;
                let maintenance = MaintenanceRecord {
                    last_prune_at_ms: Some(base),
                    last_readback_at_ms: Some(base),
                    ..Default::default()
                };
                batch
                    .repo(&r)
                    .repo_name(&org.id, &r.name, &r.id)
                    .maintenance(&r.id, &maintenance);
                repos.push(Repo {
                    record: r,
                    stats: RepoStats::default(),
                    schedule: ScheduleState::default(),
                    recent: VecDeque::new(),
                    tasks: VecDeque::new(),
                });
            }
            store.apply(batch).await?;
        }
    }
    Ok(repos)
}

/// One hourly backup of every repository, at `at` (see the module documentation).
async fn round(
    store: &Store,
    t: &Templates,
    repos: &mut [Repo],
    at: i64,
    seq: &mut u64,
) -> Result<()> {
    let mut inflight = tokio::task::JoinSet::new();
    for chunk in repos.chunks_mut(REPOS_PER_TXN) {
        let mut batch = Batch::default();
        for r in chunk.iter_mut() {
            let id = ids::new_backup_id(&r.record.id, at);
            let mut task = t.task.clone();
            task.id = ids::new_task_id();
            task.org_id = r.record.org_id.clone();
            task.repo_id = r.record.id.clone();
            task.subject_id = id.to_string();
            task.idempotency_key = t
                .task
                .idempotency_key
                .replace(t.repo.id.as_str(), r.record.id.as_str());
            task.enqueued_at_ms = at;
            *seq += 1;
            task.seq = *seq;
            let mut b = t.backup.clone();
            b.id = id.clone();
            b.org_id = r.record.org_id.clone();
            b.repo_id = r.record.id.clone();
            b.org_name = r.record.org_name.clone();
            b.repo_name = r.record.name.clone();
            b.task_id = task.id.clone();
            b.parent_snapshot_id = r.stats.last_snapshot_id.clone();
            b.snapshot_id = Some(snapshot_id()?);
            // The template's durations, moved to this hour.
            let shift = at - t.backup.created_at_ms;
            b.created_at_ms = at;
            b.started_at_ms = t.backup.started_at_ms.map(|s| s + shift);
            b.finished_at_ms = t.backup.finished_at_ms.map(|s| s + shift);
            if let Some(v) = b.verification.as_mut() {
                v.finished_at_ms = v.finished_at_ms.map(|s| s + shift);
            }
            r.stats.record(&b);
            r.schedule.last_slot_ms = Some(at);
            batch
                .task(&task)
                .backup(&b)
                .stats(&r.record.id, &r.stats)
                .schedule_state(&r.record.id, &r.schedule);
            r.tasks.push_back(task.id.clone());
            if r.tasks.len() > tasks_kept()
                && let Some(old) = r.tasks.pop_front()
            {
                batch.delete_task(&old);
            }
            r.recent.push_back(id);
            if r.recent.len() > RECENT_BACKUPS
                && let Some(old) = r.recent.pop_front()
            {
                batch.delete_backup(&r.record.id, &old);
            }
        }
        while inflight.len() >= IN_FLIGHT {
            if let Some(done) = inflight.join_next().await {
                done??;
            }
        }
        let store = store.clone();
        inflight.spawn(async move { store.apply(batch).await });
    }
    while let Some(done) = inflight.join_next().await {
        done??;
    }
    Ok(())
}

/// Live keys and their bytes (key with the namespace, and value), by record kind.
#[derive(Default, Clone)]
struct Kind {
    keys: u64,
    key_bytes: u64,
    value_bytes: u64,
}

async fn live_bytes(kv: &EtcdKv) -> Result<BTreeMap<String, Kind>> {
    const PAGE: usize = 10_000;
    let mut out: BTreeMap<String, Kind> = BTreeMap::new();
    let mut from = Vec::new();
    loop {
        let page = kv
            .range(KeyRange::starting_at(from.clone()), Some(PAGE))
            .await?;
        for k in &page {
            let text = String::from_utf8_lossy(&k.key);
            let kind = match text.split_once('/') {
                Some((p, _)) => format!("{p}/"),
                None => text.to_string(),
            };
            let e = out.entry(kind).or_default();
            e.keys += 1;
            e.key_bytes += (NAMESPACE.len() + k.key.len()) as u64;
            e.value_bytes += k.value.len() as u64;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => {
                from = last.key.clone();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// The database at one point: its size after compaction and after defragmentation, and what
/// is live in it.
struct Point {
    backups: usize,
    compacted: u64,
    defragmented: u64,
    kinds: BTreeMap<String, Kind>,
}

/// Called after a round's compaction.
async fn measure(etcd: &Etcd, kv: &EtcdKv, backups: usize) -> Result<Point> {
    let (_, compacted, _) = etcd.status()?;
    etcd.defrag()?;
    let (_, defragmented, _) = etcd.status()?;
    Ok(Point {
        backups,
        compacted,
        defragmented,
        kinds: live_bytes(kv).await?,
    })
}

fn gib(b: f64) -> String {
    format!("{:.2} GiB", b / GOAL_BYTES)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut repos_n = 100_000;
    parse_counts(USAGE, &mut [("--repos", &mut repos_n)])?;
    repovault_common::telemetry::init("warn", repovault_common::telemetry::LogFormat::Text);
    let steady = RECENT_BACKUPS + 2;
    let dir = tempfile::tempdir()?;

    let t0 = Instant::now();
    let t = templates(dir.path()).await?;
    let template_secs = t0.elapsed().as_secs_f64();

    let etcd = Etcd::start().await?;
    let kv = EtcdKv::connect(std::slice::from_ref(&etcd.endpoint), NAMESPACE).await?;
    let store = Store::new(Arc::new(kv.clone()));
    // Hourly slots from a whole hour.
    let base = (chrono::Utc::now().timestamp_millis() / HOUR_MS) * HOUR_MS;
    let t0 = Instant::now();
    let mut repos = seed_repos(&store, &t, repos_n, base).await?;
    eprintln!(
        "seeded {} repositories in {:.1} s",
        repos.len(),
        t0.elapsed().as_secs_f64()
    );

    let mut points = Vec::new();
    let mut seq = 0;
    let t0 = Instant::now();
    let mut writing = Duration::ZERO;
    for k in 1..=2 * steady {
        let w = Instant::now();
        if let Err(e) = round(&store, &t, &mut repos, base + k as i64 * HOUR_MS, &mut seq).await {
            if e.to_string().contains("database space exceeded") {
                let (_, size, _) = etcd.status()?;
                bail!(
                    "backup {k} of every repository passed etcd's quota (4 GiB, the deployment's): \
                     the database is {} (compacted after backup {}, not defragmented); \
                     run with fewer --repos to measure the figures per repository",
                    mib_f(size as f64),
                    k - 1
                );
            }
            return Err(e);
        }
        writing += w.elapsed();
        etcd.compact()?;
        eprintln!(
            "backup {k} of {} written for every repository ({:.1} s so far)",
            2 * steady,
            t0.elapsed().as_secs_f64()
        );
        if k == steady || k == 2 * steady {
            points.push(measure(&etcd, &kv, k).await?);
        }
    }
    let backups_written = (2 * steady * repos_n) as f64;

    let n = repos_n as f64;
    print_header("repovault-etcd-size-bench", 11, &[&Etcd::version()]);
    println!(
        "etcd:      one member, --quota-backend-bytes 4 GiB (the deployment's), --snapshot-count 10000; \
         compacted after every round, defragmented before each measurement; namespace {NAMESPACE:?}"
    );
    println!(
        "records:   the real path's for a template GitHub repository (made in {template_secs:.1} s): \
         task {} bytes, backup {} bytes, repository {} bytes (JSON)",
        serde_json::to_vec(&t.task)?.len(),
        serde_json::to_vec(&t.backup)?.len(),
        serde_json::to_vec(&t.repo)?.len()
    );
    println!(
        "written:   {repos_n} repositories in {} organisation(s); {} hourly backups each \
         ({:.0} backups/s written); RECENT_BACKUPS = {RECENT_BACKUPS}, steady state S = {steady}\n",
        repos_n.div_ceil(REPOS_PER_ORG),
        2 * steady,
        backups_written / writing.as_secs_f64()
    );
    let total = |p: &Point| {
        p.kinds
            .values()
            .map(|k| k.key_bytes + k.value_bytes)
            .sum::<u64>()
    };
    let keys = |p: &Point| p.kinds.values().map(|k| k.keys).sum::<u64>();
    println!("{:<44}{:>18}{:>18}", "", "after S", "after 2S");
    println!(
        "{:<44}{:>18}{:>18}",
        "backups per repository", points[0].backups, points[1].backups
    );
    let row = |name: &str, f: &dyn Fn(&Point) -> String| {
        println!("{name:<44}{:>18}{:>18}", f(&points[0]), f(&points[1]));
    };
    row("database after compaction (dbSize)", &|p| {
        mib_f(p.compacted as f64)
    });
    row("database after defragmentation (dbSize)", &|p| {
        mib_f(p.defragmented as f64)
    });
    row("  per repository", &|p| {
        format!("{:.0} B", p.defragmented as f64 / n)
    });
    row("  scaled to 100,000 repositories", &|p| {
        gib(p.defragmented as f64 * 100_000.0 / n)
    });
    row("live keys", &|p| keys(p).to_string());
    row("live key + value bytes", &|p| mib_f(total(p) as f64));
    row("database / live bytes", &|p| {
        format!("{:.2}", p.defragmented as f64 / total(p) as f64)
    });

    println!("\nwhere the bytes go after 2S (live keys and values, namespace included)");
    println!(
        "{:<20}{:>12}{:>16}{:>14}{:>10}{:>18}",
        "kind", "keys", "avg bytes/key", "total", "share", "per repository"
    );
    let all = total(&points[1]) as f64;
    let mut kinds: Vec<(&String, &Kind)> = points[1].kinds.iter().collect();
    kinds.sort_by_key(|(_, k)| std::cmp::Reverse(k.key_bytes + k.value_bytes));
    for (name, k) in kinds {
        let bytes = (k.key_bytes + k.value_bytes) as f64;
        println!(
            "{name:<20}{:>12}{:>16.0}{:>14}{:>9.1}%{:>18}",
            k.keys,
            bytes / k.keys as f64,
            mib_f(bytes),
            100.0 * bytes / all,
            format!("{:.0} B", bytes / n)
        );
    }
    let grew = |p: &Point, kind: &str| p.kinds.get(kind).map_or(0, |k| k.keys);
    println!(
        "\nkeys per repository, after S and 2S: task/ {:.1} and {:.1}, backup/ {:.1} and {:.1}",
        grew(&points[0], "task/") as f64 / n,
        grew(&points[1], "task/") as f64 / n,
        grew(&points[0], "backup/") as f64 / n,
        grew(&points[1], "backup/") as f64 / n
    );

    println!(
        "\nthe backup record ({} bytes of JSON), by field (bytes of \"field\":value)",
        serde_json::to_vec(&t.backup)?.len()
    );
    for (field, bytes) in field_sizes(&t.backup)?.into_iter().take(8) {
        println!("  {field:<22}{bytes:>6}");
    }

    let (s1, s2) = (points[0].defragmented as f64, points[1].defragmented as f64);
    let per_backup = ((s2 - s1) / (steady as f64 * n)).max(0.0);
    let projected = s2 + per_backup * n * (GOAL_BACKUPS - 2 * steady) as f64;
    let live_per_backup =
        ((total(&points[1]) as f64 - total(&points[0]) as f64) / (steady as f64 * n)).max(0.0);
    println!("\nextrapolation to {GOAL_BACKUPS} hourly backups (90 days) per repository");
    println!(
        "  growth from S to 2S: {} in the database, {:.0} bytes per backup ({:.0} live key + value bytes)",
        mib_f(s2 - s1),
        per_backup,
        live_per_backup
    );
    println!(
        "  projected: {} + {:.0} B x {repos_n} x ({GOAL_BACKUPS} - {}) = {} for {repos_n} repositories",
        mib_f(s2),
        per_backup,
        2 * steady,
        gib(projected)
    );
    println!(
        "  per 100,000 repositories: {}   (goal < 1 GiB: {})",
        gib(projected * 100_000.0 / n),
        if projected * 100_000.0 / n < GOAL_BYTES {
            "goal met"
        } else {
            "GOAL MISSED"
        }
    );
    Ok(())
}

/// The bytes of each top-level field of `value`'s JSON (`"field":value,`), largest first.
fn field_sizes<T: serde::Serialize>(value: &T) -> Result<Vec<(String, usize)>> {
    let v = serde_json::to_value(value)?;
    let obj = v.as_object().context("a JSON object")?;
    let mut sizes: Vec<(String, usize)> = obj
        .iter()
        .map(|(k, v)| Ok((k.clone(), k.len() + 4 + serde_json::to_vec(v)?.len())))
        .collect::<Result<_>>()?;
    sizes.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    Ok(sizes)
}
