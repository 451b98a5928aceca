//! The admin client and the mapping of gRPC errors to exit codes.

use std::path::Path;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;

use repovault_proto::v1::admin_service_client::AdminServiceClient;

use crate::connection::{self, Deadline, Timeouts};
use crate::exit;
use crate::failure::{self, Failure};

/// An error the CLI reports: its message and the exit code it means.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
    /// Set when the coordinator could not be reached or used (see `failure`).
    pub failure: Option<Failure>,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            failure: None,
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(exit::FAILED, message)
    }
}

/// A failed call: classified by `failure::from_status`.
impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        failure::from_status(&s)
    }
}

#[derive(Clone)]
pub struct AdminToken(Option<String>);

impl tonic::service::Interceptor for AdminToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            let v = MetadataValue::try_from(format!("Bearer {t}")).map_err(|_| {
                tonic::Status::invalid_argument(
                    "admin token holds characters not allowed in a header",
                )
            })?;
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

pub type Admin = AdminServiceClient<InterceptedService<Deadline, AdminToken>>;

/// An admin client of the coordinator at `url`, with the token read from `token_file`, bounded
/// as `connection` says.
pub async fn connect(
    url: &str,
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
    timeouts: Timeouts,
) -> Result<Admin, CliError> {
    let token = match token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| CliError::usage(format!("admin token file {}: {e}", p.display())))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let channel = connection::connect(url, ca_file, timeouts).await?;
    // Downloads stream 1 MiB chunks; the default 4 MiB limit leaves room.
    Ok(AdminServiceClient::with_interceptor(
        channel,
        AdminToken(token),
    ))
}

/// Reads a secret named by --token-env or --token-file. Never echoes it.
pub fn read_token(env: Option<&str>, file: Option<&Path>) -> Result<Option<String>, CliError> {
    if let Some(var) = env {
        let v = std::env::var(var).map_err(|_| {
            CliError::usage(format!(
                "--token-env {var}: that environment variable is not set"
            ))
        })?;
        if v.trim().is_empty() {
            return Err(CliError::usage(format!(
                "--token-env {var}: the variable is empty"
            )));
        }
        return Ok(Some(v.trim().to_string()));
    }
    if let Some(p) = file {
        let v = std::fs::read_to_string(p)
            .map_err(|e| CliError::usage(format!("--token-file {}: {e}", p.display())))?;
        if v.trim().is_empty() {
            return Err(CliError::usage(format!(
                "--token-file {}: the file is empty",
                p.display()
            )));
        }
        return Ok(Some(v.trim().to_string()));
    }
    Ok(None)
}
