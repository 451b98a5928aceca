//! Tests of [`SnapshotRepo::repeat_parent`]: the snapshot names the parent's tree, adds no
//! pack or index, is written only behind the fence, restores like the parent, and stock
//! restic reads it.

use std::cell::Cell;

use super::repo_tests::{Env, make_source, request, snapshot_files};
use super::*;

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[test]
fn a_repeated_snapshot_names_the_parent_tree_and_writes_nothing_else() {
    let (env, _g) = Env::new();
    let src = env.path("src");
    make_source(&src);
    let (repo, _) = env.open();
    let first = repo
        .backup(&src, &request(&["backup=one"], None), &|| Ok(()))
        .expect("backup");
    let (packs, indexes) = (
        files_under(&env.repo_dir().join("data")),
        files_under(&env.repo_dir().join("index")),
    );

    // A fence that refuses: no snapshot file.
    let refused = repo
        .repeat_parent(&first.snapshot_id, &request(&["backup=two"], None), &|| {
            Err("lease lost".into())
        })
        .expect_err("fenced");
    assert!(
        matches!(&refused, RepoError::Fenced(m) if m == "lease lost"),
        "{refused:?}"
    );
    assert_eq!(snapshot_files(&env), 1);

    // The fence runs before the snapshot file exists; after it, the file is there.
    let seen = Cell::new(usize::MAX);
    let t = std::time::Instant::now();
    let second = repo
        .repeat_parent(&first.snapshot_id, &request(&["backup=two"], None), &|| {
            seen.set(snapshot_files(&env));
            Ok(())
        })
        .expect("repeat");
    println!("repeat_parent took {:?}", t.elapsed());
    assert_eq!(seen.get(), 1);
    assert_eq!(snapshot_files(&env), 2);
    assert_eq!(
        (
            second.data_added,
            second.data_added_packed,
            second.files_new
        ),
        (0, 0, 0)
    );
    assert_eq!(second.total_bytes, first.total_bytes);
    assert_eq!(second.parent.as_deref(), Some(first.snapshot_id.as_str()));
    // No pack, no index.
    assert_eq!(files_under(&env.repo_dir().join("data")), packs);
    assert_eq!(files_under(&env.repo_dir().join("index")), indexes);

    let list = repo.snapshots().expect("list");
    let (a, b) = (&list[0], &list[1]);
    assert_eq!(b.id, second.snapshot_id);
    assert_eq!(b.tree, a.tree);
    assert_eq!(b.parent.as_deref(), Some(a.id.as_str()));
    assert_eq!(b.tags, vec!["backup=two".to_string()]);
    assert_eq!(
        (&b.hostname, &b.label, &b.paths),
        (&a.hostname, &a.label, &a.paths)
    );

    // It restores what the parent holds.
    let dest = env.path("restored");
    repo.restore(&second.snapshot_id, "", &dest)
        .expect("restore");
    assert_eq!(
        std::fs::read(dest.join("code.git/objects/pack/pack-1.pack")).expect("pack"),
        std::fs::read(src.join("code.git/objects/pack/pack-1.pack")).expect("pack")
    );

    // Stock restic reads it and finds the repository sound.
    if let Some(out) = env.restic(&["ls", &second.snapshot_id[..8]]) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("/code.git/HEAD"));
        let check = env.restic(&["check", "--read-data"]).expect("restic");
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }

    // A parent that is not there is refused, and nothing is written.
    let gone = "0".repeat(64);
    let err = repo
        .repeat_parent(&gone, &request(&[], None), &|| Ok(()))
        .expect_err("no such parent");
    assert!(matches!(err, RepoError::SnapshotNotFound(_)), "{err:?}");
    assert_eq!(snapshot_files(&env), 2);
}
