//! GitHub push webhooks, pure: the `X-Hub-Signature-256` check and the collapse of a burst of
//! pushes into one backup.
//!
//! GitHub signs each delivery with HMAC-SHA256 of the raw body under the hook's secret and
//! sends `sha256=<hex>` ("Validating webhook deliveries", GitHub docs). The comparison is
//! constant-time (`hmac`'s `verify_slice`).

use crate::model::RepoId;
use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not verify")]
    Mismatch,
}

/// Checks a delivery's `X-Hub-Signature-256` header value against the body and secret.
pub fn verify_signature(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let h = header.ok_or(SignatureError::Missing)?;
    let hex_sig = h
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if sig.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

/// The header value GitHub would send (tests, and the simulator's counterpart).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A push to the default branch.
    Push,
    /// Anything else (ping, another event, another branch, a tag): acknowledged, ignored.
    Ignored(String),
}

/// Classifies a verified delivery by its `X-GitHub-Event` and payload.
pub fn classify(event: &str, payload: &serde_json::Value) -> Delivery {
    if event != "push" {
        return Delivery::Ignored(format!("event {event:?}"));
    }
    let r#ref = payload.get("ref").and_then(|v| v.as_str()).unwrap_or("");
    let default = payload
        .pointer("/repository/default_branch")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if default.is_empty() || r#ref != format!("refs/heads/{default}") {
        return Delivery::Ignored(format!("push to {ref:?}, not the default branch"));
    }
    Delivery::Push
}

/// Bursts of pushes per repository: the first push of a burst sets when its backup starts
/// (`first + delay`); later pushes before then join it. In memory: a burst open when the
/// coordinator stops is lost, and the next push or scheduled run covers its commits.
#[derive(Debug, Default)]
pub struct Bursts {
    open: HashMap<RepoId, i64>,
}

impl Bursts {
    /// Records a push at `now_ms`; returns whether it opened a burst (false: collapsed).
    pub fn push(&mut self, repo_id: &RepoId, now_ms: i64, delay_ms: i64) -> bool {
        if self.open.contains_key(repo_id) {
            return false;
        }
        self.open.insert(repo_id.clone(), now_ms + delay_ms.max(0));
        true
    }

    /// Removes and returns the repositories whose burst is due at `now_ms`, sorted.
    pub fn due(&mut self, now_ms: i64) -> Vec<RepoId> {
        let mut out: Vec<RepoId> = self
            .open
            .iter()
            .filter(|&(_, &at)| at <= now_ms)
            .map(|(r, _)| r.clone())
            .collect();
        for r in &out {
            self.open.remove(r);
        }
        out.sort();
        out
    }

    /// The earliest start of an open burst.
    pub fn next_due(&self) -> Option<i64> {
        self.open.values().copied().min()
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(b"s3cret", body);
        assert!(good.starts_with("sha256=") && good.len() == 7 + 64);
        assert_eq!(verify_signature(b"s3cret", Some(&good), body), Ok(()));
        assert_eq!(
            verify_signature(b"other", Some(&good), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"s3cret", Some(&good), b"{}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"s3cret", None, body),
            Err(SignatureError::Missing)
        );
        for bad in ["sha1=00", "sha256=zz", "sha256=abcd", ""] {
            assert_eq!(
                verify_signature(b"s3cret", Some(bad), body),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // GitHub's documented example ("Validating webhook deliveries").
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn classification() {
        let p =
            serde_json::json!({"ref": "refs/heads/main", "repository": {"default_branch": "main"}});
        assert_eq!(classify("push", &p), Delivery::Push);
        assert!(matches!(classify("ping", &p), Delivery::Ignored(_)));
        let p =
            serde_json::json!({"ref": "refs/heads/dev", "repository": {"default_branch": "main"}});
        assert!(matches!(classify("push", &p), Delivery::Ignored(_)));
        let p = serde_json::json!({"ref": "refs/tags/main"});
        assert!(matches!(classify("push", &p), Delivery::Ignored(_)));
    }

    #[test]
    fn a_burst_collapses_into_one_backup_within_the_delay_of_its_first_push() {
        let delay = 120_000;
        let mut b = Bursts::default();
        let t0 = 1_000_000;
        assert!(b.push(&crate::coordinator::testing::tid("r1"), t0, delay));
        for i in 1..10 {
            assert!(!b.push(
                &crate::coordinator::testing::tid("r1"),
                t0 + i * 20_000,
                delay
            ));
        }
        assert!(b.push(&crate::coordinator::testing::tid("r2"), t0 + 50_000, delay));
        assert_eq!(b.next_due(), Some(t0 + delay));
        assert!(b.due(t0 + delay - 1).is_empty());
        assert_eq!(
            b.due(t0 + delay),
            vec![crate::coordinator::testing::tid::<RepoId>("r1")]
        );
        assert!(b.due(t0 + delay).is_empty());
        // A push after the burst started its backup opens a new burst.
        assert!(b.push(
            &crate::coordinator::testing::tid("r1"),
            t0 + delay + 1,
            delay
        ));
        assert_eq!(
            b.due(t0 + 10 * delay),
            vec![
                crate::coordinator::testing::tid::<RepoId>("r1"),
                crate::coordinator::testing::tid::<RepoId>("r2")
            ]
        );
        assert!(b.is_empty());
    }
}

/// `POST /webhooks/github`: 401 when the signature is missing or wrong (logged without the
/// body), 202 for an accepted push, 204 for a verified delivery that is ignored.
///
/// Every refusal gets the same answer, [`REFUSED`] with 401, whatever the reason (unknown
/// repository, one without push backups, a missing or wrong signature): a different status or
/// body would tell an unauthenticated caller which repositories have push backups. The reason
/// is only logged.
pub mod http {
    use std::sync::Arc;

    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};

    use crate::coordinator::Coordinator;
    use crate::schedule::push_backups::WebhookOutcome;

    /// The body of every refused delivery (see the module's documentation).
    pub const REFUSED: &str = "the delivery's signature does not verify\n";

    /// GitHub's payloads are at most 25 MB ("Webhook events and payloads"); a push's is far
    /// smaller. axum's default body limit (2 MB) applies.
    #[derive(serde::Deserialize)]
    pub struct HookQuery {
        #[serde(default)]
        repo: Option<String>,
    }

    pub async fn deliver(
        core: Arc<Coordinator>,
        axum::extract::Query(q): axum::extract::Query<HookQuery>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let event = header(crate::forge_access::WEBHOOK_EVENT_HEADER).unwrap_or("");
        let delivery = header(crate::forge_access::WEBHOOK_DELIVERY_HEADER)
            .unwrap_or("")
            .to_string();
        let signature = header("x-hub-signature-256");
        let code = match core
            .schedules
            .webhook_delivery(q.repo.as_deref(), event, signature, &body)
            .await
        {
            Ok(WebhookOutcome::Refused(why)) => {
                tracing::warn!(delivery = %delivery, event = %event, reason = %why, bytes = body.len(), "webhook refused");
                (StatusCode::UNAUTHORIZED, REFUSED.to_string())
            }
            Ok(WebhookOutcome::Accepted { opened }) => {
                tracing::info!(delivery = %delivery, opened, "push accepted");
                (StatusCode::ACCEPTED, "accepted\n".into())
            }
            Ok(WebhookOutcome::Ignored(why)) => {
                tracing::debug!(delivery = %delivery, reason = %why, "webhook ignored");
                (StatusCode::NO_CONTENT, String::new())
            }
            Err(e) => {
                tracing::warn!(delivery = %delivery, error = %e, "webhook delivery failed");
                (StatusCode::SERVICE_UNAVAILABLE, "try again later\n".into())
            }
        };
        metrics::counter!("repovault_webhook_deliveries_total", "code" => code.0.as_u16().to_string())
            .increment(1);
        code
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::coordinator::testing;
        use crate::model::OnPushHook;
        use crate::schedule::webhook_bursts::sign;
        use crate::secrets::SealContext;
        use crate::store::Batch;
        use repovault_common::secret::Secret;

        async fn post(
            core: &Arc<Coordinator>,
            repo: &str,
            signature: Option<&str>,
            body: &[u8],
        ) -> (StatusCode, String) {
            let mut headers = HeaderMap::new();
            headers.insert(
                crate::forge_access::WEBHOOK_EVENT_HEADER,
                "push".parse().expect("header"),
            );
            if let Some(s) = signature {
                headers.insert("x-hub-signature-256", s.parse().expect("header"));
            }
            let q = HookQuery {
                repo: Some(repo.to_string()),
            };
            deliver(
                core.clone(),
                axum::extract::Query(q),
                headers,
                Bytes::copy_from_slice(body),
            )
            .await
        }

        #[tokio::test]
        async fn no_push_backups_and_a_bad_signature_get_the_same_answer() {
            let dir = tempfile::tempdir().expect("dir");
            let (c, plain) = testing::core_with_repo(dir.path(), "plain").await;
            let mut hooked = c
                .registry
                .add_repo("acme/hooked", "file:///src/hooked", None)
                .await
                .expect("repo");
            // As `repo set --on-push` leaves it.
            hooked.on_push = Some(OnPushHook {
                hook_id: 1,
                sealed_secret: c.catalog.secrets.seal(
                    SealContext::WebhookSecret(&hooked.id),
                    &Secret::new("hook-secret"),
                ),
            });
            let mut batch = Batch::default();
            batch.repo(&hooked);
            c.store.apply(batch).await.expect("apply");
            let body =
                br#"{"ref":"refs/heads/main","repository":{"id":7,"default_branch":"main"}}"#;
            let guess = sign(b"guess", body);

            let no_push = post(&c, plain.id.as_str(), Some(&guess), body).await;
            let bad_signature = post(&c, hooked.id.as_str(), Some(&guess), body).await;
            assert_eq!(no_push, bad_signature);
            assert_eq!(no_push, (StatusCode::UNAUTHORIZED, REFUSED.to_string()));
            // Unsigned, malformed, an unknown repository: the same again.
            for (repo, sig) in [
                (hooked.id.as_str(), None),
                (plain.id.as_str(), None),
                (hooked.id.as_str(), Some("sha256=00")),
                ("no-such-repo", Some(guess.as_str())),
            ] {
                assert_eq!(post(&c, repo, sig, body).await, no_push, "{repo} {sig:?}");
            }
            // The right secret is accepted: the refusals above are about the caller alone.
            let signed = sign(b"hook-secret", body);
            let ok = post(&c, hooked.id.as_str(), Some(&signed), body).await;
            assert_eq!(ok.0, StatusCode::ACCEPTED, "{ok:?}");
        }
    }
}
