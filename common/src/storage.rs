//! Object storage through opendal: the one place that turns configuration into an `Operator`.
//!
//! Everything above this module (the snapshot repository in `repo/`, catalog objects, download
//! archives, the reconciler) speaks opendal and never asks which kind of storage it is on; what
//! a kind can or cannot do is read from the operator's capabilities (rename, create_dir,
//! last-modified times). So the storage kinds are a closed set here, [`StorageKind`], and
//! adding one (S3, Azure Blob, GCS) is one variant, its required options in
//! [`StorageKind::required_options`] (checked at start-up by [`StorageConfig::validate`]), and
//! its builder arm in [`StorageConfig::operator`].

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use opendal::Operator;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use repovault_proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage kind {0:?} is not supported (supported: {supported})", supported = StorageKind::supported())]
    UnsupportedKind(String),
    #[error("storage option {0:?} is required for kind {1}")]
    MissingOption(&'static str, StorageKind),
    #[error(
        "memory storage {0:?} does not exist in this process: memory storage is shared only \
         within the process that created it (in-process tests), never with another process"
    )]
    MemoryNotInProcess(String),
    #[error("creating the storage root {root}: {source}")]
    Root {
        root: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Opendal(#[from] opendal::Error),
}

/// The storage services repovault can run on. Spelled in configuration files and on the wire
/// (`StorageSpec.kind`) as the lower-case names [`Self::as_str`] returns (`"fs"`, `"memory"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// The local file system (opendal's `fs` service) under option `root`. Every write lands in
    /// a temporary under [`TMP_DIR`] and is renamed into place.
    Fs,
    /// opendal's in-memory service, for tests that need a real snapshot repository and no
    /// disk. Option `name` selects a store created in this process by
    /// [`StorageConfig::memory`]; every operator built from that configuration in this process
    /// sees the same objects (so a coordinator and workers running in one test process share
    /// it), and another process cannot reach it at all: its `operator()` fails with
    /// [`StorageError::MemoryNotInProcess`] instead of silently writing into an empty store of
    /// its own. The store lives until the process exits. It has no rename (writes are single
    /// puts, atomic in memory), no directories and no last-modified times (so a prune never
    /// deletes packs no index lists, whose age it cannot tell).
    Memory,
}

impl StorageKind {
    /// Every kind, in the order error messages list them.
    pub const ALL: [StorageKind; 2] = [StorageKind::Fs, StorageKind::Memory];

    /// The spelling in configuration files and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fs => "fs",
            Self::Memory => "memory",
        }
    }

    /// Options the kind cannot do without; [`StorageConfig::validate`] refuses a configuration
    /// that lacks one, at start-up rather than at the first backup.
    pub fn required_options(self) -> &'static [&'static str] {
        match self {
            Self::Fs => &["root"],
            Self::Memory => &["name"],
        }
    }

    fn supported() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl std::fmt::Display for StorageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StorageKind {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StorageError::UnsupportedKind(s.to_string()))
    }
}

/// Storage as configured: `kind` is the opendal service, `options` its settings. Options whose
/// names look secret (key, secret, token, password, sas) are redacted when printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageConfig {
    pub kind: StorageKind,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Whether a storage option's name says it holds a secret (a key, a token, a password, a SAS):
/// such a value is never printed.
pub fn is_secret_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["key", "secret", "token", "password", "sas"]
        .iter()
        .any(|s| n.contains(s))
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_option(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("StorageConfig")
            .field("kind", &self.kind.as_str())
            .field("options", &redacted)
            .finish()
    }
}

/// The in-memory stores of this process by name; `None` until the first operator is built.
/// Entries are never removed: a store lives as long as the test process that made it.
static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Option<Operator>>>> =
    LazyLock::new(Default::default);

impl StorageConfig {
    pub fn fs(root: impl Into<String>) -> Self {
        Self {
            kind: StorageKind::Fs,
            options: BTreeMap::from([("root".to_string(), root.into())]),
        }
    }

    /// A new, empty in-memory storage under a unique name, usable from this process only (see
    /// [`StorageKind::Memory`]).
    pub fn memory() -> Self {
        let name = format!("memory-{}", uuid::Uuid::now_v7());
        MEMORY_STORES.lock().insert(name.clone(), None);
        Self {
            kind: StorageKind::Memory,
            options: BTreeMap::from([("name".to_string(), name)]),
        }
    }

    /// Checks the configuration without touching storage.
    pub fn validate(&self) -> Result<(), StorageError> {
        for name in self.kind.required_options() {
            self.option(name)?;
        }
        Ok(())
    }

    /// Validates, then readies what the kind needs before first use: for `fs`, creates the
    /// root directory. Blocking (file system); called once at start-up.
    pub fn prepare(&self) -> Result<(), StorageError> {
        self.validate()?;
        match self.kind {
            StorageKind::Fs => {
                let root = self.option("root")?;
                std::fs::create_dir_all(root).map_err(|source| StorageError::Root {
                    root: root.to_string(),
                    source,
                })
            }
            StorageKind::Memory => Ok(()),
        }
    }

    /// What can be checked of the storage without a request: for `fs`, that the root is (still)
    /// a directory (a removed mount or a replaced root is otherwise invisible: opendal lists a
    /// missing root as empty). Blocking (file system).
    pub fn check_local(&self) -> Result<(), String> {
        match self.kind {
            StorageKind::Fs => {
                let root = self.option("root").map_err(|e| e.to_string())?;
                match std::fs::metadata(root) {
                    Ok(m) if m.is_dir() => Ok(()),
                    Ok(_) => Err(format!("the storage root {root} is not a directory")),
                    Err(e) => Err(format!("the storage root {root}: {e}")),
                }
            }
            StorageKind::Memory => Ok(()),
        }
    }

    /// Builds the operator rooted at the storage root. Two operators built from equal
    /// configurations see the same objects (for `memory`, within this process only).
    pub fn operator(&self) -> Result<Operator, StorageError> {
        self.validate()?;
        match self.kind {
            StorageKind::Fs => {
                let root = self.option("root")?;
                // opendal's fs service writes in place unless given an `atomic_write_dir`; with
                // one, writes land in a temporary file and are renamed into place, so a crash
                // never leaves a truncated object under its final name.
                let tmp = format!("{}/{TMP_DIR}", root.trim_end_matches('/'));
                let builder = opendal::services::Fs::default()
                    .root(root)
                    .atomic_write_dir(&tmp);
                Ok(Operator::new(builder)?)
            }
            StorageKind::Memory => {
                let name = self.option("name")?;
                let mut stores = MEMORY_STORES.lock();
                let slot = stores
                    .get_mut(name)
                    .ok_or_else(|| StorageError::MemoryNotInProcess(name.to_string()))?;
                if let Some(op) = slot {
                    return Ok(op.clone());
                }
                let op = Operator::new(opendal::services::Memory::default())?;
                *slot = Some(op.clone());
                Ok(op)
            }
        }
    }

    pub fn to_proto(&self) -> pb::StorageSpec {
        pb::StorageSpec {
            kind: self.kind.as_str().to_string(),
            options: self.options.clone().into_iter().collect(),
        }
    }

    /// The storage a coordinator sent; an unknown kind is [`StorageError::UnsupportedKind`].
    pub fn from_proto(spec: &pb::StorageSpec) -> Result<Self, StorageError> {
        Ok(Self {
            kind: spec.kind.parse()?,
            options: spec.options.clone().into_iter().collect(),
        })
    }

    fn option(&self, name: &'static str) -> Result<&str, StorageError> {
        self.options
            .get(name)
            .map(String::as_str)
            .ok_or(StorageError::MissingOption(name, self.kind))
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
        assert!(s.contains(r#"kind: "fs""#), "{s}");
    }

    #[test]
    fn validation() {
        assert!(StorageConfig::fs("/x").validate().is_ok());
        assert!(StorageConfig::memory().validate().is_ok());
        let mut c = StorageConfig::fs("/x");
        c.options.clear();
        assert!(matches!(
            c.validate(),
            Err(StorageError::MissingOption("root", StorageKind::Fs))
        ));
        c.kind = StorageKind::Memory;
        assert!(matches!(
            c.validate(),
            Err(StorageError::MissingOption("name", StorageKind::Memory))
        ));
        let spec = pb::StorageSpec {
            kind: "ftp".into(),
            options: Default::default(),
        };
        let err = StorageConfig::from_proto(&spec).expect_err("ftp is no kind");
        assert!(matches!(&err, StorageError::UnsupportedKind(k) if k == "ftp"));
        assert_eq!(
            err.to_string(),
            r#"storage kind "ftp" is not supported (supported: fs, memory)"#
        );
    }

    /// Configuration files and the wire keep spelling the kind `"fs"` exactly as before the
    /// kind became an enum.
    #[test]
    fn the_kind_is_spelled_as_before_in_toml_and_on_the_wire() {
        let toml_in = "kind = \"fs\"\n\n[options]\nroot = \"/srv/repovault\"\n";
        let c: StorageConfig = toml::from_str(toml_in).expect("parse");
        assert_eq!(c, StorageConfig::fs("/srv/repovault"));
        assert_eq!(toml::to_string(&c).expect("print"), toml_in);
        let bad = toml::from_str::<StorageConfig>("kind = \"ftp\"\n").expect_err("unknown kind");
        assert!(bad.to_string().contains("ftp"), "{bad}");

        let spec = c.to_proto();
        assert_eq!(spec.kind, "fs");
        assert_eq!(StorageConfig::from_proto(&spec).expect("decode"), c);
        let spec = StorageConfig::memory().to_proto();
        assert_eq!(spec.kind, "memory");
    }

    #[test]
    fn memory_storage_is_shared_in_process_and_unknown_elsewhere() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let storage = StorageConfig::memory();
        let (a, b) = (
            storage.operator().expect("a"),
            storage.operator().expect("b"),
        );
        rt.block_on(async {
            a.write("x/y", "hello").await.expect("write");
            let read = b.read("x/y").await.expect("read").to_vec();
            assert_eq!(read, b"hello");
            // Another memory storage is another store.
            let other = StorageConfig::memory().operator().expect("other");
            assert!(other.read("x/y").await.is_err());
        });
        // What another process would get for the same configuration: a name it never created.
        let mut elsewhere = storage.clone();
        elsewhere
            .options
            .insert("name".into(), "memory-from-another-process".into());
        assert!(matches!(
            elsewhere.operator(),
            Err(StorageError::MemoryNotInProcess(_))
        ));
    }
}
