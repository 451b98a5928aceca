//! The HTTP side of the LFS batch API (git-lfs `docs/api/batch.md`): its wire types, the client
//! with its credentials, timeouts and retries, the batch request itself, and how URLs and
//! server messages are shown in errors. The object transfers the answers point to are in
//! [`super::object_transfer`]; what to do with each answered object is [`super::batch_plan`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use repovault_common::redact::scrub;
use repovault_common::secret::Secret;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{LfsError, LfsSource};

/// The media type of LFS batch requests and answers (git-lfs `docs/api/batch.md`).
pub(super) const LFS_MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// Waits before the retries of a transport error, a 5xx, a 429 or a garbled download: three
/// retries after 1, 2 and 4 s (repovault's choice: a worker gives up within about 7 s plus
/// timeouts; git-lfs's own `lfs.transfer.maxretries` default is 8).
pub(super) const RETRY_BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// TCP connect timeout: git-lfs's `lfs.dialtimeout` default (30 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest silence on an open connection: git-lfs's `lfs.activitytimeout` default (30 s). A read
/// timeout, not a total one, so that large objects may take as long as they need.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest batch answer read (100 objects take about 50 KB; this bounds a hostile server).
const MAX_BATCH_RESPONSE: usize = 16 << 20;

/// How much of a server's error message is kept in an error.
const MAX_MESSAGE: usize = 200;

#[derive(Serialize)]
struct BatchRequest<'a> {
    operation: &'static str,
    transfers: [&'static str; 1],
    objects: Vec<BatchObjectSpec<'a>>,
    hash_algo: &'static str,
}

/// An object as requests name it (`{oid, size}`): in a batch request and a verify request.
#[derive(Serialize)]
pub(super) struct BatchObjectSpec<'a> {
    pub(super) oid: &'a str,
    pub(super) size: u64,
}

#[derive(Deserialize)]
pub(super) struct BatchResponse {
    #[serde(default)]
    pub(super) transfer: Option<String>,
    #[serde(default)]
    pub(super) objects: Vec<BatchObject>,
}

#[derive(Deserialize)]
pub(super) struct BatchObject {
    pub(super) oid: String,
    #[serde(default)]
    pub(super) actions: Option<Actions>,
    #[serde(default)]
    pub(super) error: Option<ObjectError>,
}

#[derive(Deserialize)]
pub(super) struct Actions {
    #[serde(default)]
    pub(super) download: Option<Action>,
    #[serde(default)]
    pub(super) upload: Option<Action>,
    #[serde(default)]
    pub(super) verify: Option<Action>,
}

#[derive(Deserialize)]
pub(super) struct Action {
    pub(super) href: String,
    #[serde(default)]
    pub(super) header: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(super) struct ObjectError {
    pub(super) code: u16,
    #[serde(default)]
    pub(super) message: String,
}

#[derive(Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) message: String,
}

/// The HTTP side of one fetch or upload.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) batch_url: url::Url,
    /// `Basic ...`, marked sensitive; `None` without a token.
    auth: Option<HeaderValue>,
    /// The token and the header value built from it: what server messages are scrubbed of.
    pub(super) secrets: Vec<Secret>,
}

/// One attempt's failure: retried or not.
pub(super) enum Attempt {
    Retry(String),
    Fatal(LfsError),
}

impl Client {
    pub(super) fn new(source: &LfsSource) -> Result<Client, LfsError> {
        repovault_common::tls::install_crypto_provider();
        let base = source.repo_url.trim_end_matches('/');
        let batch_url = url::Url::parse(&format!("{base}/info/lfs/objects/batch"))
            .map_err(|e| LfsError::Config(format!("repository URL {base:?}: {e}")))?;
        if !batch_url.username().is_empty() || batch_url.password().is_some() {
            return Err(LfsError::Config(
                "the repository URL must not carry credentials (use the token)".into(),
            ));
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT);
        if let Some(pem) = &source.ca_cert_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| LfsError::Config(format!("CA certificate: {e}")))?;
            http = http.tls_certs_only([cert]);
        }
        let http = http
            .build()
            .map_err(|e| LfsError::Config(format!("HTTP client: {e}")))?;
        let mut secrets = Vec::new();
        let auth = match &source.token {
            Some(t) if !t.is_empty() => {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("x-access-token:{}", t.expose()));
                let header = Secret::new(format!("Basic {basic}"));
                let mut v = HeaderValue::from_str(header.expose()).map_err(|_| {
                    LfsError::Config("the token holds characters a header cannot".into())
                })?;
                v.set_sensitive(true);
                secrets.extend([t.clone(), header]);
                Some(v)
            }
            _ => None,
        };
        Ok(Client {
            http,
            batch_url,
            auth,
            secrets,
        })
    }

    /// Runs `attempt` once and up to three more times while it says `Retry`, waiting
    /// [`RETRY_BACKOFF`] in between.
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        what: &'static str,
        url: &url::Url,
        interrupt: &AtomicBool,
        mut attempt: F,
    ) -> Result<T, LfsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let mut last = String::new();
        for i in 0..=RETRY_BACKOFF.len() {
            if interrupt.load(Ordering::Relaxed) {
                return Err(LfsError::Interrupted);
            }
            if i > 0 {
                let wait = RETRY_BACKOFF[i - 1];
                tracing::warn!(
                    url = %display_url(url),
                    "{what}: {last}; retrying in {}s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
            }
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(detail)) => last = detail,
            }
        }
        Err(LfsError::Transport {
            what,
            url: display_url(url),
            attempts: RETRY_BACKOFF.len() + 1,
            detail: last,
        })
    }

    /// One batch request for `objects` (oid, size); `operation` is `download` or `upload`.
    pub(super) async fn batch(
        &self,
        operation: &'static str,
        objects: &[(&str, u64)],
        interrupt: &AtomicBool,
    ) -> Result<BatchResponse, LfsError> {
        let body = serde_json::to_vec(&BatchRequest {
            operation,
            transfers: ["basic"],
            objects: objects
                .iter()
                .map(|&(oid, size)| BatchObjectSpec { oid, size })
                .collect(),
            hash_algo: "sha256",
        })
        .map_err(|e| LfsError::Config(format!("encoding the batch request: {e}")))?;
        let url = &self.batch_url;
        let shown = display_url(url);
        self.with_retries("LFS batch request", url, interrupt, || async {
            let mut req = self
                .http
                .post(url.clone())
                .header(ACCEPT, LFS_MEDIA_TYPE)
                .header(CONTENT_TYPE, LFS_MEDIA_TYPE)
                .body(body.clone());
            if let Some(auth) = &self.auth {
                req = req.header(AUTHORIZATION, auth.clone());
            }
            let mut resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return Err(Attempt::Retry(error_chain(&e.without_url()))),
            };
            let status = resp.status();
            let bytes = match read_limited(&mut resp, MAX_BATCH_RESPONSE).await {
                Ok(b) => b,
                Err(detail) if status.is_success() || status.is_server_error() => {
                    return Err(Attempt::Retry(detail));
                }
                Err(_) => Vec::new(),
            };
            if retryable(status) {
                return Err(Attempt::Retry(format!("HTTP {status}")));
            }
            if !status.is_success() {
                let message = serde_json::from_slice::<ErrorBody>(&bytes)
                    .map(|b| server_message(&b.message, &self.secrets))
                    .unwrap_or_default();
                return Err(Attempt::Fatal(
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        LfsError::Unauthorized {
                            url: shown.clone(),
                            status: status.as_u16(),
                            message,
                        }
                    } else {
                        LfsError::Status {
                            what: "LFS batch request",
                            url: shown.clone(),
                            status: status.as_u16(),
                            message,
                        }
                    },
                ));
            }
            serde_json::from_slice::<BatchResponse>(&bytes).map_err(|e| {
                Attempt::Fatal(LfsError::Protocol {
                    url: shown.clone(),
                    detail: e.to_string(),
                })
            })
        })
        .await
    }

    /// The headers of a transfer: exactly the batch answer's `header` map, plus our Basic
    /// authorization when the href is on the repository's own origin and the map has none.
    pub(super) fn action_headers(
        &self,
        href: &url::Url,
        given: &BTreeMap<String, String>,
        oid: &str,
    ) -> Result<HeaderMap, LfsError> {
        let mut headers = HeaderMap::new();
        for (k, v) in given {
            let name = HeaderName::from_bytes(k.as_bytes());
            let value = HeaderValue::from_str(v);
            let (Ok(name), Ok(mut value)) = (name, value) else {
                return Err(LfsError::Protocol {
                    url: display_url(&self.batch_url),
                    detail: format!(
                        "object {oid}: a download header is not a valid HTTP header (name {k:?})"
                    ),
                });
            };
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(auth) = &self.auth
            && !headers.contains_key(AUTHORIZATION)
            && href.origin() == self.batch_url.origin()
        {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        Ok(headers)
    }

    /// An action's URL, checked to be http(s); `what` names the action in errors.
    pub(super) fn action_url(
        &self,
        oid: &str,
        action: &Action,
        what: &str,
    ) -> Result<url::Url, LfsError> {
        let href = url::Url::parse(&action.href).map_err(|e| LfsError::Protocol {
            url: display_url(&self.batch_url),
            detail: format!("object {oid}: {what} href is not a URL: {e}"),
        })?;
        if !matches!(href.scheme(), "https" | "http") {
            return Err(LfsError::Protocol {
                url: display_url(&self.batch_url),
                detail: format!("object {oid}: {what} href has scheme {:?}", href.scheme()),
            });
        }
        Ok(href)
    }
}

/// A server's message for an error: scrubbed of `secrets` (the client's) and of any other
/// credential, then shortened to [`MAX_MESSAGE`] characters (in this order, so that a cut never
/// leaves the start of a secret behind).
pub(super) fn server_message(message: &str, secrets: &[Secret]) -> String {
    scrub(message, secrets).chars().take(MAX_MESSAGE).collect()
}

/// A URL for messages: scheme, host, port and path; never userinfo or query (pre-signed hrefs
/// carry credentials there, under names no list can foresee).
pub(super) fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// An error and its sources, for messages (reqwest's own message is terse).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Statuses worth another attempt: the server's trouble or its rate limit.
/// A sent request's response; a transport error or a status worth retrying is a retry.
pub(super) fn answered(
    resp: reqwest::Result<reqwest::Response>,
) -> Result<reqwest::Response, Attempt> {
    let resp = resp.map_err(|e| Attempt::Retry(error_chain(&e.without_url())))?;
    let status = resp.status();
    if retryable(status) {
        return Err(Attempt::Retry(format!("HTTP {status}")));
    }
    Ok(resp)
}

pub(super) fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Reads a response body of at most `limit` bytes.
async fn read_limited(resp: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > limit {
                    return Err(format!("answer larger than {limit} bytes"));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(error_chain(&e.without_url())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(token: &str) -> Client {
        Client::new(&LfsSource {
            repo_url: "https://lfs.example/acme/web.git".into(),
            token: Some(Secret::new(token)),
            ca_cert_pem: None,
        })
        .expect("client")
    }

    /// A token echoed across the cut at [`MAX_MESSAGE`] characters: scrubbing after the cut
    /// (what the LFS module did before the shared scrub) left the token's first part behind.
    #[test]
    fn a_server_message_is_scrubbed_before_it_is_shortened() {
        let token = "ghp_straddlingTheCut000000000000000000000";
        let c = client(token);
        let message = format!("{}{token} trailing", "x".repeat(MAX_MESSAGE - 10));
        let shown = server_message(&message, &c.secrets);
        assert!(!shown.contains(&token[..10]), "{shown}");
        assert_eq!(shown, format!("{}[redacted]", "x".repeat(MAX_MESSAGE - 10)));
    }

    /// The header our client sends, echoed, and a pre-signed link a server quotes.
    #[test]
    fn a_server_message_loses_headers_and_signed_links() {
        let token = "ghp_acmeOwner0000000000000000000000000";
        let c = client(token);
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let message = format!(
            "denied {basic}; Authorization: Bearer other; see https://s3.example/o?X-Amz-Signature=abc"
        );
        let shown = server_message(&message, &c.secrets);
        for leaked in [basic.as_str(), "Bearer other", "abc"] {
            assert!(!shown.contains(leaked), "{leaked} in {shown}");
        }
        assert!(shown.contains("X-Amz-Signature=[redacted]"), "{shown}");
        // Without a token, still the generic parts.
        let anonymous = Client::new(&LfsSource {
            repo_url: "https://lfs.example/acme/web.git".into(),
            token: None,
            ca_cert_pem: None,
        })
        .expect("client");
        assert_eq!(
            server_message("Authorization: token abc", &anonymous.secrets),
            "Authorization: token [redacted]"
        );
    }
}
