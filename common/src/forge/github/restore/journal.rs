//! The restore journal: old → new numbers and ids, kept by the caller across attempts in one
//! JSON file, rewritten atomically (a temporary file renamed over it) after every creation. Its
//! reads and writes run on the blocking pool.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::forge::ForgeError;
use crate::forge::github::blocking::blocking;

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct JournalFile {
    backup_id: String,
    /// `OWNER/NAME` restored into.
    target: String,
    /// `KIND:KEY` (see [`super::text::Source::journal_key`]) → the new number or id.
    entries: BTreeMap<String, u64>,
}

/// The journal of one restore (one backup into one target repository).
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: JournalFile,
}

impl Journal {
    /// Reads `path`. A missing file, or one written for another backup or target, starts an
    /// empty journal (the markers in the target still prevent duplicates); an unreadable one is
    /// an error (it is the caller's, and silently replacing it would hide a bug).
    pub async fn open(path: &Path, backup_id: &str, target: &str) -> Result<Journal, ForgeError> {
        let fresh = JournalFile {
            backup_id: backup_id.to_string(),
            target: target.to_string(),
            entries: BTreeMap::new(),
        };
        let owned = path.to_path_buf();
        let read = blocking(path, move || match std::fs::read(&owned) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ForgeError::io(&owned, e)),
        })
        .await?;
        let file = match read {
            Some(bytes) => {
                let file: JournalFile = serde_json::from_slice(&bytes).map_err(|e| {
                    ForgeError::io(
                        path,
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    )
                })?;
                if file.backup_id == backup_id && file.target == target {
                    file
                } else {
                    fresh
                }
            }
            None => fresh,
        };
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        self.file.entries.get(key).copied()
    }

    /// Records `key` → `value` and writes the journal (unless it held that already).
    pub async fn record(&mut self, key: String, value: u64) -> Result<(), ForgeError> {
        if self.file.entries.insert(key, value) == Some(value) {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&self.file).map_err(|e| {
            ForgeError::io(
                &self.path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        let path = self.path.clone();
        blocking(&self.path, move || save(&path, &bytes)).await
    }
}

/// Blocking: writes `bytes` as the journal at `path` atomically: a temporary file beside it,
/// synced, renamed over it.
fn save(path: &Path, bytes: &[u8]) -> Result<(), ForgeError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ForgeError::io(dir, e))?;
    }
    let mut tmp = path.to_path_buf().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| ForgeError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| ForgeError::io(&tmp, e))?;
    f.sync_all().map_err(|e| ForgeError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ForgeError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn survives_reopen_and_ignores_other_restores() -> Result<(), ForgeError> {
        let dir = std::env::temp_dir().join(format!("rv-journal-{}", std::process::id()));
        let path = dir.join("j.json");
        let _ = tokio::fs::remove_file(&path).await;
        let mut j = Journal::open(&path, "B", "o/r").await?;
        j.record("issue:1".into(), 4).await?;
        assert_eq!(
            Journal::open(&path, "B", "o/r").await?.get("issue:1"),
            Some(4)
        );
        assert_eq!(Journal::open(&path, "C", "o/r").await?.get("issue:1"), None);
        assert_eq!(Journal::open(&path, "B", "o/x").await?.get("issue:1"), None);
        assert!(
            !tokio::fs::try_exists(dir.join("j.json.tmp"))
                .await
                .unwrap_or(true),
            "the temporary file is renamed"
        );
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(())
    }
}
