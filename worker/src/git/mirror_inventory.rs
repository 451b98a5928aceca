//! What a mirror holds: its refs, its `HEAD`, its commit count, and the files at `HEAD`.
//! Listing the refs reads no object; counting the commits walks them all.
//!
//! Read-only; every function blocks.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use gix::{bstr::ByteSlice, refs::Target};

use super::{Inventory, git_error::GitError, mirror_open::open};

/// Lists the refs of the repository at `dir`, its `HEAD` and its commit count.
pub fn inventory(dir: &Path) -> Result<Inventory, GitError> {
    let repo = open(dir, None)?;
    inventory_of(&repo, dir)
}

/// Every ref under `refs/` with its own target.
pub(super) fn local_refs(
    repo: &gix::Repository,
    what: &str,
) -> Result<BTreeMap<String, Target>, GitError> {
    let err = |e: gix::Error| GitError::Other {
        context: format!("listing refs of {what}"),
        detail: e.to_string(),
    };
    let platform = repo.references().map_err(err)?;
    let mut refs = BTreeMap::new();
    for reference in platform.all().map_err(err)? {
        let reference = reference.map_err(err)?;
        let name = reference.name().as_bstr().to_str_lossy().into_owned();
        if name.starts_with("refs/") {
            refs.insert(name, reference.inner.target.clone());
        }
    }
    Ok(refs)
}

/// [`inventory`] of an open repository; `dir` names it in errors.
pub(super) fn inventory_of(repo: &gix::Repository, dir: &Path) -> Result<Inventory, GitError> {
    let what = dir.display().to_string();
    let refs: BTreeMap<String, String> = local_refs(repo, &what)?
        .into_iter()
        .map(|(name, target)| {
            let value = match target {
                Target::Object(id) => id.to_hex().to_string(),
                Target::Symbolic(target) => format!("ref: {}", target.as_bstr()),
            };
            (name, value)
        })
        .collect();
    let count = |prefix: &str| refs.keys().filter(|k| k.starts_with(prefix)).count() as u64;
    Ok(Inventory {
        branches: count("refs/heads/"),
        tags: count("refs/tags/"),
        head: head_ref(repo),
        refs,
    })
}

/// The number of distinct commits reachable from every ref of the mirror at `dir` (as
/// `git rev-list --all --count`; tags peeled, refs to trees or blobs ignored). A backup takes
/// the count from its git_fsck, which walks the commits anyway; this is for everyone else.
pub fn count_all_commits(dir: &Path) -> Result<u64, GitError> {
    let repo = open(dir, None)?;
    let what = dir.display().to_string();
    let err = |e: gix::Error| GitError::Other {
        context: format!("counting the commits of {what}"),
        detail: e.to_string(),
    };
    let mut tips = BTreeSet::new();
    for target in local_refs(&repo, &what)?.values() {
        if let Target::Object(id) = target {
            // Peel tags to find commits; refs to trees or blobs have no commits.
            let peeled = repo
                .find_object(*id)
                .map_err(err)?
                .peel_tags_to_end()
                .map_err(err)?;
            if peeled.kind == gix::object::Kind::Commit {
                tips.insert(peeled.id);
            }
        }
    }
    count_reachable(&repo, tips).map_err(err)
}

fn head_ref(repo: &gix::Repository) -> Option<String> {
    match repo.find_reference("HEAD").ok()?.inner.target {
        Target::Symbolic(target) => Some(target.as_bstr().to_str_lossy().into_owned()),
        Target::Object(_) => None,
    }
}

/// The number of distinct commits reachable from `tips`.
fn count_reachable(
    repo: &gix::Repository,
    tips: BTreeSet<gix::ObjectId>,
) -> Result<u64, gix::Error> {
    if tips.is_empty() {
        return Ok(0);
    }
    let mut n = 0u64;
    for info in repo.rev_walk(tips).all()? {
        info?;
        n += 1;
    }
    Ok(n)
}

/// Number of files (blobs, links) in the tree `HEAD` points to: a wiki's page count (GitHub
/// wikis are one file per page, sidebars and footers included). 0 for an empty repository.
pub fn files_at_head(dir: &Path) -> Result<u64, GitError> {
    let repo = open(dir, None)?;
    let what = dir.display().to_string();
    let err = |e: gix::Error| GitError::Other {
        context: format!("reading the tree of HEAD in {what}"),
        detail: e.to_string(),
    };
    let Ok(commit) = repo.head_commit() else {
        return Ok(0);
    };
    let tree = commit.tree().map_err(&err)?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut recorder).map_err(&err)?;
    Ok(recorder
        .records
        .iter()
        .filter(|e| !e.mode.is_tree() && !e.mode.is_commit())
        .count() as u64)
}
