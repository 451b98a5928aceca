//! The worker API's door: every call must present the join token (`authorization: Bearer
//! <token>`), compared in constant time and never logged. A refused call is answered
//! UNAUTHENTICATED and logged and audited with the caller's address and the method,
//! rate-limited per address (`refusals.rs`).
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

/// Why a worker call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error("this call needs the join token (authorization: Bearer ...)")]
    Missing,
    #[error("the join token is wrong")]
    Wrong,
}

/// Checks a presented bearer token against the join token.
pub fn check_join_token(expected: &Secret, bearer: Option<&str>) -> Result<(), JoinRefusal> {
    match bearer {
        Some(p) if constant_time_eq(p.as_bytes(), expected.expose().as_bytes()) => Ok(()),
        Some(_) => Err(JoinRefusal::Wrong),
        None => Err(JoinRefusal::Missing),
    }
}

#[derive(Clone)]
pub struct JoinGuard<S> {
    inner: S,
    token: Secret,
    refusals: Arc<RefusalLog>,
}

impl<S> JoinGuard<S> {
    pub fn new(inner: S, token: Secret, refusals: Arc<RefusalLog>) -> Self {
        JoinGuard {
            inner,
            token,
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

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let bearer = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let checked = check_join_token(&self.token, bearer);
        // The clone may not be ready; take the one that was polled ready (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match checked {
            Ok(()) => Box::pin(async move { inner.call(req).await }),
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
                    let caller = match refusal {
                        JoinRefusal::Missing => "(no join token)",
                        JoinRefusal::Wrong => "(wrong join token)",
                    };
                    refusals
                        .refused(Refused {
                            peer,
                            method,
                            caller: caller.into(),
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

    #[test]
    fn the_join_token_is_checked_and_refusals_never_name_it() {
        let t = Secret::new("join-0123456789");
        assert_eq!(check_join_token(&t, Some("join-0123456789")), Ok(()));
        assert_eq!(
            check_join_token(&t, Some("join-9999")),
            Err(JoinRefusal::Wrong)
        );
        assert_eq!(check_join_token(&t, None), Err(JoinRefusal::Missing));
        assert!(!JoinRefusal::Wrong.to_string().contains("join-"));
    }
}
