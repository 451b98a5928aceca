//! repovault's gRPC protocol, generated from `proto/repovault/v1/*.proto`.

/// The protocol version a worker announces at registration. Bump it when a change to the worker
/// protocol is not backward compatible; the coordinator refuses other versions.
///
/// 2: the closed sets (task kind, backup type, trigger, provider, restore type and target,
/// statuses, check results) are enums instead of strings, and a task's spec and a completion's
/// result are oneofs; a version-1 worker cannot read a version-2 lease. Version 3: the storage
/// location travels in each lease (`RepoAccess.storage`) instead of the registration answer.
pub const PROTOCOL_VERSION: u32 = 3;

/// etcd's v3 API, as far as the etcd state store uses it (`etcd/etcdserverpb/rpc.proto`).
pub mod etcd {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("etcdserverpb");
}

/// KEDA's external scaler interface (`keda/externalscaler.proto`).
pub mod keda {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("externalscaler");
}

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("repovault.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("repovault_descriptor");
}

/// JSON spellings of the enum fields the CLI prints (wired up by `build.rs`): the value name
/// without its enum's prefix, in lower case (`TASK_STATUS_COMPLETED` is `"completed"`), the
/// words these fields had when they were strings; unspecified or unknown values are `""`.
pub mod json {
    fn spelled(name: Option<&'static str>, prefix: &str) -> String {
        name.map(|n| n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase())
            .unwrap_or_default()
    }

    macro_rules! spelling {
        ($($f:ident: $e:ident = $prefix:literal),* $(,)?) => {
            $(
                pub fn $f<S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
                    let name = super::v1::$e::try_from(*v)
                        .ok()
                        .filter(|e| *e != super::v1::$e::Unspecified)
                        .map(|e| e.as_str_name());
                    s.serialize_str(&spelled(name, $prefix))
                }
            )*
        };
    }

    spelling!(
        provider: Provider = "PROVIDER_",
        task_kind: TaskKind = "TASK_KIND_",
        backup_type: BackupType = "BACKUP_TYPE_",
        trigger: Trigger = "TRIGGER_",
        restore_type: RestoreType = "RESTORE_TYPE_",
        restore_target: RestoreTarget = "RESTORE_TARGET_",
        task_status: TaskStatus = "TASK_STATUS_",
        check_outcome: CheckOutcome = "CHECK_OUTCOME_",
        verify_status: VerifyStatus = "VERIFY_STATUS_",
        verify_run: VerifyRun = "VERIFY_RUN_",
        drill_status: DrillStatus = "DRILL_STATUS_",
        component_state: ComponentState = "COMPONENT_STATE_",
        storage_role: StorageRole = "STORAGE_ROLE_",
        escrow_lock_status: EscrowLockStatus = "ESCROW_LOCK_STATUS_",
        worker_token_state: WorkerTokenState = "WORKER_TOKEN_STATE_",
    );
}

/// Accessors for the variants of a oneof, so callers read `task.backup_spec()` instead of
/// matching the generated enum each time.
macro_rules! oneof_accessors {
    ($msg:ident . $field:ident : $oneof:path { $($name:ident => $variant:ident($ty:ident)),* $(,)? }) => {
        impl v1::$msg {
            $(
                pub fn $name(&self) -> Option<&v1::$ty> {
                    use $oneof as O;
                    match &self.$field {
                        Some(O::$variant(x)) => Some(x),
                        _ => None,
                    }
                }
            )*
        }
    };
}

oneof_accessors!(Task.spec: v1::task::Spec {
    backup_spec => Backup(BackupSpec),
    restore_spec => Restore(RestoreSpec),
    verify_spec => Verify(VerifySpec),
    drill_spec => Drill(DrillSpec),
});

oneof_accessors!(CompleteTaskRequest.result: v1::complete_task_request::Result {
    backup_result => Backup(BackupResult),
    restore_result => Restore(RestoreResult),
    verify_result => Verify(VerifyResult),
    drill_result => Drill(DrillResult),
});

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
redacted_debug!(UpdateOrgCredentialRequest { org, app_id, installation_id }
    secret { token, private_key_pem });
redacted_debug!(UpdateRepoCredentialRequest { repo } secret { token });
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
redacted_debug!(AddStorageLocationRequest { name, kind, options }
    secret { writer_secrets, maintainer_secrets });
// A storage specification's options mix plain ones and keys; none is printed.
redacted_debug!(StorageSpec { kind } secret { options });
// A pool's join token, shown once at its creation.
redacted_debug!(CreateWorkerTokenResponse { token } secret { secret });

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn debug_of_secret_bearing_messages_redacts_the_secrets() {
        let req = v1::AddOrgRequest {
            name: "acme".into(),
            provider: v1::Provider::Github as i32,
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
        let token = v1::CreateWorkerTokenResponse {
            token: Some(v1::WorkerToken {
                pool: "burst".into(),
                ..Default::default()
            }),
            secret: "rvj_SECRET".into(),
        };
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("SECRET") && shown.contains("burst"),
            "{shown}"
        );
    }

    #[test]
    fn enum_fields_print_as_the_words_they_always_were() {
        let backup = v1::Backup {
            r#type: v1::BackupType::Incremental as i32,
            trigger: v1::Trigger::Schedule as i32,
            status: v1::TaskStatus::Completed as i32,
            ..Default::default()
        };
        let json = serde_json::to_value(&backup).expect("json");
        assert_eq!(json["type"], "incremental");
        assert_eq!(json["trigger"], "schedule");
        assert_eq!(json["status"], "completed");
        let restore = v1::Restore {
            r#type: v1::RestoreType::FullRepo as i32,
            target: v1::RestoreTarget::Download as i32,
            ..Default::default()
        };
        let json = serde_json::to_value(&restore).expect("json");
        assert_eq!(json["type"], "full_repo");
        assert_eq!(json["target"], "download");
        assert_eq!(json["status"], "", "unspecified prints as empty");
        let check = v1::CheckResult {
            result: v1::CheckOutcome::Skipped as i32,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&check).expect("json")["result"],
            "skipped"
        );
    }
}
