//! `escrow` subcommands.

use std::path::PathBuf;

use clap::Subcommand;

use super::PageArgs;

/// Escrow agreements.
#[derive(Debug, Clone, Subcommand)]
pub enum EscrowCmd {
    /// Put a repository under escrow: its backups (existing and future, while active) cannot be
    /// deleted or expire. Adds a restic key for this repository alone and writes its password to
    /// --key-to (mode 0600; must not exist) for the escrow agent. On an S3 location whose bucket
    /// has Object Lock, the coordinator also locks every object of the repository's snapshots in
    /// COMPLIANCE mode until --until (30 days ahead, renewed, when open-ended) within a minute:
    /// then not even the storage's administrator can delete them (`escrow list` shows the lock).
    Enable {
        /// ORG/NAME
        repo: String,
        /// Parties and reference of the agreement.
        #[arg(
            long,
            conflicts_with = "agreement_file",
            required_unless_present = "agreement_file"
        )]
        agreement: Option<String>,
        /// Read the agreement text from this file.
        #[arg(long)]
        agreement_file: Option<PathBuf>,
        /// Expiry: YYYY-MM-DD (end of that day, UTC) or an RFC 3339 time. Default: until released.
        #[arg(long)]
        until: Option<String>,
        /// Write the escrow key (restic password) here.
        #[arg(long)]
        key_to: PathBuf,
    },
    /// End the repository's active escrow agreements now.
    Release {
        /// ORG/NAME
        repo: String,
    },
    /// Escrow agreements, newest first (of one repository when named).
    List {
        repo: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}
