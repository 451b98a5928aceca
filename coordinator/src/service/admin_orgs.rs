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
    let forge = forges::kind(provider).name();
    let has_app = r.app_id != 0 || r.installation_id != 0 || !r.private_key_pem.is_empty();
    let credential = match (r.token.is_empty(), has_app) {
        (false, true) => {
            return Err(Status::invalid_argument(format!(
                "give either a token or a {forge} App, not both"
            )));
        }
        (true, false) => {
            return Err(Status::invalid_argument(format!(
                "provider {provider} needs a credential: a token or a {forge} App (app id, private key, installation id)"
            )));
        }
        (false, false) => ForgeCredential::Token(Secret::new(r.token)),
        (true, true) => {
            if r.app_id == 0 || r.installation_id == 0 || r.private_key_pem.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "a {forge} App needs all three of app id, private key and installation id"
                )));
            }
            ForgeCredential::App(AppInstallation {
                app_id: r.app_id,
                installation_id: r.installation_id,
                private_key_pem: Secret::new(r.private_key_pem),
            })
        }
    };
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
