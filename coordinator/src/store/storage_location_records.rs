//! Storage locations in the store: `storage-location/<name>`, one small record each (the public
//! options and the sealed credentials). Names are the ids: a location is never renamed, so an
//! organisation's `storage` names it for good.

use crate::kv::json::put_json_op;
use crate::kv::{Compare, KvBackend, Op, Txn};
use crate::model::StorageLocationRecord;

use super::{Store, StoreError, StoreResult};

fn location_key(name: &str) -> String {
    format!("storage-location/{name}")
}

impl Store {
    /// Creates the location, or fails with [`StoreError::AlreadyExists`] when the name is taken.
    pub async fn create_storage_location(&self, l: &StorageLocationRecord) -> StoreResult<()> {
        let key = location_key(&l.name);
        let txn = Txn::new()
            .when(vec![Compare::absent(key.as_bytes())])
            .and_then(vec![put_json_op(key.as_bytes(), l)?]);
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists {
                what: "storage location",
                name: l.name.clone(),
            })
        }
    }

    pub async fn storage_location(&self, name: &str) -> StoreResult<Option<StorageLocationRecord>> {
        self.get(&location_key(name)).await
    }

    /// Every location, in name order.
    pub async fn storage_locations(&self) -> StoreResult<Vec<StorageLocationRecord>> {
        self.list("storage-location/").await
    }

    /// Replaces the location's record (its credentials changed).
    pub async fn put_storage_location(&self, l: &StorageLocationRecord) -> StoreResult<()> {
        let op: Op = put_json_op(location_key(&l.name).as_bytes(), l)?;
        self.kv.txn(Txn::new().and_then(vec![op])).await?;
        Ok(())
    }
}
