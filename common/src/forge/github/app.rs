//! GitHub App installation tokens: an RS256 JWT signed with the App's private key, exchanged at
//! `POST /app/installations/{id}/access_tokens`. The coordinator mints them and hands workers
//! the token (never the key).

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::Value;

use super::rest_client::{GitHubClient, GitHubEndpoint};
use crate::forge::ForgeError;
use crate::secret::Secret;

/// `iat` is set this far in the past: GitHub's documentation ("Generating a JSON Web Token for
/// a GitHub App") recommends 60 seconds to allow for clock drift.
pub const JWT_BACKDATE_SECS: i64 = 60;
/// The JWT's lifetime after now: GitHub allows at most 10 minutes; 9 keeps a margin for drift
/// (same documentation).
pub const JWT_LIFETIME_SECS: i64 = 540;

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// An App JWT for `app_id` (valid from now−60 s to now+540 s).
pub fn app_jwt(app_id: u64, private_key_pem: &Secret) -> Result<Secret, ForgeError> {
    let now = Utc::now().timestamp();
    let claims = Claims {
        iat: now - JWT_BACKDATE_SECS,
        exp: now + JWT_LIFETIME_SECS,
        iss: app_id.to_string(),
    };
    let key = EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
        .map_err(|e| ForgeError::Config(format!("GitHub App private key: {e}")))?;
    let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|e| ForgeError::Config(format!("signing the GitHub App JWT: {e}")))?;
    Ok(Secret::new(jwt))
}

/// Checks that `pem` is an RSA private key (PKCS#1 or PKCS#8 PEM) that signs, as a GitHub
/// App's key must be. The error never contains the key.
pub fn check_app_private_key(pem: &Secret) -> Result<(), String> {
    app_jwt(1, pem).map(|_| ()).map_err(|_| {
        "the private key is not an RSA private key in PEM (GitHub App keys are \"-----BEGIN RSA PRIVATE KEY-----\" files)".to_string()
    })
}

/// A new installation token for `installation_id` of App `app_id`, with its expiry (GitHub:
/// one hour). The token has the installation's repositories and permissions.
pub async fn mint_installation_token(
    endpoint: &GitHubEndpoint,
    app_id: u64,
    private_key_pem: &Secret,
    installation_id: u64,
) -> Result<(Secret, DateTime<Utc>), ForgeError> {
    let jwt = app_jwt(app_id, private_key_pem)?;
    let client = GitHubClient::new(endpoint, jwt)?;
    let path = format!("/app/installations/{installation_id}/access_tokens");
    let answer = client
        .post_json(&path, &Value::Object(Default::default()))
        .await?;
    let decode = |detail: &str| ForgeError::Decode {
        method: "POST".into(),
        path: path.clone(),
        detail: detail.to_string(),
    };
    let token = answer
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| decode("no token"))?;
    let expires_at = answer
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .ok_or_else(|| decode("no expires_at"))?
        .with_timezone(&Utc);
    Ok((Secret::new(token), expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_must_be_rsa_pem() {
        let e = check_app_private_key(&Secret::new("-----BEGIN RSA PRIVATE KEY-----\nnope\n"))
            .expect_err("garbage");
        assert!(!e.contains("nope"));
        assert!(check_app_private_key(&Secret::new("")).is_err());
    }
}
