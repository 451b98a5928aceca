//! The pure rules of worker pools' join tokens: pool names, the token's form, its hash, its
//! expiry bounds and its state at a moment. No I/O and no clock: time comes in as an argument.

use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use repovault_common::secret::Secret;

/// The pool of workers that presented the configured join token (`join_token_file`): not a
/// stored token, never listed, revoked by replacing the file and restarting.
pub const BOOTSTRAP_POOL: &str = "bootstrap";

/// Every pool token starts with this, so a leaked one is recognisable (secret scanners, logs,
/// a pasted config) and the door tells it from the configured token without comparing.
pub const TOKEN_PREFIX: &str = "rvj_";

/// Random bytes in a token: 256 bits, beyond any guessing, which is also why a plain SHA-256
/// is the right hash for it (see [`TokenHash`]).
const TOKEN_BYTES: usize = 32;

/// The longest pool name, so it fits a table column, a label and a log line.
pub const MAX_POOL_LEN: usize = 40;

/// The shortest expiry a token may be given: a minute, less than which a token would expire
/// before a worker started with it had registered.
pub const MIN_EXPIRY_MS: i64 = 60_000;

/// The longest expiry: ten years (3650 days). Longer is "never": leave the expiry unset.
pub const MAX_EXPIRY_MS: i64 = 3650 * 24 * 3600 * 1000;

/// A token's SHA-256, the only form the store and the door keep.
///
/// Why SHA-256 and not a password hash (argon2, bcrypt): those slow down guessing a
/// low-entropy secret from its hash. A pool token is 256 bits from a CSPRNG (rand's thread
/// generator, seeded by the operating system), so there is nothing to guess: finding a token from its hash is a SHA-256 preimage.
/// A fast hash also lets the door check every worker call without cost.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash of a presented token.
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// The hash as the store keeps it (64 hex digits); `None` when it is not one.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(TokenHash(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash is not a secret, but nothing needs to print it whole.
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// A freshly minted token: the secret (shown once) and its hash (kept).
pub struct Minted {
    pub secret: Secret,
    pub hash: TokenHash,
}

/// A new token from `rng`: [`TOKEN_PREFIX`] and 64 hex digits.
pub fn mint(rng: &mut impl RngCore) -> Minted {
    let mut bytes = [0u8; TOKEN_BYTES];
    rng.fill_bytes(&mut bytes);
    let text = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = TokenHash::of(&text);
    Minted {
        secret: Secret::new(text),
        hash,
    }
}

/// Whether `presented` has a pool token's form (the door hashes only those).
pub fn is_pool_token(presented: &str) -> bool {
    presented.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == TOKEN_BYTES * 2 && rest.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// A new token id: `jt` and 10 base-36 characters (52 bits; a coordinator holds few tokens).
/// Not secret: it names the token in lists, the audit log and `workers token revoke`.
pub fn new_token_id(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let tail: String = (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("jt{tail}")
}

/// Whether `id` has the form [`new_token_id`] gives.
pub fn is_token_id(id: &str) -> bool {
    id.len() == 12
        && id.starts_with("jt")
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Why a pool name or an expiry is refused (the message names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("pool {0:?}: a pool name is 1 to {MAX_POOL_LEN} lower-case letters, digits and '-'")]
    PoolName(String),
    #[error("pool \"bootstrap\" is the configured join token's; choose another name")]
    BootstrapPool,
    #[error("expires_in_seconds {0}: an expiry is at least a minute and at most 3650 days")]
    Expiry(u64),
}

/// A pool name: `[a-z0-9-]{1,40}`, and not [`BOOTSTRAP_POOL`].
pub fn check_pool(name: &str) -> Result<(), PlanError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_POOL_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(PlanError::PoolName(name.to_string()));
    }
    if name == BOOTSTRAP_POOL {
        return Err(PlanError::BootstrapPool);
    }
    Ok(())
}

/// The expiry time of a token created at `now_ms` that expires `in_secs` later (`None`: never).
pub fn expires_at(now_ms: i64, in_secs: Option<u64>) -> Result<Option<i64>, PlanError> {
    let Some(secs) = in_secs else {
        return Ok(None);
    };
    let ms = i64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .filter(|ms| (MIN_EXPIRY_MS..=MAX_EXPIRY_MS).contains(ms))
        .ok_or(PlanError::Expiry(secs))?;
    Ok(Some(now_ms.saturating_add(ms)))
}

/// A token's state at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

/// The state at `now_ms` of a token that expires at `expires_at_ms` and was revoked at
/// `revoked_at_ms`. Revocation wins over expiry; a token is expired from its expiry time on.
pub fn state_at(expires_at_ms: Option<i64>, revoked_at_ms: Option<i64>, now_ms: i64) -> TokenState {
    if revoked_at_ms.is_some() {
        TokenState::Revoked
    } else if expires_at_ms.is_some_and(|e| now_ms >= e) {
        TokenState::Expired
    } else {
        TokenState::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_token_is_prefixed_random_and_only_its_hash_matches_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = mint(&mut rng);
        let b = mint(&mut rng);
        let text = a.secret.expose();
        assert!(text.starts_with("rvj_") && text.len() == 4 + 64, "{text}");
        assert!(is_pool_token(text));
        assert_ne!(a.secret.expose(), b.secret.expose());
        assert_eq!(TokenHash::of(text), a.hash);
        assert_ne!(TokenHash::of(b.secret.expose()), a.hash);
        // One character off is another hash.
        let mut other = text.to_string();
        other.pop();
        other.push(if text.ends_with('0') { '1' } else { '0' });
        assert_ne!(TokenHash::of(&other), a.hash);
        // The kept form round-trips, and shows nothing of the token.
        assert_eq!(TokenHash::from_hex(&a.hash.to_hex()), Some(a.hash));
        assert_eq!(TokenHash::from_hex("abc"), None);
        assert!(!format!("{:?}", a.hash).contains(&text[4..]));
        assert!(!format!("{:?}", a.secret).contains(&text[4..]));
        // SHA-256 and no other hash: the FIPS 180-2 test vector.
        assert_eq!(
            TokenHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        for bad in [
            "",
            "rvj_",
            "rvj_xyz",
            "join-0123",
            &text[1..],
            &format!("{text}0"),
        ] {
            assert!(!is_pool_token(bad), "{bad}");
        }
    }

    #[test]
    fn pool_names_and_token_ids_have_one_form() {
        for ok in ["burst", "a", "eu-west-1", &"x".repeat(40)] {
            assert_eq!(check_pool(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Burst", "a_b", "a b", "é", &"x".repeat(41), "a/b"] {
            assert_eq!(
                check_pool(bad),
                Err(PlanError::PoolName(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(check_pool("bootstrap"), Err(PlanError::BootstrapPool));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let id = new_token_id(&mut rng);
        assert!(is_token_id(&id), "{id}");
        assert_ne!(new_token_id(&mut rng), id);
        for bad in ["", "jt", "jtABCDEFGHIJ", "xx0123456789", "jt0123456789a"] {
            assert!(!is_token_id(bad), "{bad}");
        }
    }

    #[test]
    fn expiry_is_bounded_and_revocation_wins() {
        let now = 1_000_000;
        assert_eq!(expires_at(now, None), Ok(None));
        assert_eq!(expires_at(now, Some(60)), Ok(Some(now + 60_000)));
        assert_eq!(
            expires_at(now, Some(90 * 86_400)),
            Ok(Some(now + 90 * 86_400_000))
        );
        assert_eq!(expires_at(now, Some(59)), Err(PlanError::Expiry(59)));
        assert_eq!(
            expires_at(now, Some(3651 * 86_400)),
            Err(PlanError::Expiry(3651 * 86_400))
        );
        assert_eq!(
            expires_at(now, Some(u64::MAX)),
            Err(PlanError::Expiry(u64::MAX))
        );
        assert_eq!(state_at(None, None, now), TokenState::Active);
        assert_eq!(state_at(Some(now + 1), None, now), TokenState::Active);
        assert_eq!(state_at(Some(now), None, now), TokenState::Expired);
        assert_eq!(
            state_at(Some(now + 1), Some(now - 5), now),
            TokenState::Revoked
        );
        assert_eq!(
            state_at(Some(now - 1), Some(now - 5), now),
            TokenState::Revoked
        );
    }
}
