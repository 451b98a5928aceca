//! The closed sets `restore start` takes: type, target and access, each with its domain or wire
//! value.

use clap::ValueEnum;

use repovault_common::domain;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestoreType {
    /// Everything: refs, LFS objects, wiki, issues, pull requests, releases, settings.
    #[value(name = "full_repo")]
    FullRepo,
    /// Issues and pull requests (with comments, reviews, labels, milestones), appended.
    #[value(name = "issues_only")]
    IssuesOnly,
    /// The wiki, into a repository whose wiki is empty.
    #[value(name = "wiki_only")]
    WikiOnly,
    /// Releases with their assets (and the tags they need), appended.
    #[value(name = "releases_only")]
    ReleasesOnly,
    /// A ZIP of the whole backup in storage, behind an expiring link.
    #[value(name = "download_zip")]
    DownloadZip,
}

impl From<RestoreType> for domain::RestoreType {
    fn from(t: RestoreType) -> Self {
        match t {
            RestoreType::FullRepo => Self::FullRepo,
            RestoreType::IssuesOnly => Self::IssuesOnly,
            RestoreType::WikiOnly => Self::WikiOnly,
            RestoreType::ReleasesOnly => Self::ReleasesOnly,
            RestoreType::DownloadZip => Self::DownloadZip,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestoreTarget {
    /// A new repository: `--org ORG --name NAME` on a forge, or `--url URL` (plain git).
    New,
    /// A new repository in the source's own organisation (`--name NAME`, must not exist).
    Original,
    /// The machine the CLI runs on (`--path DIR`), or a ZIP link (`download_zip`).
    Download,
    /// An existing repository (`--into ORG/NAME`), appended to.
    Existing,
}

impl From<RestoreTarget> for domain::RestoreTarget {
    fn from(t: RestoreTarget) -> Self {
        match t {
            RestoreTarget::New => Self::New,
            RestoreTarget::Original => Self::Original,
            RestoreTarget::Download => Self::Download,
            RestoreTarget::Existing => Self::Existing,
        }
    }
}

/// Which access a forge restore grants; see `restore start --access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestoreAccess {
    /// Direct collaborators only.
    Direct,
    /// Direct collaborators and team grants (to the target's teams of the same slug).
    Teams,
    /// Everyone who had access: widens access on purpose.
    All,
}

impl From<RestoreAccess> for repovault_proto::v1::RestoreAccess {
    fn from(a: RestoreAccess) -> Self {
        match a {
            RestoreAccess::Direct => Self::Direct,
            RestoreAccess::Teams => Self::Teams,
            RestoreAccess::All => Self::All,
        }
    }
}
