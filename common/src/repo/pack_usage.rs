//! Which packs a snapshot needs, and which snapshots a set of packs breaks: walks of the
//! snapshot trees against the [`PackMap`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rustic_core::repofile::{Node, SnapshotFile, Tree};
use rustic_core::{Id, IndexedTree, Repository, TreeId};

use super::pack_map::{PackMap, read_tree};
use super::{RepoError, SnapshotRepo, map_err};

/// At most this many problems are kept per walk (a broken repository can have millions).
const MAX_PROBLEMS: usize = 1000;

/// The packs a snapshot's trees reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotPacks {
    /// `(full hex pack id, size in bytes as recorded in the index)`, sorted by id. A blob stored
    /// in several packs (duplicates left by concurrent backups) brings in every one of them.
    pub packs: Vec<(String, u64)>,
    /// Blobs the index does not know and trees that could not be read (at most
    /// [`MAX_PROBLEMS`] messages, the last one counting the rest). Non-empty means the snapshot
    /// cannot be restored completely whatever the packs contain.
    pub problems: Vec<String>,
}

impl SnapshotPacks {
    /// The pack ids alone, in order.
    pub fn ids(&self) -> Vec<String> {
        self.packs.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Sum of the pack sizes.
    pub fn total_bytes(&self) -> u64 {
        self.packs.iter().map(|(_, size)| size).sum()
    }
}

/// Bounded list of problems.
#[derive(Default)]
struct Problems {
    kept: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, p: String) {
        if self.kept.len() < MAX_PROBLEMS {
            self.kept.push(p);
        } else {
            self.more += 1;
        }
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.kept.push(format!("and {} more problems", self.more));
        }
        self.kept
    }
}

/// The body of [`SnapshotRepo::snapshot_packs`].
pub(super) fn snapshot_packs(
    store: &SnapshotRepo,
    snapshot_id: &str,
) -> Result<SnapshotPacks, RepoError> {
    let location = store.location();
    let (repo, snap) = store.indexed_snapshot(snapshot_id)?;
    let map = PackMap::load(&repo, location)?;

    let mut packs: HashSet<Id> = HashSet::new();
    let mut problems = Problems::default();
    walk_trees(&repo, &snap, &mut problems, |path, tree_id, tree| {
        let mut problems = Vec::new();
        if let Some(p) = map.locate(&tree_id, &mut packs) {
            problems.push(format!(
                "tree blob {} of {} {p}",
                tree_id.to_hex().as_str(),
                display_path(path)
            ));
        }
        let Some(tree) = tree else { return problems };
        for node in &tree.nodes {
            for blob in node.content.iter().flatten() {
                if let Some(p) = map.locate(blob, &mut packs) {
                    problems.push(format!(
                        "data blob {} of {} {p}",
                        blob.to_hex().as_str(),
                        display_path(&path.join(node.name()))
                    ));
                }
            }
        }
        problems
    });

    let mut packs: Vec<(String, u64)> = packs
        .into_iter()
        .map(|p| (p.to_hex().to_string(), map.size(&p).unwrap_or(0)))
        .collect();
    packs.sort_unstable();
    Ok(SnapshotPacks {
        packs,
        problems: problems.into_vec(),
    })
}

/// The body of [`SnapshotRepo::all_packs`].
pub(super) fn all_packs(store: &SnapshotRepo) -> Result<Vec<(String, u64)>, RepoError> {
    let map = PackMap::load(&store.repo, store.location())?;
    let mut out: Vec<(String, u64)> = map
        .packs
        .iter()
        .map(|(id, p)| (id.to_hex().to_string(), p.size))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The body of [`SnapshotRepo::snapshots_using_packs`].
pub(super) fn snapshots_using_packs(
    store: &SnapshotRepo,
    packs: &HashSet<String>,
) -> Result<Vec<String>, RepoError> {
    let location = store.location();
    let wanted: HashSet<Id> = packs.iter().filter_map(|p| p.parse::<Id>().ok()).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let repo = store
        .reopen()?
        .to_indexed_ids()
        .map_err(|e| map_err(e, location, "reading the index"))?;
    let map = PackMap::load(&repo, location)?;
    let snaps = repo
        .get_all_snapshots()
        .map_err(|e| map_err(e, location, "listing snapshots"))?;
    let hits = |blob: &Id| map.packs_of(blob).any(|p| wanted.contains(p));

    // Memo over all snapshots: consecutive backups share most trees.
    let mut memo: HashMap<TreeId, bool> = HashMap::new();
    let mut out = Vec::new();
    for snap in &snaps {
        if tree_uses(&repo, snap.tree, &hits, &mut memo) {
            out.push(snap.id.to_hex().to_string());
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The body of [`SnapshotRepo::snapshot_fully_indexed`].
pub(super) fn snapshot_fully_indexed(
    store: &SnapshotRepo,
    snapshot_id: &str,
) -> Result<bool, RepoError> {
    let location = store.location();
    let repo = store
        .reopen()?
        .to_indexed_ids()
        .map_err(|e| map_err(e, location, "reading the index"))?;
    let map = PackMap::load(&repo, location)?;
    let snap = repo
        .get_snapshot_from_str(snapshot_id, |_| true)
        .map_err(|e| map_err(e, location, "reading the snapshot"))?;
    let unindexed = |blob: &Id| !map.packs_of(blob).any(|pack| map.packs.contains_key(pack));
    let mut memo: HashMap<TreeId, bool> = HashMap::new();
    Ok(!tree_uses(&repo, snap.tree, &unindexed, &mut memo))
}

/// Walks every distinct tree of `snap`; `visit(path, id, tree)` gets `None` for a tree that
/// could not be read (the failure is recorded first) and returns problems to record.
fn walk_trees<S: IndexedTree>(
    repo: &Repository<S>,
    snap: &SnapshotFile,
    problems: &mut Problems,
    mut visit: impl FnMut(&Path, TreeId, Option<&Tree>) -> Vec<String>,
) {
    let mut seen: HashSet<TreeId> = HashSet::new();
    let mut stack: Vec<(PathBuf, TreeId)> = vec![(PathBuf::from("/"), snap.tree)];
    while let Some((path, id)) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let tree = match read_tree(repo, &id) {
            Ok(tree) => Some(tree),
            Err(why) => {
                problems.push(format!(
                    "tree {} of {} cannot be read: {why}",
                    id.to_hex().as_str(),
                    display_path(&path)
                ));
                None
            }
        };
        for p in visit(&path, id, tree.as_ref()) {
            problems.push(p);
        }
        let Some(tree) = tree else { continue };
        for node in tree.nodes {
            if let Some(sub) = node.subtree {
                stack.push((path.join(node.name()), sub));
            }
        }
    }
}

/// Whether the tree `id` or anything under it has a blob for which `hits` is true. Memoised;
/// unreadable trees count as not using the packs. Recursion depth is the directory depth.
fn tree_uses<S: IndexedTree>(
    repo: &Repository<S>,
    id: TreeId,
    hits: &dyn Fn(&Id) -> bool,
    memo: &mut HashMap<TreeId, bool>,
) -> bool {
    if let Some(known) = memo.get(&id) {
        return *known;
    }
    // Provisional answer: guards against a (corrupt) cycle of trees.
    memo.insert(id, false);
    let mut uses = hits(&id);
    if !uses && let Ok(tree) = read_tree(repo, &id) {
        uses = tree
            .nodes
            .iter()
            .any(|n: &Node| n.content.iter().flatten().any(|b| hits(b)));
        if !uses {
            uses = tree
                .nodes
                .iter()
                .filter_map(|n| n.subtree)
                .any(|sub| tree_uses(repo, sub, hits, memo));
        }
    }
    memo.insert(id, uses);
    uses
}

fn display_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
