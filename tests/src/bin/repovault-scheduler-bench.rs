//! The scheduler benchmark (README, "Performance"): the materialiser over 100,000 repositories
//! in simulated organisations on the embedded store (redb), no git work. Prints the time to plan
//! one tick (nothing due, and with a full tick of enqueues), peak memory (VmHWM) and queue
//! operations per second. Goal: a tick under 1 s and under 500 MB. Run:
//! `cargo run --release -p repovault-tests --bin repovault-scheduler-bench -- [--repos 100000] [--orgs 100]`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use repovault_common::crypto::MasterKey;
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;
use repovault_coordinator::clock::{ManualClock, SystemClock};
use repovault_coordinator::coordinator::{Coordinator, CoordinatorParts};
use repovault_coordinator::ids;
use repovault_coordinator::kv::RedbKv;
use repovault_coordinator::model::{RepoRecord, ScheduleState};
use repovault_coordinator::schedule::schedule_runs::MAX_ENQUEUE_PER_TICK;
use repovault_coordinator::schedule::{Plan, Schedule};
use repovault_coordinator::store::{Batch, Store};
use repovault_coordinator::tasks::queue_order::PRIORITY_SCHEDULED;

/// Repositories per store transaction while seeding (three writes each, under the store's 128).
const SEED_CHUNK: usize = 40;

/// Schedules the organisations take in turn.
const SCHEDULES: &[(&str, &str)] = &[
    ("hourly", "UTC"),
    ("daily", "Europe/Berlin"),
    ("0 2 * * *", "America/New_York"),
    ("weekly", "UTC"),
    ("*/30 * * * *", "Asia/Kolkata"),
];

fn arg(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context(format!("{name} needs a value"))?
            .parse()
            .context(format!("{name} is not a number")),
        None => Ok(default),
    }
}

/// Peak resident memory (VmHWM) in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let repos = arg("--repos", 100_000)?;
    let orgs = arg("--orgs", 100)?.max(1);
    let dir = tempfile::tempdir()?;
    let kv = Arc::new(RedbKv::open(dir.path().join("state.redb")).await?);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let core = Coordinator::new(
        CoordinatorParts {
            store: Store::new(kv),
            clock: Arc::new(SystemClock),
            storage_config: StorageConfig::fs(dir.path().join("storage").display().to_string()),
            master: MasterKey::generate(),
            timing: Timing::new(Duration::from_secs(5))?,
            max_attempts: 3,
        },
        tx,
    )
    .await?;
    // An hour start: hourly, daily (UTC) and weekly slots begin here; at the slot start no
    // repository's offset has come, so the first tick only plans.
    let base = (chrono::Utc::now().timestamp_millis() / 86_400_000 + 2) * 86_400_000;
    let clock = Arc::new(ManualClock::new(base));
    core.schedules.set_clock(clock.clone());

    let t = Instant::now();
    let per_org = repos.div_ceil(orgs);
    let mut made = 0;
    for o in 0..orgs {
        let name = format!("org{o:04}");
        let org = core
            .registry
            .add_org(&name, repovault_common::domain::Provider::Git)
            .await?;
        let (sched, tz) = SCHEDULES[o % SCHEDULES.len()];
        core.schedules
            .set_org_schedule(&name, Some(sched), Some(tz), None, None)
            .await?;
        // The steady state: every repository has had its current slot materialised.
        let state = ScheduleState {
            last_slot_ms: Plan::new(&Schedule::parse(sched)?, tz)?.prev_slot(base),
            skipped_slots: Vec::new(),
        };
        let n = per_org.min(repos - made);
        for chunk in (0..n).collect::<Vec<_>>().chunks(SEED_CHUNK) {
            let mut batch = Batch::default();
            for &i in chunk {
                let r = RepoRecord {
                    id: ids::new_repo_id(),
                    org_id: org.id.clone(),
                    org_name: org.name.clone(),
                    name: format!("repo{i:06}"),
                    url: format!("file:///src/{name}/repo{i:06}"),
                    sealed_token: None,
                    sealed_master_key: None,
                    created_at_ms: base,
                    forge_id: None,
                    archived: false,
                    deleted: false,
                    schedule: None,
                    on_push: None,
                };
                batch
                    .repo(&r)
                    .repo_name(&org.id, &r.name, &r.id)
                    .schedule_state(&r.id, &state);
            }
            core.store.apply(batch).await?;
        }
        made += n;
    }
    println!(
        "seeded {made} repositories in {orgs} organisations in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 1. Planning only.
    let mut plan_ms = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = core.schedules.materialise_schedules().await?;
        plan_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(r.scheduled == made && r.enqueued == 0, "{r:?}");
    }
    println!(
        "tick, planning only ({made} scheduled repositories): {:.0} ms (runs: {})",
        plan_ms.iter().copied().fold(f64::MAX, f64::min),
        plan_ms
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 2. Full ticks: 59 minutes on, every hourly and half-hourly repository is due; each tick
    // enqueues at most MAX_ENQUEUE_PER_TICK.
    clock.set(base + 59 * 60_000);
    let mut enq = 0;
    let mut enq_time = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        let r = core.schedules.materialise_schedules().await?;
        let e = t.elapsed();
        worst = worst.max(e);
        enq += r.enqueued;
        enq_time += e;
        println!(
            "tick with enqueues: {:.0} ms ({} enqueued, {} deferred to later ticks)",
            e.as_secs_f64() * 1000.0,
            r.enqueued,
            r.deferred
        );
        clock.advance(Duration::from_secs(10));
    }
    println!(
        "materialised runs per second: {:.0}; cap {} per tick",
        enq as f64 / enq_time.as_secs_f64(),
        MAX_ENQUEUE_PER_TICK
    );

    // 3. Queue operations on the embedded store: single enqueues (one store commit each, as
    // manual backups are), and depth queries.
    let sample: Vec<RepoRecord> = core
        .store
        .repos()
        .await?
        .into_iter()
        .rev()
        .take(2_000)
        .collect();
    let t = Instant::now();
    for r in &sample {
        core.backups
            .enqueue_backup(
                r,
                repovault_common::domain::BackupType::Incremental,
                repovault_common::domain::Trigger::Schedule,
                PRIORITY_SCHEDULED,
            )
            .await?;
    }
    let e = t.elapsed();
    println!(
        "enqueue: {:.0} operations/s ({} in {:.2} s)",
        sample.len() as f64 / e.as_secs_f64(),
        sample.len(),
        e.as_secs_f64()
    );
    let t = Instant::now();
    let mut depth = 0;
    for _ in 0..100 {
        depth = core.queue.queue_depths().await.0.values().sum::<u64>();
    }
    println!(
        "queue depth ({depth} pending): {:.2} ms per query",
        t.elapsed().as_secs_f64() * 10.0
    );
    let peak = peak_rss_mb();
    println!("peak memory (VmHWM): {peak:.0} MB");
    let best_plan = plan_ms.iter().copied().fold(f64::MAX, f64::min);
    println!(
        "goal: tick < 1000 ms ({}), < 500 MB ({})",
        if best_plan < 1000.0 && worst < Duration::from_secs(1) {
            "met"
        } else {
            "missed"
        },
        if peak < 500.0 { "met" } else { "missed" }
    );
    core.stopping.cancel();
    Ok(())
}
