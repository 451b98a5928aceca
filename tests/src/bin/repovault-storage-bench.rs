//! The same repository backed up to every storage kind, side by side in one run: fs (the
//! baseline), S3 (moto), Azure Blob (Azurite) and GCS (fake-gcs-server), each object store
//! behind a proxy that counts its HTTP requests.
//!
//! A generated repository ([`big_repo`]: 20 000 commits and 300 files by default) is served by a
//! local `git daemon`. For each kind, an organisation on a location of that kind gets three
//! backups: the first, one after a new commit changing five files, and one with nothing changed.
//! Each is timed, with the bytes its location holds afterwards and the storage requests it made
//! (the object stores only: fs has none to count). Times are given as a ratio to fs's. The
//! source is reset to its original tip before each kind, so every kind backs up the same
//! history. The goal for an unchanged backup is at most 12 storage requests.
//!
//! ```text
//! cargo run --release -p repovault-tests --bin repovault-storage-bench -- [--commits N] [--files N]
//! ```
//!
//! With `REPOVAULT_BENCH_TRACE=1` it also prints each object store's log of every backup (the
//! requests themselves, as the store saw them).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use repovault_common::secret::Secret;
use repovault_common::storage::StorageConfig;
use repovault_coordinator::model::Status;
use repovault_tests::bench::{mib, parse_counts, push_five_file_commit};
use repovault_tests::cluster::Cluster;
use repovault_tests::counting_proxy::CountingProxy;
use repovault_tests::fixtures::{big_repo, git};
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::object_stores::{ObjectStore, Peer};

const USAGE: &str = "usage: repovault-storage-bench [--commits N] [--files N]";
const WAIT: Duration = Duration::from_secs(3600);

/// One backup's figures.
#[derive(Clone, Copy, Default)]
struct Step {
    time: Duration,
    stored: u64,
    requests: Option<u64>,
    added: u64,
}

struct Kind {
    name: &'static str,
    steps: [Step; 3],
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let (mut commits, mut files) = (20_000, 300);
    parse_counts(
        USAGE,
        &mut [("--commits", &mut commits), ("--files", &mut files)],
    )?;
    let scratch = tempfile::tempdir()?;
    eprintln!("generating a repository of {commits} commits and {files} files ...");
    let bare = big_repo(scratch.path(), "big.git", commits, files)?;
    let tip = git(&bare, &["rev-parse", "refs/heads/main"])?
        .trim()
        .to_string();
    let daemon = GitDaemon::start(scratch.path())?;
    let url = daemon.url("big.git");

    let mut kinds = Vec::new();
    for peer in [
        None,
        Some(Peer::Moto),
        Some(Peer::Azurite),
        Some(Peer::GcsEmulator),
    ] {
        git(&bare, &["update-ref", "refs/heads/main", &tip])?;
        kinds.push(run_kind(peer, &url, &bare, scratch.path()).await?);
    }
    report(&kinds, commits, files);
    Ok(())
}

/// Three backups on one kind (`None`: fs).
async fn run_kind(peer: Option<Peer>, url: &str, bare: &Path, scratch: &Path) -> Result<Kind> {
    let name = match peer {
        None => "fs",
        Some(Peer::Moto) => "s3 (moto)",
        Some(Peer::Azurite) => "azblob (Azurite)",
        Some(Peer::GcsEmulator) => "gcs (fake-gcs-server)",
    };
    eprintln!("{name} ...");
    let c = Cluster::start(1).await?;
    // The organisation's own location, so the coordinator's readiness probes of its default
    // storage are not counted.
    let (store, proxy, location) = match peer {
        None => {
            let dir = scratch.join(format!("fs-location-{}", uuid_ish()));
            std::fs::create_dir_all(&dir)?;
            (None, None, StorageConfig::fs(dir.display().to_string()))
        }
        Some(p) => {
            let store = ObjectStore::start(p).await?;
            store.create_bucket("repovault").await?;
            let proxy = CountingProxy::start(store.port)?;
            let mut config = store.storage("repovault");
            let direct = store.endpoint();
            let proxied = direct.replace(&store.port.to_string(), &proxy.port.to_string());
            config.options.insert("endpoint".into(), proxied);
            (Some(store), Some(proxy), config)
        }
    };
    let public = location.public_part();
    let secrets: BTreeMap<String, Secret> = location
        .options
        .iter()
        .filter(|(k, _)| repovault_common::storage::is_secret_option(k))
        .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
        .collect();
    c.core()
        .locations
        .add("bench", public, secrets, None)
        .await
        .context("adding the location")?;
    c.add_git_repo("bench/big", url).await?;
    c.core()
        .locations
        .set_org_location("bench", "bench")
        .await?;
    // This program's own reads (the catalog object's arrival, the bytes stored) go to the store
    // directly, not through the counting proxy.
    let op = match &store {
        Some(s) => s.storage("repovault").operator()?,
        None => location.operator()?,
    };

    let mut steps = [Step::default(); 3];
    for (i, step) in steps.iter_mut().enumerate() {
        if i == 1 {
            push_five_file_commit(bare, url, scratch)?;
        }
        let log_before = store.as_ref().map_or(0, |s| s.log_text().len());
        let before = proxy.as_ref().map(CountingProxy::requests);
        let started = Instant::now();
        let b = c.core().backups.run_backup("bench/big").await?;
        let b = c.wait_backup(&b.id, WAIT).await?;
        if b.status != Status::Completed {
            bail!("{name}: backup {} {:?}: {:?}", i + 1, b.status, b.error);
        }
        step.time = started.elapsed();
        step.added = b.added_bytes;
        // The backup's requests end with its catalog object, written just after the
        // completion; counted once it is there, and before this program's own listing.
        let catalog = repovault_common::storage::catalog_object_path(
            b.org_id.as_str(),
            b.repo_id.as_str(),
            b.id.as_str(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !op.exists(&catalog).await? && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        step.requests = proxy
            .as_ref()
            .zip(before)
            .map(|(p, before)| p.requests() - before);
        step.stored = stored_bytes(&op).await?;
        if std::env::var_os("REPOVAULT_BENCH_TRACE").is_some()
            && let Some(s) = &store
        {
            eprintln!(
                "--- {name}, backup {}:\n{}",
                i + 1,
                &s.log_text()[log_before..]
            );
        }
    }
    c.shutdown().await;
    drop(store);
    Ok(Kind { name, steps })
}

fn uuid_ish() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Bytes of every object in the location.
async fn stored_bytes(op: &opendal::Operator) -> Result<u64> {
    let mut total = 0;
    for e in op.list_with("/").recursive(true).await? {
        if e.metadata().is_file() {
            let mut size = e.metadata().content_length();
            if size == 0 {
                size = op.stat(e.path()).await?.content_length();
            }
            total += size;
        }
    }
    Ok(total)
}

fn report(kinds: &[Kind], commits: usize, files: usize) {
    println!(
        "\nrepovault-storage-bench: {commits} commits, {files} files; each kind: first backup, one new commit, nothing changed"
    );
    println!(
        "{:<22} {:>9} {:>7} {:>9} {:>8} | {:>9} {:>7} {:>9} {:>8} | {:>9} {:>7} {:>8}",
        "storage",
        "1st s",
        "x fs",
        "stored",
        "requests",
        "commit s",
        "x fs",
        "added",
        "requests",
        "same s",
        "x fs",
        "requests"
    );
    let fs = &kinds[0].steps;
    for k in kinds {
        let s = &k.steps;
        let ratio = |i: usize| s[i].time.as_secs_f64() / fs[i].time.as_secs_f64().max(1e-9);
        let req = |i: usize| s[i].requests.map_or("-".to_string(), |r| r.to_string());
        println!(
            "{:<22} {:>9.2} {:>7.2} {:>9} {:>8} | {:>9.2} {:>7.2} {:>9} {:>8} | {:>9.2} {:>7.2} {:>8}",
            k.name,
            s[0].time.as_secs_f64(),
            ratio(0),
            mib(s[0].stored),
            req(0),
            s[1].time.as_secs_f64(),
            ratio(1),
            format!("{:.1} KiB", s[1].added as f64 / 1024.0),
            req(1),
            s[2].time.as_secs_f64(),
            ratio(2),
            req(2),
        );
    }
    println!("goal: at most 12 storage requests for a backup with nothing changed");
}
