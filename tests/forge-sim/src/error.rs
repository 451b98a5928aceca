//! GitHub's error responses: status, `message`, `documentation_url`, `status` (as a string, as
//! GitHub sends it), and for 422 the `errors` array.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Where GitHub's error bodies point; clients only show it.
pub const DOCS: &str = "https://docs.github.com/rest";

/// A GitHub error response. Boxed so that `Result<T, ApiError>` stays small; the fields are
/// reached through `Deref`.
#[derive(Debug)]
pub struct ApiError(Box<ApiErrorInner>);

#[derive(Debug)]
pub struct ApiErrorInner {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<Value>,
    pub documentation_url: String,
    pub headers: HeaderMap,
    /// Extra top-level fields (`url` on a 301).
    pub extra: serde_json::Map<String, Value>,
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ApiErrorInner {
            status,
            message: message.into(),
            errors: Vec::new(),
            documentation_url: DOCS.to_string(),
            headers: HeaderMap::new(),
            extra: serde_json::Map::new(),
        }))
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not Found")
    }

    pub fn bad_credentials() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Bad credentials")
    }

    pub fn requires_auth() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Requires authentication")
    }

    /// What GitHub answers an installation token that lacks a permission.
    pub fn not_accessible_by_integration() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        )
    }

    /// What GitHub answers a fine-grained personal access token used outside its resource
    /// owner or its permissions.
    pub fn not_accessible_by_pat() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Resource not accessible by personal access token",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn blocked() -> ApiError {
        ApiError::new(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "Repository access blocked",
        )
    }

    /// 422 "Validation Failed" with one `errors` entry, e.g.
    /// `validation("Issue", "missing_field", "title")`.
    pub fn validation(resource: &str, code: &str, field: &str) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        e.errors
            .push(json!({"resource": resource, "code": code, "field": field}));
        e
    }

    /// 422 "Validation Failed" with a free-text error, as GitHub sends for e.g. a pull request
    /// with no commits: `{"resource":"PullRequest","code":"custom","message":"No commits between main and x"}`.
    pub fn validation_custom(resource: &str, message: &str) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        e.errors
            .push(json!({"resource": resource, "code": "custom", "message": message}));
        e
    }

    /// 422 for a body that does not match the schema (GitHub: "Invalid request.\n\n...").
    pub fn invalid_body(detail: impl AsRef<str>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Invalid request.\n\n{}", detail.as_ref()),
        )
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(HeaderName::from_static(name), v);
        }
        self
    }
}

impl std::ops::Deref for ApiError {
    type Target = ApiErrorInner;
    fn deref(&self) -> &ApiErrorInner {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorInner {
        &mut self.0
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = *self.0;
        let mut body = serde_json::Map::new();
        body.insert("message".into(), Value::String(e.message));
        if !e.errors.is_empty() {
            body.insert("errors".into(), Value::Array(e.errors));
        }
        body.insert(
            "documentation_url".into(),
            Value::String(e.documentation_url),
        );
        body.insert(
            "status".into(),
            Value::String(e.status.as_u16().to_string()),
        );
        body.extend(e.extra);
        let mut resp = (e.status, axum::Json(Value::Object(body))).into_response();
        resp.headers_mut().extend(e.headers);
        resp
    }
}
