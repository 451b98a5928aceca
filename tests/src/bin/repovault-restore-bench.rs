//! repovault's restore (the git part) against a plain `git push --mirror`, side by side.
//!
//! A generated repository of realistic size ([`big_repo`]: 20 000 commits and 300 files by
//! default) is served by a local `git daemon` with push (`receive-pack`) enabled. Beforehand (not
//! timed) a `git clone --mirror` of it is made for the peer. Each run then:
//!
//! 1. starts repovault (in-process coordinator and one worker, as `repovault standalone` starts
//!    them, with a fresh data directory) and takes one backup of the repository (not timed);
//! 2. side by side, alternating which goes first, into two fresh empty bare repositories served
//!    by the same daemon:
//!    - repovault: `full_repo` restore to `new` with a plain git `--url`, timed from enqueue to
//!      completed: the task is leased by the worker, which restores the snapshot's bare mirror
//!      to its scratch directory, checks that the target has no refs (`git ls-remote`) and
//!      pushes every ref (`git push refs/*:refs/*`);
//!    - the peer: `git push --mirror -q URL` from the mirror;
//! 3. checks that both targets hold exactly the source's refs (`git for-each-ref`), so neither
//!    side can win by doing less.
//!
//! The report gives the time of every run and the medians.
//!
//! ```text
//! cargo run --release -p repovault-tests --bin repovault-restore-bench -- [--commits N] [--files N] [--runs N]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use repovault_coordinator::model::{RestoreRecord, Status};
use repovault_tests::bench::{
    SourceArgs, median, mib, mib_f, parse_source_args, print_header, remove_if_exists,
};
use repovault_tests::fixtures::{big_repo, empty_repo, git, git_command, refs, run};
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::standalone::{Standalone, dir_size};

const USAGE: &str = "usage: repovault-restore-bench [--commits N] [--files N] [--runs N]";
const REPO: &str = "bench/big";
/// How long a restore may take before the benchmark gives up.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(3600);

fn parse_args() -> Result<SourceArgs> {
    parse_source_args(USAGE)
}

/// Everything one run measures.
#[derive(Debug, Default, Clone)]
struct Figures {
    /// The (untimed) backup restored from: its time and `size_bytes`.
    backup: Duration,
    backup_size: u64,
    /// repovault's restore, enqueue to completed, and the refs it reports pushed.
    rv: Duration,
    rv_refs_pushed: u64,
    /// `git push --mirror`.
    push: Duration,
    /// The size of each target after the run (what the server received and stored).
    rv_target: u64,
    push_target: u64,
}

/// The source repository, the daemon serving it (and the targets) and the peer's mirror.
struct Source {
    /// The daemon's base directory: the source and every target live here.
    base: PathBuf,
    bare: PathBuf,
    url: String,
    refs: BTreeMap<String, String>,
    mirror: PathBuf,
    daemon: GitDaemon,
}

/// repovault as `repovault standalone` runs it, with the one repository of the benchmark.
struct Vault {
    inner: Standalone,
}

impl Vault {
    async fn start(data: PathBuf, url: &str) -> Result<Vault> {
        let inner = Standalone::start(data, 2).await?;
        inner
            .handle
            .core
            .registry
            .add_org("bench", repovault_common::domain::Provider::Git)
            .await?;
        inner.handle.core.registry.add_repo(REPO, url, None).await?;
        Ok(Vault { inner })
    }

    /// One backup, waited for: its time and record.
    async fn backup(&self) -> Result<(Duration, u64, repovault_common::domain::BackupId)> {
        let t = Instant::now();
        let b = self.inner.handle.core.backups.run_backup(REPO).await?;
        let r = self.inner.wait_backup(&b.id).await?;
        Ok((t.elapsed(), r.size_bytes, r.id))
    }

    /// A `full_repo` restore of `backup_id` to the plain git `url`: the time from enqueue to
    /// completed, and the record. Fails unless it completed.
    async fn restore(
        &self,
        backup_id: &repovault_common::domain::BackupId,
        url: &str,
    ) -> Result<(Duration, RestoreRecord)> {
        let core = &self.inner.handle.core;
        let t = Instant::now();
        let r = core
            .restores
            .start_restore(
                backup_id,
                repovault_common::domain::RestoreType::FullRepo,
                repovault_common::domain::RestoreTarget::New,
                url,
                None,
            )
            .await?;
        loop {
            let r = core.restores.get_restore(&r.id).await?;
            match r.status {
                Status::Completed => return Ok((t.elapsed(), r)),
                Status::Failed => bail!("restore {} failed: {:?}", r.id, r.error),
                Status::Pending | Status::Running => {}
            }
            if t.elapsed() > RESTORE_TIMEOUT {
                bail!(
                    "restore {} still {:?} after {RESTORE_TIMEOUT:?}",
                    r.id,
                    r.status
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn shutdown(self) {
        self.inner.shutdown().await;
    }
}

/// The peer: `git push --mirror -q URL` from the mirror, timed.
async fn push_mirror(mirror: &Path, url: &str) -> Result<Duration> {
    let (mirror, url) = (mirror.to_path_buf(), url.to_string());
    tokio::task::spawn_blocking(move || -> Result<Duration> {
        let t = Instant::now();
        run(git_command(&mirror).args(["push", "--mirror", "-q", &url]))?;
        Ok(t.elapsed())
    })
    .await?
}

/// Fails unless the repository at `target` holds exactly the source's refs, at the same ids.
fn check_refs(src: &Source, target: &Path, side: &str) -> Result<()> {
    let got = refs(target)?;
    if got != src.refs {
        let missing: Vec<_> = src
            .refs
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .map(|(k, _)| k.as_str())
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !src.refs.contains_key(*k))
            .map(String::as_str)
            .collect();
        bail!(
            "{side}: the target's refs differ from the source's ({} vs {}); missing or different: {missing:?}; extra: {extra:?}",
            got.len(),
            src.refs.len()
        );
    }
    Ok(())
}

/// One run: a fresh repovault with one backup, then both restores into fresh empty targets.
async fn one_run(src: &Source, root: &Path, i: usize, vault_first: bool) -> Result<Figures> {
    let dir = root.join(format!("run-{i}"));
    let vault = Vault::start(dir.join("data"), &src.url).await?;
    let mut f = Figures::default();
    let backup_id;
    (f.backup, f.backup_size, backup_id) = vault.backup().await?;

    let rv_name = format!("run-{i}-repovault.git");
    let push_name = format!("run-{i}-push.git");
    let rv_target = empty_repo(&src.base, &rv_name)?;
    let push_target = empty_repo(&src.base, &push_name)?;
    for side in order(vault_first) {
        match side {
            Side::Vault => {
                let (t, r) = vault.restore(&backup_id, &src.daemon.url(&rv_name)).await?;
                f.rv = t;
                f.rv_refs_pushed = r.refs_pushed;
            }
            Side::Push => {
                f.push = push_mirror(&src.mirror, &src.daemon.url(&push_name)).await?;
            }
        }
    }
    vault.shutdown().await;

    check_refs(src, &rv_target, "repovault")?;
    check_refs(src, &push_target, "git push --mirror")?;
    if f.rv_refs_pushed != src.refs.len() as u64 {
        bail!(
            "repovault reports {} refs pushed, the source has {}",
            f.rv_refs_pushed,
            src.refs.len()
        );
    }
    f.rv_target = dir_size(&rv_target)?;
    f.push_target = dir_size(&push_target)?;
    for p in [&rv_target, &push_target, &dir] {
        remove_if_exists(p)?;
    }
    Ok(f)
}

#[derive(Clone, Copy)]
enum Side {
    Vault,
    Push,
}

fn order(vault_first: bool) -> [Side; 2] {
    if vault_first {
        [Side::Vault, Side::Push]
    } else {
        [Side::Push, Side::Vault]
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    repovault_common::tls::install_crypto_provider();
    repovault_common::telemetry::init("warn", repovault_common::telemetry::LogFormat::Text);
    let args = parse_args()?;
    let git_version = git(Path::new("/"), &["--version"])?;

    let root = tempfile::Builder::new()
        .prefix("repovault-restore-bench-")
        .tempdir()
        .context("creating the benchmark directory")?;
    let base = root.path().join("served");
    eprintln!(
        "generating {} commits, {} files ...",
        args.commits, args.files
    );
    let t = Instant::now();
    let bare = big_repo(&base, "big", args.commits, args.files)?;
    let generated = t.elapsed();
    let daemon = GitDaemon::start(&base)?;
    let url = daemon.url("big");
    let mirror = root.path().join("peer-mirror.git");
    eprintln!("git clone --mirror for the peer (not timed) ...");
    run(git_command(root.path()).args([
        "clone",
        "--mirror",
        "-q",
        &url,
        mirror.to_str().context("non-UTF-8 temp path")?,
    ]))?;
    let src = Source {
        base: daemon.base().to_path_buf(),
        refs: refs(&bare)?,
        bare,
        url,
        mirror,
        daemon,
    };
    if refs(&src.mirror)? != src.refs {
        bail!("the peer's mirror does not hold the source's refs");
    }
    let source_bytes = dir_size(&src.bare)?;
    let mirror_bytes = dir_size(&src.mirror)?;

    let mut runs = Vec::new();
    for i in 0..args.runs {
        let vault_first = i % 2 == 0;
        eprintln!(
            "run {}/{} ({} first) ...",
            i + 1,
            args.runs,
            if vault_first {
                "repovault"
            } else {
                "git push --mirror"
            }
        );
        let f = one_run(&src, root.path(), i, vault_first).await?;
        eprintln!("  {f:?}");
        runs.push(f);
    }

    print_header("repovault-restore-bench", 11, &[git_version.trim()]);
    println!(
        "source:    {} commits, {} files, {} refs, {} on disk (generated in {:.1} s); peer mirror {}",
        args.commits,
        args.files,
        src.refs.len(),
        mib(source_bytes),
        generated.as_secs_f64(),
        mib(mirror_bytes)
    );
    println!(
        "server:    one local git daemon (--enable=receive-pack); each side pushes to a fresh empty bare repository on it"
    );
    println!(
        "repovault: full_repo restore to new --url git://..., enqueue to completed: lease, snapshot restore"
    );
    println!(
        "           of the bare mirror to the worker's scratch, git ls-remote (target empty?), git push refs/*:refs/*"
    );
    println!("           (one untimed backup first, in a fresh standalone coordinator + worker)");
    println!(
        "peer:      git push --mirror -q git://... from a git clone --mirror made beforehand (not timed)"
    );
    println!(
        "checked:   both targets hold exactly the source's refs (git for-each-ref) after every run"
    );
    println!(
        "runs:      {} (alternating which side goes first; medians below)",
        args.runs
    );
    println!();
    print_table(&runs);
    Ok(())
}

fn print_table(runs: &[Figures]) {
    let secs = |g: fn(&Figures) -> Duration| median(runs.iter().map(|f| g(f).as_secs_f64()));
    let bytes = |g: fn(&Figures) -> u64| median(runs.iter().map(|f| g(f) as f64));
    let per_run = |g: fn(&Figures) -> Duration| {
        runs.iter()
            .map(|f| format!("{:.2}", g(f).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rv = secs(|f| f.rv);
    let push = secs(|f| f.push);

    println!("{:<44} {:>20} {:>20}", "", "repovault", "git push --mirror");
    println!(
        "{:<44} {:>20} {:>20}",
        "restore time (s), median",
        format!("{rv:.2}"),
        format!("{push:.2}")
    );
    println!(
        "{:<44} {:>20} {:>20}",
        "  per run (s)",
        per_run(|f| f.rv),
        per_run(|f| f.push)
    );
    println!(
        "{:<44} {:>20} {:>20}",
        "target repository on disk after the push",
        mib_f(bytes(|f| f.rv_target)),
        mib_f(bytes(|f| f.push_target))
    );
    println!(
        "{:<44} {:>20} {:>20}",
        "backup restored from (untimed), time (s)",
        format!("{:.2}", secs(|f| f.backup)),
        "-"
    );
    println!(
        "{:<44} {:>20} {:>20}",
        "backup restored from, size_bytes",
        mib_f(bytes(|f| f.backup_size)),
        "-"
    );
    println!();
    println!("ratio (medians)");
    let ratio = rv / push;
    println!(
        "  restore time, repovault / git push --mirror: {:>6.2}   (goal <= 1.20: {})",
        ratio,
        if ratio <= 1.20 { "goal met" } else { "NOT met" }
    );
}
