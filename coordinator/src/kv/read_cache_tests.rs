use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::kv::faulty_kv::FaultyKv;
use crate::kv::{GroupCommitKv, KvBackend, MemoryKv, Op, RedbKv, Txn, kv_conformance};

/// Every key cached: each read of the conformance suite goes through the cache.
fn caching_all(inner: Arc<dyn KvBackend>) -> Arc<GroupCommitKv> {
    Arc::new(GroupCommitKv::with_read_cache(inner, vec![Vec::new()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_committer_caching_every_key_passes_conformance_over_memory_and_redb() {
    kv_conformance::run_all(caching_all(Arc::new(MemoryKv::new()))).await;
    let dir = tempfile::tempdir().expect("dir");
    let redb = RedbKv::open(dir.path().join("kv.redb"))
        .await
        .expect("open");
    kv_conformance::run_all(caching_all(Arc::new(redb))).await;
}

/// A committer over a fault-injecting store that caches the keys under `prefix`.
fn caching(prefix: &str) -> (Arc<FaultyKv>, Arc<GroupCommitKv>) {
    let backend = FaultyKv::new();
    let kv = GroupCommitKv::with_read_cache(backend.clone(), vec![prefix.as_bytes().to_vec()]);
    (backend, Arc::new(kv))
}

async fn value(kv: &GroupCommitKv, key: &str) -> Option<Vec<u8>> {
    kv.get(key.as_bytes()).await.expect("get").map(|v| v.value)
}

#[tokio::test]
async fn a_cached_record_is_read_once_and_every_write_replaces_it() {
    let (backend, kv) = caching("repo/");
    kv.put(b"repo/a", b"1").await.expect("put");
    kv.put(b"task/t", b"x").await.expect("put");
    let reads = || backend.reads.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(value(&kv, "repo/a").await.as_deref(), Some(&b"1"[..]));
        assert_eq!(value(&kv, "task/t").await.as_deref(), Some(&b"x"[..]));
    }
    assert_eq!(
        reads(),
        1 + 3,
        "one read of the cached key, three of the other"
    );
    // A write through the committer: the next read sees it, and caches it.
    kv.put(b"repo/a", b"2").await.expect("put");
    assert_eq!(value(&kv, "repo/a").await.as_deref(), Some(&b"2"[..]));
    assert_eq!(value(&kv, "repo/a").await.as_deref(), Some(&b"2"[..]));
    assert_eq!(reads(), 5);
    // A staged write is what the next read waits for, cached or not.
    let ticket = kv
        .stage(Txn::new().and_then(vec![Op::put("repo/a", "3")]))
        .expect("stage");
    assert_eq!(value(&kv, "repo/a").await.as_deref(), Some(&b"3"[..]));
    ticket.await.expect("commit");
    // Deletes, one key or a prefix, drop it.
    kv.delete(b"repo/a").await.expect("delete");
    assert_eq!(value(&kv, "repo/a").await, None);
    kv.put(b"repo/b", b"1").await.expect("put");
    assert!(value(&kv, "repo/b").await.is_some());
    kv.txn(Txn::new().and_then(vec![Op::delete_prefix("repo")]))
        .await
        .expect("delete prefix");
    assert_eq!(value(&kv, "repo/b").await, None);
}

#[tokio::test]
async fn a_listing_warms_the_cache() {
    let (backend, kv) = caching("repo/");
    for i in 0..10 {
        kv.put(format!("repo/{i}").as_bytes(), b"r")
            .await
            .expect("put");
    }
    let listed = kv
        .range(crate::kv::KeyRange::prefix("repo/"), None)
        .await
        .expect("range");
    assert_eq!(listed.len(), 10);
    let before = backend.reads.load(Ordering::SeqCst);
    for i in 0..10 {
        assert!(value(&kv, &format!("repo/{i}")).await.is_some());
    }
    assert_eq!(
        backend.reads.load(Ordering::SeqCst),
        before,
        "answered from memory"
    );
}

/// Starts a read of `key` whose backend answer takes 200 ms, and returns once the read has
/// reached the backend: what is written from now on commits while its answer is on its way.
async fn start_slow_read(
    kv: &Arc<GroupCommitKv>,
    backend: &FaultyKv,
    key: &'static str,
) -> tokio::task::JoinHandle<Option<Vec<u8>>> {
    backend.read_delay_ms.store(200, Ordering::SeqCst);
    let slow_read = tokio::spawn({
        let kv = kv.clone();
        async move { value(&kv, key).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    slow_read
}

/// A read that got its answer before a write joined, but returns after it, must not leave the
/// old value in the cache for the reads after the write.
#[tokio::test]
async fn a_read_overtaken_by_a_write_does_not_cache_the_old_value() {
    let (backend, kv) = caching("org/");
    kv.put(b"org/o", b"old").await.expect("put");
    let slow_read = start_slow_read(&kv, &backend, "org/o").await;
    kv.put(b"org/o", b"new").await.expect("put");
    assert_eq!(
        slow_read.await.expect("join").as_deref(),
        Some(&b"old"[..]),
        "the read began before the write"
    );
    backend.read_delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(value(&kv, "org/o").await.as_deref(), Some(&b"new"[..]));
}

/// Writes of other keys do not stop a read from filling, unless there were more of them than
/// the cache remembers by key.
#[tokio::test]
async fn only_a_write_of_the_same_key_stops_a_fill() {
    let (backend, kv) = caching("org/");
    kv.put(b"org/a", b"a").await.expect("put");
    let reads = || backend.reads.load(Ordering::SeqCst);
    for others in [1, crate::kv::read_cache::TRACKED_WRITES + 1] {
        kv.put(b"org/a", b"a").await.expect("put");
        let slow_read = start_slow_read(&kv, &backend, "org/a").await;
        let writes: Vec<Op> = (0..others)
            .map(|i| Op::put(format!("org/other{i}"), "x"))
            .collect();
        for chunk in writes.chunks(100) {
            kv.txn(Txn::new().and_then(chunk.to_vec()))
                .await
                .expect("write others");
        }
        assert!(slow_read.await.expect("join").is_some());
        backend.read_delay_ms.store(0, Ordering::SeqCst);
        let before = reads();
        assert!(value(&kv, "org/a").await.is_some());
        let kept = reads() == before;
        assert_eq!(
            kept,
            others == 1,
            "after {others} writes of other keys the read's value is kept: {kept}"
        );
    }
}
