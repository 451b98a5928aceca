//! Object storage through opendal: one place that turns configuration into an `Operator`.

use std::collections::BTreeMap;

use opendal::Operator;
use serde::{Deserialize, Serialize};

use repovault_proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage kind {0:?} is not supported (supported: fs)")]
    UnsupportedKind(String),
    #[error("storage option {0:?} is required for kind {1:?}")]
    MissingOption(&'static str, String),
    #[error("storage: {0}")]
    Opendal(#[from] opendal::Error),
}

/// Storage as configured: `kind` is the opendal service, `options` its settings. Options whose
/// names look secret (key, secret, token, password, sas) are redacted when printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageConfig {
    pub kind: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                let secret = ["key", "secret", "token", "password", "sas"]
                    .iter()
                    .any(|s| k.to_ascii_lowercase().contains(s));
                (k.as_str(), if secret { "[redacted]" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("StorageConfig")
            .field("kind", &self.kind)
            .field("options", &redacted)
            .finish()
    }
}

impl StorageConfig {
    pub fn fs(root: impl Into<String>) -> Self {
        Self {
            kind: "fs".into(),
            options: BTreeMap::from([("root".to_string(), root.into())]),
        }
    }

    /// Checks the configuration without touching storage.
    pub fn validate(&self) -> Result<(), StorageError> {
        match self.kind.as_str() {
            "fs" => {
                if !self.options.contains_key("root") {
                    return Err(StorageError::MissingOption("root", self.kind.clone()));
                }
                Ok(())
            }
            other => Err(StorageError::UnsupportedKind(other.to_string())),
        }
    }

    /// Builds the operator rooted at the storage root.
    pub fn operator(&self) -> Result<Operator, StorageError> {
        self.validate()?;
        match self.kind.as_str() {
            "fs" => {
                let root = &self.options["root"];
                // opendal's fs service writes in place unless given an `atomic_write_dir`; with
                // one, writes land in a temporary file and are renamed into place, so a crash
                // never leaves a truncated object under its final name.
                let tmp = format!("{}/{TMP_DIR}", root.trim_end_matches('/'));
                let builder = opendal::services::Fs::default()
                    .root(root)
                    .atomic_write_dir(&tmp);
                Ok(Operator::new(builder)?)
            }
            other => Err(StorageError::UnsupportedKind(other.to_string())),
        }
    }

    pub fn to_proto(&self) -> pb::StorageSpec {
        pb::StorageSpec {
            kind: self.kind.clone(),
            options: self.options.clone().into_iter().collect(),
        }
    }

    pub fn from_proto(spec: &pb::StorageSpec) -> Self {
        Self {
            kind: spec.kind.clone(),
            options: spec.options.clone().into_iter().collect(),
        }
    }
}

/// Temporaries of writes in progress: the fs service writes every object to
/// `<root>/.tmp/<name>` first and renames it into place, and a snapshot repository's own writes
/// go through `<repository>/.tmp/` (`repo/backend.rs`, same name). A failed or interrupted
/// write can leave its temporary behind; the coordinator removes stale ones (its
/// `temporaries` module).
pub const TMP_DIR: &str = ".tmp";

/// Where the snapshot repository of a source repository lives: keyed by stable ids, never
/// names, so a rename keeps its history.
pub fn snapshot_repo_path(org_id: &str, repo_id: &str) -> String {
    format!("{org_id}/{repo_id}")
}

/// The create-only catalog object of one backup, beside the repository's snapshots.
pub fn catalog_object_path(org_id: &str, repo_id: &str, backup_id: &str) -> String {
    format!("{org_id}/{repo_id}/catalog/{backup_id}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_options() {
        let mut c = StorageConfig::fs("/x");
        c.options
            .insert("secret_access_key".into(), "AKIA-SECRET".into());
        let s = format!("{c:?}");
        assert!(!s.contains("AKIA-SECRET"));
        assert!(s.contains("/x"));
    }

    #[test]
    fn validation() {
        assert!(StorageConfig::fs("/x").validate().is_ok());
        let mut c = StorageConfig::fs("/x");
        c.options.clear();
        assert!(matches!(
            c.validate(),
            Err(StorageError::MissingOption("root", _))
        ));
        c.kind = "ftp".into();
        assert!(matches!(
            c.validate(),
            Err(StorageError::UnsupportedKind(_))
        ));
    }
}
