//! The read-back ledger: when each pack was last read back from storage and found sound.
//!
//! Stored beside the repository at `<repo path>/verify/readback.json` as
//! `{"format":1,"packs":{"<pack id>": <last read, ms since the epoch>}}`. restic and rustic
//! ignore the `verify/` directory.
//!
//! **Advisory, last writer wins.** There is no lock and no compare-and-swap: two verifications
//! of one repository that overlap each load, record and save, and the later save drops the
//! other's records. That is safe because the ledger only ever *skips* work: a lost record makes
//! a pack look unread (or older than it is), so it is read again sooner than needed; no record
//! can make a pack look read when it was not, since only packs a read-back found sound are
//! recorded. Losing or deleting the whole file costs one full re-read, nothing else.
//!
//! **Damage outlives the ledger.** A save can carry a record made before a pack was found
//! damaged (a verification that loaded the ledger earlier saves after the finding). So findings
//! live in their own files ([`super::DamageFinding`]) and every load applies them: a record
//! older than a finding about its pack is dropped, so the pack is read again, found damaged
//! again, and never counted as "read back before".

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{DamageFinding, DamagedKind, RepoError};

/// The only format this code reads and writes.
const FORMAT: u32 = 1;

/// When each pack was last read back and found sound. Time is always passed in (ms since the
/// epoch); nothing here reads a clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBackLedger {
    format: u32,
    /// Full hex pack id -> last read (ms since the epoch). Sorted, so saves are stable.
    packs: BTreeMap<String, i64>,
}

// Not derived: a derived default would carry format 0, which `load` rejects.
impl Default for ReadBackLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadBackLedger {
    /// An empty ledger (every pack due).
    pub fn new() -> Self {
        Self {
            format: FORMAT,
            packs: BTreeMap::new(),
        }
    }

    /// Where the ledger of the repository at `repo_path` (as in `RepoSpec::path`) lives.
    pub fn path(repo_path: &str) -> String {
        let trimmed = repo_path.trim_matches('/');
        if trimmed.is_empty() {
            "verify/readback.json".to_string()
        } else {
            format!("{trimmed}/verify/readback.json")
        }
    }

    /// Loads the ledger of the repository at `repo_path`. A missing file is an empty ledger; a
    /// file that does not parse, or has another format, is [`RepoError::Repository`] naming the
    /// path (a torn write on a service without atomic writes looks like that: deleting the
    /// file only costs a full re-read).
    pub async fn load(op: &opendal::Operator, repo_path: &str) -> Result<Self, RepoError> {
        let path = Self::path(repo_path);
        let bytes = match op.read(&path).await {
            Ok(buf) => buf.to_vec(),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Self::new()),
            Err(e) => {
                return Err(RepoError::Storage {
                    location: path,
                    message: e.to_string(),
                });
            }
        };
        let ledger: Self = serde_json::from_slice(&bytes).map_err(|e| RepoError::Repository {
            doing: "reading the read-back ledger",
            message: format!("{path} is not a valid ledger: {e}"),
        })?;
        if ledger.format != FORMAT {
            return Err(RepoError::Repository {
                doing: "reading the read-back ledger",
                message: format!(
                    "{path} has format {}, this version reads format {FORMAT}",
                    ledger.format
                ),
            });
        }
        let mut ledger = ledger;
        ledger.apply_findings(&DamageFinding::load_all(op, repo_path).await?);
        Ok(ledger)
    }

    /// Drops every record not newer than a damage finding about its pack: what was read sound
    /// before the damage was found says nothing about the pack now.
    pub fn apply_findings(&mut self, findings: &[DamageFinding]) {
        for f in findings.iter().filter(|f| f.kind == DamagedKind::Pack) {
            if self
                .packs
                .get(&f.id)
                .is_some_and(|&read| read <= f.found_at_ms)
            {
                self.packs.remove(&f.id);
            }
        }
    }

    /// Writes the whole ledger, replacing what is stored (last writer wins: see the module
    /// docs for why that is safe).
    pub async fn save(&self, op: &opendal::Operator, repo_path: &str) -> Result<(), RepoError> {
        let path = Self::path(repo_path);
        let bytes = serde_json::to_vec(self).map_err(|e| RepoError::Repository {
            doing: "writing the read-back ledger",
            message: e.to_string(),
        })?;
        op.write(&path, bytes)
            .await
            .map(|_| ())
            .map_err(|e| RepoError::Storage {
                location: path,
                message: e.to_string(),
            })
    }

    /// When `pack` was last read back and found sound, if ever.
    pub fn last_read(&self, pack: &str) -> Option<i64> {
        self.packs.get(pack).copied()
    }

    /// Records `packs` as read back and sound at `now_ms`. Record only packs a read-back found
    /// sound (`ReadBackReport::ok`): a damaged or unread pack must stay due.
    pub fn record(&mut self, packs: impl IntoIterator<Item = String>, now_ms: i64) {
        for pack in packs {
            self.packs.insert(pack, now_ms);
        }
    }

    /// Drops the packs not in `existing` (pruned away), so the ledger does not grow forever.
    pub fn retain_existing(&mut self, existing: &HashSet<String>) {
        self.packs.retain(|pack, _| existing.contains(pack));
    }

    /// The packs of `packs` that are due: never read, or last read more than `max_age_ms`
    /// before `now_ms` (exactly `max_age_ms` ago is not yet due). A record in the future (a
    /// clock that went back) counts as fresh. Keeps the order of `packs`, without duplicates.
    pub fn due(&self, packs: &[String], now_ms: i64, max_age_ms: i64) -> Vec<String> {
        let mut seen = HashSet::new();
        packs
            .iter()
            .filter(|p| seen.insert(p.as_str()))
            .filter(|p| match self.packs.get(p.as_str()) {
                None => true,
                Some(&last) => now_ms.saturating_sub(last) > max_age_ms,
            })
            .cloned()
            .collect()
    }

    /// How many packs have a record.
    pub fn len(&self) -> usize {
        self.packs.len()
    }

    /// Whether no pack has a record.
    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }
}
