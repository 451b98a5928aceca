//! The forge a lease names, as a client: the GitHub REST API for `provider = "github"`.

use repovault_common::forge::github::{ForgeError, GitHubClient, GitHubEndpoint};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

/// The forge's endpoint in `access` (its API and CA).
pub fn endpoint(access: &pb::RepoAccess) -> GitHubEndpoint {
    GitHubEndpoint {
        api_url: access.api_url.clone(),
        ca_cert_pem: (!access.ca_cert_pem.is_empty()).then(|| access.ca_cert_pem.clone()),
    }
}

/// A REST client for the lease's forge, authenticated with the lease's token.
pub fn github_client(access: &pb::RepoAccess) -> Result<GitHubClient, ForgeError> {
    GitHubClient::new(&endpoint(access), Secret::new(access.source_token.clone()))
}
