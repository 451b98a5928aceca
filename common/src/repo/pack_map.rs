//! Where the index places blobs ([`PackMap`]), read from the decrypted index files
//! (`Repository::stream_files::<IndexFile>`), and the small helpers the pack walks and the
//! read-back share.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use rustic_core::repofile::{IndexFile, Tree};
use rustic_core::{Id, IndexedTree, Repository, RusticError, TreeId};

use super::{RepoError, map_err};

/// Where the index places blobs, from the decrypted index files.
pub(super) struct PackMap {
    /// Live packs (not marked for deletion): id -> (size, blobs).
    pub(super) packs: HashMap<Id, PackEntry>,
    /// Packs marked for deletion by a prune (two-phase prune deletes them later).
    pub(super) marked: HashMap<Id, PackEntry>,
    /// Blob -> the pack holding it; live packs win over marked ones.
    pub(super) blobs: HashMap<Id, Id>,
    /// Further packs holding the same blob (duplicates), rare.
    pub(super) duplicates: HashMap<Id, Vec<Id>>,
}

pub(super) struct PackEntry {
    pub(super) size: u64,
    pub(super) blobs: Vec<rustic_core::repofile::IndexBlob>,
}

impl PackMap {
    pub(super) fn load<S: rustic_core::Open>(
        repo: &Repository<S>,
        location: &str,
    ) -> Result<Self, RepoError> {
        let mut map = PackMap {
            packs: HashMap::new(),
            marked: HashMap::new(),
            blobs: HashMap::new(),
            duplicates: HashMap::new(),
        };
        let mut marked_packs = Vec::new();
        let files = repo
            .stream_files::<IndexFile>()
            .map_err(|e| map_err(e, location, "reading the index"))?;
        for file in files {
            let (_, file) = file.map_err(|e| map_err(e, location, "reading the index"))?;
            for pack in file.packs {
                map.packs.insert(
                    *pack.id,
                    PackEntry {
                        size: u64::from(pack.pack_size()),
                        blobs: pack.blobs,
                    },
                );
            }
            marked_packs.extend(file.packs_to_delete);
        }
        for pack in marked_packs {
            // A pack can be live in one index file and marked in another while a prune runs;
            // live wins.
            if !map.packs.contains_key(&*pack.id) {
                map.marked.insert(
                    *pack.id,
                    PackEntry {
                        size: u64::from(pack.pack_size()),
                        blobs: pack.blobs,
                    },
                );
            }
        }
        // Live packs first so that a blob maps to a live copy when there is one.
        let mut ids: Vec<(bool, Id)> = map
            .packs
            .keys()
            .map(|id| (false, *id))
            .chain(map.marked.keys().map(|id| (true, *id)))
            .collect();
        ids.sort_unstable();
        for (marked, pack_id) in ids {
            let entry = if marked {
                &map.marked[&pack_id]
            } else {
                &map.packs[&pack_id]
            };
            for blob in &entry.blobs {
                let blob_id = *blob.id;
                match map.blobs.get(&blob_id) {
                    None => {
                        map.blobs.insert(blob_id, pack_id);
                    }
                    Some(first) if *first != pack_id => {
                        map.duplicates.entry(blob_id).or_default().push(pack_id);
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(map)
    }

    /// Every pack holding `blob`.
    pub(super) fn packs_of(&self, blob: &Id) -> impl Iterator<Item = &Id> {
        self.blobs
            .get(blob)
            .into_iter()
            .chain(self.duplicates.get(blob).into_iter().flatten())
    }

    /// Adds the packs holding `blob` to `packs`; returns what is wrong if it is in no pack, or
    /// only in packs a prune marked for deletion (rustic_core's index ignores those, so a
    /// restore would not find the blob; restic's next prune would keep the pack).
    pub(super) fn locate(&self, blob: &Id, packs: &mut HashSet<Id>) -> Option<String> {
        let mut any = false;
        let mut live = false;
        for pack in self.packs_of(blob) {
            packs.insert(*pack);
            any = true;
            live |= self.packs.contains_key(pack);
        }
        match (any, live) {
            (false, _) => Some("is in no pack of the index".to_string()),
            (true, false) => Some("is only in packs a prune marked for deletion".to_string()),
            (true, true) => None,
        }
    }

    pub(super) fn size(&self, pack: &Id) -> Option<u64> {
        self.packs
            .get(pack)
            .or_else(|| self.marked.get(pack))
            .map(|p| p.size)
    }
}

/// `get_tree`, with rustic_core panics turned into errors.
pub(super) fn read_tree<S: IndexedTree>(repo: &Repository<S>, id: &TreeId) -> Result<Tree, String> {
    match catch_unwind(AssertUnwindSafe(|| repo.get_tree(id))) {
        Ok(Ok(tree)) => Ok(tree),
        Ok(Err(e)) => Err(super::describe(&e)),
        Err(_) => Err("rustic_core panicked reading it".to_string()),
    }
}

pub(super) fn parse_pack_id(s: &str) -> Result<Id, RepoError> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RepoError::InvalidInput(format!(
            "{s:?} is not a full 64-hex pack id"
        )));
    }
    s.parse::<Id>()
        .map_err(|_| RepoError::InvalidInput(format!("{s:?} is not a full 64-hex pack id")))
}

/// Whether a storage error is opendal's "not found" (anywhere in the error chain).
pub(super) fn is_not_found(err: &RusticError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(od) = e.downcast_ref::<opendal::Error>() {
            return od.kind() == opendal::ErrorKind::NotFound;
        }
        cause = e.source();
    }
    false
}
