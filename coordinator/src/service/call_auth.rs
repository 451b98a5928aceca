//! The worker API's door: every call must present a join token (`authorization: Bearer
//! <token>`), either the configured one (the pool `bootstrap`, compared in constant time) or an
//! active pool token (`worker_pools/`: looked up by its hash in memory, never in the store). It
//! is never logged. With `tls.require_worker_cert`, the call's connection must also have
//! presented a client certificate that the TLS handshake verified against `tls.client_ca_file`.
//! A refused call is answered UNAUTHENTICATED and logged and audited with the caller's address
//! and the method, rate-limited per address (`refusals.rs`). An admitted call carries the
//! token's [`JoinIdentity`] (pool, token id) in its extensions, for the worker service.
//!
//! A tower wrapper rather than a tonic interceptor, because only there is the called method
//! (the request path) and the connection's address known.

use std::sync::Arc;
use std::task::{Context, Poll};

use repovault_common::crypto::constant_time_eq;
use repovault_common::secret::Secret;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use super::refusals::{RefusalLog, Refused, peer_of};
use crate::clock::Clock;
use crate::worker_pools::{JoinDoor, JoinIdentity, JoinRefusal};

/// Who a presented bearer token admits at `now_ms`: the configured join token (`bootstrap`)
/// or an active pool token the door knows.
pub fn admit(
    bootstrap: &Secret,
    door: &JoinDoor,
    bearer: Option<&str>,
    now_ms: i64,
) -> Result<JoinIdentity, JoinRefusal> {
    let presented = bearer.ok_or(JoinRefusal::Missing)?;
    if constant_time_eq(presented.as_bytes(), bootstrap.expose().as_bytes()) {
        return Ok(JoinIdentity::bootstrap());
    }
    door.admit(presented, now_ms)
}

/// Whether the call's connection presented a client certificate. With a client CA configured,
/// rustls verifies a presented certificate during the handshake (one it cannot verify ends the
/// connection), so a certificate here is a verified one.
pub fn has_client_certificate(ext: &http::Extensions) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    ext.get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())
        .is_some_and(|certs| !certs.is_empty())
}

/// What the door checks, shared by every clone of the guard.
pub struct JoinCheck {
    /// The configured join token (pool `bootstrap`).
    pub bootstrap: Secret,
    /// Pool tokens (`worker_pools::WorkerPools::door`).
    pub door: Arc<JoinDoor>,
    /// `tls.require_worker_cert`: refuse calls whose connection presented no client certificate.
    pub require_client_certificate: bool,
    pub clock: Arc<dyn Clock>,
}

#[derive(Clone)]
pub struct JoinGuard<S> {
    inner: S,
    check: Arc<JoinCheck>,
    refusals: Arc<RefusalLog>,
}

impl<S> JoinGuard<S> {
    pub fn new(inner: S, check: JoinCheck, refusals: Arc<RefusalLog>) -> Self {
        JoinGuard {
            inner,
            check: Arc::new(check),
            refusals,
        }
    }
}

impl<S: NamedService> NamedService for JoinGuard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for JoinGuard<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let bearer = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let c = &self.check;
        let checked = if c.require_client_certificate && !has_client_certificate(req.extensions()) {
            Err(JoinRefusal::NoClientCertificate)
        } else {
            admit(&c.bootstrap, &c.door, bearer, c.clock.now_ms())
        };
        // The clone may not be ready; take the one that was polled ready (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match checked {
            Ok(identity) => {
                req.extensions_mut().insert(identity);
                Box::pin(async move { inner.call(req).await })
            }
            Err(refusal) => {
                let method = req
                    .uri()
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let peer = peer_of(req.extensions());
                let refusals = self.refusals.clone();
                Box::pin(async move {
                    refusals
                        .refused(Refused {
                            peer,
                            method,
                            caller: refusal.caller(),
                            role: "worker".into(),
                            reason: refusal.to_string(),
                        })
                        .await;
                    Ok(tonic::Status::unauthenticated(refusal.to_string()).into_http())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker_pools::join_door::DoorEntry;
    use crate::worker_pools::token_plan::mint;

    #[test]
    fn the_configured_token_and_active_pool_tokens_are_admitted_and_refusals_never_name_them() {
        let t = Secret::new("join-0123456789");
        let door = JoinDoor::default();
        assert_eq!(
            admit(&t, &door, Some("join-0123456789"), 0),
            Ok(JoinIdentity::bootstrap())
        );
        assert_eq!(
            admit(&t, &door, Some("join-9999"), 0),
            Err(JoinRefusal::Wrong)
        );
        assert_eq!(admit(&t, &door, None, 0), Err(JoinRefusal::Missing));
        assert!(!JoinRefusal::Wrong.to_string().contains("join-"));
        let pool = mint(&mut rand::rng());
        let presented = Some(pool.secret.expose());
        assert_eq!(admit(&t, &door, presented, 0), Err(JoinRefusal::Wrong));
        door.insert(
            pool.hash,
            DoorEntry {
                id: "jt0123456789".into(),
                pool: "burst".into(),
                expires_at_ms: None,
                revoked: false,
            },
        );
        assert_eq!(
            admit(&t, &door, presented, 0).map(|i| i.pool),
            Ok("burst".to_string())
        );
        door.revoke("jt0123456789");
        let refused = admit(&t, &door, presented, 0).expect_err("refused");
        assert!(matches!(refused, JoinRefusal::Revoked { .. }));
        assert!(!refused.to_string().contains(&pool.secret.expose()[4..]));
        // The configured token still works beside them.
        assert!(admit(&t, &door, Some("join-0123456789"), 0).is_ok());
        // No TLS connection information: no client certificate.
        assert!(!has_client_certificate(&http::Extensions::new()));
    }
}
