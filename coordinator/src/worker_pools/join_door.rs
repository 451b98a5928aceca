//! The door's memory of pool tokens: every stored token's hash with its id, pool, expiry and
//! whether it was revoked, loaded from the store when the coordinator starts and kept in step by
//! `workers token create` and `revoke` (`mod.rs`). The worker service's guard
//! (`service/call_auth.rs`) asks it on every call, so a heartbeat never reads the store.
//!
//! Only this coordinator changes tokens, and a coordinator that starts (an elected leader
//! included) loads them all first, so the memory never lags the store it serves from.

use std::collections::HashMap;

use parking_lot::RwLock;

use super::token_plan::{BOOTSTRAP_POOL, TokenHash, TokenState, is_pool_token, state_at};

/// Who a worker call's token says the caller is: the pool, and the token's id (`None` for the
/// configured join token, pool [`BOOTSTRAP_POOL`]). The guard puts it on the request's
/// extensions; the worker service reads it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinIdentity {
    pub pool: String,
    pub token_id: Option<String>,
}

/// The configured join token's identity.
impl Default for JoinIdentity {
    fn default() -> Self {
        Self::bootstrap()
    }
}

impl JoinIdentity {
    /// The configured join token's identity.
    pub fn bootstrap() -> Self {
        JoinIdentity {
            pool: BOOTSTRAP_POOL.to_string(),
            token_id: None,
        }
    }
}

/// Why a worker call was refused. The messages name a token by its id at most, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error("this call needs the join token (authorization: Bearer ...)")]
    Missing,
    #[error("the join token is wrong")]
    Wrong,
    #[error("join token {id} of pool {pool} was revoked")]
    Revoked { id: String, pool: String },
    #[error("join token {id} of pool {pool} has expired")]
    Expired { id: String, pool: String },
    #[error(
        "this coordinator requires workers to present a client certificate signed by its client CA (tls.client_ca_file): start the worker with --client-cert and --client-key"
    )]
    NoClientCertificate,
}

impl JoinRefusal {
    /// The caller as the audit log names it (never the token).
    pub fn caller(&self) -> String {
        match self {
            JoinRefusal::Missing => "(no join token)".into(),
            JoinRefusal::Wrong => "(wrong join token)".into(),
            JoinRefusal::Revoked { id, pool } => format!("(revoked join token {id}, pool {pool})"),
            JoinRefusal::Expired { id, pool } => format!("(expired join token {id}, pool {pool})"),
            JoinRefusal::NoClientCertificate => "(no client certificate)".into(),
        }
    }
}

/// One stored token as the door knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorEntry {
    pub id: String,
    pub pool: String,
    pub expires_at_ms: Option<i64>,
    pub revoked: bool,
}

#[derive(Default)]
struct Tokens {
    by_hash: HashMap<TokenHash, DoorEntry>,
    /// Token id -> its hash, for revocation and for [`JoinDoor::still_admits`].
    by_id: HashMap<String, TokenHash>,
}

/// See the module documentation.
#[derive(Default)]
pub struct JoinDoor {
    tokens: RwLock<Tokens>,
}

impl JoinDoor {
    /// Adds (or replaces) a token.
    pub fn insert(&self, hash: TokenHash, entry: DoorEntry) {
        let mut t = self.tokens.write();
        t.by_id.insert(entry.id.clone(), hash);
        t.by_hash.insert(hash, entry);
    }

    /// Marks the token revoked (kept, so its refusals say "revoked"). Returns whether the door
    /// knew it.
    pub fn revoke(&self, id: &str) -> bool {
        let mut t = self.tokens.write();
        let Some(hash) = t.by_id.get(id).copied() else {
            return false;
        };
        match t.by_hash.get_mut(&hash) {
            Some(e) => {
                e.revoked = true;
                true
            }
            None => false,
        }
    }

    /// The identity a presented pool token gives at `now_ms`, or why it gives none. The lookup
    /// is by the token's hash: how long it takes depends on the hash, which tells a caller
    /// nothing about any stored token it does not already hold.
    pub fn admit(&self, presented: &str, now_ms: i64) -> Result<JoinIdentity, JoinRefusal> {
        if !is_pool_token(presented) {
            return Err(JoinRefusal::Wrong);
        }
        let t = self.tokens.read();
        let e = t
            .by_hash
            .get(&TokenHash::of(presented))
            .ok_or(JoinRefusal::Wrong)?;
        let revoked_at = e.revoked.then_some(0);
        match state_at(e.expires_at_ms, revoked_at, now_ms) {
            TokenState::Active => Ok(JoinIdentity {
                pool: e.pool.clone(),
                token_id: Some(e.id.clone()),
            }),
            TokenState::Revoked => Err(JoinRefusal::Revoked {
                id: e.id.clone(),
                pool: e.pool.clone(),
            }),
            TokenState::Expired => Err(JoinRefusal::Expired {
                id: e.id.clone(),
                pool: e.pool.clone(),
            }),
        }
    }

    /// Whether `identity` would still be admitted at `now_ms`: a call that passed the door and
    /// then waited (an acquire's long-poll) checks again before it hands out a lease. The
    /// configured token's identity always is.
    pub fn still_admits(&self, identity: &JoinIdentity, now_ms: i64) -> bool {
        let Some(id) = &identity.token_id else {
            return true;
        };
        let t = self.tokens.read();
        t.by_id
            .get(id)
            .and_then(|h| t.by_hash.get(h))
            .is_some_and(|e| {
                state_at(e.expires_at_ms, e.revoked.then_some(0), now_ms) == TokenState::Active
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker_pools::token_plan::mint;

    #[test]
    fn the_door_admits_active_tokens_only_and_says_why_not() {
        let door = JoinDoor::default();
        let mut rng = rand::rng();
        let (a, b) = (mint(&mut rng), mint(&mut rng));
        door.insert(
            a.hash,
            DoorEntry {
                id: "jt000000000a".into(),
                pool: "burst".into(),
                expires_at_ms: None,
                revoked: false,
            },
        );
        door.insert(
            b.hash,
            DoorEntry {
                id: "jt000000000b".into(),
                pool: "night".into(),
                expires_at_ms: Some(1_000),
                revoked: false,
            },
        );
        let burst = JoinIdentity {
            pool: "burst".into(),
            token_id: Some("jt000000000a".into()),
        };
        assert_eq!(door.admit(a.secret.expose(), 5_000), Ok(burst.clone()));
        assert!(door.still_admits(&burst, 5_000));
        // b expires at 1000.
        assert!(door.admit(b.secret.expose(), 999).is_ok());
        let expired = door.admit(b.secret.expose(), 1_000).expect_err("refused");
        assert_eq!(
            expired,
            JoinRefusal::Expired {
                id: "jt000000000b".into(),
                pool: "night".into()
            }
        );
        // Unknown and malformed tokens are simply wrong.
        let c = mint(&mut rng);
        assert_eq!(door.admit(c.secret.expose(), 0), Err(JoinRefusal::Wrong));
        assert_eq!(door.admit("not-a-token", 0), Err(JoinRefusal::Wrong));
        // Revoked: refused by name at once, and a waiting call learns it too.
        assert!(door.revoke("jt000000000a"));
        assert!(!door.revoke("jt00000000zz"));
        let revoked = door.admit(a.secret.expose(), 5_000).expect_err("refused");
        assert_eq!(
            revoked.caller(),
            "(revoked join token jt000000000a, pool burst)"
        );
        assert!(!door.still_admits(&burst, 5_000));
        assert!(door.still_admits(&JoinIdentity::bootstrap(), 5_000));
        // No refusal shows a token.
        for r in [revoked, expired, JoinRefusal::Wrong, JoinRefusal::Missing] {
            for t in [&a, &b] {
                assert!(!r.to_string().contains(&t.secret.expose()[4..]));
                assert!(!r.caller().contains(&t.secret.expose()[4..]));
            }
        }
    }
}
