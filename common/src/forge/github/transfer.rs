//! Files to and from GitHub, streamed: a release asset may be 2 GiB (GitHub's largest), so
//! neither direction ever holds one whole in memory.
//!
//! - [`GitHubClient::upload_file`] sends a file as the request body, read chunk by chunk
//!   ([`UPLOAD_CHUNK`]) while the request is on the wire, with `Content-Length` from the file's
//!   metadata; every attempt (a 5xx, a rate limit waited out, a refreshed token) opens the file
//!   again.
//! - [`GitHubClient::download`] writes an answer's body to a file as it arrives and hashes it on
//!   the way (SHA-256 and size); a body that breaks off is fetched again from the start, as
//!   often as a 5xx is retried.
//!
//! No file-system call runs on an async runtime thread: tokio's `File` reads on its blocking
//! pool, and a download's writer is one blocking task fed through a bounded channel.

use std::io::Write as _;
use std::path::Path;

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::rest_client::GitHubClient;
use super::transport::{Answer, ReqBody, SERVER_ERROR_BACKOFF, SERVER_ERROR_RETRIES};
use crate::forge::ForgeError;

/// Bytes read from the file per chunk of an upload body. Our choice: tokio's `File` hands every
/// read to its blocking pool, so 256 KiB keeps that to four hand-offs per MiB while an upload
/// holds little memory.
pub const UPLOAD_CHUNK: usize = 256 * 1024;
/// Chunks of a download queued for its writer before the network side waits. Our choice: a
/// chunk is at most one fill of hyper's read buffer (408 KiB at its largest, hyper's
/// `DEFAULT_MAX_BUFFER_SIZE`), so at most about 3 MiB wait in memory, enough to ride out a slow
/// write.
const WRITE_QUEUE: usize = 8;
/// A download's write buffer: one `write(2)` per this many bytes. Our choice, as
/// [`UPLOAD_CHUNK`].
const WRITE_BUFFER: usize = 256 * 1024;

/// A file written by [`GitHubClient::download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub size: u64,
    /// Their SHA-256, lower-case hex.
    pub sha256: String,
}

impl GitHubClient {
    /// POSTs the file at `path` as `content_type` to `url` (a release's `upload_url` with its
    /// `{?name,label}` template replaced by a query), streamed from disk; the answer's JSON (the
    /// asset). An answer whose `size` is not the file's length is an error: GitHub did not
    /// store what was sent.
    pub async fn upload_file(
        &self,
        url: &str,
        content_type: &str,
        path: &Path,
    ) -> Result<Value, ForgeError> {
        let len = tokio::fs::metadata(path)
            .await
            .map_err(|e| ForgeError::io(path, e))?
            .len();
        let body = ReqBody::File {
            content_type,
            path,
            len,
        };
        let raw = self.send(http::Method::POST, url, None, body, None).await?;
        let decode = |detail: String| ForgeError::Decode {
            method: "POST".into(),
            path: self.shown(url),
            detail,
        };
        let answer: Value =
            serde_json::from_slice(&raw.bytes).map_err(|e| decode(e.to_string()))?;
        if let Some(stored) = answer.get("size").and_then(Value::as_u64)
            && stored != len
        {
            return Err(decode(format!(
                "GitHub stored {stored} bytes of the {len} sent from {}",
                path.display()
            )));
        }
        Ok(answer)
    }

    /// Writes the bytes at `url` (API-relative or absolute) to `dest` (created, or truncated),
    /// asked for with `Accept: application/octet-stream`: a release asset's API URL answers 302
    /// to its download URL, which is followed; the token goes along only while the host stays
    /// the API's. Streamed: the file grows as the answer arrives. On failure `dest` may hold a
    /// part: write to a temporary name and rename once this returns.
    pub async fn download(&self, url: &str, dest: &Path) -> Result<Downloaded, ForgeError> {
        let mut broken = 0u32;
        loop {
            let response = self
                .send_streaming(url, Some("application/octet-stream"))
                .await?;
            match write_body(response, dest).await? {
                Ok(done) => return Ok(done),
                Err(detail) if broken < SERVER_ERROR_RETRIES => {
                    tracing::warn!(path = %self.shown(url), %detail, "download broke off: fetching it again");
                    tokio::time::sleep(SERVER_ERROR_BACKOFF * 2u32.pow(broken)).await;
                    broken += 1;
                }
                Err(detail) => {
                    return Err(ForgeError::Transport {
                        method: "GET".into(),
                        path: self.shown(url),
                        detail,
                    });
                }
            }
        }
    }

    /// GET `target` like [`GitHubClient::send`] (rate limits waited out, 5xx and transport
    /// errors retried), but a success comes back with its body unread, for the caller to stream.
    async fn send_streaming(
        &self,
        target: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ForgeError> {
        match self
            .exchange(http::Method::GET, target, None, ReqBody::None, accept, true)
            .await?
        {
            Answer::Streaming(resp) => Ok(resp),
            // Not expected with `stream` (every success streams); handed on from memory.
            Answer::Read(raw) => {
                let mut resp = http::Response::new(raw.bytes);
                *resp.status_mut() =
                    http::StatusCode::from_u16(raw.status).unwrap_or(http::StatusCode::OK);
                *resp.headers_mut() = raw.headers;
                Ok(reqwest::Response::from(resp))
            }
        }
    }
}

/// The file at `path` as a request body, read [`UPLOAD_CHUNK`] bytes at a time as it is sent.
pub(super) async fn file_body(path: &Path) -> Result<reqwest::Body, ForgeError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ForgeError::io(path, e))?;
    Ok(reqwest::Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK),
    ))
}

/// Writes `response`'s body to `dest` on one blocking task. The outer error is the file's; the
/// inner one the connection's (the body broke off: worth fetching again).
async fn write_body(
    mut response: reqwest::Response,
    dest: &Path,
) -> Result<Result<Downloaded, String>, ForgeError> {
    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let path = dest.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || write_chunks(&path, rx));
    let mut broken = None;
    loop {
        match response.chunk().await {
            // A closed channel: the writer stopped on an error, which its result carries.
            Ok(Some(chunk)) => {
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                broken = Some(e.without_url().to_string());
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| {
            ForgeError::io(
                dest,
                std::io::Error::other(format!("internal error (panic) writing a download: {e}")),
            )
        })?
        .map_err(|e| ForgeError::io(dest, e))?;
    Ok(match broken {
        Some(detail) => Err(detail),
        None => Ok(written),
    })
}

/// Blocking: writes every chunk `rx` receives to `path` (created, or truncated), hashing them.
fn write_chunks(path: &Path, mut rx: mpsc::Receiver<Bytes>) -> std::io::Result<Downloaded> {
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, std::fs::File::create(path)?);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        hash.update(&chunk);
        out.write_all(&chunk)?;
        size += chunk.len() as u64;
    }
    out.flush()?;
    Ok(Downloaded {
        size,
        sha256: hex::encode(hash.finalize()),
    })
}
