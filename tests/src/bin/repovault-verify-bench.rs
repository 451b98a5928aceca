//! The verification benchmark (README, "Performance"): repovault's verification of a large
//! backup against `git fsck --full` on the same mirror plus `restic check --read-data` on the
//! same repository, side by side.
//!
//! A generated repository of realistic size ([`big_repo`]: 20 000 commits and 300 files by
//! default, as the other benchmarks) is mirrored with `git clone --mirror --no-local` (a fresh
//! pack, as a fetch makes) into a worker-like cache entry (`code.git/` + `manifest.json`, the
//! manifest filled as the worker's backup task fills it), and that entry is backed up once into a
//! fresh fs-backed snapshot repository (not timed). Then every run measures, on the same data,
//! rotating which goes first:
//!
//! - (a) `git fsck --full` on the mirror;
//! - (b) `restic check --read-data` on the repository (`--no-cache`);
//! - (c) repovault's on-demand verification (`backup verify`): the repository opened with the
//!   master key, then `verify::stored` with a fresh read-back ledger (every pack the snapshot
//!   references read back and every blob decrypted and hashed, code.git restored into a fresh
//!   scratch directory, gix fsck, metadata_valid, commit_count_match);
//! - (d) repovault's at-backup verification, what every backup costs: `verify::git_fsck` on the
//!   entry, `zip_integrity` with a fresh ledger (`Selection::Unread`: every pack, since none was
//!   read before) and the entry's code.git listing, then `local_checks`.
//!
//! Every repovault check must pass (metadata_valid is skipped as not applicable to plain git),
//! every pack must have been read back, and (a) and (b) must succeed; otherwise the benchmark
//! exits non-zero. The report gives the medians, the ratios (c)/(a+b) and (d)/(a+b) (goal: at
//! most 1.00) and, from one extra pass, where the time of (c) goes.
//!
//! ```text
//! cargo run --release -p repovault-tests --bin repovault-verify-bench -- [--commits N] [--files N] [--runs N]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use repovault_common::domain::{BackupType, Trigger};
use repovault_common::manifest::{
    self, CODE_DIR, ComponentStatus, Counts, Manifest, ManifestSource, SourceState,
};
use repovault_common::repo::{BackupRequest, ReadBackLedger, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_tests::bench::{
    SourceArgs, median, mib, parse_source_args, print_header, remove_if_exists,
};
use repovault_tests::fixtures::{big_repo, git, git_command, refs, run};
use repovault_tests::standalone::dir_size;
use repovault_worker::verify::archive::{ReadStats, Reading, Selection, zip_integrity};
use repovault_worker::verify::{self, Check, Outcome};

const USAGE: &str = "usage: repovault-verify-bench [--commits N] [--files N] [--runs N]";
const PASSWORD: &str = "repovault-verify-bench";
/// The repository's prefix inside the storage root, as the coordinator lays them out.
const REPO_PATH: &str = "bench/big";

fn parse_args() -> Result<SourceArgs> {
    parse_source_args(USAGE)
}

/// Everything one run measures.
#[derive(Debug, Default, Clone)]
struct Figures {
    /// (a) `git fsck --full`.
    fsck: Duration,
    /// (b) `restic check --read-data --no-cache`.
    restic: Duration,
    /// (c) open + `verify::stored`.
    stored: Duration,
    stored_stats: ReadStats,
    /// (d) at-backup verification, and its parts.
    at_backup: Duration,
    at_backup_fsck: Duration,
    at_backup_zip: Duration,
    at_backup_tree: Duration,
    at_backup_stats: ReadStats,
}

/// The data every run verifies.
struct Fixture {
    /// The worker-like cache entry: `code.git/` (the mirror) and `manifest.json`.
    entry: PathBuf,
    manifest: Manifest,
    spec: RepoSpec,
    /// The repository's directory on disk (for restic and sizes).
    repo_dir: PathBuf,
    password: Secret,
    master_key: Secret,
    snapshot_id: String,
    /// Packs the snapshot references.
    packs: u64,
    pack_bytes: u64,
    /// Where (c) restores into, fresh every run.
    scratch_root: PathBuf,
}

impl Fixture {
    fn open(&self) -> Result<SnapshotRepo> {
        let key = RepoKey::MasterKey {
            json: &self.master_key,
            password: &self.password,
        };
        Ok(SnapshotRepo::open(&self.spec, key, false)?.0)
    }
}

fn reading(interrupt: &AtomicBool) -> Reading<'_> {
    Reading {
        now_ms: chrono::Utc::now().timestamp_millis(),
        progress: &|_, _| {},
        interrupt,
    }
}

/// (a) `git fsck --full` on the mirror.
fn git_fsck_full(mirror: &Path) -> Result<Duration> {
    let t = Instant::now();
    run(git_command(mirror).args(["fsck", "--full", "--no-progress"]))?;
    Ok(t.elapsed())
}

/// `restic ARGS` on the repository with the password in the environment, no cache.
fn restic(fx: &Fixture, args: &[&str]) -> Result<(Duration, String)> {
    let t = Instant::now();
    let out = Command::new("restic")
        .arg("-r")
        .arg(&fx.repo_dir)
        .arg("--no-cache")
        .args(args)
        .env("RESTIC_PASSWORD", fx.password.expose())
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_REPOSITORY")
        .stdin(Stdio::null())
        .output()
        .context("running restic (apt-get install restic)")?;
    let elapsed = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "restic {args:?} failed ({}): {}{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((elapsed, stdout))
}

/// (b) `restic check --read-data`.
fn restic_check(fx: &Fixture) -> Result<Duration> {
    let (t, out) = restic(fx, &["check", "--read-data"])?;
    if !out.contains("no errors were found") {
        bail!("restic check --read-data did not report a sound repository:\n{out}");
    }
    Ok(t)
}

/// Fails unless every check passed (metadata_valid may be skipped as not applicable: plain git).
fn require_pass(side: &str, checks: &[Check]) -> Result<()> {
    for name in [
        verify::ZIP_INTEGRITY,
        verify::GIT_FSCK,
        verify::METADATA_VALID,
        verify::COMMIT_COUNT_MATCH,
    ] {
        let Some(c) = checks.iter().find(|c| c.name == name) else {
            bail!("{side}: no {name} check ran");
        };
        let ok = match c.result {
            Outcome::Pass => true,
            Outcome::Skipped => name == verify::METADATA_VALID && !c.incomplete,
            Outcome::Fail => false,
        };
        if !ok {
            bail!("{side}: {name} {:?}: {}", c.result, c.detail);
        }
    }
    Ok(())
}

fn require_all_packs(fx: &Fixture, side: &str, s: &ReadStats) -> Result<()> {
    if s.packs_read != fx.packs || s.bytes_read < fx.pack_bytes {
        bail!(
            "{side}: read back {} packs ({} bytes), the snapshot references {} ({} bytes)",
            s.packs_read,
            s.bytes_read,
            fx.packs,
            fx.pack_bytes
        );
    }
    Ok(())
}

/// (c) the on-demand verification: open with the master key, `verify::stored` with a fresh
/// ledger into a fresh scratch directory (removed afterwards, not timed).
fn rv_stored(fx: &Fixture, i: usize) -> Result<(Duration, ReadStats, Vec<Check>)> {
    let scratch = fx.scratch_root.join(format!("run-{i}"));
    remove_if_exists(&scratch)?;
    std::fs::create_dir_all(&scratch)?;
    let interrupt = AtomicBool::new(false);
    let t = Instant::now();
    let repo = fx.open()?;
    let mut ledger = ReadBackLedger::new();
    let (checks, stats) = verify::stored(
        &repo,
        &fx.snapshot_id,
        &scratch,
        &mut ledger,
        &reading(&interrupt),
    )?;
    let elapsed = t.elapsed();
    drop(repo);
    remove_if_exists(&scratch)?;
    require_pass("repovault verify::stored", &checks)?;
    require_all_packs(fx, "repovault verify::stored", &stats)?;
    Ok((elapsed, stats, checks))
}

/// (d) what the end of every backup runs: gix fsck of the entry, then `zip_integrity` over the
/// packs not read before (all of them: fresh ledger) with the entry's code.git listing, then the
/// tree checks on the entry. The repository is open already at that point in a backup.
fn rv_at_backup(fx: &Fixture, repo: &SnapshotRepo, f: &mut Figures) -> Result<Vec<Check>> {
    let interrupt = AtomicBool::new(false);
    let t0 = Instant::now();
    let (fsck, _) = verify::git_fsck(&fx.entry, &interrupt);
    let t1 = Instant::now();
    let mut ledger = ReadBackLedger::new();
    let (zip, stats) = zip_integrity(
        repo,
        &fx.snapshot_id,
        &mut ledger,
        Selection::Unread,
        Some(&fx.entry.join(CODE_DIR)),
        &reading(&interrupt),
    )?;
    let t2 = Instant::now();
    let mut checks = vec![zip];
    checks.extend(verify::local_checks(&fx.entry, &fx.manifest, fsck));
    let t3 = Instant::now();
    f.at_backup = t3 - t0;
    f.at_backup_fsck = t1 - t0;
    f.at_backup_zip = t2 - t1;
    f.at_backup_tree = t3 - t2;
    f.at_backup_stats = stats.clone();
    require_pass("repovault at-backup verification", &checks)?;
    require_all_packs(fx, "repovault at-backup verification", &stats)?;
    Ok(checks)
}

#[derive(Clone, Copy, Debug)]
enum Side {
    GitFsck,
    Restic,
    Stored,
    AtBackup,
}

const SIDES: [Side; 4] = [Side::GitFsck, Side::Restic, Side::Stored, Side::AtBackup];

fn one_run(fx: &Fixture, i: usize) -> Result<Figures> {
    let mut f = Figures::default();
    let repo = fx.open()?;
    for k in 0..SIDES.len() {
        match SIDES[(i + k) % SIDES.len()] {
            Side::GitFsck => f.fsck = git_fsck_full(&fx.entry.join(CODE_DIR))?,
            Side::Restic => f.restic = restic_check(fx)?,
            Side::Stored => (f.stored, f.stored_stats, _) = rv_stored(fx, i)?,
            Side::AtBackup => {
                rv_at_backup(fx, &repo, &mut f)?;
            }
        }
    }
    Ok(f)
}

/// Where the time of (c) goes, from one extra pass over the same parts `verify::stored` runs.
#[derive(Debug, Default)]
struct Breakdown {
    open: Duration,
    zip_all: Duration,
    restore_code: Duration,
    gix_fsck: Duration,
    refs_check: Duration,
}

fn breakdown(fx: &Fixture) -> Result<Breakdown> {
    let mut b = Breakdown::default();
    let interrupt = AtomicBool::new(false);
    let scratch = fx.scratch_root.join("breakdown");
    remove_if_exists(&scratch)?;
    std::fs::create_dir_all(&scratch)?;
    let t = Instant::now();
    let repo = fx.open()?;
    b.open = t.elapsed();
    let t = Instant::now();
    let mut ledger = ReadBackLedger::new();
    let (zip, _) = zip_integrity(
        &repo,
        &fx.snapshot_id,
        &mut ledger,
        Selection::All,
        None,
        &reading(&interrupt),
    )?;
    b.zip_all = t.elapsed();
    let t = Instant::now();
    repo.restore(&fx.snapshot_id, CODE_DIR, &scratch.join(CODE_DIR))?;
    b.restore_code = t.elapsed();
    let t = Instant::now();
    let (fsck, _) = verify::git_fsck(&scratch, &interrupt);
    b.gix_fsck = t.elapsed();
    let t = Instant::now();
    let refs_check = verify::refs::check(&scratch, &fx.manifest);
    b.refs_check = t.elapsed();
    remove_if_exists(&scratch)?;
    for c in [&zip, &fsck, &refs_check] {
        if c.result != Outcome::Pass {
            bail!("breakdown: {} {:?}: {}", c.name, c.result, c.detail);
        }
    }
    Ok(b)
}

/// The manifest the worker's backup task would write for this mirror (plain git source).
fn build_manifest(entry: &Path, source_refs: &BTreeMap<String, String>) -> Result<Manifest> {
    let code = entry.join(CODE_DIR);
    let inv = repovault_worker::git::inventory(&code)?;
    let interrupt = AtomicBool::new(false);
    let (fsck, reachable) = verify::git_fsck(entry, &interrupt);
    if fsck.result != Outcome::Pass {
        bail!(
            "the mirror fails gix fsck before the backup: {}",
            fsck.detail
        );
    }
    let code_bytes = dir_size(&code)?;
    Ok(Manifest {
        format_version: manifest::FORMAT_VERSION,
        backup_id: uuid::Uuid::now_v7().to_string().parse()?,
        backup_type: BackupType::Full,
        trigger: Trigger::Manual,
        task_id: uuid::Uuid::now_v7().to_string().parse()?,
        attempt: 1,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        source: ManifestSource {
            org_id: uuid::Uuid::now_v7().to_string().parse()?,
            org: "bench".into(),
            repo_id: uuid::Uuid::now_v7().to_string().parse()?,
            repo: "big".into(),
            url: "git://127.0.0.1/big".into(),
        },
        components: BTreeMap::from([("git".to_string(), ComponentStatus::included(None))]),
        refs: inv.refs.clone(),
        head: inv.head.clone(),
        counts: Counts {
            branches: inv.branches,
            tags: inv.tags,
            commits: reachable.as_ref().map_or(0, |r| r.commits),
            refs: inv.refs.len() as u64,
            objects: reachable.as_ref().map_or(0, |r| r.reachable),
            ..Default::default()
        },
        sizes: BTreeMap::from([
            ("code_bytes".to_string(), code_bytes),
            ("bytes_received".to_string(), code_bytes),
        ]),
        export: None,
        source_state: Some(SourceState {
            refs: source_refs.clone(),
            default_branch: None,
        }),
    })
}

fn main() -> Result<()> {
    repovault_common::tls::install_crypto_provider();
    repovault_common::telemetry::init("warn", repovault_common::telemetry::LogFormat::Text);
    let args = parse_args()?;
    // SnapshotRepo blocks and needs a runtime context off the runtime's own threads: this
    // thread, with the runtime entered (as the worker's spawn_blocking threads have).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let _enter = rt.enter();
    let git_version = git(Path::new("/"), &["--version"])?;
    let restic_version = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("restic not runnable: {e}"));

    let root = tempfile::Builder::new()
        .prefix("repovault-verify-bench-")
        .tempdir()
        .context("creating the benchmark directory")?;
    eprintln!(
        "generating {} commits, {} files ...",
        args.commits, args.files
    );
    let t = Instant::now();
    let bare = big_repo(&root.path().join("source"), "big", args.commits, args.files)?;
    let generated = t.elapsed();
    let source_refs = refs(&bare)?;

    eprintln!("git clone --mirror --no-local into the entry (not timed) ...");
    let entry = root.path().join("entry");
    std::fs::create_dir_all(&entry)?;
    let mirror = entry.join(CODE_DIR);
    run(git_command(&entry).args([
        "clone",
        "--mirror",
        "--no-local",
        "-q",
        bare.to_str().context("non-UTF-8 temp path")?,
        mirror.to_str().context("non-UTF-8 temp path")?,
    ]))?;
    if refs(&mirror)? != source_refs {
        bail!("the mirror does not hold the source's refs");
    }
    let manifest = build_manifest(&entry, &source_refs)?;
    std::fs::write(entry.join(manifest::MANIFEST_FILE), manifest.to_json())?;

    eprintln!("backing the entry up into a fresh fs repository (not timed) ...");
    let storage = root.path().join("storage");
    std::fs::create_dir_all(&storage)?;
    let operator = opendal::Operator::new(
        opendal::services::Fs::default().root(storage.to_str().context("non-UTF-8 temp path")?),
    )?;
    let spec = RepoSpec {
        operator,
        path: REPO_PATH.into(),
    };
    let password = Secret::new(PASSWORD);
    let t = Instant::now();
    let (repo, master_key) = SnapshotRepo::open(&spec, RepoKey::Password(&password), true)?;
    let request = BackupRequest {
        host: manifest::SNAPSHOT_HOST.to_string(),
        label: manifest.source.repo_id.to_string(),
        tags: manifest::snapshot_tags(
            &manifest.backup_id,
            &manifest.task_id,
            manifest.attempt,
            manifest.backup_type,
            manifest.trigger,
        ),
        parent: None,
        as_path: manifest::SNAPSHOT_PATH.to_string(),
        exclude: Vec::new(),
    };
    let summary = repo.backup(&entry, &request, &|| Ok(()))?;
    let backup_time = t.elapsed();
    let packs = repo.snapshot_packs(&summary.snapshot_id)?;
    if !packs.problems.is_empty() {
        bail!("the snapshot's packs: {:?}", packs.problems);
    }
    drop(repo);
    let fx = Fixture {
        entry,
        manifest,
        spec,
        repo_dir: storage.join(REPO_PATH),
        password,
        master_key,
        snapshot_id: summary.snapshot_id.clone(),
        packs: packs.packs.len() as u64,
        pack_bytes: packs.total_bytes(),
        scratch_root: root.path().join("scratch"),
    };
    let source_bytes = dir_size(&bare)?;
    let mirror_bytes = dir_size(&mirror)?;
    let repo_bytes = dir_size(&fx.repo_dir)?;
    let mirror_packs = std::fs::read_dir(mirror.join("objects/pack"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .count();

    // One untimed pass of everything first, which also prints the checks once.
    eprintln!("warm-up pass (not counted) ...");
    git_fsck_full(&mirror)?;
    restic_check(&fx)?;
    let (_, _, checks) = rv_stored(&fx, usize::MAX)?;
    for c in &checks {
        eprintln!("  stored:    {} {:?}: {}", c.name, c.result, c.detail);
    }
    {
        let repo = fx.open()?;
        let mut f = Figures::default();
        for c in rv_at_backup(&fx, &repo, &mut f)? {
            eprintln!("  at-backup: {} {:?}: {}", c.name, c.result, c.detail);
        }
    }

    let mut runs = Vec::new();
    for i in 0..args.runs {
        eprintln!(
            "run {}/{} ({:?} first) ...",
            i + 1,
            args.runs,
            SIDES[i % SIDES.len()]
        );
        let f = one_run(&fx, i)?;
        eprintln!(
            "  a {:.2}  b {:.2}  c {:.2}  d {:.2} (fsck {:.2} zip {:.2} tree {:.2})",
            f.fsck.as_secs_f64(),
            f.restic.as_secs_f64(),
            f.stored.as_secs_f64(),
            f.at_backup.as_secs_f64(),
            f.at_backup_fsck.as_secs_f64(),
            f.at_backup_zip.as_secs_f64(),
            f.at_backup_tree.as_secs_f64()
        );
        runs.push(f);
    }
    eprintln!("breakdown pass of (c) ...");
    let b = breakdown(&fx)?;

    print_header(
        "repovault-verify-bench",
        11,
        &[git_version.trim(), restic_version.trim()],
    );
    println!(
        "source:    {} commits, {} files, {} refs, {} objects reachable, {} on disk (generated in {:.1} s)",
        args.commits,
        args.files,
        fx.manifest.refs.len(),
        fx.manifest.counts.objects,
        mib(source_bytes),
        generated.as_secs_f64()
    );
    println!(
        "mirror:    git clone --mirror --no-local: {} ({} pack file(s))",
        mib(mirror_bytes),
        mirror_packs
    );
    println!(
        "backup:    one snapshot of code.git + manifest.json into a fresh fs repository (untimed, {:.2} s):",
        backup_time.as_secs_f64()
    );
    println!(
        "           {} logical, repository {} on disk, {} packs referenced ({})",
        mib(summary.total_bytes),
        mib(repo_bytes),
        fx.packs,
        mib(fx.pack_bytes)
    );
    println!("(a)        git fsck --full --no-progress on the mirror");
    println!("(b)        restic --no-cache check --read-data on the repository");
    println!(
        "(c)        repovault backup verify: open (master key) + verify::stored, fresh ledger and scratch"
    );
    println!(
        "(d)        repovault at-backup verification: verify::git_fsck on the entry + zip_integrity"
    );
    println!(
        "           (Unread, fresh ledger = every pack, + code.git listing) + local_checks; repository open"
    );
    println!(
        "checked:   every repovault check passed (metadata_valid skipped: plain git), every pack read back,"
    );
    println!("           git fsck exit 0, restic \"no errors were found\"");
    println!(
        "runs:      {} after one warm-up pass (order rotated each run; medians below)",
        args.runs
    );
    println!();
    print_table(&runs, &b);
    Ok(())
}

/// One figure of a run, for the table.
type Figure = fn(&Figures) -> Duration;

fn print_table(runs: &[Figures], b: &Breakdown) {
    let secs = |g: Figure| median(runs.iter().map(|f| g(f).as_secs_f64()));
    let per_run = |g: Figure| {
        runs.iter()
            .map(|f| format!("{:.2}", g(f).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: [(&str, Figure); 8] = [
        ("(a) git fsck --full", |f| f.fsck),
        ("(b) restic check --read-data", |f| f.restic),
        ("    (a)+(b)", |f| f.fsck + f.restic),
        ("(c) repovault verify::stored", |f| f.stored),
        ("(d) repovault at-backup verification", |f| f.at_backup),
        ("    (d) gix fsck of the entry", |f| f.at_backup_fsck),
        ("    (d) zip_integrity (read-back)", |f| f.at_backup_zip),
        ("    (d) local_checks", |f| f.at_backup_tree),
    ];
    println!("{:<40} {:>10}   per run (s)", "", "median (s)");
    for (label, g) in rows {
        println!("{:<40} {:>10.2}   {}", label, secs(g), per_run(g));
    }
    let f0 = &runs[0];
    println!(
        "{:<40} {:>10}",
        "read back by (c) / (d)",
        format!(
            "{} / {} packs, {} / {}",
            f0.stored_stats.packs_read,
            f0.at_backup_stats.packs_read,
            mib(f0.stored_stats.bytes_read),
            mib(f0.at_backup_stats.bytes_read)
        )
    );
    println!();
    println!("where (c) goes (one extra pass of its parts, s):");
    println!(
        "  open {:.2}   zip_integrity(All) {:.2}   restore code.git {:.2}   gix fsck {:.2}   commit_count_match {:.2}",
        b.open.as_secs_f64(),
        b.zip_all.as_secs_f64(),
        b.restore_code.as_secs_f64(),
        b.gix_fsck.as_secs_f64(),
        b.refs_check.as_secs_f64()
    );
    println!();
    let a_b = secs(|f| f.fsck + f.restic);
    println!("ratios (medians; goal <= 1.00)");
    for (label, v) in [
        ("(c) / (a+b)", secs(|f| f.stored)),
        ("(d) / (a+b)", secs(|f| f.at_backup)),
    ] {
        let r = v / a_b;
        println!(
            "  {label}: {r:>6.2}   ({})",
            if r <= 1.0 { "goal met" } else { "NOT met" }
        );
    }
    println!(
        "  for reference: (a) / (a+b) {:.2}, (b) / (a+b) {:.2}",
        secs(|f| f.fsck) / a_b,
        secs(|f| f.restic) / a_b
    );
}
