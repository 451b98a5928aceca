//! The GitHub client's gate and token source against the forge simulator: every request is
//! admitted and every snapshot seen; a secondary limit is reported before the client waits it
//! out; a 401 asks the token source once for a fresher token (an installation token that expired
//! mid-run); the token never goes to another host.

#![allow(clippy::unwrap_used)]

mod support;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{OWNER, endpoint, start};

use chrono::{DateTime, Utc};
use forge_sim::options::Failure;
use repovault_common::forge::github::{
    Admission, ForgeError, GitHubClient, GitHubEndpoint, RateGate, RateSnapshot, TokenSource,
    list_org_repos, mint_installation_token,
};
use repovault_common::secret::Secret;

#[derive(Default)]
struct CountingGate {
    admitted: AtomicU64,
    observed: parking_lot::Mutex<Vec<RateSnapshot>>,
    limited: parking_lot::Mutex<Vec<(DateTime<Utc>, bool)>>,
}

#[async_trait::async_trait]
impl RateGate for CountingGate {
    async fn admit(&self) -> Result<Admission, ForgeError> {
        self.admitted.fetch_add(1, Ordering::SeqCst);
        Ok(Admission::free())
    }
    fn observe(&self, snapshot: &RateSnapshot) {
        self.observed.lock().push(snapshot.clone());
    }
    async fn limited(&self, until: DateTime<Utc>, secondary: bool) {
        self.limited.lock().push((until, secondary));
    }
}

#[tokio::test]
async fn every_request_is_admitted_and_a_secondary_limit_is_reported_then_waited_out() {
    let sim = start().await;
    sim.sim().options.write().failures.push(Failure {
        method: String::new(),
        path_contains: "/orgs/acme/repos".into(),
        status: 403,
        count: 1,
        retry_after_secs: Some(2),
    });
    let gate = Arc::new(CountingGate::default());
    let c = GitHubClient::new(&endpoint(&sim), Secret::new(OWNER))
        .unwrap()
        .with_gate(gate.clone());
    let started = Instant::now();
    let before = Utc::now();
    let repos = list_org_repos(&c, "acme").await.unwrap();
    assert!(!repos.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "resumed no earlier than retry-after"
    );
    assert_eq!(gate.admitted.load(Ordering::SeqCst), c.requests());
    let limited = gate.limited.lock().clone();
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert!(limited[0].1, "a secondary limit");
    assert!(limited[0].0 >= before + chrono::Duration::seconds(2));
    let observed = gate.observed.lock().clone();
    assert!(!observed.is_empty());
    assert_eq!(observed[0].resource, "core");
    assert_eq!(sim.stats().secondary_refusals, 1);
}

/// A source that mints installation tokens, starting from a given one.
struct Minting {
    ep: GitHubEndpoint,
    app_id: u64,
    installation_id: u64,
    key: Secret,
    current: parking_lot::Mutex<Secret>,
    refreshes: AtomicU64,
}

#[async_trait::async_trait]
impl TokenSource for Minting {
    fn current(&self) -> Secret {
        self.current.lock().clone()
    }
    async fn refresh(&self, _rejected: &Secret) -> Option<Secret> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let (t, _) =
            mint_installation_token(&self.ep, self.app_id, &self.key, self.installation_id)
                .await
                .ok()?;
        *self.current.lock() = t.clone();
        Some(t)
    }
}

#[tokio::test]
async fn an_expired_installation_token_is_replaced_once_and_the_request_sent_again() {
    let sim = start().await;
    let ready = sim.ready().clone();
    let ep = endpoint(&sim);
    let key = Secret::new(std::fs::read_to_string(ready.app_private_key.unwrap()).unwrap());
    let (app_id, installation_id) = (ready.app_id.unwrap(), ready.installation_id.unwrap());
    let (first, _) = mint_installation_token(&ep, app_id, &key, installation_id)
        .await
        .unwrap();
    let source = Arc::new(Minting {
        ep: ep.clone(),
        app_id,
        installation_id,
        key,
        current: parking_lot::Mutex::new(first.clone()),
        refreshes: AtomicU64::new(0),
    });
    let c = GitHubClient::with_token_source(&ep, source.clone()).unwrap();
    list_org_repos(&c, "acme").await.unwrap();
    assert_eq!(source.refreshes.load(Ordering::SeqCst), 0);
    // The token expires mid-run.
    sim.sim()
        .world
        .lock()
        .tokens
        .get_mut(first.expose())
        .unwrap()
        .expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
    list_org_repos(&c, "acme").await.unwrap();
    assert_eq!(source.refreshes.load(Ordering::SeqCst), 1);
    assert_ne!(source.current().expose(), first.expose());

    // A source without a fresher token: the 401 is the answer.
    let fixed = GitHubClient::new(&ep, first.clone()).unwrap();
    let e = list_org_repos(&fixed, "acme").await.unwrap_err();
    assert_eq!(e.status(), Some(401));
}

#[tokio::test]
async fn the_token_goes_only_to_the_api_host() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sim = start().await;
    // Another host: a plain listener that records the request head.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await
            .unwrap();
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    });
    let c = GitHubClient::new(&endpoint(&sim), Secret::new(OWNER)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("elsewhere");
    let got = c
        .download(&format!("http://{addr}/elsewhere"), &dest)
        .await
        .unwrap();
    assert_eq!(got.size, 2);
    assert_eq!(std::fs::read(&dest).unwrap(), b"ok");
    let head = server.await.unwrap();
    assert!(head.starts_with("get /elsewhere"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
    assert!(!head.contains(&OWNER.to_ascii_lowercase()), "{head}");
    // The API host gets it (the owner sees the private repository).
    let repos = list_org_repos(&c, "acme").await.unwrap();
    assert!(repos.iter().any(|r| r.private));
}
