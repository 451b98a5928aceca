//! Reading a snapshot's contents: restoring a path of it to disk, reading files into memory,
//! listing its files. Each call loads the index afresh, so it sees every snapshot committed
//! before it started.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use rustic_core::repofile::{Metadata, Node, NodeType, SnapshotFile};
use rustic_core::{LocalDestination, LsOptions, Repository, RestoreOptions, TreeId};

use super::pack_map::read_tree;
use super::{ByteProgress, RepoError, SnapshotRepo, guard, io_err, map_err, parse_snapshot_id};

/// Outcome of a restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The repository with its full index loaded, and the node at `path` of a snapshot.
/// The repository's byte progress goes to `progress` when there is one.
fn indexed_node(
    store: &SnapshotRepo,
    snapshot_id: &str,
    path: &str,
    progress: Option<&ByteProgress>,
) -> Result<(Repository<impl rustic_core::IndexedFull>, Node), RepoError> {
    let id = parse_snapshot_id(snapshot_id)?;
    let repo = store
        .reopen_reporting(progress)?
        .to_indexed()
        .map_err(|e| map_err(e, store.location(), "reading the index"))?;
    let snap = store.load_snapshot(&repo, &id)?;
    let node = find_node(&repo, &snap, path)?;
    Ok((repo, node))
}

/// The body of [`SnapshotRepo::restore`] (the contract is documented there).
pub(super) fn restore(
    store: &SnapshotRepo,
    snapshot_id: &str,
    path_in_snapshot: &str,
    dest: &Path,
    progress: Option<ByteProgress>,
) -> Result<RestoreSummary, RepoError> {
    if dest.symlink_metadata().is_ok() {
        return Err(RepoError::DestinationExists(dest.to_path_buf()));
    }
    let name = dest.file_name().ok_or_else(|| {
        RepoError::InvalidInput(format!(
            "restore destination {} has no file name",
            dest.display()
        ))
    })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let location = store.location();
    let err = |doing| move |e| map_err(e, location, doing);

    let (repo, node) = indexed_node(store, snapshot_id, path_in_snapshot, progress.as_ref())?;

    std::fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".restore-{:016x}", rand::random::<u64>()));
    let tmp = parent.join(tmp_name);
    std::fs::create_dir(&tmp).map_err(|e| io_err(&tmp, e))?;

    let restored = if node.is_dir() {
        tmp.clone()
    } else {
        tmp.join(name)
    };
    let run = || -> Result<RestoreSummary, RepoError> {
        let target = restored.to_str().ok_or_else(|| {
            RepoError::InvalidInput(format!("restore path {} is not UTF-8", restored.display()))
        })?;
        let local = LocalDestination::new(target, true, !node.is_dir())
            .map_err(err("preparing the destination"))?;
        let ls = repo
            .ls(&node, &LsOptions::default())
            .map_err(err("listing the snapshot"))?;
        let opts = RestoreOptions::default().no_ownership(true);
        let plan = repo
            .prepare_restore(&opts, ls.clone(), &local, false)
            .map_err(err("planning the restore"))?;
        let summary = RestoreSummary {
            files: plan.stats.files.restore,
            dirs: plan.stats.dirs.restore,
            bytes: plan.restore_size,
        };
        repo.restore(plan, &opts, ls, &local)
            .map_err(err("restoring"))?;
        Ok(summary)
    };
    let result = guard("restoring", run).and_then(|summary| {
        std::fs::rename(&restored, dest).map_err(|e| io_err(dest, e))?;
        Ok(summary)
    });
    // After a successful directory restore `tmp` was renamed away; otherwise clean it up.
    if tmp.symlink_metadata().is_ok()
        && let Err(e) = std::fs::remove_dir_all(&tmp)
    {
        tracing::warn!(path = %tmp.display(), error = %e, "could not remove temporary restore directory");
    }
    result
}

/// The body of [`SnapshotRepo::read_file`].
pub(super) fn read_file(
    store: &SnapshotRepo,
    snapshot_id: &str,
    path: &str,
) -> Result<Vec<u8>, RepoError> {
    let location = store.location();
    let err = |doing| move |e| map_err(e, location, doing);
    let (repo, node) = indexed_node(store, snapshot_id, path, None)?;
    if !node.is_file() {
        return Err(RepoError::InvalidInput(format!(
            "{path:?} in snapshot {snapshot_id} is not a regular file"
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(node.meta.size).unwrap_or(0));
    guard("reading a file", || {
        repo.dump(&node, &mut out).map_err(err("reading the file"))
    })?;
    Ok(out)
}

/// The body of [`SnapshotRepo::read_files`].
pub(super) fn read_files(
    store: &SnapshotRepo,
    snapshot_id: &str,
    dir: &str,
) -> Result<Vec<(String, Vec<u8>)>, RepoError> {
    let location = store.location();
    let err = |doing| move |e| map_err(e, location, doing);
    let (repo, node) = indexed_node(store, snapshot_id, dir, None)?;
    if !node.is_dir() {
        return Err(RepoError::InvalidInput(format!(
            "{dir:?} in snapshot {snapshot_id} is not a directory"
        )));
    }
    let mut out = Vec::new();
    for item in repo
        .ls(&node, &LsOptions::default())
        .map_err(err("listing the snapshot"))?
    {
        let (path, file) = item.map_err(err("listing the snapshot"))?;
        if !file.is_file() {
            continue;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(file.meta.size).unwrap_or(0));
        guard("reading a file", || {
            repo.dump(&file, &mut bytes).map_err(err("reading a file"))
        })?;
        let rel = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        out.push((rel, bytes));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The body of [`SnapshotRepo::list_files`].
pub(super) fn list_files(
    store: &SnapshotRepo,
    snapshot_id: &str,
    path: &str,
) -> Result<BTreeMap<String, u64>, RepoError> {
    let (repo, snap) = store.indexed_snapshot(snapshot_id)?;
    let node = find_node(&repo, &snap, path)?;
    let Some(root) = node.subtree.filter(|_| node.is_dir()) else {
        return Err(RepoError::InvalidInput(format!(
            "{path:?} in snapshot {snapshot_id} is not a directory"
        )));
    };
    let mut out = BTreeMap::new();
    let mut stack: Vec<(String, TreeId)> = vec![(String::new(), root)];
    while let Some((prefix, tree_id)) = stack.pop() {
        let tree = read_tree(&repo, &tree_id).map_err(|message| RepoError::Repository {
            doing: "listing the snapshot",
            message: format!(
                "tree {} at {prefix:?}: {message}",
                tree_id.to_hex().as_str()
            ),
        })?;
        for node in tree.nodes {
            let name = node.name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if node.is_dir() {
                if let Some(sub) = node.subtree {
                    stack.push((rel, sub));
                }
            } else if node.is_file() {
                out.insert(rel, node.meta.size);
            }
        }
    }
    Ok(out)
}

/// Finds the node at `path` (`""` or `"/"` = the root tree) by walking the trees, so that a
/// missing path is reported as such (rustic's own lookup reports it as an internal error).
pub(super) fn find_node<S: rustic_core::IndexedTree>(
    repo: &Repository<S>,
    snap: &SnapshotFile,
    path: &str,
) -> Result<Node, RepoError> {
    let not_found = || RepoError::PathNotFound {
        snapshot: snap.id.to_hex().to_string(),
        path: path.to_string(),
    };
    let mut node = Node::new_node(OsStr::new(""), NodeType::Dir, Metadata::default());
    node.subtree = Some(snap.tree);
    for comp in Path::new(path).components() {
        let name = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(name) => name,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(RepoError::InvalidInput(format!(
                    "path {path:?} must not contain `..`"
                )));
            }
        };
        let Some(tree_id) = node.subtree else {
            return Err(not_found());
        };
        let tree = repo
            .get_tree(&tree_id)
            .map_err(|e| map_err(e, &repo.name, "reading a tree"))?;
        node = tree
            .nodes
            .into_iter()
            .find(|n| n.name() == name)
            .ok_or_else(not_found)?;
    }
    Ok(node)
}
