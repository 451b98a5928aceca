//! The stored form of a backup's second copy.

use serde::{Deserialize, Serialize};

/// Where a backup's second copy stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyState {
    /// The location of the copy.
    pub location: String,
    pub status: CopyStatus,
    /// Why it failed (the next pass tries again).
    #[serde(default)]
    pub detail: Option<String>,
    pub at_ms: i64,
}

/// A closed set: a second copy is pending, done (read back at the copy), or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyStatus {
    Pending,
    Done,
    Failed,
}

impl CopyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyStatus::Pending => "pending",
            CopyStatus::Done => "done",
            CopyStatus::Failed => "failed",
        }
    }
}
