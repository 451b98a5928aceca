//! Operators for the storages leases name, kept for the next task on the same storage.
//!
//! A lease carries its storage, credentials included (`RepoAccess.storage`); building an
//! operator for every task would throw away its HTTP connection pool each time. Operators are
//! kept by a hash of the whole specification, credentials included, so a rotated credential is
//! a new entry and an old one is never used for it.

use std::collections::HashMap;

use opendal::Operator;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use repovault_common::storage::{StorageConfig, StorageError};
use repovault_proto::v1 as pb;

/// Operators kept at most. Our choice: a worker serves a handful of locations at a time; a
/// fleet-wide credential rotation must not grow the map without end, so past this it starts
/// over (the next task on each storage builds its operator again).
const MAX_KEPT: usize = 64;

#[derive(Default)]
pub struct StorageOperators {
    kept: Mutex<HashMap<[u8; 32], Operator>>,
}

impl StorageOperators {
    /// The operator for `spec`: a kept one, or a new one (validated; no request is made).
    pub fn operator(&self, spec: &pb::StorageSpec) -> Result<Operator, StorageError> {
        let config = StorageConfig::from_proto(spec)?;
        let key = fingerprint(&config);
        if let Some(op) = self.kept.lock().get(&key) {
            return Ok(op.clone());
        }
        let op = config.operator()?;
        let mut kept = self.kept.lock();
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert(key, op.clone());
        Ok(op)
    }
}

fn fingerprint(c: &StorageConfig) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(c.kind.as_str());
    for (k, v) in &c.options {
        for part in [k.as_bytes(), b"\0", v.as_bytes(), b"\0"] {
            h.update(part);
        }
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operator_per_storage_and_a_new_one_for_new_credentials() {
        let ops = StorageOperators::default();
        let a = StorageConfig::memory();
        let b = StorageConfig::memory();
        ops.operator(&a.to_proto()).expect("a");
        ops.operator(&a.to_proto()).expect("a again");
        ops.operator(&b.to_proto()).expect("b");
        assert_eq!(ops.kept.lock().len(), 2);
        let bad = pb::StorageSpec {
            kind: "s3".into(),
            options: Default::default(),
        };
        let err = ops.operator(&bad).expect_err("no bucket");
        assert!(err.to_string().contains("bucket"), "{err}");
    }
}
