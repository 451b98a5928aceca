//! The transfers a batch answer's actions ask for, one object each: a download into the store
//! (streamed to a temporary file, hashed on the way, renamed into place only when whole), an
//! upload (streamed from the store) and its verify call. All file system work is `tokio::fs`
//! or streamed; an object is never held in memory whole (LFS objects can be gigabytes).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::LfsError;
use super::batch_api::{
    Action, Attempt, BatchObjectSpec, Client, ErrorBody, LFS_MEDIA_TYPE, answered, display_url,
    error_chain, server_message,
};
use super::pointer::object_path;

/// The read size of an upload's body stream (64 KiB: a few TLS records per read; the default
/// 4 KiB would cost many more reads for a large object).
const UPLOAD_CHUNK: usize = 64 * 1024;

/// What a download ended with.
pub(super) enum Downloaded {
    Ok(u64),
    /// 404/410 from the href: the server lost the object after the batch answer.
    Gone(String),
}

/// A temporary download file. Every path out of an attempt removes it (awaited) or renames it;
/// `Drop` covers only an attempt whose future is dropped mid-way (the task is cancelled), and
/// then removes the file on the blocking pool, never on the runtime thread.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> TempFile {
        TempFile { path, armed: true }
    }

    /// Removes the file (it may not exist yet).
    async fn remove(mut self) {
        self.armed = false;
        let _ = tokio::fs::remove_file(&self.path).await;
    }

    /// The file was renamed into place: nothing to remove.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            let _ = std::fs::remove_file(&path);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

impl Client {
    /// Downloads `oid` (`size` bytes) from `action` into `store`, verified (SHA-256 and size),
    /// renamed into place; a failed or partial attempt leaves no file behind. `on_bytes` is
    /// called with the bytes received so far by the current attempt.
    pub(super) async fn download(
        &self,
        store: &Path,
        oid: &str,
        size: u64,
        action: &Action,
        interrupt: &AtomicBool,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<Downloaded, LfsError> {
        let href = self.action_url(oid, action, "download")?;
        let headers = self.action_headers(&href, &action.header, oid)?;
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
            let resp = self
                .http
                .get(href.clone())
                .headers(headers.clone())
                .send()
                .await;
            let resp = answered(resp)?;
            let status = resp.status();
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
            let tmp = TempFile::new(tmp_dir.join(format!("{oid}.{}", uuid::Uuid::now_v7())));
            match receive(resp, &tmp.path, &dest, oid, size, interrupt, on_bytes).await {
                Ok(()) => {
                    tmp.disarm();
                    Ok(Downloaded::Ok(size))
                }
                Err(e) => {
                    tmp.remove().await;
                    Err(e)
                }
            }
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

    /// PUTs the object's bytes to its upload action, streamed from the store.
    pub(super) async fn put_object(
        &self,
        store: &Path,
        oid: &str,
        size: u64,
        action: &Action,
        interrupt: &AtomicBool,
    ) -> Result<(), LfsError> {
        let href = self.action_url(oid, action, "upload")?;
        let headers = self.action_headers(&href, &action.header, oid)?;
        let shown = display_url(&href);
        let path = object_path(store, oid);
        self.with_retries("LFS upload", &href, interrupt, || async {
            let file = tokio::fs::File::open(&path).await.map_err(|source| {
                Attempt::Fatal(LfsError::Io {
                    context: format!("reading {}", path.display()),
                    source,
                })
            })?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                file,
                UPLOAD_CHUNK,
            ));
            let mut req = self.http.put(href.clone()).headers(headers.clone());
            if !headers.contains_key(CONTENT_TYPE) {
                req = req.header(CONTENT_TYPE, "application/octet-stream");
            }
            // An explicit length: the stream's is unknown, and LFS servers (and the object
            // stores behind their hrefs) want one rather than a chunked body.
            let resp = answered(req.header(CONTENT_LENGTH, size).body(body).send().await)?;
            let status = resp.status();
            if !status.is_success() {
                let message = resp
                    .json::<ErrorBody>()
                    .await
                    .map(|b| server_message(&b.message, &self.secrets))
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
    pub(super) async fn verify_object(
        &self,
        oid: &str,
        size: u64,
        action: &Action,
        interrupt: &AtomicBool,
    ) -> Result<(), LfsError> {
        let href = self.action_url(oid, action, "verify")?;
        let headers = self.action_headers(&href, &action.header, oid)?;
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
            let resp = answered(resp)?;
            let status = resp.status();
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

/// Streams a successful download's body into `tmp`, hashing it on the way, and renames `tmp`
/// to `dest` when it is exactly `size` bytes with SHA-256 `oid`. A short, long or garbled body
/// is a `Retry` naming the object; the caller removes `tmp` on any error.
async fn receive(
    mut resp: reqwest::Response,
    tmp: &Path,
    dest: &Path,
    oid: &str,
    size: u64,
    interrupt: &AtomicBool,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(), Attempt> {
    let io = |context: String| {
        move |source: std::io::Error| Attempt::Fatal(LfsError::Io { context, source })
    };
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(io(format!("creating {}", tmp.display())))?;
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
            .map_err(io(format!("writing {}", tmp.display())))?;
        on_bytes(got);
    }
    file.sync_all()
        .await
        .map_err(io(format!("writing {}", tmp.display())))?;
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
    tokio::fs::rename(tmp, dest)
        .await
        .map_err(io(format!("renaming into {}", dest.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::{Path as UrlPath, State};
    use axum::http::HeaderMap;
    use axum::routing::{post, put};
    use repovault_common::secret::Secret;

    use super::super::{LfsSource, UploadReport, upload};
    use super::*;

    /// What the server below received: the PUT's headers and body, and the verify bodies.
    #[derive(Default)]
    struct Received {
        content_length: Option<String>,
        transfer_encoding: Option<String>,
        authorization: bool,
        body: Vec<u8>,
        verified: Vec<String>,
    }

    type Shared = Arc<(Mutex<Received>, u16)>;

    async fn batch(State(s): State<Shared>, body: String) -> String {
        let req: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(req["operation"], "upload");
        let objects: Vec<serde_json::Value> = req["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| {
                let oid = o["oid"].as_str().expect("oid");
                serde_json::json!({
                    "oid": oid, "size": o["size"],
                    "actions": {
                        "upload": {"href": format!("http://127.0.0.1:{}/up/{oid}", s.1)},
                        "verify": {"href": format!("http://127.0.0.1:{}/verify", s.1)},
                    },
                })
            })
            .collect();
        serde_json::json!({"transfer": "basic", "objects": objects}).to_string()
    }

    async fn receive_put(
        State(s): State<Shared>,
        UrlPath(_oid): UrlPath<String>,
        headers: HeaderMap,
        body: Bytes,
    ) {
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().expect("ASCII").to_string())
        };
        let mut r = s.0.lock().expect("lock");
        r.content_length = header("content-length");
        r.transfer_encoding = header("transfer-encoding");
        r.authorization = headers.contains_key("authorization");
        r.body = body.to_vec();
    }

    async fn verify(State(s): State<Shared>, body: String) {
        s.0.lock().expect("lock").verified.push(body);
    }

    /// An object of several upload chunks is streamed from the store with its exact length
    /// declared (not chunked: LFS servers and object stores want a length), arrives intact, and
    /// is verified.
    #[tokio::test]
    async fn an_upload_streams_the_object_with_its_length() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state: Shared = Arc::new((Mutex::default(), port));
        let app = axum::Router::new()
            .route("/o/r.git/info/lfs/objects/batch", post(batch))
            .route("/up/{oid}", put(receive_put))
            .route("/verify", post(verify))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let content: Vec<u8> = (0..3 * UPLOAD_CHUNK as u32 + 17)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let oid = hex::encode(Sha256::digest(&content));
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        let path = object_path(&store, &oid);
        tokio::fs::create_dir_all(path.parent().expect("parent"))
            .await
            .expect("mkdir");
        tokio::fs::write(&path, &content).await.expect("write");

        let target = LfsSource {
            repo_url: format!("http://127.0.0.1:{port}/o/r.git"),
            token: Some(Secret::new("ghp_uploadToken0000000000000000000000000")),
            ca_cert_pem: None,
        };
        let objects = BTreeMap::from([(oid.clone(), content.len() as u64)]);
        let never = AtomicBool::new(false);
        let report = upload(&store, &objects, &target, &never, |_, _, _| {})
            .await
            .expect("upload");
        assert_eq!(
            report,
            UploadReport {
                objects: 1,
                uploaded: 1,
                present: 0,
                bytes_uploaded: content.len() as u64,
            }
        );
        let r = state.0.lock().expect("lock");
        assert_eq!(r.content_length, Some(content.len().to_string()));
        assert_eq!(r.transfer_encoding, None);
        assert!(r.authorization, "the href is on the repository's origin");
        assert!(r.body == content, "the body arrived intact");
        assert_eq!(r.verified.len(), 1);
        assert!(r.verified[0].contains(&oid), "{}", r.verified[0]);
    }
}
