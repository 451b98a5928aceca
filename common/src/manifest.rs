//! The snapshot format: what one backup's tree holds (README, design decisions, "What a GitHub
//! backup holds").
//!
//! ```text
//! code.git/       bare mirror: every ref except refs/pull/*/merge, packed-refs, no work tree
//! wiki.git/       bare mirror of the wiki (GitHub, when it has pages)
//! lfs/objects/    LFS objects the mirror's pointers name, as git-lfs lays them out
//! meta/           issues, pulls, releases, labels, ... as JSON (see forge::github::export)
//! releases/       release asset bytes
//! attachments/    files issue and comment bodies link to, by sha256
//! manifest.json   this document
//! ```
//! Everything but `code.git/` and `manifest.json` was added with the GitHub provider; the
//! additions are optional, so `format_version` stayed 1 and older snapshots read as before.
//! `format_version` changes only with a layout change; a golden snapshot of every version is kept
//! in tests/fixtures and must keep restoring.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{
    BackupId, BackupType, ComponentState, FromWire, OrgId, RepoId, TaskId, Trigger, WireError,
};

pub const FORMAT_VERSION: u32 = 1;
pub const CODE_DIR: &str = "code.git";
pub const WIKI_DIR: &str = "wiki.git";
pub const LFS_DIR: &str = "lfs/objects";
/// Directories the metadata export writes (`forge::github::export`), swapped in as a whole.
pub const EXPORT_DIRS: [&str; 3] = ["meta", "releases", "attachments"];
pub const MANIFEST_FILE: &str = "manifest.json";
/// The path recorded in every snapshot; constant, so restic's own parent matching would agree
/// with ours.
pub const SNAPSHOT_PATH: &str = "/repovault";
/// Constant host of every snapshot (the label carries the repository id).
pub const SNAPSHOT_HOST: &str = "repovault";

/// What one backup holds, by kind. Fields after `refs` were added with the GitHub provider
/// and default to 0 when reading older manifests and records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub branches: u64,
    pub tags: u64,
    /// Commits reachable from any ref.
    pub commits: u64,
    pub refs: u64,
    /// Issues, without pull requests.
    #[serde(default)]
    pub issues: u64,
    #[serde(default)]
    pub pulls: u64,
    #[serde(default)]
    pub releases: u64,
    #[serde(default)]
    pub wiki_pages: u64,
    #[serde(default)]
    pub lfs_objects: u64,
    #[serde(default)]
    pub attachments: u64,
    /// Conversation comments of issues and pull requests, and review comments.
    #[serde(default)]
    pub comments: u64,
    #[serde(default)]
    pub reviews: u64,
    #[serde(default)]
    pub release_assets: u64,
    #[serde(default)]
    pub labels: u64,
    #[serde(default)]
    pub milestones: u64,
    #[serde(default)]
    pub workflows: u64,
    /// Objects of code.git reachable from its refs (a restore drill compares a restored copy
    /// with it; 0 in manifests written before).
    #[serde(default)]
    pub objects: u64,
}

/// The wire's `Counts` and ours carry the same fields: both conversions from one list.
macro_rules! counts_conversions {
    ($($field:ident),* $(,)?) => {
        impl From<&Counts> for repovault_proto::v1::Counts {
            fn from(c: &Counts) -> Self {
                Self { $($field: c.$field),* }
            }
        }

        impl From<&repovault_proto::v1::Counts> for Counts {
            fn from(c: &repovault_proto::v1::Counts) -> Self {
                Self { $($field: c.$field),* }
            }
        }
    };
}

counts_conversions!(
    branches,
    tags,
    commits,
    refs,
    issues,
    pulls,
    releases,
    wiki_pages,
    lfs_objects,
    attachments,
    comments,
    reviews,
    release_assets,
    labels,
    milestones,
    workflows,
    objects,
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub status: ComponentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ComponentStatus {
    pub fn included(note: Option<String>) -> Self {
        ComponentStatus {
            status: ComponentState::Included,
            reason: note,
        }
    }
    pub fn skipped(reason: impl Into<String>) -> Self {
        ComponentStatus {
            status: ComponentState::Skipped,
            reason: Some(reason.into()),
        }
    }
    pub fn failed(reason: impl Into<String>) -> Self {
        ComponentStatus {
            status: ComponentState::Failed,
            reason: Some(reason.into()),
        }
    }
    /// Included: the component is whole in the backup.
    pub fn is_complete(&self) -> bool {
        self.status == ComponentState::Included
    }
}

/// Every component a GitHub backup reports, in display order.
pub const GITHUB_COMPONENTS: [&str; 11] = [
    "git",
    "lfs",
    "issues",
    "pulls",
    "wiki",
    "releases",
    "attachments",
    "workflows",
    "labels",
    "milestones",
    "settings",
];

/// Components as the wire carries them.
pub fn components_to_proto(
    c: &BTreeMap<String, ComponentStatus>,
) -> std::collections::HashMap<String, repovault_proto::v1::ComponentStatus> {
    c.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                repovault_proto::v1::ComponentStatus {
                    status: v.status.into(),
                    reason: v.reason.clone().unwrap_or_default(),
                },
            )
        })
        .collect()
}

/// Components from the wire (an empty reason is none); an unspecified or unknown status is an
/// error naming the field.
pub fn components_from_proto(
    c: &std::collections::HashMap<String, repovault_proto::v1::ComponentStatus>,
) -> Result<BTreeMap<String, ComponentStatus>, WireError> {
    c.iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                ComponentStatus {
                    status: ComponentState::from_wire(v.status, "components.status")?,
                    reason: (!v.reason.is_empty()).then(|| v.reason.clone()),
                },
            ))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSource {
    pub org_id: OrgId,
    pub org: String,
    pub repo_id: RepoId,
    pub repo: String,
    /// The source URL (never with credentials).
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub backup_id: BackupId,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    pub trigger: Trigger,
    pub task_id: TaskId,
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
    /// The forge export's state (GitHub): where the next incremental resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportState>,
    /// What the source said at backup time, for `commit_count_match`; absent in
    /// manifests written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_state: Option<SourceState>,
}

/// What the source advertised at backup time, recorded beside what the backup holds so a later
/// verification can compare the two without asking the source again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// The refs the source advertised that the mirror keeps (every ref but
    /// `refs/pull/*/merge`), by full name, to the object id advertised (not peeled).
    pub refs: BTreeMap<String, String>,
    /// The forge's own count of commits reachable from the default branch's tip, where the
    /// forge gives one (GitHub: the last page of `commits?sha=TIP&per_page=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<BranchCount>,
}

/// The forge's commit count of one commit (immutable for a given `oid`, so a backup whose
/// default branch did not move reuses its parent's figure without asking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchCount {
    /// Full ref name, e.g. `refs/heads/main`.
    pub branch: String,
    pub oid: String,
    pub commits: u64,
}

/// What an incremental backup needs from its parent's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportState {
    pub cursors: crate::forge::github::Cursors,
    /// REST requests the export sent (retries included).
    pub requests: u64,
    /// The mode the export ran in: `full`, or `incremental` (from the parent's cursors).
    pub mode: String,
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
    backup_id: &BackupId,
    task_id: &TaskId,
    attempt: u32,
    backup_type: BackupType,
    trigger: Trigger,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A format-1 manifest as the golden repository's was written (its ids are not the shapes
    /// the coordinator makes today, and a hyphenated UUID as the task id).
    const FORMAT_1: &str = r#"{
  "format_version": 1,
  "backup_id": "golden-backup-format-1",
  "type": "full",
  "trigger": "manual",
  "task_id": "00000000-0000-4000-8000-000000000001",
  "attempt": 1,
  "created_at": "2024-01-01T00:00:00.000Z",
  "source": {
    "org_id": "org_golden",
    "org": "golden",
    "repo_id": "repo_golden",
    "repo": "golden",
    "url": "git://example.invalid/golden.git"
  },
  "components": {
    "code": {
      "status": "included"
    }
  },
  "refs": {
    "refs/heads/main": "0123456789abcdef0123456789abcdef01234567"
  },
  "head": "refs/heads/main",
  "counts": {
    "branches": 1,
    "tags": 0,
    "commits": 1,
    "refs": 1,
    "issues": 0,
    "pulls": 0,
    "releases": 0,
    "wiki_pages": 0,
    "lfs_objects": 0,
    "attachments": 0,
    "comments": 0,
    "reviews": 0,
    "release_assets": 0,
    "labels": 0,
    "milestones": 0,
    "workflows": 0,
    "objects": 0
  },
  "sizes": {
    "code_bytes": 0
  }
}"#;

    #[test]
    fn a_format_1_manifest_reads_with_typed_ids_and_writes_back_unchanged() {
        let m = Manifest::from_json(FORMAT_1.as_bytes()).expect("reads");
        assert_eq!(m.backup_id.as_str(), "golden-backup-format-1");
        assert_eq!(m.task_id.as_str(), "00000000-0000-4000-8000-000000000001");
        assert_eq!(m.source.org_id.as_str(), "org_golden");
        assert_eq!(m.source.repo_id.as_str(), "repo_golden");
        assert_eq!(m.to_json(), FORMAT_1);
        assert_eq!(
            snapshot_tags(
                &m.backup_id,
                &m.task_id,
                m.attempt,
                m.backup_type,
                m.trigger
            ),
            [
                "backup=golden-backup-format-1",
                "task=00000000-0000-4000-8000-000000000001",
                "attempt=1",
                "type=full",
                "trigger=manual",
            ]
        );
    }
}
