//! The queue's active (pending and leased) tasks, with the indexes a lease and an enqueue read
//! kept in step with every change: the ready index (pending tasks by organisation and
//! priority, oldest first), the pending tasks of each repository, the repositories leased
//! tasks write or read, and the idempotency keys. A lease then looks at one task per
//! organisation and priority (`tasks/lease_choice.rs`) and an enqueue finds its collapse by a
//! lookup, instead of both walking every active task.
//!
//! Every change goes through [`ActiveTasks::insert`], [`ActiveTasks::remove`] or
//! [`ActiveTasks::update`], which take the task out of every index and put it back as it now
//! is, so no index can disagree with the tasks.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::model::{OrgId, RepoId, TaskId, TaskRecord};
use crate::tasks::kinds;
use crate::tasks::lease_state::TaskState;

/// A pending task's place in its ready bucket: older first, then enqueue order.
type ReadyKey = (i64, u64, TaskId);

/// How many leased tasks write (exclusive kinds: backups) and read a repository.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Holds {
    writers: u32,
    readers: u32,
}

#[derive(Default)]
pub(crate) struct ActiveTasks {
    tasks: HashMap<TaskId, TaskRecord>,
    /// Pending tasks by (organisation, priority), ordered by (enqueued at, sequence).
    ready: HashMap<(OrgId, u8), BTreeSet<ReadyKey>>,
    /// Pending tasks by repository.
    pending_by_repo: HashMap<RepoId, HashSet<TaskId>>,
    /// Repositories with a leased task, and how many of each role.
    leased: HashMap<RepoId, Holds>,
    /// Idempotency key -> the active tasks carrying it (one, unless loaded so from the store).
    by_key: HashMap<String, Vec<TaskId>>,
}

impl ActiveTasks {
    pub(crate) fn get(&self, id: &TaskId) -> Option<&TaskRecord> {
        self.tasks.get(id)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &TaskRecord> {
        self.tasks.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Adds `task`, or replaces the active task with its id; returns the one replaced.
    pub(crate) fn insert(&mut self, task: TaskRecord) -> Option<TaskRecord> {
        let old = self.remove(&task.id);
        self.index(&task);
        self.tasks.insert(task.id.clone(), task);
        old
    }

    pub(crate) fn remove(&mut self, id: &TaskId) -> Option<TaskRecord> {
        let old = self.tasks.remove(id)?;
        self.unindex(&old);
        Some(old)
    }

    /// Changes the active task `id` in place with `f`, its indexes following; `None` when no
    /// such task is active.
    pub(crate) fn update<R>(
        &mut self,
        id: &TaskId,
        f: impl FnOnce(&mut TaskRecord) -> R,
    ) -> Option<R> {
        let mut t = self.remove(id)?;
        let r = f(&mut t);
        self.insert(t);
        Some(r)
    }

    /// An active task with idempotency key `key`.
    pub(crate) fn with_key(&self, key: &str) -> Option<&TaskRecord> {
        self.by_key
            .get(key)
            .and_then(|ids| ids.first())
            .and_then(|id| self.tasks.get(id))
    }

    /// Whether a leased exclusive task (a backup) writes `repo`.
    pub(crate) fn is_written(&self, repo: &RepoId) -> bool {
        self.leased.get(repo).is_some_and(|h| h.writers > 0)
    }

    /// Whether a leased non-exclusive task (restore, verification, drill) reads `repo`.
    pub(crate) fn is_read(&self, repo: &RepoId) -> bool {
        self.leased.get(repo).is_some_and(|h| h.readers > 0)
    }

    /// The pending tasks, one bucket per (organisation, priority), each oldest first.
    pub(crate) fn ready_buckets(&self) -> impl Iterator<Item = impl Iterator<Item = &TaskRecord>> {
        self.ready
            .values()
            .map(|b| b.iter().filter_map(|(_, _, id)| self.tasks.get(id)))
    }

    /// The pending tasks of the repositories in `repos`, walking whichever is smaller: `repos`
    /// or the repositories with pending tasks.
    pub(crate) fn pending_of<'s: 'r, 'r>(
        &'s self,
        repos: &'r HashSet<RepoId>,
    ) -> Box<dyn Iterator<Item = &'s TaskRecord> + 'r> {
        let ids: Box<dyn Iterator<Item = &'s HashSet<TaskId>> + 'r> =
            if repos.len() <= self.pending_by_repo.len() {
                Box::new(repos.iter().filter_map(|r| self.pending_by_repo.get(r)))
            } else {
                Box::new(
                    self.pending_by_repo
                        .iter()
                        .filter(|(r, _)| repos.contains(*r))
                        .map(|(_, ids)| ids),
                )
            };
        Box::new(ids.flatten().filter_map(|id| self.tasks.get(id)))
    }

    fn index(&mut self, t: &TaskRecord) {
        self.by_key
            .entry(t.idempotency_key.clone())
            .or_default()
            .push(t.id.clone());
        match t.lease.state {
            TaskState::Pending { .. } => {
                self.ready
                    .entry((t.org_id.clone(), t.priority))
                    .or_default()
                    .insert((t.enqueued_at_ms, t.seq, t.id.clone()));
                self.pending_by_repo
                    .entry(t.repo_id.clone())
                    .or_default()
                    .insert(t.id.clone());
            }
            TaskState::Leased { .. } => {
                let h = self.leased.entry(t.repo_id.clone()).or_default();
                if kinds::exclusive(t.kind) {
                    h.writers += 1;
                } else {
                    h.readers += 1;
                }
            }
            TaskState::Completed { .. } | TaskState::Failed { .. } => {}
        }
    }

    fn unindex(&mut self, t: &TaskRecord) {
        if let Some(ids) = self.by_key.get_mut(&t.idempotency_key) {
            ids.retain(|id| *id != t.id);
            if ids.is_empty() {
                self.by_key.remove(&t.idempotency_key);
            }
        }
        match t.lease.state {
            TaskState::Pending { .. } => {
                let bucket = (t.org_id.clone(), t.priority);
                if let Some(b) = self.ready.get_mut(&bucket) {
                    b.remove(&(t.enqueued_at_ms, t.seq, t.id.clone()));
                    if b.is_empty() {
                        self.ready.remove(&bucket);
                    }
                }
                if let Some(ids) = self.pending_by_repo.get_mut(&t.repo_id) {
                    ids.remove(&t.id);
                    if ids.is_empty() {
                        self.pending_by_repo.remove(&t.repo_id);
                    }
                }
            }
            TaskState::Leased { .. } => {
                if let Some(h) = self.leased.get_mut(&t.repo_id) {
                    if kinds::exclusive(t.kind) {
                        h.writers = h.writers.saturating_sub(1);
                    } else {
                        h.readers = h.readers.saturating_sub(1);
                    }
                    if *h == Holds::default() {
                        self.leased.remove(&t.repo_id);
                    }
                }
            }
            TaskState::Completed { .. } | TaskState::Failed { .. } => {}
        }
    }
}
