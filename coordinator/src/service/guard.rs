//! The admin API's door: resolves the caller's bearer token to a role, refuses a call its role
//! does not allow ([`crate::admin_roles::required`]), and writes every change to the audit log.
//!
//! It wraps the generated service as a tower service, because only there is the called method
//! (the request path) known: tonic's interceptors see metadata alone. A refusal is answered as a
//! gRPC status (UNAUTHENTICATED for a missing or unknown token, PERMISSION_DENIED for a role
//! that is too low) and is logged and audited with the caller's address, rate-limited per
//! address (`refusals.rs`). Entries of accepted changes carry the address too.

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use super::refusals::{RefusalLog, Refused, peer_of};
use crate::admin_roles::{Caller, Callers, Refusal, is_change};
use crate::audit::{AuditDetail, AuditEntry, AuditLog};
use crate::clock::system_now_ms as now_ms;

#[derive(Clone)]
pub struct AdminGuard<S> {
    inner: S,
    callers: Arc<Callers>,
    audit: AuditLog,
    refusals: Arc<RefusalLog>,
}

impl<S> AdminGuard<S> {
    pub fn new(
        inner: S,
        callers: Arc<Callers>,
        audit: AuditLog,
        refusals: Arc<RefusalLog>,
    ) -> Self {
        AdminGuard {
            inner,
            callers,
            audit,
            refusals,
        }
    }
}

impl<S: NamedService> NamedService for AdminGuard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for AdminGuard<S>
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
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let bearer = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let audit = self.audit.clone();
        let refusals = self.refusals.clone();
        let peer = peer_of(req.extensions());
        let authorized = self.callers.authorize(bearer.as_deref(), &method);
        // The clone may not be ready; take the one that was polled ready (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let caller = match authorized {
                Ok(c) => c,
                Err(refusal) => {
                    let status = match &refusal {
                        Refusal::NoToken | Refusal::UnknownToken => {
                            tonic::Status::unauthenticated(refusal.to_string())
                        }
                        Refusal::Forbidden { .. } => {
                            tonic::Status::permission_denied(refusal.to_string())
                        }
                    };
                    let (caller, role) = match &refusal {
                        Refusal::NoToken => ("(no token)".to_string(), "none".to_string()),
                        Refusal::UnknownToken => {
                            ("(unknown token)".to_string(), "none".to_string())
                        }
                        Refusal::Forbidden { caller, has, .. } => {
                            (caller.clone(), has.as_str().to_string())
                        }
                    };
                    refusals
                        .refused(Refused {
                            peer,
                            method,
                            caller,
                            role,
                            reason: refusal.to_string(),
                        })
                        .await;
                    return Ok(status.into_http());
                }
            };
            // Handlers that record who acted (escrow) read the caller from the extensions.
            let mut req = req;
            req.extensions_mut().insert(caller.clone());
            let response = inner.call(req).await?;
            if is_change(&method) {
                // A unary call that failed is answered trailers-only: its status is a header.
                let outcome = match response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                {
                    Some("0") | None => "ok".to_string(),
                    Some(code) => format!(
                        "failed: {:?}",
                        tonic::Code::from_i32(code.parse().unwrap_or(2))
                    ),
                };
                let detail = response
                    .extensions()
                    .get::<AuditDetail>()
                    .map(|d| d.0.clone())
                    .unwrap_or_default();
                record(&audit, &caller, &method, outcome, peer, detail).await;
            }
            Ok(response)
        })
    }
}

/// Appends one entry. A store that cannot take it is logged loudly; the call's own outcome
/// stands (refusing a restore because the audit store hiccupped would help no one).
async fn record(
    audit: &AuditLog,
    caller: &Caller,
    method: &str,
    outcome: String,
    peer: Option<std::net::SocketAddr>,
    detail: String,
) {
    let entry = AuditEntry {
        at_ms: now_ms(),
        caller: caller.name.clone(),
        role: caller.role.as_str().to_string(),
        method: method.to_string(),
        outcome,
        peer: peer.map(|p| p.to_string()).unwrap_or_default(),
        detail,
    };
    if let Err(e) = audit.append(&entry).await {
        tracing::error!(error = %e, method, caller = %caller.name, "could not write the audit log");
    }
}
