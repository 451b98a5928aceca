//! What a lease carries of its repository ([`RepoAccess`]): the secrets opened from their
//! seals, the source's credential, and the provider's API endpoint. A kind may take parts away
//! (verification and drills clear the source token: `kinds/`).

use repovault_common::secret::Secret;
use repovault_common::storage::snapshot_repo_path;

use crate::error::CoreResult;
use crate::model::{OrgCredential, OrgId, OrgRecord, Provider, RepoId, RepoRecord};
use repovault_common::storage::StorageConfig;

use crate::secrets::SealContext;

use crate::forge_access::ForgeAccess;
use crate::secrets::Secrets;

/// What a lease carries of its repository.
#[derive(Debug, Clone)]
pub struct RepoAccess {
    pub org_id: OrgId,
    pub repo_id: RepoId,
    pub org_name: String,
    pub repo_name: String,
    pub source_url: String,
    /// The source's token (empty when none, or taken away by the kind).
    pub source_token: Secret,
    /// The snapshot repository's path under the storage root.
    pub snapshot_path: String,
    /// The organisation's key: the snapshot repository's restic password.
    pub repo_password: Secret,
    /// The snapshot repository's master key (JSON), empty until first known.
    pub master_key: Secret,
    pub provider: Provider,
    /// The forge's REST base; empty for plain git.
    pub api_url: String,
    /// A PEM CA certificate to trust for the forge instead of the system's.
    pub ca_cert_pem: Option<String>,
    /// The forge credential's stable, non-secret id naming its rate budget; empty without one.
    pub credential_id: String,
    /// Where the snapshot repository lives, with the credential the task may use.
    pub storage: StorageConfig,
}

/// The repository access of a lease of `repo` of `org`.
pub(crate) fn repo_access(
    secrets: &Secrets,
    forge: &ForgeAccess,
    org: &OrgRecord,
    repo: &RepoRecord,
    storage: StorageConfig,
) -> CoreResult<RepoAccess> {
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
    let credential_id = crate::forge_access::forge_credentials::credential_id(org, repo, &token);
    Ok(RepoAccess {
        org_id: org.id.clone(),
        repo_id: repo.id.clone(),
        org_name: org.name.clone(),
        repo_name: repo.name.clone(),
        source_url: repo.url.clone(),
        source_token: token,
        snapshot_path: snapshot_repo_path(org.id.as_str(), repo.id.as_str()),
        repo_password: password,
        master_key,
        provider: org.provider,
        api_url: crate::forge_access::org_discovery::endpoint(org).api_url,
        ca_cert_pem: org.ca_cert_pem.clone(),
        credential_id,
        storage,
    })
}
