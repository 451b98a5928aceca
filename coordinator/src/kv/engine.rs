//! Transaction evaluation shared by the embedded backends, so memory and redb cannot drift
//! apart in how compares, op order and revisions work. (The etcd backend delegates all of this
//! to etcd and only has to match it, which the conformance suite checks.)

use super::{Compare, KeyRange, KeyValue, KvResult, Op, OpResponse, Txn};

/// A backend's view of its data inside one exclusive write transaction.
pub(crate) trait TxnView {
    /// The key's `(value, mod_revision)`, observing earlier writes of this transaction.
    fn read(&mut self, key: &[u8]) -> KvResult<Option<(Vec<u8>, u64)>>;
    fn write(&mut self, key: &[u8], value: &[u8], mod_revision: u64) -> KvResult<()>;
    /// Removes the key; returns whether it existed.
    fn remove(&mut self, key: &[u8]) -> KvResult<bool>;
    /// The keys currently in `range`, sorted.
    fn keys_in(&mut self, range: &KeyRange) -> KvResult<Vec<Vec<u8>>>;
}

/// What [`execute`] did; the caller commits (or, when nothing changed, discards) its view.
pub(crate) struct Executed {
    pub succeeded: bool,
    pub responses: Vec<OpResponse>,
    /// Whether any key changed, i.e. whether the store revision must advance.
    pub changed: bool,
}

/// Evaluates `txn` on `view`, whose store is at `revision`. Every write is stamped
/// `revision + 1`; the caller advances the store revision iff [`Executed::changed`].
/// `txn` must already have passed [`Txn::validate`].
pub(crate) fn execute(view: &mut impl TxnView, txn: &Txn, revision: u64) -> KvResult<Executed> {
    let succeeded = compares_hold(view, &txn.compares)?;
    let branch = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let next = revision + 1;
    let mut changed = false;
    let mut responses = Vec::with_capacity(branch.len());
    for op in branch {
        let response = match op {
            Op::Put { key, value } => {
                view.write(key, value, next)?;
                changed = true;
                OpResponse::Put
            }
            Op::Delete { key } => {
                let existed = view.remove(key)?;
                changed |= existed;
                OpResponse::Delete {
                    deleted: u64::from(existed),
                }
            }
            Op::DeletePrefix { prefix } => {
                let mut deleted = 0u64;
                for key in view.keys_in(&KeyRange::prefix(prefix.clone()))? {
                    if view.remove(&key)? {
                        deleted += 1;
                    }
                }
                changed |= deleted > 0;
                OpResponse::Delete { deleted }
            }
            Op::Get { key } => {
                OpResponse::Get(view.read(key)?.map(|(value, mod_revision)| KeyValue {
                    key: key.clone(),
                    value,
                    mod_revision,
                }))
            }
        };
        responses.push(response);
    }
    Ok(Executed {
        succeeded,
        responses,
        changed,
    })
}

fn compares_hold(view: &mut impl TxnView, compares: &[Compare]) -> KvResult<bool> {
    for cmp in compares {
        let current = view.read(&cmp.key)?;
        if !cmp.holds(current.as_ref().map(|(v, rev)| (v.as_slice(), *rev))) {
            return Ok(false);
        }
    }
    Ok(true)
}
