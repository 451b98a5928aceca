//! [`MemoryKv`]: the in-memory backend for tests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::engine::{self, TxnView};
use super::{KeyRange, KeyValue, KvBackend, KvResult, Txn, TxnResponse};

/// A `BTreeMap` behind one mutex. Every call holds the lock for its whole duration (and never
/// across an `.await`), which makes each transaction trivially atomic and serialisable.
/// Nothing is persisted.
#[derive(Debug, Default)]
pub struct MemoryKv {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// key -> (value, mod_revision)
    data: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    revision: u64,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }
}

impl TxnView for BTreeMap<Vec<u8>, (Vec<u8>, u64)> {
    fn read(&mut self, key: &[u8]) -> KvResult<Option<(Vec<u8>, u64)>> {
        Ok(self.get(key).cloned())
    }

    fn write(&mut self, key: &[u8], value: &[u8], mod_revision: u64) -> KvResult<()> {
        self.insert(key.to_vec(), (value.to_vec(), mod_revision));
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> KvResult<bool> {
        Ok(BTreeMap::remove(self, key).is_some())
    }

    fn keys_in(&mut self, range: &KeyRange) -> KvResult<Vec<Vec<u8>>> {
        Ok(match range.bounds() {
            Some(bounds) => self
                .range::<[u8], _>(bounds)
                .map(|(k, _)| k.clone())
                .collect(),
            None => Vec::new(),
        })
    }
}

#[async_trait]
impl KvBackend for MemoryKv {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn revision(&self) -> KvResult<u64> {
        Ok(self.state.lock().revision)
    }

    async fn range(&self, range: KeyRange, limit: Option<usize>) -> KvResult<Vec<KeyValue>> {
        let state = self.state.lock();
        let Some(bounds) = range.bounds() else {
            return Ok(Vec::new());
        };
        Ok(state
            .data
            .range::<[u8], _>(bounds)
            .take(limit.unwrap_or(usize::MAX))
            .map(|(key, (value, mod_revision))| KeyValue {
                key: key.clone(),
                value: value.clone(),
                mod_revision: *mod_revision,
            })
            .collect())
    }

    async fn txn(&self, txn: Txn) -> KvResult<TxnResponse> {
        txn.validate()?;
        let mut state = self.state.lock();
        let revision = state.revision;
        // The map's view is infallible, so ops cannot fail halfway through; validation above
        // already rejected everything that could.
        let done = engine::execute(&mut state.data, &txn, revision)?;
        if done.changed {
            state.revision += 1;
        }
        Ok(TxnResponse {
            succeeded: done.succeeded,
            revision: state.revision,
            responses: done.responses,
        })
    }
}
