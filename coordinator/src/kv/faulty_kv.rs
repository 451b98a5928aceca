//! A memory store that counts its reads and transactions, delays them, and fails the ones a test asks it to: the
//! failures a real disk or a deposed leader's etcd would return, on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;

use super::{KeyRange, KeyValue, KvBackend, KvError, KvResult, MemoryKv, Txn, TxnResponse};

#[derive(Default)]
pub(crate) struct FaultyKv {
    inner: MemoryKv,
    /// Transactions asked for so far.
    pub txns: AtomicUsize,
    /// The transaction number (1-based) that fails as a deposed leader's would, or 0.
    pub fail_at: AtomicUsize,
    /// While set, every transaction fails as a full disk's would.
    pub refusing: AtomicBool,
    /// How long each transaction takes, in milliseconds.
    pub delay_ms: AtomicU64,
    /// Reads asked for so far.
    pub reads: AtomicUsize,
    /// How long each read's answer takes to arrive after it was read, in milliseconds.
    pub read_delay_ms: AtomicU64,
}

impl FaultyKv {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

#[async_trait]
impl KvBackend for FaultyKv {
    fn name(&self) -> &'static str {
        "faulty"
    }
    async fn revision(&self) -> KvResult<u64> {
        self.inner.revision().await
    }
    async fn range(&self, range: KeyRange, limit: Option<usize>) -> KvResult<Vec<KeyValue>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let found = self.inner.range(range, limit).await;
        let delay = self.read_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        found
    }
    async fn txn(&self, txn: Txn) -> KvResult<TxnResponse> {
        let n = self.txns.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if self.fail_at.load(Ordering::SeqCst) == n {
            return Err(KvError::Deposed { term: 7 });
        }
        if self.refusing.load(Ordering::SeqCst) {
            return Err(KvError::Backend("no space left on device".into()));
        }
        self.inner.txn(txn).await
    }
}
