//! `repovault storage`: named storage locations. A secret option is named by the variable or
//! file that holds it, never given on the command line.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Clone, Subcommand)]
pub enum StorageCmd {
    /// Add a storage location (admin). Every credential is probed first (create, read, list,
    /// overwrite and delete a probe object under .repovault-probe/) and the location is stored
    /// only when each can do its role's work: the writer (given to workers in their leases)
    /// create, read and list; the maintainer (the coordinator's forget, prune and purge) also
    /// delete. Without a maintainer credential the writer's serves both.
    Add(Box<StorageAddArgs>),
    /// Every location, the configured storage first (as "default"), with the organisations
    /// whose backups go there. Secrets are never shown, only their option names.
    List,
    /// One location.
    Show { name: String },
    /// Probe a location with each of its credentials and say what each may do (operator).
    /// Exit code 5 when a credential cannot do its role's work.
    Check { name: String },
    /// Move an organisation's backups to another location (admin): every repository is
    /// copied, every object read back and checked at the new place, then the organisation
    /// switches and the old copy is deleted. Its repositories take no backup meanwhile (a
    /// running task makes the move refuse: run it again later). Interrupted, the organisation
    /// stays where it was, complete; running the move again resumes it.
    /// Print the lifecycle policy, in the cloud's own format (S3, Azure or GCS), that moves the
    /// organisation's packs to an infrequent-access tier that stays readable online after its
    /// `--tier-after-days` (`org set`, default 30). Only packs move, never config, keys, index or
    /// snapshots, never to an archive tier, and nothing expires: retention is repovault's.
    /// Example: repovault storage lifecycle acme > lifecycle.json && aws s3api
    /// put-bucket-lifecycle-configuration --bucket B --lifecycle-configuration file://lifecycle.json
    Lifecycle { org: String },
    Move {
        org: String,
        /// The location's name (`default`: the configured storage).
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct StorageAddArgs {
    pub name: String,
    /// fs, s3, azblob or gcs.
    #[arg(long, value_parser = ["fs", "s3", "azblob", "gcs"])]
    pub kind: String,
    /// s3, gcs: the bucket (it must exist).
    #[arg(long)]
    pub bucket: Option<String>,
    /// azblob: the container (it must exist).
    #[arg(long)]
    pub container: Option<String>,
    /// s3: anything but AWS (https://s3.example.com); azblob: https://ACCOUNT.blob.core.windows.net;
    /// gcs: an emulator.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// s3: the region (us-east-1 for most S3-compatible services).
    #[arg(long)]
    pub region: Option<String>,
    /// Keep everything under this prefix of the bucket or container.
    #[arg(long)]
    pub prefix: Option<String>,
    /// azblob: the storage account.
    #[arg(long)]
    pub account_name: Option<String>,
    /// fs: the directory.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Any other option that is not secret, as KEY=VALUE (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// s3: the writer's access key id from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub access_key_env: Option<String>,
    /// s3: the writer's secret access key from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub secret_key_env: Option<String>,
    /// A writer's secret option from an environment variable, as KEY=VAR (repeatable), e.g.
    /// account_key=AZ_KEY, sas_token=AZ_SAS, credential=GCS_KEY_B64.
    #[arg(long, value_name = "KEY=VAR")]
    pub secret_env: Vec<String>,
    /// A writer's secret option from a file, as KEY=PATH (repeatable).
    #[arg(long, value_name = "KEY=PATH")]
    pub secret_file: Vec<String>,
    /// A maintainer's secret option from an environment variable, as KEY=VAR (repeatable).
    #[arg(long, value_name = "KEY=VAR")]
    pub maintainer_secret_env: Vec<String>,
    /// A maintainer's secret option from a file, as KEY=PATH (repeatable).
    #[arg(long, value_name = "KEY=PATH")]
    pub maintainer_secret_file: Vec<String>,
}
