//! Generates the gRPC code from `repovault/v1/*.proto` with a vendored protoc, so a fresh machine
//! needs no protobuf-compiler package.

/// Messages with secret fields; keep in step with the `redacted_debug!` list in lib.rs (a message
/// here without a Debug there fails to compile wherever Debug is needed).
const SECRET_BEARING: &[&str] = &[
    "AddOrgRequest",
    "AddRepoRequest",
    "StartRestoreRequest",
    "ExportOrgKeyResponse",
    "RepoAccess",
    "RestoreSpec",
    "BackupResult",
    "RequestPermitsResponse",
    "EnableEscrowResponse",
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
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("repovault_descriptor.bin"))
        .type_attribute(".repovault.v1", "#[derive(serde::Serialize)]")
        // Messages that carry secrets get a hand-written Debug that redacts them (lib.rs), so a
        // `{:?}` of a request or a lease can never print a token or a key.
        .skip_debug(SECRET_BEARING.iter().map(|m| format!(".repovault.v1.{m}")))
        .compile_protos(&files, &["."])?;
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // Edition 2024 makes set_var unsafe; nothing else runs in this process.
    unsafe { std::env::set_var("PROTOC", path) };
}
