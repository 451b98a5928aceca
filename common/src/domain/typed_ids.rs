//! Identifiers as types, so an organisation id cannot be passed where a repository id is meant.
//!
//! Each is a string on the wire, in JSON and in the store (serde transparent), made and checked by
//! the coordinator; a worker or the CLI treats them as opaque.

macro_rules! typed_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

typed_id!(
    /// An organisation: `o` and 11 base-36 characters, never reused.
    OrgId
);
typed_id!(
    /// A repository: `r` and 11 base-36 characters; a rename keeps it.
    RepoId
);
typed_id!(
    /// A backup: its repository's id, `-`, its creation time and 4 random characters.
    BackupId
);
typed_id!(
    /// A restore.
    RestoreId
);
typed_id!(
    /// A restore drill.
    DrillId
);
typed_id!(
    /// A task of the queue (one per backup, restore, verification or drill).
    TaskId
);
