//! Rate-limit state as GitHub reports it (`x-ratelimit-*` headers), the gate through which a
//! fleet-wide budget (the coordinator's, `coordinator/src/rate_budget.rs`) admits every
//! request, sees every snapshot and pauses requests, and the source a client takes its token
//! from per request.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::forge::ForgeError;
use crate::secret::Secret;

/// One reading of GitHub's `x-ratelimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateSnapshot {
    /// `x-ratelimit-limit`: requests per window.
    pub limit: u64,
    /// `x-ratelimit-remaining`.
    pub remaining: u64,
    /// `x-ratelimit-reset`: when the window resets, in seconds since the Unix epoch.
    pub reset: i64,
    /// `x-ratelimit-used` (0 when absent).
    pub used: u64,
    /// `x-ratelimit-resource` (`core`, `search`, ...; `core` when absent).
    pub resource: String,
}

impl RateSnapshot {
    /// The snapshot in `headers`, when they carry limit, remaining and reset.
    pub fn from_headers(headers: &HeaderMap) -> Option<RateSnapshot> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Some(RateSnapshot {
            limit: get("x-ratelimit-limit")?.parse().ok()?,
            remaining: get("x-ratelimit-remaining")?.parse().ok()?,
            reset: get("x-ratelimit-reset")?.parse().ok()?,
            used: get("x-ratelimit-used")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            resource: get("x-ratelimit-resource")
                .unwrap_or(BUDGETED_RESOURCE)
                .to_string(),
        })
    }

    /// The reset as a time.
    pub fn reset_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.reset, 0)
    }

    /// Whether this reading is of the limit the fleet's budget shares per credential (see
    /// [`budgeted_resource`]); readings of other resources are not the budget's.
    pub fn is_budgeted(&self) -> bool {
        budgeted_resource(&self.resource)
    }
}

/// The resource GitHub's REST requests count against (`x-ratelimit-resource: core`); search,
/// GraphQL and the others have limits of their own that the budget does not track.
pub const BUDGETED_RESOURCE: &str = "core";

/// Whether a reading of `resource` is of the budgeted limit ([`BUDGETED_RESOURCE`]); empty: a
/// reader that did not say, taken as that one (GitHub's own default when the header is absent).
pub fn budgeted_resource(resource: &str) -> bool {
    resource.is_empty() || resource == BUDGETED_RESOURCE
}

/// A synchronous hook (kept for simple observers; see [`RateGate`] for the budget's gate).
/// A [`super::GitHubClient`] calls [`RateObserver::pause_until`]
/// before every request (and sleeps until the time it names, if in the future), reports every
/// snapshot it reads to [`RateObserver::observe`], and reports the waits GitHub imposes to
/// [`RateObserver::limited`], so one worker's secondary limit can pause its peers.
pub trait RateObserver: Send + Sync {
    /// Called with the `x-ratelimit-*` headers of every answer that has them.
    fn observe(&self, snapshot: &RateSnapshot);

    /// Requests are held until this time (a fleet-wide pause). `None`: go ahead.
    fn pause_until(&self) -> Option<DateTime<Utc>> {
        None
    }

    /// GitHub refused a request for a rate limit and the client waits until `until`
    /// (`secondary`: a `retry-after` or secondary-limit refusal, else the primary limit).
    fn limited(&self, until: DateTime<Utc>, secondary: bool) {
        let _ = (until, secondary);
    }
}

/// What [`RateGate::admit`] hands back: held while the request is in flight (dropping it tells
/// the gate the request ended), so a gate can cap requests in flight.
#[must_use = "the admission is held for as long as the request is in flight"]
pub struct Admission {
    _guard: Option<Box<dyn Send>>,
}

impl Admission {
    /// An admission with nothing to release.
    pub fn free() -> Admission {
        Admission { _guard: None }
    }

    /// An admission that drops `guard` when the request ends (a semaphore permit, a counter).
    pub fn holding(guard: impl Send + 'static) -> Admission {
        Admission {
            _guard: Some(Box::new(guard)),
        }
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission")
    }
}

/// The gate of a rate budget (the coordinator's, fleet-wide: `coordinator/src/rate_budget.rs`). A
/// [`super::GitHubClient`] with a gate:
/// - awaits [`RateGate::admit`] before every request it sends to the API's host (retries
///   included; requests elsewhere, such as a redirect's target, cost GitHub nothing) and holds
///   the [`Admission`] until the answer is read and its snapshot reported; an error fails the
///   call without sending;
/// - reports every `x-ratelimit-*` snapshot of an API answer to [`RateGate::observe`], before
///   that request's admission ends (an answer without the headers is reported nowhere);
/// - reports every wait GitHub imposes to [`RateGate::limited`] before it waits, so one
///   worker's secondary limit can pause its peers.
#[async_trait::async_trait]
pub trait RateGate: Send + Sync {
    /// Waits until one request may be sent: no pause in force and a permit of the budget.
    async fn admit(&self) -> Result<Admission, ForgeError>;

    /// Called with the `x-ratelimit-*` headers of every answer that has them.
    fn observe(&self, snapshot: &RateSnapshot);

    /// GitHub refused a request for a rate limit; the client waits until `until`
    /// (`secondary`: a `retry-after` or secondary-limit refusal, else the primary limit).
    async fn limited(&self, until: DateTime<Utc>, secondary: bool);
}

/// Where a client gets the token it sends. The `Authorization` header of every request is set
/// from [`TokenSource::current`] at the time it is sent, so a token replaced mid-task (a fresh
/// installation token) is used from the next request on.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// The token to send now.
    fn current(&self) -> Secret;

    /// GitHub refused `rejected` (401). A different, fresher token to retry with, or `None`
    /// when there is none (the 401 then fails the call). The client asks once per request.
    async fn refresh(&self, rejected: &Secret) -> Option<Secret>;
}

/// A token that never changes (a personal token, or an installation token used briefly).
pub struct StaticToken(pub Secret);

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    fn current(&self) -> Secret {
        self.0.clone()
    }

    async fn refresh(&self, _rejected: &Secret) -> Option<Secret> {
        None
    }
}

/// A [`RateObserver`] as a gate: admits after its pause, never fails.
pub(crate) struct ObserverGate(pub(crate) std::sync::Arc<dyn RateObserver>);

#[async_trait::async_trait]
impl RateGate for ObserverGate {
    async fn admit(&self) -> Result<Admission, ForgeError> {
        while let Some(until) = self.0.pause_until() {
            match (until - Utc::now()).to_std() {
                Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                _ => break,
            }
        }
        Ok(Admission::free())
    }

    fn observe(&self, snapshot: &RateSnapshot) {
        self.0.observe(snapshot);
    }

    async fn limited(&self, until: DateTime<Utc>, secondary: bool) {
        self.0.limited(until, secondary);
    }
}

/// A stable, non-secret id of a token credential: `token:` and the first 16 hex digits of
/// SHA-256 over a domain tag and the token. Equal tokens get equal ids (organisations sharing a
/// token share one budget); the id reveals nothing usable about the token.
pub fn token_credential_id(token: &Secret) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"repovault-credential-id\0");
    h.update(token.expose().as_bytes());
    let digest = h.finalize();
    format!("token:{}", hex::encode(&digest[..8]))
}

/// The id of a GitHub App installation's credential: `app:APP_ID:INSTALLATION_ID` (every token
/// minted for the installation shares the installation's limit).
pub fn app_credential_id(app_id: u64, installation_id: u64) -> String {
    format!("app:{app_id}:{installation_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_ids_are_stable_and_hide_the_token() {
        let a = token_credential_id(&Secret::new("ghp_SECRETSECRET"));
        assert_eq!(a, token_credential_id(&Secret::new("ghp_SECRETSECRET")));
        assert_ne!(a, token_credential_id(&Secret::new("ghp_other")));
        assert!(
            a.starts_with("token:") && a.len() == "token:".len() + 16,
            "{a}"
        );
        assert!(!a.contains("SECRET"));
        assert_eq!(app_credential_id(7, 9), "app:7:9");
    }

    #[test]
    fn only_core_readings_are_the_budgets() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", "5000".parse().expect("value"));
        headers.insert("x-ratelimit-remaining", "4999".parse().expect("value"));
        headers.insert("x-ratelimit-reset", "1700000000".parse().expect("value"));
        let unnamed = RateSnapshot::from_headers(&headers).expect("a reading");
        assert_eq!(unnamed.resource, "core", "GitHub's default when unnamed");
        assert!(unnamed.is_budgeted());
        headers.insert("x-ratelimit-resource", "search".parse().expect("value"));
        let search = RateSnapshot::from_headers(&headers).expect("a reading");
        assert!(!search.is_budgeted(), "search has a limit of its own");
    }
}
