//! The arguments that carry an organisation's credential: `org add` and `org update`. A
//! secret is named by the variable or file that holds it, never given on the command line.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct OrgAddArgs {
    pub name: String,
    /// git or github.
    #[arg(long, default_value = "git")]
    pub provider: String,
    /// github: the REST API base, https only (GitHub Enterprise: https://HOST/api/v3).
    /// Default https://api.github.com.
    #[arg(long)]
    pub api_url: Option<String>,
    #[command(flatten)]
    pub credential: CredentialArgs,
    /// github: a CA certificate (PEM file) to trust for the API URL.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct OrgUpdateArgs {
    pub org: String,
    #[command(flatten)]
    pub credential: CredentialArgs,
}

/// A forge credential: a token (from a variable or a file) or a GitHub App installation.
#[derive(Debug, Clone, Default, Args)]
pub struct CredentialArgs {
    /// github: read a token from this environment variable.
    #[arg(long)]
    pub token_env: Option<String>,
    /// github: read a token from this file.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// github: the GitHub App's id (with --private-key and --installation-id).
    #[arg(long)]
    pub app_id: Option<u64>,
    /// github: the GitHub App's private key (PEM file). The coordinator keeps it sealed and
    /// mints installation tokens itself.
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// github: the App's installation on this organisation.
    #[arg(long)]
    pub installation_id: Option<u64>,
}
