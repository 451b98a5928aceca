//! `AddOrg` at the edge: the request's provider and credential fields as typed values, checked
//! before anything is stored (a plain git organisation takes none; a forge takes a token or an
//! App, never both), then delegated.

use tonic::Status;

use repovault_common::domain::Provider;
use repovault_common::forge::{self as forges, AppInstallation, ForgeCredential};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::forge_access::org_discovery::NewForgeOrg;

use super::convert;
use crate::coordinator::Coordinator;

pub(super) async fn admit_org(
    core: &Coordinator,
    r: pb::AddOrgRequest,
) -> Result<pb::AddOrgResponse, Status> {
    let provider = convert::enum_field_or(r.provider, "provider", Provider::Git)?;
    if !provider.is_forge() {
        if !r.api_url.is_empty()
            || !r.token.is_empty()
            || r.app_id != 0
            || !r.private_key_pem.is_empty()
            || r.installation_id != 0
            || !r.ca_cert_pem.is_empty()
        {
            return Err(Status::invalid_argument(format!(
                "provider {provider} takes no API URL, credential or CA certificate"
            )));
        }
        let org = core.registry.add_org(&r.name, provider).await?;
        return Ok(pb::AddOrgResponse {
            org: Some(convert::org(&org)),
            sync: None,
        });
    }
    let credential = credential_of(
        provider,
        r.token,
        r.app_id,
        r.private_key_pem,
        r.installation_id,
    )?;
    let (org, report) = core
        .forge
        .add_forge_org(NewForgeOrg {
            provider,
            name: r.name,
            api_url: (!r.api_url.is_empty()).then_some(r.api_url),
            ca_cert_pem: (!r.ca_cert_pem.is_empty()).then_some(r.ca_cert_pem),
            credential,
        })
        .await?;
    Ok(pb::AddOrgResponse {
        org: Some(convert::org(&org)),
        sync: Some(convert::sync(&report)),
    })
}

/// A forge credential from a request's fields: a token, or an App (all three fields), never
/// both.
fn credential_of(
    provider: Provider,
    token: String,
    app_id: u64,
    private_key_pem: String,
    installation_id: u64,
) -> Result<ForgeCredential, Status> {
    let forge = forges::kind(provider).name();
    let has_app = app_id != 0 || installation_id != 0 || !private_key_pem.is_empty();
    match (token.is_empty(), has_app) {
        (false, true) => Err(Status::invalid_argument(format!(
            "give either a token or a {forge} App, not both"
        ))),
        (true, false) => Err(Status::invalid_argument(format!(
            "provider {provider} needs a credential: a token or a {forge} App (app id, private key, installation id)"
        ))),
        (false, false) => Ok(ForgeCredential::Token(Secret::new(token))),
        (true, true) => {
            if app_id == 0 || installation_id == 0 || private_key_pem.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "a {forge} App needs all three of app id, private key and installation id"
                )));
            }
            Ok(ForgeCredential::App(AppInstallation {
                app_id,
                installation_id,
                private_key_pem: Secret::new(private_key_pem),
            }))
        }
    }
}

/// `UpdateRepoCredential`: a plain git repository's token replaced (or removed when empty).
pub(super) async fn update_repo_credential(
    core: &Coordinator,
    r: pb::UpdateRepoCredentialRequest,
) -> Result<pb::UpdateRepoCredentialResponse, Status> {
    let token = (!r.token.is_empty()).then(|| Secret::new(r.token));
    let repo = core.registry.update_repo_token(&r.repo, token).await?;
    let stats = core
        .store
        .stats(&repo.id)
        .await
        .map_err(crate::error::CoreError::from)?;
    Ok(pb::UpdateRepoCredentialResponse {
        repo: Some(convert::repo(&repo, &stats)),
    })
}

/// `UpdateOrgCredential`: the new credential as a typed value, then proven and stored by the
/// forge access.
pub(super) async fn update_credential(
    core: &Coordinator,
    r: pb::UpdateOrgCredentialRequest,
) -> Result<pb::UpdateOrgCredentialResponse, Status> {
    let org = core.registry.org_named(&r.org).await?;
    let credential = credential_of(
        org.provider,
        r.token,
        r.app_id,
        r.private_key_pem,
        r.installation_id,
    )?;
    let (org, listed) = core.forge.update_credential(&r.org, credential).await?;
    Ok(pb::UpdateOrgCredentialResponse {
        org: Some(convert::org(&org)),
        listed: listed as u64,
    })
}
