//! Secrets: the coordinator's master key and what it seals (organisation keys and credentials,
//! repository tokens and snapshot master keys, webhook secrets, restore tokens).
//!
//! Each sealed value is bound to its record by its [`SealContext`] (associated data), so a sealed
//! value copied onto another record does not open. The context strings are part of the stored
//! format: changing one makes every value sealed under it unreadable.

use repovault_common::crypto::MasterKey;
use repovault_common::secret::Secret;

use crate::error::{CoreError, CoreResult};
use crate::model::{OrgId, RepoId, RestoreId};

/// What a sealed value belongs to: the record kind and its id.
#[derive(Debug, Clone, Copy)]
pub enum SealContext<'a> {
    /// An organisation's snapshot repository password (by organisation id).
    OrgKey(&'a OrgId),
    /// An organisation's forge credential: token or App private key (by organisation id).
    OrgCredential(&'a OrgId),
    /// A repository's own source token (by repository id).
    RepoToken(&'a RepoId),
    /// A snapshot repository's master key (by repository id).
    RepoMasterKey(&'a RepoId),
    /// A repository's push webhook secret (by repository id).
    WebhookSecret(&'a RepoId),
    /// A restore's target token (by restore id).
    RestoreToken(&'a RestoreId),
    /// A storage location's secret options, writer's or maintainer's (by name and role).
    StorageCredential(&'a str, &'static str),
}

impl SealContext<'_> {
    /// The associated data the value is sealed with.
    fn associated_data(self) -> String {
        match self {
            SealContext::OrgKey(id) => format!("org-key:{id}"),
            SealContext::OrgCredential(id) => format!("org-credential:{id}"),
            SealContext::RepoToken(id) => format!("repo-token:{id}"),
            SealContext::RepoMasterKey(id) => format!("repo-master-key:{id}"),
            SealContext::WebhookSecret(id) => format!("webhook-secret:{id}"),
            SealContext::RestoreToken(id) => format!("restore-token:{id}"),
            SealContext::StorageCredential(name, role) => {
                format!("storage-credential:{name}:{role}")
            }
        }
    }
}

/// The master key and the seal and open operations. Immutable after construction, so it needs
/// no lock; shared by `Arc` with the components that seal or open.
pub struct Secrets {
    master: MasterKey,
}

impl Secrets {
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    /// The master key itself: a restarted core in tests is built on it again.
    #[cfg(test)]
    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    /// `secret` sealed for `context`.
    pub fn seal(&self, context: SealContext<'_>, secret: &Secret) -> String {
        self.master.seal_secret(&context.associated_data(), secret)
    }

    /// The secret sealed for `context`; an error when it was sealed for another record, under
    /// another key, or is malformed (the error names the context, never the value).
    pub fn open(&self, context: SealContext<'_>, sealed: &str) -> CoreResult<Secret> {
        self.master
            .open_secret(&context.associated_data(), sealed)
            .map_err(|e| CoreError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_for_the_record_it_was_sealed_for() {
        let s = Secrets::new(MasterKey::generate());
        let sealed = s.seal(
            SealContext::RepoToken(&crate::coordinator::testing::tid("r1")),
            &Secret::new("tok"),
        );
        let opened = s
            .open(
                SealContext::RepoToken(&crate::coordinator::testing::tid("r1")),
                &sealed,
            )
            .expect("opens");
        assert_eq!(opened.expose(), "tok");
        assert!(
            s.open(
                SealContext::RepoToken(&crate::coordinator::testing::tid("r2")),
                &sealed
            )
            .is_err()
        );
        assert!(
            s.open(
                SealContext::WebhookSecret(&crate::coordinator::testing::tid("r1")),
                &sealed
            )
            .is_err()
        );
    }

    /// The stored format: values sealed under the former context strings still open.
    #[test]
    fn contexts_keep_their_stored_spelling() {
        let key = MasterKey::generate();
        let s = Secrets::new(key.clone());
        let cases = [
            (
                SealContext::OrgKey(&crate::coordinator::testing::tid("o")),
                "org-key:o",
            ),
            (
                SealContext::OrgCredential(&crate::coordinator::testing::tid("o")),
                "org-credential:o",
            ),
            (
                SealContext::RepoToken(&crate::coordinator::testing::tid("r")),
                "repo-token:r",
            ),
            (
                SealContext::RepoMasterKey(&crate::coordinator::testing::tid("r")),
                "repo-master-key:r",
            ),
            (
                SealContext::WebhookSecret(&crate::coordinator::testing::tid("r")),
                "webhook-secret:r",
            ),
            (
                SealContext::RestoreToken(&crate::coordinator::testing::tid("x")),
                "restore-token:x",
            ),
        ];
        for (ctx, stored) in cases {
            let sealed = key.seal_secret(stored, &Secret::new("v"));
            assert_eq!(s.open(ctx, &sealed).expect(stored).expose(), "v");
        }
    }
}
