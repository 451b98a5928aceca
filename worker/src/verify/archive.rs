//! `zip_integrity` (archive integrity): the packs a snapshot references are read back from
//! storage and verified (pack hash, then every blob decrypted and hashed, as `restic check
//! --read-data` does), and the read-back rotation over a whole repository. Also the on-demand
//! verification of a stored backup ([`stored`]), which restores the tree into scratch.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use repovault_common::manifest::{self, CODE_DIR, Manifest, WIKI_DIR};
use repovault_common::repo::{ReadBackLedger, RepoError, SnapshotRepo};

use super::{Check, ZIP_INTEGRITY, metadata};

/// Which of a snapshot's packs to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Those the ledger has never seen read: what this backup added (cost follows the backup).
    Unread,
    /// Every one (`backup verify`).
    All,
}

/// The clock and the task's hooks, for a read-back.
pub struct Reading<'a> {
    /// Recorded in the ledger for the packs read sound.
    pub now_ms: i64,
    /// `(bytes done, bytes total)`.
    pub progress: &'a dyn Fn(u64, u64),
    pub interrupt: &'a AtomicBool,
}

/// What a read-back cost, and the damage it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub packs_read: u64,
    pub bytes_read: u64,
    pub damage: Damage,
}

/// Damage a read-back found, after it was dealt with: the damaged packs were dropped from the
/// index and moved aside ([`SnapshotRepo::drop_damaged_packs`]), so no later backup trusts or
/// deduplicates against them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Damage {
    /// One line per damaged pack.
    pub lines: Vec<String>,
    /// Every snapshot (full id) that references a damaged pack: those backups cannot be
    /// restored completely, whichever check found it.
    pub snapshots: Vec<String>,
}

impl Damage {
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Deals with the damaged packs of `report`: names the snapshots using them (before they leave
/// the index, which is what finds them), then drops them. A failure to drop is logged and the
/// damage still reported: the findings recorded first keep the packs from being trusted.
fn take_out_damage(
    repo: &SnapshotRepo,
    report: &repovault_common::repo::ReadBackReport,
    now_ms: i64,
) -> Result<Damage, RepoError> {
    if report.damaged.is_empty() {
        return Ok(Damage::default());
    }
    let ids: HashSet<String> = report.damaged.iter().map(|d| d.pack_id.clone()).collect();
    let snapshots = repo.snapshots_using_packs(&ids)?;
    if let Err(e) = repo.drop_damaged_packs(&report.damaged, now_ms) {
        tracing::error!(error = %e, "damaged packs could not be dropped from the index");
    }
    Ok(Damage {
        lines: report.damaged.iter().map(|d| d.problem.clone()).collect(),
        snapshots,
    })
}

/// `zip_integrity` of one snapshot. Sound packs are recorded in `ledger` (the caller saves it).
/// With `local_code`, the stored listing of `code.git` must also equal that directory's (the
/// entry the backup was taken from), file by file with sizes.
pub fn zip_integrity(
    repo: &SnapshotRepo,
    snapshot_id: &str,
    ledger: &mut ReadBackLedger,
    selection: Selection,
    local_code: Option<&Path>,
    how: &Reading<'_>,
) -> Result<(Check, ReadStats), RepoError> {
    let packs = match repo.snapshot_packs(snapshot_id) {
        Ok(packs) => packs,
        Err(e) => return unreadable_repository(repo, snapshot_id, e),
    };
    let mut problems = packs.problems.clone();
    let all = packs.ids();
    let wanted: Vec<String> = match selection {
        Selection::All => all.clone(),
        Selection::Unread => all
            .iter()
            .filter(|p| ledger.last_read(p).is_none())
            .cloned()
            .collect(),
    };
    let report = repo.read_back(&wanted, how.progress, how.interrupt)?;
    ledger.record(report.ok.iter().cloned(), how.now_ms);
    let damage = take_out_damage(repo, &report, how.now_ms)?;
    problems.extend(damage.lines.iter().cloned());
    problems.extend(
        report
            .unread
            .iter()
            .map(|d| format!("could not be read (storage error): {}", d.problem)),
    );
    problems.extend(
        report
            .vanished
            .iter()
            .map(|p| format!("pack {p} the snapshot references is gone from storage")),
    );
    if let Some(code) = local_code {
        problems.extend(listing_differences(repo, snapshot_id, code)?);
    }
    let stats = ReadStats {
        packs_read: report.packs_read,
        bytes_read: report.bytes_read,
        damage,
    };
    let check = if problems.is_empty() {
        Check::pass(
            ZIP_INTEGRITY,
            format!(
                "read back {} of the {} packs the snapshot references ({}){}",
                report.packs_read,
                all.len(),
                human(report.bytes_read),
                match selection {
                    Selection::Unread if report.packs_read < all.len() as u64 =>
                        "; the others were read back before",
                    _ => "",
                }
            ),
        )
    } else {
        Check::fail(ZIP_INTEGRITY, metadata::summarise(&problems))
    };
    Ok((check, stats))
}

/// `zip_integrity` when the snapshot's packs cannot even be listed: a damaged index file or
/// snapshot file fails the check naming the file (the index is rebuilt by the next backup); a
/// missing snapshot, a wrong key or a storage error stay errors (nothing was learnt about the
/// stored data).
fn unreadable_repository(
    repo: &SnapshotRepo,
    snapshot_id: &str,
    e: RepoError,
) -> Result<(Check, ReadStats), RepoError> {
    if matches!(
        e,
        RepoError::SnapshotNotFound(_)
            | RepoError::WrongPassword { .. }
            | RepoError::Storage { .. }
            | RepoError::Interrupted { .. }
            | RepoError::NoRuntime
            | RepoError::InvalidInput(_)
    ) {
        return Err(e);
    }
    // The snapshot file first: it is one read, the index check reads every index file.
    let mut problems: Vec<String> = repo
        .damaged_snapshot_file(snapshot_id)?
        .into_iter()
        .collect();
    if problems.is_empty() {
        problems.extend(
            repo.damaged_index_files()?
                .into_iter()
                .map(|(_, p)| format!("{p}; the next backup rebuilds the index from the packs")),
        );
    }
    if problems.is_empty() {
        problems.push(format!("the snapshot's packs cannot be listed: {e}"));
    }
    Ok((
        Check::fail(ZIP_INTEGRITY, metadata::summarise(&problems)),
        ReadStats::default(),
    ))
}

/// Files of `code.git` whose stored size differs from the entry's, or that only one side has.
fn listing_differences(
    repo: &SnapshotRepo,
    snapshot_id: &str,
    code: &Path,
) -> Result<Vec<String>, RepoError> {
    let stored = repo.list_files(snapshot_id, CODE_DIR)?;
    let mut local = metadata::local_payloads(code, &[""]);
    // git_fsck's record of the cache's copy is left out of snapshots.
    for f in crate::git::FSCK_RECORD_FILES {
        local.remove(f);
    }
    let mut out = Vec::new();
    for (path, size) in &local {
        match stored.get(path) {
            Some(s) if s == size => {}
            Some(s) => out.push(format!(
                "code.git/{path} was stored with {s} bytes, the mirror has {size}"
            )),
            None => out.push(format!("code.git/{path} is missing from the snapshot")),
        }
    }
    for path in stored.keys().filter(|p| !local.contains_key(*p)) {
        out.push(format!(
            "code.git/{path} is in the snapshot but not in the mirror"
        ));
    }
    Ok(out)
}

/// The on-demand verification of a stored backup: every pack the snapshot references read
/// back, then `code.git`, `wiki.git` and `meta/` restored into `scratch` for the tree checks.
/// A part that cannot be restored fails the check that needed it, naming why; the others still
/// run. A snapshot gone from storage fails every check (the backup cannot be restored). `Err`
/// only when the repository cannot be used at all (wrong key, storage down).
pub fn stored(
    repo: &SnapshotRepo,
    snapshot_id: &str,
    scratch: &Path,
    ledger: &mut ReadBackLedger,
    how: &Reading<'_>,
) -> Result<(Vec<super::Check>, ReadStats), RepoError> {
    let (zip, stats) = match zip_integrity(repo, snapshot_id, ledger, Selection::All, None, how) {
        Err(RepoError::SnapshotNotFound(id)) => {
            let gone =
                format!("snapshot {id} is missing from storage: the backup cannot be restored");
            let checks = [
                ZIP_INTEGRITY,
                super::GIT_FSCK,
                super::METADATA_VALID,
                super::COMMIT_COUNT_MATCH,
            ]
            .into_iter()
            .map(|name| Check::fail(name, gone.clone()))
            .collect();
            return Ok((checks, ReadStats::default()));
        }
        other => other?,
    };
    if let Some(bad) = repo.damaged_snapshot_file(snapshot_id)? {
        let checks = [
            super::GIT_FSCK,
            super::METADATA_VALID,
            super::COMMIT_COUNT_MATCH,
        ]
        .into_iter()
        .map(|name| Check::fail(name, format!("{bad}: the backup cannot be restored")));
        return Ok((std::iter::once(zip).chain(checks).collect(), stats));
    }
    let manifest = match repo.read_file(snapshot_id, manifest::MANIFEST_FILE) {
        Ok(bytes) => Manifest::from_json(&bytes).map_err(|e| e.to_string()),
        Err(e @ (RepoError::SnapshotNotFound(_) | RepoError::WrongPassword { .. })) => {
            return Err(e);
        }
        Err(e) => Err(e.to_string()),
    };
    let manifest = match manifest {
        Ok(m) => m,
        Err(why) => {
            let detail = format!("the snapshot's manifest.json cannot be read: {why}");
            return Ok((
                vec![
                    zip,
                    Check::fail(super::GIT_FSCK, detail.clone()),
                    Check::fail(super::METADATA_VALID, detail.clone()),
                    Check::fail(super::COMMIT_COUNT_MATCH, detail),
                ],
                stats,
            ));
        }
    };
    let mut unrestorable = Vec::new();
    for dir in [CODE_DIR, WIKI_DIR, "meta"] {
        match repo.restore(snapshot_id, dir, &scratch.join(dir)) {
            Ok(_) | Err(RepoError::PathNotFound { .. }) => {}
            Err(e) => unrestorable.push((dir, e.to_string())),
        }
    }
    let payloads = match metadata::stored_payloads(repo, snapshot_id) {
        Ok(p) => p,
        Err((dir, e)) => {
            unrestorable.push((dir, e.to_string()));
            metadata::Payloads::new()
        }
    };
    let mut checks = vec![zip];
    let failed_to_restore = |dirs: &[&str]| {
        let why: Vec<String> = unrestorable
            .iter()
            .filter(|(d, _)| dirs.contains(d))
            .map(|(d, e)| format!("{d} cannot be restored from the snapshot: {e}"))
            .collect();
        (!why.is_empty()).then(|| why.join("; "))
    };
    match failed_to_restore(&[CODE_DIR, WIKI_DIR]) {
        Some(why) => checks.push(Check::fail(super::GIT_FSCK, why)),
        None => checks.push(super::git_fsck(scratch, how.interrupt).0),
    }
    match failed_to_restore(&["meta", "releases", "attachments"]) {
        Some(why) => checks.push(Check::fail(super::METADATA_VALID, why)),
        None => checks.push(metadata::check(scratch, &manifest, &payloads)),
    }
    match failed_to_restore(&[CODE_DIR]) {
        Some(why) => checks.push(Check::fail(super::COMMIT_COUNT_MATCH, why)),
        None => checks.push(super::refs::check(scratch, &manifest)),
    }
    Ok((checks, stats))
}

/// After a restore of `snapshot_id` failed on the stored data (a drill's, a restore's): reads
/// back every pack the snapshot references to find the damaged ones, which are then taken out
/// like any damage a read-back finds. `None` when no pack is damaged, or when the read-back
/// itself could not run (the restore's own error then stands alone).
pub fn diagnose(repo: &SnapshotRepo, snapshot_id: &str, how: &Reading<'_>) -> Option<Damage> {
    // A scratch ledger: what persists of a finding is the finding itself.
    let mut ledger = ReadBackLedger::new();
    match zip_integrity(repo, snapshot_id, &mut ledger, Selection::All, None, how) {
        Ok((_, stats)) if !stats.damage.is_empty() => Some(stats.damage),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the read-back after a failed restore could not run");
            None
        }
    }
}

/// Whether a restore error says something about the stored data (worth a [`diagnose`]) rather
/// than about storage access, the key or the input.
pub fn is_data_error(e: &RepoError) -> bool {
    matches!(
        e,
        RepoError::Damaged { .. } | RepoError::Repository { .. } | RepoError::CheckFailed(_)
    )
}

/// What a rotation visit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    pub packs_total: u64,
    pub stats: ReadStats,
    /// One line per damaged pack.
    pub damage: Vec<String>,
    /// Snapshots that use a damaged pack.
    pub damaged_snapshots: Vec<String>,
}

/// A rotation visit: every pack of the repository not read back within `max_age_ms` is read;
/// the ledger forgets pruned packs and records the sound ones.
pub fn rotate(
    repo: &SnapshotRepo,
    ledger: &mut ReadBackLedger,
    max_age_ms: i64,
    how: &Reading<'_>,
) -> Result<Rotation, RepoError> {
    let all: Vec<String> = repo.all_packs()?.into_iter().map(|(id, _)| id).collect();
    let existing: HashSet<String> = all.iter().cloned().collect();
    ledger.retain_existing(&existing);
    let due = ledger.due(&all, how.now_ms, max_age_ms);
    let report = repo.read_back(&due, how.progress, how.interrupt)?;
    ledger.record(report.ok.iter().cloned(), how.now_ms);
    let damage = take_out_damage(repo, &report, how.now_ms)?;
    Ok(Rotation {
        packs_total: all.len() as u64,
        damage: damage.lines.clone(),
        damaged_snapshots: damage.snapshots.clone(),
        stats: ReadStats {
            packs_read: report.packs_read,
            bytes_read: report.bytes_read,
            damage,
        },
    })
}

pub(crate) use repovault_common::units::human_bytes as human;
