//! Sealing secrets at rest with the coordinator's master key.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per value (random nonces of that size never
//! collide in practice, so no counter has to be stored). Each sealed value is bound to a context
//! string (its record kind and id) as associated data: a sealed token copied onto another record
//! fails to open instead of leaking through the wrong door.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::secret::Secret;

const SEALED_PREFIX: &str = "xc1:";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key: {0}")]
    BadKey(String),
    #[error("master key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sealed value for {context} is malformed")]
    Malformed { context: String },
    #[error(
        "sealed value for {context} does not open with this master key (wrong key, or copied from another record)"
    )]
    Open { context: String },
}

/// The coordinator's master key: 32 bytes.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }

    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| CryptoError::BadKey("expected 64 hexadecimal characters".into()))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            CryptoError::BadKey("expected 32 bytes (64 hexadecimal characters)".into())
        })?;
        Ok(Self(arr))
    }

    pub fn to_hex(&self) -> Secret {
        Secret::new(hex::encode(self.0))
    }

    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let text = std::fs::read_to_string(path).map_err(|source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Loads the key at `path`, or creates it with mode 0600 when absent. Returns whether it was
    /// created. Creation is exclusive, so two processes racing cannot end up with two keys.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let key = Self::generate();
        let err = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        write_private_file(path, key.to_hex().expose().as_bytes()).map_err(err)?;
        Ok((key, true))
    }

    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            // XChaCha20-Poly1305 fails only above 256 GiB of plaintext; our values are bytes long.
            .expect("sealing a small in-memory value cannot fail");
        format!("{SEALED_PREFIX}{}:{}", B64.encode(nonce), B64.encode(ct))
    }

    /// A 32-byte key for another purpose, derived as HMAC-SHA256(master key, `context`): distinct
    /// contexts give independent keys, and the master key cannot be recovered from one. Used for
    /// download link signing (context [`crate::links::LINK_KEY_CONTEXT`]).
    pub fn derive_key(&self, context: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(context.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn seal_secret(&self, context: &str, secret: &Secret) -> String {
        self.seal(context, secret.expose().as_bytes())
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let malformed = || CryptoError::Malformed {
            context: context.to_string(),
        };
        let rest = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(malformed)?;
        let (n, c) = rest.split_once(':').ok_or_else(malformed)?;
        let nonce = B64.decode(n).map_err(|_| malformed())?;
        let ct = B64.decode(c).map_err(|_| malformed())?;
        if nonce.len() != 24 {
            return Err(malformed());
        }
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open {
                context: context.to_string(),
            })
    }

    pub fn open_secret(&self, context: &str, sealed: &str) -> Result<Secret, CryptoError> {
        let bytes = self.open(context, sealed)?;
        String::from_utf8(bytes)
            .map(Secret::new)
            .map_err(|_| CryptoError::Malformed {
                context: context.to_string(),
            })
    }
}

/// Creates `path` exclusively with mode 0600 and writes `content`.
pub fn write_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

/// A fresh random secret of `bytes` bytes, hex-encoded (join tokens, organisation keys).
pub fn random_secret(bytes: usize) -> Secret {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    Secret::new(hex::encode(b))
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_context_binding() {
        let k = MasterKey::generate();
        let s = k.seal("repo-token:1", b"ghp_secret");
        assert!(!s.contains("ghp_secret"));
        assert_eq!(k.open("repo-token:1", &s).expect("opens"), b"ghp_secret");
        assert!(matches!(
            k.open("repo-token:2", &s),
            Err(CryptoError::Open { .. })
        ));
        let other = MasterKey::generate();
        assert!(matches!(
            other.open("repo-token:1", &s),
            Err(CryptoError::Open { .. })
        ));
        assert!(matches!(
            k.open("x", "garbage"),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        let (k1, created) = MasterKey::load_or_create(&path).expect("create");
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, created) = MasterKey::load_or_create(&path).expect("load");
        assert!(!created);
        assert_eq!(k1.to_hex(), k2.to_hex());
        assert!(MasterKey::parse("abcd").is_err());
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
