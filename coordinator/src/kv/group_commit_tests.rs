use std::sync::atomic::Ordering;

use super::*;
use crate::kv::faulty_kv::FaultyKv;
use crate::kv::{Compare, MemoryKv, RedbKv, kv_conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_over_memory_passes_conformance() {
    kv_conformance::run_all(Arc::new(GroupCommitKv::new(Arc::new(MemoryKv::new())))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_over_redb_passes_conformance() {
    let dir = tempfile::tempdir().expect("dir");
    let kv = RedbKv::open(dir.path().join("kv.redb"))
        .await
        .expect("open");
    kv_conformance::run_all(Arc::new(GroupCommitKv::new(Arc::new(kv)))).await;
}

/// A memory store whose commits take 20 ms: long enough for the writers behind one to
/// gather into the next group.
fn slow() -> Arc<FaultyKv> {
    let kv = FaultyKv::new();
    kv.delay_ms.store(20, Ordering::SeqCst);
    kv
}

fn put(key: &str, value: &str) -> Txn {
    Txn::new().and_then(vec![Op::put(key, value)])
}

async fn value(kv: &dyn KvBackend, key: &str) -> Option<Vec<u8>> {
    kv.get(key.as_bytes()).await.expect("get").map(|v| v.value)
}

/// Writers queued behind a commit share the next one: 200 writes, staged while the first
/// commits, take a handful of backend transactions, none above the op limit, all durable.
#[tokio::test]
async fn queued_writers_share_a_transaction() {
    let backend = slow();
    let kv = GroupCommitKv::new(backend.clone());
    let tickets: Vec<Ticket> = (0..200)
        .map(|i| kv.stage(put(&format!("k{i:03}"), "v")).expect("stage"))
        .collect();
    for t in tickets {
        assert!(t.await.expect("commit").succeeded);
    }
    let txns = backend.txns.load(Ordering::SeqCst);
    // The first alone, then at most 127 a group: 1 + 127 + 72.
    assert!(txns <= 3, "200 writes took {txns} backend transactions");
    assert_eq!(
        kv.range(KeyRange::prefix("k"), None)
            .await
            .expect("range")
            .len(),
        200
    );
}

/// Writes of one key never share a transaction (etcd refuses a key written twice) and land in
/// the order they were staged; a conditional transaction runs alone, in its place.
#[tokio::test]
async fn order_is_the_staging_order() {
    let kv = GroupCommitKv::new(slow());
    let a1 = kv.stage(put("a", "1")).expect("stage");
    let create = kv
        .stage(
            Txn::new()
                .when(vec![Compare::absent(b"b".to_vec())])
                .and_then(vec![Op::put("b", "first")]),
        )
        .expect("stage");
    let a2 = kv.stage(put("a", "2")).expect("stage");
    let b2 = kv
        .stage(
            Txn::new()
                .when(vec![Compare::absent(b"b".to_vec())])
                .and_then(vec![Op::put("b", "second")]),
        )
        .expect("stage");
    a1.await.expect("a1");
    assert!(create.await.expect("create").succeeded);
    a2.await.expect("a2");
    assert!(!b2.await.expect("b2").succeeded, "b existed by then");
    assert_eq!(value(&kv, "a").await.as_deref(), Some(&b"2"[..]));
    assert_eq!(value(&kv, "b").await.as_deref(), Some(&b"first"[..]));
}

/// A read made after a write was staged sees its outcome, even before anyone awaits it.
#[tokio::test]
async fn a_read_waits_for_the_writes_staged_before_it() {
    let kv = GroupCommitKv::new(slow());
    let _busy = kv.stage(put("x", "0")).expect("stage");
    let t = kv.stage(put("k", "staged")).expect("stage");
    assert_eq!(value(&kv, "k").await.as_deref(), Some(&b"staged"[..]));
    let listed = kv.range(KeyRange::prefix("k"), None).await.expect("range");
    assert_eq!(listed.len(), 1);
    t.await.expect("commit");
    // A dropped ticket's write still commits.
    drop(kv.stage(put("dropped", "yes")).expect("stage"));
    assert_eq!(value(&kv, "dropped").await.as_deref(), Some(&b"yes"[..]));
}

/// A failed group fails every member with the backend's error and writes none of them; the
/// group after it commits, and reads see only what is durable.
#[tokio::test]
async fn a_failed_group_fails_its_members_only() {
    let backend = slow();
    let kv = GroupCommitKv::new(backend.clone());
    // Staged before the committer first runs (this runtime has one thread): one group, the
    // backend's first transaction, which fails.
    backend.fail_at.store(1, Ordering::SeqCst);
    let group: Vec<Ticket> = ["g1", "g2", "g3"]
        .iter()
        .map(|k| kv.stage(put(k, "v")).expect("stage"))
        .collect();
    for t in group {
        assert!(matches!(t.await, Err(KvError::Deposed { term: 7 })));
    }
    for k in ["g1", "g2", "g3"] {
        assert_eq!(value(&kv, k).await, None, "{k} was not written");
    }
    kv.stage(put("after", "1"))
        .expect("stage")
        .await
        .expect("after");
    assert_eq!(value(&kv, "after").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(backend.txns.load(Ordering::SeqCst), 2);
}

/// A write beyond a backend limit is refused when staged, not by its group.
#[tokio::test]
async fn an_oversized_write_is_refused_when_staged() {
    let kv = GroupCommitKv::new(Arc::new(MemoryKv::new()));
    let ops = (0..=MAX_TXN_OPS)
        .map(|i| Op::put(format!("k{i}"), "v"))
        .collect();
    assert!(matches!(
        kv.stage(Txn::new().and_then(ops)),
        Err(KvError::TxnTooLarge { .. })
    ));
}
