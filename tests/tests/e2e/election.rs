//! The coordinator group's election on a real etcd: a fenced store behaves exactly as the plain
//! one while its term lasts (the whole key-value conformance suite), refuses every write once
//! a newer term began, and says so; two campaigns elect one leader, the other sees who, and a
//! resignation hands over within a poll.

use std::sync::Arc;
use std::time::Duration;

use repovault_coordinator::kv::{Campaign, EtcdKv, KvBackend, KvError, kv_conformance};
use repovault_coordinator::leadership::etcd_election::{EtcdElection, LEADER_KEY};
use repovault_coordinator::leadership::{Election, ElectionTiming, LeaderRecord, LeaderView};
use repovault_tests::etcd_peer::EtcdPeer;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fenced_store_is_the_store_while_its_term_lasts_and_refuses_writes_after() {
    let etcd = EtcdPeer::start().await.unwrap();
    let kv = EtcdKv::connect_with(&etcd.options("fence/", None).unwrap())
        .await
        .unwrap();
    let first = kv.grant_lease(Duration::from_secs(30)).await.unwrap();
    let Campaign::Won { term } = kv.campaign(LEADER_KEY, b"a", first).await.unwrap() else {
        panic!("the first campaign on an empty store must win");
    };
    let lost = CancellationToken::new();
    let fenced = kv.fenced(LEADER_KEY, term, lost.clone());

    // Nested in the fence, every transaction keeps its meaning: the whole suite passes.
    kv_conformance::run_all(Arc::new(fenced.clone())).await;
    fenced.put(b"data/x", b"1").await.unwrap();
    assert!(!lost.is_cancelled());

    // A second campaign while the key is held loses and reads the holder.
    let second = kv.grant_lease(Duration::from_secs(30)).await.unwrap();
    match kv.campaign(LEADER_KEY, b"b", second).await.unwrap() {
        Campaign::Held(Some(h)) => assert_eq!(h.value, b"a".to_vec()),
        other => panic!("a held key must be reported: {other:?}"),
    }

    // The first term ends (its lease revoked, as when it lapses) and the second wins.
    kv.revoke_lease(first).await.unwrap();
    let Campaign::Won { term: newer } = kv.campaign(LEADER_KEY, b"b", second).await.unwrap() else {
        panic!("the vacancy must be won");
    };
    assert!(newer > term);

    // The old term's store can no longer write anything, and says why.
    let refused = fenced.put(b"data/x", b"2").await.unwrap_err();
    assert!(
        matches!(refused, KvError::Deposed { term: t } if t == term),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("no longer the leader"));
    assert!(lost.is_cancelled(), "the refusal tells the term's owner");
    assert_eq!(
        kv.get(b"data/x").await.unwrap().map(|k| k.value),
        Some(b"1".to_vec()),
        "nothing of the refused write landed"
    );
    // The typed store's check before an irreversible step outside it says the same.
    let old_store = repovault_coordinator::store::Store::new(Arc::new(fenced.clone()));
    let check = old_store.confirm_term().await.unwrap_err();
    assert!(
        check.to_string().contains("no longer the leader"),
        "{check}"
    );
    // Reads still work; the new term's store writes.
    assert!(fenced.get(b"data/x").await.unwrap().is_some());
    let current = kv.fenced(LEADER_KEY, newer, CancellationToken::new());
    let before = kv.revision().await.unwrap();
    repovault_coordinator::store::Store::new(Arc::new(current.clone()))
        .confirm_term()
        .await
        .unwrap();
    assert_eq!(
        kv.revision().await.unwrap(),
        before,
        "the check writes nothing"
    );
    current.put(b"data/x", b"3").await.unwrap();
    assert_eq!(
        kv.get(b"data/x").await.unwrap().map(|k| k.value),
        Some(b"3".to_vec())
    );
    // A resignation deletes only its own term's key.
    assert!(!kv.delete_if_term(LEADER_KEY, term).await.unwrap());
    assert!(kv.delete_if_term(LEADER_KEY, newer).await.unwrap());
}

fn record(name: &str) -> LeaderRecord {
    LeaderRecord {
        name: name.into(),
        grpc_url: format!("http://{name}.test:7420"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_campaigns_elect_one_leader_and_a_resignation_hands_over_within_a_poll() {
    let etcd = EtcdPeer::start().await.unwrap();
    let kv = EtcdKv::connect_with(&etcd.options("elect/", None).unwrap())
        .await
        .unwrap();
    let timing = ElectionTiming {
        ttl: Duration::from_secs(2),
    };
    let a = EtcdElection::new(kv.clone(), timing);
    let b = Arc::new(EtcdElection::new(kv.clone(), timing));
    let stop = CancellationToken::new();
    let seen_a = LeaderView::default();
    let term_a = a.campaign(&record("a"), &seen_a, &stop).await.unwrap();

    let seen_b = LeaderView::default();
    let waiting = {
        let (b, seen_b, stop) = (b.clone(), seen_b.clone(), stop.clone());
        tokio::spawn(async move { b.campaign(&record("b"), &seen_b, &stop).await })
    };
    // Longer than the TTL: a's keep-alive holds the key, b waits and knows who leads.
    tokio::time::sleep(timing.ttl * 2).await;
    assert!(
        !waiting.is_finished(),
        "b must not be elected while a leads"
    );
    assert_eq!(seen_b.get(), Some(record("a")));
    assert!(!term_a.lost.is_cancelled());

    let resigned = tokio::time::Instant::now();
    term_a.resign().await;
    let term_b = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("b is elected after a resigns")
        .unwrap()
        .unwrap();
    assert!(
        resigned.elapsed() < timing.poll_every() + Duration::from_secs(1),
        "a resignation hands over within a poll, not a TTL: {:?}",
        resigned.elapsed()
    );
    assert_eq!(seen_b.get(), Some(record("b")));

    // A campaign stopped while waiting gives up and leaves no key behind.
    let c = EtcdElection::new(kv.clone(), timing);
    let stop_c = CancellationToken::new();
    let cancel = stop_c.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
    });
    assert!(
        c.campaign(&record("c"), &LeaderView::default(), &stop_c)
            .await
            .is_none()
    );
    term_b.resign().await;
    assert_eq!(kv.get(LEADER_KEY).await.unwrap(), None);
}
