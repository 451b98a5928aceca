//! Refused calls, on both services: a missing or unknown admin token, a role too low, a wrong
//! join token. Each is logged (warning) and written to the audit log with the caller's address
//! and the method, never the token, so guessing tokens leaves a trace.
//!
//! Rate-limited per peer address (the IP: a client reconnecting gets a new port): at most
//! [`PER_PEER`] refusals per [`WINDOW`] are logged and audited one by one; the rest of that
//! window are only counted, and one summary entry ("and K more refused calls") is written when
//! the window is over (by the next refusal from that address, or by [`RefusalLog::flush`],
//! which the server runs every window). So a flood of bad tokens costs at most `PER_PEER + 1`
//! entries per address per minute, and at most [`MAX_PEERS`] addresses are tracked at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use parking_lot::Mutex;
use tonic::codegen::http;

use crate::audit::{AuditEntry, AuditLog};
use crate::clock::system_now_ms as now_ms;

/// Refusals per peer address per window audited and logged one by one: enough to see what a
/// misconfigured client or a guesser tried (a CLI retry, a worker's heartbeats), few enough that
/// a flood cannot fill the log.
pub const PER_PEER: u32 = 10;
/// The rate-limiting window: a minute, so a summary follows a flood within a minute.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once (about 100 bytes each). Past this, refusals from new addresses
/// share one bucket (an attacker spreading over many addresses is still counted and
/// summarised, just not per address).
pub const MAX_PEERS: usize = 4096;

/// The peer of a call, as tonic's transport records it (plain TCP or TLS).
pub fn peer_of(ext: &http::Extensions) -> Option<SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    ext.get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

/// Who was refused, as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub peer: Option<SocketAddr>,
    /// The RPC, e.g. `DeleteBackup` or `RegisterWorker`.
    pub method: String,
    /// A configured token's name, or what was presented: `(no token)`, `(unknown token)`,
    /// `(wrong join token)`.
    pub caller: String,
    /// The caller's role, or `none` / `worker`.
    pub role: String,
    /// Why (never containing the token).
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PeerKey {
    Ip(IpAddr),
    Unknown,
    /// Everyone past [`MAX_PEERS`].
    Overflow,
}

impl PeerKey {
    fn describe(self) -> String {
        match self {
            PeerKey::Ip(ip) => ip.to_string(),
            PeerKey::Unknown => "an unknown address".into(),
            PeerKey::Overflow => "other addresses".into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    window_start_ms: i64,
    recorded: u32,
    suppressed: u64,
}

/// A window that ended with refusals left out: one summary entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub peer: String,
    pub window_start_ms: i64,
    pub suppressed: u64,
}

/// The pure rate limiter (time comes in as an argument).
#[derive(Debug, Default)]
pub struct Limiter {
    peers: HashMap<PeerKey, Bucket>,
}

impl Limiter {
    /// Counts one refusal from `peer` at `now_ms`: whether to record it one by one, and the
    /// summary of that peer's previous window when it just ended with refusals left out.
    pub fn admit(&mut self, peer: Option<IpAddr>, now_ms: i64) -> (bool, Option<Summary>) {
        let window = window_ms();
        let mut key = peer.map_or(PeerKey::Unknown, PeerKey::Ip);
        if !self.peers.contains_key(&key) && self.peers.len() >= MAX_PEERS {
            self.expire(now_ms);
            if self.peers.len() >= MAX_PEERS {
                key = PeerKey::Overflow;
            }
        }
        let fresh = Bucket {
            window_start_ms: now_ms,
            recorded: 0,
            suppressed: 0,
        };
        let b = self.peers.entry(key).or_insert(fresh);
        let mut summary = None;
        if now_ms.saturating_sub(b.window_start_ms) >= window {
            summary = summary_of(key, b);
            *b = fresh;
        }
        if b.recorded < PER_PEER {
            b.recorded += 1;
            (true, summary)
        } else {
            b.suppressed += 1;
            (false, summary)
        }
    }

    /// Ends every window that is over at `now_ms`: the summaries of those with refusals left
    /// out; their peers are forgotten.
    pub fn flush(&mut self, now_ms: i64) -> Vec<Summary> {
        let window = window_ms();
        let mut out = Vec::new();
        self.peers.retain(|k, b| {
            if now_ms.saturating_sub(b.window_start_ms) < window {
                return true;
            }
            out.extend(summary_of(*k, b));
            false
        });
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    /// Forgets peers whose window is over and left nothing out (nothing to summarise).
    fn expire(&mut self, now_ms: i64) {
        let window = window_ms();
        self.peers
            .retain(|_, b| now_ms.saturating_sub(b.window_start_ms) < window || b.suppressed > 0);
    }
}

fn window_ms() -> i64 {
    i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX)
}

fn summary_of(key: PeerKey, b: &Bucket) -> Option<Summary> {
    (b.suppressed > 0).then(|| Summary {
        peer: key.describe(),
        window_start_ms: b.window_start_ms,
        suppressed: b.suppressed,
    })
}

/// The limiter and the audit log it writes to; shared by both services' guards.
pub struct RefusalLog {
    audit: AuditLog,
    limiter: Mutex<Limiter>,
}

impl RefusalLog {
    pub fn new(audit: AuditLog) -> Self {
        RefusalLog {
            audit,
            limiter: Mutex::new(Limiter::default()),
        }
    }

    /// Logs and audits one refused call (within the rate limit; see the module).
    pub async fn refused(&self, r: Refused) {
        metrics::counter!("repovault_refused_calls_total", "method" => r.method.clone())
            .increment(1);
        let now = now_ms();
        let (record, summary) = self.limiter.lock().admit(r.peer.map(|p| p.ip()), now);
        if let Some(s) = summary {
            self.write_summary(&s).await;
        }
        if !record {
            return;
        }
        let peer = r.peer.map(|p| p.to_string()).unwrap_or_default();
        tracing::warn!(peer = %peer, method = %r.method, caller = %r.caller, reason = %r.reason, "call refused");
        self.append(AuditEntry {
            at_ms: now,
            caller: r.caller,
            role: r.role,
            method: r.method,
            outcome: format!("refused: {}", r.reason),
            peer,
            detail: String::new(),
        })
        .await;
    }

    /// Writes the summaries of the windows over at `now_ms` (the server calls it every
    /// [`WINDOW`]).
    pub async fn flush(&self, now_ms: i64) {
        let summaries = self.limiter.lock().flush(now_ms);
        for s in summaries {
            self.write_summary(&s).await;
        }
    }

    async fn write_summary(&self, s: &Summary) {
        let outcome = format!(
            "refused: and {} more refused calls from {} in the minute from {} (not listed one by one)",
            s.suppressed,
            s.peer,
            crate::clock::format_ms(s.window_start_ms)
        );
        tracing::warn!(peer = %s.peer, suppressed = s.suppressed, "more calls refused");
        self.append(AuditEntry {
            at_ms: now_ms(),
            caller: "-".into(),
            role: "-".into(),
            method: "-".into(),
            outcome,
            peer: s.peer.clone(),
            detail: String::new(),
        })
        .await;
    }

    async fn append(&self, entry: AuditEntry) {
        if let Err(e) = self.audit.append(&entry).await {
            tracing::error!(error = %e, method = %entry.method, "could not write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn a_flood_is_recorded_up_to_the_limit_then_summarised_once() {
        let mut l = Limiter::default();
        let t0 = 1_000_000;
        for i in 0..PER_PEER {
            assert_eq!(l.admit(ip("10.0.0.1"), t0 + i64::from(i)), (true, None));
        }
        for i in 0..500 {
            assert_eq!(l.admit(ip("10.0.0.1"), t0 + 100 + i), (false, None));
        }
        // Another address has its own allowance.
        assert_eq!(l.admit(ip("10.0.0.2"), t0 + 200), (true, None));
        // Within the window nothing is summarised yet.
        assert!(l.flush(t0 + MIN - 1).is_empty());
        // The window is over: one summary for the flooding address, none for the other.
        let s = l.flush(t0 + MIN);
        assert_eq!(
            s,
            vec![Summary {
                peer: "10.0.0.1".into(),
                window_start_ms: t0,
                suppressed: 500,
            }]
        );
        assert!(l.flush(t0 + 2 * MIN).is_empty(), "summarised once");
        // A new window allows PER_PEER again.
        assert_eq!(l.admit(ip("10.0.0.1"), t0 + 3 * MIN), (true, None));
    }

    #[test]
    fn the_next_refusal_after_the_window_brings_the_summary() {
        let mut l = Limiter::default();
        for _ in 0..PER_PEER + 3 {
            l.admit(None, 0);
        }
        let (record, summary) = l.admit(None, MIN);
        assert!(record);
        assert_eq!(summary.map(|s| s.suppressed), Some(3));
    }

    #[test]
    fn memory_is_bounded_under_many_addresses() {
        let mut l = Limiter::default();
        for i in 0..(MAX_PEERS as u32 + 50) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.admit(Some(a), 0);
        }
        assert!(l.peers.len() <= MAX_PEERS + 1);
        // The overflow bucket is limited like one address.
        let overflow = l.peers.get(&PeerKey::Overflow).copied().expect("overflow");
        assert_eq!(overflow.recorded, PER_PEER);
        assert_eq!(overflow.suppressed, 50 - u64::from(PER_PEER));
    }
}
