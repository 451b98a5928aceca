//! How much of a mirror a backup must check, decided from what the last check verified. Pure:
//! the caller gathers the facts (the record, the packs on disk, the refs) and the time.
//!
//! The rule, as git's own fetch applies it (`check_connected`): a backup checks what it
//! received, and trusts what it checked before only as far as that is known unchanged.
//! - A pack named in the record is trusted while its stamp (size, times, inode and trailing
//!   checksum of the pack and of its index) is the one recorded. Any difference (disk damage that
//!   rewrote it, a tool that touched it), a recorded pack that is gone, or a loose object (a gix
//!   mirror has none; one was put there by something else) means a full check.
//! - A pack the record does not name is checked: its objects' hashes, unless this backup's own
//!   fetch wrote it (gix computed every object's id from its bytes as it indexed the pack, and
//!   checked the pack's trailing checksum against the stream), then connectivity from the refs
//!   that moved, down to objects an earlier check found reachable.
//! - Without a record (a mirror cloned, seeded from a snapshot or repaired), or when the last
//!   full check is older than the configured age, everything is checked.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What identifies a pack's bytes as verified without reading them: a write to the pack or its
/// index changes its ctime (which no user-space call can set back) and usually its size and
/// mtime; a replaced file has another inode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackStamp {
    /// The pack's trailing checksum, hex (also the hash in its name, for a pack gix or git wrote).
    pub checksum: String,
    pub pack: FileStamp,
    pub index: FileStamp,
    /// Objects in the pack, from its index.
    pub objects: u64,
}

/// One file's size, times (nanoseconds since the epoch) and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

/// What the last sound check of a mirror verified (kept beside the mirror, see `fsck_record`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckRecord {
    /// When the last full check (every object's hash, connectivity from every ref) passed,
    /// milliseconds since the epoch.
    pub full_check_ms: i64,
    /// Every pack as it was verified, by file name without extension (`pack-<hash>`).
    pub packs: BTreeMap<String, PackStamp>,
    /// The refs checked, name to object id (hex), `HEAD` included.
    pub refs: BTreeMap<String, String>,
    /// Distinct objects reachable from `refs` (their ids are kept beside the record).
    pub reachable: u64,
    /// Of them, the commits.
    pub commits: u64,
}

/// What the caller found on disk.
pub struct Facts<'a> {
    pub record: Option<&'a FsckRecord>,
    /// The packs now, by name.
    pub packs: &'a BTreeMap<String, PackStamp>,
    /// The packs this backup's fetch wrote (absent before it).
    pub received: &'a BTreeSet<String>,
    pub loose_objects: bool,
    pub now_ms: i64,
    /// How old the last full check may be before the next check is full again.
    pub full_every_ms: i64,
}

/// Why a check covers everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullReason {
    /// No record: the mirror is new (cloned, seeded from a snapshot, repaired) or its last
    /// check found a problem.
    FirstCheck,
    /// The last full check is this many milliseconds old, at least the configured age.
    Aged { age_ms: i64 },
    /// A recorded pack's bytes may have changed since they were verified.
    PackChanged(String),
    /// A recorded pack is gone (a repack, or something removed it).
    PackGone(String),
    /// Loose objects, which no record covers.
    LooseObjects,
}

impl std::fmt::Display for FullReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FullReason::FirstCheck => write!(f, "first check of this mirror"),
            FullReason::Aged { age_ms } => {
                write!(f, "the last full check was {}", age(*age_ms))
            }
            FullReason::PackChanged(p) => {
                write!(f, "{p}.pack changed on disk since it was verified")
            }
            FullReason::PackGone(p) => write!(f, "{p}.pack, verified before, is gone"),
            FullReason::LooseObjects => write!(f, "the mirror holds loose objects"),
        }
    }
}

/// A duration in milliseconds as people say it: "3 days ago", "5 hours ago", "just now".
pub fn age(ms: i64) -> String {
    let (min, hour, day) = (60_000, 3_600_000, 86_400_000);
    let (n, unit) = match ms.max(0) {
        ms if ms >= 2 * day => (ms / day, "days"),
        ms if ms >= day => (1, "day"),
        ms if ms >= 2 * hour => (ms / hour, "hours"),
        ms if ms >= hour => (1, "hour"),
        ms if ms >= 2 * min => (ms / min, "minutes"),
        _ => return "just now".into(),
    };
    format!("{n} {unit} ago")
}

/// How a check goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Every object: the hashes of every pack but those received (see the module's rule), and
    /// connectivity from every ref.
    Full {
        reason: FullReason,
        /// Packs whose objects' hashes are checked.
        hash: Vec<String>,
    },
    /// Only what changed since the record.
    Incremental {
        /// Packs new since the record that this backup did not receive: their hashes are checked.
        hash: Vec<String>,
        /// Every pack new since the record.
        new: Vec<String>,
        /// When the last full check passed.
        full_check_ms: i64,
    },
}

/// Decides how to check the mirror (see the module's rule).
pub fn plan(f: &Facts) -> Plan {
    let not_received = |names: &mut dyn Iterator<Item = &String>| -> Vec<String> {
        names
            .filter(|n| !f.received.contains(*n))
            .cloned()
            .collect()
    };
    let full = |reason| Plan::Full {
        reason,
        hash: not_received(&mut f.packs.keys()),
    };
    let Some(record) = f.record else {
        return full(FullReason::FirstCheck);
    };
    let age_ms = f.now_ms.saturating_sub(record.full_check_ms);
    if age_ms >= f.full_every_ms {
        return full(FullReason::Aged { age_ms });
    }
    if f.loose_objects {
        return full(FullReason::LooseObjects);
    }
    for (name, stamp) in &record.packs {
        match f.packs.get(name) {
            None => return full(FullReason::PackGone(name.clone())),
            Some(now) if now != stamp => return full(FullReason::PackChanged(name.clone())),
            Some(_) => {}
        }
    }
    let new: Vec<String> = f
        .packs
        .keys()
        .filter(|n| !record.packs.contains_key(*n))
        .cloned()
        .collect();
    Plan::Incremental {
        hash: not_received(&mut new.iter()),
        new,
        full_check_ms: record.full_check_ms,
    }
}

/// How the refs moved since the record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefChanges {
    /// Refs that are new or point elsewhere now: (name, id now).
    pub moved: Vec<(String, String)>,
    /// What the refs that moved or are gone pointed at before: everything reachable from them
    /// is still reachable only if each of these still is.
    pub left: Vec<String>,
}

impl RefChanges {
    pub fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.left.is_empty()
    }
}

/// The refs that moved between `before` (the record's) and `now`.
pub fn ref_changes(
    before: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> RefChanges {
    let mut changes = RefChanges::default();
    for (name, id) in now {
        if before.get(name) != Some(id) {
            changes.moved.push((name.clone(), id.clone()));
        }
    }
    for (name, id) in before {
        if now.get(name) != Some(id) {
            changes.left.push(id.clone());
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(checksum: &str, size: u64) -> PackStamp {
        let file = FileStamp {
            size,
            mtime_ns: 1,
            ctime_ns: 1,
            inode: 7,
        };
        PackStamp {
            checksum: checksum.into(),
            pack: file,
            index: file,
            objects: 3,
        }
    }

    fn packs(list: &[(&str, PackStamp)]) -> BTreeMap<String, PackStamp> {
        list.iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    const DAY: i64 = 86_400_000;

    fn record(p: BTreeMap<String, PackStamp>, full_check_ms: i64) -> FsckRecord {
        FsckRecord {
            full_check_ms,
            packs: p,
            refs: BTreeMap::new(),
            reachable: 0,
            commits: 0,
        }
    }

    fn facts<'a>(
        record: Option<&'a FsckRecord>,
        packs: &'a BTreeMap<String, PackStamp>,
        received: &'a BTreeSet<String>,
    ) -> Facts<'a> {
        Facts {
            record,
            packs,
            received,
            loose_objects: false,
            now_ms: 10 * DAY,
            full_every_ms: 7 * DAY,
        }
    }

    #[test]
    fn without_a_record_everything_is_checked_but_the_hashes_of_what_was_received() {
        let now = packs(&[("pack-a", stamp("a", 10)), ("pack-b", stamp("b", 20))]);
        let received = BTreeSet::from(["pack-b".to_string()]);
        assert_eq!(
            plan(&facts(None, &now, &received)),
            Plan::Full {
                reason: FullReason::FirstCheck,
                hash: vec!["pack-a".into()]
            }
        );
    }

    #[test]
    fn unchanged_packs_are_trusted_and_new_ones_checked() {
        let before = packs(&[("pack-a", stamp("a", 10))]);
        let rec = record(before.clone(), 9 * DAY);
        let mut now = before.clone();
        now.insert("pack-b".into(), stamp("b", 5));
        now.insert("pack-c".into(), stamp("c", 5));
        let received = BTreeSet::from(["pack-c".to_string()]);
        assert_eq!(
            plan(&facts(Some(&rec), &now, &received)),
            Plan::Incremental {
                hash: vec!["pack-b".into()],
                new: vec!["pack-b".into(), "pack-c".into()],
                full_check_ms: 9 * DAY
            }
        );
        let nothing = BTreeSet::new();
        assert_eq!(
            plan(&facts(Some(&rec), &before, &nothing)),
            Plan::Incremental {
                hash: vec![],
                new: vec![],
                full_check_ms: 9 * DAY
            }
        );
    }

    #[test]
    fn a_changed_gone_or_aged_pack_means_a_full_check() {
        let before = packs(&[("pack-a", stamp("a", 10)), ("pack-b", stamp("b", 20))]);
        let rec = record(before.clone(), 9 * DAY);
        let none = BTreeSet::new();
        let mut touched = before.clone();
        touched.get_mut("pack-b").expect("pack").pack.ctime_ns = 2;
        assert_eq!(
            plan(&facts(Some(&rec), &touched, &none)),
            Plan::Full {
                reason: FullReason::PackChanged("pack-b".into()),
                hash: vec!["pack-a".into(), "pack-b".into()]
            }
        );
        let mut gone = before.clone();
        gone.remove("pack-a");
        assert!(matches!(
            plan(&facts(Some(&rec), &gone, &none)),
            Plan::Full { reason: FullReason::PackGone(p), .. } if p == "pack-a"
        ));
        let old = record(before.clone(), 3 * DAY);
        assert!(matches!(
            plan(&facts(Some(&old), &before, &none)),
            Plan::Full { reason: FullReason::Aged { age_ms }, .. } if age_ms == 7 * DAY
        ));
        let mut loose = facts(Some(&rec), &before, &none);
        loose.loose_objects = true;
        assert!(matches!(
            plan(&loose),
            Plan::Full {
                reason: FullReason::LooseObjects,
                ..
            }
        ));
    }

    #[test]
    fn ref_changes_name_what_moved_and_what_was_left() {
        let m = |l: &[(&str, &str)]| -> BTreeMap<String, String> {
            l.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let before = m(&[
            ("HEAD", "1"),
            ("refs/heads/main", "1"),
            ("refs/heads/old", "2"),
        ]);
        let now = m(&[
            ("HEAD", "3"),
            ("refs/heads/main", "3"),
            ("refs/tags/v1", "1"),
        ]);
        let c = ref_changes(&before, &now);
        assert_eq!(
            c.moved,
            vec![
                ("HEAD".to_string(), "3".to_string()),
                ("refs/heads/main".into(), "3".into()),
                ("refs/tags/v1".into(), "1".into())
            ]
        );
        assert_eq!(c.left, vec!["1".to_string(), "1".into(), "2".into()]);
        assert!(ref_changes(&now, &now).is_empty());
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(3 * DAY + 5), "3 days ago");
        assert_eq!(age(DAY), "1 day ago");
        assert_eq!(age(5 * 3_600_000), "5 hours ago");
        assert_eq!(age(30_000), "just now");
        assert_eq!(age(-5), "just now");
    }
}
