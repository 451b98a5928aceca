//! The transport under [`GitHubClient`](super::GitHubClient): one request sent, admitted,
//! authenticated, retried and read. Its contracts:
//! - The token is sent only to the API's own host: `Authorization` is set per request from the
//!   [`TokenSource`], only when the request's scheme and authority are the API base's (or, for
//!   `api.github.com`, `uploads.github.com`, where release assets are uploaded, and `github.com`,
//!   which serves attachments: `token_hosts.rs`; reqwest drops `Authorization` when a redirect
//!   leaves the host). It never appears in a URL, a log line,
//!   an error or `Debug` output.
//! - A 401 asks the [`TokenSource`] once for a fresher token and, when it has one, sends the
//!   request again with it (an installation token that expired mid-task).
//! - With a [`RateGate`], every request (retries included) is admitted by the gate first, every
//!   `x-ratelimit-*` snapshot is reported to it, and every imposed wait too.
//! - A rate limit never fails a call: a primary-limit refusal (403/429 with
//!   `x-ratelimit-remaining: 0`) waits until `x-ratelimit-reset`, a secondary one (403/429 with
//!   `retry-after`, or GitHub's "secondary rate limit" message) waits as told, then the request
//!   is sent again. 5xx answers and transport errors are retried [`SERVER_ERROR_RETRIES`] times.
//! - Requests under the API base go through octocrab (`build_request`/`execute`, so every
//!   answer's headers are read); those elsewhere, and bodies that stream (a file up, an asset
//!   down), through reqwest alone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use http::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, IF_NONE_MATCH};
use http::{Method, Uri};
use http_body_util::BodyExt as _;
use octocrab::Octocrab;
use serde_json::Value;

use super::rate::{Admission, RateGate, RateSnapshot, TokenSource};
use super::refusal::{github_message, rate_limit_wait};
use crate::forge::{ForgeEndpoint, ForgeError};
use crate::secret::Secret;

/// Retries of a 5xx answer or a transport error before the call fails. GitHub documents no
/// number; three is our choice: enough to ride out a deploy blip, few enough that a repository
/// whose API keeps answering 5xx fails its task instead of hiding an outage.
pub const SERVER_ERROR_RETRIES: u32 = 3;
/// First backoff after a 5xx, doubled on each retry (1 s, 2 s, 4 s). Our choice, after
/// GitHub's guidance to back off exponentially on errors ("Best practices for using the REST
/// API").
pub const SERVER_ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Connection set-up limit. Our choice: generous for a loaded GitHub Enterprise appliance.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Whole-request limit (asset downloads included). Our choice: a 2 GiB release asset (GitHub's
/// largest) at ~10 MB/s fits.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// The `User-Agent` of requests not sent through octocrab (uploads, streamed downloads): GitHub
/// refuses API requests without one ("Getting started with the REST API", user agent).
pub const USER_AGENT: &str = concat!("repovault/", env!("CARGO_PKG_VERSION"));
/// The REST API version every request asks for ("API Versions").
const API_VERSION: &str = "2022-11-28";

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

/// One attempt's outcome: an answer, or the transport error's text (retried like a 5xx).
type Attempt = Result<Answer, String>;

/// One request, as every attempt of it sends it.
struct Request<'a> {
    method: Method,
    url: String,
    uri: Uri,
    /// The target as errors show it.
    shown: String,
    if_none_match: Option<&'a str>,
    body: ReqBody<'a>,
    accept: Option<&'a str>,
    stream: bool,
    /// On the API's own host (the token goes along, the gate admits it).
    api: bool,
    /// Under the API base (octocrab prepends the base's path to any other path).
    under_base: bool,
}

/// The retries one request has used.
#[derive(Default)]
struct Retries {
    server_errors: u32,
    token_refreshed: bool,
}

impl Retries {
    /// Waits before the next retry of a 5xx or transport error; false when none is left.
    async fn back_off(&mut self) -> bool {
        if self.server_errors >= SERVER_ERROR_RETRIES {
            return false;
        }
        tokio::time::sleep(SERVER_ERROR_BACKOFF * 2u32.pow(self.server_errors)).await;
        self.server_errors += 1;
        true
    }
}

/// The shared state of a client: its HTTP stacks, its API base, its credential and its gate.
pub(super) struct Transport {
    crab: Octocrab,
    /// The same HTTP client without octocrab's layers, for URLs off the API's host (no token, no
    /// base path: octocrab would prepend the API base's path to them).
    http: reqwest::Client,
    /// The API base without a trailing slash.
    pub(super) api_url: String,
    /// The API base's scheme and authority: the only place the token is sent.
    api_origin: (String, String),
    tokens: Arc<dyn TokenSource>,
    gate: Option<Arc<dyn RateGate>>,
    requests: AtomicU64,
}

impl Transport {
    /// The transport for `endpoint`, taking every request's token from `tokens`.
    pub(super) fn new(
        endpoint: &ForgeEndpoint,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<Transport, ForgeError> {
        let api_url = endpoint.api_url.trim_end_matches('/').to_string();
        let base: Uri = api_url
            .parse()
            .map_err(|e| ForgeError::Config(format!("API URL {api_url:?}: {e}")))?;
        let api_origin = origin(&base)
            .ok_or_else(|| ForgeError::Config(format!("API URL {api_url:?} has no host")))?;
        let http = http_client(endpoint.ca_cert_pem.as_deref())?;
        let crab = Octocrab::builder()
            .base_uri(api_url.as_str())
            .map_err(|e| ForgeError::Config(format!("API URL {api_url:?}: {e}")))?
            .add_header(ACCEPT, "application/vnd.github+json".to_string())
            .add_header(
                HeaderName::from_static("x-github-api-version"),
                API_VERSION.to_string(),
            )
            .build_with_reqwest(http.clone())
            .map_err(|e| ForgeError::Config(format!("octocrab: {e}")))?;
        Ok(Transport {
            crab,
            http,
            api_url,
            api_origin,
            tokens,
            gate: None,
            requests: AtomicU64::new(0),
        })
    }

    /// The same transport admitted by `gate`, its request count carried over.
    pub(super) fn with_gate(&self, gate: Arc<dyn RateGate>) -> Transport {
        Transport {
            crab: self.crab.clone(),
            http: self.http.clone(),
            api_url: self.api_url.clone(),
            api_origin: self.api_origin.clone(),
            tokens: self.tokens.clone(),
            gate: Some(gate),
            requests: AtomicU64::new(self.requests()),
        }
    }

    /// HTTP requests sent so far (retries included).
    pub(super) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `target` as an absolute URL.
    fn url(&self, target: &str) -> String {
        if target.starts_with("https://") || target.starts_with("http://") {
            target.to_string()
        } else {
            format!("{}/{}", self.api_url, target.trim_start_matches('/'))
        }
    }

    /// `target` as shown in errors: relative to the API base when it is under it.
    pub(super) fn shown(&self, target: &str) -> String {
        let url = self.url(target);
        match url.strip_prefix(&self.api_url) {
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            // An absolute URL from elsewhere (a release asset's) may be pre-signed.
            _ => crate::redact::scrub(&url, None),
        }
    }

    /// Whether a request to `uri` carries the token ([`token_hosts::token_may_go_to`]).
    fn is_api(&self, uri: &Uri) -> bool {
        origin(uri).is_some_and(|o| super::token_hosts::token_may_go_to(&self.api_origin, &o))
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
            Answer::Streaming(resp) => {
                read_whole(resp)
                    .await
                    .map_err(|detail| ForgeError::Transport {
                        method: name,
                        path: self.shown(target),
                        detail,
                    })
            }
        }
    }

    /// [`Self::send`]; with `stream`, a success is [`Answer::Streaming`].
    pub(super) async fn exchange(
        &self,
        method: Method,
        target: &str,
        if_none_match: Option<&str>,
        body: ReqBody<'_>,
        accept: Option<&str>,
        stream: bool,
    ) -> Result<Answer, ForgeError> {
        let req = self.request(method, target, if_none_match, body, accept, stream)?;
        let mut retries = Retries::default();
        loop {
            let admission = self.admit(req.api).await?;
            let token = self.tokens.current();
            self.requests.fetch_add(1, Ordering::Relaxed);
            let raw = match self.attempt(&req, &token).await? {
                Ok(Answer::Read(raw)) => raw,
                Ok(Answer::Streaming(resp)) => {
                    // A success: reported to the gate like any answer, its body left to the
                    // caller.
                    self.observe(resp.headers(), req.api);
                    drop(admission);
                    return Ok(Answer::Streaming(resp));
                }
                Err(_) if retries.back_off().await => continue,
                Err(detail) => return Err(transport_error(&req, detail)),
            };
            let rate = self.observe(&raw.headers, req.api);
            // Held until the answer is reported, so the gate knows which requests it shows.
            drop(admission);
            if self
                .again(&req, &raw, rate.as_ref(), &token, &mut retries)
                .await
            {
                continue;
            }
            return settle(&req, raw, rate.as_ref());
        }
    }

    /// The request's fixed parts, shared by every attempt.
    fn request<'a>(
        &self,
        method: Method,
        target: &str,
        if_none_match: Option<&'a str>,
        body: ReqBody<'a>,
        accept: Option<&'a str>,
        stream: bool,
    ) -> Result<Request<'a>, ForgeError> {
        let url = self.url(target);
        let shown = self.shown(target);
        let uri: Uri = url
            .parse()
            .map_err(|e| ForgeError::Config(format!("URL {shown}: {e}")))?;
        Ok(Request {
            method,
            api: self.is_api(&uri),
            under_base: url.starts_with(&format!("{}/", self.api_url)),
            url,
            uri,
            shown,
            if_none_match,
            body,
            accept,
            stream,
        })
    }

    /// Whether to send the request again after `raw` (a refused token replaced, a rate limit
    /// waited out, a 5xx backed off), waiting as needed.
    async fn again(
        &self,
        req: &Request<'_>,
        raw: &Raw,
        rate: Option<&RateSnapshot>,
        token: &Secret,
        retries: &mut Retries,
    ) -> bool {
        let (method, path, status) = (&req.method, &req.shown, raw.status);
        if status == 401 && !retries.token_refreshed && req.api && self.fresher(token).await {
            tracing::info!(%method, %path, "GitHub refused the token: retrying with a fresher one");
            retries.token_refreshed = true;
            return true;
        }
        if (status == 403 || status == 429)
            && let Some((wait, secondary)) = rate_limit_wait(raw, rate)
        {
            tracing::warn!(
                %method, %path, status, wait_secs = wait.as_secs_f64(), secondary,
                "GitHub rate limit: waiting"
            );
            self.limited(wait, secondary).await;
            tokio::time::sleep(wait).await;
            return true;
        }
        if status >= 500 && retries.server_errors < SERVER_ERROR_RETRIES {
            tracing::warn!(%method, %path, status, "GitHub server error: retrying");
            return retries.back_off().await;
        }
        false
    }

    /// Whether the token source has a token other than `rejected`.
    async fn fresher(&self, rejected: &Secret) -> bool {
        self.tokens
            .refresh(rejected)
            .await
            .is_some_and(|fresh| fresh.expose() != rejected.expose())
    }

    /// Waits for the gate's admission (none without a gate, or off the API's host).
    async fn admit(&self, api: bool) -> Result<Admission, ForgeError> {
        match &self.gate {
            Some(gate) if api => gate.admit().await,
            _ => Ok(Admission::free()),
        }
    }

    /// Reports an answer's `x-ratelimit-*` reading to the gate (API answers only); returns it.
    fn observe(&self, headers: &HeaderMap, api: bool) -> Option<RateSnapshot> {
        let rate = RateSnapshot::from_headers(headers);
        if let (Some(gate), Some(rate), true) = (&self.gate, &rate, api) {
            gate.observe(rate);
        }
        rate
    }

    async fn limited(&self, wait: Duration, secondary: bool) {
        if let Some(gate) = &self.gate {
            let until = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            gate.limited(until, secondary).await;
        }
    }

    /// `Authorization: Bearer <token>` for the API's own host; `None` elsewhere or without a
    /// token.
    fn authorization(
        &self,
        req: &Request<'_>,
        token: &Secret,
    ) -> Result<Option<HeaderValue>, ForgeError> {
        if !req.api || token.expose().is_empty() {
            return Ok(None);
        }
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                ForgeError::Config("the token holds characters not allowed in a header".into())
            })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// One attempt: through octocrab under the API base, through reqwest alone otherwise or
    /// when the body streams (octocrab's request bodies are bytes in memory).
    async fn attempt(&self, req: &Request<'_>, token: &Secret) -> Result<Attempt, ForgeError> {
        let auth = self.authorization(req, token)?;
        let streamed = req.stream || matches!(req.body, ReqBody::File { .. });
        if req.api && req.under_base && !streamed {
            self.via_octocrab(req, auth).await
        } else {
            self.send_elsewhere(req, auth).await
        }
    }

    /// One attempt through octocrab, its answer read whole.
    async fn via_octocrab(
        &self,
        req: &Request<'_>,
        auth: Option<HeaderValue>,
    ) -> Result<Attempt, ForgeError> {
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(req.uri.clone());
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth);
        }
        if let Some(tag) = req.if_none_match {
            builder = builder.header(IF_NONE_MATCH, tag);
        }
        if let Some(accept) = req.accept {
            let accept =
                HeaderValue::from_str(accept).map_err(|e| ForgeError::Config(e.to_string()))?;
            builder = builder.header(ACCEPT, accept);
        }
        let body: Option<&Value> = match req.body {
            ReqBody::None => None,
            ReqBody::Json(v) => Some(v),
            ReqBody::File { .. } => {
                return Err(ForgeError::Config(
                    "a file body is sent through reqwest, not octocrab".into(),
                ));
            }
        };
        let request = self
            .crab
            .build_request(builder, body)
            .map_err(|e| ForgeError::Config(format!("{} {}: {e}", req.method, req.shown)))?;
        let response = match self.crab.execute(request).await {
            Ok(response) => response,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let (parts, body) = response.into_parts();
        Ok(match body.collect().await {
            Ok(collected) => Ok(Answer::Read(Raw {
                status: parts.status.as_u16(),
                headers: parts.headers,
                bytes: collected.to_bytes().to_vec(),
            })),
            Err(e) => Err(e.to_string()),
        })
    }

    /// One attempt through reqwest alone: off the API's base, or a body that streams (a file
    /// up, an asset down); the token (`auth`) only for the API's own host. With `stream`, a
    /// success comes back with its body unread.
    async fn send_elsewhere(
        &self,
        req: &Request<'_>,
        auth: Option<HeaderValue>,
    ) -> Result<Attempt, ForgeError> {
        let mut builder = self.http.request(req.method.clone(), &req.url);
        if let Some(auth) = auth {
            // The API's own host outside octocrab (uploads, downloads): GitHub's headers too.
            builder = builder
                .header(AUTHORIZATION, auth)
                .header("x-github-api-version", API_VERSION);
        }
        if let Some(tag) = req.if_none_match {
            builder = builder.header(IF_NONE_MATCH, tag);
        }
        if let Some(accept) = req.accept {
            builder = builder.header(ACCEPT, accept);
        }
        let resp = match with_body(builder, req.body).await?.send().await {
            Ok(resp) => resp,
            Err(e) => return Ok(Err(e.without_url().to_string())),
        };
        if req.stream && resp.status().is_success() {
            return Ok(Ok(Answer::Streaming(resp)));
        }
        Ok(read_whole(resp).await.map(Answer::Read))
    }
}

/// `builder` with `body`: JSON as bytes, a file streamed with an explicit length (GitHub's
/// uploads want one, and hyper then sends the stream as exactly that many bytes, not chunked).
async fn with_body(
    builder: reqwest::RequestBuilder,
    body: ReqBody<'_>,
) -> Result<reqwest::RequestBuilder, ForgeError> {
    Ok(match body {
        ReqBody::None => builder,
        ReqBody::Json(body) => builder
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string()),
        ReqBody::File {
            content_type,
            path,
            len,
        } => builder
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, len)
            .body(super::transfer::file_body(path).await?),
    })
}

/// An answer read whole (an error's text without its URL when the body breaks off).
async fn read_whole(resp: reqwest::Response) -> Result<Raw, String> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    match resp.bytes().await {
        Ok(bytes) => Ok(Raw {
            status,
            headers,
            bytes: bytes.to_vec(),
        }),
        Err(e) => Err(e.without_url().to_string()),
    }
}

/// The last answer as the call's outcome: 2xx and 304 succeed, anything else is a
/// [`ForgeError::Status`] with GitHub's message (scrubbed) and, for a rate limit, its wait.
fn settle(req: &Request<'_>, raw: Raw, rate: Option<&RateSnapshot>) -> Result<Answer, ForgeError> {
    let status = raw.status;
    if (200..300).contains(&status) || status == 304 {
        return Ok(Answer::Read(raw));
    }
    Err(ForgeError::Status {
        method: req.method.to_string(),
        path: req.shown.clone(),
        status,
        message: crate::redact::scrub(&github_message(&raw.bytes), None),
        retry_after: rate_limit_wait(&raw, rate).map(|(wait, _)| wait),
    })
}

fn transport_error(req: &Request<'_>, detail: String) -> ForgeError {
    ForgeError::Transport {
        method: req.method.to_string(),
        path: req.shown.clone(),
        detail,
    }
}

/// The HTTP client both stacks share: timeouts, user agent, and `ca_cert_pem` as the only
/// trusted root when given.
fn http_client(ca_cert_pem: Option<&str>) -> Result<reqwest::Client, ForgeError> {
    let mut http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(USER_AGENT);
    if let Some(pem) = ca_cert_pem {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| ForgeError::Config(format!("CA certificate: {e}")))?;
        http = http.tls_certs_only([cert]);
    }
    http.build()
        .map_err(|e| ForgeError::Config(format!("HTTP client: {e}")))
}

/// The scheme and authority of `uri` (lower-case), when it has both.
fn origin(uri: &Uri) -> Option<(String, String)> {
    Some((
        uri.scheme_str()?.to_ascii_lowercase(),
        uri.authority()?.as_str().to_ascii_lowercase(),
    ))
}

/// A header's value, when it is text.
pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
