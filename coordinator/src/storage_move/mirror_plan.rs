//! What a move copies and how each copied object is proven: pure, over listings.
//!
//! Every object of a repository's prefix is copied except write temporaries (`.tmp/`), in an
//! order that keeps the destination a usable restic repository at every moment: `config` and
//! `keys/` first, then packs, then index files, then snapshot files (a snapshot appears only
//! once everything it needs is there), then everything else (catalog objects, ledgers,
//! journals, downloads). A restic file other than `config` is named by the SHA-256 of its
//! bytes, which proves a copy of it on its own; any other object is proven by comparing its
//! hash with the source's.

use std::collections::BTreeMap;

use repovault_common::storage::TMP_DIR;

/// One object to copy: its path (relative to the operator's root) and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    pub path: String,
    pub size: u64,
}

/// The copies a pass makes, in order, and what the destination already held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorPlan {
    pub copies: Vec<Copy>,
    /// Objects already at the destination with the source's size (copied by an earlier,
    /// interrupted pass); proven again by the final verification like every other.
    pub present: usize,
}

/// The plan for `prefix` (ending in `/`) from the source's and the destination's listings
/// (path to size, files only).
pub fn plan(
    prefix: &str,
    source: &BTreeMap<String, u64>,
    destination: &BTreeMap<String, u64>,
) -> MirrorPlan {
    let mut copies = Vec::new();
    let mut present = 0;
    for (path, size) in source {
        if is_temporary(prefix, path) {
            continue;
        }
        if destination.get(path) == Some(size) {
            present += 1;
            continue;
        }
        copies.push(Copy {
            path: path.clone(),
            size: *size,
        });
    }
    copies.sort_by_key(|c| {
        (
            rank(c.path.strip_prefix(prefix).unwrap_or(&c.path)),
            c.path.clone(),
        )
    });
    MirrorPlan { copies, present }
}

/// Whether `path` is a write temporary (under a `.tmp/` directory), which is never copied.
pub fn is_temporary(prefix: &str, path: &str) -> bool {
    let rel = path.strip_prefix(prefix).unwrap_or(path);
    rel.starts_with(&format!("{TMP_DIR}/")) || rel.contains(&format!("/{TMP_DIR}/"))
}

/// Whether `path` belongs to the restic repository itself (what stock restic reads).
pub fn is_repository_file(prefix: &str, path: &str) -> bool {
    let rel = path.strip_prefix(prefix).unwrap_or(path);
    rel == "config" || rank(rel) < 5
}

/// Where a relative path comes in the copy order.
fn rank(rel: &str) -> u8 {
    match rel.split('/').next().unwrap_or("") {
        "config" => 0,
        "keys" => 1,
        "data" => 2,
        "index" => 3,
        "snapshots" => 4,
        _ => 5,
    }
}

/// The SHA-256 (hex) a restic file's bytes must have: its name, for `keys/`, `data/`,
/// `index/` and `snapshots/` files named by 64 hex digits; `None` for anything else.
pub fn content_hash(prefix: &str, path: &str) -> Option<String> {
    let rel = path.strip_prefix(prefix)?;
    let top = rel.split('/').next()?;
    if !matches!(top, "keys" | "data" | "index" | "snapshots") {
        return None;
    }
    let name = rel.rsplit('/').next()?;
    (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn listing(items: &[(&str, u64)]) -> BTreeMap<String, u64> {
        items.iter().map(|(p, s)| (p.to_string(), *s)).collect()
    }

    #[test]
    fn a_repository_is_copied_config_first_and_snapshots_last_without_temporaries() {
        let source = listing(&[
            ("o/r/snapshots/s1", 10),
            ("o/r/index/i1", 20),
            ("o/r/data/ab/p1", 30),
            ("o/r/config", 5),
            ("o/r/keys/k1", 6),
            ("o/r/catalog/b1.json", 7),
            ("o/r/.tmp/partial", 8),
        ]);
        let p = plan("o/r/", &source, &BTreeMap::new());
        let order: Vec<&str> = p.copies.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            order,
            [
                "o/r/config",
                "o/r/keys/k1",
                "o/r/data/ab/p1",
                "o/r/index/i1",
                "o/r/snapshots/s1",
                "o/r/catalog/b1.json"
            ]
        );
        assert_eq!(p.present, 0);
    }

    #[test]
    fn a_resumed_move_copies_only_what_is_missing_or_short() {
        let source = listing(&[
            ("o/r/config", 5),
            ("o/r/data/ab/p1", 30),
            ("o/r/index/i1", 20),
        ]);
        let dest = listing(&[("o/r/config", 5), ("o/r/data/ab/p1", 12)]);
        let p = plan("o/r/", &source, &dest);
        let order: Vec<&str> = p.copies.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            order,
            ["o/r/data/ab/p1", "o/r/index/i1"],
            "a short pack is copied again"
        );
        assert_eq!(p.present, 1);
    }

    #[test]
    fn the_repository_is_config_keys_packs_index_and_snapshots() {
        for p in [
            "o/r/config",
            "o/r/keys/k",
            "o/r/data/ab/p",
            "o/r/index/i",
            "o/r/snapshots/s",
        ] {
            assert!(is_repository_file("o/r/", p), "{p}");
        }
        for p in [
            "o/r/catalog/b.json",
            "o/r/verify/ledger.json",
            "o/r/damaged/data-x",
            "o/r/downloads/r.zip",
        ] {
            assert!(!is_repository_file("o/r/", p), "{p}");
        }
    }

    #[test]
    fn restic_files_prove_themselves_by_name() {
        assert_eq!(
            content_hash("o/r/", &format!("o/r/data/01/{ID}")),
            Some(ID.to_string())
        );
        assert_eq!(
            content_hash("o/r/", &format!("o/r/snapshots/{ID}")),
            Some(ID.to_string())
        );
        assert_eq!(content_hash("o/r/", "o/r/config"), None);
        assert_eq!(content_hash("o/r/", &format!("o/r/catalog/{ID}")), None);
        assert_eq!(content_hash("o/r/", "o/r/data/01/short"), None);
    }
}
