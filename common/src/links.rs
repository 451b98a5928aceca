//! Download links that expire.
//!
//! A link names one download artifact (a restore's ZIP or tar in storage) until an expiry time.
//! Every kind of link is minted through [`Linker::link`]: today only [`HmacLinker`], a URL on the
//! coordinator's HTTP port (`GET /downloads/<restore-id>?expires=<unix>&sig=<hex>`) that the
//! coordinator itself verifies and serves, because the only storage backend is a file system.
//! Storage that signs its own URLs slots in as further [`Linker`] variants behind the same call:
//! an S3 presigned URL, or an Azure SAS that repovault signs itself with the requested expiry
//! (opendal's presign is fixed at an hour). Neither is implemented yet.
//!
//! The HMAC link's signature is HMAC-SHA256 over `repovault-download-v1`, the restore id, the
//! artifact path and the expiry (unix seconds), newline-separated: changing any of them (or the
//! signature) makes [`HmacLinker::verify`] refuse with [`LinkRefusal::Altered`]; a genuine link
//! past its expiry is refused with [`LinkRefusal::Expired`]. The key is 32 bytes the coordinator
//! derives from its master key ([`LINK_KEY_CONTEXT`]); it is never logged.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The context the link-signing key is derived under from the master key
/// ([`crate::crypto::MasterKey::derive_key`]). Changing it invalidates every outstanding link.
pub const LINK_KEY_CONTEXT: &str = "repovault download-link signing key v1";

/// Domain separation of the signed message, so a signature over anything else never verifies.
const MESSAGE_PREFIX: &str = "repovault-download-v1";

/// What a link grants: one artifact of one restore until `expires_at` (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest<'a> {
    pub restore_id: &'a str,
    /// The artifact's path relative to the storage root.
    pub artifact_path: &'a str,
    pub expires_at: i64,
}

/// A minted link: the URL to fetch and when it stops working (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    pub expires_at: i64,
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    /// The signature does not match the restore, artifact and expiry (altered or forged).
    #[error("link signature does not match")]
    Altered,
    /// Genuine, but past its expiry (unix seconds).
    #[error("link expired at {}", format_unix(*.0))]
    Expired(i64),
}

/// Mints download links. One variant per way of signing; only the HMAC link exists today (S3
/// presigned URLs and Azure SAS are to come, see the module documentation).
#[derive(Clone)]
pub enum Linker {
    Hmac(HmacLinker),
}

impl Linker {
    /// A link to `req.artifact_path` valid until `req.expires_at`.
    pub fn link(&self, req: &LinkRequest<'_>) -> Link {
        match self {
            Linker::Hmac(h) => h.link(req),
        }
    }
}

impl std::fmt::Debug for Linker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Linker::Hmac(h) => h.fmt(f),
        }
    }
}

/// Links served by the coordinator's HTTP endpoint, signed with HMAC-SHA256.
#[derive(Clone)]
pub struct HmacLinker {
    key: [u8; 32],
    /// Scheme, host and port (and optional path prefix) the links start with, without a trailing
    /// slash.
    base_url: String,
}

impl std::fmt::Debug for HmacLinker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacLinker")
            .field("key", &"[redacted]")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl HmacLinker {
    pub fn new(key: [u8; 32], base_url: &str) -> Self {
        Self {
            key,
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The signature of `req` as 64 lowercase hex characters.
    pub fn sign(&self, req: &LinkRequest<'_>) -> String {
        hex::encode(self.mac(req).finalize().into_bytes())
    }

    /// `<base>/downloads/<restore-id>?expires=<unix>&sig=<hex>`.
    pub fn link(&self, req: &LinkRequest<'_>) -> Link {
        Link {
            url: format!(
                "{}/downloads/{}?expires={}&sig={}",
                self.base_url,
                req.restore_id,
                req.expires_at,
                self.sign(req)
            ),
            expires_at: req.expires_at,
        }
    }

    /// Checks a presented link at time `now` (unix seconds): the signature first (in constant
    /// time), so an altered expiry is refused as altered, not as expired; then the expiry (a link
    /// is valid up to and including its expiry second).
    pub fn verify(
        &self,
        req: &LinkRequest<'_>,
        sig_hex: &str,
        now: i64,
    ) -> Result<(), LinkRefusal> {
        let sig = hex::decode(sig_hex).map_err(|_| LinkRefusal::Altered)?;
        self.mac(req)
            .verify_slice(&sig)
            .map_err(|_| LinkRefusal::Altered)?;
        if now > req.expires_at {
            return Err(LinkRefusal::Expired(req.expires_at));
        }
        Ok(())
    }

    fn mac(&self, req: &LinkRequest<'_>) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(
            format!(
                "{MESSAGE_PREFIX}\n{}\n{}\n{}",
                req.restore_id, req.artifact_path, req.expires_at
            )
            .as_bytes(),
        );
        mac
    }
}

/// RFC 3339 (UTC, seconds) of a unix time, for messages.
pub fn format_unix(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// Default lifetime of a download link: six hours, as the README's design decisions state ("ZIP
/// downloads and links").
pub const DEFAULT_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// Shortest lifetime an admin may ask for: long enough to fetch a large ZIP over a slow line.
pub const MIN_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Longest: a week, so an artifact (which lives as long as its latest link) does not linger.
pub const MAX_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Checks a requested link lifetime against [`MIN_LINK_TTL`]..=[`MAX_LINK_TTL`].
pub fn check_link_ttl(d: std::time::Duration) -> Result<std::time::Duration, String> {
    if (MIN_LINK_TTL..=MAX_LINK_TTL).contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "link expiry {} must be within 30m..=7d",
            humantime::format_duration(d)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linker() -> HmacLinker {
        HmacLinker::new([7u8; 32], "http://127.0.0.1:7421/")
    }

    fn req(expires_at: i64) -> LinkRequest<'static> {
        LinkRequest {
            restore_id: "r-1",
            artifact_path: "o/r/downloads/r-1.zip",
            expires_at,
        }
    }

    fn sig_of(url: &str) -> String {
        url.rsplit_once("sig=")
            .map(|(_, s)| s.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_genuine_link_verifies_until_its_expiry() {
        let l = linker();
        let link = Linker::Hmac(l.clone()).link(&req(1000));
        assert!(
            link.url
                .starts_with("http://127.0.0.1:7421/downloads/r-1?expires=1000&sig="),
            "{}",
            link.url
        );
        let sig = sig_of(&link.url);
        assert_eq!(sig.len(), 64);
        assert_eq!(l.verify(&req(1000), &sig, 999), Ok(()));
        assert_eq!(l.verify(&req(1000), &sig, 1000), Ok(()));
        assert_eq!(
            l.verify(&req(1000), &sig, 1001),
            Err(LinkRefusal::Expired(1000))
        );
        assert_eq!(
            LinkRefusal::Expired(0).to_string(),
            "link expired at 1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn altered_links_are_refused() {
        let l = linker();
        let sig = l.sign(&req(1000));
        // A later expiry with the old signature.
        assert_eq!(l.verify(&req(2000), &sig, 0), Err(LinkRefusal::Altered));
        // Another restore or artifact.
        let other = LinkRequest {
            restore_id: "r-2",
            ..req(1000)
        };
        assert_eq!(l.verify(&other, &sig, 0), Err(LinkRefusal::Altered));
        let other = LinkRequest {
            artifact_path: "o/r/downloads/r-2.zip",
            ..req(1000)
        };
        assert_eq!(l.verify(&other, &sig, 0), Err(LinkRefusal::Altered));
        // One hex digit changed, truncated, not hex, empty.
        let mut flipped = sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        for bad in [flipped.as_str(), &sig[..62], "zz", ""] {
            assert_eq!(
                l.verify(&req(1000), bad, 0),
                Err(LinkRefusal::Altered),
                "{bad}"
            );
        }
        // Another key: an expired link of a foreign key is refused as altered, not expired.
        let foreign = HmacLinker::new([8u8; 32], "http://x");
        assert_eq!(
            foreign.verify(&req(1000), &sig, 5000),
            Err(LinkRefusal::Altered)
        );
    }

    #[test]
    fn the_key_is_never_printed_and_ttls_are_bounded() {
        let printed = format!("{:?}", Linker::Hmac(linker()));
        assert!(
            printed.contains("redacted") && !printed.contains("7, 7"),
            "{printed}"
        );
        assert!(check_link_ttl(DEFAULT_LINK_TTL).is_ok());
        assert!(check_link_ttl(MIN_LINK_TTL).is_ok());
        assert!(check_link_ttl(MAX_LINK_TTL).is_ok());
        assert!(check_link_ttl(std::time::Duration::from_secs(60)).is_err());
        assert!(check_link_ttl(std::time::Duration::from_secs(8 * 24 * 3600)).is_err());
    }

    #[test]
    fn derived_keys_are_distinct_per_context() {
        let m = crate::crypto::MasterKey::generate();
        assert_eq!(
            m.derive_key(LINK_KEY_CONTEXT),
            m.derive_key(LINK_KEY_CONTEXT)
        );
        assert_ne!(m.derive_key(LINK_KEY_CONTEXT), m.derive_key("other"));
    }
}
