//! Bearer-token authentication for both services: workers present the join token, admins the
//! admin token (when one is configured). Compared in constant time; never logged.

use repovault_common::crypto::constant_time_eq;
use repovault_common::secret::Secret;
use tonic::{Request, Status};

#[derive(Clone)]
pub struct TokenCheck {
    token: Option<Secret>,
    what: &'static str,
}

impl TokenCheck {
    /// `None`: every caller is accepted.
    pub fn new(token: Option<Secret>, what: &'static str) -> Self {
        Self { token, what }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Ok(req);
        };
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(p) if constant_time_eq(p.as_bytes(), expected.expose().as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated(format!(
                "the {} is wrong",
                self.what
            ))),
            None => Err(Status::unauthenticated(format!(
                "this call needs the {} (authorization: Bearer ...)",
                self.what
            ))),
        }
    }
}
