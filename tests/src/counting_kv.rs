//! A key-value store that counts what passes through it to the store below: the benchmarks'
//! view of how many reads and transactions a coordinator makes of its backend per task (below
//! the group committer, so merged commits count once and cached reads not at all).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use repovault_coordinator::kv::{KeyRange, KeyValue, KvBackend, KvResult, Txn, TxnResponse};

pub struct CountingKv {
    inner: Arc<dyn KvBackend>,
    reads: AtomicU64,
    txns: AtomicU64,
}

impl CountingKv {
    pub fn new(inner: Arc<dyn KvBackend>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            reads: AtomicU64::new(0),
            txns: AtomicU64::new(0),
        })
    }

    /// Reads (single keys and ranges) and transactions so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::SeqCst),
            self.txns.load(Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl KvBackend for CountingKv {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn revision(&self) -> KvResult<u64> {
        self.inner.revision().await
    }

    async fn range(&self, range: KeyRange, limit: Option<usize>) -> KvResult<Vec<KeyValue>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.range(range, limit).await
    }

    async fn txn(&self, txn: Txn) -> KvResult<TxnResponse> {
        self.txns.fetch_add(1, Ordering::SeqCst);
        self.inner.txn(txn).await
    }
}
