//! The stored form of a worker pool's join token: never the token, only its hash.

use serde::{Deserialize, Serialize};

/// One join token of a worker pool (`repovault workers token create`), kept at
/// `worker-token/<id>`. Records are never deleted: a revoked token stays listed with who
/// revoked it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTokenRecord {
    /// `jt` and 10 base-36 characters (`token_plan::new_token_id`).
    pub id: String,
    pub pool: String,
    /// The token's SHA-256, hex (`token_plan::TokenHash`).
    pub hash: String,
    pub created_at_ms: i64,
    /// The admin token's name that created it (`local` without configured tokens).
    pub created_by: String,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
    #[serde(default)]
    pub revoked_by: Option<String>,
}
