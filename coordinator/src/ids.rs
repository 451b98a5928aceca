//! Identifiers. Organisation and repository ids are short random strings that never change (a
//! rename keeps them); a backup id starts with its repository's id, so any backup, however old, is
//! found from its id alone (the store keeps only recent records; older ones live in the catalog
//! objects under the repository's storage path).
//!
//! Every id is made here, as its type (`repovault_common::domain::ids`); everything made satisfies
//! the common id rule (letters, digits and `-`, beginning with a letter or digit, short), which the
//! tests below check for each kind.

use rand::Rng;
use repovault_common::domain::{
    BackupId, DrillId, InvalidId, OrgId, RepoId, RestoreId, TaskId, WorkerId,
};

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// 12 characters of base 36: 62 bits, so 100,000 repositories collide with odds below 1e-9.
const ID_LEN: usize = 12;

fn random_chars(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn base36(mut v: u64) -> String {
    if v == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while v > 0 {
        out.push(ALPHABET[(v % 36) as usize]);
        v /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// An id this module made, as its type. Every id made here is a lowercase letter followed by
/// base-36 characters and `-`, at most 33 characters long, so it always satisfies the id rule; a
/// failure would be a bug in this module, not bad input.
fn made<T: TryFrom<String, Error = InvalidId>>(id: String) -> T {
    match T::try_from(id) {
        Ok(id) => id,
        Err(e) => panic!("the coordinator made an id the id rule refuses: {e}"),
    }
}

pub fn new_org_id() -> OrgId {
    made(format!("o{}", random_chars(ID_LEN - 1)))
}

pub fn new_repo_id() -> RepoId {
    made(format!("r{}", random_chars(ID_LEN - 1)))
}

/// `<repo-id>-<time in ms, base 36><4 random>`: sorts by creation time within a repository.
pub fn new_backup_id(repo_id: &RepoId, now_ms: i64) -> BackupId {
    made(format!(
        "{repo_id}-{}{}",
        base36(u64::try_from(now_ms).unwrap_or(0)),
        random_chars(4)
    ))
}

/// The repository id a backup id starts with, if it is well formed.
pub fn repo_id_of_backup(backup_id: &BackupId) -> Option<RepoId> {
    let backup_id = backup_id.as_str();
    let (repo, rest) = backup_id.split_once('-')?;
    let ok = repo.len() == ID_LEN
        && repo.starts_with('r')
        && !rest.is_empty()
        && backup_id
            .bytes()
            .all(|b| b == b'-' || ALPHABET.contains(&b));
    if ok {
        Some(made(repo.to_string()))
    } else {
        None
    }
}

pub fn new_task_id() -> TaskId {
    made(uuid::Uuid::now_v7().simple().to_string())
}

/// The whole v7 UUID: its leading characters are the time and a counter that increments in its
/// low bits within a millisecond, so any prefix of it repeats for ids made in the same one.
pub fn new_restore_id() -> RestoreId {
    made(format!("s{}", uuid::Uuid::now_v7().simple()))
}

/// Time-ordered, so an organisation's drills list oldest first (the whole UUID: see
/// [`new_restore_id`]).
pub fn new_drill_id() -> DrillId {
    made(format!("d{}", uuid::Uuid::now_v7().simple()))
}

pub fn new_worker_id() -> WorkerId {
    made(format!("w{}", random_chars(ID_LEN - 1)))
}

/// Whether `id` has the shape [`new_worker_id`] gives: a re-registering worker's claimed id is
/// checked with it before it is taken back, so nothing else ends up in the registry or the logs.
pub fn is_worker_id(id: &str) -> bool {
    id.len() == ID_LEN && id.starts_with('w') && id.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_in_the_same_millisecond_differ() {
        let restores: std::collections::HashSet<RestoreId> =
            (0..1000).map(|_| new_restore_id()).collect();
        assert_eq!(restores.len(), 1000);
        let drills: std::collections::HashSet<DrillId> =
            (0..1000).map(|_| new_drill_id()).collect();
        assert_eq!(drills.len(), 1000);
    }

    #[test]
    fn every_id_made_satisfies_the_id_rule() {
        // `made` panics on an id the rule refuses; the rule is checked again through the wire.
        let r = new_repo_id();
        let ids: Vec<String> = vec![
            new_org_id().into(),
            r.to_string(),
            new_backup_id(&r, i64::MAX).into(),
            new_task_id().into(),
            new_restore_id().into(),
            new_drill_id().into(),
            new_worker_id().into(),
        ];
        for id in ids {
            assert!(BackupId::from_wire(&id, "id").is_ok(), "{id}");
        }
    }

    #[test]
    fn backup_ids_carry_their_repo_and_sort_by_time() {
        let r = new_repo_id();
        let a = new_backup_id(&r, 1_700_000_000_000);
        let b = new_backup_id(&r, 1_700_000_000_001);
        assert_eq!(repo_id_of_backup(&a), Some(r.clone()));
        let (a, b) = (a.as_str(), b.as_str());
        assert!(a[..a.len() - 4] < b[..b.len() - 4]);
        for other in ["nonsense", "r123-x", "golden-backup-format-1"] {
            let id: BackupId = other.parse().expect("a well-formed id");
            assert_eq!(repo_id_of_backup(&id), None, "{other}");
        }
    }
}
