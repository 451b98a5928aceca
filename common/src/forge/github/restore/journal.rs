//! The restore journal: old → new numbers and ids, kept by the caller across attempts in one
//! JSON file, rewritten atomically (a temporary file renamed over it) after every creation.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::forge::github::error::ForgeError;

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
    pub fn open(path: &Path, backup_id: &str, target: &str) -> Result<Journal, ForgeError> {
        let fresh = JournalFile {
            backup_id: backup_id.to_string(),
            target: target.to_string(),
            entries: BTreeMap::new(),
        };
        let file = match std::fs::read(path) {
            Ok(bytes) => {
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh,
            Err(e) => return Err(ForgeError::io(path, e)),
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
    pub fn record(&mut self, key: String, value: u64) -> Result<(), ForgeError> {
        if self.file.entries.insert(key, value) == Some(value) {
            return Ok(());
        }
        self.save()
    }

    /// Writes the whole journal atomically: a temporary file beside it, synced, renamed over it.
    fn save(&self) -> Result<(), ForgeError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ForgeError::io(dir, e))?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let bytes = serde_json::to_vec_pretty(&self.file).map_err(|e| {
            ForgeError::io(
                &tmp,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| ForgeError::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| ForgeError::io(&tmp, e))?;
        f.sync_all().map_err(|e| ForgeError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| ForgeError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_ignores_other_restores() -> Result<(), ForgeError> {
        let dir = std::env::temp_dir().join(format!("rv-journal-{}", std::process::id()));
        let path = dir.join("j.json");
        let _ = std::fs::remove_file(&path);
        let mut j = Journal::open(&path, "B", "o/r")?;
        j.record("issue:1".into(), 4)?;
        assert_eq!(Journal::open(&path, "B", "o/r")?.get("issue:1"), Some(4));
        assert_eq!(Journal::open(&path, "C", "o/r")?.get("issue:1"), None);
        assert_eq!(Journal::open(&path, "B", "o/x")?.get("issue:1"), None);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
