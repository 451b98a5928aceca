//! IAM users in moto, and moto's IAM enforcement switched on, for least-privilege tests.
//!
//! moto takes any key pair until [`MotoIam::enforce_auth`]; from then on every request must be
//! SigV4-signed by an access key of an IAM user created here, and is checked against that
//! user's policies. What moto 5.2 does, read in its source (`core/authorization.py`,
//! `iam/access_control.py`, `moto_server/werkzeug_app.py`) and measured:
//!
//! - The IAM query API is reached on the same endpoint as S3: moto picks the service from the
//!   credential scope of the `Authorization` header (`…/us-east-1/iam/aws4_request`), so the
//!   setup calls carry one; its signature is not checked while enforcement is off (an unsigned
//!   form POST lands in S3 and fails with a 500).
//! - Enforced, a request signed by an unknown key is refused with 403 `InvalidAccessKeyId`; an
//!   unsigned one fails with a 500 (moto looks for the `Authorization` header unconditionally).
//! - An S3 request is checked as `s3:<API operation>` (`s3:HeadObject`, `s3:ListObjectsV2`,
//!   `s3:CreateMultipartUpload`…), not as AWS's IAM action (`s3:GetObject` covers a HEAD on
//!   AWS, `s3:ListBucket` a listing): [`S3_WRITER_ACTIONS`] names both.
//! - Policy conditions are not evaluated for S3: moto passes no request context (no
//!   `s3:if-none-match`; a condition on a key it lacks is met) and treats an operator it does
//!   not know (`Null`, `StringNotEquals`) as met. A statement with a condition therefore applies
//!   unconditionally (measured: a Deny on `s3:PutObject` under `{"Null": {"s3:if-none-match":
//!   "true"}}` refuses the `If-None-Match: *` creates too).
//! - moto checks a signature over the query string as it arrives, while AWS (and the signer
//!   opendal uses) canonicalises it first: opendal sends `prefix=a/b/&delimiter=/` and signs
//!   `%2F`, so every listing fails with `SignatureDoesNotMatch`. [`CanonicalQueryProxy`] sends
//!   the query in the canonical form, the same request to S3.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What a writer needs on a bucket and nothing that deletes: create, read, list, multipart
/// uploads. AWS's IAM names first (what a real bucket's policy needs), then the S3 operation
/// names moto checks instead where they differ. None of them deletes an object
/// (`s3:DeleteObject`, `s3:DeleteObjects`, `s3:DeleteObjectVersion`); aborting a multipart
/// upload only drops its unfinished parts.
pub const S3_WRITER_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "s3:ListBucketMultipartUploads",
    // moto's names for the same requests.
    "s3:HeadObject",
    "s3:ListObjectsV2",
    "s3:CreateMultipartUpload",
    "s3:UploadPart",
    "s3:CompleteMultipartUpload",
    "s3:ListParts",
    "s3:ListMultipartUploads",
];

/// The IAM query API's version.
const IAM_VERSION: &str = "2010-05-08";

/// An IAM user with one access key.
#[derive(Clone)]
pub struct IamUser {
    pub name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for IamUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamUser")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A policy document allowing `actions` on `bucket` and every object in it.
pub fn bucket_policy(bucket: &str, actions: &[&str]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": actions,
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
        }],
    })
}

/// moto's IAM on `endpoint` (a running moto server's base URL).
pub struct MotoIam {
    endpoint: String,
    http: reqwest::Client,
}

impl MotoIam {
    /// No request is made until a call.
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// Creates user `name` with `policy` as its one inline policy and an access key. Must run
    /// before [`Self::enforce_auth`]: the calls are not signed with a known key.
    pub async fn create_user(&self, name: &str, policy: &Value) -> Result<IamUser> {
        self.call("CreateUser", &[("UserName", name)]).await?;
        let document = policy.to_string();
        self.call(
            "PutUserPolicy",
            &[
                ("UserName", name),
                ("PolicyName", "repovault-test"),
                ("PolicyDocument", &document),
            ],
        )
        .await?;
        let key = self.call("CreateAccessKey", &[("UserName", name)]).await?;
        let field = |tag: &str| {
            xml_text(&key, tag).with_context(|| format!("CreateAccessKey answered no {tag}: {key}"))
        };
        Ok(IamUser {
            name: name.to_string(),
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
        })
    }

    /// Switches IAM enforcement on for every request from now on (moto's "no auth for the
    /// first N requests" set to N = 0). There is no way back short of restarting moto.
    pub async fn enforce_auth(&self) -> Result<()> {
        let resp = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .header("content-type", "text/plain")
            .body("0")
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() || !body.contains("\"ok\"") {
            bail!("moto refused to enforce IAM: {status} {body}");
        }
        Ok(())
    }

    /// One IAM query API call; the response's body, or an error with moto's answer.
    async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<String> {
        let mut pairs = vec![("Action", action), ("Version", IAM_VERSION)];
        pairs.extend_from_slice(params);
        // Only the credential scope matters (it routes the request to IAM); the key and the
        // signature are not checked while enforcement is off.
        let date = chrono::Utc::now().format("%Y%m%d");
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIAREPOVAULTIAMSETUP/{date}/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let resp = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("authorization", auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(&pairs))
            .send()
            .await
            .with_context(|| format!("IAM {action}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("IAM {action} refused: {status} {body}");
        }
        Ok(body)
    }
}

/// A proxy in front of moto that forwards every request unchanged but for its query string,
/// which it percent-encodes as SigV4's canonical request does (every byte but the unreserved
/// ones, existing escapes kept), so moto computes the signature the client made. `Host` is
/// forwarded as sent: it is signed. Runs on its own runtime, as the git HTTP server does, so it
/// answers whatever the test's threads are doing; stopped on drop.
pub struct CanonicalQueryProxy {
    pub port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl CanonicalQueryProxy {
    /// Starts the proxy to `backend` (moto's base URL).
    pub fn start(backend: &str) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = {
            // Entering (not blocking on) the runtime is allowed from within the test's.
            let _in_rt = rt.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let state = Arc::new((
            reqwest::Client::new(),
            backend.trim_end_matches('/').to_string(),
        ));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            rt.block_on(async move {
                let app = axum::Router::new().fallback(forward).with_state(state);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = rx => {}
                }
            });
        });
        Ok(Self {
            port,
            shutdown: Some(tx),
        })
    }

    /// The endpoint to give S3 clients instead of moto's.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for CanonicalQueryProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn forward(State(state): State<Arc<(reqwest::Client, String)>>, req: Request) -> Response {
    let (http, backend) = &*state;
    let (parts, body) = req.into_parts();
    let mut url = format!("{backend}{}", parts.uri.path());
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(&canonical_query(q));
    }
    let result = async {
        let body = axum::body::to_bytes(body, usize::MAX).await?;
        let mut headers = parts.headers;
        // Hop-by-hop: the connection to moto is the proxy's own.
        headers.remove(header::CONNECTION);
        headers.remove(header::TRANSFER_ENCODING);
        let resp = http
            .request(parts.method, url)
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let mut headers = resp.headers().clone();
        headers.remove(header::CONNECTION);
        headers.remove(header::TRANSFER_ENCODING);
        // Kept: Content-Length, which a HEAD's answer carries without a body.
        let body = resp.bytes().await?;
        anyhow::Ok((status, headers, body))
    }
    .await;
    match result {
        Ok((status, headers, body)) => (status, headers, body).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("proxy: {e:#}")).into_response(),
    }
}

/// `query` with every byte percent-encoded but the unreserved ones, the separators `&` and
/// `=`, and `%` (the start of an escape the client made).
fn canonical_query(query: &str) -> String {
    percent_encode(query, b"&=%")
}

/// `s` with every byte percent-encoded but the unreserved ones (RFC 3986) and those in `keep`.
fn percent_encode(s: &str, keep: &[u8]) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `application/x-www-form-urlencoded`: every byte but the unreserved ones percent-encoded.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k, b""), percent_encode(v, b"")))
        .collect::<Vec<_>>()
        .join("&")
}

/// The text of the first `<tag>…</tag>` in `xml`, its entities decoded; `None` when absent.
/// Enough for moto's flat IAM answers, not a general XML reader (no attributes, no CDATA).
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(
            form_encode(&[("A", "x y"), ("P", "{\"a\":\"s3:*\"}")]),
            "A=x%20y&P=%7B%22a%22%3A%22s3%3A%2A%22%7D"
        );
    }

    #[test]
    fn the_query_is_sent_in_canonical_form() {
        assert_eq!(
            canonical_query("list-type=2&prefix=a/b%20c/&delimiter=/&uploads"),
            "list-type=2&prefix=a%2Fb%20c%2F&delimiter=%2F&uploads"
        );
    }

    #[test]
    fn xml_text_finds_the_first_element_and_decodes_entities() {
        let xml =
            "<R><AccessKeyId>AK</AccessKeyId><SecretAccessKey>a&amp;b&lt;</SecretAccessKey></R>";
        assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("AK"));
        assert_eq!(xml_text(xml, "SecretAccessKey").as_deref(), Some("a&b<"));
        assert_eq!(xml_text(xml, "UserName"), None);
    }
}
