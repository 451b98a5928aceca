//! repovault against "the usual script", side by side in one run.
//!
//! A generated repository of realistic size ([`big_repo`]: 20 000 commits and 300 files by
//! default) is served by a local `git daemon`. Each run then measures:
//!
//! 1. first backup: repovault (in-process coordinator and one worker, as `repovault standalone`
//!    starts them, with a fresh data directory and worker cache) against
//!    `git clone --mirror git://… DIR && zip -qr ARCHIVE.zip DIR` (the system `zip`);
//! 2. one new commit changing five files is pushed to the source, then the second backup:
//!    repovault (same data directory and cache) against the script again, which clones afresh
//!    and stores a whole new archive;
//! 3. a third repovault backup with nothing changed at the source (the script has no cheaper
//!    way than the second time).
//!
//! The script's `git clone --mirror` is also timed on its own (the bare clone a first backup is
//! held to), and the commit's growth of the source is measured as the pack git would send for
//! it (`git pack-objects` of the new objects), which the second backup's added bytes are held
//! to.
//!
//! Runs alternate which side goes first; the report gives the median of every figure. The source
//! is reset to its original tip before each run, so every run backs up the same history.
//!
//! ```text
//! cargo run --release -p repovault-tests --bin repovault-bench -- [--commits N] [--files N] [--runs N]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use repovault_coordinator::model::BackupRecord;
use repovault_tests::bench::{
    SourceArgs, kib_f, median, mib, mib_f, parse_source_args, print_header, push_five_file_commit,
    remove_if_exists,
};
use repovault_tests::fixtures::{big_repo, git, git_command, run};
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::standalone::{Standalone, dir_size};

const USAGE: &str = "usage: repovault-bench [--commits N] [--files N] [--runs N]";
const REPO: &str = "bench/big";

fn parse_args() -> Result<SourceArgs> {
    parse_source_args(USAGE)
}

/// Everything one run measures.
#[derive(Debug, Default, Clone)]
struct Figures {
    rv_first: Duration,
    /// `size_bytes` of the first backup (the repository as backed up).
    rv_first_size: u64,
    /// `added_bytes` of the first backup (newly stored, packed).
    rv_first_added: u64,
    rv_first_received: u64,
    rv_second: Duration,
    rv_second_added: u64,
    rv_second_received: u64,
    /// The third backup, with nothing changed at the source.
    rv_third: Duration,
    rv_third_added: u64,
    /// The pack of the objects the pushed commit added to the source.
    source_growth: u64,
    /// The script's `git clone --mirror` alone, first time.
    clone_first: Duration,
    /// Size of `<data>/storage` after the first and after the second backup.
    rv_storage_first: u64,
    rv_storage_second: u64,
    /// The worker's mirror cache after the second backup (not backup storage; reported apart).
    rv_cache: u64,
    script_first: Duration,
    zip_first: u64,
    mirror: u64,
    script_second: Duration,
    zip_second: u64,
}

/// The source repository and the daemon serving it.
struct Source {
    bare: PathBuf,
    url: String,
    tip: String,
    _daemon: GitDaemon,
}

impl Source {
    /// Puts `main` back where the generator left it (the pushed commit becomes unreachable, so
    /// neither side sees it any more).
    fn reset(&self) -> Result<()> {
        git(&self.bare, &["update-ref", "refs/heads/main", &self.tip])?;
        Ok(())
    }

    /// Pushes one new commit to `main` over git://, as a developer would: it edits five files
    /// of a clone sharing the source's objects. Returns the size of a pack of the objects it
    /// added (what the source grew by, as git would send it).
    fn push_one_commit(&self, scratch: &Path) -> Result<u64> {
        push_five_file_commit(&self.bare, &self.url, scratch)?;
        self.growth()
    }

    /// The size of a pack of the objects `main` has beyond the original tip.
    fn growth(&self) -> Result<u64> {
        let objects = git(
            &self.bare,
            &[
                "rev-list",
                "--objects",
                "refs/heads/main",
                "--not",
                &self.tip,
            ],
        )?;
        let ids: String = objects
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|id| format!("{id}\n"))
            .collect();
        let mut child = git_command(&self.bare)
            .args(["pack-objects", "--stdout", "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("git pack-objects")?;
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().context("pack-objects stdin")?;
            stdin.write_all(ids.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            anyhow::bail!("git pack-objects failed");
        }
        Ok(out.stdout.len() as u64)
    }
}

/// An in-process coordinator and one worker, started exactly as `repovault standalone` does.
/// repovault as `repovault standalone` runs it, with the one repository of the benchmark.
struct Vault {
    inner: Standalone,
}

impl Vault {
    async fn start(data: PathBuf) -> Result<Vault> {
        Ok(Vault {
            inner: Standalone::start(data, 2).await?,
        })
    }

    async fn add_repo(&self, url: &str) -> Result<()> {
        self.inner
            .handle
            .core
            .registry
            .add_org("bench", repovault_common::domain::Provider::Git)
            .await?;
        self.inner
            .handle
            .core
            .registry
            .add_repo(REPO, url, None)
            .await?;
        Ok(())
    }

    /// Enqueues a backup and waits for it: the time from enqueue to completion, and the record.
    async fn backup(&self) -> Result<(Duration, BackupRecord)> {
        let t = Instant::now();
        let b = self.inner.handle.core.backups.run_backup(REPO).await?;
        let r = self.inner.wait_backup(&b.id).await?;
        Ok((t.elapsed(), r))
    }

    fn storage_bytes(&self) -> Result<u64> {
        dir_size(&self.inner.storage())
    }

    fn cache_bytes(&self) -> Result<u64> {
        dir_size(&self.inner.cache())
    }

    async fn shutdown(self) {
        self.inner.shutdown().await;
    }
}

/// What one run of the script measured.
struct ScriptRun {
    took: Duration,
    /// The `git clone --mirror` part alone.
    clone: Duration,
    zip_bytes: u64,
    mirror_bytes: u64,
}

/// The usual script: `git clone --mirror URL NAME.git && zip -qr NAME.zip NAME.git`, in `dir`,
/// from scratch. Returns its time (and its clone's), the archive's size and the mirror's size
/// (then removes the mirror, as the script would; the archive stays).
async fn script(url: &str, dir: &Path, name: &str) -> Result<ScriptRun> {
    let (url, dir, name) = (url.to_string(), dir.to_path_buf(), name.to_string());
    tokio::task::spawn_blocking(move || -> Result<ScriptRun> {
        let mirror = format!("{name}.git");
        let zip = dir.join(format!("{name}.zip"));
        remove_if_exists(&dir.join(&mirror))?;
        remove_if_exists(&zip)?;
        let t = Instant::now();
        run(git_command(&dir).args(["clone", "--mirror", "-q", &url, &mirror]))?;
        let clone = t.elapsed();
        run(Command::new("zip")
            .current_dir(&dir)
            .arg("-qr")
            .arg(&zip)
            .arg(&mirror))
        .context("zip (apt-get install zip)")?;
        let elapsed = t.elapsed();
        let zip_bytes = std::fs::metadata(&zip)
            .with_context(|| format!("reading {}", zip.display()))?
            .len();
        let mirror_bytes = dir_size(&dir.join(&mirror))?;
        remove_if_exists(&dir.join(&mirror))?;
        Ok(ScriptRun {
            took: elapsed,
            clone,
            zip_bytes,
            mirror_bytes,
        })
    })
    .await?
}

/// One run: a fresh repovault and a fresh script directory, both backups of both sides.
async fn one_run(src: &Source, root: &Path, i: usize, vault_first: bool) -> Result<Figures> {
    let dir = root.join(format!("run-{i}"));
    let script_dir = dir.join("script");
    std::fs::create_dir_all(&script_dir)
        .with_context(|| format!("creating {}", script_dir.display()))?;
    src.reset()?;
    let vault = Vault::start(dir.join("data")).await?;
    vault.add_repo(&src.url).await?;
    let mut f = Figures::default();

    for phase in ["first", "second"] {
        if phase == "second" {
            f.source_growth = src.push_one_commit(&dir)?;
        }
        for side in order(vault_first) {
            match (side, phase) {
                (Side::Vault, "first") => {
                    let (t, b) = vault.backup().await?;
                    f.rv_first = t;
                    f.rv_first_size = b.size_bytes;
                    f.rv_first_added = b.added_bytes;
                    f.rv_first_received = b.bytes_received;
                    f.rv_storage_first = vault.storage_bytes()?;
                }
                (Side::Vault, _) => {
                    let (t, b) = vault.backup().await?;
                    f.rv_second = t;
                    f.rv_second_added = b.added_bytes;
                    f.rv_second_received = b.bytes_received;
                    f.rv_storage_second = vault.storage_bytes()?;
                    f.rv_cache = vault.cache_bytes()?;
                }
                (Side::Script, "first") => {
                    let r = script(&src.url, &script_dir, "first").await?;
                    (f.script_first, f.clone_first, f.zip_first, f.mirror) =
                        (r.took, r.clone, r.zip_bytes, r.mirror_bytes);
                }
                (Side::Script, _) => {
                    let r = script(&src.url, &script_dir, "second").await?;
                    (f.script_second, f.zip_second) = (r.took, r.zip_bytes);
                }
            }
        }
    }
    let (t, b) = vault.backup().await?;
    (f.rv_third, f.rv_third_added) = (t, b.added_bytes);
    vault.shutdown().await;
    remove_if_exists(&dir)?;
    Ok(f)
}

#[derive(Clone, Copy)]
enum Side {
    Vault,
    Script,
}

fn order(vault_first: bool) -> [Side; 2] {
    if vault_first {
        [Side::Vault, Side::Script]
    } else {
        [Side::Script, Side::Vault]
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    repovault_common::tls::install_crypto_provider();
    repovault_common::telemetry::init("warn", repovault_common::telemetry::LogFormat::Text);
    let args = parse_args()?;
    let zip_version = run(Command::new("zip").arg("-v"))
        .context("the system `zip` is needed (apt-get install zip)")?;
    let git_version = git(Path::new("/"), &["--version"])?;

    let root = tempfile::Builder::new()
        .prefix("repovault-bench-")
        .tempdir()
        .context("creating the benchmark directory")?;
    let base = root.path().join("source");
    eprintln!(
        "generating {} commits, {} files ...",
        args.commits, args.files
    );
    let t = Instant::now();
    let bare = big_repo(&base, "big", args.commits, args.files)?;
    let generated = t.elapsed();
    let daemon = GitDaemon::start(&base)?;
    let src = Source {
        tip: git(&bare, &["rev-parse", "refs/heads/main"])?,
        url: daemon.url("big"),
        bare,
        _daemon: daemon,
    };
    let source_bytes = dir_size(&src.bare)?;

    let mut runs = Vec::new();
    for i in 0..args.runs {
        let vault_first = i % 2 == 0;
        eprintln!(
            "run {}/{} ({} first) ...",
            i + 1,
            args.runs,
            if vault_first { "repovault" } else { "script" }
        );
        let f = one_run(&src, root.path(), i, vault_first).await?;
        eprintln!("  {f:?}");
        runs.push(f);
    }

    let zip_version = zip_version
        .lines()
        .find(|l| l.starts_with("This is Zip"))
        .unwrap_or("zip")
        .trim();
    print_header("repovault-bench", 10, &[git_version.trim(), zip_version]);
    println!(
        "source:   {} commits, {} files, {} on disk (generated in {:.1} s), served by git daemon",
        args.commits,
        args.files,
        mib(source_bytes),
        generated.as_secs_f64()
    );
    println!(
        "script:   git clone --mirror -q git://... X.git && zip -qr X.zip X.git (system zip), from scratch each time"
    );
    println!(
        "runs:     {} (alternating which side goes first; medians below)",
        args.runs
    );
    println!();
    print_table(&runs);
    Ok(())
}

fn print_table(runs: &[Figures]) {
    let secs = |g: fn(&Figures) -> Duration| median(runs.iter().map(|f| g(f).as_secs_f64()));
    let bytes = |g: fn(&Figures) -> u64| median(runs.iter().map(|f| g(f) as f64));
    let per_run = |g: fn(&Figures) -> f64| {
        runs.iter()
            .map(|f| format!("{:.2}", g(f)))
            .collect::<Vec<_>>()
            .join(" ")
    };

    let rv1 = secs(|f| f.rv_first);
    let sc1 = secs(|f| f.script_first);
    let rv2 = secs(|f| f.rv_second);
    let sc2 = secs(|f| f.script_second);
    let rv_added1 = bytes(|f| f.rv_first_added);
    let rv_added2 = bytes(|f| f.rv_second_added);
    let zip1 = bytes(|f| f.zip_first);
    let zip2 = bytes(|f| f.zip_second);

    println!("{:<56} {:>20} {:>20}", "", "repovault", "script");
    println!(
        "{:<56} {:>20} {:>20}",
        "first backup, time (s)",
        format!("{rv1:.2}"),
        format!("{sc1:.2}")
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "  per run (s)",
        per_run(|f| f.rv_first.as_secs_f64()),
        per_run(|f| f.script_first.as_secs_f64())
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "first backup, bytes stored (added_bytes / zip)",
        mib_f(rv_added1),
        mib_f(zip1)
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "first backup, repository size (size_bytes / mirror)",
        mib_f(bytes(|f| f.rv_first_size)),
        mib_f(bytes(|f| f.mirror))
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "first backup, bytes received from the source",
        mib_f(bytes(|f| f.rv_first_received)),
        "-"
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "  git clone --mirror alone, time (s)",
        "-",
        format!("{:.2}", secs(|f| f.clone_first))
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "second backup (+1 commit of 5 files), time (s)",
        format!("{rv2:.2}"),
        format!("{sc2:.2}")
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "  per run (s)",
        per_run(|f| f.rv_second.as_secs_f64()),
        per_run(|f| f.script_second.as_secs_f64())
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "second backup, bytes added (added_bytes / new zip)",
        kib_f(rv_added2),
        mib_f(zip2)
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "second backup, bytes received from the source",
        kib_f(bytes(|f| f.rv_second_received)),
        "-"
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "the commit's objects as a pack (git pack-objects)",
        kib_f(bytes(|f| f.source_growth)),
        "-"
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "third backup (nothing changed), time (s)",
        format!("{:.3}", secs(|f| f.rv_third)),
        "-"
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "  per run (s)",
        runs.iter()
            .map(|f| format!("{:.3}", f.rv_third.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" "),
        "-"
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "third backup, bytes added",
        kib_f(bytes(|f| f.rv_third_added)),
        "-"
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "storage on disk after 1st backup (data/storage / zip)",
        mib_f(bytes(|f| f.rv_storage_first)),
        mib_f(zip1)
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "storage on disk after 2nd backup (data/storage / 2 zips)",
        mib_f(bytes(|f| f.rv_storage_second)),
        mib_f(bytes(|f| f.zip_first + f.zip_second))
    );
    println!(
        "{:<56} {:>20} {:>20}",
        "worker mirror cache, not backup storage (data/cache)",
        mib_f(bytes(|f| f.rv_cache)),
        "-"
    );
    println!();
    println!("ratios (medians)");
    let goal = |ok: bool| if ok { "goal met" } else { "GOAL MISSED" };
    println!(
        "  first backup time, repovault / script:      {:>8.2}   (goal <= 1.00: {})",
        rv1 / sc1,
        goal(rv1 <= sc1)
    );
    let clone1 = secs(|f| f.clone_first);
    println!(
        "  first backup time, repovault / bare clone:  {:>8.2}   (goal <= 1.00: {})",
        rv1 / clone1,
        goal(rv1 <= clone1)
    );
    println!(
        "  second backup time, repovault / script:     {:>8.2}",
        rv2 / sc2
    );
    println!(
        "  second backup time (+1 commit of 5 files):  {:>7.3} s (goal <= 0.4 s: {})",
        rv2,
        goal(rv2 <= 0.4)
    );
    let growth = bytes(|f| f.source_growth);
    println!(
        "  second backup bytes added / source growth:  {:>8.2}   (goal <= 1.2: {})",
        rv_added2 / growth,
        goal(rv_added2 <= 1.2 * growth)
    );
    let rv3 = secs(|f| f.rv_third);
    println!(
        "  third backup time (nothing changed):        {:>7.3} s (goal <= 0.15 s: {})",
        rv3,
        goal(rv3 <= 0.15)
    );
    let rv_pct = 100.0 * rv_added2 / rv_added1;
    println!(
        "  second / first bytes added, repovault:      {:>7.3} %   (goal < 1 %: {})",
        rv_pct,
        goal(rv_pct < 1.0)
    );
    println!(
        "  second / first archive, script:             {:>7.3} %",
        100.0 * zip2 / zip1
    );
    println!(
        "  storage after two backups, repovault / script: {:>5.2}",
        bytes(|f| f.rv_storage_second) / bytes(|f| f.zip_first + f.zip_second)
    );
}
