//! The domain's closed sets and identifiers, shared by the coordinator, the workers and the CLI.
//!
//! Every closed set (task kind, backup type, trigger, provider, restore type and target, statuses,
//! check outcomes) is one Rust enum here, with:
//! - one spelling per value (`as_str`), used in JSON output, catalog objects, `manifest.json`, the
//!   store and metrics labels; these spellings are a compatibility promise (scripts and stored
//!   records depend on them) and never change;
//! - the proto enum of the same name on the wire, whose value names are the same words
//!   (`TASK_KIND_BACKUP` is [`TaskKind::Backup`]); `*_UNSPECIFIED` (0) is never a valid value;
//! - conversion only at the edges: [`FromWire::from_wire`] turns a wire value into the enum or an
//!   error naming the field, and `From<Enum> for pb::Enum` goes the other way.
//!
//! Inside the coordinator and the worker, code matches on these enums; a string comparison of a
//! kind, type, trigger, target or status outside an edge is a defect.
//!
//! Identifiers are types too (`ids.rs`: [`OrgId`], [`RepoId`], [`BackupId`], ...), checked where
//! they enter (a wire field, a command-line argument) and strings again only where a message is
//! built.

mod closed_sets;
mod ids;
mod restore_combinations;

pub use closed_sets::*;
pub use ids::{
    BackupId, DrillId, InvalidId, OrgId, RepoId, RestoreId, SnapshotId, TaskId, WorkerId,
};
pub use restore_combinations::{RestoreCombination, RestoreCombinationError};

/// A value that is not one of a closed set's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid (valid: {valid})")]
pub struct UnknownValue {
    /// What the value is of, e.g. "restore type".
    pub what: &'static str,
    pub value: String,
    /// The valid spellings, comma-separated.
    pub valid: String,
}

/// A wire value that is unspecified or unknown to this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct WireError {
    /// The wire field, e.g. "task.backup.trigger".
    pub field: &'static str,
    pub problem: String,
}

/// Conversion from a proto enum's `i32` at an edge.
pub trait FromWire: Sized {
    /// The enum for `value`, or an error naming `field` when it is unspecified (0) or unknown
    /// (sent by a newer peer).
    fn from_wire(value: i32, field: &'static str) -> Result<Self, WireError>;
}
