//! The control-plane benchmark (README, "Performance"): leases granted and completed per second
//! with 50 workers, side by side on the embedded store (redb) and on etcd (3 members on
//! loopback), and the time a coordinator group takes to replace a SIGKILLed leader.
//!
//! ```text
//! cargo build --release -p repovault-tests --bin repovault-control-plane-bench --bin repovault-test-process
//! target/release/repovault-control-plane-bench [--tasks 2000] [--workers 50] [--runs 3]
//! ```
//!
//! **The task kind.** The read-back rotation's verify tasks (`VerifyMode::Rotation`,
//! `coordinator/src/tasks/kinds/verify_kind.rs`): they do no git work, need no snapshot
//! repository at lease time, and their completion runs the kind's whole commit path (the task's
//! commit under the queue lock, then the rotation's visit record, `finish_rotation`). A backup
//! would look closer to the real load, but a backup's first lease of a repository waits for its
//! snapshot repository to be created (restic's key derivation, one repository at a time:
//! `catalog/snapshot_repos.rs`), and a failed backup writes its catalog object to storage and
//! wakes the forget pass: the figure would measure storage, not the control plane. `--tasks N`
//! repositories are seeded in the store with a successful backup recorded in their stats (the
//! rotation visits only those), and each run queues one rotation task per repository through
//! the real rotation pass (`VerifyRuns::run_rotation_once`, its concurrency set to N, at a time
//! a rotation period after the last visit). Each simulated worker completes its lease at once
//! with success and a visit that found nothing due (no pack read), as a worker does for a
//! repository whose packs are all younger than the read-back age.
//!
//! **The workers** are `--workers` gRPC clients of the worker service in this process, each on
//! its own connection with the coordinator's join token: register, heartbeat every interval the
//! coordinator dictates (naming the lease they hold), acquire (one slot), complete. The clock
//! starts when every worker is registered and every task is queued, and stops at the last
//! completion.
//!
//! **The stores.** redb: a coordinator in this process (`server::start`, as `repovault
//! standalone` builds it) on a `RedbKv` in a temporary directory (commits are durable:
//! `Durability::Immediate`). etcd: three members on loopback (`EtcdCluster`, etcd's heartbeat
//! 50 ms and election 500 ms), and the same coordinator on the store an elected leader uses:
//! this process wins a real campaign (`EtcdElection`, election TTL 5 s, its lease kept alive)
//! and wraps the `EtcdKv` with `fenced` as `coordinator_group::run` does, so every transaction
//! carries the fence's compare.
//!
//! **What bounds it** (printed as measured lines, and argued in the README): a lease and a
//! completion each hold the queue lock (`tasks/lifecycle.rs`) from their choice to the staging
//! of their transaction; the commit is awaited after the lock is released and shares a backend
//! transaction with the others staged meanwhile (group commit, `kv/group_commit.rs`). The
//! choice looks at one task per organisation and priority (`tasks/lease_choice.rs`), and the
//! repository and organisation a lease reads come from the store's memory once read or listed
//! (`kv/read_cache.rs`; the rotation pass lists them). What reaches the backend is counted
//! below the committer: reads and transactions per task. The workers run on a runtime of their
//! own whose threads are named `bench-workers`, so this process's CPU per task is split
//! between the coordinator (every other thread) and the simulated fleet; the etcd members' CPU
//! is their processes'. The bench also measures the store alone with a value the size of a
//! task record: one reader, one writer, and `--workers` writers at once.
//!
//! **Failover.** Two `repovault coordinator --config` processes (`CoordinatorGroup`, the tests
//! crate's `repovault-test-process` beside this binary, heartbeat 5 s: the default) on the same
//! etcd cluster; the leader is SIGKILLed and the clock runs until the other answers an admin
//! call (`ListWorkers`); the killed one is started again as a follower before the next run.
//! Its bound: the election lease's TTL (5 s, `ElectionTiming::DEFAULT_TTL`) that must lapse,
//! the follower's campaign poll (TTL/5), and the new leader's start-up (the queue read from
//! the store, listeners bound).

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use repovault_coordinator::ids;
use repovault_coordinator::kv::{EtcdKv, KvBackend, Op, Txn};
use repovault_coordinator::leadership::etcd_election::{EtcdElection, LEADER_KEY};
use repovault_coordinator::leadership::{
    Election as _, ElectionTiming, LeaderRecord, LeaderView, Term,
};
use repovault_coordinator::model::{RepoRecord, RepoStats};
use repovault_coordinator::server::CoordinatorHandle;
use repovault_coordinator::store::Batch;
use repovault_proto::v1 as pb;
use repovault_proto::v1::worker_service_client::WorkerServiceClient;
use repovault_tests::bench::{median, parse_counts, print_header};
use repovault_tests::coordinator_group::CoordinatorGroup;
use repovault_tests::counting_kv::CountingKv;
use repovault_tests::etcd_cluster::EtcdCluster;
use repovault_tests::proc_cpu::{children_cpu, threads_cpu};

const USAGE: &str = "usage: repovault-control-plane-bench [--tasks N] [--workers W] [--runs R]";

/// The coordinator's default heartbeat interval (`heartbeat_interval` in its configuration):
/// the lease TTL (3 heartbeats + 1 s) and the workers' heartbeat follow from it.
const HEARTBEAT: &str = "5s";

/// Repositories per seeding transaction: three writes each (record, name index, stats), under
/// the store's 127 operations per transaction.
const SEED_CHUNK: usize = 40;

/// Each rotation pass runs this much later than the one before (the first this much after the
/// seeded backups), so that every repository is due again: more than the rotation period
/// (`verification.rotation_every`, 7 days by default).
const ROTATION_STEP_MS: i64 = 8 * 86_400_000;

/// Sequential commits timed for the one-writer figure, and commits per writer for the
/// concurrent one: enough for a stable median in a second or two on either store.
const PROBE_SERIAL: usize = 200;
const PROBE_PER_WRITER: usize = 20;

/// The goals of the issue (leases per second), and the failover bound.
const GOAL_REDB: f64 = 5_000.0;
const GOAL_ETCD: f64 = 1_000.0;
const GOAL_FAILOVER: Duration = Duration::from_secs(10);

/// How long a failover may take before the bench gives up: three times the goal.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one throughput run may take before the bench gives up: 60 s plus 100 ms a task,
/// ten times the slowest rate seen here (etcd on a loaded machine).
fn run_timeout(tasks: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(100) * tasks as u32
}

struct Args {
    tasks: usize,
    workers: usize,
    runs: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        tasks: 2_000,
        workers: 50,
        runs: 3,
    };
    parse_counts(
        USAGE,
        &mut [
            ("--tasks", &mut a.tasks),
            ("--workers", &mut a.workers),
            ("--runs", &mut a.runs),
        ],
    )?;
    Ok(a)
}

/// The name of the simulated workers' threads (their own runtime: [`fleet_runtime`]).
const FLEET_THREADS: &str = "bench-workers";

static FLEET: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The simulated workers' runtime, apart from the coordinator's so that its CPU is counted
/// apart: two threads, as many as the machine's cores the coordinator's runtime has here.
fn fleet_runtime() -> Result<&'static tokio::runtime::Handle> {
    if FLEET.get().is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(FLEET_THREADS)
            .enable_all()
            .build()?;
        // Never dropped: a runtime may not be dropped inside another's async context.
        let _ = FLEET.set(rt);
    }
    Ok(FLEET.get().context("the workers' runtime")?.handle())
}

/// One store's coordinator, and what this bench needs of it.
struct Side {
    label: &'static str,
    handle: CoordinatorHandle,
    /// The coordinator's store (for etcd: the fenced one it runs on).
    kv: Arc<dyn KvBackend>,
    /// The same store as the coordinator sees it, counting what reaches it.
    counted: Arc<CountingKv>,
    /// The etcd term this coordinator leads under (resigned at the end).
    term: Option<Term>,
    stop_campaign: CancellationToken,
    /// The side's fleet, registered once and heartbeating until the end (between runs too, as
    /// a connected fleet does); `None` while a run has them.
    workers: Vec<Option<Worker>>,
    stop_heartbeats: CancellationToken,
    _dir: tempfile::TempDir,
}

/// What one throughput run measured.
#[derive(Default, Clone)]
struct RunFigures {
    leases_per_s: f64,
    completions_per_s: f64,
    acquire_ms: f64,
    complete_ms: f64,
    enqueue_per_s: f64,
    /// CPU per task of the coordinator, of the simulated workers and of the etcd members.
    coordinator_cpu_ms: f64,
    workers_cpu_ms: f64,
    etcd_cpu_ms: f64,
    /// Backend reads and transactions per task (below the group committer).
    reads_per_task: f64,
    txns_per_task: f64,
}

/// A coordinator in this process on `kv` (`None`: redb in its data directory), with the
/// rotation pass left to this bench and no drills, and its fleet of `workers` registered.
async fn start_side(
    label: &'static str,
    kv: Option<(Arc<dyn KvBackend>, Term, CancellationToken)>,
    tasks: usize,
    workers: usize,
) -> Result<Side> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut settings =
        repovault_cli::standalone_settings(&data, "127.0.0.1:0".parse()?, None, HEARTBEAT).await?;
    // Every repository's rotation task may be queued at once; the coordinator's own pass (its
    // first tick is at start, when nothing is seeded) does not run again during the bench.
    settings.verification.rotation_concurrency = tasks;
    settings.verification.rotation_interval = Duration::from_secs(86_400);
    settings.verification.default_drill = None;
    let (term, stop_campaign) = match kv {
        Some((kv, term, stop)) => {
            settings.kv = kv;
            (Some(term), stop)
        }
        None => (None, CancellationToken::new()),
    };
    let kv = settings.kv.clone();
    let counted = CountingKv::new(kv.clone());
    settings.kv = counted.clone();
    let join_token = settings.join_token.expose().to_string();
    let handle = repovault_coordinator::server::start(settings).await?;
    let url = handle.url();
    let stop_heartbeats = CancellationToken::new();
    let mut fleet = Vec::with_capacity(workers);
    for i in 0..workers {
        let (u, t) = (url.clone(), join_token.clone());
        let name = format!("bench-{label}-{i}");
        let w = fleet_runtime()?
            .spawn(async move { register(&u, &t, name).await })
            .await??;
        fleet_runtime()?.spawn(heartbeats(
            w.client.clone(),
            w.id.clone(),
            w.heartbeat,
            w.held.clone(),
            stop_heartbeats.clone(),
        ));
        fleet.push(Some(w));
    }
    Ok(Side {
        label,
        handle,
        kv,
        counted,
        term,
        stop_campaign,
        workers: fleet,
        stop_heartbeats,
        _dir: dir,
    })
}

/// Wins a campaign on `etcd` and answers the fenced store the leader's coordinator runs on.
async fn elected(etcd: &EtcdKv) -> Result<(Arc<dyn KvBackend>, Term, CancellationToken)> {
    let election = EtcdElection::new(
        etcd.clone(),
        ElectionTiming {
            ttl: ElectionTiming::DEFAULT_TTL,
        },
    );
    let me = LeaderRecord {
        name: "control-plane-bench".into(),
        grpc_url: "http://127.0.0.1:0".into(),
    };
    let stop = CancellationToken::new();
    let term = election
        .campaign(&me, &LeaderView::default(), &stop)
        .await
        .context("the campaign ended without a term")?;
    let fenced = etcd.fenced(LEADER_KEY, term.term, term.lost.clone());
    Ok((Arc::new(fenced), term, stop))
}

/// `n` repositories, each with a successful backup in its stats (the rotation visits only
/// those), in one organisation.
async fn seed(side: &Side, n: usize) -> Result<Duration> {
    let t = Instant::now();
    let core = &side.handle.core;
    let org = core
        .registry
        .add_org("bench", repovault_common::domain::Provider::Git)
        .await?;
    let now = core.now_ms();
    for chunk in (0..n).collect::<Vec<_>>().chunks(SEED_CHUNK) {
        let mut batch = Batch::default();
        for &i in chunk {
            let r = RepoRecord {
                id: ids::new_repo_id(),
                org_id: org.id.clone(),
                org_name: org.name.clone(),
                name: format!("repo{i:06}"),
                url: format!("git://127.0.0.1/repo{i:06}.git"),
                sealed_token: None,
                sealed_master_key: None,
                created_at_ms: now,
                forge_id: None,
                archived: false,
                deleted: false,
                schedule: None,
                on_push: None,
            };
            let stats = RepoStats {
                last_success_id: Some(ids::new_backup_id(&r.id, now)),
                last_success_at_ms: Some(now),
                first_success_at_ms: Some(now),
                completed_total: 1,
                ..Default::default()
            };
            batch
                .repo(&r)
                .repo_name(&org.id, &r.name, &r.id)
                .stats(&r.id, &stats);
        }
        core.store.apply(batch).await?;
    }
    Ok(t.elapsed())
}

/// The store alone, with one `value`-sized key: the median of one reader's sequential reads
/// (ms), the median of one writer's sequential commits (ms), and the rate of `writers`
/// committing at once (per second).
struct Probe {
    read_ms: f64,
    commit_ms: f64,
    concurrent_per_s: f64,
}

async fn store_probe(kv: &Arc<dyn KvBackend>, value: usize, writers: usize) -> Result<Probe> {
    let body = vec![b'x'; value];
    let mut serial = Vec::with_capacity(PROBE_SERIAL);
    for i in 0..PROBE_SERIAL {
        let t = Instant::now();
        kv.txn(Txn::new().and_then(vec![Op::put(
            format!("bench-probe/serial/{i}"),
            body.clone(),
        )]))
        .await?;
        serial.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut reads = Vec::with_capacity(PROBE_SERIAL);
    for i in 0..PROBE_SERIAL {
        let t = Instant::now();
        kv.get(format!("bench-probe/serial/{i}").as_bytes())
            .await?
            .context("a probe key vanished")?;
        reads.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let t = Instant::now();
    let mut joins = Vec::with_capacity(writers);
    for w in 0..writers {
        let (kv, body) = (kv.clone(), body.clone());
        joins.push(tokio::spawn(async move {
            for i in 0..PROBE_PER_WRITER {
                kv.txn(Txn::new().and_then(vec![Op::put(
                    format!("bench-probe/concurrent/{w}/{i}"),
                    body.clone(),
                )]))
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for j in joins {
        j.await??;
    }
    let concurrent_per_s = (writers * PROBE_PER_WRITER) as f64 / t.elapsed().as_secs_f64();
    kv.delete_prefix(b"bench-probe/").await?;
    Ok(Probe {
        read_ms: median(reads.into_iter()),
        commit_ms: median(serial.into_iter()),
        concurrent_per_s,
    })
}

/// Sends the join token as the worker door expects it (`authorization: Bearer TOKEN`).
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Client = WorkerServiceClient<InterceptedService<Channel, Bearer>>;

/// A worker service client on a connection of its own, sending the join token.
async fn client(url: &str, token: &str) -> Result<Client> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let bearer = Bearer(format!("Bearer {token}").parse()?);
    Ok(WorkerServiceClient::with_interceptor(channel, bearer))
}

/// Counters the workers share during one run.
#[derive(Default)]
struct Tally {
    leases: AtomicUsize,
    completions: AtomicUsize,
    /// Microseconds from the start to the latest lease and completion.
    last_lease_us: AtomicU64,
    last_completion_us: AtomicU64,
    acquire_ms: Mutex<Vec<f64>>,
    complete_ms: Mutex<Vec<f64>>,
    done: tokio::sync::Notify,
}

struct Worker {
    client: Client,
    id: String,
    acquire_wait_ms: u64,
    heartbeat: Duration,
    held: Arc<Mutex<Option<pb::LeaseToken>>>,
}

async fn register(url: &str, token: &str, name: String) -> Result<Worker> {
    let mut client = client(url, token).await?;
    let r = client
        .register_worker(pb::RegisterWorkerRequest {
            protocol_version: repovault_proto::PROTOCOL_VERSION,
            name,
            slots: 1,
            capabilities: vec!["git".into()],
            previous_worker_id: String::new(),
            held: Vec::new(),
        })
        .await?
        .into_inner();
    let timing = r.timing.context("the registration's timing")?;
    Ok(Worker {
        client,
        id: r.worker_id,
        acquire_wait_ms: timing.acquire_wait_ms,
        heartbeat: Duration::from_millis(timing.heartbeat_interval_ms),
        held: Arc::new(Mutex::new(None)),
    })
}

/// Heartbeats naming the held lease, every interval the coordinator dictated, until `stop`.
async fn heartbeats(
    mut w: Client,
    id: String,
    every: Duration,
    held: Arc<Mutex<Option<pb::LeaseToken>>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let lease = held.lock().map(|h| h.clone()).unwrap_or_default();
        let _ = w
            .heartbeat(pb::HeartbeatRequest {
                worker_id: id.clone(),
                held: lease.into_iter().collect(),
                draining: false,
                free_slots: 0,
            })
            .await;
    }
}

/// Acquires and completes at once until `n` tasks were leased or `stop`.
async fn work(
    mut w: Worker,
    n: usize,
    start: Instant,
    tally: Arc<Tally>,
    stop: CancellationToken,
) -> Result<Worker> {
    loop {
        if tally.leases.load(Ordering::SeqCst) >= n {
            return Ok(w);
        }
        let t = Instant::now();
        let acquired = tokio::select! {
            _ = stop.cancelled() => return Ok(w),
            r = w.client.acquire_task(pb::AcquireTaskRequest {
                worker_id: w.id.clone(),
                free_slots: 1,
                wait_ms: w.acquire_wait_ms,
                cached_repo_ids: Vec::new(),
            }) => r?.into_inner(),
        };
        let Some(task) = acquired.task else {
            continue;
        };
        let took = t.elapsed();
        let lease = task.lease.context("a task without its lease")?;
        match &task.spec {
            Some(pb::task::Spec::Verify(v)) if v.mode == pb::VerifyMode::Rotation as i32 => {}
            other => bail!("leased something other than a rotation task: {other:?}"),
        }
        tally.leases.fetch_add(1, Ordering::SeqCst);
        tally
            .last_lease_us
            .fetch_max(start.elapsed().as_micros() as u64, Ordering::SeqCst);
        if let Ok(mut v) = tally.acquire_ms.lock() {
            v.push(took.as_secs_f64() * 1000.0);
        }
        if let Ok(mut h) = w.held.lock() {
            *h = Some(lease.clone());
        }
        let t = Instant::now();
        w.client
            .complete_task(pb::CompleteTaskRequest {
                worker_id: w.id.clone(),
                lease: Some(lease),
                success: true,
                result: Some(pb::complete_task_request::Result::Verify(
                    pb::VerifyResult::default(),
                )),
                ..Default::default()
            })
            .await?;
        let took = t.elapsed();
        if let Ok(mut h) = w.held.lock() {
            *h = None;
        }
        if let Ok(mut v) = tally.complete_ms.lock() {
            v.push(took.as_secs_f64() * 1000.0);
        }
        tally
            .last_completion_us
            .fetch_max(start.elapsed().as_micros() as u64, Ordering::SeqCst);
        if tally.completions.fetch_add(1, Ordering::SeqCst) + 1 == n {
            tally.done.notify_one();
        }
    }
}

/// One run on `side`: queue a rotation task per repository (pass `pass`), then let `workers`
/// lease and complete them all.
async fn run_once(side: &mut Side, tasks: usize, workers: usize, pass: i64) -> Result<RunFigures> {
    let core = &side.handle.core;
    let t = Instant::now();
    let queued = core
        .verification
        .run_rotation_once(core.now_ms() + (pass + 1) * ROTATION_STEP_MS)
        .await?;
    let enqueue = t.elapsed();
    if queued as usize != tasks {
        bail!(
            "{}: the rotation queued {queued} tasks, not {tasks}",
            side.label
        );
    }
    let ws: Vec<Worker> = side.workers.iter_mut().filter_map(Option::take).collect();
    if ws.len() != workers {
        bail!("{}: {} of {workers} workers at hand", side.label, ws.len());
    }
    let stop = CancellationToken::new();
    let tally = Arc::new(Tally::default());
    let (fleet0, coordinator0) = threads_cpu(FLEET_THREADS);
    let (etcd0, ops0) = (children_cpu("etcd"), side.counted.counts());
    let start = Instant::now();
    let done = tally.done.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    let mut joins = Vec::with_capacity(workers);
    for w in ws {
        joins.push(fleet_runtime()?.spawn(work(w, tasks, start, tally.clone(), stop.clone())));
    }
    let finished = tokio::time::timeout(run_timeout(tasks), &mut done).await;
    let (fleet1, coordinator1) = threads_cpu(FLEET_THREADS);
    let (etcd1, ops1) = (children_cpu("etcd"), side.counted.counts());
    stop.cancel();
    for (slot, j) in side.workers.iter_mut().zip(joins) {
        *slot = Some(j.await??);
    }
    if finished.is_err() {
        bail!(
            "{}: {} of {tasks} tasks completed within {:?}",
            side.label,
            tally.completions.load(Ordering::SeqCst),
            run_timeout(tasks)
        );
    }
    let leases = tally.leases.load(Ordering::SeqCst);
    if leases != tasks {
        bail!("{}: {leases} leases for {tasks} tasks", side.label);
    }
    let left = core.queue.queue_snapshot().await.len();
    if left != 0 {
        bail!("{}: {left} tasks still active after the run", side.label);
    }
    let secs = |us: &AtomicU64| us.load(Ordering::SeqCst) as f64 / 1e6;
    let per_task =
        |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64() * 1000.0 / tasks as f64;
    let ops_per_task = |a: u64, b: u64| b.saturating_sub(a) as f64 / tasks as f64;
    let med = |m: &Mutex<Vec<f64>>| {
        m.lock()
            .map(|v| median(v.iter().copied()))
            .unwrap_or(f64::NAN)
    };
    Ok(RunFigures {
        leases_per_s: tasks as f64 / secs(&tally.last_lease_us),
        completions_per_s: tasks as f64 / secs(&tally.last_completion_us),
        acquire_ms: med(&tally.acquire_ms),
        complete_ms: med(&tally.complete_ms),
        enqueue_per_s: tasks as f64 / enqueue.as_secs_f64(),
        coordinator_cpu_ms: per_task(coordinator0, coordinator1),
        workers_cpu_ms: per_task(fleet0, fleet1),
        etcd_cpu_ms: if side.term.is_some() {
            per_task(etcd0, etcd1)
        } else {
            f64::NAN
        },
        reads_per_task: ops_per_task(ops0.0, ops1.0),
        txns_per_task: ops_per_task(ops0.1, ops1.1),
    })
}

/// SIGKILLs the leader of a two-member group `runs` times; each time, how long until the other
/// answered an admin call.
async fn failovers(bin: &Path, etcd: &[String], runs: usize) -> Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let bin = bin.to_str().context("non-UTF-8 binary path")?;
    let mut group = CoordinatorGroup::configure(bin, dir.path(), etcd, 2, HEARTBEAT)?;
    group.start(0).await?;
    group.start(1).await?;
    let mut leader = None;
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    while leader.is_none() {
        for i in 0..2 {
            if group.role(i).await == Some(true) {
                leader = Some(i);
            }
        }
        if Instant::now() > deadline {
            bail!("no member of the group leads within {FAILOVER_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut leader = leader.unwrap_or(0);
    let mut took = Vec::with_capacity(runs);
    for r in 0..runs {
        let other = 1 - leader;
        let t = Instant::now();
        group.kill(leader).await?;
        group.wait_leading(other, FAILOVER_TIMEOUT).await?;
        took.push(t.elapsed());
        eprintln!(
            "failover {} of {runs}: {:.2} s",
            r + 1,
            t.elapsed().as_secs_f64()
        );
        group.start(leader).await?;
        leader = other;
    }
    Ok(took)
}

fn fmt_rate(x: f64) -> String {
    format!("{x:.0}")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    repovault_common::tls::install_crypto_provider();
    repovault_common::telemetry::init("warn", repovault_common::telemetry::LogFormat::Text);
    let bin = std::env::current_exe()?.with_file_name("repovault-test-process");
    if !bin.is_file() {
        bail!(
            "{} not found: build it beside this benchmark (cargo build [--release] -p repovault-tests --bin repovault-test-process)",
            bin.display()
        );
    }

    let cluster = EtcdCluster::start(3).await?;
    let etcd = EtcdKv::connect_with(&cluster.options("control-plane/")).await?;
    let mut sides = vec![
        start_side("redb", None, args.tasks, args.workers).await?,
        start_side(
            "etcd",
            Some(elected(&etcd).await?),
            args.tasks,
            args.workers,
        )
        .await?,
    ];

    let mut seeding = Vec::new();
    for s in &sides {
        seeding.push(seed(s, args.tasks).await?);
    }
    // A warm-up run on each store (not counted), which also leaves one rotation task's record
    // to size the commit probe's value by.
    for s in &mut sides {
        run_once(s, args.tasks, args.workers, 0).await?;
    }
    let record = {
        let tasks = sides[0].handle.core.store.tasks().await?;
        let task = tasks.first().context("no task record after the warm-up")?;
        serde_json::to_vec(task)?.len()
    };
    let mut probes = Vec::new();
    for s in &sides {
        probes.push(store_probe(&s.kv, record, args.workers).await?);
    }

    let mut figures: [Vec<RunFigures>; 2] = [Vec::new(), Vec::new()];
    for r in 0..args.runs {
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let f = run_once(&mut sides[i], args.tasks, args.workers, r as i64 + 1).await?;
            eprintln!(
                "run {} of {}, {}: {:.0} leases/s, {:.0} completions/s",
                r + 1,
                args.runs,
                sides[i].label,
                f.leases_per_s,
                f.completions_per_s
            );
            figures[i].push(f);
        }
    }

    let failover = failovers(&bin, &cluster.endpoints(), args.runs).await?;

    print_header("repovault-control-plane-bench", 10, &[]);
    println!(
        "task:     the read-back rotation's verify task, one per repository ({} repositories; \
         seeded in {:.1} s on redb, {:.1} s on etcd); completed at once: success, nothing due",
        args.tasks,
        seeding[0].as_secs_f64(),
        seeding[1].as_secs_f64()
    );
    println!(
        "workers:  {} gRPC clients of the worker service in this process, on a runtime of their own \
         (threads {FLEET_THREADS}), one connection and one slot each",
        args.workers
    );
    println!("redb:     coordinator in this process on RedbKv in a temporary directory");
    println!(
        "etcd:     3 members on loopback (heartbeat 50 ms, election 500 ms); coordinator in this \
         process on the fenced EtcdKv of a won campaign (election TTL 5 s)"
    );
    println!(
        "runs:     {} (alternating which store goes first; medians below)\n",
        args.runs
    );
    let m = |i: usize, f: fn(&RunFigures) -> f64| median(figures[i].iter().map(f));
    let row = |name: &str, f: fn(&RunFigures) -> f64, prec: usize| {
        let (a, b) = (m(0, f), m(1, f));
        println!(
            "{name:<48}{a:>12.prec$}{b:>12.prec$}{:>12.2}",
            b / a,
            prec = prec
        );
    };
    println!("{:<48}{:>12}{:>12}{:>12}", "", "redb", "etcd", "etcd/redb");
    row("leases granted per second", |f| f.leases_per_s, 0);
    row("completions per second", |f| f.completions_per_s, 0);
    let per_run = |i: usize| {
        figures[i]
            .iter()
            .map(|f| fmt_rate(f.leases_per_s))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  leases/s per run: redb {}; etcd {}",
        per_run(0),
        per_run(1)
    );
    row("acquire round trip, median (ms)", |f| f.acquire_ms, 2);
    row("complete round trip, median (ms)", |f| f.complete_ms, 2);
    row("rotation tasks queued per second", |f| f.enqueue_per_s, 0);
    row(
        "CPU of the coordinator per task (ms)",
        |f| f.coordinator_cpu_ms,
        3,
    );
    row(
        &format!("CPU of the {} workers per task (ms)", args.workers),
        |f| f.workers_cpu_ms,
        3,
    );
    println!(
        "{:<48}{:>12}{:>12.3}",
        "CPU of the etcd members per task (ms)",
        "-",
        m(1, |f| f.etcd_cpu_ms)
    );
    row(
        "store reads per task (below the committer)",
        |f| f.reads_per_task,
        2,
    );
    row(
        "store commits per task (below the committer)",
        |f| f.txns_per_task,
        2,
    );
    let probe_row = |name: String, f: fn(&Probe) -> f64, prec: usize| {
        let (a, b) = (f(&probes[0]), f(&probes[1]));
        println!(
            "{name:<48}{a:>12.prec$}{b:>12.prec$}{:>12.2}",
            b / a,
            prec = prec
        );
    };
    probe_row(
        format!("store read of {record} bytes, one reader (ms)"),
        |p| p.read_ms,
        2,
    );
    probe_row(
        format!("store commit of {record} bytes, one writer (ms)"),
        |p| p.commit_ms,
        2,
    );
    probe_row(
        format!("store commits per second, {} writers", args.workers),
        |p| p.concurrent_per_s,
        0,
    );
    let met = |ok: bool| if ok { "goal met" } else { "GOAL MISSED" };
    let (lr, le) = (m(0, |f| f.leases_per_s), m(1, |f| f.leases_per_s));
    println!("\ngoals (medians)");
    println!(
        "  redb leases per second:  {lr:>8.0}   (goal >= {GOAL_REDB:.0}: {})",
        met(lr >= GOAL_REDB)
    );
    println!(
        "  etcd leases per second:  {le:>8.0}   (goal >= {GOAL_ETCD:.0}: {})",
        met(le >= GOAL_ETCD)
    );
    println!("  etcd / redb:             {:>8.2}", le / lr);
    let secs: Vec<f64> = failover.iter().map(Duration::as_secs_f64).collect();
    let max = secs.iter().copied().fold(0.0, f64::max);
    println!(
        "\nleader failover (2 coordinator processes, heartbeat {HEARTBEAT}, election TTL {} s; \
         SIGKILL the leader, until the other answers ListWorkers)",
        ElectionTiming::DEFAULT_TTL.as_secs()
    );
    println!(
        "  per run (s): {}",
        secs.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  median {:.2} s, max {max:.2} s   (goal < {} s: {})",
        median(secs.iter().copied()),
        GOAL_FAILOVER.as_secs(),
        met(max < GOAL_FAILOVER.as_secs_f64())
    );

    for s in sides {
        s.stop_heartbeats.cancel();
        s.handle.shutdown().await;
        if let Some(term) = s.term {
            term.resign().await;
        }
        s.stop_campaign.cancel();
    }
    Ok(())
}
