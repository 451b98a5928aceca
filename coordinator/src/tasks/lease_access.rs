//! What a lease carries of its repository (`pb::RepoAccess`): the secrets opened from their
//! seals, the source's credential, and the provider's API endpoint. A kind may take parts away
//! (verification and drills clear the source token: `kinds/`).

use repovault_common::storage::snapshot_repo_path;
use repovault_proto::v1 as pb;

use crate::error::CoreResult;
use crate::model::{OrgCredential, OrgRecord, RepoRecord};
use crate::secrets::SealContext;

use crate::forge_access::ForgeAccess;
use crate::secrets::Secrets;

/// The repository access of a lease of `repo` of `org`.
pub(crate) fn repo_access(
    secrets: &Secrets,
    forge: &ForgeAccess,
    org: &OrgRecord,
    repo: &RepoRecord,
) -> CoreResult<pb::RepoAccess> {
    let password = secrets.open(SealContext::OrgKey(&org.id), &org.sealed_key)?;
    // A repository's own token wins; a discovered repository uses its organisation's
    // credential: the token, or the App's cached installation token (never the key).
    let token = match (&repo.sealed_token, &org.credential) {
        (Some(s), _) => secrets.open(SealContext::RepoToken(&repo.id), s)?,
        (None, Some(OrgCredential::Token { sealed_token })) => {
            secrets.open(SealContext::OrgCredential(&org.id), sealed_token)?
        }
        (None, Some(OrgCredential::App { .. })) => {
            forge.cached_forge_token(org).unwrap_or_default()
        }
        (None, None) => Default::default(),
    };
    let master_key = match &repo.sealed_master_key {
        Some(s) => secrets.open(SealContext::RepoMasterKey(&repo.id), s)?,
        None => Default::default(),
    };
    Ok(pb::RepoAccess {
        org_id: org.id.to_string(),
        repo_id: repo.id.to_string(),
        org_name: org.name.clone(),
        repo_name: repo.name.clone(),
        source_url: repo.url.clone(),
        source_token: token.expose().to_string(),
        snapshot_path: snapshot_repo_path(org.id.as_str(), repo.id.as_str()),
        repo_password: password.expose().to_string(),
        master_key: master_key.expose().to_string(),
        provider: org.provider.into(),
        api_url: crate::forge_access::org_discovery::endpoint(org).api_url,
        ca_cert_pem: org.ca_cert_pem.clone().unwrap_or_default(),
        credential_id: crate::forge_access::forge_credentials::credential_id(org, repo, &token),
    })
}
