//! Typed helpers over [`KvBackend`]: values stored as JSON. The typed domain stores build on
//! these and never hand bytes to their callers.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{KeyValue, KvBackend, KvError, KvResult, Op, display_key};

/// A decoded value and the `mod_revision` it was read at (pass that revision to
/// [`super::Compare::mod_revision_eq`] for an optimistic update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: u64,
}

/// Serialises `value` for `key` (the key only gives error messages context).
pub fn encode_json<T: Serialize + ?Sized>(key: &[u8], value: &T) -> KvResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| KvError::Codec {
        key: display_key(key),
        source,
    })
}

/// Decodes a stored [`KeyValue`].
pub fn decode_json<T: DeserializeOwned>(kv: &KeyValue) -> KvResult<Versioned<T>> {
    let value = serde_json::from_slice(&kv.value).map_err(|source| KvError::Codec {
        key: display_key(&kv.key),
        source,
    })?;
    Ok(Versioned {
        value,
        mod_revision: kv.mod_revision,
    })
}

/// Reads and decodes one key.
pub async fn get_json<T: DeserializeOwned>(
    kv: &dyn KvBackend,
    key: &[u8],
) -> KvResult<Option<Versioned<T>>> {
    kv.get(key).await?.as_ref().map(decode_json).transpose()
}

/// Unconditionally stores `value` as JSON; returns the new revision.
pub async fn put_json<T: Serialize + ?Sized>(
    kv: &dyn KvBackend,
    key: &[u8],
    value: &T,
) -> KvResult<u64> {
    let bytes = encode_json(key, value)?;
    kv.put(key, &bytes).await
}

/// A [`Op::Put`] of `value` as JSON, for building transactions.
pub fn put_json_op<T: Serialize + ?Sized>(key: &[u8], value: &T) -> KvResult<Op> {
    Ok(Op::put(key, encode_json(key, value)?))
}
