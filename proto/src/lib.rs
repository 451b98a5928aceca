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
