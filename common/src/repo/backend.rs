//! rustic_core's `ReadBackend` + `WriteBackend` on our own opendal [`Operator`].
//!
//! Layout (the restic repository format, relative to the repository prefix):
//! `config`, `keys/<id>`, `snapshots/<id>`, `index/<id>`, `data/<id[0..2]>/<id>`.
//!
//! Two things happen here besides plain I/O:
//! - **Atomic writes.** A file never appears under its final name truncated: on services that can
//!   rename (the fs service), a file is written under `.tmp/` beside the repository's files and
//!   renamed into place; on services without rename (object stores) a single PUT, a completed
//!   multipart upload (objects over [`MULTIPART_THRESHOLD`]) or a committed block list is
//!   already atomic. Where the service can, a repository file is created only if it does not
//!   exist yet (S3's `If-None-Match: *`), so a writer credential without overwrite rights works
//!   and nothing ever replaces a stored file.
//! - **Snapshot capture** (the commit fence of [`super::SnapshotRepo::backup`]): while a capture
//!   is armed, a write of a `FileType::Snapshot` file is held in memory instead of being written;
//!   the backup then runs its fence and writes (or drops) the held snapshot itself.

use std::sync::Arc;

use bytes::Bytes;
use opendal::{BytesRange, ErrorKind as OdErrorKind, Operator, blocking, options};
use parking_lot::Mutex;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

// Files being written live under `TMP_DIR` beside the repository's files: restic and rustic
// never look there, and a crash can leave garbage there (the coordinator's reconciler sweeps
// it), never a torn repository file.
use crate::storage::{MULTIPART_CONCURRENCY, MULTIPART_PART_SIZE, MULTIPART_THRESHOLD, TMP_DIR};

/// A snapshot file held back by an armed capture.
pub(crate) struct HeldSnapshot {
    pub(crate) id: Id,
    pub(crate) content: BytesList,
}

/// State of the snapshot capture: `None` = not armed (snapshot writes go to storage).
#[derive(Default)]
struct Capture {
    armed: bool,
    held: Option<HeldSnapshot>,
}

pub(crate) struct OpendalBackend {
    op: blocking::Operator,
    /// Repository prefix inside the operator, `""` or ending in `/`.
    prefix: String,
    location: String,
    /// Whether the service can rename (then writes go through `.tmp/` + rename).
    rename: bool,
    /// Whether the service can refuse a write over an existing object.
    if_not_exists: bool,
    /// The repository's `config` once read or written: it never changes after the repository is
    /// created, and every open of this handle reads it, so it is fetched from storage once.
    config: Mutex<Option<Bytes>>,
    capture: Mutex<Capture>,
}

impl OpendalBackend {
    /// Wraps `op` for the repository under `path`.
    ///
    /// Must be called with a tokio runtime context entered (e.g. inside `spawn_blocking`): the
    /// blocking operator keeps that runtime's handle and blocks on it for every call, so none of
    /// the methods may run on a runtime worker thread.
    pub(crate) fn new(op: Operator, path: &str) -> opendal::Result<Arc<Self>> {
        let trimmed = path.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        };
        let info = op.info();
        // opendal's fs root has no trailing '/' (`/data/storage`), others may have one.
        let location = format!(
            "{}:{}/{prefix}",
            info.scheme(),
            info.root().trim_end_matches('/')
        );
        let rename = info.capability().rename;
        let if_not_exists = info.capability().write_with_if_not_exists;
        let op = blocking::Operator::new(op)?;
        Ok(Arc::new(Self {
            op,
            prefix,
            location,
            rename,
            if_not_exists,
            config: Mutex::new(None),
            capture: Mutex::new(Capture::default()),
        }))
    }

    pub(crate) fn location_str(&self) -> &str {
        &self.location
    }

    fn path(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let hex = hex.as_str();
        match tpe {
            FileType::Config => format!("{}config", self.prefix),
            FileType::Pack => format!("{}data/{}/{hex}", self.prefix, &hex[..2]),
            _ => format!("{}{}/{hex}", self.prefix, tpe.dirname()),
        }
    }

    fn storage_error(&self, what: &str, path: &str, err: opendal::Error) -> Box<RusticError> {
        RusticError::with_source(
            ErrorKind::Backend,
            "storage {what} failed for `{path}`",
            err,
        )
        .attach_context("what", what.to_string())
        .attach_context("path", path.to_string())
    }

    /// Whether a file exists (used to tell "snapshot not found" from other errors).
    pub(crate) fn exists(&self, tpe: FileType, id: &Id) -> opendal::Result<bool> {
        match self.op.stat(&self.path(tpe, id)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == OdErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// When a file was last modified (ms since the epoch); `None` when it is not in storage or
    /// the service does not say.
    pub(crate) fn modified_ms(&self, tpe: FileType, id: &Id) -> opendal::Result<Option<i64>> {
        match self.op.stat(&self.path(tpe, id)) {
            Ok(meta) => Ok(meta
                .last_modified()
                .map(|t| t.into_inner().as_millisecond())),
            Err(e) if e.kind() == OdErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Moves a repository file out of restic's layout to `<prefix>damaged/<dirname>-<id>`, where
    /// restic, rustic and this code's listings never look, keeping its bytes for inspection.
    /// Copy first, then delete: an interruption leaves the file in place (found damaged again
    /// later), never lost. Returns `false` when the file was not in storage. Idempotent.
    pub(crate) fn quarantine(&self, tpe: FileType, id: &Id) -> opendal::Result<bool> {
        let path = self.path(tpe, id);
        let bytes = match self.op.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == OdErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let dest = format!(
            "{}damaged/{}-{}",
            self.prefix,
            tpe.dirname(),
            id.to_hex().as_str()
        );
        self.op.write(&dest, bytes)?;
        self.op.delete(&path)?;
        Ok(true)
    }

    /// Writes `content` to `rel` (relative to the repository prefix), outside restic's layout.
    pub(crate) fn write_aside(&self, rel: &str, content: Vec<u8>) -> opendal::Result<()> {
        self.op
            .write(&format!("{}{rel}", self.prefix), content)
            .map(|_| ())
    }

    /// Arms the snapshot capture: until [`Self::disarm`], snapshot files are held, not written.
    pub(crate) fn arm(&self) {
        let mut c = self.capture.lock();
        c.armed = true;
        c.held = None;
    }

    /// Disarms the capture and returns the snapshot file held meanwhile, if any.
    pub(crate) fn disarm(&self) -> Option<HeldSnapshot> {
        let mut c = self.capture.lock();
        c.armed = false;
        c.held.take()
    }

    /// Writes a held snapshot to storage (atomically, as every write).
    pub(crate) fn write_held(&self, held: HeldSnapshot) -> RusticResult<()> {
        self.store(FileType::Snapshot, &held.id, held.content)
    }

    fn store(&self, tpe: FileType, id: &Id, content: BytesList) -> RusticResult<()> {
        let path = self.path(tpe, id);
        let buf = opendal::Buffer::from(content.into_vec());
        if !self.rename {
            return self.put(tpe, &path, buf);
        }
        // Unique temporary name: concurrent writers of the same id (two workers saving the same
        // blob pack is impossible, but the same config/key on a retried init is not) never share it.
        let tmp = format!(
            "{}{TMP_DIR}/{}.{:016x}",
            self.prefix,
            id.to_hex().as_str(),
            rand::random::<u64>()
        );
        if let Err(e) = self.op.write(&tmp, buf) {
            let _ = self.op.delete(&tmp);
            return Err(self.storage_error("write", &tmp, e));
        }
        if let Err(e) = self.op.rename(&tmp, &path) {
            let _ = self.op.delete(&tmp);
            return Err(self.storage_error("rename", &path, e));
        }
        Ok(())
    }
}

impl OpendalBackend {
    /// One all-or-nothing upload on a service without rename. Every repository file but
    /// `config` is named by the hash of its content, so where one exists already it holds these
    /// very bytes: a conditional create that finds it is done, not failed.
    fn put(&self, tpe: FileType, path: &str, buf: opendal::Buffer) -> RusticResult<()> {
        let mut opts = options::WriteOptions {
            if_not_exists: self.if_not_exists && tpe != FileType::Config,
            ..Default::default()
        };
        if buf.len() > MULTIPART_THRESHOLD {
            opts.chunk = Some(MULTIPART_PART_SIZE);
            opts.concurrent = MULTIPART_CONCURRENCY;
        }
        match self.op.write_options(path, buf, opts) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == OdErrorKind::ConditionNotMatch => {
                tracing::debug!(path, "repository file already stored");
                Ok(())
            }
            Err(e) => Err(self.storage_error("write", path, e)),
        }
    }
}

impl OpendalBackend {
    /// The repository's `config`, read from storage the first time only (`None`: there is none
    /// yet, which is not kept, so a repository created meanwhile is found).
    fn config_bytes(&self) -> RusticResult<Option<Bytes>> {
        if let Some(c) = self.config.lock().clone() {
            return Ok(Some(c));
        }
        let path = self.path(FileType::Config, &Id::default());
        match self.op.read(&path) {
            Ok(b) => {
                let bytes = b.to_bytes();
                *self.config.lock() = Some(bytes.clone());
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == OdErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.storage_error("read", &path, e)),
        }
    }
}

impl ReadBackend for OpendalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            // Read rather than stat: the file is small and every open reads it next, so one
            // request serves both and the handle keeps it.
            return match self.config_bytes() {
                Ok(Some(c)) => Ok(vec![(Id::default(), to_u32(c.len() as u64, "config")?)]),
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir = format!("{}{}/", self.prefix, tpe.dirname());
        let opts = options::ListOptions {
            recursive: true,
            ..Default::default()
        };
        let entries = match self.op.list_options(&dir, opts) {
            Ok(entries) => entries,
            Err(e) if e.kind() == OdErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.storage_error("list", &dir, e)),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.metadata().is_dir() {
                continue;
            }
            let name = entry.name();
            // Anything that is not a 64-hex id (editor backups, foreign files) is not ours to read.
            let Ok(id) = name.parse::<Id>() else {
                tracing::debug!(path = entry.path(), "ignoring non-id file in repository");
                continue;
            };
            let mut size = entry.metadata().content_length();
            if size == 0 {
                // Some services list without sizes; a real repository file is never empty.
                size = self
                    .op
                    .stat(entry.path())
                    .map_err(|e| self.storage_error("stat", entry.path(), e))?
                    .content_length();
            }
            out.push((id, to_u32(size, entry.path())?));
        }
        Ok(out)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = self.path(tpe, id);
        if tpe == FileType::Config {
            return self.config_bytes()?.ok_or_else(|| {
                self.storage_error(
                    "read",
                    &path,
                    opendal::Error::new(OdErrorKind::NotFound, "the repository has no config"),
                )
            });
        }
        self.op
            .read(&path)
            .map(|b| b.to_bytes())
            .map_err(|e| self.storage_error("read", &path, e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = self.path(tpe, id);
        let opts = options::ReadOptions {
            range: BytesRange::new(u64::from(offset), Some(u64::from(length))),
            ..Default::default()
        };
        let bytes = self
            .op
            .read_options(&path, opts)
            .map(|b| b.to_bytes())
            .map_err(|e| self.storage_error("read", &path, e))?;
        if bytes.len() != length as usize {
            // A short read means a truncated file; say so instead of failing later in decryption.
            return Err(RusticError::new(
                ErrorKind::Backend,
                "short read from `{path}`: wanted {length} bytes at offset {offset}, got {got}",
            )
            .attach_context("path", path)
            .attach_context("length", length.to_string())
            .attach_context("offset", offset.to_string())
            .attach_context("got", bytes.len().to_string()));
        }
        Ok(bytes)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id)
    }
}

impl WriteBackend for OpendalBackend {
    fn create(&self) -> RusticResult<()> {
        for dir in ["keys/", "snapshots/", "index/", "data/"] {
            let path = format!("{}{dir}", self.prefix);
            self.op
                .create_dir(&path)
                .map_err(|e| self.storage_error("create_dir", &path, e))?;
        }
        Ok(())
    }

    /// Writes atomically; a snapshot file is held instead while a capture is armed.
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        if tpe == FileType::Snapshot {
            let mut c = self.capture.lock();
            if c.armed {
                if c.held.is_some() {
                    return Err(RusticError::new(
                        ErrorKind::Internal,
                        "a second snapshot file was written during one backup",
                    ));
                }
                c.held = Some(HeldSnapshot { id: *id, content });
                return Ok(());
            }
        }
        self.store(tpe, id, content)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = self.path(tpe, id);
        // opendal's delete succeeds on a missing file, so removing is idempotent.
        self.op
            .delete(&path)
            .map_err(|e| self.storage_error("delete", &path, e))
    }
}

fn to_u32(size: u64, path: &str) -> RusticResult<u32> {
    u32::try_from(size).map_err(|_| {
        RusticError::new(
            ErrorKind::Backend,
            "file `{path}` is larger than 4 GiB, not a repository file",
        )
        .attach_context("path", path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_separates_the_storage_root_from_the_repository_path() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _entered = rt.enter();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("storage");
        let op = crate::storage::StorageConfig::fs(root.to_string_lossy())
            .operator()
            .expect("operator");
        let backend = OpendalBackend::new(op, "/org1/repo1/").expect("backend");
        assert_eq!(
            backend.location_str(),
            format!("fs:{}/org1/repo1/", root.display())
        );
    }
}
