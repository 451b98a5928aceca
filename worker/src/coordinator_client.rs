//! The gRPC client of the worker service, authenticated with the join token.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

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

pub type Client = WorkerServiceClient<InterceptedService<Channel, JoinToken>>;

/// A lazily connecting client: the first call connects, and later calls reconnect as needed.
pub fn connect(
    url: &str,
    token: &Secret,
    ca_file: Option<&std::path::Path>,
) -> Result<Client, repovault_common::grpc::EndpointError> {
    let channel = repovault_common::grpc::endpoint(url, ca_file)?.connect_lazy();
    Ok(WorkerServiceClient::with_interceptor(
        channel,
        JoinToken(token.clone()),
    ))
}
