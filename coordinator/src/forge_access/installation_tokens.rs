//! GitHub App installation tokens: one cached token per installation, refreshed when less than
//! [`REFRESH_MARGIN`] remains. Concurrent requests for the same installation share one mint.
//!
//! Time is a parameter (a clock function), so the refresh rule is tested with explicit times.
//! Tokens live only in memory: a restarted coordinator mints new ones.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use repovault_common::secret::Secret;

/// A token is replaced when less than this remains (GitHub's installation tokens last an hour).
pub const REFRESH_MARGIN: TimeDelta = TimeDelta::minutes(10);

/// An installation on one GitHub instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstallationKey {
    pub api_url: String,
    pub app_id: u64,
    pub installation_id: u64,
}

/// A minted installation token.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
    /// When it was requested (the clock's time before the mint).
    pub minted_at: DateTime<Utc>,
}

/// Whether `cached` must be replaced at `now`: when less than [`REFRESH_MARGIN`] remains, or,
/// for a token that lives shorter than twice the margin (a test forge's expiring tokens), less
/// than half its lifetime. An expired token is always replaced.
pub fn needs_refresh(cached: &CachedToken, now: DateTime<Utc>) -> bool {
    let lifetime = cached.expires_at - cached.minted_at;
    let margin = REFRESH_MARGIN.min(lifetime / 2);
    cached.expires_at - now < margin.max(TimeDelta::zero()) || cached.expires_at <= now
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// The cache: one slot per installation, each behind an async lock held across a mint, so a
/// second request for the same installation waits for the first one's token instead of minting
/// its own.
#[derive(Default)]
pub struct TokenCache {
    slots: parking_lot::Mutex<HashMap<InstallationKey, Slot>>,
}

impl TokenCache {
    /// The installation's token: the cached one while it is fresh at `now()`, else one from
    /// `mint` (which answers the token and its expiry), cached. A failed mint caches nothing.
    pub async fn get<F, Fut, E>(
        &self,
        key: &InstallationKey,
        now: impl Fn() -> DateTime<Utc>,
        mint: F,
    ) -> Result<CachedToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, DateTime<Utc>), E>>,
    {
        let slot = self.slots.lock().entry(key.clone()).or_default().clone();
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && !needs_refresh(c, now())
        {
            return Ok(c.clone());
        }
        let minted_at = now();
        let (token, expires_at) = mint().await?;
        let fresh = CachedToken {
            token,
            expires_at,
            minted_at,
        };
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// The installation's token when one is cached and fresh at `now`, without waiting or
    /// minting (`None` while a mint is in flight).
    pub fn peek(&self, key: &InstallationKey, now: DateTime<Utc>) -> Option<CachedToken> {
        let slot = self.slots.lock().get(key)?.clone();
        let cached = slot.try_lock().ok()?;
        cached.as_ref().filter(|c| !needs_refresh(c, now)).cloned()
    }

    /// Drops the installation's token (the forge refused it, or the credential changed).
    pub fn forget(&self, key: &InstallationKey) {
        self.slots.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn t(min: i64, sec: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + min * 60 + sec, 0).expect("valid time")
    }

    fn token(minted: DateTime<Utc>, lifetime: TimeDelta) -> CachedToken {
        CachedToken {
            token: Secret::new("ghs_x"),
            expires_at: minted + lifetime,
            minted_at: minted,
        }
    }

    #[test]
    fn an_hour_token_is_kept_until_ten_minutes_remain() {
        let c = token(t(0, 0), TimeDelta::hours(1));
        assert!(!needs_refresh(&c, t(0, 0)));
        assert!(!needs_refresh(&c, t(49, 59)), "10 min 1 s remain");
        assert!(!needs_refresh(&c, t(50, 0)), "exactly 10 min remain");
        assert!(needs_refresh(&c, t(50, 1)), "less than 10 min remain");
        assert!(needs_refresh(&c, t(60, 0)), "expired");
        assert!(needs_refresh(&c, t(90, 0)));
    }

    #[test]
    fn a_short_lived_token_is_refreshed_at_half_its_life() {
        let c = token(t(0, 0), TimeDelta::seconds(20));
        assert!(!needs_refresh(&c, t(0, 9)));
        assert!(!needs_refresh(&c, t(0, 10)));
        assert!(needs_refresh(&c, t(0, 11)));
        let already_expired = token(t(0, 0), TimeDelta::seconds(-5));
        assert!(needs_refresh(&already_expired, t(0, 0)));
    }

    fn key(installation_id: u64) -> InstallationKey {
        InstallationKey {
            api_url: "https://github.example/api/v3".into(),
            app_id: 1,
            installation_id,
        }
    }

    #[tokio::test]
    async fn cached_until_the_refresh_rule_says_otherwise() {
        let cache = TokenCache::default();
        let mints = AtomicUsize::new(0);
        let mint = |at: DateTime<Utc>| {
            let n = mints.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, String>((Secret::new(format!("ghs_{n}")), at + TimeDelta::hours(1))) }
        };
        let a = cache
            .get(&key(1), || t(0, 0), || mint(t(0, 0)))
            .await
            .expect("mint");
        let b = cache
            .get(&key(1), || t(50, 0), || mint(t(50, 0)))
            .await
            .expect("cached");
        assert_eq!(a.token.expose(), b.token.expose());
        assert_eq!(mints.load(Ordering::SeqCst), 1);
        let c = cache
            .get(&key(1), || t(50, 1), || mint(t(50, 1)))
            .await
            .expect("refresh");
        assert_eq!(c.token.expose(), "ghs_1");
        assert_eq!(c.expires_at, t(110, 1));
        let other = cache
            .get(&key(2), || t(50, 1), || mint(t(50, 1)))
            .await
            .expect("other installation");
        assert_eq!(other.token.expose(), "ghs_2", "one token per installation");
        cache.forget(&key(2));
        let again = cache
            .get(&key(2), || t(50, 2), || mint(t(50, 2)))
            .await
            .expect("after forget");
        assert_eq!(again.token.expose(), "ghs_3");
        assert!(cache.peek(&key(2), t(50, 3)).is_some());
        assert!(
            cache.peek(&key(2), t(100, 3)).is_none(),
            "stale: not handed out"
        );
        assert!(cache.peek(&key(3), t(0, 0)).is_none());
    }

    #[tokio::test]
    async fn a_failed_mint_caches_nothing() {
        let cache = TokenCache::default();
        let e = cache
            .get(
                &key(1),
                || t(0, 0),
                || async { Err::<(Secret, DateTime<Utc>), _>("refused") },
            )
            .await
            .expect_err("fails");
        assert_eq!(e, "refused");
        let ok = cache
            .get(
                &key(1),
                || t(0, 1),
                || async { Ok::<_, &str>((Secret::new("ghs_ok"), t(60, 0))) },
            )
            .await
            .expect("then mints");
        assert_eq!(ok.token.expose(), "ghs_ok");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_share_one_mint() {
        let cache = Arc::new(TokenCache::default());
        let mints = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let cache = cache.clone();
            let mints = mints.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(
                        &key(1),
                        || t(0, 0),
                        || async move {
                            mints.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            Ok::<_, String>((Secret::new("ghs_shared"), t(60, 0)))
                        },
                    )
                    .await
            }));
        }
        for task in tasks {
            let tok = task.await.expect("joins").expect("token");
            assert_eq!(tok.token.expose(), "ghs_shared");
        }
        assert_eq!(mints.load(Ordering::SeqCst), 1);
    }
}
