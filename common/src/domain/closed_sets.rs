//! The closed sets, each with its spelling and its proto enum.

use repovault_proto::v1 as pb;

use super::{FromWire, UnknownValue, WireError};

/// Declares a closed set: the enum, its spellings, parsing with an error that lists the valid
/// spellings, serde as the spelling, and (for sets on the wire) conversions to and from the proto
/// enum of the same name, whose variants carry the same names.
macro_rules! closed_set {
    (@common $(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The value's one spelling (JSON, the store, metrics labels).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value spelled `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// The valid spellings, comma-separated, for error messages.
            pub fn spellings() -> String {
                [$($text),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                Self::parse(s).ok_or_else(|| UnknownValue {
                    what: $what,
                    value: s.to_string(),
                    valid: Self::spellings(),
                })
            }
        }
    };
    ($(#[$m:meta])* wire $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        closed_set!(@common $(#[$m])* $name, $what { $($(#[$vm])* $variant = $text),+ });

        impl From<$name> for pb::$name {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$variant => pb::$name::$variant),+
                }
            }
        }

        impl From<$name> for i32 {
            fn from(v: $name) -> i32 {
                pb::$name::from(v) as i32
            }
        }

        impl FromWire for $name {
            fn from_wire(value: i32, field: &'static str) -> Result<Self, WireError> {
                match pb::$name::try_from(value) {
                    $(Ok(pb::$name::$variant) => Ok($name::$variant),)+
                    Ok(pb::$name::Unspecified) => Err(WireError {
                        field,
                        problem: format!("{} is required (valid: {})", $what, $name::spellings()),
                    }),
                    Err(_) => Err(WireError {
                        field,
                        problem: format!(
                            "{} {value} is unknown to this version (valid: {})",
                            $what,
                            $name::spellings()
                        ),
                    }),
                }
            }
        }
    };
    ($(#[$m:meta])* $name:ident, $what:literal { $($body:tt)* }) => {
        closed_set!(@common $(#[$m])* $name, $what { $($body)* });
    };
}

closed_set!(
    /// Where a repository comes from: a forge read through its API as well as git, or any git URL.
    wire Provider, "provider" {
        Git = "git",
        Github = "github",
    }
);

impl Provider {
    /// Whether the provider is a forge read and written through its API as well as git (as
    /// opposed to a plain git server).
    pub fn is_forge(self) -> bool {
        match self {
            Provider::Git => false,
            Provider::Github => true,
        }
    }
}

closed_set!(
    /// What a task does.
    wire TaskKind, "task kind" {
        Backup = "backup",
        Restore = "restore",
        /// Verifies a backup again (`backup verify`) or reads back a repository's packs (rotation).
        Verify = "verify",
        Drill = "drill",
    }
);

closed_set!(
    /// A full backup re-exports every item; an incremental one resumes from its parent's cursors.
    wire BackupType, "backup type" {
        Full = "full",
        Incremental = "incremental",
    }
);

closed_set!(
    /// What started a backup or a drill.
    wire Trigger, "trigger" {
        Manual = "manual",
        Schedule = "schedule",
        Push = "push",
    }
);

closed_set!(
    /// What a restore brings back.
    wire RestoreType, "restore type" {
        /// Everything: refs, LFS objects, wiki, issues, pull requests, releases, settings.
        FullRepo = "full_repo",
        /// Issues and pull requests (with comments, reviews, labels, milestones), appended.
        IssuesOnly = "issues_only",
        /// The wiki, into a repository whose wiki is empty.
        WikiOnly = "wiki_only",
        /// Releases with their assets (and the tags they need), appended.
        ReleasesOnly = "releases_only",
        /// A ZIP of the whole backup in storage, behind an expiring link.
        DownloadZip = "download_zip",
    }
);

closed_set!(
    /// Where a restore goes.
    wire RestoreTarget, "restore target" {
        /// A new repository: on a forge (owner and name) or at a plain git URL.
        New = "new",
        /// A new repository in the source's own organisation.
        Original = "original",
        /// The storage's download area (a tar or a ZIP behind a link).
        Download = "download",
        /// An existing repository, appended to.
        Existing = "existing",
    }
);

closed_set!(
    /// A task's (and its backup's, restore's) status.
    wire TaskStatus, "status" {
        Pending = "pending",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
    }
);

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }
}

closed_set!(
    /// One verification or drill check's outcome.
    wire CheckOutcome, "check result" {
        Pass = "pass",
        Fail = "fail",
        Skipped = "skipped",
    }
);

closed_set!(
    /// A backup's verification status.
    wire VerifyStatus, "verification status" {
        Pending = "pending",
        Running = "running",
        Verified = "verified",
        Failed = "failed",
    }
);

closed_set!(
    /// Which run produced a verification.
    wire VerifyRun, "verification run" {
        /// At the end of the backup.
        Automatic = "automatic",
        /// `backup verify`.
        Manual = "manual",
        /// The read-back rotation found damage in a pack the backup uses.
        Rotation = "rotation",
        /// A restore could not read a pack the backup uses.
        Restore = "restore",
        /// A restore drill could not read a pack the backup uses.
        Drill = "drill",
    }
);

impl VerifyRun {
    /// The run a task of `kind` is, when it finds damage.
    pub fn of_task(kind: TaskKind) -> Self {
        match kind {
            TaskKind::Backup => VerifyRun::Automatic,
            TaskKind::Restore => VerifyRun::Restore,
            TaskKind::Verify => VerifyRun::Manual,
            TaskKind::Drill => VerifyRun::Drill,
        }
    }
}

closed_set!(
    /// What a verify task does: every check of one backup, or the rotation's read-back of a
    /// repository's packs not read recently.
    wire VerifyMode, "verify mode" {
        Manual = "manual",
        Rotation = "rotation",
    }
);

closed_set!(
    /// A restore drill's status.
    wire DrillStatus, "drill status" {
        Pending = "pending",
        Running = "running",
        Passed = "passed",
        Failed = "failed",
    }
);

closed_set!(
    /// Whether one component of a backup (wiki, issues, LFS, ...) is in it.
    wire ComponentState, "component status" {
        Included = "included",
        Skipped = "skipped",
        Failed = "failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_unknown_values_name_the_valid_ones() {
        for t in RestoreType::ALL {
            assert_eq!(t.as_str().parse::<RestoreType>(), Ok(*t));
        }
        let err = "full"
            .parse::<RestoreType>()
            .expect_err("not a restore type");
        assert_eq!(
            err.to_string(),
            "restore type \"full\" is not valid (valid: full_repo, issues_only, wiki_only, releases_only, download_zip)"
        );
        assert_eq!(
            serde_json::to_string(&Trigger::Schedule).expect("json"),
            "\"schedule\""
        );
        assert_eq!(
            serde_json::from_str::<TaskStatus>("\"completed\"").expect("json"),
            TaskStatus::Completed
        );
    }

    #[test]
    fn wire_values_convert_both_ways_and_unspecified_is_refused() {
        for k in TaskKind::ALL {
            let wire: i32 = (*k).into();
            assert_eq!(TaskKind::from_wire(wire, "task.kind"), Ok(*k));
        }
        let err = BackupType::from_wire(0, "backup.type").expect_err("unspecified");
        assert!(
            err.to_string()
                .starts_with("field backup.type: backup type is required"),
            "{err}"
        );
        let err = Provider::from_wire(99, "repo.provider").expect_err("unknown");
        assert!(err.to_string().contains("99 is unknown"), "{err}");
    }
}
