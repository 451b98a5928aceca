//! The stored form of a storage location.

use serde::{Deserialize, Serialize};

/// A named storage location (`repovault storage add`): where snapshot repositories of the
/// organisations that use it live. The options that are not secret are kept as they are; the
/// secret ones (keys, SAS tokens) are sealed, in two sets: the writer's, which workers get in
/// their leases (backups, verification, restores, drills), and the maintainer's, which only the
/// coordinator uses (forget, prune, purge, catalog objects). Without a maintainer set, the
/// writer's serves both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageLocationRecord {
    pub name: String,
    pub kind: repovault_common::storage::StorageKind,
    /// The options without secrets (bucket, region, endpoint, prefix, account name).
    pub options: std::collections::BTreeMap<String, String>,
    /// The writer's secret options as JSON, sealed.
    pub sealed_writer: String,
    /// The maintainer's secret options as JSON, sealed; `None`: the writer's.
    #[serde(default)]
    pub sealed_maintainer: Option<String>,
    pub created_at_ms: i64,
}
