//! The gRPC client of the worker service, authenticated with the join token.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;

use repovault_common::leader_channel::{LeaderChannel, split_urls};
use repovault_common::secret::Secret;
use repovault_proto::v1::worker_service_client::WorkerServiceClient;

#[derive(Clone)]
pub struct JoinToken(Secret);

impl Interceptor for JoinToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let v = MetadataValue::try_from(format!("Bearer {}", self.0.expose())).map_err(|_| {
            tonic::Status::invalid_argument("join token holds characters not allowed in a header")
        })?;
        req.metadata_mut().insert("authorization", v);
        Ok(req)
    }
}

pub type Client = WorkerServiceClient<InterceptedService<LeaderChannel, JoinToken>>;

/// A lazily connecting client: the first call connects, and later calls reconnect as needed.
/// `urls` is one coordinator's URL or a group's, comma-separated: calls follow the group's
/// leader among them (`repovault_common::leader_channel`). `client_cert` is presented in the TLS
/// handshake to a coordinator that asks workers for a client certificate (mTLS).
pub fn connect(
    urls: &str,
    token: &Secret,
    ca_file: Option<&std::path::Path>,
    client_cert: Option<&repovault_common::grpc::ClientCertFiles>,
) -> Result<Client, repovault_common::grpc::EndpointError> {
    let list = split_urls(urls);
    if list.is_empty() {
        return Err(repovault_common::grpc::EndpointError::Url {
            url: urls.to_string(),
            reason: "no coordinator URL given".into(),
        });
    }
    let mut targets = Vec::with_capacity(list.len());
    for url in list {
        let channel =
            repovault_common::grpc::endpoint_with(&url, ca_file, client_cert)?.connect_lazy();
        targets.push((url, channel));
    }
    Ok(WorkerServiceClient::with_interceptor(
        LeaderChannel::new(targets),
        JoinToken(token.clone()),
    ))
}
