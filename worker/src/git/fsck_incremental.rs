//! [`fsck_incremental`]: a backup's check of its mirror, which checks what changed since the
//! last sound check (the rule is in `fsck_plan.rs`) and records what it verified for the next.
//!
//! Every function blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use gix::ObjectId;

use super::fsck::{Coverage, FsckReport, Problems};
use super::fsck_connectivity::{Interrupted, Root, Walk, refs_to_check};
use super::fsck_integrity::{Packs, verify_objects};
use super::fsck_plan::{self, Facts, FsckRecord, Plan, RefChanges, ref_changes};
use super::fsck_record;
use super::git_error::GitError;
use super::mirror_open::open_for_walk;

/// What a backup's check of its mirror needs besides the mirror.
pub struct CheckSince<'a> {
    /// The packs this backup's fetch wrote (see [`fsck_record::pack_names`], taken before and
    /// after the fetch).
    pub received: &'a BTreeSet<String>,
    /// Now, milliseconds since the epoch.
    pub now_ms: i64,
    /// How old the last full check may be before the next one is full again.
    pub full_every_ms: i64,
}

/// Checks the mirror at `dir` as [`super::fsck`] does, but only as far as it changed since the
/// last sound check (see `fsck_plan.rs`), and records what it verified when it finds no problem
/// (a check with problems removes the record: the next one is full). The report's `reachable`
/// is exact either way: the record keeps the reachable objects' ids, and a walk that cannot
/// prove every object reachable before still is (a ref deleted or moved to an unrelated
/// commit) walks from every ref again. Errors as [`super::fsck`].
pub fn fsck_incremental(
    dir: &Path,
    since: &CheckSince<'_>,
    interrupt: &AtomicBool,
) -> Result<FsckReport, GitError> {
    let repo = open_for_walk(dir)?;
    let hash = repo.object_hash();
    let stamps = fsck_record::pack_stamps(dir, hash)?;
    let record = fsck_record::load(dir, hash);
    let plan = fsck_plan::plan(&Facts {
        record: record.as_ref(),
        packs: &stamps,
        received: since.received,
        loose_objects: fsck_record::has_loose_objects(dir)?,
        now_ms: since.now_ms,
        full_every_ms: since.full_every_ms,
    });
    let interrupted = || GitError::Interrupted {
        url: dir.display().to_string(),
    };
    let mut problems = Problems::default();
    let (hashed, full_reason) = match &plan {
        Plan::Full { reason, hash } => (hash, Some(reason.to_string())),
        Plan::Incremental { hash, .. } => (hash, None),
    };
    let hashed: BTreeSet<String> = hashed.iter().cloned().collect();
    let packs = Packs::Only {
        hash: &hashed,
        stamps: &stamps,
    };
    let objects = verify_objects(dir, hash, packs, interrupt, &mut problems)?;
    if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(interrupted());
    }
    let roots = refs_to_check(&repo, &mut problems);
    let refs_now: BTreeMap<String, String> = roots
        .iter()
        .map(|r| (r.name.clone(), r.id.to_string()))
        .collect();
    // Whether the record must be written again: a full check, new packs or refs that moved.
    let mut changed = true;
    let mut outcome = match (&plan, record) {
        (
            Plan::Incremental {
                full_check_ms, new, ..
            },
            Some(record),
        ) => {
            let since_full = since.now_ms.saturating_sub(*full_check_ms);
            let changes = ref_changes(&record.refs, &refs_now);
            let moved_refs = changes.moved.len() as u64;
            changed = !new.is_empty() || !changes.is_empty();
            let mut o = walk_changes(
                &repo,
                dir,
                &record,
                roots,
                &changes,
                interrupt,
                &mut problems,
            )
            .map_err(|Interrupted| interrupted())?;
            o.coverage = Coverage::Incremental {
                new_objects: o.new_objects,
                moved_refs,
                full_check: fsck_plan::age(since_full),
            };
            o.full_check_ms = *full_check_ms;
            o
        }
        _ => {
            let mut o = walk_all(&repo, dir, roots, interrupt, &mut problems)
                .map_err(|Interrupted| interrupted())?;
            o.coverage = Coverage::Full {
                reason: full_reason.unwrap_or_default(),
            };
            o.full_check_ms = since.now_ms;
            o
        }
    };
    if problems.is_empty() {
        let record = FsckRecord {
            full_check_ms: outcome.full_check_ms,
            packs: stamps,
            refs: refs_now.clone(),
            reachable: outcome.reachable,
            commits: outcome.commits,
        };
        if outcome.rewrite {
            fsck_record::save_full(dir, &record, &outcome.new_ids)?;
        } else if changed {
            fsck_record::save_incremental(dir, &record, &outcome.new_ids)?;
        }
    } else {
        fsck_record::forget(dir)?;
    }
    Ok(FsckReport {
        objects,
        reachable: outcome.reachable,
        refs: refs_now.len() as u64,
        commits: outcome.commits,
        problems: problems.into_list(),
        coverage: std::mem::take(&mut outcome.coverage),
    })
}

/// What a walk found, for the report and the record.
#[derive(Default)]
struct Walked {
    reachable: u64,
    commits: u64,
    /// Reachable objects the record did not count.
    new_objects: u64,
    /// Ids to record: every reachable one when `rewrite`, else those new since the record.
    new_ids: Vec<ObjectId>,
    /// The record's ids are replaced, not added to.
    rewrite: bool,
    coverage: Coverage,
    full_check_ms: i64,
}

/// Connectivity from every ref.
fn walk_all(
    repo: &gix::Repository,
    dir: &Path,
    roots: Vec<Root>,
    interrupt: &AtomicBool,
    problems: &mut Problems,
) -> Result<Walked, Interrupted> {
    let walked = catch_unwind(AssertUnwindSafe(|| {
        let mut walk = Walk::new(repo, dir, problems);
        let n = walk.run(roots, interrupt)?;
        Ok((n, walk.commits, std::mem::take(&mut walk.found)))
    }));
    match walked {
        Ok(Ok((reachable, commits, found))) => Ok(Walked {
            reachable,
            commits,
            new_objects: reachable,
            new_ids: found,
            rewrite: true,
            ..Default::default()
        }),
        Ok(Err(Interrupted)) => Err(Interrupted),
        Err(_) => {
            problems.push(
                "The connectivity walk stopped early: gix panicked reading an object.".into(),
            );
            Ok(Walked::default())
        }
    }
}

/// Connectivity from the refs that moved, down to objects the record found reachable; the
/// reachable count is the record's plus what is new, provided every object the moved or deleted
/// refs left is still reachable (met by the walk, or still a ref's target). Otherwise, or when
/// the record's ids cannot be read, connectivity from every ref.
fn walk_changes(
    repo: &gix::Repository,
    dir: &Path,
    record: &FsckRecord,
    roots: Vec<Root>,
    changes: &RefChanges,
    interrupt: &AtomicBool,
    problems: &mut Problems,
) -> Result<Walked, Interrupted> {
    if changes.is_empty() {
        return Ok(Walked {
            reachable: record.reachable,
            commits: record.commits,
            ..Default::default()
        });
    }
    let known = match fsck_record::load_ids(dir, repo.object_hash()) {
        Ok(known) => known,
        Err(e) => {
            tracing::warn!(error = %e, "the check record's ids cannot be read: walking from every ref");
            let mut all = walk_all(repo, dir, roots, interrupt, problems)?;
            // Without the ids, what is new is known only as a net count.
            all.new_objects = all.reachable.saturating_sub(record.reachable);
            return Ok(all);
        }
    };
    let moved: BTreeSet<&str> = changes.moved.iter().map(|(n, _)| n.as_str()).collect();
    let moved_roots: Vec<Root> = roots
        .iter()
        .filter(|r| moved.contains(r.name.as_str()))
        .cloned()
        .collect();
    // Problems found by a walk that is then done again from every ref would be reported twice.
    let mut sub = Problems::default();
    let walked = catch_unwind(AssertUnwindSafe(|| {
        let mut walk = Walk::new(repo, dir, &mut sub).stopping_at(&known);
        let n = walk.run(moved_roots, interrupt)?;
        Ok((
            (n, walk.commits),
            std::mem::take(&mut walk.found),
            std::mem::take(&mut walk.met),
        ))
    }));
    let ((new, new_commits), found, met) = match walked {
        Ok(Ok(w)) => w,
        Ok(Err(Interrupted)) => return Err(Interrupted),
        Err(_) => return walk_all_knowing(repo, dir, roots, &known, interrupt, problems),
    };
    let targets: BTreeSet<ObjectId> = roots.iter().map(|r| r.id).collect();
    let found_set: gix::hashtable::HashSet<ObjectId> = found.iter().copied().collect();
    let still_reachable = changes.left.iter().all(|hex| {
        ObjectId::from_hex(hex.as_bytes())
            .is_ok_and(|id| targets.contains(&id) || met.contains(&id) || found_set.contains(&id))
    });
    if !still_reachable {
        // The count would be the record's plus the new, less what is no longer reachable,
        // which only a walk from every ref knows.
        return walk_all_knowing(repo, dir, roots, &known, interrupt, problems);
    }
    for p in sub.into_list() {
        problems.push(p);
    }
    Ok(Walked {
        reachable: record.reachable + new,
        commits: record.commits + new_commits,
        new_objects: new,
        new_ids: found,
        ..Default::default()
    })
}

/// [`walk_all`], counting as new only what `known` does not hold.
fn walk_all_knowing(
    repo: &gix::Repository,
    dir: &Path,
    roots: Vec<Root>,
    known: &gix::hashtable::HashSet<ObjectId>,
    interrupt: &AtomicBool,
    problems: &mut Problems,
) -> Result<Walked, Interrupted> {
    let mut all = walk_all(repo, dir, roots, interrupt, problems)?;
    all.new_objects = all.new_ids.iter().filter(|id| !known.contains(*id)).count() as u64;
    Ok(all)
}
