//! The byte progress of a backup and a restore (`byte_progress.rs`), against a tempdir fs
//! operator.

use std::sync::Arc;

use parking_lot::Mutex;

use super::repo_tests::{Env, make_source, request, tree};
use super::*;

/// What a progress callback was called with, in order.
type Calls = Arc<Mutex<Vec<(u64, u64)>>>;

/// A progress callback and what it was called with.
fn recorder() -> (ByteProgress, Calls) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (
        Arc::new(move |done, total| sink.lock().push((done, total))),
        seen,
    )
}

/// The bytes done only grow, end at `size`, and the total `size` was told.
fn assert_reached(seen: &[(u64, u64)], size: u64) {
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "done went back: {seen:?}"
    );
    assert_eq!(seen.iter().map(|s| s.0).max(), Some(size), "{seen:?}");
    assert!(
        seen.iter().any(|s| s.1 == size),
        "no total {size}: {seen:?}"
    );
    assert!(seen.iter().all(|s| s.1 == 0 || s.1 == size), "{seen:?}");
}

#[test]
fn a_backup_and_a_restore_report_their_bytes_of_the_total() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let size: u64 = tree(&src).values().flatten().map(|c| c.len() as u64).sum();
    let (repo, _) =
        SnapshotRepo::open(&env.spec, RepoKey::Password(&env.password), true).expect("open");

    let (report, seen) = recorder();
    let summary = repo
        .backup_reporting(&src, &request(&[], None), &|| Ok(()), report)
        .expect("backup");
    assert_eq!(summary.total_bytes, size);
    assert_reached(&seen.lock(), size);

    let dest = env.path("restored");
    let (report, seen) = recorder();
    let restored = repo
        .restore_reporting(&summary.snapshot_id, "", &dest, report)
        .expect("restore");
    assert_eq!(tree(&dest), tree(&src));
    assert_eq!(restored.bytes, size);
    assert_reached(&seen.lock(), size);

    // The shared handle reports nothing and still backs up.
    let again = repo
        .backup(
            &src,
            &request(&[], Some(summary.snapshot_id.clone())),
            &|| Ok(()),
        )
        .expect("backup without progress");
    assert_eq!(again.total_bytes, size);
}
