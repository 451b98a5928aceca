//! Verification of every backup: a sound backup passes all five checks; each way of
//! breaking a stored backup fails the check that must catch it, with a message naming the
//! problem, while the other checks still report; restore drills pass on a sound backup and fail
//! on a broken one; the read-back rotation finds a damaged pack and fails every backup using it.
//!
//! Storage is broken by hand under the fs storage root (`<root>/<org id>/<repo id>/data/..`),
//! the mirror in the worker's cache entry (`cache-0/<repo id>/code.git`), and the user-facing
//! parts go through the CLI (`backup verify`, `drill run|list`, `health`, `timeline`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use repovault_common::manifest;
use repovault_common::repo::{BackupRequest, ReadBackLedger, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::storage::StorageConfig;
use repovault_coordinator::model::{BackupRecord, CheckOutcome, CheckResult, Status, VerifyStatus};
use repovault_tests::cluster::{Cluster, restic};
use repovault_tests::fixtures::{git, pseudo_random_bytes, rich_repo};
use repovault_tests::gitserver::GitDaemon;
use serde_json::Value;

use super::github_org::{add_acme_org, cli as cli_env, sim};

const WAIT: Duration = Duration::from_secs(180);
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const CHECKS: [&str; 5] = [
    "zip_integrity",
    "git_fsck",
    "metadata_valid",
    "commit_count_match",
    "size_match",
];

fn cli(c: &Cluster, args: &[&str]) -> Output {
    cli_env(c, args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One JSON document on stdout, whatever the exit code (verify exits 5 with its document).
fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}): stdout {} stderr {}",
            stdout(o),
            stderr(o)
        )
    })
}

/// A successful command's JSON document.
fn json_ok(c: &Cluster, args: &[&str]) -> Value {
    let o = cli(c, args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    json_of(&o)
}

async fn backup(c: &Cluster, full_name: &str, backup_type: &str) -> BackupRecord {
    let b = c
        .core()
        .backups
        .run_backup_of_type(full_name, backup_type.parse().expect("a backup type"))
        .await
        .unwrap();
    let b = c.wait_backup(&b.id, WAIT).await.unwrap();
    assert_eq!(
        b.status,
        Status::Completed,
        "backup of {full_name}: {:?}",
        b.error
    );
    b
}

/// The named check of a backup's verification (panics, showing them all, when absent).
fn check<'a>(b: &'a BackupRecord, name: &str) -> &'a CheckResult {
    let v = b
        .verification
        .as_ref()
        .unwrap_or_else(|| panic!("backup {} has no verification", b.id));
    v.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:#?}", v.checks))
}

fn status(b: &BackupRecord) -> VerifyStatus {
    b.verification.as_ref().expect("a verification").status
}

/// Every check is present, in display order.
fn assert_five(b: &BackupRecord) {
    let names: Vec<&str> = b
        .verification
        .as_ref()
        .expect("a verification")
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, CHECKS, "backup {}", b.id);
}

fn assert_result(b: &BackupRecord, name: &str, want: CheckOutcome) {
    let c = check(b, name);
    assert_eq!(c.result, want, "{name} of backup {}: {c:#?}", b.id);
}

/// The checks of a backup as the CLI prints them in JSON (`backup verify --output json`).
fn json_checks(b: &Value) -> Vec<Value> {
    b["verification"]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no verification checks in {b:#}"))
        .clone()
}

fn json_check(b: &Value, name: &str) -> Value {
    json_checks(b)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {b:#}"))
}

/// Each of the five checks is present with a result (the others still report).
fn assert_all_report(b: &Value) {
    let checks = json_checks(b);
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, CHECKS, "{b:#}");
    for c in &checks {
        let r = c["result"].as_str().unwrap_or("");
        assert!(
            ["pass", "fail", "skipped"].contains(&r),
            "{} has no result: {c:#}",
            c["name"]
        );
        assert!(
            !c["detail"].as_str().unwrap_or("").is_empty(),
            "{} says nothing: {c:#}",
            c["name"]
        );
    }
}

/// The health row of `repo`.
fn health_row(c: &Cluster, repo: &str) -> Value {
    let h = json_ok(c, &["--output", "json", "health"]);
    h["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == repo)
        .cloned()
        .unwrap_or_else(|| panic!("no {repo} in {h:#}"))
}

/// The health view's drill entry of an organisation.
fn health_drill(c: &Cluster, org: &str) -> Value {
    let h = json_ok(c, &["--output", "json", "health"]);
    h["drills"]
        .as_array()
        .unwrap_or_else(|| panic!("no drills in {h:#}"))
        .iter()
        .find(|d| d["org"] == org)
        .cloned()
        .unwrap_or_else(|| panic!("no drill entry for {org} in {h:#}"))
}

/// The snapshot repository directory of a backup.
fn repo_dir(c: &Cluster, b: &BackupRecord) -> PathBuf {
    c.storage_root()
        .join(b.org_id.as_str())
        .join(b.repo_id.as_str())
}

/// The largest pack file of a repository (the data pack holding the mirror's pack), and its id.
fn largest_pack(repo: &Path) -> (PathBuf, String) {
    let mut packs = Vec::new();
    for shard in std::fs::read_dir(repo.join("data")).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for p in std::fs::read_dir(&shard).unwrap() {
            let p = p.unwrap().path();
            let len = std::fs::metadata(&p).unwrap().len();
            packs.push((len, p));
        }
    }
    let (_, p) = packs
        .into_iter()
        .max()
        .unwrap_or_else(|| panic!("no packs under {}", repo.display()));
    let id = p.file_name().unwrap().to_string_lossy().into_owned();
    (p, id)
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Flips 32 bytes in the middle of a file.
fn flip_bytes(p: &Path) {
    make_writable(p);
    let mut bytes = std::fs::read(p).unwrap();
    let mid = bytes.len() / 2;
    let end = (mid + 32).min(bytes.len());
    for b in &mut bytes[mid..end] {
        *b ^= 0xA5;
    }
    std::fs::write(p, bytes).unwrap();
}

/// Makes a blob go missing from the bare mirror at `code`: its packs are moved to `aside` and
/// unpacked into loose objects, and one blob's file is deleted. Returns the blob's id.
fn remove_a_blob(code: &Path, aside: &Path) -> String {
    let code = code.to_path_buf();
    let aside = aside.to_path_buf();
    assert!(code.join("HEAD").is_file(), "{}", code.display());
    std::fs::create_dir_all(&aside).unwrap();
    let pack_dir = code.join("objects/pack");
    for e in std::fs::read_dir(&pack_dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::rename(&p, aside.join(p.file_name().unwrap())).unwrap();
    }
    let _ = std::fs::remove_file(code.join("objects/info/commit-graph"));
    for e in std::fs::read_dir(&aside).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pack") {
            let out = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(&code)
                .args(["unpack-objects", "-q"])
                .stdin(std::fs::File::open(&p).unwrap())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    let objects = git_dir(
        &code,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname) %(objecttype)",
        ],
    );
    let blob = objects
        .lines()
        .find_map(|l| l.strip_suffix(" blob"))
        .unwrap_or_else(|| panic!("no blob in {objects}"))
        .to_string();
    std::fs::remove_file(code.join("objects").join(&blob[..2]).join(&blob[2..])).unwrap();
    blob
}

/// The worker's cache entry of a repository (one worker: `cache-0`).
fn cache_entry(c: &Cluster, repo_id: &str) -> PathBuf {
    c.dir.path().join("cache-0").join(repo_id)
}

fn git_dir(dir: &Path, args: &[&str]) -> String {
    let mut full = vec!["--git-dir", dir.to_str().unwrap()];
    full.extend_from_slice(args);
    git(dir.parent().unwrap(), &full).unwrap()
}

/// A bare repository `name` with one commit holding `bytes` pseudo-random bytes (replacing
/// whatever was there: a new, unrelated history).
fn random_repo(base: &Path, name: &str, seed: u64, bytes: usize) -> PathBuf {
    let bare = base.join(name);
    let _ = std::fs::remove_dir_all(&bare);
    git(
        base,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    )
    .unwrap();
    let work = base.join(format!("{name}.work"));
    let _ = std::fs::remove_dir_all(&work);
    git(base, &["init", "-q", "-b", "main", work.to_str().unwrap()]).unwrap();
    std::fs::write(work.join("README"), format!("seed {seed}\n")).unwrap();
    std::fs::write(work.join("data.bin"), pseudo_random_bytes(seed, bytes)).unwrap();
    git(&work, &["add", "-A"]).unwrap();
    git(&work, &["commit", "-q", "-m", "data"]).unwrap();
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]).unwrap();
    bare
}

/// Adds a commit with `bytes` more pseudo-random bytes to `name` (created by [`random_repo`]).
fn grow_repo(base: &Path, name: &str, seed: u64, bytes: usize) {
    let bare = base.join(name);
    let work = base.join(format!("{name}.work"));
    std::fs::write(work.join("more.bin"), pseudo_random_bytes(seed, bytes)).unwrap();
    git(&work, &["add", "-A"]).unwrap();
    git(&work, &["commit", "-q", "-m", "more"]).unwrap();
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_plain_git_sound_passes_and_each_break_fails_its_check() {
    let c = Cluster::start(1).await.unwrap();
    let core = c.core().clone();
    let src = tempfile::tempdir().unwrap();
    for name in ["sound", "gone", "fsck"] {
        rich_repo(src.path(), &format!("{name}.git")).unwrap();
    }
    random_repo(src.path(), "size.git", 11, 3 << 20);
    let daemon = GitDaemon::start(src.path()).unwrap();
    core.registry
        .add_org("acme", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    for name in ["sound", "gone", "fsck", "size"] {
        core.registry
            .add_repo(
                &format!("acme/{name}"),
                &daemon.url(&format!("{name}.git")),
                None,
            )
            .await
            .unwrap();
    }

    // First backups, two at a time (the worker has two slots).
    let (sound1, gone, fsck1, size1) = tokio::join!(
        backup(&c, "acme/sound", "full"),
        backup(&c, "acme/gone", "full"),
        backup(&c, "acme/fsck", "full"),
        backup(&c, "acme/size", "full"),
    );

    // 1. A sound backup: verified; plain git has no metadata (skipped, not applicable), the
    // first backup nothing to compare its size with; the second passes size_match too.
    for b in [&sound1, &gone, &fsck1, &size1] {
        assert_five(b);
        assert_eq!(status(b), VerifyStatus::Verified, "{:#?}", b.verification);
        assert_result(b, "zip_integrity", CheckOutcome::Pass);
        assert_result(b, "git_fsck", CheckOutcome::Pass);
        assert_result(b, "commit_count_match", CheckOutcome::Pass);
        let m = check(b, "metadata_valid");
        assert_eq!((m.result, m.incomplete), (CheckOutcome::Skipped, false));
        assert!(m.detail.contains("plain git"), "{m:#?}");
        let s = check(b, "size_match");
        assert_eq!(s.result, CheckOutcome::Skipped, "{s:#?}");
        assert!(s.detail.contains("first backup"), "{s:#?}");
    }
    let z = check(&sound1, "zip_integrity");
    assert!(z.detail.contains("read back"), "{z:#?}");
    let sound = backup(&c, "acme/sound", "full").await;
    assert_eq!(status(&sound), VerifyStatus::Verified);
    for name in [
        "zip_integrity",
        "git_fsck",
        "commit_count_match",
        "size_match",
    ] {
        assert_result(&sound, name, CheckOutcome::Pass);
    }
    let s = check(&sound, "size_match");
    assert!(!s.warning && s.detail.contains("previous"), "{s:#?}");

    // `backup verify` reads every pack back and prints the five checks; exit 0.
    let o = cli(&c, &["backup", "verify", sound.id.as_str()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}\n{}", stderr(&o));
    assert!(text.contains("verified"), "{text}");
    for name in CHECKS {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} not printed:\n{text}"
        );
    }
    let again = core.registry.get_backup(&sound.id).await.unwrap();
    let v = again.verification.as_ref().unwrap();
    assert_eq!(
        (v.status, v.run.as_str()),
        (VerifyStatus::Verified, "manual")
    );
    assert!(v.packs_read > 0, "{v:#?}");
    let row = health_row(&c, "acme/sound");
    assert_eq!(row["state"], "backed_up", "{row:#}");
    assert_eq!(row["verification"], "verified", "{row:#}");

    // 3. A pack deleted from storage: zip_integrity fails, saying it is gone.
    let (pack, pack_id) = largest_pack(&repo_dir(&c, &gone));
    std::fs::remove_file(&pack).unwrap();
    let o = cli(
        &c,
        &["--output", "json", "backup", "verify", gone.id.as_str()],
    );
    assert_eq!(o.status.code(), Some(5), "{}\n{}", stdout(&o), stderr(&o));
    let b = json_of(&o);
    assert_eq!(b["verification"]["status"], "failed", "{b:#}");
    assert_all_report(&b);
    let z = json_check(&b, "zip_integrity");
    assert_eq!(z["result"], "fail", "{z:#}");
    let detail = z["detail"].as_str().unwrap();
    assert!(
        detail.contains(&pack_id[..16]) && (detail.contains("missing") || detail.contains("gone")),
        "the detail names the missing pack {pack_id}: {detail}"
    );
    // A plain text run prints the failing check and exits 5 too.
    let o = cli(&c, &["backup", "verify", gone.id.as_str()]);
    assert_eq!(o.status.code(), Some(5));
    assert!(stdout(&o).contains("zip_integrity"), "{}", stdout(&o));
    // The snapshot file itself gone: every check fails, saying the backup cannot be restored
    // (not "could not run", and not retried).
    let snapshot = gone.snapshot_id.clone().unwrap();
    std::fs::remove_file(
        repo_dir(&c, &gone)
            .join("snapshots")
            .join(snapshot.as_str()),
    )
    .unwrap();
    let o = cli(
        &c,
        &["--output", "json", "backup", "verify", gone.id.as_str()],
    );
    assert_eq!(o.status.code(), Some(5), "{}\n{}", stdout(&o), stderr(&o));
    let b = json_of(&o);
    for name in [
        "zip_integrity",
        "git_fsck",
        "metadata_valid",
        "commit_count_match",
    ] {
        let ch = json_check(&b, name);
        assert_eq!(ch["result"], "fail", "{name}: {b:#}");
        assert!(
            ch["detail"]
                .as_str()
                .unwrap()
                .contains("missing from storage"),
            "{name}: {b:#}"
        );
    }

    // 4. An object gone from the mirror before the snapshot: the packs of the cache entry
    // unpacked into loose objects, one blob's file deleted; nothing new at the source.
    let code = cache_entry(&c, fsck1.repo_id.as_str()).join(manifest::CODE_DIR);
    let blob = remove_a_blob(&code, &src.path().join("packs-aside"));
    let fsck2 = backup(&c, "acme/fsck", "incremental").await;
    assert_five(&fsck2);
    assert_eq!(
        status(&fsck2),
        VerifyStatus::Failed,
        "{:#?}",
        fsck2.verification
    );
    let f = check(&fsck2, "git_fsck");
    assert_eq!(f.result, CheckOutcome::Fail, "{f:#?}");
    assert!(
        f.detail.contains(&blob) && f.detail.contains("missing"),
        "the detail names the missing blob {blob}: {f:#?}"
    );
    for name in ["zip_integrity", "commit_count_match", "size_match"] {
        let r = check(&fsck2, name);
        assert!(!r.detail.is_empty(), "{r:#?}");
    }
    assert_result(&fsck2, "zip_integrity", CheckOutcome::Pass);
    assert_result(&fsck2, "commit_count_match", CheckOutcome::Pass);
    let row = health_row(&c, "acme/fsck");
    assert_eq!(row["state"], "error", "{row:#}");
    assert!(
        row["message"].as_str().unwrap().contains("git_fsck fail"),
        "{row:#}"
    );
    // The next backup clones the damaged mirror afresh from the source: sound again.
    let fsck3 = backup(&c, "acme/fsck", "incremental").await;
    assert_eq!(
        status(&fsck3),
        VerifyStatus::Verified,
        "{:#?}",
        fsck3.verification
    );
    assert_eq!(health_row(&c, "acme/fsck")["state"], "backed_up");
    // Damaged again, and this time the cache entry is lost too (a worker without it): the
    // parent snapshot's mirror failed git_fsck, so the worker clones from the source rather
    // than seeding from it.
    remove_a_blob(&code, &src.path().join("packs-aside-2"));
    let fsck4 = backup(&c, "acme/fsck", "incremental").await;
    assert_result(&fsck4, "git_fsck", CheckOutcome::Fail);
    std::fs::remove_dir_all(cache_entry(&c, fsck1.repo_id.as_str())).unwrap();
    let fsck5 = backup(&c, "acme/fsck", "incremental").await;
    assert_eq!(
        status(&fsck5),
        VerifyStatus::Verified,
        "{:#?}",
        fsck5.verification
    );

    // 6. Shrink to a tenth: the source's history replaced by a small one. The mirror drops what
    // no ref reaches any more (most of it), so the backup shrinks with the source.
    random_repo(src.path(), "size.git", 12, 300 << 10);
    let small = backup(&c, "acme/size", "full").await;
    assert!(
        small.size_bytes * 5 < size1.size_bytes,
        "{} then {}",
        size1.size_bytes,
        small.size_bytes
    );
    assert_five(&small);
    assert_eq!(status(&small), VerifyStatus::Failed);
    let s = check(&small, "size_match");
    assert_eq!(s.result, CheckOutcome::Fail, "{s:#?}");
    assert!(
        s.detail.contains("shrank") && s.detail.contains("KiB") && s.detail.contains("MiB"),
        "both sizes: {s:#?}"
    );
    for name in ["zip_integrity", "git_fsck", "commit_count_match"] {
        assert_result(&small, name, CheckOutcome::Pass);
    }
    let row = health_row(&c, "acme/size");
    assert_eq!(row["state"], "error", "{row:#}");
    assert!(
        row["message"].as_str().unwrap().contains("size_match fail"),
        "{row:#}"
    );
    // Growth above 200%: a pass with a warning, and the timeline's size jump.
    grow_repo(src.path(), "size.git", 13, 2 << 20);
    let big = backup(&c, "acme/size", "incremental").await;
    let s = check(&big, "size_match");
    assert_eq!((s.result, s.warning), (CheckOutcome::Pass, true), "{s:#?}");
    assert!(s.detail.contains("grew"), "{s:#?}");
    assert_eq!(
        status(&big),
        VerifyStatus::Verified,
        "{:#?}",
        big.verification
    );
    let t = json_ok(&c, &["--output", "json", "timeline", "acme/size"]);
    let entry = t
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["backup_id"] == big.id.as_str())
        .unwrap_or_else(|| panic!("{t:#}"));
    assert_eq!(entry["size_jump"], true, "{entry:#}");
    assert_eq!(entry["verification"], "verified", "{entry:#}");
    let shrunk = t
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["backup_id"] == small.id.as_str())
        .unwrap();
    assert_eq!(shrunk["verification"], "failed", "{shrunk:#}");
    let row = health_row(&c, "acme/size");
    assert_eq!(row["state"], "backed_up", "{row:#}");
    c.shutdown().await;
}

/// 2. Bytes flipped in a pack the snapshot references. Checked softly (every expectation is
/// collected, then reported together), so one run shows what `backup verify`, the health view
/// and a drill each make of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_flipped_pack_fails_zip_integrity_and_the_drill() {
    let c = Cluster::start(1).await.unwrap();
    let core = c.core().clone();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "flip.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    core.registry
        .add_org("acme", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    core.registry
        .add_repo("acme/flip", &daemon.url("flip.git"), None)
        .await
        .unwrap();
    let flip = backup(&c, "acme/flip", "full").await;
    assert_eq!(
        status(&flip),
        VerifyStatus::Verified,
        "{:#?}",
        flip.verification
    );
    let (pack, pack_id) = largest_pack(&repo_dir(&c, &flip));
    flip_bytes(&pack);
    let mut problems: Vec<String> = Vec::new();

    let o = cli(
        &c,
        &["--output", "json", "backup", "verify", flip.id.as_str()],
    );
    if o.status.code() != Some(5) {
        problems.push(format!("backup verify exited {:?}", o.status.code()));
    }
    let b = json_of(&o);
    if b["verification"]["status"] != "failed" {
        problems.push(format!("status {}", b["verification"]["status"]));
    }
    let z = json_check(&b, "zip_integrity");
    let detail = z["detail"].as_str().unwrap_or("").to_string();
    if z["result"] != "fail" || !detail.contains(&pack_id[..16]) {
        problems.push(format!(
            "zip_integrity should fail naming pack {pack_id}; it is {} ({}): {}",
            z["result"],
            if z["incomplete"] == true {
                "incomplete"
            } else {
                "complete"
            },
            detail.chars().take(400).collect::<String>()
        ));
    }
    for c in json_checks(&b) {
        if c["result"] == "skipped" && c["incomplete"] == true {
            problems.push(format!(
                "{} did not run: {}",
                c["name"],
                c["detail"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
    }
    let row = health_row(&c, "acme/flip");
    if row["state"] != "error"
        || !row["message"]
            .as_str()
            .unwrap_or("")
            .contains("zip_integrity fail")
    {
        problems.push(format!(
            "health: {} {}",
            row["state"],
            row["message"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }

    // A drill of the damaged backup fails its restore check, saying why.
    let o = cli(
        &c,
        &[
            "--output",
            "json",
            "drill",
            "run",
            "acme",
            "--backup",
            flip.id.as_str(),
        ],
    );
    if o.status.code() != Some(5) {
        problems.push(format!("drill run exited {:?}", o.status.code()));
    }
    let d = json_of(&o);
    let restore = d["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "restore").cloned());
    match restore {
        Some(r) if r["result"] == "fail" => {}
        other => problems.push(format!(
            "the drill's restore check should fail; drill {} checks {:?} error {}",
            d["status"],
            other,
            d["error"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
        )),
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    c.shutdown().await;
}

/// Rewrites the read-back ledger of a repository as if every pack was last read `age_ms` ago
/// (the worker judges pack age by its own clock, which the test cannot move).
fn age_ledger(repo: &Path, age_ms: i64) {
    let path = repo.join("verify/readback.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let then = chrono::Utc::now().timestamp_millis() - age_ms;
    for (_, t) in v["packs"].as_object_mut().unwrap().iter_mut() {
        *t = Value::from(then);
    }
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_drills_pass_then_fail_and_the_rotation_finds_a_damaged_pack() {
    let c = Cluster::start_with_http(1).await.unwrap();
    let core = c.core().clone();
    let src = tempfile::tempdir().unwrap();
    for name in ["ok", "broken", "rot"] {
        rich_repo(src.path(), &format!("{name}.git")).unwrap();
    }
    let daemon = GitDaemon::start(src.path()).unwrap();
    core.registry
        .add_org("acme", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    for name in ["ok", "broken", "rot"] {
        core.registry
            .add_repo(
                &format!("acme/{name}"),
                &daemon.url(&format!("{name}.git")),
                None,
            )
            .await
            .unwrap();
    }
    let (ok, broken, rot) = tokio::join!(
        backup(&c, "acme/ok", "full"),
        backup(&c, "acme/broken", "full"),
        backup(&c, "acme/rot", "full"),
    );
    for b in [&ok, &broken, &rot] {
        assert_eq!(status(b), VerifyStatus::Verified, "{:#?}", b.verification);
    }

    // 8. A drill of a sound backup passes its four checks.
    let o = cli(&c, &["drill", "run", "acme", "--repo", "ok"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let drills = json_ok(&c, &["--output", "json", "drill", "list", "acme"]);
    let d = &drills.as_array().unwrap_or_else(|| panic!("{drills:#}"))[0];
    assert_eq!(d["status"], "passed", "{d:#}");
    assert_eq!(d["repo"], "acme/ok", "{d:#}");
    assert_eq!(d["backup_id"], ok.id.as_str(), "{d:#}");
    let checks: Vec<(&str, &str)> = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("restore", "pass"),
            ("ref_tips", "pass"),
            ("object_count", "pass"),
            ("item_counts", "pass"),
        ],
        "{d:#}"
    );
    let t = json_ok(&c, &["--output", "json", "timeline", "acme/ok"]);
    let drill_entry = t
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "drill")
        .unwrap_or_else(|| panic!("no drill in the timeline: {t:#}"));
    assert_eq!(drill_entry["backup_id"], ok.id.as_str(), "{drill_entry:#}");
    assert_eq!(drill_entry["verification"], "passed", "{drill_entry:#}");
    let hd = health_drill(&c, "acme");
    assert_eq!(hd["status"], "passed", "{hd:#}");
    assert_eq!(hd["repo"], "acme/ok", "{hd:#}");
    let metrics = super::health::http_get(c.http_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("repovault_drill_passed{org=\"acme\"} 1"),
        "{metrics}"
    );

    // A drill of a backup with a pack deleted from storage fails, saying why.
    let (pack, pack_id) = largest_pack(&repo_dir(&c, &broken));
    std::fs::remove_file(&pack).unwrap();
    let o = cli(
        &c,
        &[
            "--output",
            "json",
            "drill",
            "run",
            "acme",
            "--backup",
            broken.id.as_str(),
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}\n{}", stdout(&o), stderr(&o));
    let d = json_of(&o);
    assert_eq!(d["status"], "failed", "{d:#}");
    let restore = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "restore")
        .cloned()
        .unwrap_or_else(|| panic!("no restore check: {d:#}"));
    assert_eq!(restore["result"], "fail", "{d:#}");
    let why = restore["detail"].as_str().unwrap();
    assert!(
        why.contains("cannot be restored") || why.contains(&pack_id[..8]),
        "the restore check says why: {why}"
    );
    let hd = health_drill(&c, "acme");
    assert_eq!(hd["status"], "failed", "{hd:#}");
    assert_eq!(hd["backup_id"], broken.id.as_str(), "{hd:#}");
    let metrics = super::health::http_get(c.http_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("repovault_drill_passed{org=\"acme\"} 0"),
        "{metrics}"
    );
    assert!(hd["detail"].as_str().unwrap().contains("restore"), "{hd:#}");
    let drills = json_ok(&c, &["--output", "json", "drill", "list", "acme"]);
    let statuses: Vec<&str> = drills
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "passed"], "newest first: {drills:#}");

    // 9. The read-back rotation. `rot` gets a flipped pack, and its ledger is aged past the
    // rotation's pack age (23 days), as if the time the coordinator is told had passed.
    let (pack, pack_id) = largest_pack(&repo_dir(&c, &rot));
    flip_bytes(&pack);
    age_ledger(&repo_dir(&c, &rot), 24 * DAY_MS);
    let later = chrono::Utc::now().timestamp_millis() + 8 * DAY_MS;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        core.verification.run_rotation_once(later).await.unwrap();
        let mut visited = true;
        for b in [&ok, &rot] {
            visited &= core
                .store
                .maintenance(&b.repo_id)
                .await
                .unwrap()
                .last_readback_at_ms
                .is_some();
        }
        // The visit is recorded before the damage is applied to the backups: wait for both.
        let rot_status = core
            .registry
            .get_backup(&rot.id)
            .await
            .unwrap()
            .verification;
        if visited && rot_status.as_ref().map(|v| v.status) == Some(VerifyStatus::Failed) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotation did not visit acme/ok and acme/rot, or did not fail acme/rot's \
             backup (visited: {visited}): {rot_status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = core.store.maintenance(&ok.repo_id).await.unwrap();
    assert!(m.readback_damage.is_none(), "{m:#?}");
    let ok_now = core.registry.get_backup(&ok.id).await.unwrap();
    assert_eq!(status(&ok_now), VerifyStatus::Verified);
    let m = core.store.maintenance(&rot.repo_id).await.unwrap();
    assert!(
        m.readback_damage
            .as_deref()
            .is_some_and(|d| d.contains(&pack_id[..16])),
        "{m:#?}"
    );
    let rot_now = core.registry.get_backup(&rot.id).await.unwrap();
    let v = rot_now.verification.as_ref().unwrap();
    assert_eq!(v.status, VerifyStatus::Failed, "{v:#?}");
    let z = check(&rot_now, "zip_integrity");
    assert_eq!(z.result, CheckOutcome::Fail, "{z:#?}");
    assert!(
        z.detail.contains("read-back rotation") && z.detail.contains(&pack_id[..16]),
        "{z:#?}"
    );
    // The other checks keep what they said at backup time.
    for name in ["git_fsck", "commit_count_match"] {
        assert_result(&rot_now, name, CheckOutcome::Pass);
    }
    let row = health_row(&c, "acme/rot");
    assert_eq!(row["state"], "error", "{row:#}");
    assert!(
        row["message"]
            .as_str()
            .unwrap()
            .contains("zip_integrity fail"),
        "{row:#}"
    );
    c.shutdown().await;
}

/// The organisation key in a 0600 file, for stock restic.
async fn key_file(c: &Cluster) -> (PathBuf, repovault_common::secret::Secret) {
    let path = c.dir.path().join("acme.key");
    let (_, key) = c.core().registry.export_org_key("acme").await.unwrap();
    if !path.exists() {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(key.expose().as_bytes()).unwrap();
    }
    (path, key)
}

fn find_manifest(dir: &Path) -> Option<PathBuf> {
    if dir.join(manifest::MANIFEST_FILE).is_file() {
        return Some(dir.to_path_buf());
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .find_map(|p| find_manifest(&p))
}

/// The first issue document (`meta/issues/<shard>/<n>.json`) under `tree`.
fn first_issue(tree: &Path) -> PathBuf {
    let mut all = Vec::new();
    let mut stack = vec![tree.join("meta/issues")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                all.push(p);
            }
        }
    }
    all.sort();
    all.into_iter()
        .next()
        .unwrap_or_else(|| panic!("no issue documents under {}", tree.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_github_sound_passes_and_broken_metadata_fails_metadata_valid() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(1).await.unwrap();
    add_acme_org(&c, &ready, &ready.token);

    // 1. Sound GitHub backups: all five pass from the second on.
    let first = backup(&c, "acme/widgets", "full").await;
    assert_five(&first);
    assert_eq!(
        status(&first),
        VerifyStatus::Verified,
        "{:#?}",
        first.verification
    );
    let second = backup(&c, "acme/widgets", "incremental").await;
    assert_five(&second);
    assert_eq!(
        status(&second),
        VerifyStatus::Verified,
        "{:#?}",
        second.verification
    );
    for name in CHECKS {
        assert_result(&second, name, CheckOutcome::Pass);
    }
    // The forge's figure is the mirror's own count of the default branch.
    let mirror = cache_entry(&c, second.repo_id.as_str()).join(manifest::CODE_DIR);
    let commits = git_dir(&mirror, &["rev-list", "--count", "HEAD"]);
    let cc = check(&second, "commit_count_match");
    assert!(
        cc.detail
            .contains(&format!("holds {} commits", commits.trim()))
            && cc.detail.contains("as the forge counts"),
        "{commits} commits: {cc:#?}"
    );
    let m = check(&second, "metadata_valid");
    assert!(
        m.detail
            .contains(&format!("{} issues", second.counts.issues)),
        "{m:#?}"
    );
    let o = cli(&c, &["backup", "verify", second.id.as_str()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}\n{}", stderr(&o));
    for name in CHECKS {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} not printed:\n{text}"
        );
    }
    let row = health_row(&c, "acme/widgets");
    assert_eq!(row["state"], "backed_up", "{row:#}");
    assert_eq!(row["verification"], "verified", "{row:#}");

    // 5a. A metadata document truncated in the cache entry between two backups; nothing
    // changed at the source, so the incremental carries the truncated document over.
    let entry = cache_entry(&c, second.repo_id.as_str());
    let doc = first_issue(&entry);
    let rel = doc.strip_prefix(&entry).unwrap().display().to_string();
    let bytes = std::fs::read(&doc).unwrap();
    std::fs::write(&doc, &bytes[..bytes.len() / 2]).unwrap();
    let third = backup(&c, "acme/widgets", "incremental").await;
    assert_five(&third);
    assert_eq!(
        status(&third),
        VerifyStatus::Failed,
        "{:#?}",
        third.verification
    );
    let m = check(&third, "metadata_valid");
    assert_eq!(m.result, CheckOutcome::Fail, "{m:#?}");
    assert!(
        m.detail.contains(&rel) && m.detail.contains("does not parse"),
        "names {rel}: {m:#?}"
    );
    for name in [
        "zip_integrity",
        "git_fsck",
        "commit_count_match",
        "size_match",
    ] {
        assert_result(&third, name, CheckOutcome::Pass);
    }
    let row = health_row(&c, "acme/widgets");
    assert_eq!(row["state"], "error", "{row:#}");
    assert!(
        row["message"]
            .as_str()
            .unwrap()
            .contains("metadata_valid fail"),
        "{row:#}"
    );

    // 5b. The manifest's counts disagreeing with the documents cannot be provoked through the
    // cache (each backup writes its manifest from the export's own count), so the stored
    // backup is altered: the sound second backup restored by stock restic, `counts.issues`
    // raised, stored as a new snapshot, and verified by the worker's on-demand verification.
    let (key_path, key) = key_file(&c).await;
    let repo_path = repo_dir(&c, &second);
    let scratch = tempfile::tempdir().unwrap();
    let restored = scratch.path().join("restored");
    restic(
        &repo_path,
        &key_path,
        &[
            "restore",
            second.snapshot_id.as_ref().map(|s| s.as_str()).unwrap(),
            "--target",
            restored.to_str().unwrap(),
        ],
    )
    .unwrap();
    let tree = find_manifest(&restored).expect("a manifest.json in the restored tree");
    let mpath = tree.join(manifest::MANIFEST_FILE);
    let mut mv: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let issues = mv["counts"]["issues"].as_u64().unwrap();
    mv["counts"]["issues"] = Value::from(issues + 1);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&mv).unwrap()).unwrap();
    let spec = RepoSpec {
        operator: StorageConfig::fs(c.storage_root().display().to_string())
            .operator()
            .unwrap(),
        path: format!("{}/{}", second.org_id, second.repo_id),
    };
    let (work, tree2) = (scratch.path().join("verify"), tree.clone());
    let checks = tokio::task::spawn_blocking(move || {
        let (repo, _) = SnapshotRepo::open(&spec, RepoKey::Password(&key), false).unwrap();
        let request = BackupRequest {
            host: manifest::SNAPSHOT_HOST.into(),
            label: "altered".into(),
            tags: vec!["test=altered-counts".into()],
            parent: None,
            as_path: manifest::SNAPSHOT_PATH.into(),
            exclude: Vec::new(),
        };
        let summary = repo.backup(&tree2, &request, &|| Ok(())).unwrap();
        let mut ledger = ReadBackLedger::new();
        let interrupt = AtomicBool::new(false);
        let how = repovault_worker::verify::archive::Reading {
            now_ms: chrono::Utc::now().timestamp_millis(),
            progress: &|_, _| {},
            interrupt: &interrupt,
        };
        let (checks, _) =
            repovault_worker::verify::stored(&repo, &summary.snapshot_id, &work, &mut ledger, &how)
                .unwrap();
        checks
    })
    .await
    .unwrap();
    let by_name = |n: &str| {
        checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("no {n} in {checks:#?}"))
    };
    use repovault_worker::verify::Outcome;
    let m = by_name("metadata_valid");
    assert_eq!(m.result, Outcome::Fail, "{m:#?}");
    assert!(
        m.detail.contains(&format!(
            "the manifest counts {} issues, the documents hold {issues}",
            issues + 1
        )),
        "{m:#?}"
    );
    for n in ["zip_integrity", "git_fsck", "commit_count_match"] {
        assert_eq!(by_name(n).result, Outcome::Pass, "{:#?}", by_name(n));
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_a_token_that_cannot_read_settings_is_not_verified() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(1).await.unwrap();
    // 7. A member without administration rights (seeds/acme.toml: dev).
    add_acme_org(&c, &ready, "ghp_acmeDev000000000000000000000000000");
    let b = backup(&c, "acme/widgets", "full").await;
    assert_five(&b);
    assert_eq!(
        b.components["settings"].status,
        repovault_common::domain::ComponentState::Skipped
    );
    let m = check(&b, "metadata_valid");
    assert_eq!(
        (m.result, m.incomplete),
        (CheckOutcome::Skipped, true),
        "{m:#?}"
    );
    assert!(m.detail.contains("settings"), "names settings: {m:#?}");
    assert_eq!(status(&b), VerifyStatus::Failed, "{:#?}", b.verification);
    for name in ["zip_integrity", "git_fsck", "commit_count_match"] {
        assert_result(&b, name, CheckOutcome::Pass);
    }
    let row = health_row(&c, "acme/widgets");
    assert_eq!(row["verification"], "failed", "{row:#}");
    assert_ne!(row["state"], "backed_up", "{row:#}");
    c.shutdown().await;
}

/// The packs (full id, size) a backup's snapshot references, smallest first, read with the
/// organisation key as stock tools would.
async fn packs_of(c: &Cluster, b: &BackupRecord) -> Vec<(String, u64)> {
    let (_, key) = key_file(c).await;
    let spec = RepoSpec {
        operator: StorageConfig::fs(c.storage_root().display().to_string())
            .operator()
            .unwrap(),
        path: format!("{}/{}", b.org_id, b.repo_id),
    };
    let snapshot = b.snapshot_id.clone().expect("a snapshot");
    tokio::task::spawn_blocking(move || {
        let (repo, _) = SnapshotRepo::open(&spec, RepoKey::Password(&key), false).unwrap();
        let mut packs = repo.snapshot_packs(snapshot.as_str()).unwrap().packs;
        packs.sort_by_key(|(id, size)| (*size, id.clone()));
        packs
    })
    .await
    .unwrap()
}

/// The README's remedy for a damaged pack, for a data pack and then a tree pack: `backup
/// verify` fails naming the pack and marks every backup using it failed; the pack leaves the
/// index, so the next full backup stores that data again (not "read back before"), is
/// verified, and restores exactly. Before the fix the second backup deduplicated against the
/// damaged pack, was reported verified and could not be restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_a_damaged_pack_is_never_trusted_again() {
    let c = Cluster::start(1).await.unwrap();
    let core = c.core().clone();
    let src = tempfile::tempdir().unwrap();
    let source = rich_repo(src.path(), "heal.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    core.registry
        .add_org("acme", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    core.registry
        .add_repo("acme/heal", &daemon.url("heal.git"), None)
        .await
        .unwrap();
    let first = backup(&c, "acme/heal", "full").await;
    assert_eq!(status(&first), VerifyStatus::Verified);
    let dir = repo_dir(&c, &first);
    let expected = repovault_tests::fixtures::refs(&source).unwrap();

    let mut damaged_backups = vec![first.clone()];
    // First the largest pack the latest snapshot uses (the mirror's data), then its smallest
    // (with these fixtures, the pack of trees).
    for round in ["largest pack", "smallest pack"] {
        let latest = damaged_backups.last().unwrap().clone();
        let packs = packs_of(&c, &latest).await;
        let (pack_id, _) = if round == "largest pack" {
            packs.last().unwrap().clone()
        } else {
            packs.first().unwrap().clone()
        };
        let pack = dir.join("data").join(&pack_id[..2]).join(&pack_id);
        let mut users = Vec::new();
        for b in &damaged_backups[..damaged_backups.len() - 1] {
            if packs_of(&c, b).await.iter().any(|(id, _)| *id == pack_id) {
                users.push(b.id.clone());
            }
        }
        flip_bytes(&pack);
        let o = cli(
            &c,
            &["--output", "json", "backup", "verify", latest.id.as_str()],
        );
        assert_eq!(o.status.code(), Some(5), "{round}: {}", stderr(&o));
        let z = json_check(&json_of(&o), "zip_integrity");
        assert_eq!(z["result"], "fail", "{round}: {z:#}");
        assert!(
            z["detail"].as_str().unwrap().contains(&pack_id),
            "{round}: {z:#}"
        );
        assert!(!pack.exists(), "{round}: the damaged pack left data/");
        assert!(
            dir.join(format!("verify/damaged/pack-{pack_id}.json"))
                .is_file(),
            "{round}: the finding is recorded"
        );

        // Every earlier backup whose snapshot used the pack is failed too, naming it.
        for id in &users {
            let now = core.registry.get_backup(id).await.unwrap();
            assert_eq!(status(&now), VerifyStatus::Failed, "{round}: {id}");
            let z = check(&now, "zip_integrity");
            assert!(z.detail.contains(&pack_id), "{round}: {z:#?}");
        }
        let latest_now = core.registry.get_backup(&latest.id).await.unwrap();
        assert_eq!(status(&latest_now), VerifyStatus::Failed, "{round}");

        // The README's remedy: a new full backup stores the data again and is verified.
        let healed = backup(&c, "acme/heal", "full").await;
        assert_eq!(
            status(&healed),
            VerifyStatus::Verified,
            "{round}: {:#?}",
            healed.verification
        );
        assert!(
            check(&healed, "zip_integrity").detail.contains("read back")
                && !check(&healed, "zip_integrity")
                    .detail
                    .starts_with("read back 0 "),
            "{round}: the re-stored data is read back: {:#?}",
            check(&healed, "zip_integrity")
        );
        let o = cli(
            &c,
            &["--output", "json", "backup", "verify", healed.id.as_str()],
        );
        assert_eq!(o.status.code(), Some(0), "{round}: {}", stdout(&o));

        // And restores exactly.
        let name = format!("restored-{}.git", damaged_backups.len());
        git(
            daemon.base(),
            &["init", "-q", "--bare", "-b", "main", &name],
        )
        .unwrap();
        let r = core
            .restores
            .start_restore(
                &healed.id,
                repovault_common::domain::RestoreType::FullRepo,
                repovault_common::domain::RestoreTarget::New,
                &daemon.url(&name),
                None,
            )
            .await
            .unwrap();
        let r = c.wait_restore(&r.id, WAIT).await.unwrap();
        assert_eq!(r.status, Status::Completed, "{round}: {:?}", r.error);
        let restored = daemon.base().join(&name);
        let got = repovault_tests::fixtures::refs(&restored).unwrap();
        let want: std::collections::BTreeMap<_, _> = expected
            .iter()
            .filter(|(k, _)| !(k.starts_with("refs/pull/") && k.ends_with("/merge")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(got, want, "{round}");
        git_dir(&restored, &["fsck", "--full", "--strict"]);
        damaged_backups.push(healed);
    }
    c.shutdown().await;
}

/// A pack in the worker's cache damaged between two backups (bytes flipped in its middle, as
/// disk damage or tampering leaves it), with nothing new at the source: the next backup finds
/// it (git_fsck fails, naming the pack's damage) rather than carrying the damage on, and the one
/// after repairs the mirror from the source. Whatever a backup checks of an unchanged mirror, a
/// pack whose bytes changed since it was checked must be found. Each backup's git_fsck says
/// what it covered: the first checks the new mirror in full, an unchanged one nothing new, the
/// one after the damage everything because a pack changed on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_a_cache_pack_damaged_between_backups_is_found() {
    let c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    random_repo(src.path(), "quiet.git", 23, 1 << 20);
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("acme/quiet", &daemon.url("quiet.git"))
        .await
        .unwrap();
    let first = backup(&c, "acme/quiet", "full").await;
    assert_eq!(status(&first), VerifyStatus::Verified, "{first:#?}");
    let covered = |b: &BackupRecord, want: &str| {
        let c = check(b, "git_fsck");
        assert!(c.detail.contains(want), "git_fsck of {}: {c:#?}", b.id);
    };
    covered(&first, "full check (first check of this mirror)");
    let unchanged = backup(&c, "acme/quiet", "incremental").await;
    assert_eq!(status(&unchanged), VerifyStatus::Verified, "{unchanged:#?}");
    covered(
        &unchanged,
        "0 new objects, 0 moved refs; full check just now",
    );

    let packs = cache_entry(&c, first.repo_id.as_str())
        .join(manifest::CODE_DIR)
        .join("objects/pack");
    let pack = std::fs::read_dir(&packs)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack in the cache entry");
    flip_bytes(&pack);

    let second = backup(&c, "acme/quiet", "incremental").await;
    assert_eq!(status(&second), VerifyStatus::Failed, "{second:#?}");
    assert_result(&second, "git_fsck", CheckOutcome::Fail);
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        check(&second, "git_fsck").detail.contains(&name),
        "{:#?}",
        check(&second, "git_fsck")
    );
    let third = backup(&c, "acme/quiet", "incremental").await;
    assert_eq!(
        status(&third),
        VerifyStatus::Verified,
        "the mirror is repaired from the source: {:#?}",
        third.verification
    );
}
