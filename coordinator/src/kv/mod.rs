//! The byte-level key-value store under every typed domain store.
//!
//! One trait, [`KvBackend`], with the data model of etcd v3 so that an etcd backend is a thin
//! translation and not a re-implementation:
//!
//! * The store has a single **revision**, a `u64` that starts at 0 on an empty store and is
//!   bumped by exactly one by every transaction that changes at least one key. Transactions that
//!   change nothing (only reads, only deletes of missing keys, or an empty branch) leave it alone.
//! * Every key carries the **`mod_revision`** of the transaction that last wrote it. All keys
//!   written by one transaction share that transaction's revision. A missing key has revision 0,
//!   which is how "the key must not exist yet" is expressed ([`Compare::absent`]).
//! * Writes go through [`Txn`]: a list of [`Compare`]s, and two branches of [`Op`]s. If every
//!   compare holds the `success` branch runs, otherwise the `failure` branch. The whole thing is
//!   atomic (all of the branch's ops are applied or none) and serialisable (no other transaction
//!   commits between the compares and the ops). The ops of a branch apply in order; a
//!   [`Op::Get`] observes earlier ops of its own branch.
//! * Limits are etcd's defaults, enforced identically by every backend before anything is
//!   touched, so a request that works against the embedded store cannot fail only in production
//!   on etcd: see [`MAX_TXN_OPS`], [`MAX_REQUEST_BYTES`], [`MAX_VALUE_BYTES`]. A transaction
//!   that is too large is rejected, never split: splitting would silently give up atomicity.
//!
//! Backends: [`MemoryKv`] (tests), [`RedbKv`] (embedded default) and [`EtcdKv`] (a coordinator
//! group); each passes [`kv_conformance::run_all`], etcd against a real server. The typed store
//! reaches each through [`GroupCommitKv`], which commits concurrent writers' transactions
//! together and passes the same suite.

mod engine;
mod etcd_backend;
mod etcd_lease;
#[cfg(test)]
pub(crate) mod faulty_kv;
mod group_commit;
pub mod json;
pub mod kv_conformance;
mod memory;
mod read_cache;
mod redb_backend;

use std::ops::Bound;

use async_trait::async_trait;

pub use etcd_backend::{EtcdKv, EtcdOptions, EtcdTls};
pub use etcd_lease::{Campaign, LeaseId};
pub use group_commit::{GroupCommitKv, Ticket};
pub use json::{Versioned, decode_json, encode_json, get_json, put_json, put_json_op};
pub use memory::MemoryKv;
pub use redb_backend::RedbKv;

/// The most operations one list of a transaction may hold: compares, success ops and failure
/// ops are each checked against it separately. One less than etcd's `--max-txn-ops` (default
/// 128): an elected leader's transactions travel nested in its fence (`etcd_lease.rs`), and etcd
/// counts the fence's one compare against the nested lists' allowance. Every backend enforces
/// the same figure, so a transaction accepted anywhere is accepted by a leader on etcd.
pub const MAX_TXN_OPS: usize = 127;

/// The most bytes of keys and values one request may carry: etcd's default
/// `--max-request-bytes` (1.5 MiB). Protobuf framing is not counted; etcd's gRPC limit leaves
/// 512 KiB of headroom above this figure for it.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// The largest single value: a value cannot be larger than the request that carries it
/// ([`MAX_REQUEST_BYTES`]). Bulky records belong in object storage (as the catalog objects
/// do), which has no such limit.
pub const MAX_VALUE_BYTES: usize = MAX_REQUEST_BYTES;

/// Errors of the key-value store.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// One list of the transaction (compares, success or failure) holds more than `max` items.
    #[error("transaction has {ops} operations in one list, more than the maximum of {max}")]
    TxnTooLarge { ops: usize, max: usize },
    /// A value is larger than [`MAX_VALUE_BYTES`].
    #[error("value of key {key} is {size} bytes, more than the maximum of {max}")]
    ValueTooLarge {
        key: String,
        size: usize,
        max: usize,
    },
    /// The keys and values of one request add up to more than [`MAX_REQUEST_BYTES`].
    #[error("request carries {size} bytes of keys and values, more than the maximum of {max}")]
    RequestTooLarge { size: usize, max: usize },
    /// Keys must not be empty (etcd rejects them too).
    #[error("empty key")]
    EmptyKey,
    /// A branch writes a key more than once (two puts, or a put and a delete covering it);
    /// etcd rejects this because the outcome would depend on op order.
    #[error("key {key} is written more than once in one transaction branch")]
    DuplicateKey { key: String },
    /// A value could not be encoded or decoded by the typed helpers in [`json`].
    #[error("JSON codec error for key {key}: {source}")]
    Codec {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The write was refused because this coordinator is no longer the elected leader: its
    /// term (the election revision) was superseded or its election lease ran out. Nothing of
    /// the transaction was applied.
    #[error(
        "this coordinator is no longer the leader (its term {term} has ended); the write was refused"
    )]
    Deposed { term: u64 },
    /// The storage engine failed; the string says what was being done.
    #[error("kv backend error: {0}")]
    Backend(String),
}

/// Result alias of this module.
pub type KvResult<T> = Result<T, KvError>;

/// Renders a key for error messages and logs: keys are bytes, usually but not always UTF-8.
pub fn display_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// A stored key, its value, and the revision of the transaction that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the last transaction that wrote this key; never 0 for a present key.
    pub mod_revision: u64,
}

/// Borrowed bounds of a [`KeyRange`], as `RangeBounds` for `BTreeMap` and redb.
pub(crate) type ByteBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A range of keys: `[start, end)`, or `[start, ∞)` when `end` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key that starts with `prefix` (every key at all for an empty prefix).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let start = prefix.into();
        let end = prefix_end(&start);
        Self { start, end }
    }

    /// Keys `k` with `start <= k < end`; empty when `end <= start`.
    pub fn between(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Self {
            start: start.into(),
            end: Some(end.into()),
        }
    }

    /// Keys `k >= start`.
    pub fn starting_at(start: impl Into<Vec<u8>>) -> Self {
        Self {
            start: start.into(),
            end: None,
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    /// The bounds for `BTreeMap::range`-style APIs, or `None` when the range is empty. Both
    /// BTreeMap and redb panic on inverted bounds, so callers must skip the lookup on `None`.
    pub(crate) fn bounds(&self) -> Option<ByteBounds<'_>> {
        match self.end.as_deref() {
            Some(end) if end <= self.start.as_slice() => None,
            Some(end) => Some((Bound::Included(self.start.as_slice()), Bound::Excluded(end))),
            None => Some((Bound::Included(self.start.as_slice()), Bound::Unbounded)),
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is
/// none (empty prefix, or a prefix of only `0xff` bytes): etcd's `GetPrefixRangeEnd`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// A comparison operator of [`Compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

impl CmpOp {
    fn holds<T: Ord + ?Sized>(self, actual: &T, expected: &T) -> bool {
        match self {
            CmpOp::Equal => actual == expected,
            CmpOp::NotEqual => actual != expected,
            CmpOp::Less => actual < expected,
            CmpOp::Greater => actual > expected,
        }
    }
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's `mod_revision`; a missing key counts as revision 0.
    ModRevision(CmpOp, u64),
    /// The key's value (bytewise). As in etcd, a value compare on a missing key never holds,
    /// whatever the operator.
    Value(CmpOp, Vec<u8>),
}

/// A condition of a [`Txn`] on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub target: CompareTarget,
}

impl Compare {
    /// Holds when the key was last written at `revision` (optimistic concurrency: pass the
    /// `mod_revision` you read; any write since makes it fail).
    pub fn mod_revision_eq(key: impl Into<Vec<u8>>, revision: u64) -> Self {
        Self {
            key: key.into(),
            target: CompareTarget::ModRevision(CmpOp::Equal, revision),
        }
    }

    /// Holds when the key does not exist (revision 0): create-only writes.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Self::mod_revision_eq(key, 0)
    }

    /// Holds when the key exists (revision above 0).
    pub fn present(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            target: CompareTarget::ModRevision(CmpOp::Greater, 0),
        }
    }

    /// Holds when the key exists and its value equals `value`.
    pub fn value_eq(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            target: CompareTarget::Value(CmpOp::Equal, value.into()),
        }
    }

    /// Evaluates the compare against the key's current state (`(value, mod_revision)`).
    pub(crate) fn holds(&self, current: Option<(&[u8], u64)>) -> bool {
        match (&self.target, current) {
            (CompareTarget::ModRevision(op, expected), cur) => {
                op.holds(&cur.map_or(0, |(_, rev)| rev), expected)
            }
            (CompareTarget::Value(_, _), None) => false,
            (CompareTarget::Value(op, expected), Some((value, _))) => {
                op.holds(value, expected.as_slice())
            }
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets the key's value; its `mod_revision` becomes the transaction's revision.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Removes the key if present.
    Delete { key: Vec<u8> },
    /// Removes every key starting with `prefix` (every key at all for an empty prefix).
    DeletePrefix { prefix: Vec<u8> },
    /// Reads the key, observing earlier ops of the same branch.
    Get { key: Vec<u8> },
}

impl Op {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Op::Delete { key: key.into() }
    }

    pub fn delete_prefix(prefix: impl Into<Vec<u8>>) -> Self {
        Op::DeletePrefix {
            prefix: prefix.into(),
        }
    }

    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        Op::Get { key: key.into() }
    }
}

/// The result of one [`Op`], in the order of the executed branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    Put,
    /// How many keys the delete removed (0 or 1 for [`Op::Delete`]).
    Delete {
        deleted: u64,
    },
    Get(Option<KeyValue>),
}

/// An atomic, serialisable compare-then-write transaction (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the compares; all must hold for `success` to run.
    pub fn when(mut self, compares: Vec<Compare>) -> Self {
        self.compares = compares;
        self
    }

    /// Sets the ops run when every compare holds.
    pub fn and_then(mut self, ops: Vec<Op>) -> Self {
        self.success = ops;
        self
    }

    /// Sets the ops run when some compare does not hold.
    pub fn or_else(mut self, ops: Vec<Op>) -> Self {
        self.failure = ops;
        self
    }

    /// Checks the etcd limits and the well-formedness rules every backend enforces before
    /// touching storage, so a rejected transaction never has a partial effect and is rejected
    /// the same way by every backend.
    pub fn validate(&self) -> KvResult<()> {
        for len in [self.compares.len(), self.success.len(), self.failure.len()] {
            if len > MAX_TXN_OPS {
                return Err(KvError::TxnTooLarge {
                    ops: len,
                    max: MAX_TXN_OPS,
                });
            }
        }
        let mut size = 0usize;
        for cmp in &self.compares {
            check_key(&cmp.key)?;
            size += cmp.key.len();
            if let CompareTarget::Value(_, v) = &cmp.target {
                size += v.len();
            }
        }
        for branch in [&self.success, &self.failure] {
            for op in branch {
                size += match op {
                    Op::Put { key, value } => {
                        check_key(key)?;
                        if value.len() > MAX_VALUE_BYTES {
                            return Err(KvError::ValueTooLarge {
                                key: display_key(key),
                                size: value.len(),
                                max: MAX_VALUE_BYTES,
                            });
                        }
                        key.len() + value.len()
                    }
                    Op::Delete { key } | Op::Get { key } => {
                        check_key(key)?;
                        key.len()
                    }
                    Op::DeletePrefix { prefix } => prefix.len(),
                };
            }
            check_branch_writes(branch)?;
        }
        if size > MAX_REQUEST_BYTES {
            return Err(KvError::RequestTooLarge {
                size,
                max: MAX_REQUEST_BYTES,
            });
        }
        Ok(())
    }
}

fn check_key(key: &[u8]) -> KvResult<()> {
    if key.is_empty() {
        Err(KvError::EmptyKey)
    } else {
        Ok(())
    }
}

/// etcd's rule: within one branch a key may be put at most once, and never both put and
/// deleted. Repeated deletes are harmless and allowed.
fn check_branch_writes(branch: &[Op]) -> KvResult<()> {
    let mut puts = std::collections::BTreeSet::new();
    let mut deletes: Vec<KeyRange> = Vec::new();
    for op in branch {
        match op {
            Op::Put { key, .. } => {
                if !puts.insert(key.as_slice()) {
                    return Err(KvError::DuplicateKey {
                        key: display_key(key),
                    });
                }
            }
            Op::Delete { key } => deletes.push(KeyRange::between(key.clone(), single_end(key))),
            Op::DeletePrefix { prefix } => deletes.push(KeyRange::prefix(prefix.clone())),
            Op::Get { .. } => {}
        }
    }
    for key in puts {
        if deletes.iter().any(|range| range.contains(key)) {
            return Err(KvError::DuplicateKey {
                key: display_key(key),
            });
        }
    }
    Ok(())
}

/// The end of the range holding exactly `key`: the next key in byte order.
fn single_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    end.push(0);
    end
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (so the `success` branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction: the new `mod_revision` of every key it wrote,
    /// or the unchanged store revision when it wrote nothing.
    pub revision: u64,
    /// One response per op of the executed branch, in order.
    pub responses: Vec<OpResponse>,
}

/// The byte-level key-value store (see the module docs for the data model).
///
/// Object safe: hold it as `Arc<dyn KvBackend>`. Implementors provide [`KvBackend::range`],
/// [`KvBackend::txn`] and [`KvBackend::revision`]; the rest are defined in terms of those.
#[async_trait]
pub trait KvBackend: Send + Sync {
    /// A short name for logs ("memory", "redb", "etcd").
    fn name(&self) -> &'static str;

    /// The current store revision: the revision of the last transaction that changed a key
    /// (0 for a store never written).
    async fn revision(&self) -> KvResult<u64>;

    /// The keys in `range`, sorted by key bytes, at most `limit` of them (`None`: all). Reads
    /// one consistent snapshot. To page, repeat from the last key with a 0 byte appended.
    async fn range(&self, range: KeyRange, limit: Option<usize>) -> KvResult<Vec<KeyValue>>;

    /// Runs a transaction (see [`Txn`]); validation errors ([`Txn::validate`]) leave the store
    /// untouched.
    async fn txn(&self, txn: Txn) -> KvResult<TxnResponse>;

    /// Reads one key.
    async fn get(&self, key: &[u8]) -> KvResult<Option<KeyValue>> {
        check_key(key)?;
        let mut kvs = self
            .range(KeyRange::between(key, single_end(key)), Some(1))
            .await?;
        Ok(kvs.pop())
    }

    /// Unconditionally sets a key; returns the new revision (the key's `mod_revision`).
    async fn put(&self, key: &[u8], value: &[u8]) -> KvResult<u64> {
        let resp = self
            .txn(Txn::new().and_then(vec![Op::put(key, value)]))
            .await?;
        Ok(resp.revision)
    }

    /// Removes a key; returns whether it existed.
    async fn delete(&self, key: &[u8]) -> KvResult<bool> {
        let resp = self.txn(Txn::new().and_then(vec![Op::delete(key)])).await?;
        Ok(matches!(
            resp.responses.first(),
            Some(OpResponse::Delete { deleted }) if *deleted > 0
        ))
    }

    /// Removes every key starting with `prefix`; returns how many were removed.
    async fn delete_prefix(&self, prefix: &[u8]) -> KvResult<u64> {
        let resp = self
            .txn(Txn::new().and_then(vec![Op::delete_prefix(prefix)]))
            .await?;
        Ok(match resp.responses.first() {
            Some(OpResponse::Delete { deleted }) => *deleted,
            _ => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn key_range_contains_and_bounds() {
        let r = KeyRange::prefix("a/");
        assert!(r.contains(b"a/"));
        assert!(r.contains(b"a/x"));
        assert!(!r.contains(b"a0"));
        assert!(KeyRange::between("b", "a").bounds().is_none());
        assert!(KeyRange::between("a", "a").bounds().is_none());
        assert!(KeyRange::starting_at("a").contains(b"zzz"));
    }

    #[test]
    fn validate_rejects_conflicting_writes() {
        let dup = Txn::new().and_then(vec![Op::put("k", "1"), Op::put("k", "2")]);
        assert!(matches!(dup.validate(), Err(KvError::DuplicateKey { .. })));
        let put_del = Txn::new().or_else(vec![Op::put("p/k", "1"), Op::delete_prefix("p/")]);
        assert!(matches!(
            put_del.validate(),
            Err(KvError::DuplicateKey { .. })
        ));
        let twice_deleted = Txn::new().and_then(vec![Op::delete("k"), Op::delete("k")]);
        assert!(twice_deleted.validate().is_ok());
        // The branches are checked separately: only one of them runs.
        let both = Txn::new()
            .and_then(vec![Op::put("k", "1")])
            .or_else(vec![Op::put("k", "2")]);
        assert!(both.validate().is_ok());
        assert!(matches!(
            Txn::new().and_then(vec![Op::get("")]).validate(),
            Err(KvError::EmptyKey)
        ));
    }

    #[test]
    fn validate_counts_request_bytes() {
        let half = vec![0u8; MAX_REQUEST_BYTES / 2];
        let txn = Txn::new().and_then(vec![
            Op::put("a", half.clone()),
            Op::put("b", half.clone()),
            Op::put("c", half),
        ]);
        assert!(matches!(
            txn.validate(),
            Err(KvError::RequestTooLarge { .. })
        ));
    }
}
