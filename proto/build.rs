//! Generates the gRPC code from `repovault/v1/*.proto` with a vendored protoc, so a fresh machine
//! needs no protobuf-compiler package.

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
        .compile_protos(&files, &["."])?;
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // Edition 2024 makes set_var unsafe; nothing else runs in this process.
    unsafe { std::env::set_var("PROTOC", path) };
}
