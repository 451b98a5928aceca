//! Verification of a bare mirror: object integrity, connectivity from every ref, and commit
//! counts.
//!
//! gix has no `git fsck`: `Store::verify_integrity` checks every object's hash and the packs'
//! and indexes' checksums but not reachability, and gix-fsck's `Connectivity` checks one
//! commit's tree only. So [`fsck`] runs two passes of its own: the integrity check pack by pack
//! (`fsck_integrity.rs`), then a walk of every object reachable from every ref
//! (`fsck_connectivity.rs`), which together are what `git fsck --full` does minus reflogs (a
//! mirror keeps none: `core.logAllRefUpdates=false`). This file holds the report both passes
//! write to.
//!
//! Every function blocks; async callers run them with `spawn_blocking`.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use gix::{ObjectId, objs::Kind};

use super::{
    fsck_connectivity::{Interrupted, Walk, refs_to_check},
    fsck_integrity::{Packs, verify_objects},
    git_error::GitError,
    mirror_open::open_for_walk,
};

/// At most this many problems are listed in [`FsckReport::problems`]; the rest are summed up
/// in one last line. A thousand "missing blob" lines help nobody more than twenty do.
pub const MAX_PROBLEMS: usize = 20;

/// What [`fsck`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Objects in the object database: loose objects plus every pack index's entries (as
    /// `git count-objects -v` `count` + `in-pack`; an object in two packs counts twice).
    pub objects: u64,
    /// Distinct objects reachable from the refs and `HEAD` (as
    /// `git rev-list --objects --all | wc -l`; submodule commits are not objects of this
    /// repository and are not counted). Missing objects are not counted.
    pub reachable: u64,
    /// Refs checked: every ref under `refs/`, plus `HEAD` when it resolves to an object.
    pub refs: u64,
    /// Of the reachable objects, the commits (as `git rev-list --all --count`).
    pub commits: u64,
    /// One complete sentence per problem (corrupt pack or index, missing or unreadable object
    /// with what refers to it, ref to a missing or wrong-type object), at most
    /// [`MAX_PROBLEMS`] of them followed by a "... and N more problems." line. Empty when the
    /// repository is sound.
    pub problems: Vec<String>,
    /// What the check covered.
    pub coverage: Coverage,
}

/// What a check covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Coverage {
    /// Everything, as asked ([`fsck`]: verifications of stored backups, drills).
    #[default]
    Everything,
    /// Everything, because an incremental check could not be trusted (the reason says why).
    Full { reason: String },
    /// What changed since the last check ([`super::fsck_incremental`]).
    Incremental {
        /// Objects found reachable that were not before.
        new_objects: u64,
        /// Refs that are new or point elsewhere.
        moved_refs: u64,
        /// How long ago the last full check passed, as people say it ("3 days ago").
        full_check: String,
    },
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Coverage::Everything => write!(f, "full check"),
            Coverage::Full { reason } => write!(f, "full check ({reason})"),
            Coverage::Incremental {
                new_objects,
                moved_refs,
                full_check,
            } => write!(
                f,
                "{new_objects} new objects, {moved_refs} moved refs; full check {full_check}"
            ),
        }
    }
}

impl FsckReport {
    /// `true` when no problem was found.
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the bare repository at `dir` the way `git fsck --full` would:
///
/// 1. every object in every pack and every loose object hashes to its id, and every pack and
///    index is sound (checksums, CRC32s, decodable non-blob objects); each pack is checked
///    on its own, so every bad pack is named;
/// 2. every object reachable from a ref (tags peeled, tag chains included; commits' parents and
///    trees; trees' entries) exists, has the kind its referrer says, and parses;
/// 3. `refs/heads/*`, `refs/notes/*` and `HEAD` point at commits; every ref points at an
///    existing object.
///
/// Corruption is never an error: it is listed in [`FsckReport::problems`]. An empty repository
/// (no refs) has no problems. The error cases are: `dir` cannot be opened as a bare repository,
/// its refs cannot be listed at all, or `interrupt` was set ([`GitError::Interrupted`]).
/// A panic inside gix on corrupt data is caught and reported as a problem.
pub fn fsck(dir: &Path, interrupt: &AtomicBool) -> Result<FsckReport, GitError> {
    let repo = open_for_walk(dir)?;
    let what = dir.display().to_string();
    let mut problems = Problems::default();

    // (a) Integrity, pack by pack (the store's own `verify_integrity` stops at the first bad
    // pack without saying which), then the loose objects.
    let objects = verify_objects(
        dir,
        repo.object_hash(),
        Packs::All,
        interrupt,
        &mut problems,
    )?;
    if interrupt.load(Ordering::Relaxed) {
        return Err(GitError::Interrupted { url: what });
    }

    // (b), (c) Connectivity from every ref.
    let roots = refs_to_check(&repo, &mut problems);
    let refs = roots.len() as u64;
    let walked = catch_unwind(AssertUnwindSafe(|| {
        let mut walk = Walk::new(&repo, dir, &mut problems);
        walk.run(roots, interrupt).map(|n| (n, walk.commits))
    }));
    let (reachable, commits) = match walked {
        Ok(Ok(n)) => n,
        Ok(Err(Interrupted)) => return Err(GitError::Interrupted { url: what }),
        Err(_) => {
            problems.push(
                "The connectivity walk stopped early: gix panicked reading an object.".into(),
            );
            (0, 0)
        }
    };

    Ok(FsckReport {
        objects,
        reachable,
        refs,
        commits,
        problems: problems.into_list(),
        coverage: Coverage::Everything,
    })
}

/// The number of commits reachable from `tip` (as `git rev-list --count TIP`): `tip` is a hex
/// object id or a full ref name (`refs/heads/main`, `HEAD`); an annotated tag is peeled to its
/// commit. A `tip` that names nothing, or that is not a commit after peeling, is an error;
/// so is a missing commit in its history.
pub fn count_commits(dir: &Path, tip: &str) -> Result<u64, GitError> {
    let repo = open_for_walk(dir)?;
    let err = |doing: &str| {
        let context = format!("counting the commits of {tip} in {}", dir.display());
        let doing = doing.to_owned();
        move |e: gix::Error| GitError::Other {
            context: context.clone(),
            detail: format!("{doing}: {}", chain(&e)),
        }
    };
    let hex_len = repo.object_hash().len_in_hex();
    let id = if tip.len() == hex_len && tip.bytes().all(|b| b.is_ascii_hexdigit()) {
        ObjectId::from_hex(tip.as_bytes()).map_err(|e| GitError::Other {
            context: format!("counting the commits of {tip} in {}", dir.display()),
            detail: e.to_string(),
        })?
    } else {
        let mut reference = repo.find_reference(tip).map_err(err("resolving the ref"))?;
        reference
            .peel_to_id()
            .map_err(err("peeling the ref"))?
            .detach()
    };
    let commit = repo
        .find_object(id)
        .map_err(err("reading the tip"))?
        .peel_tags_to_end()
        .map_err(err("peeling the tip"))?;
    if commit.kind != Kind::Commit {
        return Err(GitError::Other {
            context: format!("counting the commits of {tip} in {}", dir.display()),
            detail: format!("{} is a {}, not a commit", commit.id, commit.kind),
        });
    }
    let mut n = 0u64;
    for info in repo
        .rev_walk([commit.id])
        .all()
        .map_err(err("walking the history"))?
    {
        info.map_err(err("walking the history"))?;
        n += 1;
    }
    Ok(n)
}

/// Problems found so far: the first [`MAX_PROBLEMS`] in full, the rest only counted (a badly
/// broken repository can have millions).
#[derive(Default)]
pub(super) struct Problems {
    list: Vec<String>,
    more: u64,
}

impl Problems {
    pub(super) fn push(&mut self, problem: String) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(problem);
        } else {
            self.more += 1;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(super) fn into_list(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list
                .push(format!("... and {} more problems.", self.more));
        }
        self.list
    }
}

/// The whole chain of a gix error on one line.
pub(super) fn chain(err: &gix::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in err.iter_errors() {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}
