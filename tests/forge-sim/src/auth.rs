//! Who is calling, and may they: tokens (`Authorization: Bearer`, `token`, HTTP Basic as git and
//! python-github-backup send them), GitHub App JWTs (RS256, verified with the app's public key),
//! installation tokens (expiring, scoped to repositories and permissions), fine-grained personal
//! access tokens (one resource owner, optionally narrowed to repositories and permissions).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, bail};
use axum::http::HeaderMap;
use base64::Engine as _;
use chrono::Utc;
use serde::Deserialize;

use crate::error::ApiError;
use crate::seed::FineGrainedTokenSeed;
use crate::state::{AccountKind, Permission, Principal, Repo, Token, World};

/// The authenticated caller of one request, inserted into the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Option<Principal>,
    /// The token as presented, for installation scoping.
    pub token: Option<Token>,
    /// The key the rate limits are kept under: `user:LOGIN`, `installation:ID`, `app:ID` or
    /// `anonymous:ADDR`.
    pub limit_key: String,
}

impl Caller {
    pub fn login(&self) -> Option<&str> {
        match &self.principal {
            Some(Principal::User(l)) => Some(l),
            _ => None,
        }
    }

    /// The login that authored a write: the user, or the app's bot (`SLUG[bot]`).
    pub fn actor(&self, world: &World) -> Option<String> {
        match &self.principal {
            Some(Principal::User(l)) => Some(l.clone()),
            Some(Principal::Installation(id)) => world
                .installations
                .get(id)
                .and_then(|i| world.apps.get(&i.app_id))
                .map(|a| format!("{}[bot]", a.slug)),
            Some(Principal::App(id)) => world.apps.get(id).map(|a| format!("{}[bot]", a.slug)),
            None => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct JwtClaims {
    iss: serde_json::Value,
    #[allow(dead_code)]
    exp: i64,
    #[allow(dead_code)]
    iat: i64,
}

/// The credential in `Authorization`, if any: (token or JWT).
fn presented(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ApiError::bad_credentials())?.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => Ok(Some(rest.to_string())),
        "basic" => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| ApiError::bad_credentials())?;
            let raw = String::from_utf8(raw).map_err(|_| ApiError::bad_credentials())?;
            let (user, pass) = raw.split_once(':').unwrap_or((raw.as_str(), ""));
            // git sends `x-access-token:TOKEN`; python-github-backup sends `TOKEN:x-oauth-basic`.
            if pass.is_empty() || pass == "x-oauth-basic" {
                Ok(Some(user.to_string()))
            } else {
                Ok(Some(pass.to_string()))
            }
        }
        _ => Err(ApiError::bad_credentials()),
    }
}

/// Authenticates a request. No credential is an anonymous caller; a credential that is unknown,
/// expired or a JWT that does not verify is 401 "Bad credentials" (GitHub's answer to each).
pub fn authenticate(world: &World, headers: &HeaderMap, peer: &str) -> Result<Caller, ApiError> {
    let Some(cred) = presented(headers)? else {
        return Ok(Caller {
            principal: None,
            token: None,
            limit_key: format!("anonymous:{peer}"),
        });
    };
    if cred.split('.').count() == 3 && cred.starts_with("ey") {
        let app_id = verify_jwt(world, &cred)?;
        return Ok(Caller {
            principal: Some(Principal::App(app_id)),
            token: None,
            limit_key: format!("app:{app_id}"),
        });
    }
    let token = world
        .tokens
        .get(&cred)
        .ok_or_else(ApiError::bad_credentials)?;
    if token.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::bad_credentials());
    }
    let limit_key = match &token.principal {
        Principal::User(l) => format!("user:{l}"),
        Principal::Installation(id) => format!("installation:{id}"),
        Principal::App(id) => format!("app:{id}"),
    };
    Ok(Caller {
        principal: Some(token.principal.clone()),
        token: Some(token.clone()),
        limit_key,
    })
}

/// Verifies an app JWT: RS256 with the app's key, `iss` the app id (number or string), `exp` not
/// past and at most 10 minutes after `iat` (GitHub's rules; 60 s of clock drift allowed).
fn verify_jwt(world: &World, jwt: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )
    };
    let insecure = jsonwebtoken::dangerous::insecure_decode::<JwtClaims>(jwt).map_err(|_| bad())?;
    let iss = match &insecure.claims.iss {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(bad)?;
    let app = world.apps.get(&iss).ok_or_else(bad)?;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
        .map_err(|_| bad())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 60;
    // `iss` was read above, as a number (octocrab sends one) or a string; jsonwebtoken's own
    // check of it accepts strings only.
    validation.set_required_spec_claims(&["exp", "iat"]);
    let data = jsonwebtoken::decode::<JwtClaims>(jwt, &key, &validation).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            format!("'Expiration time' claim ('exp') is too far in the future or invalid: {e}"),
        )
    })?;
    if data.claims.exp - data.claims.iat > 660 {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    Ok(iss)
}

/// What an operation on a repository needs: a user permission level, and for an installation
/// the app permission (`contents`, `issues`, `pull_requests`, `administration`, `metadata`,
/// `actions`, ...) at `read` or `write`.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub user: Permission,
    pub app_permission: &'static str,
    pub write: bool,
}

impl Need {
    pub const fn read(app_permission: &'static str) -> Need {
        Need {
            user: Permission::Read,
            app_permission,
            write: false,
        }
    }
    pub const fn write(app_permission: &'static str) -> Need {
        Need {
            user: Permission::Write,
            app_permission,
            write: true,
        }
    }
    pub const fn triage(app_permission: &'static str) -> Need {
        Need {
            user: Permission::Triage,
            app_permission,
            write: true,
        }
    }
    /// Admin to read (settings such as hooks and deploy keys).
    pub const fn admin_read(app_permission: &'static str) -> Need {
        Need {
            user: Permission::Admin,
            app_permission,
            write: false,
        }
    }
    pub const fn admin_write(app_permission: &'static str) -> Need {
        Need {
            user: Permission::Admin,
            app_permission,
            write: true,
        }
    }
}

/// What a fine-grained personal access token allows on one repository.
enum Scope {
    /// In scope: the user's own permission decides.
    Granted,
    /// Outside its scope, a public repository: readable, as by anyone.
    PublicRead,
    Refused(ApiError),
}

/// GitHub's rules for fine-grained personal access tokens: a token reaches the repositories of
/// its one resource owner (those selected, when it was narrowed to some) with the permissions it
/// was given (`metadata: read` always); outside that, it reads public repositories as anyone
/// may, a private one does not exist (404), and anything else is 403 "Resource not accessible
/// by personal access token".
fn fine_grained(token: &Token, repo: &Repo, need: Need) -> Scope {
    let in_scope = token
        .resource_owner
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case(&repo.owner))
        && token
            .repositories
            .as_ref()
            .is_none_or(|r| r.contains(&repo.id));
    if !in_scope {
        return if repo.private {
            Scope::Refused(ApiError::not_found())
        } else if need.write || need.user > Permission::Read {
            Scope::Refused(ApiError::not_accessible_by_pat())
        } else {
            Scope::PublicRead
        };
    }
    let metadata_read = need.app_permission == "metadata" && !need.write;
    match &token.permissions {
        Some(perms) if !metadata_read && !grants(perms, need.app_permission, need.write) => {
            Scope::Refused(ApiError::not_accessible_by_pat())
        }
        _ => Scope::Granted,
    }
}

/// Does a permission map (`contents: read`, `issues: write`, ...) grant `permission` (at
/// `write` when `write`)?
pub fn grants(perms: &BTreeMap<String, String>, permission: &str, write: bool) -> bool {
    match perms.get(permission).map(String::as_str) {
        Some("write") | Some("admin") => true,
        Some("read") => !write,
        _ => false,
    }
}

/// Organisation-level routes (creating a repository, teams, organisation hooks) for a
/// fine-grained personal access token: only on its resource owner, with `permission` when the
/// token was narrowed to some; anything else is GitHub's 403 "Resource not accessible by
/// personal access token". Other credentials pass.
pub fn pat_reaches_org(
    caller: &Caller,
    org: &str,
    permission: &str,
    write: bool,
) -> Result<(), ApiError> {
    let Some(token) = caller.token.as_ref() else {
        return Ok(());
    };
    let Some(owner) = &token.resource_owner else {
        return Ok(());
    };
    let permitted = token
        .permissions
        .as_ref()
        .is_none_or(|p| grants(p, permission, write));
    if owner.eq_ignore_ascii_case(org) && permitted {
        Ok(())
    } else {
        Err(ApiError::not_accessible_by_pat())
    }
}

/// May `caller` do `need` on `repo`? Without read access a private repository does not exist
/// (404), as on GitHub; with read but not enough, 403 with GitHub's message.
pub fn check(world: &World, caller: &Caller, repo: &Repo, need: Need) -> Result<(), ApiError> {
    match &caller.principal {
        None => {
            if repo.private {
                return Err(ApiError::not_found());
            }
            if need.write || need.user > Permission::Read {
                return Err(ApiError::requires_auth());
            }
            Ok(())
        }
        Some(Principal::User(login)) => {
            let have = world.user_permission(login, repo);
            if have == Permission::None {
                return Err(ApiError::not_found());
            }
            if let Some(token) = caller.token.as_ref().filter(|t| t.resource_owner.is_some()) {
                match fine_grained(token, repo, need) {
                    Scope::Granted => {}
                    Scope::PublicRead => return Ok(()),
                    Scope::Refused(e) => return Err(e),
                }
            }
            if have < need.user {
                return Err(ApiError::forbidden(match need.user {
                    Permission::Admin => "Must have admin rights to Repository.",
                    _ => "Must have push access to this repository.",
                }));
            }
            Ok(())
        }
        Some(Principal::Installation(id)) => {
            let inst = world
                .installations
                .get(id)
                .ok_or_else(ApiError::bad_credentials)?;
            let in_installation = inst.account.eq_ignore_ascii_case(&repo.owner)
                && inst
                    .repositories
                    .as_ref()
                    .is_none_or(|r| r.contains(&repo.id));
            let in_token = caller
                .token
                .as_ref()
                .and_then(|t| t.repositories.as_ref())
                .is_none_or(|r| r.contains(&repo.id));
            if !in_installation || !in_token {
                return Err(ApiError::not_found());
            }
            if need.app_permission == "metadata" && !need.write {
                return Ok(());
            }
            let perms = caller
                .token
                .as_ref()
                .and_then(|t| t.permissions.as_ref())
                .unwrap_or(&inst.permissions);
            let level = perms.get(need.app_permission).map(String::as_str);
            let ok = match level {
                Some("write") | Some("admin") => true,
                Some("read") => !need.write,
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(ApiError::not_accessible_by_integration())
            }
        }
        Some(Principal::App(_)) => Err(ApiError::forbidden(
            "A JSON web token cannot be used to access this resource; use an installation token",
        )),
    }
}

/// A fine-grained personal access token of a seeded user, reaching one seeded account.
pub fn seed_fine_grained_token(sim: &crate::Sim, t: &FineGrainedTokenSeed) -> anyhow::Result<()> {
    let mut world = sim.world.lock();
    let user = world
        .account(&t.user)
        .filter(|a| a.kind == AccountKind::User)
        .map(|a| a.login.clone())
        .with_context(|| format!("user {:?} is not a seeded user", t.user))?;
    let owner = world
        .account(&t.resource_owner)
        .map(|a| a.login.clone())
        .with_context(|| format!("resource owner {:?} is not seeded", t.resource_owner))?;
    let repositories = match &t.repositories {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|n| {
                    world
                        .repo_id(&owner, n)
                        .with_context(|| format!("repository {owner}/{n} is not seeded"))
                })
                .collect::<anyhow::Result<BTreeSet<u64>>>()?,
        ),
    };
    if t.token.is_empty() || world.tokens.contains_key(&t.token) {
        bail!("the token is empty or seeded twice");
    }
    world.tokens.insert(
        t.token.clone(),
        Token {
            principal: Principal::User(user),
            expires_at: None,
            repositories,
            permissions: t.permissions.clone(),
            resource_owner: Some(owner),
        },
    );
    Ok(())
}
