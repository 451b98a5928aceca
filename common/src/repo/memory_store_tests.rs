//! The seam proved on a storage kind other than the file system: a real rustic_core repository
//! on opendal's in-memory service (`StorageKind::Memory`), through the same `SnapshotRepo`
//! calls the coordinator and the workers make. Only the backup's source directory and the
//! restore's destination are on disk, as the contract wants them there; the repository is not.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::repo_tests::{make_source, request, tree};
use super::*;
use crate::secret::Secret;
use crate::storage::StorageConfig;

/// Every object under `prefix` in the operator, sorted.
async fn objects(op: &opendal::Operator, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = op
        .list_with(prefix)
        .recursive(true)
        .await
        .expect("list")
        .into_iter()
        .filter(|e| !e.metadata().is_dir())
        .map(|e| e.path().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn a_repository_in_memory_backs_up_reads_back_restores_and_forgets() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Entered on the test thread, which is not one of the runtime's workers: as on the
    // blocking pool, where the seam's calls must run.
    let _entered = rt.enter();
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    make_source(&src);

    let storage = StorageConfig::memory();
    let spec = RepoSpec {
        operator: storage.operator().expect("operator"),
        path: "org-1/repo-1".into(),
    };
    let password = Secret::new("in-memory password");
    let (repo, master_key) =
        SnapshotRepo::open(&spec, RepoKey::Password(&password), true).expect("create");
    assert!(
        repo.location().starts_with("memory:"),
        "{}",
        repo.location()
    );

    // Backup behind the fence: the fence runs once, before the snapshot file exists.
    let fence_calls = AtomicUsize::new(0);
    let fence = || {
        fence_calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    let summary = repo
        .backup(&src, &request(&["type=full"], None), &fence)
        .expect("backup");
    assert_eq!(fence_calls.load(Ordering::SeqCst), 1);
    assert_eq!(summary.files_new, 6);

    // The objects are in memory under the restic layout, and nothing went through a temporary.
    let stored = rt.block_on(objects(&spec.operator, "org-1/repo-1/"));
    assert!(
        stored.contains(&"org-1/repo-1/config".to_string()),
        "{stored:?}"
    );
    assert!(
        stored.contains(&format!("org-1/repo-1/snapshots/{}", summary.snapshot_id)),
        "{stored:?}"
    );
    assert!(stored.iter().any(|p| p.starts_with("org-1/repo-1/data/")));
    assert!(!stored.iter().any(|p| p.contains("/.tmp/")), "{stored:?}");

    // A second operator from the same configuration (what a worker in this process builds from
    // the coordinator's StorageSpec) opens the same repository by the master key.
    let worker_spec = RepoSpec {
        operator: StorageConfig::from_proto(&storage.to_proto())
            .expect("decode")
            .operator()
            .expect("operator"),
        path: spec.path.clone(),
    };
    let (reader, _) = SnapshotRepo::open(
        &worker_spec,
        RepoKey::new(&password, Some(&master_key)),
        false,
    )
    .expect("open");
    let snaps = reader.snapshots().expect("snapshots");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].id, summary.snapshot_id);

    // Read files.
    assert_eq!(
        reader
            .read_file(&summary.snapshot_id, "manifest.json")
            .expect("read_file"),
        br#"{"format_version":1}"#
    );
    let meta = reader
        .read_files(&summary.snapshot_id, "meta")
        .expect("read_files");
    assert_eq!(meta.len(), 2);

    // Read-back: every pack the snapshot uses is read from memory and found sound.
    let packs = reader
        .snapshot_packs(&summary.snapshot_id)
        .expect("snapshot_packs");
    assert!(packs.problems.is_empty(), "{:?}", packs.problems);
    assert!(!packs.packs.is_empty());
    let report = reader
        .read_back(&packs.ids(), &|_, _| {}, &AtomicBool::new(false))
        .expect("read_back");
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    assert!(report.unread.is_empty(), "{:?}", report.unread);
    assert_eq!(report.ok, packs.ids());
    reader.check(true).expect("check --read-data");

    // Restore: the whole tree, bit for bit.
    let dest = work.path().join("restored");
    reader
        .restore(&summary.snapshot_id, "", &dest)
        .expect("restore");
    assert_eq!(tree(&dest), tree(&src));

    // Forget is idempotent; then prune removes the data no snapshot references.
    repo.forget(std::slice::from_ref(&summary.snapshot_id))
        .expect("forget");
    repo.forget(std::slice::from_ref(&summary.snapshot_id))
        .expect("forget again");
    assert!(repo.snapshots().expect("snapshots").is_empty());
    assert!(matches!(
        reader.read_file(&summary.snapshot_id, "manifest.json"),
        Err(RepoError::SnapshotNotFound(_))
    ));
    let packs_before = rt
        .block_on(objects(&spec.operator, "org-1/repo-1/data/"))
        .len();
    let pruned = repo.prune(std::time::Duration::ZERO).expect("prune");
    repo.prune(std::time::Duration::ZERO).expect("second prune");
    let packs_after = rt
        .block_on(objects(&spec.operator, "org-1/repo-1/data/"))
        .len();
    assert!(
        packs_after < packs_before,
        "prune left {packs_after} of {packs_before} packs: {pruned:?}"
    );
}
