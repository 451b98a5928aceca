//! Tests of the read-back (`readback.rs`) and its ledger (`ledger.rs`) against a tempdir fs
//! operator, cross-checked with the stock `restic` when it is on PATH.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::*;

use super::repo_tests::Env;

/// What the read-back tests add to the shared fixture.
pub(super) trait ReadBackEnv {
    fn open_repo(&self) -> SnapshotRepo;
    fn pack_file(&self, pack: &str) -> PathBuf;
}

impl ReadBackEnv for Env {
    fn open_repo(&self) -> SnapshotRepo {
        SnapshotRepo::open(&self.spec, RepoKey::Password(&self.password), true)
            .expect("open")
            .0
    }

    fn pack_file(&self, pack: &str) -> PathBuf {
        self.repo_dir().join("data").join(&pack[..2]).join(pack)
    }
}

pub(super) fn request() -> BackupRequest {
    BackupRequest {
        host: "repovault".into(),
        label: "org-1/repo-1".into(),
        tags: vec![],
        parent: None,
        as_path: "/repovault".into(),
        exclude: Vec::new(),
    }
}

pub(super) fn no_fence() -> Result<(), String> {
    Ok(())
}

/// Deterministic pseudo-random bytes (xorshift): incompressible.
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

/// A source tree shaped like a backup; `seed` makes every file's contents distinct (except
/// the empty `packed-refs`, which has no blob). The big file spans
/// several chunks, so with rustic's pack sizes the data lands in more than one pack.
pub(super) fn make_source(dir: &Path, seed: u64) {
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "manifest.json",
            format!(r#"{{"seed":{seed}}}"#).into_bytes(),
        ),
        (
            "code.git/HEAD",
            format!("ref: refs/heads/main-{seed}\n").into_bytes(),
        ),
        ("code.git/packed-refs", b"".to_vec()),
        (
            "code.git/objects/pack/pack-1.pack",
            noise(12 * 1024 * 1024 + 17, seed),
        ),
        ("code.git/objects/pack/pack-1.idx", noise(70_000, seed + 1)),
        (
            "meta/issues/12/12345.json",
            format!(r#"{{"n":{seed}}}"#).into_bytes(),
        ),
        (
            "meta/a/b/c/d/deep.json",
            format!("deep {seed}").into_bytes(),
        ),
    ];
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
    }
    std::fs::create_dir_all(dir.join("code.git/refs/tags")).expect("empty dir");
}

/// Regular files under `dir` by `/`-separated relative path, to their size.
pub(super) fn local_files(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let ty = entry.file_type().expect("type");
            if ty.is_dir() {
                walk(root, &path, out);
            } else if ty.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .expect("prefix")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(rel, entry.metadata().expect("meta").len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn no_progress(_: u64, _: u64) {}

pub(super) fn read_back(repo: &SnapshotRepo, packs: &[String]) -> ReadBackReport {
    let start = Instant::now();
    let report = repo
        .read_back(packs, &no_progress, &AtomicBool::new(false))
        .expect("read_back");
    println!(
        "read_back: {} packs, {} bytes in {:?}",
        report.packs_read,
        report.bytes_read,
        start.elapsed()
    );
    report
}

/// One snapshot of `make_source(seed)`: (repo, snapshot id, its packs).
pub(super) fn backed_up(env: &Env, seed: u64) -> (SnapshotRepo, String, SnapshotPacks) {
    let src = env.path("src");
    make_source(&src, seed);
    let repo = env.open_repo();
    let snap = repo.backup(&src, &request(), &no_fence).expect("backup");
    let packs = repo
        .snapshot_packs(&snap.snapshot_id)
        .expect("snapshot_packs");
    (repo, snap.snapshot_id, packs)
}

#[test]
fn sound_snapshot_reads_back_clean() {
    let (env, _g) = Env::new();
    let (repo, _snap, packs) = backed_up(&env, 42);
    assert!(packs.problems.is_empty(), "{:?}", packs.problems);
    assert!(
        packs.packs.len() >= 2,
        "want tree and data packs: {packs:?}"
    );
    // Every pack file in storage is referenced (one snapshot, nothing pruned), with its size.
    let on_disk: u64 = packs
        .ids()
        .iter()
        .map(|p| {
            std::fs::metadata(env.pack_file(p))
                .expect("pack file")
                .len()
        })
        .sum();
    assert_eq!(packs.total_bytes(), on_disk);
    assert_eq!(repo.all_packs().expect("all_packs"), packs.packs);

    let calls = std::cell::RefCell::new(Vec::new());
    let progress = |done: u64, total: u64| calls.borrow_mut().push((done, total));
    let report = repo
        .read_back(&packs.ids(), &progress, &AtomicBool::new(false))
        .expect("read_back");
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    assert!(
        report.unread.is_empty() && report.vanished.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.packs_read, packs.packs.len() as u64);
    assert_eq!(report.bytes_read, on_disk);
    let mut ok = report.ok.clone();
    ok.sort();
    assert_eq!(ok, packs.ids());
    let calls = calls.into_inner();
    assert_eq!(calls.len(), packs.packs.len());
    assert_eq!(calls.last(), Some(&(on_disk, on_disk)));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
}

/// The largest pack (a data pack) with one byte flipped in its middle.
pub(super) fn flip_largest(env: &Env, packs: &SnapshotPacks) -> String {
    let (pack, size) = packs
        .packs
        .iter()
        .max_by_key(|(_, size)| *size)
        .cloned()
        .expect("a pack");
    let file = env.pack_file(&pack);
    let mut bytes = std::fs::read(&file).expect("read");
    assert_eq!(bytes.len() as u64, size);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).expect("write");
    pack
}

#[test]
fn flipped_byte_damages_exactly_that_pack() {
    let (env, _g) = Env::new();
    let (repo, _snap, packs) = backed_up(&env, 7);
    let bad = flip_largest(&env, &packs);

    let report = read_back(&repo, &packs.ids());
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    let damage = &report.damaged[0];
    assert_eq!(damage.pack_id, bad);
    assert!(damage.problem.contains(&bad), "{}", damage.problem);
    assert!(
        damage.problem.contains("content hash is"),
        "{}",
        damage.problem
    );
    // The flipped byte is inside a data blob: its decryption fails too.
    assert!(
        damage.problem.contains("data blob") && damage.problem.contains("does not decrypt"),
        "{}",
        damage.problem
    );
    assert!(
        damage.problem.contains("data/"),
        "names the path: {}",
        damage.problem
    );
    let mut expected_ok: Vec<String> = packs.ids().into_iter().filter(|p| *p != bad).collect();
    expected_ok.sort();
    assert_eq!(report.ok, expected_ok);
    assert_eq!(report.packs_read, packs.packs.len() as u64);

    // The stock tool agrees.
    restic_check_flags(&env, &bad);
}

/// `restic check --read-data` fails and names `pack` (its short id at least).
pub(super) fn restic_check_flags(env: &Env, pack: &str) {
    let Some(out) = env.restic(&["check", "--read-data"]) else {
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "restic check passed:\n{text}");
    assert!(
        text.contains(&pack[..8]),
        "restic does not name {pack}:\n{text}"
    );
}

#[test]
fn deleted_pack_is_missing_from_storage() {
    let (env, _g) = Env::new();
    let (repo, _snap, packs) = backed_up(&env, 9);
    let gone = packs.ids()[0].clone();
    std::fs::remove_file(env.pack_file(&gone)).expect("delete pack");

    let report = read_back(&repo, &packs.ids());
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    assert_eq!(report.damaged[0].pack_id, gone);
    assert!(
        report.damaged[0].problem.contains("missing from storage")
            && report.damaged[0].problem.contains(&gone),
        "{}",
        report.damaged[0].problem
    );
    assert_eq!(report.ok.len(), packs.packs.len() - 1);
    assert_eq!(report.packs_read, packs.packs.len() as u64 - 1);
}

#[test]
fn interrupt_stops_with_an_error() {
    let (env, _g) = Env::new();
    let (repo, _snap, packs) = backed_up(&env, 11);
    let err = repo
        .read_back(&packs.ids(), &no_progress, &AtomicBool::new(true))
        .expect_err("interrupted");
    assert!(matches!(err, RepoError::Interrupted { .. }), "{err:?}");
    let bad = repo
        .read_back(&["xyz".to_string()], &no_progress, &AtomicBool::new(false))
        .expect_err("invalid id");
    assert!(matches!(bad, RepoError::InvalidInput(_)), "{bad:?}");
}

#[test]
fn snapshots_using_packs_names_the_right_snapshots() {
    let (env, _g) = Env::new();
    // Seeds far apart: `make_source(s)` also uses `s + 1`, and shared noise would share chunks.
    let (repo, first, first_packs) = backed_up(&env, 100);
    let src2 = env.path("src2");
    make_source(&src2, 200);
    let second = repo
        .backup(&src2, &request(), &no_fence)
        .expect("backup 2")
        .snapshot_id;
    let second_packs = repo.snapshot_packs(&second).expect("packs 2");
    let first_set: HashSet<String> = first_packs.ids().into_iter().collect();
    let second_only: HashSet<String> = second_packs
        .ids()
        .into_iter()
        .filter(|p| !first_set.contains(p))
        .collect();
    let second_set: HashSet<String> = second_packs.ids().into_iter().collect();
    let first_only: HashSet<String> = first_set
        .iter()
        .filter(|p| !second_set.contains(*p))
        .cloned()
        .collect();
    assert!(
        !second_only.is_empty() && !first_only.is_empty(),
        "{first_packs:?} {second_packs:?}"
    );

    assert_eq!(
        repo.snapshots_using_packs(&second_only).expect("using"),
        vec![second.clone()]
    );
    assert_eq!(
        repo.snapshots_using_packs(&first_only).expect("using"),
        vec![first.clone()]
    );
    let mut both = vec![first, second];
    both.sort();
    let all: HashSet<String> = first_set.union(&second_set).cloned().collect();
    assert_eq!(repo.snapshots_using_packs(&all).expect("using"), both);
    assert!(
        repo.snapshots_using_packs(&HashSet::from(["00".repeat(32)]))
            .expect("using")
            .is_empty()
    );
    let mut all_packs: Vec<String> = all.into_iter().collect();
    all_packs.sort();
    let listed: Vec<String> = repo
        .all_packs()
        .expect("all")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(listed, all_packs);
}

#[test]
fn list_files_matches_the_source() {
    let (env, _g) = Env::new();
    let (repo, snap, _) = backed_up(&env, 3);
    let src = env.path("src");
    assert_eq!(repo.list_files(&snap, "").expect("list"), local_files(&src));
    assert_eq!(
        repo.list_files(&snap, "/code.git").expect("list"),
        local_files(&src.join("code.git"))
    );
    assert!(matches!(
        repo.list_files(&snap, "manifest.json"),
        Err(RepoError::InvalidInput(_))
    ));
    assert!(matches!(
        repo.list_files(&snap, "nope"),
        Err(RepoError::PathNotFound { .. })
    ));
}

#[test]
fn ledger_due_record_retain() {
    const DAY: i64 = 24 * 3600 * 1000;
    let (a, b, c) = ("a".to_string(), "b".to_string(), "c".to_string());
    let mut ledger = ReadBackLedger::new();
    let all = vec![a.clone(), b.clone(), c.clone()];
    assert_eq!(ledger.due(&all, 100 * DAY, 30 * DAY), all, "never read");

    ledger.record([a.clone()], 100 * DAY);
    ledger.record([b.clone()], 60 * DAY);
    assert_eq!(ledger.last_read("a"), Some(100 * DAY));
    assert_eq!(ledger.last_read("c"), None);
    // At day 100: a fresh, b 40 days old (stale), c never read.
    assert_eq!(
        ledger.due(&all, 100 * DAY, 30 * DAY),
        vec![b.clone(), c.clone()]
    );
    // Exactly max_age old is not yet due; one ms later it is.
    assert_eq!(
        ledger.due(std::slice::from_ref(&b), 90 * DAY, 30 * DAY),
        Vec::<String>::new()
    );
    assert_eq!(
        ledger.due(std::slice::from_ref(&b), 90 * DAY + 1, 30 * DAY),
        vec![b.clone()]
    );
    // Duplicates in the input come out once.
    assert_eq!(ledger.due(&[c.clone(), c.clone()], 0, DAY), vec![c.clone()]);
    // Re-recording moves the time forward.
    ledger.record([b.clone()], 101 * DAY);
    assert!(ledger.due(&all, 101 * DAY, 30 * DAY) == vec![c.clone()]);

    ledger.retain_existing(&HashSet::from([b.clone(), c.clone()]));
    assert_eq!(ledger.last_read("a"), None);
    assert_eq!(ledger.last_read("b"), Some(101 * DAY));
    assert_eq!(ledger.len(), 1);
}

#[test]
fn ledger_save_load_and_corrupt_file() {
    let (env, _g) = Env::new();
    let op = env.spec.operator.clone();
    let path = env.spec.path.clone();
    env.rt.block_on(async {
        let empty = ReadBackLedger::load(&op, &path)
            .await
            .expect("missing = empty");
        assert!(empty.is_empty());

        let mut ledger = ReadBackLedger::new();
        ledger.record(["ab".repeat(32), "cd".repeat(32)], 1_700_000_000_000);
        ledger.save(&op, &path).await.expect("save");
        let file = env.repo_dir().join("verify/readback.json");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).expect("ledger file")).expect("json");
        assert_eq!(json["format"], 1);
        assert_eq!(json["packs"]["ab".repeat(32)], 1_700_000_000_000_i64);
        assert_eq!(
            ReadBackLedger::load(&op, &path).await.expect("load"),
            ledger
        );

        std::fs::write(&file, b"{\"format\":1,\"packs\":").expect("corrupt");
        let err = ReadBackLedger::load(&op, &path).await.expect_err("corrupt");
        assert!(
            err.to_string()
                .contains("org-1/repo-1/verify/readback.json"),
            "{err}"
        );
        std::fs::write(&file, b"{\"format\":2,\"packs\":{}}").expect("future format");
        assert!(ReadBackLedger::load(&op, &path).await.is_err());
    });
}

/// The 30-day rotation over a repository of several snapshots (more packs than read threads):
/// everything due at first, nothing after a clean read-back is recorded, a pruned-away pack
/// leaves the ledger.
#[test]
fn rotation_reads_every_pack_once() {
    const DAY: i64 = 24 * 3600 * 1000;
    let (env, _g) = Env::new();
    let repo = env.open_repo();
    for seed in 0..5u64 {
        let src = env.path(&format!("src{seed}"));
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("blob"), noise(300_000, 1000 + seed)).expect("write");
        repo.backup(&src, &request(), &no_fence).expect("backup");
    }
    let all: Vec<String> = repo
        .all_packs()
        .expect("all_packs")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(all.len() >= 10, "{all:?}");

    let mut ledger = ReadBackLedger::new();
    let now = 1000 * DAY;
    let due = ledger.due(&all, now, 30 * DAY);
    assert_eq!(due, all);
    let report = read_back(&repo, &due);
    assert!(
        report.damaged.is_empty() && report.unread.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.ok.len(), all.len());
    ledger.record(report.ok, now);
    assert!(ledger.due(&all, now + DAY, 30 * DAY).is_empty());
    assert_eq!(ledger.due(&all, now + 31 * DAY, 30 * DAY), all);

    let existing: HashSet<String> = all[1..].iter().cloned().collect();
    ledger.retain_existing(&existing);
    assert_eq!(ledger.len(), all.len() - 1);
    assert_eq!(ledger.last_read(&all[0]), None);
}

/// The ledger file does not bother the stock tools: restic's check still passes with it.
#[test]
fn ledger_beside_repository_keeps_restic_happy() {
    let (env, _g) = Env::new();
    let (repo, _snap, packs) = backed_up(&env, 5);
    let mut ledger = ReadBackLedger::new();
    ledger.record(packs.ids(), 1);
    env.rt
        .block_on(ledger.save(&env.spec.operator, &env.spec.path))
        .expect("save");
    repo.check(false).expect("rustic check");
    let Some(out) = env.restic(&["check"]) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
