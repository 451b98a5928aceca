//! Object storage through opendal: the one place that turns configuration into an `Operator`.
//!
//! Everything above this module (the snapshot repository in `repo/`, catalog objects, download
//! archives, the reconciler) speaks opendal and never asks which kind of storage it is on; what
//! a kind can or cannot do is read from the operator's capabilities (rename, create_dir,
//! last-modified times, conditional writes, presigning). So the storage kinds are a closed set
//! here, [`StorageKind`]; a kind is its options ([`StorageKind::required_options`] and
//! [`StorageKind::known_options`], checked at start-up by [`StorageConfig::validate`]) and its
//! builder arm in `services.rs`.

pub mod azure_sas;
pub mod s3_object_lock;
mod services;
pub mod storage_conformance;

pub use services::{
    MULTIPART_CONCURRENCY, MULTIPART_PART_SIZE, MULTIPART_THRESHOLD, REQUEST_TIMEOUT,
    RETRY_MAX_TIMES, TRANSFER_TIMEOUT,
};

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
    #[error("storage option {0:?} is not known for kind {1} (known: {known})", known = .1.known_options().join(", "))]
    UnknownOption(String, StorageKind),
    #[error("storage of kind {0}: {1}")]
    Invalid(StorageKind, String),
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
    /// Amazon S3 or an S3-compatible service (opendal's `s3`): options `bucket` and `region`,
    /// optionally `endpoint` (anything but AWS), `prefix`, `access_key_id` with
    /// `secret_access_key` (and `session_token`), `virtual_host_style`.
    S3,
    /// Azure Blob Storage (opendal's `azblob`): options `container`, `endpoint`
    /// (`https://ACCOUNT.blob.core.windows.net`) and `account_name`, with `account_key` or
    /// `sas_token`, optionally `prefix`.
    Azblob,
    /// Google Cloud Storage (opendal's `gcs`): option `bucket`, optionally `endpoint` (an
    /// emulator), `prefix`, and `credential` (a service account key, base64 of its JSON) or
    /// `token` (an OAuth access token), or `anonymous = "true"` (emulators, public buckets).
    Gcs,
}

impl StorageKind {
    /// Every kind, in the order error messages list them.
    pub const ALL: [StorageKind; 5] = [
        StorageKind::Fs,
        StorageKind::S3,
        StorageKind::Azblob,
        StorageKind::Gcs,
        StorageKind::Memory,
    ];

    /// The spelling in configuration files and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fs => "fs",
            Self::Memory => "memory",
            Self::S3 => "s3",
            Self::Azblob => "azblob",
            Self::Gcs => "gcs",
        }
    }

    /// Options the kind cannot do without; [`StorageConfig::validate`] refuses a configuration
    /// that lacks one, at start-up rather than at the first backup.
    pub fn required_options(self) -> &'static [&'static str] {
        match self {
            Self::Fs => &["root"],
            Self::Memory => &["name"],
            Self::S3 => &["bucket", "region"],
            Self::Azblob => &["container", "endpoint", "account_name"],
            Self::Gcs => &["bucket"],
        }
    }

    /// Every option the kind understands; [`StorageConfig::validate`] refuses any other (a
    /// misspelt `secret_acess_key` would otherwise be ignored and the storage reached without
    /// it).
    pub fn known_options(self) -> &'static [&'static str] {
        match self {
            Self::Fs => &["root"],
            Self::Memory => &["name"],
            Self::S3 => &[
                "bucket",
                "region",
                "endpoint",
                "prefix",
                "access_key_id",
                "secret_access_key",
                "session_token",
                "virtual_host_style",
            ],
            Self::Azblob => &[
                "container",
                "endpoint",
                "account_name",
                "account_key",
                "sas_token",
                "prefix",
            ],
            Self::Gcs => &[
                "bucket",
                "endpoint",
                "prefix",
                "credential",
                "token",
                "anonymous",
            ],
        }
    }

    /// Whether the kind is reached over the network (then requests are retried and timed out).
    pub fn is_remote(self) -> bool {
        matches!(self, Self::S3 | Self::Azblob | Self::Gcs)
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
pub(crate) static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Option<Operator>>>> =
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

    /// Checks the configuration without touching storage: every required option is there, no
    /// unknown one is, and credentials come in the combinations the kind accepts.
    pub fn validate(&self) -> Result<(), StorageError> {
        for name in self.kind.required_options() {
            self.option(name)?;
        }
        if let Some(unknown) = self
            .options
            .keys()
            .find(|k| !self.kind.known_options().contains(&k.as_str()))
        {
            return Err(StorageError::UnknownOption(unknown.clone(), self.kind));
        }
        services::validate_credentials(self)
    }

    /// The value of option `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The configuration without its secret options, safe to show and to store unsealed.
    pub fn public_part(&self) -> Self {
        Self {
            kind: self.kind,
            options: self
                .options
                .iter()
                .filter(|(k, _)| !is_secret_option(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
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
            StorageKind::Memory | StorageKind::S3 | StorageKind::Azblob | StorageKind::Gcs => {
                Ok(())
            }
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
            StorageKind::Memory | StorageKind::S3 | StorageKind::Azblob | StorageKind::Gcs => {
                Ok(())
            }
        }
    }

    /// Builds the operator rooted at the storage root. Two operators built from equal
    /// configurations see the same objects (for `memory`, within this process only). Operators
    /// of remote kinds time out every request and retry transient failures (`services.rs`).
    pub fn operator(&self) -> Result<Operator, StorageError> {
        self.validate()?;
        services::build(self)
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
        self.get(name)
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
            r#"storage kind "ftp" is not supported (supported: fs, s3, azblob, gcs, memory)"#
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

    #[test]
    fn options_are_checked_by_kind() {
        let s3 = |pairs: &[(&str, &str)]| StorageConfig {
            kind: StorageKind::S3,
            options: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let base = [("bucket", "b"), ("region", "us-east-1")];
        let full = [
            base.as_slice(),
            &[("access_key_id", "id"), ("secret_access_key", "s")],
        ]
        .concat();
        assert!(s3(&full).validate().is_ok());
        let err = s3(&[full.as_slice(), &[("secret_acess_key", "typo")]].concat())
            .validate()
            .expect_err("unknown option");
        assert!(
            err.to_string()
                .contains(r#""secret_acess_key" is not known for kind s3"#),
            "{err}"
        );
        let err = s3(&[base.as_slice(), &[("access_key_id", "id")]].concat())
            .validate()
            .expect_err("half a key pair");
        assert_eq!(
            err.to_string(),
            "storage of kind s3: options access_key_id and secret_access_key go together"
        );
        assert!(matches!(
            s3(&[("bucket", "b")]).validate(),
            Err(StorageError::MissingOption("region", StorageKind::S3))
        ));
        let mut az = StorageConfig {
            kind: StorageKind::Azblob,
            options: [
                ("container", "c"),
                ("endpoint", "http://x"),
                ("account_name", "a"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        };
        assert!(az.validate().is_err(), "a key or a SAS is required");
        az.options.insert("sas_token".into(), "sv=1".into());
        assert!(az.validate().is_ok());
        assert_eq!(az.public_part().options.len(), 3, "the SAS is not public");
        let mut gcs = StorageConfig {
            kind: StorageKind::Gcs,
            options: [("bucket".to_string(), "b".to_string())].into(),
        };
        assert!(gcs.validate().is_err(), "some credential is required");
        gcs.options.insert("anonymous".into(), "yes".into());
        assert!(
            gcs.validate()
                .expect_err("not a bool")
                .to_string()
                .contains(r#""yes""#)
        );
        gcs.options.insert("anonymous".into(), "true".into());
        assert!(gcs.validate().is_ok());
    }

    #[test]
    fn fs_and_memory_pass_the_storage_conformance_suite() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        for config in [
            StorageConfig::fs(dir.path().display().to_string()),
            StorageConfig::memory(),
        ] {
            let op = config.operator().expect("operator");
            rt.block_on(storage_conformance::run(
                &op,
                "conformance",
                MULTIPART_PART_SIZE + 1,
                storage_conformance::KnownGaps::default(),
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", config.kind));
        }
    }
}
