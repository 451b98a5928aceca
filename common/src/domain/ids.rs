//! Identifiers as types, so an organisation id cannot be passed where a repository id is meant,
//! and an id that is empty or could escape a path is refused where it enters.
//!
//! The coordinator makes every id (`coordinator/src/ids.rs`): organisation, repository and worker
//! ids are a letter (`o`, `r`, `w`) and 11 base-36 characters; a backup id is its repository's id,
//! `-`, its creation time in base 36 and 4 random characters; a task id is a v7 UUID in hex, and
//! restore and drill ids are `s` and `d` before one. A snapshot id is restic's: 64 hex digits.
//! Workers and the CLI treat ids as opaque: what they check is only what makes an id safe to use
//! as it is used, which is a single path component (the cache's `<repo-id>/`, the storage's
//! `<org-id>/<repo-id>/`, a download's `<restore-id>.tar`, a scratch `restore-<restore-id>`), a
//! snapshot tag value (`backup=<backup-id>`: restic splits tags on commas) and a log field. So an
//! id ([`OrgId`], [`RepoId`], [`BackupId`], [`RestoreId`], [`DrillId`], [`TaskId`],
//! [`WorkerId`]) is 1 to [`MAX_ID_LEN`] ASCII letters, digits, `-` and `_`, beginning with a
//! letter or digit (an id beginning with `-` would read as an option to git, restic or the CLI);
//! a [`SnapshotId`] is exactly 64 hex digits, the full ids the snapshot store accepts (a prefix
//! could match another snapshot as the repository grows).
//!
//! Conversion happens at the edges: `from_wire` (naming the wire field) where a message arrives,
//! [`std::str::FromStr`] (naming the kind of id) for command-line arguments, and back to a
//! `String` with [`From`] where a message is built. In JSON (`--output json`, `manifest.json`,
//! stored records) an id is its string, unchanged (`serde(transparent)`): deserialising does not
//! check it, because stored records and manifests are read as they were written, by whatever
//! build wrote them (the golden format-1 manifest's ids are `org_golden`, `repo_golden`, and a
//! hyphenated UUID as its task id).

use super::WireError;

/// The longest id accepted: well above the longest the coordinator makes (a restore or drill id,
/// 33 characters), short enough to stay one readable path component and log field.
pub const MAX_ID_LEN: usize = 128;

/// The length of a full restic snapshot id (a SHA-256 in hex).
const SNAPSHOT_ID_LEN: usize = 64;

/// An id that is empty or malformed, naming where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct InvalidId {
    /// The wire field or argument it came from (e.g. `task.backup.backup_id`), or the kind of id
    /// when it was parsed without one (`FromStr`).
    pub field: &'static str,
    /// The kind of id, e.g. "backup id".
    pub what: &'static str,
    /// What is wrong with it; never the value itself (a value in the wrong place can be
    /// anything, a secret included).
    pub problem: String,
}

impl InvalidId {
    fn describe(&self) -> String {
        if self.field == self.what {
            format!("{} {}", self.what, self.problem)
        } else {
            format!("{}: {} {}", self.field, self.what, self.problem)
        }
    }
}

impl From<InvalidId> for WireError {
    fn from(e: InvalidId) -> Self {
        WireError {
            field: e.field,
            problem: format!("{} {}", e.what, e.problem),
        }
    }
}

/// The rule of every id but a snapshot's (see the module doc).
fn check_token(id: &str) -> Result<(), String> {
    let Some(first) = id.chars().next() else {
        return Err("is empty".into());
    };
    if id.len() > MAX_ID_LEN {
        return Err(format!("is {} bytes long (at most {MAX_ID_LEN})", id.len()));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "begins with {first:?} (it begins with a letter or digit)"
        ));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(format!(
            "contains {c:?} (an id is letters, digits, '-' and '_')"
        )),
        None => Ok(()),
    }
}

/// A snapshot id: the full 64 hex digits.
fn check_snapshot(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("contains {c:?} (a snapshot id is hex digits)"));
    }
    if id.len() != SNAPSHOT_ID_LEN {
        return Err(format!(
            "is {} hex digits long (a full snapshot id has {SNAPSHOT_ID_LEN})",
            id.len()
        ));
    }
    Ok(())
}

/// Declares an id type: the newtype, its check, parsing from the wire (naming the field) and from
/// text (naming the kind), and its string forms.
macro_rules! typed_id {
    ($(#[$m:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The kind of id, as errors name it.
            pub const WHAT: &'static str = $what;

            /// `value` as this id, or an error naming `field` when it is empty or malformed.
            pub fn parse_field(
                value: impl Into<String>,
                field: &'static str,
            ) -> Result<Self, InvalidId> {
                let value = value.into();
                match $check(&value) {
                    Ok(()) => Ok(Self(value)),
                    Err(problem) => Err(InvalidId {
                        field,
                        what: $what,
                        problem,
                    }),
                }
            }

            /// A required id from a wire message: an empty or malformed one is an error naming
            /// `field`.
            pub fn from_wire(value: &str, field: &'static str) -> Result<Self, WireError> {
                Ok(Self::parse_field(value, field)?)
            }

            /// An optional id from a wire message, where the empty string is "none"; a malformed
            /// one is an error naming `field`.
            pub fn from_wire_optional(
                value: &str,
                field: &'static str,
            ) -> Result<Option<Self>, WireError> {
                if value.is_empty() {
                    return Ok(None);
                }
                Self::from_wire(value, field).map(Some)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse_field(s, $what)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse_field(s, $what)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }
    };
}

typed_id!(
    /// An organisation: `o` and 11 base-36 characters, never reused.
    OrgId,
    "organisation id",
    check_token
);
typed_id!(
    /// A repository: `r` and 11 base-36 characters; a rename keeps it.
    RepoId,
    "repository id",
    check_token
);
typed_id!(
    /// A backup: its repository's id, `-`, its creation time in base 36 and 4 random characters.
    BackupId,
    "backup id",
    check_token
);
typed_id!(
    /// A restore: `s` and a v7 UUID in hex.
    RestoreId,
    "restore id",
    check_token
);
typed_id!(
    /// A restore drill: `d` and a v7 UUID in hex.
    DrillId,
    "drill id",
    check_token
);
typed_id!(
    /// A task of the queue (one per backup, restore, verification or drill): a v7 UUID in hex.
    TaskId,
    "task id",
    check_token
);
typed_id!(
    /// A registered worker: `w` and 11 base-36 characters.
    WorkerId,
    "worker id",
    check_token
);
typed_id!(
    /// A snapshot in a restic repository: 64 hex digits.
    SnapshotId,
    "snapshot id",
    check_snapshot
);

impl SnapshotId {
    /// The first 8 hex digits, as restic shows a snapshot (for messages; never to look one up).
    pub fn short(&self) -> &str {
        // ASCII and 64 long, checked when made.
        &self.0[..8]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = "e90cf774d7dbf31d74ab8b89cb7404596d71146d28cbc04f86305e5854d249d5";

    #[test]
    fn the_ids_the_coordinator_makes_and_the_golden_manifest_holds_are_accepted() {
        for id in ["o1a2b3c4d5e6", "org_golden"] {
            assert_eq!(id.parse::<OrgId>().expect("org id").as_str(), id);
        }
        for id in ["rk2j9x0a1b2c", "repo_golden"] {
            assert_eq!(id.parse::<RepoId>().expect("repo id").as_str(), id);
        }
        for id in ["rk2j9x0a1b2c-lq3k9x2fab1", "golden-backup-format-1"] {
            assert_eq!(id.parse::<BackupId>().expect("backup id").as_str(), id);
        }
        for id in [
            "0190c3b2a1f27c3e8d4b5a6978fedcba",
            "00000000-0000-4000-8000-000000000001",
        ] {
            assert_eq!(id.parse::<TaskId>().expect("task id").as_str(), id);
        }
        "s0190c3b2a1f27c3e8d4b5a6978fedcba"
            .parse::<RestoreId>()
            .expect("restore id");
        "d0190c3b2a1f27c3e8d4b5a6978fedcba"
            .parse::<DrillId>()
            .expect("drill id");
        "wk2j9x0a1b2c".parse::<WorkerId>().expect("worker id");
        assert_eq!(
            SNAPSHOT
                .parse::<SnapshotId>()
                .expect("snapshot id")
                .as_str(),
            SNAPSHOT
        );
    }

    #[test]
    fn an_empty_or_malformed_id_is_refused_naming_the_field() {
        let err = BackupId::from_wire("", "task.backup.backup_id").expect_err("empty");
        assert_eq!(err.field, "task.backup.backup_id");
        assert_eq!(
            err.to_string(),
            "field task.backup.backup_id: backup id is empty"
        );
        let err = RepoId::parse_field("../../etc", "task.repo.repo_id").expect_err("path");
        assert_eq!(
            err.to_string(),
            "task.repo.repo_id: repository id begins with '.' (it begins with a letter or digit)"
        );
        let err = "r1/../r2".parse::<RepoId>().expect_err("slash");
        assert_eq!(
            err.to_string(),
            "repository id contains '/' (an id is letters, digits, '-' and '_')"
        );
        for bad in ["-rf", "a,b", "a b", "a\nb", "é"] {
            let err = bad.parse::<RestoreId>().expect_err(bad);
            assert_eq!(err.field, "restore id", "{bad:?}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        let err = TaskId::try_from(long).expect_err("too long");
        assert_eq!(
            err.to_string(),
            format!(
                "task id is {} bytes long (at most {MAX_ID_LEN})",
                MAX_ID_LEN + 1
            )
        );
        assert!(TaskId::try_from("a".repeat(MAX_ID_LEN)).is_ok());
        let err = SnapshotId::from_wire(&SNAPSHOT[..8], "task.restore.snapshot_id")
            .expect_err("a prefix");
        assert_eq!(
            err.to_string(),
            "field task.restore.snapshot_id: snapshot id is 8 hex digits long (a full snapshot id has 64)"
        );
        let err = format!("{}x", &SNAPSHOT[1..])
            .parse::<SnapshotId>()
            .expect_err("not hex");
        assert_eq!(
            err.to_string(),
            "snapshot id contains 'x' (a snapshot id is hex digits)"
        );
    }

    #[test]
    fn an_optional_wire_id_is_none_when_empty_and_checked_otherwise() {
        assert_eq!(
            SnapshotId::from_wire_optional("", "task.backup.parent_snapshot_id"),
            Ok(None)
        );
        assert_eq!(
            SnapshotId::from_wire_optional(SNAPSHOT, "task.backup.parent_snapshot_id")
                .expect("valid")
                .map(String::from),
            Some(SNAPSHOT.to_string())
        );
        let err = BackupId::from_wire_optional("a/b", "task.backup.parent_backup_id")
            .expect_err("malformed");
        assert_eq!(err.field, "task.backup.parent_backup_id");
    }

    #[test]
    fn json_keeps_the_exact_string_form() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Record {
            backup_id: BackupId,
            task_id: TaskId,
            snapshot: Option<SnapshotId>,
        }
        let text = format!(
            r#"{{"backup_id":"golden-backup-format-1","task_id":"00000000-0000-4000-8000-000000000001","snapshot":"{SNAPSHOT}"}}"#
        );
        let r: Record = serde_json::from_str(&text).expect("reads");
        assert_eq!(r.backup_id.as_str(), "golden-backup-format-1");
        assert_eq!(serde_json::to_string(&r).expect("writes"), text);
        let id: OrgId = "o1a2b3c4d5e6".parse().expect("org id");
        assert_eq!(
            serde_json::to_string(&id).expect("json"),
            "\"o1a2b3c4d5e6\""
        );
        assert_eq!(id.to_string(), "o1a2b3c4d5e6");
        assert_eq!(String::from(id), "o1a2b3c4d5e6");
    }
}
