//! Verification of a backup: the checks a worker runs. Each reports pass, fail (with
//! what failed) or skipped (with why); the coordinator adds `size_match` and decides whether the
//! backup is verified.
//!
//! - `zip_integrity` ([`archive`]): the packs the snapshot references are read back from
//!   storage and hashed, blob by blob.
//! - `git_fsck` ([`git_fsck`]): the mirror and the wiki mirror have every object of every ref,
//!   sound, and connected.
//! - `metadata_valid` ([`metadata`]).
//! - `commit_count_match` ([`refs`]).
//!
//! Two ways to run them. At the end of a backup ([`local_checks`] plus
//! [`archive::zip_integrity`] on the new packs) the worker's cache entry *is* the snapshot's
//! tree: it was just stored from there, and `zip_integrity` also proves the stored listing of
//! `code.git` equals the entry's, so checking the entry checks the backup without restoring it.
//! On demand ([`stored`]) the tree is restored from storage into scratch first.
//! Everything here blocks: call it from `spawn_blocking`.

pub mod archive;
pub mod metadata;
pub mod refs;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use repovault_common::manifest::{CODE_DIR, Manifest, WIKI_DIR};
use repovault_proto::v1 as pb;

use crate::git;

pub const ZIP_INTEGRITY: &str = "zip_integrity";
pub const GIT_FSCK: &str = "git_fsck";
pub const METADATA_VALID: &str = "metadata_valid";
pub const COMMIT_COUNT_MATCH: &str = "commit_count_match";

/// A check's outcome: the domain's closed set.
pub use repovault_common::domain::CheckOutcome as Outcome;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub result: Outcome,
    pub detail: String,
    /// Skipped because part of the repository is missing from the backup (blocks `verified`).
    pub incomplete: bool,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            result: Outcome::Pass,
            detail: detail.into(),
            incomplete: false,
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            result: Outcome::Fail,
            detail: detail.into(),
            incomplete: false,
        }
    }

    pub fn skipped(name: &'static str, detail: impl Into<String>, incomplete: bool) -> Self {
        Self {
            name,
            result: Outcome::Skipped,
            detail: detail.into(),
            incomplete,
        }
    }

    pub fn to_proto(&self) -> pb::CheckResult {
        pb::CheckResult {
            name: self.name.into(),
            result: self.result.into(),
            detail: self.detail.clone(),
            warning: false,
            incomplete: self.incomplete,
        }
    }
}

/// `git_fsck` over `tree/code.git` and, when present, `tree/wiki.git`, every object of them.
/// Also returns code.git's report (the manifest records its reachable object count for drills).
pub fn git_fsck(tree: &Path, interrupt: &AtomicBool) -> (Check, Option<git::FsckReport>) {
    git_fsck_with(tree, |dir, _| git::fsck(dir, interrupt))
}

/// [`git_fsck`] with `check` run on each mirror (its directory and label, `code.git` or
/// `wiki.git`): a backup checks what changed ([`git::fsck_incremental`]). The check's detail
/// says what each check covered.
pub fn git_fsck_with(
    tree: &Path,
    check: impl Fn(&Path, &str) -> Result<git::FsckReport, git::GitError>,
) -> (Check, Option<git::FsckReport>) {
    let code = tree.join(CODE_DIR);
    if !code.join("HEAD").exists() {
        return (
            Check::fail(GIT_FSCK, "the backup holds no code.git mirror"),
            None,
        );
    }
    let mut problems = Vec::new();
    let mut summary = Vec::new();
    let mut reachable = None;
    for (label, dir) in [("code.git", code), ("wiki.git", tree.join(WIKI_DIR))] {
        if label == "wiki.git" && !dir.join("HEAD").exists() {
            continue;
        }
        match check(&dir, label) {
            Ok(r) => {
                summary.push(match &r.coverage {
                    git::Coverage::Everything => format!(
                        "{label}: {} objects, {} reachable from {} refs",
                        r.objects, r.reachable, r.refs
                    ),
                    coverage => format!(
                        "{label}: {coverage}; {} objects, {} reachable from {} refs",
                        r.objects, r.reachable, r.refs
                    ),
                });
                if label == "code.git" {
                    reachable = Some(r.clone());
                }
                problems.extend(r.problems.iter().map(|p| format!("{label}: {p}")));
            }
            Err(e) => problems.push(format!("{label} cannot be checked: {e}")),
        }
    }
    let check = if problems.is_empty() {
        Check::pass(GIT_FSCK, summary.join("; "))
    } else {
        Check::fail(GIT_FSCK, metadata::summarise(&problems))
    };
    (check, reachable)
}

/// `git_fsck`, `metadata_valid` and `commit_count_match` on a tree equal to the snapshot's
/// (`payloads`: sizes of the files under `releases/` and `attachments/`).
pub fn tree_checks(
    tree: &Path,
    manifest: &Manifest,
    payloads: &metadata::Payloads,
    interrupt: &AtomicBool,
) -> Vec<Check> {
    let (fsck, _) = git_fsck(tree, interrupt);
    vec![
        fsck,
        metadata::check(tree, manifest, payloads),
        refs::check(tree, manifest),
    ]
}

/// The tree checks on the cache entry a backup just stored (`git_fsck` already ran before the
/// snapshot, to record the reachable object count; it is passed in).
pub fn local_checks(entry: &Path, manifest: &Manifest, fsck: Check) -> Vec<Check> {
    let payloads = metadata::local_payloads(entry, &metadata::PAYLOAD_DIRS);
    vec![
        fsck,
        metadata::check(entry, manifest, &payloads),
        refs::check(entry, manifest),
    ]
}

pub use archive::{Selection, stored};
