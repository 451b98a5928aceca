//! [`GitHubClient`]: octocrab (`build_with_reqwest`, a bearer token) used through its raw
//! `build_request`/`execute`, so every answer's headers are read: `ETag`, `Link`,
//! `x-ratelimit-*`, `retry-after`.
//!
//! Contracts:
//! - The token is sent only to the API's own host: the client sets `Authorization` per request
//!   from its [`TokenSource`], only when the request's scheme and authority are the API base's
//!   (or, for `api.github.com`, `uploads.github.com`, where release assets are uploaded;
//!   reqwest drops `Authorization` when a redirect leaves the host). It never appears in a URL,
//!   a log line, an error or `Debug` output.
//! - A 401 asks the [`TokenSource`] once for a fresher token and, when it has one, sends the
//!   request again with it (an installation token that expired mid-task).
//! - With a [`RateGate`], every request (retries included) is admitted by the gate first, every
//!   `x-ratelimit-*` snapshot is reported to it, and every imposed wait too.
//! - A rate limit never fails a call: a primary-limit refusal (403/429 with
//!   `x-ratelimit-remaining: 0`) waits until `x-ratelimit-reset`, a secondary one (403/429 with
//!   `retry-after`, or GitHub's "secondary rate limit" message) waits as told, then the request
//!   is sent again. 5xx answers and transport errors are retried [`SERVER_ERROR_RETRIES`] times.
//! - App auth is never used here: installation tokens are minted once
//!   ([`super::mint_installation_token`]) and used as plain bearer tokens, because octocrab's app
//!   auth drops the token on absolute `Link: rel=next` URLs of a GitHub Enterprise base.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, IF_NONE_MATCH};
use http::{Method, Uri};
use http_body_util::BodyExt as _;
use octocrab::Octocrab;
use serde_json::Value;

use super::rate::{
    Admission, ObserverGate, RateGate, RateObserver, RateSnapshot, StaticToken, TokenSource,
};
use crate::forge::ForgeError;
use crate::secret::Secret;

/// Retries of a 5xx answer or a transport error before the call fails. GitHub documents no
/// number; three is our choice: enough to ride out a deploy blip, few enough that a repository
/// whose API keeps answering 5xx fails its task instead of hiding an outage.
pub const SERVER_ERROR_RETRIES: u32 = 3;
/// First backoff after a 5xx, doubled on each retry (1 s, 2 s, 4 s). Our choice, after
/// GitHub's guidance to back off exponentially on errors ("Best practices for using the REST
/// API").
pub const SERVER_ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Wait after a secondary-limit refusal without `retry-after`: GitHub's documentation says
/// "wait for at least one minute before retrying" ("Rate limits for the REST API").
pub const SECONDARY_LIMIT_DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Added to the primary limit's reset: `x-ratelimit-reset` has whole seconds, and a request
/// sent in the reset second itself may still be refused. Our choice.
pub const PRIMARY_RESET_SLACK: Duration = Duration::from_secs(1);
/// GitHub's largest `per_page` ("Using pagination in the REST API").
pub const PER_PAGE: u32 = 100;
/// Connection set-up limit. Our choice: generous for a loaded GitHub Enterprise appliance.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Whole-request limit (asset downloads included). Our choice: a 2 GiB release asset (GitHub's
/// largest) at ~10 MB/s fits.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// The `User-Agent` of requests not sent through octocrab (uploads, streamed downloads): GitHub
/// refuses API requests without one ("Getting started with the REST API", user agent).
pub const USER_AGENT: &str = concat!("repovault/", env!("CARGO_PKG_VERSION"));

/// Where a GitHub (or GitHub Enterprise) API is: the forge seam's endpoint, `api_url` being
/// `https://api.github.com` or `https://HOST/api/v3`.
pub type GitHubEndpoint = crate::forge::ForgeEndpoint;

/// One answer of [`GitHubClient::get_json`].
#[derive(Debug, Clone)]
pub struct Page {
    /// 2xx or 304 (other statuses are [`ForgeError::Status`]).
    pub status: u16,
    /// The JSON body; `None` for a 304 or an empty body.
    pub body: Option<Value>,
    /// The `ETag`, for a later `If-None-Match`.
    pub etag: Option<String>,
    /// The `Link: rel="next"` URL (absolute).
    pub next: Option<String>,
    /// The `Link: rel="last"` URL (absolute): its `page` is the number of pages.
    pub last: Option<String>,
    /// The `x-ratelimit-*` headers.
    pub rate: Option<RateSnapshot>,
    /// The server's `Date` (its clock, which `since` cursors are compared with).
    pub date: Option<DateTime<Utc>>,
}

/// A whole list read with [`GitHubClient::get_list`].
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Every item of every page (empty when `not_modified`).
    pub items: Vec<Value>,
    /// The first page's `ETag`, only when the list fit in one page (so a 304 on it means the
    /// whole list is unchanged).
    pub etag: Option<String>,
    /// The conditional request was answered 304: nothing changed.
    pub not_modified: bool,
}

/// A request's body.
#[derive(Clone, Copy)]
pub(super) enum ReqBody<'a> {
    None,
    Json(&'a Value),
    /// A file of `len` bytes sent as `content_type` (release-asset uploads): streamed from disk,
    /// opened afresh for every attempt (a stream cannot be replayed), never read whole.
    File {
        content_type: &'a str,
        path: &'a Path,
        len: u64,
    },
}

/// A raw answer after retries.
pub(super) struct Raw {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) bytes: Vec<u8>,
}

/// An answer: read whole, or (a success the caller streams) with its body still to read.
pub(super) enum Answer {
    Read(Raw),
    Streaming(reqwest::Response),
}

/// An authenticated GitHub REST client. Cheap to clone (shared state).
#[derive(Clone)]
pub struct GitHubClient {
    inner: Arc<Inner>,
}

struct Inner {
    crab: Octocrab,
    /// The same HTTP client without octocrab's layers, for URLs off the API's host (no token, no
    /// base path: octocrab would prepend the API base's path to them).
    http: reqwest::Client,
    /// The API base without a trailing slash.
    api_url: String,
    /// The API base's scheme and authority: the only place the token is sent.
    api_origin: (String, String),
    tokens: Arc<dyn TokenSource>,
    gate: Option<Arc<dyn RateGate>>,
    requests: AtomicU64,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_url", &self.inner.api_url)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl GitHubClient {
    /// A client for `endpoint` sending `token` as `Authorization: Bearer` (a personal token, an
    /// installation token or, for `/app` routes, an App JWT).
    pub fn new(endpoint: &GitHubEndpoint, token: Secret) -> Result<GitHubClient, ForgeError> {
        GitHubClient::with_token_source(endpoint, Arc::new(StaticToken(token)))
    }

    /// A client for `endpoint` taking the token of every request from `tokens` (see
    /// [`TokenSource`]).
    pub fn with_token_source(
        endpoint: &GitHubEndpoint,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<GitHubClient, ForgeError> {
        let api_url = endpoint.api_url.trim_end_matches('/').to_string();
        let base: Uri = api_url
            .parse()
            .map_err(|e| ForgeError::Config(format!("API URL {api_url:?}: {e}")))?;
        let api_origin = origin(&base)
            .ok_or_else(|| ForgeError::Config(format!("API URL {api_url:?} has no host")))?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(USER_AGENT);
        if let Some(pem) = &endpoint.ca_cert_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| ForgeError::Config(format!("CA certificate: {e}")))?;
            http = http.tls_certs_only([cert]);
        }
        let http = http
            .build()
            .map_err(|e| ForgeError::Config(format!("HTTP client: {e}")))?;
        let crab = Octocrab::builder()
            .base_uri(api_url.as_str())
            .map_err(|e| ForgeError::Config(format!("API URL {api_url:?}: {e}")))?
            .add_header(ACCEPT, "application/vnd.github+json".to_string())
            .add_header(
                HeaderName::from_static("x-github-api-version"),
                "2022-11-28".to_string(),
            )
            .build_with_reqwest(http.clone())
            .map_err(|e| ForgeError::Config(format!("octocrab: {e}")))?;
        Ok(GitHubClient {
            inner: Arc::new(Inner {
                crab,
                http,
                api_url,
                api_origin,
                tokens,
                gate: None,
                requests: AtomicU64::new(0),
            }),
        })
    }

    /// The same client admitted by `gate` (see [`RateGate`]).
    pub fn with_gate(self, gate: Arc<dyn RateGate>) -> GitHubClient {
        GitHubClient {
            inner: Arc::new(Inner {
                crab: self.inner.crab.clone(),
                http: self.inner.http.clone(),
                api_url: self.inner.api_url.clone(),
                api_origin: self.inner.api_origin.clone(),
                tokens: self.inner.tokens.clone(),
                gate: Some(gate),
                requests: AtomicU64::new(self.inner.requests.load(Ordering::Relaxed)),
            }),
        }
    }

    /// The same client reporting to `observer` (see [`RateObserver`]).
    pub fn with_observer(self, observer: Arc<dyn RateObserver>) -> GitHubClient {
        self.with_gate(Arc::new(ObserverGate(observer)))
    }

    /// The API base (no trailing slash).
    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// GET `path_and_query` (relative to the API base, or an absolute URL such as a `Link`),
    /// with `If-None-Match` when given. 2xx and 304 are a [`Page`]; anything else is an error.
    pub async fn get_json(
        &self,
        path_and_query: &str,
        if_none_match: Option<&str>,
    ) -> Result<Page, ForgeError> {
        let raw = self
            .send(
                Method::GET,
                path_and_query,
                if_none_match,
                ReqBody::None,
                None,
            )
            .await?;
        let rate = RateSnapshot::from_headers(&raw.headers);
        let body = if raw.status == 304 || raw.bytes.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&raw.bytes).map_err(|e| ForgeError::Decode {
                    method: "GET".into(),
                    path: self.shown(path_and_query),
                    detail: e.to_string(),
                })?,
            )
        };
        Ok(Page {
            status: raw.status,
            body,
            etag: header(&raw.headers, "etag").map(str::to_string),
            next: header(&raw.headers, "link").and_then(next_link),
            last: header(&raw.headers, "link").and_then(|l| link_rel(l, "last")),
            rate,
            date: header(&raw.headers, "date")
                .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
                .map(|d| d.with_timezone(&Utc)),
        })
    }

    /// Every item of a paginated list (`per_page=100` added), following `Link: rel="next"`.
    pub async fn get_all(&self, path: &str) -> Result<Vec<Value>, ForgeError> {
        Ok(self.get_list(path, None).await?.items)
    }

    /// A paginated list, conditionally: with `if_none_match` (a previous [`Listing::etag`]) a
    /// 304 on the first page answers `not_modified` without reading further. Lists wrapped in
    /// an object (`{"total_count": n, "workflows": [...]}`) are unwrapped.
    pub async fn get_list(
        &self,
        path: &str,
        if_none_match: Option<&str>,
    ) -> Result<Listing, ForgeError> {
        let first = with_per_page(path);
        let page = self.get_json(&first, if_none_match).await?;
        if page.status == 304 {
            return Ok(Listing {
                items: Vec::new(),
                etag: if_none_match.map(str::to_string),
                not_modified: true,
            });
        }
        let mut items = Vec::new();
        let one_page = page.next.is_none();
        let etag = page.etag.clone().filter(|_| one_page);
        let mut next = page.next.clone();
        items.extend(list_items(page.body, &first)?);
        while let Some(url) = next {
            let page = self.get_json(&url, None).await?;
            next = page.next.clone();
            items.extend(list_items(page.body, &url)?);
        }
        Ok(Listing {
            items,
            etag,
            not_modified: false,
        })
    }

    /// POST a JSON body; the answer's JSON (2xx only).
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ForgeError> {
        let raw = self
            .send(Method::POST, path, None, ReqBody::Json(body), None)
            .await?;
        serde_json::from_slice(&raw.bytes).map_err(|e| ForgeError::Decode {
            method: "POST".into(),
            path: self.shown(path),
            detail: e.to_string(),
        })
    }

    /// PATCH a JSON body; the answer's JSON (2xx only).
    pub async fn patch_json(&self, path: &str, body: &Value) -> Result<Value, ForgeError> {
        let raw = self
            .send(Method::PATCH, path, None, ReqBody::Json(body), None)
            .await?;
        serde_json::from_slice(&raw.bytes).map_err(|e| ForgeError::Decode {
            method: "PATCH".into(),
            path: self.shown(path),
            detail: e.to_string(),
        })
    }

    /// PUT a JSON body (none: `Content-Length: 0`, as GitHub asks for bodiless PUTs); the
    /// answer's JSON, `None` for an empty answer (204).
    pub async fn put_json(
        &self,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ForgeError> {
        let body = body.map_or(ReqBody::None, ReqBody::Json);
        let raw = self.send(Method::PUT, path, None, body, None).await?;
        if raw.bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&raw.bytes)
            .map(Some)
            .map_err(|e| ForgeError::Decode {
                method: "PUT".into(),
                path: self.shown(path),
                detail: e.to_string(),
            })
    }

    /// DELETE `path` (2xx only).
    pub async fn delete(&self, path: &str) -> Result<(), ForgeError> {
        self.send(Method::DELETE, path, None, ReqBody::None, None)
            .await
            .map(|_| ())
    }

    /// `target` as an absolute URL.
    fn url(&self, target: &str) -> String {
        if target.starts_with("https://") || target.starts_with("http://") {
            target.to_string()
        } else {
            format!("{}/{}", self.inner.api_url, target.trim_start_matches('/'))
        }
    }

    /// `target` as shown in errors: relative to the API base when it is under it.
    pub(super) fn shown(&self, target: &str) -> String {
        let url = self.url(target);
        match url.strip_prefix(&self.inner.api_url) {
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            // An absolute URL from elsewhere (a release asset's) may be pre-signed.
            _ => crate::redact::scrub(&url, None),
        }
    }

    /// Waits for the gate's admission (none without a gate).
    async fn admit(&self) -> Result<Admission, ForgeError> {
        match &self.inner.gate {
            Some(gate) => gate.admit().await,
            None => Ok(Admission::free()),
        }
    }

    async fn limited(&self, wait: Duration, secondary: bool) {
        if let Some(gate) = &self.inner.gate {
            let until = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            gate.limited(until, secondary).await;
        }
    }

    /// A request through reqwest alone: off the API's base, or a body that streams (a file up,
    /// an asset down); the token (`auth`) only for the API's own host. With `stream`, a success
    /// comes back with its body unread.
    async fn send_elsewhere(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        body: ReqBody<'_>,
        auth: Option<HeaderValue>,
        stream: bool,
    ) -> Result<Result<Answer, String>, ForgeError> {
        let mut req = self.inner.http.request(method.clone(), url);
        if let Some(auth) = auth {
            // The API's own host outside octocrab (uploads, downloads): GitHub's headers too.
            req = req
                .header(AUTHORIZATION, auth)
                .header("x-github-api-version", "2022-11-28");
        }
        if let Some(accept) = accept {
            req = req.header(ACCEPT, accept);
        }
        match body {
            ReqBody::None => {}
            ReqBody::Json(body) => {
                req = req
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            ReqBody::File {
                content_type,
                path,
                len,
            } => {
                // An explicit length: GitHub's uploads want one, and hyper then sends the
                // stream as exactly that many bytes (not chunked).
                req = req
                    .header(http::header::CONTENT_TYPE, content_type)
                    .header(http::header::CONTENT_LENGTH, len)
                    .body(super::transfer::file_body(path).await?);
            }
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => return Ok(Err(e.without_url().to_string())),
        };
        if stream && resp.status().is_success() {
            return Ok(Ok(Answer::Streaming(resp)));
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Ok(match resp.bytes().await {
            Ok(bytes) => Ok(Answer::Read(Raw {
                status,
                headers,
                bytes: bytes.to_vec(),
            })),
            Err(e) => Err(e.without_url().to_string()),
        })
    }

    /// Whether `uri` is on the API's own scheme and host (the token goes nowhere else).
    /// GitHub.com's uploads host (`uploads.github.com`, where release assets are uploaded)
    /// counts as the API's: GitHub Enterprise serves uploads on its own host (`/api/uploads`).
    fn is_api(&self, uri: &Uri) -> bool {
        origin(uri).is_some_and(|o| {
            o == self.inner.api_origin
                || (self.inner.api_origin.1 == "api.github.com"
                    && o.0 == "https"
                    && o.1 == "uploads.github.com")
        })
    }

    /// Sends one request, waiting out rate limits and retrying 5xx and transport errors.
    /// Success is 2xx or 304; anything else is [`ForgeError::Status`].
    pub(super) async fn send(
        &self,
        method: Method,
        target: &str,
        if_none_match: Option<&str>,
        body: ReqBody<'_>,
        accept: Option<&str>,
    ) -> Result<Raw, ForgeError> {
        let name = method.to_string();
        match self
            .exchange(method, target, if_none_match, body, accept, false)
            .await?
        {
            Answer::Read(raw) => Ok(raw),
            // Not asked for (`stream` is false); read whole all the same.
            Answer::Streaming(resp) => Ok(Raw {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                bytes: resp
                    .bytes()
                    .await
                    .map_err(|e| ForgeError::Transport {
                        method: name,
                        path: self.shown(target),
                        detail: e.without_url().to_string(),
                    })?
                    .to_vec(),
            }),
        }
    }

    /// [`Self::send`]; with `stream`, a success is [`Answer::Streaming`]. Requests that stream
    /// (`stream`, or a file body) go through reqwest alone: octocrab's request bodies are bytes
    /// in memory, and its answers are read whole here.
    pub(super) async fn exchange(
        &self,
        method: Method,
        target: &str,
        if_none_match: Option<&str>,
        body: ReqBody<'_>,
        accept: Option<&str>,
        stream: bool,
    ) -> Result<Answer, ForgeError> {
        let streamed = stream || matches!(body, ReqBody::File { .. });
        let url = self.url(target);
        let shown = self.shown(target);
        let uri: Uri = url
            .parse()
            .map_err(|e| ForgeError::Config(format!("URL {shown}: {e}")))?;
        let mut server_errors = 0u32;
        let mut token_refreshed = false;
        let api = self.is_api(&uri);
        // Through octocrab only under the API base: it prepends the base's path to any other
        // path (GitHub Enterprise's `/api/uploads` would become `/api/v3/api/uploads`).
        let under_base = url.starts_with(&format!("{}/", self.inner.api_url));
        loop {
            let admission = if api {
                self.admit().await?
            } else {
                Admission::free()
            };
            let token = self.inner.tokens.current();
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(uri.clone());
            if self.is_api(&uri) && !token.expose().is_empty() {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        ForgeError::Config(
                            "the token holds characters not allowed in a header".into(),
                        )
                    })?;
                value.set_sensitive(true);
                builder = builder.header(AUTHORIZATION, value);
            }
            if let Some(tag) = if_none_match {
                builder = builder.header(IF_NONE_MATCH, tag);
            }
            if let Some(accept) = accept {
                builder = builder.header(
                    ACCEPT,
                    HeaderValue::from_str(accept).map_err(|e| ForgeError::Config(e.to_string()))?,
                );
            }
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let result = if api && under_base && !streamed {
                let request = match body {
                    ReqBody::None => self
                        .inner
                        .crab
                        .build_request::<Value>(builder, None)
                        .map_err(|e| e.to_string()),
                    ReqBody::Json(v) => self
                        .inner
                        .crab
                        .build_request(builder, Some(v))
                        .map_err(|e| e.to_string()),
                    ReqBody::File { .. } => Err("a file body is sent through reqwest".into()),
                }
                .map_err(|e| ForgeError::Config(format!("{method} {shown}: {e}")))?;
                match self.inner.crab.execute(request).await {
                    Ok(response) => {
                        let (parts, body) = response.into_parts();
                        match body.collect().await {
                            Ok(collected) => Ok(Answer::Read(Raw {
                                status: parts.status.as_u16(),
                                headers: parts.headers,
                                bytes: collected.to_bytes().to_vec(),
                            })),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            } else {
                let auth = if api && !token.expose().is_empty() {
                    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                        .map_err(|_| {
                            ForgeError::Config(
                                "the token holds characters not allowed in a header".into(),
                            )
                        })?;
                    value.set_sensitive(true);
                    Some(value)
                } else {
                    None
                };
                self.send_elsewhere(&method, &url, accept, body, auth, stream)
                    .await?
            };
            let raw = match result {
                Ok(Answer::Read(raw)) => raw,
                Ok(Answer::Streaming(resp)) => {
                    // A success: reported to the gate like any answer, its body left to the
                    // caller.
                    if let (Some(gate), Some(rate), true) = (
                        &self.inner.gate,
                        RateSnapshot::from_headers(resp.headers()),
                        api,
                    ) {
                        gate.observe(&rate);
                    }
                    drop(admission);
                    return Ok(Answer::Streaming(resp));
                }
                Err(detail) => {
                    if server_errors < SERVER_ERROR_RETRIES {
                        tokio::time::sleep(SERVER_ERROR_BACKOFF * 2u32.pow(server_errors)).await;
                        server_errors += 1;
                        continue;
                    }
                    return Err(ForgeError::Transport {
                        method: method.to_string(),
                        path: shown,
                        detail,
                    });
                }
            };
            let rate = RateSnapshot::from_headers(&raw.headers);
            if let (Some(gate), Some(rate), true) = (&self.inner.gate, &rate, api) {
                gate.observe(rate);
            }
            // Held until the answer is reported, so the gate knows which requests it shows.
            drop(admission);
            let status = raw.status;
            if status == 401
                && !token_refreshed
                && self.is_api(&uri)
                && let Some(fresh) = self.inner.tokens.refresh(&token).await
                && fresh.expose() != token.expose()
            {
                tracing::info!(method = %method, path = %shown, "GitHub refused the token: retrying with a fresher one");
                token_refreshed = true;
                continue;
            }
            if (status == 403 || status == 429)
                && let Some((wait, secondary)) = rate_limit_wait(&raw, rate.as_ref())
            {
                tracing::warn!(
                    method = %method, path = %shown, status, wait_secs = wait.as_secs_f64(), secondary,
                    "GitHub rate limit: waiting"
                );
                self.limited(wait, secondary).await;
                tokio::time::sleep(wait).await;
                continue;
            }
            if status >= 500 && server_errors < SERVER_ERROR_RETRIES {
                tracing::warn!(method = %method, path = %shown, status, "GitHub server error: retrying");
                tokio::time::sleep(SERVER_ERROR_BACKOFF * 2u32.pow(server_errors)).await;
                server_errors += 1;
                continue;
            }
            if (200..300).contains(&status) || status == 304 {
                return Ok(Answer::Read(raw));
            }
            return Err(ForgeError::Status {
                method: method.to_string(),
                path: shown,
                status,
                message: crate::redact::scrub(&github_message(&raw.bytes), None),
                retry_after: rate_limit_wait(&raw, rate.as_ref()).map(|(wait, _)| wait),
            });
        }
    }
}

/// How long a 403/429 says to wait, and whether it is a secondary limit; `None` when it is not
/// a rate limit (a permission refusal).
fn rate_limit_wait(raw: &Raw, rate: Option<&RateSnapshot>) -> Option<(Duration, bool)> {
    if let Some(secs) =
        header(&raw.headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some((Duration::from_secs(secs), true));
    }
    if let Some(rate) = rate.filter(|r| r.remaining == 0) {
        let now = Utc::now().timestamp();
        let secs = u64::try_from(rate.reset.saturating_sub(now)).unwrap_or(0);
        return Some((Duration::from_secs(secs) + PRIMARY_RESET_SLACK, false));
    }
    let message = github_message(&raw.bytes).to_ascii_lowercase();
    if message.contains("secondary rate limit") || message.contains("abuse") {
        return Some((SECONDARY_LIMIT_DEFAULT_WAIT, true));
    }
    None
}

/// GitHub's `message` (with its `errors`' messages, or field and code, when a 422 lists them:
/// "Validation Failed" alone does not say what failed), or the start of the body.
fn github_message(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => match v.get("message").and_then(Value::as_str) {
            Some(m) => {
                let details: Vec<String> = v
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|errors| {
                        errors
                            .iter()
                            .filter_map(|e| match e.get("message").and_then(Value::as_str) {
                                Some(m) => Some(m.to_string()),
                                None => Some(format!(
                                    "{} {}",
                                    e.get("field").and_then(Value::as_str)?,
                                    e.get("code").and_then(Value::as_str)?
                                )),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if details.is_empty() {
                    m.to_string()
                } else {
                    truncate(&format!("{m} ({})", details.join("; ")))
                }
            }
            None => truncate(&v.to_string()),
        },
        Err(_) => truncate(&String::from_utf8_lossy(bytes)),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The scheme and authority of `uri` (lower-case), when it has both.
fn origin(uri: &Uri) -> Option<(String, String)> {
    Some((
        uri.scheme_str()?.to_ascii_lowercase(),
        uri.authority()?.as_str().to_ascii_lowercase(),
    ))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link_rel(link, "next")
}

/// The URL of relation `rel` in a `Link` header.
pub fn link_rel(link: &str, rel: &str) -> Option<String> {
    let wanted = format!("rel=\"{rel}\"");
    link.split(',').find_map(|part| {
        let (url, rels) = part.split_once(';')?;
        rels.contains(&wanted).then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// `path` with `per_page=100` unless it names one.
fn with_per_page(path: &str) -> String {
    if path.contains("per_page=") {
        path.to_string()
    } else if path.contains('?') {
        format!("{path}&per_page={PER_PAGE}")
    } else {
        format!("{path}?per_page={PER_PAGE}")
    }
}

/// The items of one list page: an array, or the array field of a wrapping object.
fn list_items(body: Option<Value>, path: &str) -> Result<Vec<Value>, ForgeError> {
    match body {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Object(map)) => map
            .into_iter()
            .find_map(|(_, v)| match v {
                Value::Array(items) => Some(items),
                _ => None,
            })
            .ok_or_else(|| ForgeError::Decode {
                method: "GET".into(),
                path: path.to_string(),
                detail: "a list was expected".into(),
            }),
        Some(_) => Err(ForgeError::Decode {
            method: "GET".into(),
            path: path.to_string(),
            detail: "a list was expected".into(),
        }),
    }
}
