//! Tests of [`super::fsck_incremental`] against the git CLI: what a backup's check covers as
//! its mirror changes (nothing, a new commit, a force push, a deleted branch, a damaged pack),
//! and that its reachable count is always what `git rev-list --objects --all` says.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::fsck_tests::{
    Fixture, commits_by_git, file_url, fixture, packs, reachable_by_git, run_fsck, run_mirror,
};
use super::tests::{commit_file, git};
use super::*;

const DAY: i64 = 86_400_000;

/// The incremental check of `f.mirror` at `now_ms`, `received` the packs new since `before`.
fn check(f: &Fixture, before: &BTreeSet<String>, now_ms: i64) -> FsckReport {
    let after = pack_names(&f.mirror).unwrap();
    let received: BTreeSet<String> = after.difference(before).cloned().collect();
    let since = CheckSince {
        received: &received,
        now_ms,
        full_every_ms: 7 * DAY,
    };
    fsck_incremental(&f.mirror, &since, &AtomicBool::new(false)).unwrap()
}

/// Fetches the source into the mirror (as a backup does); returns the packs before the fetch.
fn fetch(f: &Fixture) -> BTreeSet<String> {
    let before = pack_names(&f.mirror).unwrap();
    run_mirror(&f.mirror, &Remote::anonymous(file_url(&f.src)));
    before
}

fn sound(r: &FsckReport) {
    assert!(r.is_sound(), "{:#?}", r.problems);
}

fn incremental(r: &FsckReport) -> (u64, u64) {
    match &r.coverage {
        Coverage::Incremental {
            new_objects,
            moved_refs,
            ..
        } => (*new_objects, *moved_refs),
        other => panic!("expected an incremental check, got {other:?}"),
    }
}

fn full_reason(r: &FsckReport) -> String {
    match &r.coverage {
        Coverage::Full { reason } => reason.clone(),
        other => panic!("expected a full check, got {other:?}"),
    }
}

#[test]
fn a_check_covers_what_changed_and_counts_as_git_does() {
    let f = fixture();
    let all = BTreeSet::new();
    // The first check of a mirror is full; it received every pack (the clone).
    let first = check(&f, &all, DAY);
    sound(&first);
    assert_eq!(full_reason(&first), "first check of this mirror");
    assert_eq!(first.reachable, reachable_by_git(&f.mirror));
    assert_eq!(
        first,
        FsckReport {
            coverage: first.coverage.clone(),
            ..run_fsck(&f.mirror)
        }
    );

    // Nothing changed: nothing new, nothing moved.
    let before = fetch(&f);
    let again = check(&f, &before, DAY + 1000);
    sound(&again);
    assert_eq!(incremental(&again), (0, 0));
    assert_eq!(again.reachable, first.reachable);

    // One commit of one new file: a commit, a root tree and a blob are new; main and HEAD moved.
    commit_file(&f.src, "new.txt", b"new\n", "one more");
    let before = fetch(&f);
    let third = check(&f, &before, DAY + 2000);
    sound(&third);
    assert_eq!(incremental(&third), (3, 2));
    assert_eq!(third.reachable, reachable_by_git(&f.mirror));
    assert_eq!(third.commits, commits_by_git(&f.mirror));
    assert!(
        third
            .coverage
            .to_string()
            .contains("3 new objects, 2 moved refs; full check just now"),
        "{}",
        third.coverage
    );

    // A week after the last full check, the next one is full again.
    let aged = check(&f, &BTreeSet::new(), DAY + 7 * DAY);
    sound(&aged);
    assert!(
        full_reason(&aged).starts_with("the last full check was 7 days ago"),
        "{}",
        full_reason(&aged)
    );
}

#[test]
fn refs_that_leave_history_behind_are_counted_by_a_walk_from_every_ref() {
    let f = fixture();
    check(&f, &BTreeSet::new(), DAY);
    // A force push of main onto a new commit off its grandparent, and a deleted branch.
    git(&f.src, &["reset", "-q", "--hard", "HEAD~2"]);
    commit_file(&f.src, "rewritten.txt", b"rewritten\n", "rewritten");
    git(&f.src, &["update-ref", "-d", "refs/pull/1/merge"]);
    git(&f.src, &["branch", "-D", "feature"]);
    git(&f.src, &["update-ref", "-d", "refs/pull/1/head"]);
    let before = fetch(&f);
    let r = check(&f, &before, DAY + 1000);
    sound(&r);
    // A walk from every ref again; what it found new is the new commit, its tree and its blob.
    assert_eq!(incremental(&r).0, 3, "{:?}", r.coverage);
    assert_eq!(r.reachable, reachable_by_git(&f.mirror));
    // And the record is right for the next one.
    commit_file(&f.src, "after.txt", b"after\n", "after");
    let before = fetch(&f);
    let next = check(&f, &before, DAY + 2000);
    sound(&next);
    assert_eq!(next.reachable, reachable_by_git(&f.mirror));
    assert_eq!(next.commits, commits_by_git(&f.mirror));
}

#[test]
fn a_pack_damaged_after_its_check_is_found_by_a_full_check() {
    let f = fixture();
    check(&f, &BTreeSet::new(), DAY);
    let pack = packs(&f.mirror).pop().unwrap();
    flip_middle(&pack);
    let r = check(&f, &pack_names(&f.mirror).unwrap(), DAY + 1000);
    let name = pack.file_stem().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        full_reason(&r),
        format!("{name}.pack changed on disk since it was verified")
    );
    assert!(
        r.problems.iter().any(|p| p.contains(&name)),
        "{:#?}",
        r.problems
    );
    // A check with problems leaves no record: the next one is full too.
    let next = check(&f, &pack_names(&f.mirror).unwrap(), DAY + 2000);
    assert_eq!(full_reason(&next), "first check of this mirror");
    assert!(!next.is_sound());
}

#[test]
fn a_pack_that_was_not_received_has_its_hashes_checked() {
    let f = fixture();
    check(&f, &BTreeSet::new(), DAY);
    // A new pack put beside the mirror's (not by this backup's fetch), damaged inside.
    commit_file(
        &f.src,
        "new.txt",
        &super::tests::noise(64 * 1024, 3),
        "one more",
    );
    fetch(&f);
    let newest = newest_pack(&f.mirror);
    flip_middle(&newest);
    let r = check(&f, &pack_names(&f.mirror).unwrap(), DAY + 1000);
    let name = newest.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        r.problems.iter().any(|p| p.contains(&name)),
        "{:#?}",
        r.problems
    );
}

/// The most recently written pack of the mirror at `dir`.
fn newest_pack(dir: &Path) -> std::path::PathBuf {
    packs(dir)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap()
}

/// Flips bits of the byte in the middle of the file at `path`, in place (as disk damage would).
fn flip_middle(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(path, &bytes).unwrap();
}
