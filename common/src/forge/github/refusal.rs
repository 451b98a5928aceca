//! Reading a GitHub answer that is not a success: whether it is a rate limit and how long it
//! asks to wait, and GitHub's own message (with a 422's field errors).

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::rate::RateSnapshot;
use super::transport::{Raw, header};

/// Wait after a secondary-limit refusal without `retry-after`: GitHub's documentation says
/// "wait for at least one minute before retrying" ("Rate limits for the REST API").
pub const SECONDARY_LIMIT_DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Added to the primary limit's reset: `x-ratelimit-reset` has whole seconds, and a request
/// sent in the reset second itself may still be refused. Our choice.
pub const PRIMARY_RESET_SLACK: Duration = Duration::from_secs(1);
/// The longest message kept from an answer's body. Our choice: enough for GitHub's messages
/// and a 422's field errors, short enough for one log line.
const MESSAGE_CHARS: usize = 200;

/// How long a 403/429 says to wait, and whether it is a secondary limit; `None` when it is not
/// a rate limit (a permission refusal).
pub(super) fn rate_limit_wait(raw: &Raw, rate: Option<&RateSnapshot>) -> Option<(Duration, bool)> {
    if let Some(secs) =
        header(&raw.headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some((Duration::from_secs(secs), true));
    }
    if let Some(rate) = rate.filter(|r| r.remaining == 0) {
        let now = Utc::now().timestamp();
        let secs = u64::try_from(rate.reset.saturating_sub(now)).unwrap_or(0);
        return Some((Duration::from_secs(secs) + PRIMARY_RESET_SLACK, false));
    }
    let message = github_message(&raw.bytes).to_ascii_lowercase();
    if message.contains("secondary rate limit") || message.contains("abuse") {
        return Some((SECONDARY_LIMIT_DEFAULT_WAIT, true));
    }
    None
}

/// GitHub's `message` (with its `errors`' messages, or field and code, when a 422 lists them:
/// "Validation Failed" alone does not say what failed), or the start of the body.
pub(super) fn github_message(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => match v.get("message").and_then(Value::as_str) {
            Some(m) => with_details(m, &field_errors(&v)),
            None => truncate(&v.to_string()),
        },
        Err(_) => truncate(&String::from_utf8_lossy(bytes)),
    }
}

fn with_details(message: &str, details: &[String]) -> String {
    if details.is_empty() {
        message.to_string()
    } else {
        truncate(&format!("{message} ({})", details.join("; ")))
    }
}

/// The messages (or `field code`) of a 422's `errors`.
fn field_errors(v: &Value) -> Vec<String> {
    let Some(errors) = v.get("errors").and_then(Value::as_array) else {
        return Vec::new();
    };
    errors
        .iter()
        .filter_map(|e| match e.get("message").and_then(Value::as_str) {
            Some(m) => Some(m.to_string()),
            None => Some(format!(
                "{} {}",
                e.get("field").and_then(Value::as_str)?,
                e.get("code").and_then(Value::as_str)?
            )),
        })
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(MESSAGE_CHARS).collect()
}
