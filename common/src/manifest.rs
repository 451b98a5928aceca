//! The snapshot format: what one backup's tree holds (DESIGN.md §5).
//!
//! ```text
//! code.git/       bare mirror: every ref, packed-refs, no working tree
//! manifest.json   this document
//! ```
//! `format_version` changes only with a layout change; a golden snapshot of every version is kept
//! in tests/fixtures and must keep restoring.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;
pub const CODE_DIR: &str = "code.git";
pub const MANIFEST_FILE: &str = "manifest.json";
/// The path recorded in every snapshot; constant, so restic's own parent matching would agree
/// with ours.
pub const SNAPSHOT_PATH: &str = "/repovault";
/// Constant host of every snapshot (the label carries the repository id).
pub const SNAPSHOT_HOST: &str = "repovault";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub branches: u64,
    pub tags: u64,
    pub commits: u64,
    pub refs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStatus {
    /// "included", "skipped" or "failed".
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSource {
    pub org_id: String,
    pub org: String,
    pub repo_id: String,
    pub repo: String,
    /// The source URL (never with credentials).
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub backup_id: String,
    /// "full" or "incremental".
    #[serde(rename = "type")]
    pub backup_type: String,
    /// "manual", "schedule" or "push".
    pub trigger: String,
    pub task_id: String,
    pub attempt: u32,
    pub created_at: String,
    pub source: ManifestSource,
    pub components: BTreeMap<String, ComponentStatus>,
    /// Every ref of code.git and the object it points to, at backup time.
    pub refs: BTreeMap<String, String>,
    /// HEAD's symbolic target, when it has one.
    pub head: Option<String>,
    pub counts: Counts,
    pub sizes: BTreeMap<String, u64>,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a manifest and refuses versions this build does not know.
    pub fn from_json(text: &[u8]) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let v: Version = serde_json::from_slice(text).map_err(ManifestError::Parse)?;
        if v.format_version != FORMAT_VERSION {
            return Err(ManifestError::UnknownVersion(v.format_version));
        }
        serde_json::from_slice(text).map_err(ManifestError::Parse)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest.json is not valid: {0}")]
    Parse(serde_json::Error),
    #[error(
        "manifest format_version {0} is not supported by this build (it reads version {FORMAT_VERSION})"
    )]
    UnknownVersion(u32),
}

/// Tags of a backup's snapshot: one tag per fact, `key=value`, so `restic snapshots --tag task=ID`
/// finds them. Never comma-joined (restic splits tags on commas).
pub fn snapshot_tags(
    backup_id: &str,
    task_id: &str,
    attempt: u32,
    backup_type: &str,
    trigger: &str,
) -> Vec<String> {
    vec![
        format!("backup={backup_id}"),
        format!("task={task_id}"),
        format!("attempt={attempt}"),
        format!("type={backup_type}"),
        format!("trigger={trigger}"),
    ]
}

/// Reads `key=value` back out of a snapshot's tags.
pub fn tag_value<'a>(tags: &'a [String], key: &str) -> Option<&'a str> {
    tags.iter()
        .find_map(|t| t.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}
