//! [`GitHubClient`]: octocrab (`build_with_reqwest`, a bearer token) used through its raw
//! `build_request`/`execute`, so every answer's headers are read: `ETag`, `Link`,
//! `x-ratelimit-*`, `retry-after`. The JSON verbs are here; how one request is admitted,
//! authenticated, retried and read (and where the token may go) is [`super::transport`]'s
//! contract, lists read whole are [`super::pagination`]'s, refusals read
//! [`super::refusal`]'s, streamed files [`super::transfer`]'s.
//!
//! App auth is never used here: installation tokens are minted once
//! ([`super::mint_installation_token`]) and used as plain bearer tokens, because octocrab's app
//! auth drops the token on absolute `Link: rel=next` URLs of a GitHub Enterprise base.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::Method;
use serde_json::Value;

use super::pagination::{link_rel, next_link, read_list};
use super::rate::{ObserverGate, RateGate, RateObserver, RateSnapshot, StaticToken, TokenSource};
use super::transport::{Answer, Raw, ReqBody, Transport, header};
use crate::forge::ForgeError;
use crate::secret::Secret;

pub use super::pagination::{Listing, PER_PAGE};
pub use super::refusal::{PRIMARY_RESET_SLACK, SECONDARY_LIMIT_DEFAULT_WAIT};
pub use super::transport::{
    CONNECT_TIMEOUT, REQUEST_TIMEOUT, SERVER_ERROR_BACKOFF, SERVER_ERROR_RETRIES, USER_AGENT,
};

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

/// An authenticated GitHub REST client. Cheap to clone (shared state).
#[derive(Clone)]
pub struct GitHubClient {
    inner: Arc<Transport>,
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
        Ok(GitHubClient {
            inner: Arc::new(Transport::new(endpoint, tokens)?),
        })
    }

    /// The same client admitted by `gate` (see [`RateGate`]).
    pub fn with_gate(self, gate: Arc<dyn RateGate>) -> GitHubClient {
        GitHubClient {
            inner: Arc::new(self.inner.with_gate(gate)),
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
        self.inner.requests()
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
        let body = if raw.status == 304 || raw.bytes.is_empty() {
            None
        } else {
            Some(self.decode("GET", path_and_query, &raw.bytes)?)
        };
        let link = header(&raw.headers, "link");
        Ok(Page {
            status: raw.status,
            body,
            etag: header(&raw.headers, "etag").map(str::to_string),
            next: link.and_then(next_link),
            last: link.and_then(|l| link_rel(l, "last")),
            rate: RateSnapshot::from_headers(&raw.headers),
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
        read_list(self, path, if_none_match).await
    }

    /// POST a JSON body; the answer's JSON (2xx only).
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ForgeError> {
        let raw = self
            .send(Method::POST, path, None, ReqBody::Json(body), None)
            .await?;
        self.decode("POST", path, &raw.bytes)
    }

    /// PATCH a JSON body; the answer's JSON (2xx only).
    pub async fn patch_json(&self, path: &str, body: &Value) -> Result<Value, ForgeError> {
        let raw = self
            .send(Method::PATCH, path, None, ReqBody::Json(body), None)
            .await?;
        self.decode("PATCH", path, &raw.bytes)
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
        self.decode("PUT", path, &raw.bytes).map(Some)
    }

    /// DELETE `path` (2xx only).
    pub async fn delete(&self, path: &str) -> Result<(), ForgeError> {
        self.send(Method::DELETE, path, None, ReqBody::None, None)
            .await
            .map(|_| ())
    }

    /// An answer's JSON, or a [`ForgeError::Decode`] naming the request.
    fn decode(&self, method: &str, path: &str, bytes: &[u8]) -> Result<Value, ForgeError> {
        serde_json::from_slice(bytes).map_err(|e| ForgeError::Decode {
            method: method.into(),
            path: self.shown(path),
            detail: e.to_string(),
        })
    }

    /// `target` as shown in errors: relative to the API base when it is under it.
    pub(super) fn shown(&self, target: &str) -> String {
        self.inner.shown(target)
    }

    /// See [`Transport::send`].
    pub(super) async fn send(
        &self,
        method: Method,
        target: &str,
        if_none_match: Option<&str>,
        body: ReqBody<'_>,
        accept: Option<&str>,
    ) -> Result<Raw, ForgeError> {
        self.inner
            .send(method, target, if_none_match, body, accept)
            .await
    }

    /// See [`Transport::exchange`].
    pub(super) async fn exchange(
        &self,
        method: Method,
        target: &str,
        if_none_match: Option<&str>,
        body: ReqBody<'_>,
        accept: Option<&str>,
        stream: bool,
    ) -> Result<Answer, ForgeError> {
        self.inner
            .exchange(method, target, if_none_match, body, accept, stream)
            .await
    }
}
