//! `repovault storage lifecycle ORG`: the cloud's own lifecycle policy that moves an
//! organisation's packs to a cheaper tier that stays readable online, for operators who let the
//! cloud do it. Pure: from the storage kind, the repositories' pack prefixes and the age.
//!
//! Only packs (`<org>/<repo>/data/`) move, never `config`, `keys/`, `index/` or `snapshots/`,
//! which every backup, check and prune reads; and only to tiers read without a restore request
//! (S3 Standard-IA, Azure Cool, GCS Nearline), never an archive tier, which would break
//! restores, checks and prunes. No rule expires anything: retention is repovault's, which knows
//! escrow. Lifecycle filters match key prefixes only, so there is one rule per repository (S3
//! allows 1,000 rules per bucket, Azure 100 per account policy: an organisation with more
//! repositories needs its own bucket or container, which `storage add` makes easy).

use serde_json::{Value, json};

use repovault_common::storage::StorageKind;

/// Days a pack stays in the standard tier by default before it moves: S3 Standard-IA bills at
/// least 30 days of storage per object and refuses lifecycle transitions to it before 30.
pub const DEFAULT_TIER_AFTER_DAYS: u32 = 30;

/// The least age a transition may name for `kind` (S3 refuses Standard-IA before 30 days).
pub fn minimum_days(kind: StorageKind) -> u32 {
    match kind {
        StorageKind::S3 => 30,
        _ => 1,
    }
}

/// The policy document for `kind`, moving the packs under each of `pack_prefixes` (relative to
/// the bucket, each ending in `data/`) after `days`; `None` for a kind without lifecycle
/// policies (fs, memory).
pub fn policy(kind: StorageKind, pack_prefixes: &[String], days: u32) -> Option<Value> {
    let rule_name = |i: usize| format!("repovault-packs-{i}");
    match kind {
        StorageKind::Fs | StorageKind::Memory => None,
        StorageKind::S3 => Some(json!({
            "Rules": pack_prefixes.iter().enumerate().map(|(i, p)| json!({
                "ID": rule_name(i),
                "Status": "Enabled",
                "Filter": { "Prefix": p },
                "Transitions": [{ "Days": days, "StorageClass": "STANDARD_IA" }],
                // Incomplete multipart uploads (an interrupted pack) cost storage until aborted.
                "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": 7 }
            })).collect::<Vec<_>>()
        })),
        StorageKind::Azblob => Some(json!({
            "rules": pack_prefixes.iter().enumerate().map(|(i, p)| json!({
                "enabled": true,
                "name": rule_name(i),
                "type": "Lifecycle",
                "definition": {
                    "filters": { "blobTypes": ["blockBlob"], "prefixMatch": [p] },
                    "actions": { "baseBlob": {
                        "tierToCool": { "daysAfterModificationGreaterThan": days }
                    } }
                }
            })).collect::<Vec<_>>()
        })),
        StorageKind::Gcs => Some(json!({
            "lifecycle": { "rule": pack_prefixes.iter().map(|p| json!({
                "action": { "type": "SetStorageClass", "storageClass": "NEARLINE" },
                "condition": { "age": days, "matchesPrefix": [p] }
            })).collect::<Vec<_>>() }
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes() -> Vec<String> {
        vec!["o/r1/data/".into(), "o/r2/data/".into()]
    }

    #[test]
    fn every_kind_moves_packs_only_to_an_online_tier_and_expires_nothing() {
        for kind in [StorageKind::S3, StorageKind::Azblob, StorageKind::Gcs] {
            let doc = policy(kind, &prefixes(), 45).expect("a policy").to_string();
            assert!(
                doc.contains("o/r1/data/") && doc.contains("o/r2/data/"),
                "{doc}"
            );
            for never in [
                "Expiration",
                "delete",
                "\"Delete\"",
                "GLACIER\"",
                "Archive",
                "ARCHIVE",
                "COLDLINE",
            ] {
                assert!(!doc.contains(never), "{kind}: {never} in {doc}");
            }
            assert!(
                !doc.contains("snapshots") && !doc.contains("index"),
                "{doc}"
            );
        }
        let s3 = policy(StorageKind::S3, &prefixes(), 45).expect("s3");
        assert_eq!(
            s3["Rules"][1]["Transitions"][0]["StorageClass"],
            "STANDARD_IA"
        );
        assert_eq!(s3["Rules"][1]["Filter"]["Prefix"], "o/r2/data/");
        let az = policy(StorageKind::Azblob, &prefixes(), 45).expect("azblob");
        assert_eq!(
            az["rules"][0]["definition"]["actions"]["baseBlob"]["tierToCool"]["daysAfterModificationGreaterThan"],
            45
        );
        let gcs = policy(StorageKind::Gcs, &prefixes(), 45).expect("gcs");
        assert_eq!(gcs["lifecycle"]["rule"][0]["condition"]["age"], 45);
        assert!(policy(StorageKind::Fs, &prefixes(), 45).is_none());
        assert_eq!(minimum_days(StorageKind::S3), 30);
    }
}
