//! The mirror cache: one directory per repository (`<cache>/<repo-id>/`, holding `code.git/`),
//! capped in size with least-recently-used eviction. A repository's entry is in use while a task
//! holds its guard, and is never evicted then. Entries are keyed by [`RepoId`], whose check makes
//! it one path component; a directory whose name is not a repository id is not an entry, and is
//! neither listed nor evicted.
//!
//! Which entries hold a mirror is kept in memory (the coordinator is told with every acquire, to
//! place backups on the worker holding their mirror): the directory is listed once when the
//! cache opens, and the set is kept by the backups that fill entries ([`MirrorCache::refresh`])
//! and by eviction. A backup that failed after emptying its entry leaves the set saying "held"
//! until the next backup of that repository here: the hint then only draws that backup to this
//! worker, which clones as it would have anyway.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use repovault_common::domain::RepoId;
use repovault_common::manifest::CODE_DIR;

pub struct MirrorCache {
    root: PathBuf,
    max_bytes: Option<u64>,
    locks: Mutex<HashMap<RepoId, Arc<tokio::sync::Mutex<()>>>>,
    in_use: Mutex<HashMap<RepoId, usize>>,
    /// Entries holding a mirror (`code.git/`), as of the last look.
    present: Mutex<BTreeSet<RepoId>>,
}

/// Holds a repository's cache entry for one task.
pub struct CacheGuard {
    cache: Arc<MirrorCache>,
    repo_id: RepoId,
    _lock: tokio::sync::OwnedMutexGuard<()>,
    pub dir: PathBuf,
}

impl Drop for CacheGuard {
    fn drop(&mut self) {
        let mut m = self.cache.in_use.lock();
        if let Some(n) = m.get_mut(&self.repo_id) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.repo_id);
            }
        }
    }
}

impl MirrorCache {
    /// Opens the cache at `root`, creating it, and lists the entries holding a mirror.
    /// Blocking.
    pub fn new(root: PathBuf, max_bytes: Option<u64>) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&root)?;
        let present = std::fs::read_dir(&root)?
            .filter_map(Result::ok)
            .filter(|e| e.path().join(CODE_DIR).is_dir())
            .filter_map(|e| entry_id(&e))
            .collect();
        Ok(Arc::new(Self {
            root,
            max_bytes,
            locks: Mutex::new(HashMap::new()),
            in_use: Mutex::new(HashMap::new()),
            present: Mutex::new(present),
        }))
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the repository's entry exclusively (one task per mirror) and marks it used now.
    /// A failure to create the entry lets it go again.
    pub async fn acquire(self: &Arc<Self>, repo_id: &RepoId) -> std::io::Result<CacheGuard> {
        let lock = self
            .locks
            .lock()
            .entry(repo_id.clone())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        *self.in_use.lock().entry(repo_id.clone()).or_insert(0) += 1;
        // The guard first: an entry that cannot be created is let go again by its drop.
        let entry = CacheGuard {
            cache: self.clone(),
            repo_id: repo_id.clone(),
            _lock: guard,
            dir: self.root.join(repo_id.as_str()),
        };
        // Creates the entry and marks it used: on the blocking pool.
        let (dir, marker) = (entry.dir.clone(), self.used_marker(repo_id));
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            touch(&marker)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(entry)
    }

    fn used_marker(&self, repo_id: &RepoId) -> PathBuf {
        self.root.join(format!(".{repo_id}.used"))
    }

    /// Repositories whose entry holds a mirror (placement hint for the coordinator), sorted;
    /// from memory, no directory listing.
    pub fn cached_repo_ids(&self) -> Vec<RepoId> {
        self.present.lock().iter().cloned().collect()
    }

    /// Looks again whether `repo_id`'s entry holds a mirror, after a task filled or emptied it.
    /// Blocking (one `stat`).
    pub fn refresh(&self, repo_id: &RepoId) {
        let held = self.root.join(repo_id.as_str()).join(CODE_DIR).is_dir();
        let mut present = self.present.lock();
        if held {
            present.insert(repo_id.clone());
        } else {
            present.remove(repo_id);
        }
    }

    /// Evicts least recently used entries not in use until the cache fits its cap. Returns the
    /// evicted repository ids. Blocking (walks directories).
    pub fn evict(&self) -> std::io::Result<Vec<RepoId>> {
        let Some(max) = self.max_bytes else {
            return Ok(vec![]);
        };
        let mut entries = Vec::new();
        let mut total = 0u64;
        for e in std::fs::read_dir(&self.root)? {
            let e = e?;
            if !e.file_type()?.is_dir() {
                continue;
            }
            let Some(id) = entry_id(&e) else {
                continue;
            };
            let size = dir_size(&e.path());
            let used = std::fs::metadata(self.used_marker(&id))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            total += size;
            entries.push((used, id, size));
        }
        entries.sort();
        let mut evicted = Vec::new();
        for (_, id, size) in entries {
            if total <= max {
                break;
            }
            if self.in_use.lock().contains_key(&id) {
                continue;
            }
            std::fs::remove_dir_all(self.root.join(id.as_str()))?;
            self.present.lock().remove(&id);
            let _ = std::fs::remove_file(self.used_marker(&id));
            total = total.saturating_sub(size);
            tracing::info!(repo = %id, bytes = size, "evicted mirror from cache");
            evicted.push(id);
        }
        Ok(evicted)
    }
}

/// The repository id a cache directory entry is named by, if it is one.
fn entry_id(e: &std::fs::DirEntry) -> Option<RepoId> {
    e.file_name().into_string().ok()?.parse().ok()
}

fn touch(p: &Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)?;
    f.set_modified(SystemTime::now())
}

pub fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> RepoId {
        s.parse().expect("repository id")
    }

    #[tokio::test]
    async fn evicts_least_recently_used_and_spares_entries_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = MirrorCache::new(dir.path().to_path_buf(), Some(2500)).expect("cache");
        for r in ["a", "b", "c"] {
            let g = cache.acquire(&id(r)).await.expect("acquire");
            std::fs::create_dir_all(g.dir.join("code.git")).expect("mkdir");
            std::fs::write(g.dir.join("code.git/pack"), vec![0u8; 1000]).expect("write");
            cache.refresh(&id(r));
            // Distinct, ordered use times.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let held = cache.acquire(&id("a")).await.expect("acquire");
        // "a" is the least recently used before this acquire, but it is in use now: "b" goes.
        let evicted = cache.evict().expect("evict");
        assert_eq!(evicted, vec![id("b")]);
        drop(held);
        assert_eq!(cache.cached_repo_ids(), vec![id("a"), id("c")]);
        // What the cache said matches a fresh look at the directory.
        let reopened = MirrorCache::new(dir.path().to_path_buf(), None).expect("reopen");
        assert_eq!(reopened.cached_repo_ids(), vec![id("a"), id("c")]);
    }

    #[tokio::test]
    async fn an_entry_that_cannot_be_created_is_not_left_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = MirrorCache::new(dir.path().to_path_buf(), Some(0)).expect("cache");
        // A file where the entry's directory would be: the entry cannot be created.
        std::fs::write(dir.path().join("r"), b"not a directory").expect("write");
        assert!(cache.acquire(&id("r")).await.is_err());
        assert!(
            !cache.in_use.lock().contains_key(&id("r")),
            "a failed acquire left the entry counted in use (never evictable)"
        );
        // The entry's lock was let go too: the next acquire does not wait for it.
        std::fs::remove_file(dir.path().join("r")).expect("remove");
        let entry =
            tokio::time::timeout(std::time::Duration::from_secs(5), cache.acquire(&id("r")))
                .await
                .expect("the entry's lock was let go")
                .expect("acquire");
        assert!(entry.dir.is_dir());
    }

    #[tokio::test]
    async fn a_directory_not_named_by_a_repository_id_is_neither_listed_nor_evicted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = MirrorCache::new(dir.path().to_path_buf(), Some(0)).expect("cache");
        // What a cache on a file system of its own holds at its root.
        let foreign = dir.path().join("lost+found");
        std::fs::create_dir_all(foreign.join("code.git")).expect("mkdir");
        std::fs::write(foreign.join("code.git/pack"), vec![0u8; 1000]).expect("write");
        let g = cache.acquire(&id("r1")).await.expect("acquire");
        std::fs::create_dir_all(g.dir.join("code.git")).expect("mkdir");
        std::fs::write(g.dir.join("code.git/pack"), vec![0u8; 1000]).expect("write");
        cache.refresh(&id("r1"));
        drop(g);
        assert_eq!(cache.cached_repo_ids(), vec![id("r1")]);
        assert_eq!(cache.evict().expect("evict"), vec![id("r1")]);
        assert!(
            foreign.join("code.git/pack").is_file(),
            "evicted a directory that is not ours"
        );
    }
}
