//! [`RedbKv`]: the embedded, durable backend (the default of a single coordinator).

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};

use super::engine::{self, TxnView};
use super::{KeyRange, KeyValue, KvBackend, KvError, KvResult, Txn, TxnResponse, display_key};

/// key -> 8-byte big-endian `mod_revision` followed by the value bytes.
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Store-wide bookkeeping. Kept in the same database as the data so that the revision bump
/// commits in the same redb transaction as the writes it stamps, and survives restarts.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_FORMAT: &str = "format";
/// Version of the on-disk layout above; bumped on any incompatible change so an old binary
/// refuses a newer file instead of misreading it.
const FORMAT_VERSION: u64 = 1;
/// Bytes of the `mod_revision` header in front of every stored value.
const HEADER: usize = 8;

/// A redb database file. Each [`KvBackend::txn`] is one redb write transaction committed with
/// redb's default `Durability::Immediate`: when `txn` returns `Ok`, the change is on disk and
/// survives a crash or reopen. redb serialises write transactions, which gives serialisability;
/// reads use snapshot read transactions and never block writers.
///
/// redb is synchronous, so every call runs on tokio's blocking pool. As with etcd, if the
/// calling future is dropped mid-call the transaction may or may not have been applied.
#[derive(Clone)]
pub struct RedbKv {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbKv").field("path", &self.path).finish()
    }
}

fn backend_err(context: impl Display) -> impl FnOnce(redb::Error) -> KvError {
    move |e| KvError::Backend(format!("redb: {context}: {e}"))
}

/// Maps any redb error (they all convert into `redb::Error`) with context.
fn ctx<E: Into<redb::Error>>(context: impl Display) -> impl FnOnce(E) -> KvError {
    let f = backend_err(context);
    move |e| f(e.into())
}

async fn blocking<T, F>(what: &'static str, f: F) -> KvResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> KvResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KvError::Backend(format!("redb: {what} task failed: {e}")))?
}

impl RedbKv {
    /// Opens the database at `path`, creating the file if it does not exist. Fails if another
    /// process (or another `RedbKv` in this process) has it open.
    pub async fn open(path: impl AsRef<Path>) -> KvResult<Self> {
        let path = path.as_ref().to_path_buf();
        let at = path.clone();
        let db = blocking("open", move || open_blocking(&at)).await?;
        tracing::debug!(path = %path.display(), "opened redb kv store");
        Ok(Self {
            db: Arc::new(db),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_blocking(path: &Path) -> KvResult<Database> {
    let shown = path.display();
    let db = Database::create(path).map_err(ctx(format_args!("opening {shown}")))?;
    // Create both tables up front: read transactions cannot create them and would otherwise
    // fail with "table does not exist" on a fresh file.
    let tx = db
        .begin_write()
        .map_err(ctx(format_args!("initialising {shown}")))?;
    {
        tx.open_table(DATA)
            .map_err(ctx(format_args!("creating data table in {shown}")))?;
        let mut meta = tx
            .open_table(META)
            .map_err(ctx(format_args!("creating meta table in {shown}")))?;
        let format = meta
            .get(META_FORMAT)
            .map_err(ctx("reading format version"))?
            .map(|g| g.value());
        match format {
            None => {
                meta.insert(META_FORMAT, FORMAT_VERSION)
                    .map_err(ctx("writing format version"))?;
            }
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(KvError::Backend(format!(
                    "redb: {shown} has store format {other}, this build understands {FORMAT_VERSION}"
                )));
            }
        }
    }
    tx.commit()
        .map_err(ctx(format_args!("initialising {shown}")))?;
    Ok(db)
}

fn encode(mod_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(&mod_revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &[u8], stored: &[u8]) -> KvResult<(Vec<u8>, u64)> {
    match stored.split_first_chunk::<HEADER>() {
        Some((rev, value)) => Ok((value.to_vec(), u64::from_be_bytes(*rev))),
        None => Err(KvError::Backend(format!(
            "redb: corrupt record for key {}: {} bytes, shorter than the revision header",
            display_key(key),
            stored.len()
        ))),
    }
}

impl TxnView for Table<'_, &'static [u8], &'static [u8]> {
    fn read(&mut self, key: &[u8]) -> KvResult<Option<(Vec<u8>, u64)>> {
        match ReadableTable::get(self, key).map_err(ctx("reading key"))? {
            Some(guard) => decode(key, guard.value()).map(Some),
            None => Ok(None),
        }
    }

    fn write(&mut self, key: &[u8], value: &[u8], mod_revision: u64) -> KvResult<()> {
        self.insert(key, encode(mod_revision, value).as_slice())
            .map_err(ctx("writing key"))?;
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> KvResult<bool> {
        Ok(Table::remove(self, key)
            .map_err(ctx("deleting key"))?
            .is_some())
    }

    fn keys_in(&mut self, range: &KeyRange) -> KvResult<Vec<Vec<u8>>> {
        let Some(bounds) = range.bounds() else {
            return Ok(Vec::new());
        };
        let mut keys = Vec::new();
        for item in ReadableTable::range::<&[u8]>(self, bounds).map_err(ctx("scanning keys"))? {
            let (key, _) = item.map_err(ctx("scanning keys"))?;
            keys.push(key.value().to_vec());
        }
        Ok(keys)
    }
}

#[async_trait]
impl KvBackend for RedbKv {
    fn name(&self) -> &'static str {
        "redb"
    }

    async fn revision(&self) -> KvResult<u64> {
        let db = Arc::clone(&self.db);
        blocking("revision", move || {
            let tx = db.begin_read().map_err(ctx("starting read"))?;
            let meta = tx.open_table(META).map_err(ctx("opening meta table"))?;
            Ok(meta
                .get(META_REVISION)
                .map_err(ctx("reading revision"))?
                .map_or(0, |g| g.value()))
        })
        .await
    }

    async fn range(&self, range: KeyRange, limit: Option<usize>) -> KvResult<Vec<KeyValue>> {
        let db = Arc::clone(&self.db);
        blocking("range", move || {
            let Some(bounds) = range.bounds() else {
                return Ok(Vec::new());
            };
            let tx = db.begin_read().map_err(ctx("starting read"))?;
            let table = tx.open_table(DATA).map_err(ctx("opening data table"))?;
            let mut out = Vec::new();
            let iter = table
                .range::<&[u8]>(bounds)
                .map_err(ctx("scanning range"))?;
            for item in iter.take(limit.unwrap_or(usize::MAX)) {
                let (key, stored) = item.map_err(ctx("scanning range"))?;
                let key = key.value().to_vec();
                let (value, mod_revision) = decode(&key, stored.value())?;
                out.push(KeyValue {
                    key,
                    value,
                    mod_revision,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> KvResult<TxnResponse> {
        txn.validate()?;
        let db = Arc::clone(&self.db);
        blocking("txn", move || {
            // One redb write transaction for compares, ops and the revision bump: redb admits a
            // single writer at a time, so nothing can commit between compare and write. Any
            // error below drops `tx`, which aborts it: nothing is applied.
            let tx = db.begin_write().map_err(ctx("starting transaction"))?;
            let (done, revision) = {
                let mut meta = tx.open_table(META).map_err(ctx("opening meta table"))?;
                let revision = meta
                    .get(META_REVISION)
                    .map_err(ctx("reading revision"))?
                    .map_or(0, |g| g.value());
                let mut data = tx.open_table(DATA).map_err(ctx("opening data table"))?;
                let done = engine::execute(&mut data, &txn, revision)?;
                let revision = if done.changed {
                    meta.insert(META_REVISION, revision + 1)
                        .map_err(ctx("writing revision"))?;
                    revision + 1
                } else {
                    revision
                };
                (done, revision)
            };
            if done.changed {
                tx.commit().map_err(ctx("committing transaction"))?;
            } else {
                // Nothing changed: skip the commit and its fsync.
                tx.abort().map_err(ctx("aborting read-only transaction"))?;
            }
            Ok(TxnResponse {
                succeeded: done.succeeded,
                revision,
                responses: done.responses,
            })
        })
        .await
    }
}
