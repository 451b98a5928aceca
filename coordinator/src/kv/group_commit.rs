//! Group commit: the writes of many callers in one transaction of the backend.
//!
//! [`GroupCommitKv`] wraps any [`KvBackend`]. Every transaction joins, in call order, one queue
//! that a single committer drains. Consecutive plain write transactions (puts and single-key
//! deletes; no compares, no reads, no prefix deletes) whose keys do not overlap are merged into
//! one transaction of the backend, within its limits ([`MAX_TXN_OPS`], [`MAX_REQUEST_BYTES`]);
//! any other transaction runs alone, in its place in the queue. While one group commits, the
//! next gathers, so a backend with a slow commit (an fsync, a round trip to etcd's quorum)
//! takes many writers' transactions per commit instead of one.
//!
//! Contract:
//! * **Order.** Transactions take effect in the order they joined the queue ([`stage`] returns
//!   once it has joined; [`KvBackend::txn`] joins and waits). A group commits before the next
//!   one starts.
//! * **Atomicity.** Each transaction is applied entirely or not at all, as on the backend. A
//!   merged group is one transaction of the backend, so when it fails every member fails with
//!   the group's error (`Deposed` stays `Deposed`); a later group is unaffected.
//! * **Reads.** A read never sees a write that is not durable, and never misses one that joined
//!   the queue before the read began: a read whose key or range has a write in the queue waits
//!   until that write is resolved. So a caller that stages a write and then reads its key sees
//!   the outcome, whoever reads.
//! * **Revisions.** A merged member reports its group's revision (the store's revision after the
//!   group), which may be above the one it would have had alone.
//! * **Cached reads.** Built [`GroupCommitKv::with_read_cache`], single-key reads under the
//!   given prefixes are answered from memory once read (`read_cache.rs`, whose contract
//!   holds only while this committer is the keys' only writer).
//! * **Cancellation.** A staged transaction commits whether or not its [`Ticket`] is awaited; a
//!   caller that goes away does not stop it or anyone queued behind it.
//!
//! [`stage`]: GroupCommitKv::stage

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::read_cache::ReadCache;
use super::{
    KeyRange, KeyValue, KvBackend, KvError, KvResult, MAX_REQUEST_BYTES, MAX_TXN_OPS, Op, Txn,
    TxnResponse, check_key, single_end,
};

/// A [`KvBackend`] whose writes are committed in groups: see the module documentation.
pub struct GroupCommitKv {
    inner: Arc<dyn KvBackend>,
    shared: Arc<Shared>,
    cache: ReadCache,
    /// The committer's queue, started by the first write. Held across joining (sequence number,
    /// pending keys, send) so that the queue's order is the sequence order.
    queue: Mutex<Option<mpsc::UnboundedSender<Entry>>>,
}

/// What the committer and the readers share.
struct Shared {
    pending: Mutex<Pending>,
    /// The highest sequence number resolved (committed or failed): entries resolve in order.
    resolved: watch::Sender<u64>,
}

#[derive(Default)]
struct Pending {
    /// The sequence number of the next entry (the first is 1; 0 means "none yet").
    next_seq: u64,
    /// Key -> the latest unresolved entry that writes it.
    keys: BTreeMap<Vec<u8>, u64>,
    /// Prefix deletes in the queue: (prefix, entry).
    prefixes: Vec<(Vec<u8>, u64)>,
}

/// One transaction in the queue.
struct Entry {
    seq: u64,
    txn: Txn,
    /// Keys it writes (single keys; a prefix delete is in `Pending::prefixes`).
    keys: Vec<Vec<u8>>,
    /// May share a backend transaction with its neighbours.
    mergeable: bool,
    bytes: usize,
    reply: oneshot::Sender<KvResult<TxnResponse>>,
}

/// A staged transaction's outcome, resolved when its group has committed or failed.
#[must_use = "a ticket says whether the staged write is durable"]
pub struct Ticket(oneshot::Receiver<KvResult<TxnResponse>>);

impl Future for Ticket {
    type Output = KvResult<TxnResponse>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(KvError::Backend(
                    "the group committer stopped before this write was resolved".into(),
                ))
            })
        })
    }
}

impl GroupCommitKv {
    pub fn new(inner: Arc<dyn KvBackend>) -> Self {
        Self::with_read_cache(inner, Vec::new())
    }

    /// A committer that also answers single-key reads under `prefixes` from memory once read.
    /// Only for a store whose keys under `prefixes` no one else writes (see `read_cache.rs`).
    pub fn with_read_cache(inner: Arc<dyn KvBackend>, prefixes: Vec<Vec<u8>>) -> Self {
        Self {
            cache: ReadCache::new(prefixes),
            inner,
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending {
                    next_seq: 1,
                    ..Pending::default()
                }),
                resolved: watch::Sender::new(0),
            }),
            queue: Mutex::new(None),
        }
    }

    /// Joins the queue and returns at once: the transaction takes effect after every one that
    /// joined before it and before every one that joins after, and the ticket resolves when it
    /// has. A caller may so decide under its own lock, join, release the lock and then wait.
    /// Fails at once when the transaction breaks a backend limit, or outside a tokio runtime.
    pub fn stage(&self, txn: Txn) -> KvResult<Ticket> {
        txn.validate()?;
        let mergeable = txn.compares.is_empty()
            && txn.failure.is_empty()
            && !txn.success.is_empty()
            && txn
                .success
                .iter()
                .all(|op| matches!(op, Op::Put { .. } | Op::Delete { .. }));
        let mut keys = Vec::new();
        let mut prefixes = Vec::new();
        let mut bytes = 0;
        for op in &txn.success {
            match op {
                Op::Put { key, value } => {
                    bytes += key.len() + value.len();
                    keys.push(key.clone());
                }
                Op::Delete { key } => {
                    bytes += key.len();
                    keys.push(key.clone());
                }
                Op::DeletePrefix { prefix } => prefixes.push(prefix.clone()),
                Op::Get { .. } => {}
            }
        }
        // The failure branch writes too: its keys are pending as well.
        for op in &txn.failure {
            match op {
                Op::Put { key, .. } | Op::Delete { key } => keys.push(key.clone()),
                Op::DeletePrefix { prefix } => prefixes.push(prefix.clone()),
                Op::Get { .. } => {}
            }
        }
        let (reply, ticket) = oneshot::channel();
        let mut queue = self.queue.lock();
        let sender = match queue.as_ref() {
            Some(s) => s.clone(),
            None => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    KvError::Backend("a write was made outside the async runtime".into())
                })?;
                let (tx, rx) = mpsc::unbounded_channel();
                handle.spawn(commit_loop(self.inner.clone(), self.shared.clone(), rx));
                queue.insert(tx).clone()
            }
        };
        let seq = {
            let mut p = self.shared.pending.lock();
            let seq = p.next_seq;
            p.next_seq += 1;
            for k in &keys {
                p.keys.insert(k.clone(), seq);
            }
            p.prefixes
                .extend(prefixes.iter().map(|pre| (pre.clone(), seq)));
            seq
        };
        // Pending first, then the cache: see `read_cache.rs`.
        self.cache.invalidate(&keys, &prefixes);
        let entry = Entry {
            seq,
            txn,
            keys,
            mergeable,
            bytes,
            reply,
        };
        if let Err(mpsc::error::SendError(entry)) = sender.send(entry) {
            // Its runtime ended: forget the entry, and start a new committer next time.
            *queue = None;
            let mut p = self.shared.pending.lock();
            p.keys.retain(|_, s| *s != entry.seq);
            p.prefixes.retain(|(_, s)| *s != entry.seq);
            return Err(KvError::Backend("the group committer has stopped".into()));
        }
        Ok(Ticket(ticket))
    }

    /// Waits until every queued write into `range` is resolved.
    async fn wait_for_staged(&self, range: &KeyRange) {
        let last = {
            let p = self.shared.pending.lock();
            let keys = match range.bounds() {
                Some((lo, hi)) => p.keys.range::<[u8], _>((lo, hi)).map(|(_, s)| *s).max(),
                None => None,
            };
            let prefixes = p
                .prefixes
                .iter()
                .filter(|(pre, _)| overlaps(range, &KeyRange::prefix(pre.clone())))
                .map(|(_, s)| *s)
                .max();
            keys.max(prefixes)
        };
        if let Some(seq) = last {
            let mut rx = self.shared.resolved.subscribe();
            // The sender lives in `shared`, which `self` holds: this cannot fail.
            let _ = rx.wait_for(|r| *r >= seq).await;
        }
    }
}

pub(super) fn overlaps(a: &KeyRange, b: &KeyRange) -> bool {
    let below = |start: &[u8], end: &Option<Vec<u8>>| end.as_deref().is_none_or(|e| start < e);
    below(&a.start, &b.end) && below(&b.start, &a.end)
}

#[async_trait]
impl KvBackend for GroupCommitKv {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn revision(&self) -> KvResult<u64> {
        self.inner.revision().await
    }

    async fn range(&self, range: KeyRange, limit: Option<usize>) -> KvResult<Vec<KeyValue>> {
        // The epoch before the look for pending writes: see `read_cache.rs`.
        let epoch = self.cache.epoch();
        self.wait_for_staged(&range).await;
        let found = self.inner.range(range, limit).await?;
        self.cache.fill(&found, epoch);
        Ok(found)
    }

    async fn get(&self, key: &[u8]) -> KvResult<Option<KeyValue>> {
        check_key(key)?;
        let range = KeyRange::between(key, single_end(key));
        if !self.cache.covers(key) {
            return Ok(self.range(range, Some(1)).await?.pop());
        }
        // The epoch before the look for pending writes: see `read_cache.rs`.
        let epoch = self.cache.epoch();
        self.wait_for_staged(&range).await;
        if let Some(kv) = self.cache.lookup(key) {
            return Ok(Some(kv));
        }
        let found = self.inner.range(range, Some(1)).await?;
        self.cache.fill(&found, epoch);
        Ok(found.into_iter().next())
    }

    async fn txn(&self, txn: Txn) -> KvResult<TxnResponse> {
        self.stage(txn)?.await
    }
}

/// Drains the queue, one group at a time, until every [`GroupCommitKv`] handle is gone.
async fn commit_loop(
    inner: Arc<dyn KvBackend>,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Entry>,
) {
    let mut carried: Option<Entry> = None;
    loop {
        let first = match carried.take() {
            Some(e) => e,
            None => match rx.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        let mut group = vec![first];
        if group[0].mergeable {
            let mut ops = group[0].txn.success.len();
            let mut bytes = group[0].bytes;
            let mut keys: HashSet<Vec<u8>> = group[0].keys.iter().cloned().collect();
            while let Ok(e) = rx.try_recv() {
                let fits = e.mergeable
                    && ops + e.txn.success.len() <= MAX_TXN_OPS
                    && bytes + e.bytes <= MAX_REQUEST_BYTES
                    && !e.keys.iter().any(|k| keys.contains(k));
                if !fits {
                    carried = Some(e);
                    break;
                }
                ops += e.txn.success.len();
                bytes += e.bytes;
                keys.extend(e.keys.iter().cloned());
                group.push(e);
            }
        }
        let outcome = commit(inner.as_ref(), &mut group).await;
        resolve(&shared, group, outcome);
    }
}

/// Commits a group: a lone entry as it is, several as one transaction of all their writes.
async fn commit(inner: &dyn KvBackend, group: &mut [Entry]) -> KvResult<Vec<TxnResponse>> {
    if let [lone] = group {
        return Ok(vec![inner.txn(std::mem::take(&mut lone.txn)).await?]);
    }
    let counts: Vec<usize> = group.iter().map(|e| e.txn.success.len()).collect();
    let ops = group
        .iter_mut()
        .flat_map(|e| std::mem::take(&mut e.txn.success))
        .collect();
    let merged = inner.txn(Txn::new().and_then(ops)).await?;
    let mut responses = merged.responses.into_iter();
    Ok(counts
        .into_iter()
        .map(|n| TxnResponse {
            succeeded: true,
            revision: merged.revision,
            responses: responses.by_ref().take(n).collect(),
        })
        .collect())
}

/// Answers every member of a group and marks its writes resolved.
fn resolve(shared: &Shared, group: Vec<Entry>, outcome: KvResult<Vec<TxnResponse>>) {
    let last = group.last().map_or(0, |e| e.seq);
    {
        let mut p = shared.pending.lock();
        for e in &group {
            for k in &e.keys {
                if p.keys.get(k) == Some(&e.seq) {
                    p.keys.remove(k);
                }
            }
        }
        p.prefixes.retain(|(_, s)| *s > last);
    }
    match outcome {
        Ok(responses) => {
            for (e, r) in group.into_iter().zip(responses) {
                let _ = e.reply.send(Ok(r));
            }
        }
        Err(err) => {
            if group.len() > 1 {
                tracing::warn!(writes = group.len(), error = %err, "a group commit failed; every write in it failed");
            }
            for e in group {
                let _ = e.reply.send(Err(replicate(&err)));
            }
        }
    }
    shared.resolved.send_replace(last);
}

/// The same error for each member of a failed group (`KvError` holds a `serde_json::Error`,
/// which cannot be cloned; the variants a commit returns are kept as they are).
fn replicate(e: &KvError) -> KvError {
    match e {
        KvError::TxnTooLarge { ops, max } => KvError::TxnTooLarge {
            ops: *ops,
            max: *max,
        },
        KvError::ValueTooLarge { key, size, max } => KvError::ValueTooLarge {
            key: key.clone(),
            size: *size,
            max: *max,
        },
        KvError::RequestTooLarge { size, max } => KvError::RequestTooLarge {
            size: *size,
            max: *max,
        },
        KvError::EmptyKey => KvError::EmptyKey,
        KvError::DuplicateKey { key } => KvError::DuplicateKey { key: key.clone() },
        KvError::Deposed { term } => KvError::Deposed { term: *term },
        KvError::Codec { .. } | KvError::Backend(_) => KvError::Backend(e.to_string()),
    }
}

#[cfg(test)]
#[path = "group_commit_tests.rs"]
mod tests;
