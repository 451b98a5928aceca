//! The conformance suite every [`KvBackend`] must pass: memory and redb in unit tests, etcd
//! against a real member started by `tests/tests/e2e/etcd_store.rs`.
//!
//! Each check works under its own key prefix (`conformance/<check>/`) which it clears first, so
//! the suite can run repeatedly against a persistent store. Revision assertions are relative
//! (greater than, equal to a key's `mod_revision`), never absolute, because etcd starts at
//! revision 1 and may be shared. The checks panic on failure, like assertions.

use std::sync::Arc;

use super::{
    Compare, KeyRange, KvBackend, KvError, KvResult, MAX_TXN_OPS, MAX_VALUE_BYTES, Op, OpResponse,
    Txn,
};

/// Runs every check, sequentially, against `kv`.
pub async fn run_all(kv: Arc<dyn KvBackend>) {
    let kv_ref: &dyn KvBackend = kv.as_ref();
    put_get_delete(kv_ref).await;
    range_by_prefix_and_bounds(kv_ref).await;
    revisions(kv_ref).await;
    compare_revision_branches(kv_ref).await;
    stale_writer_loses(kv_ref).await;
    create_only(kv_ref).await;
    compare_value(kv_ref).await;
    ops_apply_in_order(kv_ref).await;
    conflicting_writes_rejected(kv_ref).await;
    oversize_txn_rejected(kv_ref).await;
    oversize_value_rejected(kv_ref).await;
    concurrent_compare_and_swap(kv).await;
}

fn ok<T>(result: KvResult<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Clears and returns the namespace of one check.
async fn namespace(kv: &dyn KvBackend, check: &str) -> String {
    let ns = format!("conformance/{check}/");
    ok(kv.delete_prefix(ns.as_bytes()).await, "clearing namespace");
    ns
}

fn key(ns: &str, name: &str) -> Vec<u8> {
    format!("{ns}{name}").into_bytes()
}

/// Put, get, overwrite and delete a key; missing keys read as `None`.
pub async fn put_get_delete(kv: &dyn KvBackend) {
    let ns = namespace(kv, "put_get_delete").await;
    let k = key(&ns, "k");
    assert_eq!(ok(kv.get(&k).await, "get missing"), None);

    let rev = ok(kv.put(&k, b"v1").await, "put");
    let got = ok(kv.get(&k).await, "get").expect("key just put must exist");
    assert_eq!(
        (got.key.as_slice(), got.value.as_slice()),
        (k.as_slice(), &b"v1"[..])
    );
    assert_eq!(got.mod_revision, rev);

    ok(kv.put(&k, b"v2").await, "overwrite");
    let got = ok(kv.get(&k).await, "get").expect("key must exist");
    assert_eq!(got.value, b"v2");

    // Empty values are values, not absence.
    let e = key(&ns, "empty");
    ok(kv.put(&e, b"").await, "put empty value");
    let got = ok(kv.get(&e).await, "get empty value").expect("empty value must exist");
    assert!(got.value.is_empty());

    assert!(
        ok(kv.delete(&k).await, "delete"),
        "delete of a present key reports it"
    );
    assert_eq!(ok(kv.get(&k).await, "get deleted"), None);
    assert!(
        !ok(kv.delete(&k).await, "delete again"),
        "second delete finds nothing"
    );
    assert!(matches!(kv.put(b"", b"x").await, Err(KvError::EmptyKey)));
}

/// Ranges by prefix, by `[start, end)` and open-ended, sorted by key bytes, with limits.
pub async fn range_by_prefix_and_bounds(kv: &dyn KvBackend) {
    let ns = namespace(kv, "range").await;
    // Inserted out of order; "a/1" < "a/10" < "a/2" bytewise. "a0" shares the text "a" but not
    // the prefix "a/".
    for name in ["a/2", "a/10", "a/1", "b/1", "a0"] {
        ok(kv.put(&key(&ns, name), name.as_bytes()).await, "seed");
    }
    let names = |kvs: Vec<super::KeyValue>| -> Vec<String> {
        kvs.into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[ns.len()..]).into_owned())
            .collect()
    };

    let all = ok(
        kv.range(KeyRange::prefix(ns.clone()), None).await,
        "range ns",
    );
    assert_eq!(names(all), ["a/1", "a/10", "a/2", "a0", "b/1"]);

    let a = ok(
        kv.range(KeyRange::prefix(key(&ns, "a/")), None).await,
        "range a/",
    );
    assert_eq!(names(a), ["a/1", "a/10", "a/2"]);

    let limited = ok(
        kv.range(KeyRange::prefix(key(&ns, "a/")), Some(2)).await,
        "limit",
    );
    assert_eq!(names(limited), ["a/1", "a/10"]);

    let zero = ok(
        kv.range(KeyRange::prefix(key(&ns, "a/")), Some(0)).await,
        "limit 0",
    );
    assert!(zero.is_empty());

    let between = KeyRange::between(key(&ns, "a/10"), key(&ns, "a0"));
    assert_eq!(
        names(ok(kv.range(between, None).await, "between")),
        ["a/10", "a/2"]
    );

    let inverted = KeyRange::between(key(&ns, "b"), key(&ns, "a"));
    assert!(ok(kv.range(inverted, None).await, "inverted").is_empty());

    let from = KeyRange::starting_at(key(&ns, "a0"));
    // Open-ended: limited, because keys of other namespaces may follow.
    assert_eq!(
        names(ok(kv.range(from, Some(2)).await, "starting_at")),
        ["a0", "b/1"]
    );

    assert!(
        ok(
            kv.range(KeyRange::prefix(key(&ns, "c/")), None).await,
            "none"
        )
        .is_empty()
    );

    // Paging: continue after the last key by appending a 0 byte.
    let mut pages = Vec::new();
    let mut start = ns.clone().into_bytes();
    let end = super::prefix_end(ns.as_bytes()).expect("namespace has an end");
    loop {
        let page = ok(
            kv.range(KeyRange::between(start.clone(), end.clone()), Some(2))
                .await,
            "page",
        );
        let full = page.len() == 2;
        if let Some(last) = page.last() {
            start = last.key.clone();
            start.push(0);
        }
        pages.push(names(page));
        if !full {
            break;
        }
    }
    assert_eq!(pages.concat(), ["a/1", "a/10", "a/2", "a0", "b/1"]);

    assert_eq!(
        ok(
            kv.delete_prefix(key(&ns, "a/").as_slice()).await,
            "delete_prefix"
        ),
        3
    );
    assert_eq!(
        names(ok(
            kv.range(KeyRange::prefix(ns.clone()), None).await,
            "after"
        )),
        ["a0", "b/1"]
    );
}

/// The store revision increases with every changing transaction; keys carry the revision of
/// their last write; transactions that change nothing leave the revision alone.
pub async fn revisions(kv: &dyn KvBackend) {
    let ns = namespace(kv, "revisions").await;
    let (a, b) = (key(&ns, "a"), key(&ns, "b"));
    let r0 = ok(kv.revision().await, "revision");

    let r1 = ok(kv.put(&a, b"1").await, "put a");
    assert!(r1 > r0, "a write advances the revision");
    assert!(ok(kv.revision().await, "revision") >= r1);
    let r2 = ok(kv.put(&b, b"1").await, "put b");
    assert!(r2 > r1);
    let got_a = ok(kv.get(&a).await, "get a").expect("a exists");
    let got_b = ok(kv.get(&b).await, "get b").expect("b exists");
    assert_eq!((got_a.mod_revision, got_b.mod_revision), (r1, r2));

    // One transaction, one revision for every key it writes.
    let resp = ok(
        kv.txn(Txn::new().and_then(vec![Op::put(a.clone(), "2"), Op::put(b.clone(), "2")]))
            .await,
        "txn",
    );
    assert!(resp.succeeded && resp.revision > r2);
    let kvs = ok(kv.range(KeyRange::prefix(ns.clone()), None).await, "range");
    assert!(kvs.iter().all(|kv| kv.mod_revision == resp.revision));

    // Changing nothing does not advance the revision.
    let before = ok(kv.revision().await, "revision");
    assert!(!ok(kv.delete(&key(&ns, "missing")).await, "delete missing"));
    let read_only = ok(
        kv.txn(Txn::new().and_then(vec![Op::get(a.clone())])).await,
        "read txn",
    );
    assert_eq!(
        read_only.revision, before,
        "a read-only txn reports the current revision"
    );
    assert_eq!(ok(kv.revision().await, "revision"), before);
}

/// A compare on `mod_revision` picks the success or the failure branch.
pub async fn compare_revision_branches(kv: &dyn KvBackend) {
    let ns = namespace(kv, "compare_revision").await;
    let (k, flag) = (key(&ns, "k"), key(&ns, "flag"));
    let rev = ok(kv.put(&k, b"v1").await, "put");

    let matching = Txn::new()
        .when(vec![Compare::mod_revision_eq(k.clone(), rev)])
        .and_then(vec![Op::put(k.clone(), "v2"), Op::get(k.clone())])
        .or_else(vec![Op::put(flag.clone(), "failure ran")]);
    let resp = ok(kv.txn(matching).await, "matching txn");
    assert!(resp.succeeded);
    assert_eq!(resp.responses.len(), 2);
    assert_eq!(resp.responses[0], OpResponse::Put);
    match &resp.responses[1] {
        OpResponse::Get(Some(got)) => {
            assert_eq!(got.value, b"v2");
            assert_eq!(got.mod_revision, resp.revision);
        }
        other => panic!("expected the get to see the put, got {other:?}"),
    }
    assert_eq!(
        ok(kv.get(&flag).await, "flag"),
        None,
        "failure branch must not run"
    );

    let stale = Txn::new()
        .when(vec![Compare::mod_revision_eq(k.clone(), rev)])
        .and_then(vec![Op::put(k.clone(), "v3")])
        .or_else(vec![Op::put(flag.clone(), "failure ran")]);
    let resp = ok(kv.txn(stale).await, "stale txn");
    assert!(!resp.succeeded);
    assert_eq!(resp.responses, [OpResponse::Put]);
    assert_eq!(ok(kv.get(&k).await, "get").expect("k exists").value, b"v2");
    assert_eq!(
        ok(kv.get(&flag).await, "flag").expect("flag set").value,
        b"failure ran"
    );

    // All compares must hold; one failing compare is enough to take the failure branch.
    let current = ok(kv.get(&k).await, "get").expect("k exists").mod_revision;
    let mixed = Txn::new()
        .when(vec![
            Compare::mod_revision_eq(k.clone(), current),
            Compare::absent(flag.clone()),
        ])
        .and_then(vec![Op::delete(k.clone())]);
    let resp = ok(kv.txn(mixed).await, "mixed txn");
    assert!(!resp.succeeded && resp.responses.is_empty());
    assert!(ok(kv.get(&k).await, "get").is_some());
}

/// The optimistic-concurrency race: two writers read the same revision; the first to commit
/// wins, the second's compare fails and it sees the winner's value.
pub async fn stale_writer_loses(kv: &dyn KvBackend) {
    let ns = namespace(kv, "stale_writer").await;
    let k = key(&ns, "k");
    ok(kv.put(&k, b"0").await, "seed");
    let read_a = ok(kv.get(&k).await, "A reads").expect("seeded");
    let read_b = ok(kv.get(&k).await, "B reads").expect("seeded");
    assert_eq!(read_a.mod_revision, read_b.mod_revision);

    let write = |value: &'static str, rev: u64| {
        Txn::new()
            .when(vec![Compare::mod_revision_eq(k.clone(), rev)])
            .and_then(vec![Op::put(k.clone(), value)])
            .or_else(vec![Op::get(k.clone())])
    };
    let a = ok(kv.txn(write("A", read_a.mod_revision)).await, "A writes");
    assert!(a.succeeded, "first writer wins");
    let b = ok(kv.txn(write("B", read_b.mod_revision)).await, "B writes");
    assert!(!b.succeeded, "second writer with a stale revision loses");
    match &b.responses[..] {
        [OpResponse::Get(Some(current))] => {
            assert_eq!(current.value, b"A");
            assert_eq!(current.mod_revision, a.revision);
        }
        other => panic!("expected the loser to read the winner's value, got {other:?}"),
    }
    assert_eq!(ok(kv.get(&k).await, "get").expect("k exists").value, b"A");
}

/// `Compare::absent` makes a create-only write: only the first create succeeds, and after a
/// delete the key can be created again.
pub async fn create_only(kv: &dyn KvBackend) {
    let ns = namespace(kv, "create_only").await;
    let k = key(&ns, "k");
    let create = |value: &'static str| {
        Txn::new()
            .when(vec![Compare::absent(k.clone())])
            .and_then(vec![Op::put(k.clone(), value)])
    };
    assert!(ok(kv.txn(create("first")).await, "create").succeeded);
    assert!(!ok(kv.txn(create("second")).await, "create again").succeeded);
    assert_eq!(
        ok(kv.get(&k).await, "get").expect("created").value,
        b"first"
    );

    let present = Txn::new().when(vec![Compare::present(k.clone())]);
    assert!(ok(kv.txn(present.clone()).await, "present").succeeded);

    ok(kv.delete(&k).await, "delete");
    assert!(!ok(kv.txn(present).await, "present after delete").succeeded);
    assert!(ok(kv.txn(create("third")).await, "recreate").succeeded);
}

/// Compares on values; a value compare on a missing key never holds (etcd semantics).
pub async fn compare_value(kv: &dyn KvBackend) {
    use super::{CmpOp, CompareTarget};
    let ns = namespace(kv, "compare_value").await;
    let k = key(&ns, "k");
    ok(kv.put(&k, b"m").await, "put");
    let check = |op: CmpOp, value: &'static str| {
        Txn::new().when(vec![Compare {
            key: k.clone(),
            target: CompareTarget::Value(op, value.as_bytes().to_vec()),
        }])
    };
    assert!(
        ok(
            kv.txn(Txn::new().when(vec![Compare::value_eq(k.clone(), "m")]))
                .await,
            "eq"
        )
        .succeeded
    );
    assert!(!ok(kv.txn(check(CmpOp::Equal, "x")).await, "eq other").succeeded);
    assert!(ok(kv.txn(check(CmpOp::NotEqual, "x")).await, "ne").succeeded);
    assert!(ok(kv.txn(check(CmpOp::Greater, "a")).await, "gt").succeeded);
    assert!(ok(kv.txn(check(CmpOp::Less, "z")).await, "lt").succeeded);
    assert!(!ok(kv.txn(check(CmpOp::Less, "a")).await, "not lt").succeeded);

    let missing = key(&ns, "missing");
    let on_missing = |op: CmpOp| {
        Txn::new().when(vec![Compare {
            key: missing.clone(),
            target: CompareTarget::Value(op, Vec::new()),
        }])
    };
    assert!(!ok(kv.txn(on_missing(CmpOp::Equal)).await, "eq missing").succeeded);
    assert!(!ok(kv.txn(on_missing(CmpOp::NotEqual)).await, "ne missing").succeeded);
}

/// Ops of a branch apply in order: a get sees earlier puts and deletes of the same branch, and
/// prefix deletes report how many keys they removed.
pub async fn ops_apply_in_order(kv: &dyn KvBackend) {
    let ns = namespace(kv, "op_order").await;
    for name in ["d/1", "d/2", "d/3"] {
        ok(kv.put(&key(&ns, name), b"x").await, "seed");
    }
    let resp = ok(
        kv.txn(Txn::new().and_then(vec![
            Op::get(key(&ns, "d/1")),
            Op::delete_prefix(key(&ns, "d/")),
            Op::get(key(&ns, "d/1")),
            Op::put(key(&ns, "n"), "new"),
            Op::get(key(&ns, "n")),
            Op::delete(key(&ns, "none")),
        ]))
        .await,
        "txn",
    );
    assert!(resp.succeeded);
    assert!(matches!(&resp.responses[0], OpResponse::Get(Some(kv)) if kv.value == b"x"));
    assert_eq!(resp.responses[1], OpResponse::Delete { deleted: 3 });
    assert_eq!(resp.responses[2], OpResponse::Get(None));
    assert_eq!(resp.responses[3], OpResponse::Put);
    assert!(matches!(&resp.responses[4], OpResponse::Get(Some(kv)) if kv.value == b"new"));
    assert_eq!(resp.responses[5], OpResponse::Delete { deleted: 0 });
    let left = ok(kv.range(KeyRange::prefix(ns.clone()), None).await, "range");
    assert_eq!(left.len(), 1);
}

/// A branch that writes one key twice is rejected up front (etcd: "duplicate key given in txn
/// request"), with nothing applied.
pub async fn conflicting_writes_rejected(kv: &dyn KvBackend) {
    let ns = namespace(kv, "conflicting_writes").await;
    let (k, other) = (key(&ns, "k"), key(&ns, "other"));
    let before = ok(kv.revision().await, "revision");
    let twice = Txn::new().and_then(vec![
        Op::put(other.clone(), "x"),
        Op::put(k.clone(), "1"),
        Op::put(k.clone(), "2"),
    ]);
    assert!(matches!(
        kv.txn(twice).await,
        Err(KvError::DuplicateKey { .. })
    ));
    let put_and_delete = Txn::new().and_then(vec![Op::put(k.clone(), "1"), Op::delete(k.clone())]);
    assert!(matches!(
        kv.txn(put_and_delete).await,
        Err(KvError::DuplicateKey { .. })
    ));
    assert_eq!(ok(kv.get(&other).await, "get"), None);
    assert_eq!(ok(kv.revision().await, "revision"), before);
}

/// More than [`MAX_TXN_OPS`] ops in a branch, or compares, is rejected, never split, and
/// nothing is applied; exactly [`MAX_TXN_OPS`] is accepted.
pub async fn oversize_txn_rejected(kv: &dyn KvBackend) {
    let ns = namespace(kv, "oversize_txn").await;
    let puts = |n: usize| -> Vec<Op> {
        (0..n)
            .map(|i| Op::put(key(&ns, &format!("k{i:03}")), "v"))
            .collect()
    };
    let before = ok(kv.revision().await, "revision");
    match kv.txn(Txn::new().and_then(puts(MAX_TXN_OPS + 1))).await {
        Err(KvError::TxnTooLarge { ops, max }) => {
            assert_eq!((ops, max), (MAX_TXN_OPS + 1, MAX_TXN_OPS));
        }
        other => panic!("expected TxnTooLarge, got {other:?}"),
    }
    // The failure branch counts too, even though it would not run.
    let big_failure = Txn::new().or_else(puts(MAX_TXN_OPS + 1));
    assert!(matches!(
        kv.txn(big_failure).await,
        Err(KvError::TxnTooLarge { .. })
    ));
    let compares = (0..=MAX_TXN_OPS)
        .map(|i| Compare::absent(key(&ns, &format!("c{i:03}"))))
        .collect();
    let big_compares = Txn::new().when(compares).and_then(puts(1));
    assert!(matches!(
        kv.txn(big_compares).await,
        Err(KvError::TxnTooLarge { .. })
    ));

    let range = KeyRange::prefix(ns.clone());
    assert!(
        ok(kv.range(range.clone(), None).await, "range").is_empty(),
        "nothing applied"
    );
    assert_eq!(ok(kv.revision().await, "revision"), before);

    let resp = ok(
        kv.txn(Txn::new().and_then(puts(MAX_TXN_OPS))).await,
        "max-size txn",
    );
    assert!(resp.succeeded);
    assert_eq!(ok(kv.range(range, None).await, "range").len(), MAX_TXN_OPS);
}

/// A value above [`MAX_VALUE_BYTES`] is rejected with nothing applied; a 1 MiB value is fine.
pub async fn oversize_value_rejected(kv: &dyn KvBackend) {
    let ns = namespace(kv, "oversize_value").await;
    let (big, small) = (key(&ns, "big"), key(&ns, "small"));
    let too_big = vec![7u8; MAX_VALUE_BYTES + 1];
    match kv.put(&big, &too_big).await {
        Err(KvError::ValueTooLarge { size, max, .. }) => {
            assert_eq!((size, max), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES));
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let with_other = Txn::new().and_then(vec![
        Op::put(small.clone(), "s"),
        Op::put(big.clone(), too_big),
    ]);
    assert!(matches!(
        kv.txn(with_other).await,
        Err(KvError::ValueTooLarge { .. })
    ));
    assert_eq!(ok(kv.get(&big).await, "get big"), None);
    assert_eq!(
        ok(kv.get(&small).await, "get small"),
        None,
        "nothing applied"
    );

    let mib = vec![9u8; 1024 * 1024];
    ok(kv.put(&big, &mib).await, "1 MiB put");
    assert_eq!(ok(kv.get(&big).await, "get").expect("stored").value, mib);
}

/// Tasks incrementing one counter with compare-and-swap retry loops end with the exact total:
/// no lost updates under real contention.
pub async fn concurrent_compare_and_swap(kv: Arc<dyn KvBackend>) {
    const TASKS: u64 = 8;
    const INCREMENTS: u64 = 25;
    let ns = namespace(kv.as_ref(), "concurrent_cas").await;
    let counter = key(&ns, "counter");

    // All tasks start together; otherwise each may finish before the next is spawned and the
    // check would pass without ever racing.
    let start = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (kv, counter, start) = (Arc::clone(&kv), counter.clone(), Arc::clone(&start));
        handles.push(tokio::spawn(async move {
            start.wait().await;
            let mut retries = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    let (n, rev) = match ok(kv.get(&counter).await, "read counter") {
                        Some(cur) => {
                            let text = String::from_utf8(cur.value).expect("counter is text");
                            (
                                text.parse::<u64>().expect("counter is a number"),
                                cur.mod_revision,
                            )
                        }
                        None => (0, 0),
                    };
                    // Yield between read and write so tasks interleave even on backends
                    // whose calls never suspend (MemoryKv).
                    tokio::task::yield_now().await;
                    let cas = Txn::new()
                        .when(vec![Compare::mod_revision_eq(counter.clone(), rev)])
                        .and_then(vec![Op::put(counter.clone(), (n + 1).to_string())]);
                    if ok(kv.txn(cas).await, "compare-and-swap").succeeded {
                        break;
                    }
                    retries += 1;
                }
            }
            retries
        }));
    }
    let mut retries = 0;
    for handle in handles {
        retries += handle.await.expect("counter task panicked");
    }
    let total = ok(kv.get(&counter).await, "read total").expect("counter exists");
    assert_eq!(total.value, (TASKS * INCREMENTS).to_string().into_bytes());
    tracing::debug!(backend = kv.name(), retries, "concurrent CAS finished");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
#[path = "kv_conformance_tests.rs"]
mod tests;
