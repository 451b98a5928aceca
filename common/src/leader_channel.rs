//! A gRPC channel to a coordinator group: given the group's addresses, calls go to the one
//! believed to lead, and the belief follows what the group says.
//!
//! A follower answers every worker and admin call with UNAVAILABLE and names the leader's URL in
//! the [`LEADER_HEADER`] metadata; a coordinator that is down refuses the connection. The
//! channel moves its target on either: to the named leader when that URL is one of the
//! configured addresses, else to the next address. The call that met the follower or the dead
//! address still fails (its request is gone); callers retry as they do for any unavailable
//! coordinator, and the retry reaches the leader.
//!
//! Only configured addresses are ever contacted: a follower's answer cannot send a worker's join
//! token to a host the operator did not name (a leader advertising an address the client does
//! not know is logged, and the client keeps cycling through its own list).

use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::transport::Channel;

/// The metadata in which a follower names the leader's gRPC URL.
pub const LEADER_HEADER: &str = "repovault-leader";

/// Splits a `--coordinator` value: one URL, or several separated by commas.
pub fn split_urls(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// See the module documentation. Cheap to clone; clones share the target.
#[derive(Clone)]
pub struct LeaderChannel {
    shared: Arc<Shared>,
}

struct Shared {
    urls: Vec<String>,
    channels: Vec<Channel>,
    current: Mutex<usize>,
}

impl LeaderChannel {
    /// A channel over `targets`, each a URL with its (lazily connecting: a dead address must
    /// not hold the others up) channel. Starts at the first.
    pub fn new(targets: Vec<(String, Channel)>) -> Self {
        let (urls, channels) = targets.into_iter().unzip();
        Self {
            shared: Arc::new(Shared {
                urls,
                channels,
                current: Mutex::new(0),
            }),
        }
    }

    /// The URL calls go to now.
    pub fn current_url(&self) -> String {
        let i = *self.shared.current.lock();
        self.shared.urls.get(i).cloned().unwrap_or_default()
    }

    /// All the configured URLs, comma-separated (for messages).
    pub fn urls(&self) -> String {
        self.shared.urls.join(",")
    }
}

impl Shared {
    /// After the call sent to `from` met a follower naming `leader`.
    fn follow(&self, from: usize, leader: &str) {
        let mut current = self.current.lock();
        if *current != from {
            return;
        }
        match self.urls.iter().position(|u| same_url(u, leader)) {
            Some(i) => *current = i,
            None => {
                tracing::warn!(
                    leader,
                    "the coordinators' leader advertises an address that is not among the configured ones; add it to --coordinator"
                );
                *current = (from + 1) % self.urls.len().max(1);
            }
        }
    }

    /// After the call sent to `from` found nothing answering there.
    fn advance(&self, from: usize) {
        let mut current = self.current.lock();
        if *current == from {
            *current = (from + 1) % self.urls.len().max(1);
        }
    }
}

/// URLs equal but for a trailing slash.
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl Service<http::Request<Body>> for LeaderChannel {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited on the chosen channel in `call`: which one is chosen is known
        // only then.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        let from = *shared.current.lock();
        let channel = shared.channels.get(from).cloned();
        Box::pin(async move {
            let mut channel = channel.ok_or("no coordinator address is configured")?;
            futures::future::poll_fn(|cx| channel.poll_ready(cx))
                .await
                .inspect_err(|_| shared.advance(from))?;
            match channel.call(req).await {
                Ok(resp) => {
                    if let Some(leader) = resp
                        .headers()
                        .get(LEADER_HEADER)
                        .and_then(|v| v.to_str().ok())
                    {
                        shared.follow(from, leader);
                    }
                    Ok(resp)
                }
                Err(e) => {
                    shared.advance(from);
                    Err(e.into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(urls: &[&str]) -> Shared {
        Shared {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            channels: Vec::new(),
            current: Mutex::new(0),
        }
    }

    #[test]
    fn a_named_leader_is_followed_only_among_the_configured_addresses() {
        let s = shared(&["http://a:1", "http://b:1", "http://c:1"]);
        s.follow(0, "http://c:1/");
        assert_eq!(*s.current.lock(), 2);
        // Unknown address: the next configured one, never the named one.
        s.follow(2, "http://evil:1");
        assert_eq!(*s.current.lock(), 0);
        // A late answer from a target no longer current changes nothing.
        s.follow(1, "http://b:1");
        assert_eq!(*s.current.lock(), 0);
    }

    #[test]
    fn a_dead_address_moves_the_target_on_once() {
        let s = shared(&["http://a:1", "http://b:1"]);
        s.advance(0);
        s.advance(0);
        assert_eq!(*s.current.lock(), 1);
        s.advance(1);
        assert_eq!(*s.current.lock(), 0);
    }

    #[test]
    fn several_addresses_are_split_on_commas() {
        assert_eq!(
            split_urls("http://a:1, http://b:1,"),
            vec!["http://a:1".to_string(), "http://b:1".to_string()]
        );
        assert_eq!(split_urls("http://a:1"), vec!["http://a:1".to_string()]);
    }
}
