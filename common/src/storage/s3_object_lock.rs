//! S3 Object Lock: the retention of single objects, set with S3's own REST calls.
//!
//! opendal has no call for object retention, so repovault signs these few requests itself
//! (AWS Signature Version 4, [`SigV4`]) with the location's own credential: `GET ?object-lock`
//! on the bucket (is Object Lock enabled), `PUT ?retention` on an object (lock its current
//! version in COMPLIANCE mode until a date) and `HEAD` (the lock an object carries). Addressing
//! follows the location's options as opendal's `s3` service does: path style on `endpoint`
//! (default `https://s3.REGION.amazonaws.com`) unless `virtual_host_style = "true"`, and every
//! key under `prefix`.
//!
//! COMPLIANCE mode is the one nobody can shorten or remove, not even the account's root user,
//! until the date passes; GOVERNANCE mode can be bypassed by anyone granted
//! `s3:BypassGovernanceRetention`, which a leaked administrator credential would have.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{StorageConfig, StorageKind};
use crate::secret::Secret;

/// One Object Lock call's bound: S3 answers these metadata calls in milliseconds; a minute is
/// the same bound opendal's requests get (`REQUEST_TIMEOUT`).
const CALL_TIMEOUT: Duration = super::REQUEST_TIMEOUT;

/// `x-amz-date`'s and the retain-until date's formats.
const AMZ_DATE: &str = "%Y%m%dT%H%M%SZ";
const RETAIN_UNTIL: &str = "%Y-%m-%dT%H:%M:%SZ";

#[derive(Debug, thiserror::Error)]
pub enum ObjectLockError {
    #[error("Object Lock needs an s3 location, not {0}")]
    NotS3(StorageKind),
    #[error("Object Lock needs the location's access_key_id and secret_access_key")]
    NoCredential,
    #[error("the location's endpoint {0:?} is not a URL")]
    Endpoint(String),
    #[error("{what}: {}", chain(source))]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: the storage answered {status}: {body}")]
    Refused {
        what: String,
        status: reqwest::StatusCode,
        /// S3's error code and message, cut short; S3 error bodies hold no credential.
        body: String,
    },
}

/// An HTTP error with its causes: reqwest's own message ("error sending request") says nothing
/// of why (refused, reset, timed out).
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// The lock an object's current version carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectLockState {
    /// `COMPLIANCE` or `GOVERNANCE`; `None` when the object is not locked.
    pub mode: Option<String>,
    pub retain_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The current version's id (Object Lock buckets are always versioned).
    pub version_id: Option<String>,
}

/// AWS Signature Version 4 for S3 with a static credential: the signature of a request over its
/// method, path, query, the headers named in it and the SHA-256 of its body.
pub struct SigV4 {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
    region: String,
}

impl SigV4 {
    pub fn new(
        access_key_id: &str,
        secret_access_key: Secret,
        session_token: Option<Secret>,
        region: &str,
    ) -> Self {
        Self {
            access_key_id: access_key_id.to_string(),
            secret_access_key,
            session_token,
            region: region.to_string(),
        }
    }

    /// The headers to add to a request for `url` at `now` so S3 accepts it: `x-amz-date`,
    /// `x-amz-content-sha256`, the session token when there is one, and `Authorization`.
    /// `headers` are the request's other headers, all signed, and not repeated in the answer.
    pub fn sign(
        &self,
        method: &str,
        url: &url::Url,
        headers: &[(&str, String)],
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(String, String)> {
        let amz_date = now.format(AMZ_DATE).to_string();
        let payload_hash = hex::encode(Sha256::digest(body));
        let mut signed: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        signed.push(("host".into(), host));
        signed.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        signed.push(("x-amz-date".into(), amz_date.clone()));
        if let Some(t) = &self.session_token {
            signed.push(("x-amz-security-token".into(), t.expose().to_string()));
        }
        signed.sort();
        let names = signed
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical = format!(
            "{method}\n{}\n{}\n{}\n{names}\n{payload_hash}",
            url.path(),
            canonical_query(url),
            signed
                .iter()
                .map(|(k, v)| format!("{k}:{v}\n"))
                .collect::<String>(),
        );
        let day = &amz_date[..8];
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_access_key.expose()).as_bytes(),
            day.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        let mut out: Vec<(String, String)> = signed
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("x-amz-") && !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k))
            })
            .collect();
        out.push((
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={signature}",
                self.access_key_id
            ),
        ));
        out
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The query as SigV4 wants it: pairs sorted, each name and value percent-encoded, a bare name
/// as `name=`.
fn canonical_query(url: &url::Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k, true), uri_encode(&v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4's percent-encoding: everything but `A-Za-z0-9-._~` (and `/` in a path).
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The Object Lock calls on one S3 location.
pub struct S3ObjectLock {
    http: reqwest::Client,
    signer: SigV4,
    /// The bucket's URL, ending in `/`.
    bucket_url: url::Url,
    /// `prefix/` or empty.
    prefix: String,
}

impl S3ObjectLock {
    /// The calls for `config`'s location, signed with its credential.
    pub fn new(config: &StorageConfig) -> Result<Self, ObjectLockError> {
        if config.kind != StorageKind::S3 {
            return Err(ObjectLockError::NotS3(config.kind));
        }
        let (Some(id), Some(secret)) =
            (config.get("access_key_id"), config.get("secret_access_key"))
        else {
            return Err(ObjectLockError::NoCredential);
        };
        let region = config.get("region").unwrap_or("us-east-1");
        let bucket = config.get("bucket").unwrap_or_default();
        let endpoint = config
            .get("endpoint")
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let mut bucket_url = url::Url::parse(&format!("{endpoint}/"))
            .map_err(|_| ObjectLockError::Endpoint(endpoint.clone()))?;
        if config.get("virtual_host_style") == Some("true") {
            let host = format!("{bucket}.{}", bucket_url.host_str().unwrap_or_default());
            bucket_url
                .set_host(Some(&host))
                .map_err(|_| ObjectLockError::Endpoint(endpoint.clone()))?;
        } else {
            bucket_url.set_path(&format!("{}/", uri_encode(bucket, true)));
        }
        let prefix = match config.get("prefix").map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => format!("{p}/"),
            _ => String::new(),
        };
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| ObjectLockError::Http {
                what: "building the HTTP client".into(),
                source: e,
            })?;
        Ok(Self {
            http,
            signer: SigV4::new(
                id,
                Secret::new(secret.to_string()),
                config
                    .get("session_token")
                    .map(|t| Secret::new(t.to_string())),
                region,
            ),
            bucket_url,
            prefix,
        })
    }

    /// The URL of `path` (a path of the location, as opendal names it) with `query`.
    pub fn object_url(&self, path: &str, query: Option<&str>) -> url::Url {
        let key = format!("{}{}", self.prefix, path.trim_start_matches('/'));
        let mut u = self.bucket_url.clone();
        u.set_path(&format!("{}{}", u.path(), uri_encode(&key, false)));
        u.set_query(query);
        u
    }

    /// Sends a signed request; the answer when its status is a success.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: url::Url,
        headers: &[(&str, String)],
        body: Vec<u8>,
        what: &str,
    ) -> Result<reqwest::Response, ObjectLockError> {
        let signed = self
            .signer
            .sign(method.as_str(), &url, headers, &body, chrono::Utc::now());
        let mut req = self.http.request(method, url).body(body);
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain(signed)
        {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| ObjectLockError::Http {
            what: what.to_string(),
            source: e.without_url(),
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Err(ObjectLockError::Refused {
            what: what.to_string(),
            status,
            body: s3_error(&body),
        })
    }

    /// Whether the bucket has Object Lock enabled (`GET ?object-lock`). A bucket gets it only
    /// when created with it (or by AWS support), and it cannot be switched off again.
    pub async fn bucket_lock_enabled(&self) -> Result<bool, ObjectLockError> {
        let mut url = self.bucket_url.clone();
        url.set_query(Some("object-lock"));
        match self
            .send(
                reqwest::Method::GET,
                url,
                &[],
                Vec::new(),
                "reading the bucket's Object Lock configuration",
            )
            .await
        {
            Ok(resp) => {
                let body = resp.text().await.map_err(|e| ObjectLockError::Http {
                    what: "reading the bucket's Object Lock configuration".into(),
                    source: e.without_url(),
                })?;
                Ok(body.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>"))
            }
            Err(ObjectLockError::Refused { status, body, .. })
                if status == reqwest::StatusCode::NOT_FOUND
                    && body.contains("ObjectLockConfigurationNotFound") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Locks the current version of `path` in COMPLIANCE mode until `until` (`PUT ?retention`).
    /// Idempotent for the same date; S3 refuses an earlier date than the one set.
    pub async fn retain_until(
        &self,
        path: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ObjectLockError> {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>COMPLIANCE</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            until.format(RETAIN_UNTIL)
        )
        .into_bytes();
        // S3 wants an integrity checksum on every Object Lock request: SHA-256 serves as well as
        // Content-MD5 does.
        let checksum = STANDARD.encode(Sha256::digest(&body));
        let headers = [
            ("content-type", "application/xml".to_string()),
            ("x-amz-sdk-checksum-algorithm", "SHA256".to_string()),
            ("x-amz-checksum-sha256", checksum),
        ];
        self.send(
            reqwest::Method::PUT,
            self.object_url(path, Some("retention")),
            &headers,
            body,
            &format!("locking {path}"),
        )
        .await
        .map(|_| ())
    }

    /// The lock `path`'s current version carries (`HEAD`).
    pub async fn lock_state(&self, path: &str) -> Result<ObjectLockState, ObjectLockError> {
        let resp = self
            .send(
                reqwest::Method::HEAD,
                self.object_url(path, None),
                &[],
                Vec::new(),
                &format!("reading the lock of {path}"),
            )
            .await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retain_until = header("x-amz-object-lock-retain-until-date").and_then(|d| {
            chrono::DateTime::parse_from_rfc3339(&d)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        });
        Ok(ObjectLockState {
            mode: header("x-amz-object-lock-mode"),
            retain_until,
            version_id: header("x-amz-version-id"),
        })
    }
}

/// S3's error code and message from an error body, at most 200 characters.
fn s3_error(body: &str) -> String {
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&close)? + start;
        Some(body[start..end].to_string())
    };
    let text = match (field("Code"), field("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => body.trim().to_string(),
    };
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own worked example of a signed GET (S3 API reference, "Signature Calculations for
    /// the Authorization Header", GET Object): the signature must come out as published.
    #[test]
    fn signs_as_aws_documents() {
        let signer = SigV4::new(
            "AKIAIOSFODNN7EXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string()),
            None,
            "us-east-1",
        );
        let url = url::Url::parse("https://examplebucket.s3.amazonaws.com/test.txt")
            .expect("the example is valid");
        let now = chrono::DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
            .expect("the example is valid")
            .with_timezone(&chrono::Utc);
        let headers = signer.sign("GET", &url, &[("range", "bytes=0-9".into())], b"", now);
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .expect("the example is valid");
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn keys_sit_under_the_prefix_path_style_or_virtual_host() {
        let mut c = StorageConfig {
            kind: StorageKind::S3,
            options: [
                ("bucket", "b"),
                ("region", "eu-west-1"),
                ("endpoint", "http://127.0.0.1:9000"),
                ("prefix", "/clients/acme/"),
                ("access_key_id", "id"),
                ("secret_access_key", "s"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let lock = S3ObjectLock::new(&c).expect("the example is valid");
        assert_eq!(
            lock.object_url("o/r/data/ab/ab12", Some("retention"))
                .as_str(),
            "http://127.0.0.1:9000/b/clients/acme/o/r/data/ab/ab12?retention"
        );
        c.options.remove("endpoint");
        c.options.insert("virtual_host_style".into(), "true".into());
        let lock = S3ObjectLock::new(&c).expect("the example is valid");
        assert_eq!(
            lock.object_url("config", None).as_str(),
            "https://b.s3.eu-west-1.amazonaws.com/clients/acme/config"
        );
        c.kind = StorageKind::Azblob;
        assert!(matches!(
            S3ObjectLock::new(&c),
            Err(ObjectLockError::NotS3(StorageKind::Azblob))
        ));
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied because object protected by object lock.</Message></Error>";
        assert_eq!(
            s3_error(body),
            "AccessDenied: Access Denied because object protected by object lock."
        );
    }
}
