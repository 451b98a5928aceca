//! Typed domain stores over the byte-level [`KvBackend`]. Nothing above this module sees bytes.
//!
//! Key layout (all UTF-8):
//! ```text
//! org/<org-id>                  OrgRecord
//! org-name/<name>               org id            (create-only: names are unique)
//! repo/<repo-id>                RepoRecord
//! repo-name/<org-id>/<name>     repo id           (create-only)
//! repo-stats/<repo-id>          RepoStats
//! task/<task-id>                TaskRecord        (active, and finished within the hour)
//! backup/<repo-id>/<backup-id>  BackupRecord      (unfinished, the newest finished and the last
//!                                                 successful, per repository: RECENT_BACKUPS)
//! restore/<restore-id>          RestoreRecord
//! catalog-pending/<repo-id>/<backup-id>   (empty) a terminal backup whose catalog object is
//!                                         not written yet (the outbox of the catalog)
//! schedule-state/<repo-id>      ScheduleState     (the materialiser's last slot, skipped slots)
//! escrow/<repo-id>/<escrow-id>  EscrowRecord
//! maintenance/<repo-id>         MaintenanceRecord (also the read-back rotation's last visit)
//! escrow-lock/<repo-id>         EscrowLockRecord  (how far the storage lock of an escrow came)
//! drill/<org-id>/<drill-id>     DrillRecord       (the newest DrillRecord::KEPT per organisation)
//! drill-state/<org-id>          DrillState        (the drill materialiser's last slot)
//! worker-token/<token-id>       PoolTokenRecord   (a worker pool's join token: its hash only)
//! ```
//! Backup history beyond the latest records lives in the catalog objects in storage.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

mod backup_records;
mod escrow_agreement_records;
mod escrow_lock_records;
mod pool_token_records;
mod seek;
mod storage_location_records;
pub use seek::Seek;

use crate::kv::json::{decode_json, get_json, put_json_op};
use crate::kv::{Compare, GroupCommitKv, KeyRange, KvBackend, KvError, Op, Ticket, Txn};
use crate::model::{
    BackupId, BackupRecord, DrillId, EscrowRecord, MaintenanceRecord, OrgId, OrgRecord, RepoId,
    RepoRecord, RepoStats, RestoreId, RestoreRecord, TaskId, TaskRecord,
};

/// Finished backup records kept per repository in the store, besides its last successful
/// one (which is always kept: the next backup's lease reads its verification); older ones are
/// read from the catalog objects in storage. One, the newest, which answers "the latest
/// backup" without a storage read. etcd gives a backup record (about 2.4 KB) a 4 KB page of its
/// database to itself, so every record kept costs a page per repository: with two, 100,000
/// hourly-backed-up repositories measured 1.01 GiB against the coordinator group's goal of
/// 1 GiB (README, Performance).
pub const RECENT_BACKUPS: usize = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Kv(#[from] KvError),
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The typed store. Its writes go through one group committer per store
/// ([`GroupCommitKv`]): they take effect in the order they were made, concurrent ones share a
/// backend transaction, and a read waits for the writes to its keys made before it.
#[derive(Clone)]
pub struct Store {
    kv: Arc<GroupCommitKv>,
}

/// A batch staged with [`Store::stage`]: resolves when it is durable, or failed.
#[must_use = "a staged batch says whether it became durable"]
pub struct Staged(Option<Ticket>);

impl std::future::Future for Staged {
    type Output = StoreResult<()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.0.as_mut() {
            None => std::task::Poll::Ready(Ok(())),
            Some(t) => std::pin::Pin::new(t)
                .poll(cx)
                .map(|r| r.map(|_| ()).map_err(Into::into)),
        }
    }
}

fn org_key(id: &OrgId) -> String {
    format!("org/{id}")
}
fn org_name_key(name: &str) -> String {
    format!("org-name/{name}")
}
fn repo_key(id: &RepoId) -> String {
    format!("repo/{id}")
}
fn repo_name_key(org_id: &OrgId, name: &str) -> String {
    format!("repo-name/{org_id}/{name}")
}
fn stats_key(repo_id: &RepoId) -> String {
    format!("repo-stats/{repo_id}")
}
fn task_key(id: &TaskId) -> String {
    format!("task/{id}")
}
fn backup_key(repo_id: &RepoId, id: &BackupId) -> String {
    format!("backup/{repo_id}/{id}")
}
fn pending_key(repo_id: &RepoId, id: &BackupId) -> String {
    format!("catalog-pending/{repo_id}/{id}")
}
fn restore_key(id: &RestoreId) -> String {
    format!("restore/{id}")
}
fn schedule_state_key(repo_id: &RepoId) -> String {
    format!("schedule-state/{repo_id}")
}
fn escrow_key(repo_id: &RepoId, id: &str) -> String {
    format!("escrow/{repo_id}/{id}")
}
fn drill_key(org_id: &OrgId, id: &DrillId) -> String {
    format!("drill/{org_id}/{id}")
}

fn drill_state_key(org_id: &OrgId) -> String {
    format!("drill-state/{org_id}")
}

fn maintenance_key(repo_id: &RepoId) -> String {
    format!("maintenance/{repo_id}")
}

/// An id read back from a key this module wrote from a typed id. One that does not parse (a key
/// written by hand) is skipped with a warning rather than failing every read of its range.
fn stored_id<T: TryFrom<String, Error = repovault_common::domain::InvalidId>>(
    text: &str,
) -> Option<T> {
    match T::try_from(text.to_string()) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "a store key holds a malformed id; skipped");
            None
        }
    }
}

/// A batch of writes applied in one transaction.
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
    err: Option<KvError>,
}

impl Batch {
    fn put<T: Serialize>(&mut self, key: String, value: &T) {
        match put_json_op(key.as_bytes(), value) {
            Ok(op) => self.ops.push(op),
            Err(e) => self.err = Some(e),
        }
    }
    pub fn task(&mut self, t: &TaskRecord) -> &mut Self {
        self.put(task_key(&t.id), t);
        self
    }
    pub fn backup(&mut self, b: &BackupRecord) -> &mut Self {
        self.put(backup_key(&b.repo_id, &b.id), b);
        self
    }
    pub fn stats(&mut self, repo_id: &RepoId, s: &RepoStats) -> &mut Self {
        self.put(stats_key(repo_id), s);
        self
    }
    pub fn restore(&mut self, r: &RestoreRecord) -> &mut Self {
        self.put(restore_key(&r.id), r);
        self
    }
    pub fn repo(&mut self, r: &RepoRecord) -> &mut Self {
        self.put(repo_key(&r.id), r);
        self
    }
    pub fn org(&mut self, o: &OrgRecord) -> &mut Self {
        self.put(org_key(&o.id), o);
        self
    }
    /// Points `ORG/NAME` at a repository (discovery maintains the index itself: see
    /// `discovery::name_index`).
    pub fn repo_name(&mut self, org_id: &OrgId, name: &str, repo_id: &RepoId) -> &mut Self {
        self.ops.push(Op::put(
            repo_name_key(org_id, name),
            repo_id.as_str().as_bytes().to_vec(),
        ));
        self
    }
    pub fn delete_repo_name(&mut self, org_id: &OrgId, name: &str) -> &mut Self {
        self.ops.push(Op::delete(repo_name_key(org_id, name)));
        self
    }
    pub fn catalog_pending(&mut self, repo_id: &RepoId, id: &BackupId) -> &mut Self {
        self.ops.push(Op::put(pending_key(repo_id, id), Vec::new()));
        self
    }
    pub fn clear_catalog_pending(&mut self, repo_id: &RepoId, id: &BackupId) -> &mut Self {
        self.ops.push(Op::delete(pending_key(repo_id, id)));
        self
    }
    pub fn delete_task(&mut self, id: &TaskId) -> &mut Self {
        self.ops.push(Op::delete(task_key(id)));
        self
    }
    pub fn delete_backup(&mut self, repo_id: &RepoId, id: &BackupId) -> &mut Self {
        self.ops.push(Op::delete(backup_key(repo_id, id)));
        self
    }
    pub fn schedule_state(
        &mut self,
        repo_id: &RepoId,
        s: &crate::model::ScheduleState,
    ) -> &mut Self {
        self.put(schedule_state_key(repo_id), s);
        self
    }
    /// Appends another batch's writes (applied in the same transaction).
    pub fn extend(&mut self, other: Batch) -> &mut Self {
        if let Some(e) = other.err {
            self.err = Some(e);
        }
        self.ops.extend(other.ops);
        self
    }
    pub fn escrow(&mut self, e: &EscrowRecord) -> &mut Self {
        self.put(escrow_key(&e.repo_id, &e.id), e);
        self
    }
    pub fn delete_escrow(&mut self, repo_id: &RepoId, id: &str) -> &mut Self {
        self.ops.push(Op::delete(escrow_key(repo_id, id)));
        self
    }
    pub fn drill(&mut self, d: &crate::model::DrillRecord) -> &mut Self {
        self.put(drill_key(&d.org_id, &d.id), d);
        self
    }
    pub fn delete_drill(&mut self, org_id: &OrgId, id: &DrillId) -> &mut Self {
        self.ops.push(Op::delete(drill_key(org_id, id)));
        self
    }
    pub fn delete_drill_state(&mut self, org_id: &OrgId) -> &mut Self {
        self.ops.push(Op::delete(drill_state_key(org_id)));
        self
    }
    pub fn drill_state(&mut self, org_id: &OrgId, st: &crate::model::DrillState) -> &mut Self {
        self.put(drill_state_key(org_id), st);
        self
    }
    pub fn maintenance(&mut self, repo_id: &RepoId, m: &MaintenanceRecord) -> &mut Self {
        self.put(maintenance_key(repo_id), m);
        self
    }
    /// Purge: the repository record, its name index, stats, maintenance and escrow-lock
    /// records (the caller deletes its backup and escrow records).
    pub fn delete_repo(&mut self, r: &RepoRecord) -> &mut Self {
        self.ops.push(Op::delete(repo_key(&r.id)));
        self.ops.push(Op::delete(repo_name_key(&r.org_id, &r.name)));
        self.ops.push(Op::delete(stats_key(&r.id)));
        self.ops.push(Op::delete(maintenance_key(&r.id)));
        self.ops
            .push(Op::delete(escrow_lock_records::escrow_lock_key(&r.id)));
        self
    }
    /// Purge: the organisation record and its name index.
    pub fn delete_org(&mut self, o: &OrgRecord) -> &mut Self {
        self.ops.push(Op::delete(org_key(&o.id)));
        self.ops.push(Op::delete(org_name_key(&o.name)));
        self
    }
}

impl Store {
    /// The backend, for logs that keep their own keys (the audit log).
    pub fn kv(&self) -> Arc<dyn KvBackend> {
        self.kv.clone()
    }

    /// The store over `kv`, which only this store writes (a coordinator's own redb, or a group
    /// leader's fenced etcd for one term). Kept in memory once read or listed
    /// (`kv/read_cache.rs`): organisations and repositories, which every lease reads and admins
    /// change; and maintenance records, which the read-back rotation's pass reads for every
    /// repository and each visit reads again before it writes its own.
    pub fn new(kv: Arc<dyn KvBackend>) -> Self {
        let cached = vec![
            b"org/".to_vec(),
            b"repo/".to_vec(),
            b"maintenance/".to_vec(),
        ];
        Self {
            kv: Arc::new(GroupCommitKv::with_read_cache(kv, cached)),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.kv.name()
    }

    /// Succeeds only while this coordinator may write: on a group leader's fenced store an
    /// empty transaction carries the fence and fails with `Deposed` once its term ended (on one
    /// coordinator it always succeeds and changes nothing). Called before an irreversible step
    /// outside the store, decided from this coordinator's memory, such as forgetting a snapshot.
    pub async fn confirm_term(&self) -> StoreResult<()> {
        self.kv.txn(Txn::new()).await?;
        Ok(())
    }

    /// Applies every write of `batch` atomically.
    pub async fn apply(&self, batch: Batch) -> StoreResult<()> {
        self.stage(batch)?.await
    }

    /// Queues every write of `batch` as one atomic transaction and returns at once; the
    /// returned future resolves when it is durable (or failed). It takes effect after every
    /// write made before this call and before every write made after it, and from this call on
    /// a read of its keys waits for its outcome. So a caller may decide under its own lock,
    /// stage, release the lock and only then wait, and writes decided in that order commit in
    /// that order, many to one backend transaction. Fails at once on a batch that breaks a
    /// backend limit.
    pub fn stage(&self, batch: Batch) -> StoreResult<Staged> {
        if let Some(e) = batch.err {
            return Err(e.into());
        }
        if batch.ops.is_empty() {
            return Ok(Staged(None));
        }
        Ok(Staged(Some(self.kv.stage(Txn::new().and_then(batch.ops))?)))
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> StoreResult<Option<T>> {
        Ok(get_json::<T>(self.kv.as_ref(), key.as_bytes())
            .await?
            .map(|v| v.value))
    }

    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> StoreResult<Vec<T>> {
        let kvs = self
            .kv
            .range(KeyRange::prefix(prefix.as_bytes()), None)
            .await?;
        kvs.iter()
            .map(|kv| decode_json::<T>(kv).map(|v| v.value).map_err(Into::into))
            .collect()
    }

    /// Creates the record and its name index together, or neither when the name is taken.
    async fn create_named<T: Serialize>(
        &self,
        what: &'static str,
        display: &str,
        name_key: String,
        id: &str,
        key: String,
        value: &T,
    ) -> StoreResult<()> {
        let txn = Txn::new()
            .when(vec![Compare::absent(name_key.as_bytes())])
            .and_then(vec![
                Op::put(name_key.as_bytes(), id.as_bytes()),
                put_json_op(key.as_bytes(), value)?,
            ]);
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists {
                what,
                name: display.to_string(),
            })
        }
    }

    // Organisations.

    pub async fn create_org(&self, org: &OrgRecord) -> StoreResult<()> {
        self.create_named(
            "organisation",
            &org.name,
            org_name_key(&org.name),
            org.id.as_str(),
            org_key(&org.id),
            org,
        )
        .await
    }

    pub async fn org(&self, id: &OrgId) -> StoreResult<Option<OrgRecord>> {
        self.get(&org_key(id)).await
    }

    pub async fn org_by_name(&self, name: &str) -> StoreResult<Option<OrgRecord>> {
        match self.kv.get(org_name_key(name).as_bytes()).await? {
            // The index holds the id as written; it is only a key here.
            Some(kv) => {
                self.get(&format!("org/{}", String::from_utf8_lossy(&kv.value)))
                    .await
            }
            None => Ok(None),
        }
    }

    pub async fn orgs(&self) -> StoreResult<Vec<OrgRecord>> {
        self.list("org/").await
    }

    // Repositories.

    pub async fn create_repo(&self, repo: &RepoRecord) -> StoreResult<()> {
        self.create_named(
            "repository",
            &repo.full_name(),
            repo_name_key(&repo.org_id, &repo.name),
            repo.id.as_str(),
            repo_key(&repo.id),
            repo,
        )
        .await
    }

    pub async fn repo(&self, id: &RepoId) -> StoreResult<Option<RepoRecord>> {
        self.get(&repo_key(id)).await
    }

    pub async fn repo_by_name(
        &self,
        org_id: &OrgId,
        name: &str,
    ) -> StoreResult<Option<RepoRecord>> {
        match self.kv.get(repo_name_key(org_id, name).as_bytes()).await? {
            Some(kv) => {
                self.get(&format!("repo/{}", String::from_utf8_lossy(&kv.value)))
                    .await
            }
            None => Ok(None),
        }
    }

    pub async fn repos(&self) -> StoreResult<Vec<RepoRecord>> {
        self.list("repo/").await
    }

    /// The repositories of one organisation.
    pub async fn org_repos(&self, org_id: &OrgId) -> StoreResult<Vec<RepoRecord>> {
        let mut v = self.repos().await?;
        v.retain(|r| &r.org_id == org_id);
        Ok(v)
    }

    pub async fn schedule_state(
        &self,
        repo_id: &RepoId,
    ) -> StoreResult<crate::model::ScheduleState> {
        Ok(self
            .get(&schedule_state_key(repo_id))
            .await?
            .unwrap_or_default())
    }

    /// What the materialiser needs of every repository, decoded without the rest of the
    /// record (a tick over 100,000 repositories reads them all).
    pub async fn repo_schedule_views(&self) -> StoreResult<Vec<crate::model::RepoScheduleView>> {
        self.list("repo/").await
    }

    /// Every repository's materialiser state, by repository id (one range read per tick).
    pub async fn schedule_states(
        &self,
    ) -> StoreResult<std::collections::HashMap<RepoId, crate::model::ScheduleState>> {
        let kvs = self
            .kv
            .range(KeyRange::prefix(b"schedule-state/".to_vec()), None)
            .await?;
        let mut out = std::collections::HashMap::with_capacity(kvs.len());
        for kv in &kvs {
            let key = String::from_utf8_lossy(&kv.key);
            if let Some(id) = key.strip_prefix("schedule-state/").and_then(stored_id) {
                out.insert(id, decode_json(kv)?.value);
            }
        }
        Ok(out)
    }

    pub async fn stats(&self, repo_id: &RepoId) -> StoreResult<RepoStats> {
        Ok(self.get(&stats_key(repo_id)).await?.unwrap_or_default())
    }

    // Tasks.

    pub async fn task(&self, id: &TaskId) -> StoreResult<Option<TaskRecord>> {
        self.get(&task_key(id)).await
    }

    /// Every task record (the coordinator loads the active ones at start-up).
    pub async fn tasks(&self) -> StoreResult<Vec<TaskRecord>> {
        self.list("task/").await
    }

    // Maintenance (escrow agreements: `store/escrow_agreement_records.rs`).

    pub async fn maintenance(&self, repo_id: &RepoId) -> StoreResult<MaintenanceRecord> {
        Ok(self
            .get(&maintenance_key(repo_id))
            .await?
            .unwrap_or_default())
    }

    // Drills.

    /// An organisation's drills, in key order (ids are time-ordered: oldest first).
    pub async fn drills(&self, org_id: &OrgId) -> StoreResult<Vec<crate::model::DrillRecord>> {
        self.list(&format!("drill/{org_id}/")).await
    }

    pub async fn drill(
        &self,
        org_id: &OrgId,
        id: &DrillId,
    ) -> StoreResult<Option<crate::model::DrillRecord>> {
        self.get(&drill_key(org_id, id)).await
    }

    pub async fn drill_state(&self, org_id: &OrgId) -> StoreResult<crate::model::DrillState> {
        Ok(self
            .get(&drill_state_key(org_id))
            .await?
            .unwrap_or_default())
    }

    // Restores.

    pub async fn restore(&self, id: &RestoreId) -> StoreResult<Option<RestoreRecord>> {
        self.get(&restore_key(id)).await
    }

    /// Every restore record, in key order.
    pub async fn restores(&self) -> StoreResult<Vec<RestoreRecord>> {
        self.list("restore/").await
    }
}
