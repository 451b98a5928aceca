//! The HTTPS listener and the request pipeline.
//!
//! Every connection is TLS (as GitHub's are). A request goes, by path, to the simulator's own
//! control routes (`/_sim/...`), the download host's pre-signed URLs (`/_objects/...`), the
//! release-asset uploads (`/api/uploads/...`), the REST API (`/api/v3/...`), release downloads
//! (`/OWNER/REPO/releases/download/...`), attachments (`/user-attachments/assets/...`,
//! `/OWNER/REPO/assets/...`) or git smart HTTP and LFS (`/OWNER/REPO.git/...`).
//!
//! The REST pipeline, in order: `/repositories/ID/...` is rewritten to the repository's current
//! name; authentication (401 on a bad credential); injected failures; the primary and secondary
//! limits (reserved on arrival, refunded for a 304); the route; ETag and `If-None-Match` on GETs;
//! the `x-ratelimit-*` headers; counting and (optionally) recording the exchange.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::Sim;
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::limits::{Quota, Refusal};
use crate::stats::Exchange;

/// Largest REST body buffered for ETags and recording (GitHub's API bodies are far smaller).
const MAX_BODY: usize = 64 << 20;

/// The route template an axum route matched, copied onto the response so the pipeline can count
/// and record by template.
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub String);

/// Accepts TLS connections until `stop` is cancelled.
pub async fn serve(
    sim: Arc<Sim>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let sim = sim.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("TLS handshake from {peer}: {e}");
                    return;
                }
            };
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sim = sim.clone();
                    async move {
                        let req = req.map(Body::new);
                        Ok::<_, std::convert::Infallible>(dispatch(sim, peer, req).await)
                    }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!("connection from {peer}: {e}") },
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Routes one request by its path.
pub async fn dispatch(sim: Arc<Sim>, peer: SocketAddr, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sim/") {
        return crate::control::handle(sim, req).await;
    }
    if path.starts_with(crate::objects::PREFIX) {
        return crate::objects::serve(&sim, &req);
    }
    if path.starts_with("/api/uploads/") {
        sim.stats.counters.lock().upload_requests += 1;
        return rest(sim, peer, req, "/api/uploads").await;
    }
    if path == "/api/v3" || path.starts_with("/api/v3/") {
        return rest(sim, peer, req, "/api/v3").await;
    }
    if path.contains("/releases/download/") {
        return crate::api::releases::browser_download(&sim, peer, &req);
    }
    if crate::attachments::parse_path(&path).is_some() {
        return crate::attachments::handle(&sim, peer, &req);
    }
    if path.contains(".git/info/lfs/") {
        sim.stats.counters.lock().lfs_requests += 1;
        return crate::lfs::handle(sim, req).await;
    }
    if path.contains(".git/") {
        sim.stats.counters.lock().git_requests += 1;
        return crate::git_http::handle(sim, peer, req).await;
    }
    ApiError::not_found().into_response()
}

/// The REST pipeline (see the module documentation). `prefix` is stripped before routing.
async fn rest(sim: Arc<Sim>, peer: SocketAddr, req: Request, prefix: &str) -> Response {
    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    let rest_path = parts.uri.path()[prefix.len()..].to_string();
    let rest_path = if rest_path.is_empty() {
        "/".to_string()
    } else {
        rest_path
    };
    let rest_path = match resolve_repository_id(&sim, &rest_path, &method) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let routed_path = if prefix == "/api/uploads" {
        format!("/uploads{rest_path}")
    } else {
        rest_path.clone()
    };
    let query = parts.uri.query().unwrap_or_default().to_string();
    let pq = match parts.uri.query() {
        Some(q) => format!("{routed_path}?{q}"),
        None => routed_path.clone(),
    };
    match Uri::try_from(pq) {
        Ok(u) => parts.uri = u,
        Err(_) => return ApiError::not_found().into_response(),
    }

    let caller = {
        let world = sim.world.lock();
        match auth::authenticate(&world, &parts.headers, &peer.ip().to_string()) {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        }
    };

    if let Some(resp) = sim.injected_failure(&method, &rest_path, &caller) {
        return resp;
    }

    // `/rate_limit` does not count against the limit (GitHub's documented behaviour).
    let counted = rest_path != "/rate_limit";
    let is_write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let limit = sim.limit_for(&caller);
    let now = unix_now();
    let quota: Option<Quota> = if counted {
        let opts = sim.options.read().clone();
        let admitted = sim
            .limits
            .lock()
            .admit(&caller.limit_key, limit, is_write, now, &opts);
        match admitted {
            Ok(q) => Some(q),
            Err(refusal) => return refuse(&sim, &caller, refusal),
        }
    } else {
        None
    };

    let record = sim.options.read().record_exchanges;
    let (body, recorded_request) = if record {
        match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(bytes) => {
                let v = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
                (Body::from(bytes), v)
            }
            Err(e) => {
                return ApiError::new(StatusCode::BAD_REQUEST, format!("reading body: {e}"))
                    .into_response();
            }
        }
    } else {
        (body, None)
    };

    let if_none_match = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    parts.extensions.insert(caller.clone());
    parts.extensions.insert(sim.clone());
    let req = Request::from_parts(parts, body);
    let router = sim.router();
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };

    // GitHub answers 404 to a method a path does not have (axum says 405 with an empty body).
    // A handler's own 405 (e.g. "Pull Request is not mergeable") carries GitHub's JSON body and
    // stays.
    let axum_405 = resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && !resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
    let resp = if axum_405 {
        ApiError::not_found().into_response()
    } else {
        resp
    };
    // A request no route matched is counted and recorded as `(no route) PATH`.
    let route = resp
        .extensions()
        .get::<RouteTemplate>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| format!("(no route) {routed_path}"));
    let (mut resp, response_json) =
        finish_body(resp, &method, if_none_match.as_deref(), record).await;
    let status = resp.status().as_u16();
    let not_modified = status == 304;
    if counted {
        sim.limits.lock().finish(&caller.limit_key, not_modified);
    }
    if let Some(mut q) = quota {
        if not_modified {
            q.used = q.used.saturating_sub(1);
            q.remaining += 1;
        }
        rate_headers(&mut resp, &q);
    }
    {
        let mut c = sim.stats.counters.lock();
        c.api_requests += 1;
        if not_modified {
            c.not_modified += 1;
        } else if counted {
            c.counted_requests += 1;
            *c.by_principal.entry(caller.limit_key.clone()).or_default() += 1;
        }
        *c.by_route
            .entry(format!("{method} {route} {status}"))
            .or_default() += 1;
    }
    if record {
        sim.stats.exchanges.lock().push(Exchange {
            method: method.to_string(),
            route,
            path: rest_path,
            query,
            status,
            request: recorded_request,
            response: response_json,
        });
    }
    resp
}

/// Buffers a JSON response: sets a strong ETag on 200 GETs and answers 304 when it matches
/// `If-None-Match`; returns the parsed body for recording.
async fn finish_body(
    resp: Response,
    method: &Method,
    if_none_match: Option<&str>,
    record: bool,
) -> (Response, Option<serde_json::Value>) {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let etaggable = *method == Method::GET && resp.status() == StatusCode::OK && is_json;
    if !(etaggable || (record && is_json)) {
        return (resp, None);
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return (
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("body: {e}"))
                    .into_response(),
                None,
            );
        }
    };
    let recorded = if record {
        serde_json::from_slice(&bytes).ok()
    } else {
        None
    };
    if etaggable {
        let etag = format!("\"{}\"", hex::encode(Sha256::digest(&bytes)));
        let matches = if_none_match.is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
        if let Ok(v) = HeaderValue::from_str(&etag) {
            parts.headers.insert(header::ETAG, v);
        }
        if matches {
            parts.status = StatusCode::NOT_MODIFIED;
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::CONTENT_TYPE);
            return (Response::from_parts(parts, Body::empty()), None);
        }
    }
    (Response::from_parts(parts, Body::from(bytes)), recorded)
}

fn rate_headers(resp: &mut Response, q: &Quota) {
    let h = resp.headers_mut();
    let mut set = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    set("x-ratelimit-limit", q.limit.to_string());
    set("x-ratelimit-remaining", q.remaining.to_string());
    set("x-ratelimit-reset", q.reset.to_string());
    set("x-ratelimit-used", q.used.to_string());
    set("x-ratelimit-resource", "core".to_string());
}

/// GitHub's answers to a spent limit: primary is 403 with `x-ratelimit-remaining: 0`; secondary
/// is 403 with `retry-after`.
fn refuse(sim: &Sim, caller: &Caller, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Primary(q) => {
            sim.stats.counters.lock().primary_refusals += 1;
            let who = match &caller.principal {
                Some(crate::state::Principal::User(l)) => format!("user {l}"),
                Some(crate::state::Principal::Installation(id)) => format!("installation ID {id}"),
                _ => "this client".to_string(),
            };
            let mut e = ApiError::forbidden(format!(
                "API rate limit exceeded for {who}. If you reach out to GitHub Support for help, please include the request ID."
            ));
            e.documentation_url = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit".into();
            let mut resp = e.into_response();
            rate_headers(&mut resp, &q);
            resp
        }
        Refusal::Secondary { retry_after } => {
            sim.stats.counters.lock().secondary_refusals += 1;
            secondary_refusal(StatusCode::FORBIDDEN, retry_after)
        }
    }
}

/// A secondary-limit refusal with GitHub's body and `retry-after`.
pub fn secondary_refusal(status: StatusCode, retry_after: u64) -> Response {
    let mut e = ApiError::new(
        status,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
    );
    e.documentation_url = "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits".into();
    e.with_header("retry-after", &retry_after.to_string())
        .into_response()
}

/// `/repositories/ID/rest` (where GitHub's 301s for renamed repositories point) becomes
/// `/repos/OWNER/NAME/rest`; `/repos/OLD/NAME/...` of a renamed repository is answered with 301
/// to `/repositories/ID/...` (307 for methods other than GET and HEAD), as GitHub does.
fn resolve_repository_id(sim: &Sim, path: &str, method: &Method) -> Result<String, ApiError> {
    let world = sim.world.lock();
    if let Some(rest) = path.strip_prefix("/repositories/") {
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(id) = id.parse::<u64>() else {
            return Ok(path.to_string());
        };
        let repo = world
            .repos
            .get(&id)
            .filter(|r| !r.deleted)
            .ok_or_else(ApiError::not_found)?;
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!("/{tail}")
        };
        return Ok(format!("/repos/{}/{}{tail}", repo.owner, repo.name));
    }
    if let Some(rest) = path.strip_prefix("/repos/") {
        let mut it = rest.splitn(3, '/');
        if let (Some(owner), Some(name)) = (it.next(), it.next()) {
            let tail = it.next().map(|t| format!("/{t}")).unwrap_or_default();
            if world.repo_id(owner, name).is_none()
                && let Some(id) = world
                    .renamed
                    .get(&format!("{owner}/{name}").to_ascii_lowercase())
            {
                let url = format!("{}/repositories/{id}{tail}", sim.api_base);
                let status = if matches!(*method, Method::GET | Method::HEAD) {
                    StatusCode::MOVED_PERMANENTLY
                } else {
                    StatusCode::TEMPORARY_REDIRECT
                };
                let mut e = ApiError::new(status, "Moved Permanently");
                e.extra
                    .insert("url".into(), serde_json::Value::String(url.clone()));
                return Err(e.with_header("location", &url));
            }
        }
    }
    Ok(path.to_string())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A route layer that copies the matched route template onto the response.
pub async fn tag_route(req: Request, next: axum::middleware::Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let mut resp = next.run(req).await;
    if let Some(t) = template {
        resp.extensions_mut().insert(RouteTemplate(t));
    }
    resp
}
