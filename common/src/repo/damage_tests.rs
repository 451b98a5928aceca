//! Tests of `damage.rs`: a damaged pack leaves the index and is stored again by the next backup,
//! a stale ledger cannot bring it back, and a damaged index file is named and rebuilt.

use std::sync::atomic::AtomicBool;

use super::pack_map::PackMap;
use super::readback_tests::{
    ReadBackEnv, backed_up, flip_largest, local_files, no_fence, read_back, request,
};
use super::repo_tests::{self, Env};
use super::*;

const T0: i64 = 1_700_000_000_000;

#[test]
fn a_damaged_pack_leaves_the_index_and_the_next_backup_stores_its_data_again() {
    let (env, _g) = Env::new();
    let (op, path) = (env.spec.operator.clone(), env.spec.path.clone());
    let (repo, first, packs) = backed_up(&env, 11);

    // Every pack read back sound: the ledger records them all.
    let report = read_back(&repo, &packs.ids());
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    let mut ledger = ReadBackLedger::new();
    ledger.record(report.ok.clone(), T0);
    let stale = ledger.clone();

    // Then storage damages one pack, and a read-back finds it.
    let bad = flip_largest(&env, &packs);
    let report = read_back(&repo, &packs.ids());
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    assert_eq!(report.damaged[0].pack_id, bad);
    let dropped = repo
        .drop_damaged_packs(&report.damaged, T0 + 1)
        .expect("drop");
    assert_eq!(dropped.packs, vec![bad.clone()]);
    assert!(dropped.index_files_rewritten >= 1, "{dropped:?}");
    assert_eq!(dropped.moved_aside, 1);
    assert!(!env.pack_file(&bad).exists(), "still in data/");
    assert!(
        env.repo_dir().join(format!("damaged/data-{bad}")).is_file(),
        "kept aside for inspection"
    );
    // Idempotent: dropping again changes nothing more.
    let again = repo
        .drop_damaged_packs(&report.damaged, T0 + 2)
        .expect("drop again");
    assert_eq!(again.moved_aside, 0);

    // A ledger loaded before the finding and saved after it does not make the pack trusted.
    env.rt.block_on(async {
        stale.save(&op, &path).await.expect("save stale");
        let loaded = ReadBackLedger::load(&op, &path).await.expect("load");
        assert_eq!(
            loaded.last_read(&bad),
            None,
            "a record older than the finding"
        );
        for p in packs.ids().iter().filter(|p| **p != bad) {
            assert_eq!(loaded.last_read(p), Some(T0), "{p} was not damaged");
        }
        let findings = DamageFinding::load_all(&op, &path).await.expect("findings");
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].kind, DamagedKind::Pack);
        assert_eq!(findings[0].id, bad);
    });

    // The first snapshot now lacks those blobs, and says so.
    let repo = env.open_repo();
    let old = repo.snapshot_packs(&first).expect("snapshot_packs");
    assert!(
        old.problems
            .iter()
            .any(|p| p.contains("in no pack of the index")),
        "{:?}",
        old.problems
    );

    // The same source backed up again, with the damaged snapshot as parent (rustic_core skips
    // unchanged files of a parent only when the index still has their blobs): stored anew.
    let src = env.path("src");
    let mut req = request();
    req.parent = Some(first.clone());
    let second = repo.backup(&src, &req, &no_fence).expect("second backup");
    let fresh = repo
        .snapshot_packs(&second.snapshot_id)
        .expect("snapshot_packs");
    assert!(fresh.problems.is_empty(), "{:?}", fresh.problems);
    assert!(!fresh.ids().contains(&bad), "{fresh:?}");
    let report = repo
        .read_back(&fresh.ids(), &|_, _| {}, &AtomicBool::new(false))
        .expect("read back");
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);

    // Stock restic agrees: once the damaged snapshot is forgotten, the repository (with the
    // rewritten index, the pack kept aside and the findings beside it) checks clean, every
    // pack read.
    repo.forget(std::slice::from_ref(&first)).expect("forget");
    if let Some(out) = env.restic(&["check", "--read-data"]) {
        assert!(
            out.status.success(),
            "restic check after the drop:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // And it restores exactly.
    let dest = env.path("restored");
    repo.restore(&second.snapshot_id, "/", &dest)
        .expect("restore");
    assert_eq!(local_files(&dest), local_files(&src));
    let big = "code.git/objects/pack/pack-1.pack";
    assert_eq!(
        std::fs::read(dest.join(big)).expect("restored"),
        std::fs::read(src.join(big)).expect("source")
    );
}

#[test]
fn a_damaged_index_file_is_named_then_rebuilt_from_the_packs() {
    let (env, _g) = Env::new();
    let (repo, snap, packs) = backed_up(&env, 5);
    let index_dir = env.repo_dir().join("index");
    let index = std::fs::read_dir(&index_dir)
        .expect("index dir")
        .next()
        .expect("an index file")
        .expect("entry")
        .path();
    let mut bytes = std::fs::read(&index).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&index, &bytes).expect("write");
    let index_id = index
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();

    let repo = {
        drop(repo);
        env.open_repo()
    };
    let err = repo
        .snapshot_packs(&snap)
        .expect_err("the index is damaged");
    let message = err.to_string();
    assert!(
        !message.contains("Backtrace") && !message.contains("RUST_BACKTRACE"),
        "no backtrace in a message: {message}"
    );
    let damaged = repo.damaged_index_files().expect("check");
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0].0, index_id);
    assert!(
        damaged[0].1.contains(&format!("index/{index_id}")),
        "{damaged:?}"
    );

    let repair = repo.repair_damaged_index(T0).expect("repair");
    assert_eq!(repair.damaged.len(), 1);
    assert!(!index.exists(), "moved aside");
    let repo = env.open_repo();
    let after = repo.snapshot_packs(&snap).expect("readable again");
    assert!(after.problems.is_empty(), "{:?}", after.problems);
    assert_eq!(after.ids(), packs.ids());
    assert!(repo.damaged_index_files().expect("check").is_empty());
}

#[test]
fn a_finding_drops_older_ledger_records_only() {
    let (a, b) = ("aa".repeat(32), "bb".repeat(32));
    let mut ledger = ReadBackLedger::new();
    ledger.record([a.clone()], T0);
    ledger.record([b.clone()], T0 + 10);
    let finding = |id: &str, at: i64| DamageFinding {
        kind: DamagedKind::Pack,
        id: id.to_string(),
        found_at_ms: at,
        problem: "content hash".into(),
    };
    // A read at the very moment of the finding does not count; a later one (the pack put back
    // from a good copy and read sound again) does.
    ledger.apply_findings(&[finding(&a, T0), finding(&b, T0 + 5)]);
    assert_eq!(ledger.last_read(&a), None);
    assert_eq!(ledger.last_read(&b), Some(T0 + 10));
    // Index findings say nothing about packs.
    let mut other = ReadBackLedger::new();
    other.record([a.clone()], T0);
    other.apply_findings(&[DamageFinding {
        kind: DamagedKind::Index,
        ..finding(&a, T0 + 1)
    }]);
    assert_eq!(other.last_read(&a), Some(T0));
}

/// rustic_core reuses a tree equal to its parent's without asking the index for it. With the
/// pack of a subtree taken out (found damaged) while the parent's root stays readable, a backup
/// naming that parent references the lost tree: `snapshot_fully_indexed` says so of the parent
/// (which is how a backup knows not to name it) and of such a backup, and a backup without the
/// parent is whole again.
#[test]
fn a_parent_that_lost_a_subtree_is_found_and_a_backup_without_it_is_whole() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    std::fs::write(src.join("a/one"), b"the first directory's file").expect("write");
    let (repo, _) = env.open();
    let first = repo
        .backup(&src, &repo_tests::request(&[], None), &no_fence)
        .expect("first");
    // A second directory: the new root and b/ go into a new tree pack; a/'s tree stays in the
    // first backup's.
    std::fs::create_dir_all(src.join("b")).expect("mkdir");
    std::fs::write(src.join("b/two"), b"the second directory's file").expect("write");
    let second = repo
        .backup(
            &src,
            &repo_tests::request(&[], Some(first.snapshot_id.clone())),
            &no_fence,
        )
        .expect("second");
    assert!(
        repo.snapshot_fully_indexed(&second.snapshot_id)
            .expect("walk")
    );

    let first_packs: HashSet<String> = repo
        .snapshot_packs(&first.snapshot_id)
        .expect("packs")
        .packs
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let indexed = repo.reopen().expect("reopen");
    let map = PackMap::load(&indexed, repo.location()).expect("index");
    let tree_pack = map
        .packs
        .iter()
        .find(|(id, e)| {
            first_packs.contains(&id.to_hex().to_string())
                && e.blobs
                    .iter()
                    .all(|b| b.tpe == rustic_core::repofile::BlobType::Tree)
        })
        .map(|(id, _)| id.to_hex().to_string())
        .expect("the first backup's tree pack");
    repo.drop_damaged_packs(
        &[PackDamage {
            pack_id: tree_pack,
            problem: "flipped bytes".into(),
        }],
        T0,
    )
    .expect("drop");
    assert!(
        !repo
            .snapshot_fully_indexed(&second.snapshot_id)
            .expect("walk"),
        "a/'s tree went with the pack"
    );

    // Naming that parent: rustic_core keeps the lost tree (should it ever check the index
    // here, this assertion fails and BackupJob::parent_whole's walk can go).
    let third = repo
        .backup(
            &src,
            &repo_tests::request(&[], Some(second.snapshot_id.clone())),
            &no_fence,
        )
        .expect("third");
    assert!(
        !repo
            .snapshot_fully_indexed(&third.snapshot_id)
            .expect("walk"),
        "rustic_core reused the unindexed tree"
    );
    let fourth = repo
        .backup(&src, &repo_tests::request(&[], None), &no_fence)
        .expect("fourth");
    assert!(
        repo.snapshot_fully_indexed(&fourth.snapshot_id)
            .expect("walk"),
        "without the parent every tree is stored again"
    );
}
