//! Generates the gRPC code from `repovault/v1/*.proto` with a vendored protoc, so a fresh machine
//! needs no protobuf-compiler package.

/// Messages with secret fields; keep in step with the `redacted_debug!` list in lib.rs (a message
/// here without a Debug there fails to compile wherever Debug is needed).
const SECRET_BEARING: &[&str] = &[
    "AddOrgRequest",
    "AddRepoRequest",
    "UpdateOrgCredentialRequest",
    "UpdateRepoCredentialRequest",
    "StartRestoreRequest",
    "ExportOrgKeyResponse",
    "RepoAccess",
    "RestoreSpec",
    "BackupResult",
    "RequestPermitsResponse",
    "EnableEscrowResponse",
    "AddStorageLocationRequest",
    "StorageSpec",
    "CreateWorkerTokenResponse",
];

/// Enum fields of the messages the CLI prints as JSON, with the `json` function that spells their
/// value as the word it always was ("completed", "full_repo"), not as its number. Keep in step with
/// the enum fields of admin.proto and types.proto (the proto crate's tests check the spellings).
const JSON_SPELLED: &[(&str, &str)] = &[
    ("ComponentStatus.status", "component_state"),
    ("TaskProgress.status", "task_status"),
    ("CheckResult.result", "check_outcome"),
    ("Verification.status", "verify_status"),
    ("Verification.run", "verify_run"),
    ("Org.provider", "provider"),
    ("AddOrgRequest.provider", "provider"),
    ("Backup.type", "backup_type"),
    ("Backup.trigger", "trigger"),
    ("Backup.status", "task_status"),
    ("RunBackupRequest.type", "backup_type"),
    ("Restore.type", "restore_type"),
    ("Restore.target", "restore_target"),
    ("Restore.status", "task_status"),
    ("StartRestoreRequest.type", "restore_type"),
    ("StartRestoreRequest.target", "restore_target"),
    ("QueueEntry.kind", "task_kind"),
    ("TimelineEntry.type", "backup_type"),
    ("TimelineEntry.trigger", "trigger"),
    ("TimelineEntry.status", "task_status"),
    ("Drill.status", "drill_status"),
    ("Drill.trigger", "trigger"),
    ("StorageProbe.role", "storage_role"),
    ("EscrowStorageLock.status", "escrow_lock_status"),
    ("WorkerToken.state", "worker_token_state"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe_set_protoc(&protoc);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "repovault/v1/types.proto",
        "repovault/v1/worker.proto",
        "repovault/v1/admin.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let mut config = tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("repovault_descriptor.bin"))
        .type_attribute(".repovault.v1", "#[derive(serde::Serialize)]");
    for (field, spelling) in JSON_SPELLED {
        config = config.field_attribute(
            format!(".repovault.v1.{field}"),
            format!("#[serde(serialize_with = \"crate::json::{spelling}\")]"),
        );
    }
    config
        // Messages that carry secrets get a hand-written Debug that redacts them (lib.rs), so a
        // `{:?}` of a request or a lease can never print a token or a key.
        .skip_debug(SECRET_BEARING.iter().map(|m| format!(".repovault.v1.{m}")))
        .compile_protos(&files, &["."])?;
    // The part of etcd's API the etcd state store speaks: a client only, and outside the
    // descriptor set above, so reflection never lists etcd's services as the coordinator's.
    let etcd = "etcd/etcdserverpb/rpc.proto";
    println!("cargo:rerun-if-changed={etcd}");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[etcd], &["etcd"])?;
    // KEDA's external scaler interface: served by the coordinator, called by KEDA (and tests).
    let keda = "keda/externalscaler.proto";
    println!("cargo:rerun-if-changed={keda}");
    tonic_prost_build::configure().compile_protos(&[keda], &["keda"])?;
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // Edition 2024 makes set_var unsafe; nothing else runs in this process.
    unsafe { std::env::set_var("PROTOC", path) };
}
