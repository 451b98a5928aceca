//! The export tree: canonical JSON (sorted keys, pretty, trailing newline) written with
//! deterministic mtimes, downloads streamed in through a temporary file, carry-over of unchanged
//! files from the previous tree, and the conditional-request bookkeeping (ETags) shared by every
//! component. The tree's file-system work runs on the blocking pool ([`Tree`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::super::blocking::blocking;
use super::super::rest_client::GitHubClient;
use super::super::transfer::Downloaded;
use crate::forge::ForgeError;

/// The mtime of aggregate files (labels, milestones, settings, ...): a fixed epoch, so
/// re-exporting unchanged data writes byte- and mtime-identical files. 2000-01-01T00:00:00Z,
/// an arbitrary constant before any GitHub data.
pub const AGGREGATE_MTIME_SECS: u64 = 946_684_800;

/// `v` with every object's keys sorted (whatever serde_json's map order is).
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                if let Some(inner) = map.get(k) {
                    out.insert(k.clone(), canonical(inner));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// A time from a GitHub timestamp field.
pub fn timestamp(v: &Value, field: &str) -> Option<DateTime<Utc>> {
    v.get(field)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The mtime for a time (the fixed epoch when unknown or before it).
pub fn mtime_of(t: Option<DateTime<Utc>>) -> SystemTime {
    let secs = t
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .unwrap_or(AGGREGATE_MTIME_SECS);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// The fixed mtime of aggregate files.
pub fn aggregate_mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(AGGREGATE_MTIME_SECS)
}

/// Where downloads wait until they are whole: `<out>/.partial/`, removed when the export ends,
/// so the tree never holds a partial file under a real name.
pub const PARTIAL_DIR: &str = ".partial";

/// A document to write: canonical JSON at `rel` (under the output tree) with `mtime`.
#[derive(Debug, Clone)]
pub struct Doc {
    pub rel: String,
    pub value: Value,
    pub mtime: SystemTime,
}

/// The output tree and the previous one. Every method that touches the file system does it on
/// the blocking pool, one hand-off per call (a batch of documents, a directory copied whole).
#[derive(Debug, Clone)]
pub struct Tree {
    pub out: PathBuf,
    pub previous: Option<PathBuf>,
}

impl Tree {
    /// Writes `rel` as canonical JSON with `mtime`.
    pub async fn write_json(
        &self,
        rel: &str,
        value: Value,
        mtime: SystemTime,
    ) -> Result<(), ForgeError> {
        let doc = Doc {
            rel: rel.to_string(),
            value,
            mtime,
        };
        self.write_docs(vec![doc]).await
    }

    /// Writes every document (serialised on the blocking pool too: an issue with its comments
    /// can be megabytes).
    pub async fn write_docs(&self, docs: Vec<Doc>) -> Result<(), ForgeError> {
        if docs.is_empty() {
            return Ok(());
        }
        let out = self.out.clone();
        blocking(&self.out, move || {
            docs.into_iter().try_for_each(|doc| write_doc(&out, doc))
        })
        .await
    }

    /// The previous tree's `rel`, when there is one and it is a file.
    pub async fn previous_file(&self, rel: &str) -> Option<PathBuf> {
        let p = self.previous.as_ref()?.join(rel);
        let meta = tokio::fs::metadata(&p).await.ok()?;
        meta.is_file().then_some(p)
    }

    /// The previous tree's `rel` as JSON (`None` when absent or not JSON).
    pub async fn previous_json(&self, rel: &str) -> Option<Value> {
        let p = self.previous.as_ref()?.join(rel);
        let what = p.clone();
        blocking(&what, move || {
            Ok(std::fs::read(&p)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
        })
        .await
        .ok()
        .flatten()
    }

    /// Copies the previous tree's `rel` (file or directory) into the output, keeping mtimes.
    /// False when the previous tree has no `rel`.
    pub async fn carry_over(&self, rel: &str) -> Result<bool, ForgeError> {
        let Some(prev) = self.previous.as_ref() else {
            return Ok(false);
        };
        let from = prev.join(rel);
        let to = self.out.join(rel);
        blocking(&from.clone(), move || {
            if !from.exists() {
                return Ok(false);
            }
            copy_keeping_mtime(&from, &to)?;
            Ok(true)
        })
        .await
    }

    /// Downloads `url` into the tree, streamed (see [`GitHubClient::download`]): to a file under
    /// [`PARTIAL_DIR`] first, then, once whole, given `mtime` and renamed to the `rel` that
    /// `place` names from what was downloaded (an attachment is stored by its checksum). A
    /// failed download leaves nothing behind.
    pub async fn download(
        &self,
        client: &GitHubClient,
        url: &str,
        place: impl FnOnce(&Downloaded) -> String,
        mtime: SystemTime,
    ) -> Result<Downloaded, ForgeError> {
        let dir = self.out.join(PARTIAL_DIR);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ForgeError::io(&dir, e))?;
        let part = dir.join(uuid::Uuid::now_v7().simple().to_string());
        let settled = match client.download(url, &part).await {
            Ok(done) => {
                let from = part.clone();
                let to = self.out.join(place(&done));
                blocking(&to.clone(), move || {
                    if let Some(dir) = to.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| ForgeError::io(dir, e))?;
                    }
                    set_mtime(&from, mtime)?;
                    std::fs::rename(&from, &to).map_err(|e| ForgeError::io(&to, e))
                })
                .await
                .map(|()| done)
            }
            Err(e) => Err(e),
        };
        if settled.is_err() {
            // Best effort: the directory goes with [`Tree::remove_partial`] anyway.
            let _ = tokio::fs::remove_file(&part).await;
        }
        settled
    }

    /// Removes [`PARTIAL_DIR`] (empty unless a download was interrupted).
    pub async fn remove_partial(&self) -> Result<(), ForgeError> {
        let dir = self.out.join(PARTIAL_DIR);
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ForgeError::io(&dir, e)),
            _ => Ok(()),
        }
    }
}

/// Blocking: writes `doc` under `out`.
fn write_doc(out: &Path, doc: Doc) -> Result<(), ForgeError> {
    let path = out.join(&doc.rel);
    let mut bytes = serde_json::to_vec_pretty(&canonical(&doc.value))
        .map_err(|e| ForgeError::io(&path, std::io::Error::other(e.to_string())))?;
    bytes.push(b'\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ForgeError::io(dir, e))?;
    }
    std::fs::write(&path, bytes).map_err(|e| ForgeError::io(&path, e))?;
    set_mtime(&path, doc.mtime)
}

/// Blocking: sets `path`'s mtime.
fn set_mtime(path: &Path, mtime: SystemTime) -> Result<(), ForgeError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| ForgeError::io(path, e))?;
    f.set_modified(mtime).map_err(|e| ForgeError::io(path, e))
}

/// Blocking: copies `from` (a file, or a directory recursively) to `to`, keeping mtimes.
fn copy_keeping_mtime(from: &Path, to: &Path) -> Result<(), ForgeError> {
    let meta = std::fs::metadata(from).map_err(|e| ForgeError::io(from, e))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| ForgeError::io(to, e))?;
        let entries = std::fs::read_dir(from).map_err(|e| ForgeError::io(from, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ForgeError::io(from, e))?;
            copy_keeping_mtime(&entry.path(), &to.join(entry.file_name()))?;
        }
        return Ok(());
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ForgeError::io(dir, e))?;
    }
    std::fs::copy(from, to).map_err(|e| ForgeError::io(to, e))?;
    let mtime = meta.modified().map_err(|e| ForgeError::io(from, e))?;
    set_mtime(to, mtime)
}

/// Conditional requests: the previous export's ETags (used only when carrying over is
/// possible) and this export's.
#[derive(Debug)]
pub struct Conditional {
    /// ETags of the previous export, keyed by what they are of (`labels`, `settings/hooks`,
    /// ...). Empty in a full export.
    pub old: BTreeMap<String, String>,
    /// ETags seen in this export.
    pub new: BTreeMap<String, String>,
}

/// A conditional read's outcome.
pub enum Fetched<T> {
    /// Changed (or read unconditionally).
    Fresh(T),
    /// 304: the previous document still holds.
    Unchanged,
}

impl Conditional {
    /// GET one object, with `If-None-Match` when an old ETag for `key` is known.
    pub async fn get(
        &mut self,
        client: &GitHubClient,
        key: &str,
        path: &str,
    ) -> Result<Fetched<Value>, ForgeError> {
        let old = self.old.get(key).cloned();
        let page = client.get_json(path, old.as_deref()).await?;
        if page.status == 304 {
            if let Some(tag) = old {
                self.new.insert(key.to_string(), tag);
            }
            return Ok(Fetched::Unchanged);
        }
        if let Some(tag) = page.etag {
            self.new.insert(key.to_string(), tag);
        }
        Ok(Fetched::Fresh(page.body.unwrap_or(Value::Null)))
    }

    /// GET a whole list, with `If-None-Match` on its first page when an old ETag is known.
    pub async fn list(
        &mut self,
        client: &GitHubClient,
        key: &str,
        path: &str,
    ) -> Result<Fetched<Vec<Value>>, ForgeError> {
        let old = self.old.get(key).cloned();
        let listing = client.get_list(path, old.as_deref()).await?;
        if listing.not_modified {
            if let Some(tag) = old {
                self.new.insert(key.to_string(), tag);
            }
            return Ok(Fetched::Unchanged);
        }
        if let Some(tag) = listing.etag {
            self.new.insert(key.to_string(), tag);
        }
        Ok(Fetched::Fresh(listing.items))
    }

    /// Forgets `key`'s old ETag (its previous document is missing, so a 304 would not help).
    pub fn forget(&mut self, key: &str) {
        self.old.remove(key);
    }
}
