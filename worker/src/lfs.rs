//! Git LFS objects of a bare mirror: find the pointers its blobs hold and fetch the objects they
//! name through the LFS batch API, with our own client (reqwest), into a local object store.
//!
//! - [`find_pointers`] scans the mirror's object database (every blob object, reachable or not)
//!   for LFS pointer files.
//! - [`fetch`] brings `store` up to date for those pointers: an object already present whose
//!   SHA-256 and size match is reused; the others are asked for from
//!   `<repo_url>/info/lfs/objects/batch` (git-lfs's default endpoint for a clone URL ending in
//!   `.git`) in batches of [`BATCH_SIZE`], downloaded to a temporary file under `store/tmp/`,
//!   verified and renamed into place.
//!
//! The store's layout is git-lfs's `.git/lfs/objects`: `store/<oid[0..2]>/<oid[2..4]>/<oid>`, so
//! a restore copies it as is into a clone's `.git/lfs/objects`. Objects no longer referenced are
//! never deleted (an old backup's objects are harmless, and deleting needs the union of every
//! kept backup's pointers).
//!
//! Secrets: the token is only ever put in an `Authorization` header (marked sensitive). Errors
//! name URLs without query strings (download hrefs may be pre-signed) and never a header value.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use repovault_common::secret::Secret;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

/// The media type of LFS batch requests and answers (git-lfs `docs/api/batch.md`).
const LFS_MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// Objects per batch request: git-lfs's own batch size (`tq/transfer_queue.go`,
/// `defaultBatchSize = 100`).
pub const BATCH_SIZE: usize = 100;

/// The largest blob that is read as a pointer candidate: git-lfs's `blobSizeCutoff` (1024
/// bytes, its scanner's limit); a pointer is about 130 bytes.
pub const MAX_POINTER_SIZE: u64 = 1024;

/// The first line of every pointer (git-lfs `docs/spec.md`).
const POINTER_VERSION: &str = "version https://git-lfs.github.com/spec/v1";

/// Waits before the retries of a transport error, a 5xx, a 429 or a garbled download: three
/// retries after 1, 2 and 4 s (repovault's choice for issue 4: a worker gives up within about 7 s
/// plus timeouts; git-lfs's own `lfs.transfer.maxretries` default is 8).
const RETRY_BACKOFF: [Duration; 3] = [
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

/// Everything that can fail. Messages carry the context (which repository, object, URL or
/// status) but never a token or a header value.
#[derive(Debug, thiserror::Error)]
pub enum LfsError {
    #[error("reading the git objects of {path}: {detail}")]
    Repository { path: PathBuf, detail: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("LFS configuration: {0}")]
    Config(String),
    #[error(
        "LFS batch endpoint {url} refused the credentials: HTTP {status}{}",
        fmt_message(message)
    )]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{what} {url}: HTTP {status}{}", fmt_message(message))]
    Status {
        what: &'static str,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{what} {url}: {detail} (after {attempts} attempts)")]
    Transport {
        what: &'static str,
        url: String,
        attempts: usize,
        detail: String,
    },
    #[error("LFS batch answer from {url} is not valid: {detail}")]
    Protocol { url: String, detail: String },
    #[error(
        "LFS object {oid}: the server refused it: error {code}{}",
        fmt_message(message)
    )]
    ObjectRefused {
        oid: String,
        code: u16,
        message: String,
    },
    #[error("LFS object {oid} from {url}: {detail}")]
    Corrupt {
        oid: String,
        url: String,
        detail: String,
    },
    #[error("LFS fetch interrupted")]
    Interrupted,
}

fn fmt_message(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(" ({m})")
    }
}

/// Where a repository's LFS objects come from.
#[derive(Clone)]
pub struct LfsSource {
    /// The clone URL, `https://HOST/OWNER/REPO.git`, without credentials.
    pub repo_url: String,
    /// Sent as `Authorization: Basic base64("x-access-token:" + token)` (what GitHub accepts
    /// from git-lfs for personal and installation tokens).
    pub token: Option<Secret>,
    /// A PEM CA certificate to trust instead of the platform's roots (GitHub Enterprise with a
    /// private CA, the simulator).
    pub ca_cert_pem: Option<String>,
}

impl std::fmt::Debug for LfsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LfsSource")
            .field("repo_url", &self.repo_url)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("ca_cert_pem", &self.ca_cert_pem.is_some())
            .finish()
    }
}

/// What [`fetch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LfsReport {
    /// Distinct LFS objects the mirror's pointers name.
    pub pointers: u64,
    /// Objects downloaded (and verified) by this fetch.
    pub fetched: u64,
    /// Objects already in the store with the right SHA-256 and size.
    pub reused: u64,
    /// Bytes of the fetched objects.
    pub bytes_fetched: u64,
    /// `(oid, reason)` of the objects the server does not have (per-object error 404 or 410, or
    /// a 404/410 on the download): the backup lacks them and says so.
    pub missing: Vec<(String, String)>,
}

/// Parses an LFS pointer file (git-lfs `docs/spec.md`): UTF-8 `key value` lines, each ending in
/// `\n`, the first `version https://git-lfs.github.com/spec/v1`, then keys in order with
/// `oid sha256:<64 lowercase hex>` and `size <decimal>` required (extension keys allowed).
/// Returns `(oid, size)`, or `None` for anything else (including the empty pointer of an empty
/// file, which names no object to fetch).
pub fn parse_pointer(data: &[u8]) -> Option<(String, u64)> {
    if data.len() as u64 > MAX_POINTER_SIZE {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let body = text.strip_suffix('\n')?;
    let mut lines = body.split('\n');
    if lines.next()? != POINTER_VERSION {
        return None;
    }
    let (mut oid, mut size) = (None, None);
    let mut last_key = "";
    for line in lines {
        let (key, value) = line.split_once(' ')?;
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'));
        // Keys after `version` are sorted and unique (the spec); that also refuses duplicates.
        if !key_ok || key <= last_key {
            return None;
        }
        last_key = key;
        match key {
            "oid" => {
                let hex = value.strip_prefix("sha256:")?;
                if !valid_oid(hex) {
                    return None;
                }
                oid = Some(hex.to_string());
            }
            "size" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                size = Some(value.parse::<u64>().ok()?);
            }
            _ => {}
        }
    }
    Some((oid?, size?))
}

/// A SHA-256 in lowercase hex.
fn valid_oid(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where the object `oid` lives in `store` (git-lfs's layout). `oid` must be a valid oid.
pub fn object_path(store: &Path, oid: &str) -> PathBuf {
    store.join(&oid[0..2]).join(&oid[2..4]).join(oid)
}

/// Every LFS object (oid → size) named by a pointer among the blob objects of the bare mirror
/// `bare`: all blobs in its object database (packed and loose, reachable or not; a mirror keeps
/// few unreachable objects, and fetching an old pointer's object too is harmless). Only blobs of
/// at most [`MAX_POINTER_SIZE`] bytes are read; the others are judged by their header alone.
/// Blocking: call from `spawn_blocking` in async code.
pub fn find_pointers(bare: &Path) -> Result<BTreeMap<String, u64>, LfsError> {
    let fail = |detail: String| LfsError::Repository {
        path: bare.to_owned(),
        detail,
    };
    let repo = gix::open_opts(bare, gix::open::Options::isolated())
        .map_err(|e| fail(format!("cannot open as a git repository: {e}")))?;
    let ids = repo
        .objects
        .store_ref()
        .iter()
        .map_err(|e| fail(format!("listing objects: {e}")))?;
    let mut found = BTreeMap::new();
    for id in ids {
        let id = id.map_err(|e| fail(format!("listing objects: {e}")))?;
        let header = repo
            .find_header(id)
            .map_err(|e| fail(format!("object {id}: {e}")))?;
        if header.kind() != gix::object::Kind::Blob || header.size() > MAX_POINTER_SIZE {
            continue;
        }
        let blob = repo
            .find_blob(id)
            .map_err(|e| fail(format!("blob {id}: {e}")))?;
        if let Some((oid, size)) = parse_pointer(&blob.data) {
            found.insert(oid, size);
        }
    }
    Ok(found)
}

/// Whether `store` holds `oid` with `size` bytes whose SHA-256 is `oid`. A missing or unreadable
/// file is "no" (it is fetched again); blocking.
fn stored_and_valid(store: &Path, oid: &str, size: u64) -> bool {
    let path = object_path(store, oid);
    let Ok(mut file) = std::fs::File::open(&path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    hex::encode(hasher.finalize()) == oid
}

/// A URL for messages: scheme, host, port and path; never userinfo or query (pre-signed hrefs
/// carry credentials there).
fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// An error and its sources, for messages (reqwest's own message is terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A server's message, shortened and with the token (if it were echoed) removed.
fn scrub(message: &str, token: Option<&Secret>) -> String {
    let mut m: String = message.chars().take(MAX_MESSAGE).collect();
    if let Some(t) = token
        && !t.is_empty()
    {
        m = m.replace(t.expose(), "[redacted]");
    }
    m
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    operation: &'static str,
    transfers: [&'static str; 1],
    objects: Vec<BatchObjectSpec<'a>>,
    hash_algo: &'static str,
}

#[derive(Serialize)]
struct BatchObjectSpec<'a> {
    oid: &'a str,
    size: u64,
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(default)]
    transfer: Option<String>,
    #[serde(default)]
    objects: Vec<BatchObject>,
}

#[derive(Deserialize)]
struct BatchObject {
    oid: String,
    #[serde(default)]
    actions: Option<Actions>,
    #[serde(default)]
    error: Option<ObjectError>,
}

#[derive(Deserialize)]
struct Actions {
    #[serde(default)]
    download: Option<Action>,
    #[serde(default)]
    upload: Option<Action>,
    #[serde(default)]
    verify: Option<Action>,
}

#[derive(Deserialize)]
struct Action {
    href: String,
    #[serde(default)]
    header: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ObjectError {
    code: u16,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

/// The HTTP side of one fetch.
struct Client {
    http: reqwest::Client,
    batch_url: url::Url,
    /// `Basic ...`, marked sensitive; `None` without a token.
    auth: Option<HeaderValue>,
    token: Option<Secret>,
}

/// One attempt's failure: retried or not.
enum Attempt {
    Retry(String),
    Fatal(LfsError),
}

/// What a download ended with.
enum Downloaded {
    Ok(u64),
    /// 404/410 from the href: the server lost the object after the batch answer.
    Gone(String),
}

impl Client {
    fn new(source: &LfsSource) -> Result<Client, LfsError> {
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
        let auth = match &source.token {
            Some(t) if !t.is_empty() => {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("x-access-token:{}", t.expose()));
                let mut v = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
                    LfsError::Config("the token holds characters a header cannot".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        Ok(Client {
            http,
            batch_url,
            auth,
            token: source.token.clone(),
        })
    }

    /// Runs `attempt` once and up to three more times while it says `Retry`, waiting
    /// [`RETRY_BACKOFF`] in between.
    async fn with_retries<T, F, Fut>(
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
    async fn batch(
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
                    .map(|b| scrub(&b.message, self.token.as_ref()))
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

    /// The headers of a download: exactly the batch answer's `header` map, plus our Basic
    /// authorization when the href is on the repository's own origin and the map has none.
    fn download_headers(
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

    /// Downloads `oid` (`size` bytes) from `href` into `store`, verified, renamed into place.
    async fn download(
        &self,
        store: &Path,
        oid: &str,
        size: u64,
        action: &Action,
        interrupt: &AtomicBool,
        // Called with the bytes received so far by the current attempt.
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<Downloaded, LfsError> {
        let href = url::Url::parse(&action.href).map_err(|e| LfsError::Protocol {
            url: display_url(&self.batch_url),
            detail: format!("object {oid}: download href is not a URL: {e}"),
        })?;
        if !matches!(href.scheme(), "https" | "http") {
            return Err(LfsError::Protocol {
                url: display_url(&self.batch_url),
                detail: format!("object {oid}: download href has scheme {:?}", href.scheme()),
            });
        }
        let headers = self.download_headers(&href, &action.header, oid)?;
        let shown = display_url(&href);
        let tmp_dir = store.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(|source| LfsError::Io {
                context: format!("creating {}", tmp_dir.display()),
                source,
            })?;
        let dest = object_path(store, oid);
        self.with_retries("LFS download", &href, interrupt, || async {
            let tmp = TempFile(tmp_dir.join(format!("{oid}.{}", uuid::Uuid::now_v7())));
            let resp = self
                .http
                .get(href.clone())
                .headers(headers.clone())
                .send()
                .await;
            let mut resp = match resp {
                Ok(r) => r,
                Err(e) => return Err(Attempt::Retry(error_chain(&e.without_url()))),
            };
            let status = resp.status();
            if retryable(status) {
                return Err(Attempt::Retry(format!("HTTP {status}")));
            }
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Ok(Downloaded::Gone(format!("download answered HTTP {status}")));
            }
            if !status.is_success() {
                return Err(Attempt::Fatal(LfsError::Status {
                    what: "LFS download",
                    url: shown.clone(),
                    status: status.as_u16(),
                    message: String::new(),
                }));
            }
            let io = |context: String| {
                move |source: std::io::Error| Attempt::Fatal(LfsError::Io { context, source })
            };
            let mut file = tokio::fs::File::create(&tmp.0)
                .await
                .map_err(io(format!("creating {}", tmp.0.display())))?;
            let mut hasher = Sha256::new();
            let mut got = 0u64;
            loop {
                if interrupt.load(Ordering::Relaxed) {
                    return Err(Attempt::Fatal(LfsError::Interrupted));
                }
                let chunk = match resp.chunk().await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => return Err(Attempt::Retry(error_chain(&e.without_url()))),
                };
                got += chunk.len() as u64;
                if got > size {
                    break;
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(io(format!("writing {}", tmp.0.display())))?;
                on_bytes(got);
            }
            file.sync_all()
                .await
                .map_err(io(format!("writing {}", tmp.0.display())))?;
            drop(file);
            let actual = hex::encode(hasher.finalize());
            if got != size || actual != oid {
                // A truncated or garbled transfer: try again; the temporary file goes away.
                let detail = if got != size {
                    format!(
                        "got {got}{} bytes, expected {size}",
                        if got > size { "+" } else { "" }
                    )
                } else {
                    format!("content has SHA-256 {actual}")
                };
                return Err(Attempt::Retry(format!("object {oid}: {detail}")));
            }
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            tokio::fs::rename(&tmp.0, &dest)
                .await
                .map_err(io(format!("renaming into {}", dest.display())))?;
            tmp.disarm();
            Ok(Downloaded::Ok(size))
        })
        .await
        .map_err(|e| match e {
            LfsError::Transport { detail, .. } if detail.starts_with("object ") => {
                LfsError::Corrupt {
                    oid: oid.to_string(),
                    url: shown.clone(),
                    detail,
                }
            }
            other => other,
        })
    }
}

fn retryable(status: StatusCode) -> bool {
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

/// A temporary file removed when dropped, unless disarmed after its rename.
struct TempFile(PathBuf);

impl TempFile {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Brings `store` up to date with the LFS objects the mirror `bare` references (see the module
/// documentation): finds the pointers, reuses the objects already stored and valid, asks
/// `source`'s batch API for the others in batches of [`BATCH_SIZE`], and downloads, verifies
/// (SHA-256 and size) and renames each into place; a failed or partial download never leaves a
/// file at an object's path. Objects the server does not have are listed in
/// [`LfsReport::missing`], not an error. Transport errors, 5xx and 429 are retried (see
/// [`RETRY_BACKOFF`]); a 401/403 from the batch endpoint is [`LfsError::Unauthorized`].
///
/// `interrupt` is checked before every request and between the chunks of a download; once set,
/// the fetch ends with [`LfsError::Interrupted`] (objects already renamed stay, and count next
/// time). `progress(done_objects, done_bytes, total_bytes)` is called after the local check and
/// as objects come in: done counts the objects settled so far (reused, fetched or missing),
/// `done_bytes` the bytes downloaded, `total_bytes` the bytes of the objects to download.
pub async fn fetch(
    bare: &Path,
    store: &Path,
    source: &LfsSource,
    interrupt: &AtomicBool,
    progress: impl Fn(u64, u64, u64) + Sync,
) -> Result<LfsReport, LfsError> {
    let client = Client::new(source)?;
    let (bare_owned, store_owned) = (bare.to_owned(), store.to_owned());
    let (pointers, wanted) = tokio::task::spawn_blocking(move || {
        let pointers = find_pointers(&bare_owned)?;
        let wanted: Vec<(String, u64)> = pointers
            .iter()
            .filter(|(oid, size)| !stored_and_valid(&store_owned, oid, **size))
            .map(|(oid, size)| (oid.clone(), *size))
            .collect();
        Ok::<_, LfsError>((pointers, wanted))
    })
    .await
    .map_err(|e| LfsError::Repository {
        path: bare.to_owned(),
        detail: format!("the object scan failed: {e}"),
    })??;

    let mut report = LfsReport {
        pointers: pointers.len() as u64,
        reused: (pointers.len() - wanted.len()) as u64,
        ..LfsReport::default()
    };
    let total_bytes: u64 = wanted.iter().map(|(_, s)| s).sum();
    let mut done_objects = report.reused;
    progress(done_objects, 0, total_bytes);
    if wanted.is_empty() {
        return Ok(report);
    }
    tokio::fs::create_dir_all(store)
        .await
        .map_err(|source| LfsError::Io {
            context: format!("creating {}", store.display()),
            source,
        })?;

    for chunk in wanted.chunks(BATCH_SIZE) {
        let specs: Vec<(&str, u64)> = chunk.iter().map(|(o, s)| (o.as_str(), *s)).collect();
        let answer = client.batch("download", &specs, interrupt).await?;
        if let Some(t) = &answer.transfer
            && t != "basic"
        {
            return Err(LfsError::Protocol {
                url: display_url(&client.batch_url),
                detail: format!("transfer {t:?} was not asked for"),
            });
        }
        let mut by_oid: BTreeMap<&str, &BatchObject> = BTreeMap::new();
        for o in &answer.objects {
            by_oid.insert(o.oid.as_str(), o);
        }
        for (oid, size) in chunk {
            let (base, settled) = (report.bytes_fetched, done_objects);
            let progress = &progress;
            let on_bytes = move |got: u64| progress(settled, base + got, total_bytes);
            let Some(obj) = by_oid.get(oid.as_str()) else {
                report
                    .missing
                    .push((oid.clone(), "not in the LFS batch answer".into()));
                done_objects += 1;
                continue;
            };
            if let Some(err) = &obj.error {
                let message = scrub(&err.message, source.token.as_ref());
                if err.code == 404 || err.code == 410 {
                    report.missing.push((
                        oid.clone(),
                        format!(
                            "the server has no such object: error {}{}",
                            err.code,
                            fmt_message(&message)
                        ),
                    ));
                    done_objects += 1;
                    continue;
                }
                return Err(LfsError::ObjectRefused {
                    oid: oid.clone(),
                    code: err.code,
                    message,
                });
            }
            let Some(action) = obj.actions.as_ref().and_then(|a| a.download.as_ref()) else {
                return Err(LfsError::Protocol {
                    url: display_url(&client.batch_url),
                    detail: format!("object {oid}: neither a download action nor an error"),
                });
            };
            match client
                .download(store, oid, *size, action, interrupt, &on_bytes)
                .await?
            {
                Downloaded::Ok(n) => {
                    report.fetched += 1;
                    report.bytes_fetched += n;
                }
                Downloaded::Gone(reason) => report.missing.push((oid.clone(), reason)),
            }
            done_objects += 1;
            progress(done_objects, report.bytes_fetched, total_bytes);
        }
    }
    Ok(report)
}

/// What [`upload`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReport {
    /// Objects the target was asked about.
    pub objects: u64,
    /// Objects sent (and verified when the server asked for it).
    pub uploaded: u64,
    /// Objects the target already had (no upload action in its answer).
    pub present: u64,
    /// Bytes sent.
    pub bytes_uploaded: u64,
}

/// Sends the objects `objects` (oid → size) of `store` (git-lfs's layout) to `target`'s LFS
/// server through the batch API (`operation: upload`, `basic` transfer): each object the
/// answer gives an `upload` action is PUT to its `href` with exactly the action's headers (plus
/// our authorization on the repository's own origin when it names none), then confirmed with
/// its `verify` action when there is one; an object without an action is already there. Every
/// object is checked (SHA-256 and size) before it is sent; one missing from `store` or not
/// matching is an error. Transport errors, 5xx and 429 are retried as in [`fetch`]; 401/403 on
/// the batch endpoint is [`LfsError::Unauthorized`]. `progress(done_objects, done_bytes,
/// total_bytes)` follows the uploads; `interrupt` stops between requests.
pub async fn upload(
    store: &Path,
    objects: &BTreeMap<String, u64>,
    target: &LfsSource,
    interrupt: &AtomicBool,
    progress: impl Fn(u64, u64, u64) + Sync,
) -> Result<UploadReport, LfsError> {
    let client = Client::new(target)?;
    let wanted: Vec<(String, u64)> = objects.iter().map(|(o, s)| (o.clone(), *s)).collect();
    let total_bytes: u64 = wanted.iter().map(|(_, s)| s).sum();
    let mut report = UploadReport {
        objects: wanted.len() as u64,
        ..UploadReport::default()
    };
    let mut done = 0u64;
    progress(0, 0, total_bytes);
    for chunk in wanted.chunks(BATCH_SIZE) {
        for (oid, size) in chunk {
            if !valid_oid(oid) {
                return Err(LfsError::Corrupt {
                    oid: oid.clone(),
                    url: store.display().to_string(),
                    detail: "not a SHA-256 object id".into(),
                });
            }
            let (store2, oid2, size2) = (store.to_owned(), oid.clone(), *size);
            let ok = tokio::task::spawn_blocking(move || stored_and_valid(&store2, &oid2, size2))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(LfsError::Corrupt {
                    oid: oid.clone(),
                    url: object_path(store, oid).display().to_string(),
                    detail: format!("the backup does not hold it with {size} bytes"),
                });
            }
        }
        let specs: Vec<(&str, u64)> = chunk.iter().map(|(o, s)| (o.as_str(), *s)).collect();
        let answer = client.batch("upload", &specs, interrupt).await?;
        if let Some(t) = &answer.transfer
            && t != "basic"
        {
            return Err(LfsError::Protocol {
                url: display_url(&client.batch_url),
                detail: format!("transfer {t:?} was not asked for"),
            });
        }
        let by_oid: BTreeMap<&str, &BatchObject> =
            answer.objects.iter().map(|o| (o.oid.as_str(), o)).collect();
        for (oid, size) in chunk {
            let Some(obj) = by_oid.get(oid.as_str()) else {
                return Err(LfsError::Protocol {
                    url: display_url(&client.batch_url),
                    detail: format!("object {oid}: not in the LFS batch answer"),
                });
            };
            if let Some(err) = &obj.error {
                return Err(LfsError::ObjectRefused {
                    oid: oid.clone(),
                    code: err.code,
                    message: scrub(&err.message, target.token.as_ref()),
                });
            }
            let actions = obj.actions.as_ref();
            match actions.and_then(|a| a.upload.as_ref()) {
                None => report.present += 1,
                Some(action) => {
                    client
                        .put_object(store, oid, *size, action, interrupt)
                        .await?;
                    if let Some(verify) = actions.and_then(|a| a.verify.as_ref()) {
                        client.verify_object(oid, *size, verify, interrupt).await?;
                    }
                    report.uploaded += 1;
                    report.bytes_uploaded += size;
                }
            }
            done += 1;
            progress(done, report.bytes_uploaded, total_bytes);
        }
    }
    Ok(report)
}

impl Client {
    /// An action's URL, checked to be http(s).
    fn action_url(&self, oid: &str, action: &Action, what: &str) -> Result<url::Url, LfsError> {
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

    /// PUTs the object's bytes to its upload action.
    async fn put_object(
        &self,
        store: &Path,
        oid: &str,
        size: u64,
        action: &Action,
        interrupt: &AtomicBool,
    ) -> Result<(), LfsError> {
        let href = self.action_url(oid, action, "upload")?;
        let headers = self.download_headers(&href, &action.header, oid)?;
        let shown = display_url(&href);
        let path = object_path(store, oid);
        self.with_retries("LFS upload", &href, interrupt, || async {
            let data = tokio::fs::read(&path).await.map_err(|source| {
                Attempt::Fatal(LfsError::Io {
                    context: format!("reading {}", path.display()),
                    source,
                })
            })?;
            let mut req = self.http.put(href.clone()).headers(headers.clone());
            if !headers.contains_key(CONTENT_TYPE) {
                req = req.header(CONTENT_TYPE, "application/octet-stream");
            }
            let resp = match req
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(data)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return Err(Attempt::Retry(error_chain(&e.without_url()))),
            };
            let status = resp.status();
            if retryable(status) {
                return Err(Attempt::Retry(format!("HTTP {status}")));
            }
            if !status.is_success() {
                let message = resp
                    .json::<ErrorBody>()
                    .await
                    .map(|b| scrub(&b.message, self.token.as_ref()))
                    .unwrap_or_default();
                return Err(Attempt::Fatal(LfsError::Status {
                    what: "LFS upload",
                    url: shown.clone(),
                    status: status.as_u16(),
                    message,
                }));
            }
            Ok(())
        })
        .await
    }

    /// POSTs `{oid, size}` to the object's verify action.
    async fn verify_object(
        &self,
        oid: &str,
        size: u64,
        action: &Action,
        interrupt: &AtomicBool,
    ) -> Result<(), LfsError> {
        let href = self.action_url(oid, action, "verify")?;
        let headers = self.download_headers(&href, &action.header, oid)?;
        let shown = display_url(&href);
        let body = serde_json::to_vec(&BatchObjectSpec { oid, size })
            .map_err(|e| LfsError::Config(format!("encoding the verify request: {e}")))?;
        self.with_retries("LFS verify", &href, interrupt, || async {
            let resp = self
                .http
                .post(href.clone())
                .headers(headers.clone())
                .header(ACCEPT, LFS_MEDIA_TYPE)
                .header(CONTENT_TYPE, LFS_MEDIA_TYPE)
                .body(body.clone())
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => return Err(Attempt::Retry(error_chain(&e.without_url()))),
            };
            let status = resp.status();
            if retryable(status) {
                return Err(Attempt::Retry(format!("HTTP {status}")));
            }
            if !status.is_success() {
                return Err(Attempt::Fatal(LfsError::Status {
                    what: "LFS verify",
                    url: shown.clone(),
                    status: status.as_u16(),
                    message: String::new(),
                }));
            }
            Ok(())
        })
        .await
    }
}
