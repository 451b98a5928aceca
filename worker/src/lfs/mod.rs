//! Git LFS objects of a bare mirror: find the pointers its blobs hold and fetch the objects they
//! name through the LFS batch API, with our own client (reqwest), into a local object store;
//! and send a store's objects to another repository's LFS server on restore.
//!
//! - [`find_pointers`] scans the mirror's object database (every blob object, reachable or not)
//!   for LFS pointer files.
//! - [`fetch`] brings `store` up to date for those pointers: an object already present whose
//!   SHA-256 and size match is reused; the others are asked for from
//!   `<repo_url>/info/lfs/objects/batch` (git-lfs's default endpoint for a clone URL ending in
//!   `.git`) in batches of [`BATCH_SIZE`], downloaded to a temporary file under `store/tmp/`,
//!   verified and renamed into place.
//! - [`upload`] sends objects of a store to a target repository's batch endpoint.
//!
//! The store's layout is git-lfs's `.git/lfs/objects`: `store/<oid[0..2]>/<oid[2..4]>/<oid>`, so
//! a restore copies it as is into a clone's `.git/lfs/objects`. Objects no longer referenced are
//! never deleted (an old backup's objects are harmless, and deleting needs the union of every
//! kept backup's pointers).
//!
//! Where things are: `pointer` (pointer files and the store's layout; blocking), `batch_api`
//! (the HTTP client, the batch request, retries), `batch_plan` (what to do with each object of
//! an answer; pure), `object_transfer` (one object's download, upload, verify; streamed), and
//! here the two runs that tie them together.
//!
//! Secrets: the token is only ever put in an `Authorization` header (marked sensitive). Errors
//! name URLs without query strings (download hrefs may be pre-signed) and never a header value;
//! servers' messages are scrubbed ([`repovault_common::redact::scrub`]) before they are kept.

mod batch_api;
mod batch_plan;
mod object_transfer;
mod pointer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use repovault_common::secret::Secret;
use serde::{Deserialize, Serialize};

use batch_api::{Client, display_url};
use batch_plan::{DownloadStep, UploadStep, download_steps, upload_steps};
use object_transfer::Downloaded;
use pointer::{stored_and_valid, valid_oid};

pub use pointer::{MAX_POINTER_SIZE, find_pointers, object_path, parse_pointer};

/// Objects per batch request: git-lfs's own batch size (`tq/transfer_queue.go`,
/// `defaultBatchSize = 100`).
pub const BATCH_SIZE: usize = 100;

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

/// A server's message in parentheses after an error, or nothing when it said none.
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

/// Brings `store` up to date with the LFS objects the mirror `bare` references (see the module
/// documentation): finds the pointers, reuses the objects already stored and valid, asks
/// `source`'s batch API for the others in batches of [`BATCH_SIZE`], and downloads, verifies
/// (SHA-256 and size) and renames each into place; a failed or partial download never leaves a
/// file at an object's path. Objects the server does not have are listed in
/// [`LfsReport::missing`], not an error. Transport errors, 5xx and 429 are retried (see
/// `batch_api::RETRY_BACKOFF`); a 401/403 from the batch endpoint is
/// [`LfsError::Unauthorized`].
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

    let shown = display_url(&client.batch_url);
    for chunk in wanted.chunks(BATCH_SIZE) {
        let specs: Vec<(&str, u64)> = chunk.iter().map(|(o, s)| (o.as_str(), *s)).collect();
        let answer = client.batch("download", &specs, interrupt).await?;
        let steps = download_steps(&answer, chunk, &client.secrets, &shown)?;
        for ((oid, size), step) in chunk.iter().zip(steps) {
            let action = match step {
                DownloadStep::Download(action) => action,
                DownloadStep::Missing(reason) => {
                    report.missing.push((oid.clone(), reason));
                    done_objects += 1;
                    continue;
                }
                DownloadStep::Fail(e) => return Err(e),
            };
            let (base, settled) = (report.bytes_fetched, done_objects);
            let progress = &progress;
            let on_bytes = move |got: u64| progress(settled, base + got, total_bytes);
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

/// Sends the objects `objects` (oid → size) of `store` (git-lfs's layout) to `target`'s LFS
/// server through the batch API (`operation: upload`, `basic` transfer): each object the
/// answer gives an `upload` action is PUT to its `href` with exactly the action's headers (plus
/// our authorization on the repository's own origin when it names none), streamed from the
/// store, then confirmed with its `verify` action when there is one; an object without an
/// action is already there. Every object is checked (SHA-256 and size, on the blocking pool)
/// before it is sent; one missing from `store` or not matching is an error. Transport errors,
/// 5xx and 429 are retried as in [`fetch`]; 401/403 on the batch endpoint is
/// [`LfsError::Unauthorized`]. `progress(done_objects, done_bytes, total_bytes)` follows the
/// uploads; `interrupt` stops between requests.
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
    let shown = display_url(&client.batch_url);
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
        let steps = upload_steps(&answer, chunk, &client.secrets, &shown)?;
        for ((oid, size), step) in chunk.iter().zip(steps) {
            match step {
                UploadStep::Present => report.present += 1,
                UploadStep::Upload { put, verify } => {
                    client.put_object(store, oid, *size, put, interrupt).await?;
                    if let Some(verify) = verify {
                        client.verify_object(oid, *size, verify, interrupt).await?;
                    }
                    report.uploaded += 1;
                    report.bytes_uploaded += size;
                }
                UploadStep::Fail(e) => return Err(e),
            }
            done += 1;
            progress(done, report.bytes_uploaded, total_bytes);
        }
    }
    Ok(report)
}
