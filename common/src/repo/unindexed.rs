//! Packs no index lists: what a failed backup attempt leaves when it wrote packs but not the
//! index naming them (the disk filled first, the worker was killed).
//!
//! rustic_core's prune marks such packs for deletion only when it rewrites some index file
//! anyway (otherwise it ends with "nothing to do" and forgets them), so on a repository where
//! nothing else changed they would stay forever. [`remove_unindexed_packs`] deletes them itself,
//! as part of [`SnapshotRepo::prune`].
//!
//! Why deleting them is safe: no index lists them, so no backup deduplicates against them and
//! no restore reads them. Only the writer that is still to write their index could need them,
//! so they are deleted only when at least `min_age` old (the prune's `keep_delete`, the same
//! grace a marked pack gets), and prune runs only while no backup of the repository is leased.

use std::collections::HashSet;

use rustic_core::repofile::IndexFile;
use rustic_core::{FileType, Id, ReadBackend, WriteBackend};

use super::{RepoError, SnapshotRepo, map_err};

/// What [`remove_unindexed_packs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnindexedPacks {
    pub deleted_packs: u64,
    pub deleted_bytes: u64,
    /// Unindexed packs younger than `min_age`, left for a later prune.
    pub young_packs: u64,
}

/// Deletes every pack that no index file lists (neither in use nor marked for deletion)
/// and that was last modified at least `min_age` before `now_ms`. Never run it while a
/// backup of this repository runs: its packs are unindexed until it writes its index.
pub(super) fn remove_unindexed_packs(
    store: &SnapshotRepo,
    min_age: std::time::Duration,
    now_ms: i64,
) -> Result<UnindexedPacks, RepoError> {
    let location = store.location().to_string();
    let repo = store.reopen()?;
    let mut indexed: HashSet<Id> = HashSet::new();
    let files = repo
        .stream_files::<IndexFile>()
        .map_err(|e| map_err(e, &location, "reading the index"))?;
    for file in files {
        let (_, file) = file.map_err(|e| map_err(e, &location, "reading the index"))?;
        indexed.extend(
            file.packs
                .iter()
                .chain(file.packs_to_delete.iter())
                .map(|p| *p.id),
        );
    }
    let cutoff = now_ms.saturating_sub(i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX));
    let mut out = UnindexedPacks::default();
    let packs = store
        .backend
        .list_with_size(FileType::Pack)
        .map_err(|e| map_err(e, &location, "listing packs"))?;
    for (id, size) in packs {
        if indexed.contains(&id) {
            continue;
        }
        let modified = store
            .backend
            .modified_ms(FileType::Pack, &id)
            .map_err(|e| RepoError::Storage {
                location: location.clone(),
                message: format!("reading the age of pack {}: {e}", id.to_hex().as_str()),
            })?;
        match modified {
            // Gone meanwhile.
            None => continue,
            Some(t) if t > cutoff => {
                out.young_packs += 1;
                continue;
            }
            Some(_) => {}
        }
        store
            .backend
            .remove(FileType::Pack, &id, false)
            .map_err(|e| map_err(e, &location, "deleting an unindexed pack"))?;
        tracing::info!(location = %location, pack = %id.to_hex().as_str(), bytes = size, "deleted a pack no index lists");
        out.deleted_packs += 1;
        out.deleted_bytes += u64::from(size);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::repo_tests::Env;
    use super::super::{BackupRequest, RepoKey};
    use super::*;

    /// Files under `dir`, recursively.
    fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn unindexed_packs_go_once_old_enough_and_indexed_ones_stay() {
        let (env, _g) = Env::new();
        let src = env.path("src");
        std::fs::create_dir_all(&src).expect("src");
        std::fs::write(src.join("f"), b"some data\n").expect("file");
        let (repo, _) =
            SnapshotRepo::open(&env.spec, RepoKey::Password(&env.password), true).expect("open");
        let req = BackupRequest {
            host: "repovault".into(),
            label: "org-1/repo-1".into(),
            tags: vec!["type=full".into()],
            parent: None,
            as_path: "/repovault".into(),
            exclude: Vec::new(),
        };
        repo.backup(&src, &req, &|| Ok(())).expect("backup");
        let indexed = files(&env.repo_dir().join("data"));
        assert!(!indexed.is_empty());
        // What a failed attempt leaves: a pack no index lists.
        let id = "5e".repeat(32);
        let orphan = env.repo_dir().join("data").join(&id[..2]).join(&id);
        std::fs::create_dir_all(orphan.parent().expect("parent")).expect("dir");
        std::fs::write(&orphan, vec![1u8; 4096]).expect("orphan");

        let hour = Duration::from_secs(3600);
        let now = chrono::Utc::now().timestamp_millis();
        let young = remove_unindexed_packs(&repo, hour, now).expect("sweep");
        assert_eq!(
            young,
            UnindexedPacks {
                young_packs: 1,
                ..Default::default()
            }
        );
        assert!(orphan.exists(), "too young: its writer may still index it");
        let old = remove_unindexed_packs(&repo, hour, now + 2 * 3_600_000).expect("sweep");
        assert_eq!((old.deleted_packs, old.deleted_bytes), (1, 4096));
        assert!(!orphan.exists());
        for p in &indexed {
            assert!(p.exists(), "indexed pack {} kept", p.display());
        }
        repo.check(true).expect("still sound");
    }
}
