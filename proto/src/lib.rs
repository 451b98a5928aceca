//! repovault's gRPC protocol, generated from `proto/repovault/v1/*.proto`.

/// The protocol version a worker announces at registration. Bump it when a change to the worker
/// protocol is not backward compatible; the coordinator refuses other versions.
pub const PROTOCOL_VERSION: u32 = 1;

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("repovault.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("repovault_descriptor");
}

/// Debug for a message with secret fields: every other field as usual, each secret as
/// `"[redacted]"` (or `""` when empty, so "was a token sent" stays visible).
macro_rules! redacted_debug {
    ($ty:ident { $($field:ident),* $(,)? } secret { $($secret:ident),* $(,)? }) => {
        impl std::fmt::Debug for v1::$ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct(stringify!($ty));
                $(d.field(stringify!($field), &self.$field);)*
                $(d.field(
                    stringify!($secret),
                    &if self.$secret.is_empty() { "" } else { "[redacted]" },
                );)*
                d.finish()
            }
        }
    };
}

redacted_debug!(AddOrgRequest { name, provider, api_url, app_id, installation_id, ca_cert_pem }
    secret { token, private_key_pem });
redacted_debug!(AddRepoRequest { org, name, url } secret { token });
redacted_debug!(StartRestoreRequest { backup_id, r#type, target, url } secret { token });
redacted_debug!(ExportOrgKeyResponse { org_id } secret { key });
redacted_debug!(RepoAccess { org_id, repo_id, org_name, repo_name, source_url, snapshot_path }
    secret { source_token, repo_password, master_key });
redacted_debug!(RestoreSpec { restore_id, backup_id, snapshot_id, restore_type, target, target_url, artifact_path }
    secret { target_token });
redacted_debug!(BackupResult { snapshot_id, manifest_json, size_bytes, added_bytes, counts, bytes_received }
    secret { master_key });
redacted_debug!(RequestPermitsResponse { grant } secret { source_token });
redacted_debug!(EnableEscrowResponse { agreement } secret { key });

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn debug_of_secret_bearing_messages_redacts_the_secrets() {
        let req = v1::AddOrgRequest {
            name: "acme".into(),
            provider: "github".into(),
            token: "ghp_SECRET".into(),
            private_key_pem: "-----BEGIN RSA PRIVATE KEY-----SECRET".into(),
            ..Default::default()
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            shown.contains("acme") && shown.contains("[redacted]"),
            "{shown}"
        );
        let access = v1::RepoAccess {
            source_token: "ghs_SECRET".into(),
            repo_password: "SECRET".into(),
            source_url: "https://example.com/o/r.git".into(),
            ..Default::default()
        };
        let shown = format!("{access:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("example.com"), "{shown}");
        // An empty secret shows as empty, not as redacted.
        let shown = format!("{:?}", v1::AddRepoRequest::default());
        assert!(shown.contains("token: \"\""), "{shown}");
        let permits = v1::RequestPermitsResponse {
            grant: Some(v1::RateGrant {
                permits: 7,
                ..Default::default()
            }),
            source_token: "ghs_SECRET".into(),
        };
        let shown = format!("{permits:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("permits: 7"), "{shown}");
    }
}
