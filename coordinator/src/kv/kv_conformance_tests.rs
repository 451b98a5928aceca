use super::*;
use crate::kv::{MemoryKv, RedbKv, Versioned, get_json, put_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_passes_conformance() {
    run_all(Arc::new(MemoryKv::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbKv::open(dir.path().join("kv.redb")).await.unwrap();
    run_all(Arc::new(kv)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_is_rerunnable() {
    // The suite clears its namespaces, so it can run twice against the same store (as it
    // must against a persistent etcd).
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    run_all(Arc::clone(&kv)).await;
    run_all(kv).await;
}

/// The embedded backends start at 0 and bump by exactly one (the suite only checks
/// monotonicity, because etcd may be shared).
async fn exact_revisions(kv: &dyn KvBackend) {
    assert_eq!(kv.revision().await.unwrap(), 0);
    assert_eq!(kv.get(b"k").await.unwrap(), None);
    assert_eq!(kv.put(b"k", b"1").await.unwrap(), 1);
    assert_eq!(kv.put(b"j", b"1").await.unwrap(), 2);
    assert!(!kv.delete(b"missing").await.unwrap());
    assert_eq!(kv.revision().await.unwrap(), 2);
    assert!(kv.delete(b"k").await.unwrap());
    assert_eq!(kv.revision().await.unwrap(), 3);
}

#[tokio::test]
async fn memory_revisions_are_exact() {
    exact_revisions(&MemoryKv::new()).await;
}

#[tokio::test]
async fn redb_revisions_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbKv::open(dir.path().join("kv.redb")).await.unwrap();
    exact_revisions(&kv).await;
}

#[tokio::test]
async fn redb_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let (rev_a, rev_b) = {
        let kv = RedbKv::open(&path).await.unwrap();
        let a = kv.put(b"a", b"alpha").await.unwrap();
        let txn = Txn::new()
            .when(vec![Compare::absent(b"b".to_vec())])
            .and_then(vec![Op::put("b", "beta"), Op::put("c", "gamma")]);
        let b = kv.txn(txn).await.unwrap();
        assert!(b.succeeded);
        assert!(kv.delete(b"c").await.unwrap());
        // A second handle on the same file while it is open is refused.
        assert!(RedbKv::open(&path).await.is_err());
        (a, b.revision)
    };
    let kv = RedbKv::open(&path).await.unwrap();
    assert_eq!(
        kv.revision().await.unwrap(),
        rev_b + 1,
        "revision survives reopen"
    );
    let a = kv.get(b"a").await.unwrap().unwrap();
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"alpha"[..], rev_a));
    let b = kv.get(b"b").await.unwrap().unwrap();
    assert_eq!((b.value.as_slice(), b.mod_revision), (&b"beta"[..], rev_b));
    assert_eq!(kv.get(b"c").await.unwrap(), None);
    // The counter continues rather than restarting, so mod_revisions stay unique.
    assert_eq!(kv.put(b"d", b"delta").await.unwrap(), rev_b + 2);
}

#[tokio::test]
async fn json_helpers_round_trip() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Doc {
        name: String,
        n: u32,
    }
    let kv = MemoryKv::new();
    let doc = Doc {
        name: "x".into(),
        n: 3,
    };
    let rev = put_json(&kv, b"doc", &doc).await.unwrap();
    let got: Option<Versioned<Doc>> = get_json(&kv, b"doc").await.unwrap();
    assert_eq!(
        got,
        Some(Versioned {
            value: doc,
            mod_revision: rev
        })
    );
    assert_eq!(get_json::<Doc>(&kv, b"none").await.unwrap(), None);
    kv.put(b"bad", b"not json").await.unwrap();
    assert!(matches!(
        get_json::<Doc>(&kv, b"bad").await,
        Err(KvError::Codec { .. })
    ));
}
