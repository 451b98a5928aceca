//! Worker pools' join tokens in the store: `worker-token/<id>`, one small record each (the
//! token's hash, never the token). Few per installation, so they are read whole.

use crate::kv::json::put_json_op;
use crate::kv::{Compare, KvBackend, Op, Txn};
use crate::worker_pools::pool_token_record::PoolTokenRecord;

use super::{Store, StoreError, StoreResult};

fn token_key(id: &str) -> String {
    format!("worker-token/{id}")
}

impl Store {
    /// Creates the token's record, or fails with [`StoreError::AlreadyExists`] when its id is
    /// taken.
    pub async fn create_pool_token(&self, t: &PoolTokenRecord) -> StoreResult<()> {
        let key = token_key(&t.id);
        let txn = Txn::new()
            .when(vec![Compare::absent(key.as_bytes())])
            .and_then(vec![put_json_op(key.as_bytes(), t)?]);
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists {
                what: "join token",
                name: t.id.clone(),
            })
        }
    }

    pub async fn pool_token(&self, id: &str) -> StoreResult<Option<PoolTokenRecord>> {
        self.get(&token_key(id)).await
    }

    /// Every token, revoked and expired ones included, in id order.
    pub async fn pool_tokens(&self) -> StoreResult<Vec<PoolTokenRecord>> {
        self.list("worker-token/").await
    }

    /// Replaces the token's record (it was revoked).
    pub async fn put_pool_token(&self, t: &PoolTokenRecord) -> StoreResult<()> {
        let op: Op = put_json_op(token_key(&t.id).as_bytes(), t)?;
        self.kv.txn(Txn::new().and_then(vec![op])).await?;
        Ok(())
    }
}
