//! Tests against a tempdir fs operator (and the stock `restic`, when installed).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::secret::Secret;

pub(super) const PASSWORD: &str = "correct horse battery staple";

/// A repository in a tempdir and a runtime to call it from (shared with `readback_tests`).
pub(super) struct Env {
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) storage: tempfile::TempDir,
    pub(super) work: tempfile::TempDir,
    pub(super) spec: RepoSpec,
    pub(super) password: Secret,
}

impl Env {
    /// A runtime (entered on the test thread, which is not one of its workers, as with
    /// spawn_blocking) and an fs operator rooted at a tempdir.
    pub(super) fn new() -> (Env, tokio::runtime::EnterGuard<'static>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        // Leak a handle so the guard can be 'static; the runtime itself lives in Env.
        let handle: &'static tokio::runtime::Handle = Box::leak(Box::new(rt.handle().clone()));
        let guard = handle.enter();
        let storage = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        let root = storage.path().to_str().expect("utf-8 tempdir");
        let operator =
            opendal::Operator::new(opendal::services::Fs::default().root(root)).expect("fs");
        let spec = RepoSpec {
            operator,
            path: "org-1/repo-1".into(),
        };
        (
            Env {
                rt,
                storage,
                work,
                spec,
                password: Secret::new(PASSWORD),
            },
            guard,
        )
    }

    pub(super) fn repo_dir(&self) -> PathBuf {
        self.storage.path().join("org-1/repo-1")
    }

    pub(super) fn open(&self) -> (SnapshotRepo, Secret) {
        SnapshotRepo::open(&self.spec, RepoKey::Password(&self.password), true).expect("open")
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Runs stock restic on the repository with `args`, or `None` when restic is not on PATH
    /// (CI installs it; a developer without it skips the cross-checks).
    pub(super) fn restic(&self, args: &[&str]) -> Option<std::process::Output> {
        let restic = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("restic"))
                .find(|p| p.is_file())
        });
        let Some(restic) = restic else {
            println!("note: restic is not on PATH, skipping the cross-check with restic");
            return None;
        };
        let out = std::process::Command::new(restic)
            .arg("-r")
            .arg(self.repo_dir())
            .args(args)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("RESTIC_CACHE_DIR", self.path("restic-cache"))
            .output()
            .expect("run restic");
        Some(out)
    }
}

pub(super) fn request(tags: &[&str], parent: Option<String>) -> BackupRequest {
    BackupRequest {
        host: "repovault".into(),
        label: "org-1/repo-1".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        parent,
        as_path: "/repovault".into(),
        exclude: Vec::new(),
    }
}

fn no_fence() -> Result<(), String> {
    Ok(())
}

/// Deterministic pseudo-random bytes (xorshift): incompressible, no extra dependency.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A source tree shaped like a backup: a bare mirror, metadata, a manifest.
pub(super) fn make_source(dir: &Path) {
    let files: &[(&str, Vec<u8>)] = &[
        ("manifest.json", br#"{"format_version":1}"#.to_vec()),
        ("code.git/HEAD", b"ref: refs/heads/main\n".to_vec()),
        ("code.git/packed-refs", b"".to_vec()),
        (
            "code.git/objects/pack/pack-1.pack",
            noise(5 * 1024 * 1024 + 17, 42),
        ),
        ("meta/issues/12/12345.json", br#"{"n":12345}"#.to_vec()),
        ("meta/a/b/c/d/deep.json", b"deep".to_vec()),
    ];
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
    }
    std::fs::create_dir_all(dir.join("code.git/refs/tags")).expect("empty dir");
}

/// Relative path -> Some(contents) for files, None for directories.
pub(super) fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("prefix").to_path_buf();
            if entry.file_type().expect("type").is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub(super) fn snapshot_files(env: &Env) -> usize {
    std::fs::read_dir(env.repo_dir().join("snapshots"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn round_trip_backup_and_restore() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let (repo, _) = env.open();

    let summary = repo
        .backup(&src, &request(&["type=full"], None), &no_fence)
        .expect("backup");
    assert_eq!(summary.snapshot_id.len(), 64);
    assert_eq!(summary.files_new, 6);
    assert!(summary.total_bytes > 5 * 1024 * 1024);
    assert!(
        summary.data_added_packed > 5 * 1024 * 1024,
        "noise does not compress"
    );

    let snaps = repo.snapshots().expect("snapshots");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].id, summary.snapshot_id);
    assert_eq!(snaps[0].paths, vec!["/repovault".to_string()]);
    assert_eq!(snaps[0].hostname, "repovault");
    assert_eq!(snaps[0].parent, None);

    // Whole tree, bit for bit, including the empty file and the empty directory.
    let dest = env.path("restored");
    let r = repo
        .restore(&summary.snapshot_id, "", &dest)
        .expect("restore");
    assert_eq!(tree(&dest), tree(&src));
    assert_eq!(r.files, 6);
    // No temporary left beside the destination.
    let leftovers: Vec<_> = std::fs::read_dir(env.work.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty());

    // A subdirectory and a single file.
    let dest_git = env.path("mirror.git");
    repo.restore(&summary.snapshot_id, "code.git", &dest_git)
        .expect("restore subdir");
    assert_eq!(tree(&dest_git), tree(&src.join("code.git")));
    let dest_file = env.path("m.json");
    repo.restore(&summary.snapshot_id, "/manifest.json", &dest_file)
        .expect("restore file");
    assert_eq!(
        std::fs::read(&dest_file).expect("read"),
        std::fs::read(src.join("manifest.json")).expect("read")
    );

    // The destination must not exist.
    assert!(matches!(
        repo.restore(&summary.snapshot_id, "", &dest),
        Err(RepoError::DestinationExists(_))
    ));

    assert_eq!(
        repo.read_file(&summary.snapshot_id, "manifest.json")
            .expect("read_file"),
        br#"{"format_version":1}"#
    );
    assert_eq!(
        repo.read_file(&summary.snapshot_id, "code.git/packed-refs")
            .expect("empty file"),
        b""
    );
    assert!(matches!(
        repo.read_file(&summary.snapshot_id, "nope.json"),
        Err(RepoError::PathNotFound { .. })
    ));
    assert!(matches!(
        repo.read_file(&"0".repeat(64), "manifest.json"),
        Err(RepoError::SnapshotNotFound(_))
    ));
    assert!(matches!(
        repo.read_file("abcd", "manifest.json"),
        Err(RepoError::InvalidInput(_))
    ));

    // Every file under its final name is complete: no temporaries left in the repository.
    let tmp = env.repo_dir().join(".tmp");
    assert!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn unchanged_backup_with_parent_adds_little() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let (repo, _) = env.open();
    let first = repo
        .backup(&src, &request(&[], None), &no_fence)
        .expect("first");
    let second = repo
        .backup(
            &src,
            &request(&[], Some(first.snapshot_id.clone())),
            &no_fence,
        )
        .expect("second");
    assert_eq!(second.parent.as_deref(), Some(first.snapshot_id.as_str()));
    assert_eq!(second.files_unmodified, 6);
    assert_eq!(second.files_new + second.files_changed, 0);
    assert!(
        second.data_added < 10_000,
        "data_added = {}",
        second.data_added
    );

    // A changed file with the parent: only that file is read.
    std::fs::write(
        src.join("meta/issues/12/12345.json"),
        br#"{"n":12345,"edited":true}"#,
    )
    .expect("write");
    let third = repo
        .backup(
            &src,
            &request(&[], Some(second.snapshot_id.clone())),
            &no_fence,
        )
        .expect("third");
    assert_eq!(third.files_changed, 1);
    assert_eq!(third.files_unmodified, 5);
    assert!(third.data_added < 10_000);

    let snaps = repo.snapshots().expect("snapshots");
    assert_eq!(snaps.len(), 3);
    assert_eq!(
        snaps[2].parent.as_deref(),
        Some(second.snapshot_id.as_str())
    );

    // A parent that no longer exists: backup proceeds without one.
    repo.forget(std::slice::from_ref(&third.snapshot_id))
        .expect("forget");
    let fourth = repo
        .backup(
            &src,
            &request(&[], Some(third.snapshot_id.clone())),
            &no_fence,
        )
        .expect("fourth");
    assert_eq!(fourth.parent, None);
    assert_eq!(fourth.files_new, 6);
}

#[test]
fn wrong_password_and_missing_repository() {
    let (env, _g) = Env::new();
    let missing = SnapshotRepo::open(&env.spec, RepoKey::Password(&env.password), false);
    assert!(
        matches!(missing, Err(RepoError::NotFound { .. })),
        "{missing:?}"
    );

    let _ = env.open();
    let wrong = Secret::new("not the password");
    let err = SnapshotRepo::open(&env.spec, RepoKey::Password(&wrong), false)
        .expect_err("wrong password");
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("wrong password"), "{msg}");
    assert!(!msg.contains(PASSWORD) && !msg.contains("not the password"));
}

#[test]
fn master_key_opens_and_equals() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let (repo, key) = env.open();
    let snap = repo
        .backup(&src, &request(&[], None), &no_fence)
        .expect("backup");
    drop(repo);

    let (by_key, key2) = SnapshotRepo::open(
        &env.spec,
        RepoKey::MasterKey {
            json: &key,
            password: &env.password,
        },
        false,
    )
    .expect("open by master key");
    assert_eq!(key, key2);
    assert_eq!(by_key.snapshots().expect("list")[0].id, snap.snapshot_id);
    assert_eq!(
        by_key
            .read_file(&snap.snapshot_id, "manifest.json")
            .expect("read"),
        br#"{"format_version":1}"#
    );

    let (_, key3) = SnapshotRepo::open(&env.spec, RepoKey::Password(&env.password), false)
        .expect("by password");
    assert_eq!(key, key3);

    // A bad master key (malformed, wrong length, or another repository's) falls back to the password.
    let other = MasterKey::new();
    let other = Secret::new(serde_json::to_string(&other).expect("json"));
    for bad in [
        Secret::new("{not json"),
        Secret::new(r#"{"mac":{"k":"AA==","r":"AA=="},"encrypt":"AA=="}"#),
        other,
    ] {
        let (_, k) = SnapshotRepo::open(
            &env.spec,
            RepoKey::MasterKey {
                json: &bad,
                password: &env.password,
            },
            false,
        )
        .expect("fallback");
        assert_eq!(k, key);
        let wrong = Secret::new("nope");
        let err = SnapshotRepo::open(
            &env.spec,
            RepoKey::MasterKey {
                json: &bad,
                password: &wrong,
            },
            false,
        )
        .expect_err("bad key and wrong password");
        assert!(matches!(err, RepoError::WrongPassword { .. }), "{err:?}");
    }
}

#[test]
fn fence_error_writes_no_snapshot() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let (repo, _) = env.open();

    let calls = Cell::new(0);
    let fence = || -> Result<(), String> {
        calls.set(calls.get() + 1);
        Err("lease lost".to_string())
    };
    let err = repo
        .backup(&src, &request(&[], None), &fence)
        .expect_err("fenced");
    assert!(
        matches!(&err, RepoError::Fenced(m) if m == "lease lost"),
        "{err:?}"
    );
    assert_eq!(calls.get(), 1);
    assert!(repo.snapshots().expect("list").is_empty());
    assert_eq!(snapshot_files(&env), 0);

    // With a passing fence, the fence runs while the snapshot file does not exist yet, and the
    // file exists right after.
    let seen = Cell::new(usize::MAX);
    let fence = || -> Result<(), String> {
        seen.set(snapshot_files(&env));
        Ok(())
    };
    let ok = repo
        .backup(&src, &request(&[], None), &fence)
        .expect("backup");
    assert_eq!(seen.get(), 0);
    assert_eq!(snapshot_files(&env), 1);
    assert_eq!(repo.snapshots().expect("list")[0].id, ok.snapshot_id);
    repo.check(true)
        .expect("orphans from the fenced backup are not errors");
}

#[test]
fn unreadable_source_file_fails_the_backup() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let secret_file = src.join("meta/unreadable.json");
    std::fs::write(&secret_file, b"x").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::read(&secret_file).is_ok() {
        println!("skipping: running as root, mode 000 is readable");
        return;
    }
    let (repo, _) = env.open();
    let err = repo
        .backup(&src, &request(&[], None), &no_fence)
        .expect_err("must fail");
    assert!(
        matches!(&err, RepoError::SourceRead(m) if m.contains("unreadable.json")),
        "{err:?}"
    );
    assert!(repo.snapshots().expect("list").is_empty());
}

#[test]
fn tags_filter_and_forget() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let (repo, _) = env.open();
    let full = repo
        .backup(
            &src,
            &request(&["task=t1", "type=full", "trigger=manual"], None),
            &no_fence,
        )
        .expect("full");
    let incr = repo
        .backup(
            &src,
            &request(
                &["task=t2", "type=incremental"],
                Some(full.snapshot_id.clone()),
            ),
            &no_fence,
        )
        .expect("incremental");

    let fulls = repo.snapshots_with_tag("type=full").expect("filter");
    assert_eq!(fulls.len(), 1);
    assert_eq!(fulls[0].id, full.snapshot_id);
    assert_eq!(
        fulls[0].tags,
        vec!["task=t1", "trigger=manual", "type=full"]
    );
    assert_eq!(
        repo.snapshots_with_tag("task=t2").expect("filter")[0].id,
        incr.snapshot_id
    );
    assert!(
        repo.snapshots_with_tag("type").expect("filter").is_empty(),
        "whole tags only"
    );

    let bad = repo.backup(&src, &request(&["a,b"], None), &no_fence);
    assert!(matches!(bad, Err(RepoError::InvalidInput(_))));

    repo.forget(std::slice::from_ref(&full.snapshot_id))
        .expect("forget");
    let left = repo.snapshots().expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, incr.snapshot_id);
    repo.forget(std::slice::from_ref(&full.snapshot_id))
        .expect("forget is idempotent");
    assert!(matches!(
        repo.restore(&full.snapshot_id, "", &env.path("gone")),
        Err(RepoError::SnapshotNotFound(_))
    ));
}

#[test]
fn check_read_data_detects_corrupt_pack() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let (repo, _) = env.open();
    repo.backup(&src, &request(&[], None), &no_fence)
        .expect("backup");
    repo.check(false).expect("check");
    repo.check(true).expect("check --read-data");

    // Flip one byte in the middle of the largest pack.
    let mut packs = Vec::new();
    for sub in std::fs::read_dir(env.repo_dir().join("data")).expect("data") {
        for f in std::fs::read_dir(sub.expect("sub").path()).expect("sub") {
            let f = f.expect("file");
            packs.push((f.metadata().expect("meta").len(), f.path()));
        }
    }
    packs.sort();
    let (len, pack) = packs.pop().expect("a pack");
    let mut bytes = std::fs::read(&pack).expect("read");
    bytes[(len / 2) as usize] ^= 0x01;
    std::fs::write(&pack, &bytes).expect("write");

    let err = repo.check(true).expect_err("corruption found");
    assert!(matches!(err, RepoError::CheckFailed(_)), "{err:?}");
}

/// The stock restic tool reads what we wrote: lists the snapshot with our tags and restores the
/// tree with the contents at its root.
#[test]
fn stock_restic_reads_our_repository() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let (repo, _) = env.open();
    let snap = repo
        .backup(&src, &request(&["type=full", "task=abc"], None), &no_fence)
        .expect("backup");

    if env.restic(&["version"]).is_none() {
        return;
    }
    let run = |args: &[&str]| {
        let out = env.restic(args).expect("restic on PATH");
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let listed: serde_json::Value =
        serde_json::from_slice(&run(&["snapshots", "--json"])).expect("json");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], snap.snapshot_id.as_str());
    assert_eq!(listed[0]["paths"], serde_json::json!(["/repovault"]));
    let mut tags: Vec<_> = listed[0]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, vec!["task=abc", "type=full"]);

    let target = env.path("restic-restore");
    run(&[
        "restore",
        &snap.snapshot_id,
        "--target",
        target.to_str().expect("utf-8"),
    ]);
    assert_eq!(tree(&target), tree(&src));
    run(&["check", "--read-data"]);
}

/// Callers move a repository into `spawn_blocking` and share it behind an `Arc`.
#[test]
fn snapshot_repo_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SnapshotRepo>();
    assert_send_sync::<RepoError>();
}
