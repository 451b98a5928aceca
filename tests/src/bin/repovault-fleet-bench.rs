//! A fleet of small unchanged repositories, side by side with the usual script: what an MSP's
//! hourly round costs when almost nothing changed.
//!
//! `--repos N` small repositories (a few commits each) are served by a local `git daemon`. A
//! coordinator process (`repovault standalone --workers 0`) and one worker process with two
//! slots back every repository up once (untimed); then each of `--rounds` rounds backs every
//! repository up again with nothing changed at the source, timed from the first enqueue to the
//! last completion, with the coordinator's CPU time over the round (`/proc/PID/stat`). The peer,
//! timed the same way: `git fetch --prune` into a mirror of each repository, two at a time
//! (the usual cron that keeps mirrors current, storing nothing).
//!
//! ```text
//! cargo build --release -p repovault-tests --bins
//! target/release/repovault-fleet-bench [--repos 500] [--rounds 3]
//! ```
//!
//! The coordinator runs from `repovault-test-process` beside this binary (the `repovault` entry
//! point built in the tests crate), so build the crate's binaries first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use repovault_proto::v1 as pb;
use repovault_tests::bench::{median, parse_counts, print_header};
use repovault_tests::fixtures::{big_repo, git};
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::process::CoordinatorProcess;

const USAGE: &str = "usage: repovault-fleet-bench [--repos N] [--rounds N]";
const SLOTS: u32 = 2;

struct Args {
    repos: usize,
    rounds: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        repos: 500,
        rounds: 3,
    };
    parse_counts(
        USAGE,
        &mut [("--repos", &mut a.repos), ("--rounds", &mut a.rounds)],
    )?;
    Ok(a)
}

/// `n` small repositories `rNNNN.git` under `base`: clones of one generated repository.
fn make_repos(base: &Path, n: usize) -> Result<Vec<String>> {
    let template = big_repo(base, "template.git", 5, 5)?;
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("r{i:04}");
        let dst = base.join(format!("{name}.git"));
        git(
            base,
            &[
                "clone",
                "-q",
                "--bare",
                template.to_str().context("template path")?,
                dst.to_str().context("repository path")?,
            ],
        )?;
        names.push(name);
    }
    Ok(names)
}

/// The coordinator's CPU time so far (user + system), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Result<Duration> {
    repovault_tests::proc_cpu::process_cpu(pid).context("the coordinator's /proc stat")
}

/// Backs every repository up once and waits for all; answers the wall time.
async fn round(
    admin: &mut repovault_proto::v1::admin_service_client::AdminServiceClient<
        tonic::transport::Channel,
    >,
    names: &[String],
) -> Result<Duration> {
    let start = Instant::now();
    let mut ids = Vec::with_capacity(names.len());
    for n in names {
        let b = admin
            .run_backup(pb::RunBackupRequest {
                repo: format!("fleet/{n}"),
                r#type: pb::BackupType::Incremental as i32,
            })
            .await?
            .into_inner()
            .backup
            .context("the backup record")?;
        ids.push(b.id);
    }
    for id in ids {
        loop {
            let b = admin
                .get_backup(pb::GetBackupRequest { id: id.clone() })
                .await?
                .into_inner()
                .backup
                .context("the backup record")?;
            match pb::TaskStatus::try_from(b.status) {
                Ok(pb::TaskStatus::Completed) => break,
                Ok(pb::TaskStatus::Failed) => bail!("backup {id} failed: {}", b.error),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    Ok(start.elapsed())
}

/// The peer: `git fetch --prune` into each mirror, two at a time.
fn script_round(mirrors: &[PathBuf]) -> Result<Duration> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mirrors = Arc::new(mirrors.to_vec());
    let workers: Vec<_> = (0..SLOTS)
        .map(|_| {
            let (next, mirrors) = (next.clone(), mirrors.clone());
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(m) = mirrors.get(i) else {
                        return Ok(());
                    };
                    let status = Command::new("git")
                        .arg("-C")
                        .arg(m)
                        .args(["fetch", "--prune", "-q", "origin"])
                        .env("GIT_CONFIG_GLOBAL", "/dev/null")
                        .env("GIT_CONFIG_NOSYSTEM", "1")
                        .status()?;
                    if !status.success() {
                        bail!("git fetch in {} failed", m.display());
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a fetch thread panicked"))??;
    }
    Ok(start.elapsed())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let bin = std::env::current_exe()?.with_file_name("repovault-test-process");
    if !bin.is_file() {
        bail!(
            "{} not found: build the tests crate's binaries first (cargo build --release -p repovault-tests --bins)",
            bin.display()
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src)?;
    let t = Instant::now();
    let names = make_repos(&src, args.repos)?;
    let made = t.elapsed();
    let daemon = GitDaemon::start(&src)?;

    let vault = tmp.path().join("vault");
    std::fs::create_dir_all(&vault)?;
    let coord =
        CoordinatorProcess::start(bin.to_str().context("binary path")?, &vault, "5s").await?;
    let pid = coord.pid().context("the coordinator's pid")?;
    let mut admin = coord.admin().await?;
    admin
        .add_org(pb::AddOrgRequest {
            name: "fleet".into(),
            provider: pb::Provider::Git as i32,
            ..Default::default()
        })
        .await?;
    for n in &names {
        admin
            .add_repo(pb::AddRepoRequest {
                org: "fleet".into(),
                name: n.clone(),
                url: daemon.url(&format!("{n}.git")),
                token: String::new(),
            })
            .await?;
    }
    let _worker = coord.spawn_worker_with_slots("w", SLOTS, &[])?;
    let first = round(&mut admin, &names).await?;

    // The peer's mirrors, made once (untimed), as the script's first run would.
    let mirrors_dir = tmp.path().join("mirrors");
    std::fs::create_dir_all(&mirrors_dir)?;
    let mut mirrors = Vec::with_capacity(names.len());
    for n in &names {
        let m = mirrors_dir.join(format!("{n}.git"));
        git(
            &mirrors_dir,
            &[
                "clone",
                "-q",
                "--mirror",
                &daemon.url(&format!("{n}.git")),
                m.to_str().context("mirror path")?,
            ],
        )?;
        mirrors.push(m);
    }

    let (mut rv, mut rv_cpu, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..args.rounds {
        // Alternate which side goes first.
        let mut one = async |rv: &mut Vec<f64>, cpu: &mut Vec<f64>| -> Result<()> {
            let before = cpu_time(pid)?;
            let took = round(&mut admin, &names).await?;
            let used = cpu_time(pid)? - before;
            rv.push(took.as_secs_f64());
            cpu.push(used.as_secs_f64() * 1000.0 / names.len() as f64);
            Ok(())
        };
        if r % 2 == 0 {
            one(&mut rv, &mut rv_cpu).await?;
            peer.push(script_round(&mirrors)?.as_secs_f64());
        } else {
            peer.push(script_round(&mirrors)?.as_secs_f64());
            one(&mut rv, &mut rv_cpu).await?;
        }
        eprintln!("round {} of {} done", r + 1, args.rounds);
    }
    let (rv_m, peer_m) = (median(rv.iter().copied()), median(peer.iter().copied()));
    let per_hour_core = |secs: f64| names.len() as f64 / (secs / 3600.0) / cores as f64;
    let per = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    print_header("repovault-fleet-bench", 10, &[]);
    println!(
        "source:   {} small repositories (5 commits, 5 files each; made in {:.1} s), one git daemon",
        names.len(),
        made.as_secs_f64()
    );
    println!(
        "repovault: coordinator process + one worker process of {SLOTS} slots; first backups (untimed) {:.1} s",
        first.as_secs_f64()
    );
    println!("script:   git fetch --prune into a mirror of each, {SLOTS} at a time");
    println!(
        "rounds:   {} with nothing changed (alternating which side goes first; medians below)\n",
        args.rounds
    );
    println!("{:<52}{:>12}{:>14}", "", "repovault", "script");
    println!(
        "{:<52}{:>12.2}{:>14.2}",
        "unchanged round, time (s)", rv_m, peer_m
    );
    println!("{:<52}{:>12}   {}", "  per round (s)", per(&rv), per(&peer));
    println!(
        "{:<52}{:>12.0}{:>14.0}",
        "repositories per hour per core",
        per_hour_core(rv_m),
        per_hour_core(peer_m)
    );
    println!(
        "{:<52}{:>12.1}{:>14}",
        "coordinator CPU per backup (ms)",
        median(rv_cpu.iter().copied()),
        "-"
    );
    println!(
        "\nratio (medians)\n  unchanged round time, repovault / script:   {:.2}",
        rv_m / peer_m
    );
    drop(daemon);
    Ok(())
}
