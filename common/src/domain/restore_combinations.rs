//! The valid restore type and target pairs: the one list the CLI, the coordinator and the worker
//! all read.

use super::{RestoreTarget, RestoreType};

/// A restore type with a target it can go to. Constructed only through [`RestoreCombination::new`],
/// so holding one means the pair is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreCombination {
    restore_type: RestoreType,
    target: RestoreTarget,
}

/// A restore type and target that do not go together; the message names every valid pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "restore type {:?} to target {:?} is not a valid combination; {}",
    restore_type.as_str(),
    target.as_str(),
    RestoreCombination::valid_text()
)]
pub struct RestoreCombinationError {
    pub restore_type: RestoreType,
    pub target: RestoreTarget,
}

impl RestoreCombination {
    /// Every restore type with the targets it takes.
    pub const VALID: &'static [(RestoreType, &'static [RestoreTarget])] = &[
        (
            RestoreType::FullRepo,
            &[
                RestoreTarget::New,
                RestoreTarget::Original,
                RestoreTarget::Download,
            ],
        ),
        (RestoreType::IssuesOnly, &[RestoreTarget::Existing]),
        (RestoreType::WikiOnly, &[RestoreTarget::Existing]),
        (RestoreType::ReleasesOnly, &[RestoreTarget::Existing]),
        (RestoreType::DownloadZip, &[RestoreTarget::Download]),
    ];

    pub fn new(
        restore_type: RestoreType,
        target: RestoreTarget,
    ) -> Result<Self, RestoreCombinationError> {
        let ok = Self::VALID
            .iter()
            .any(|(t, targets)| *t == restore_type && targets.contains(&target));
        if ok {
            Ok(Self {
                restore_type,
                target,
            })
        } else {
            Err(RestoreCombinationError {
                restore_type,
                target,
            })
        }
    }

    pub fn restore_type(self) -> RestoreType {
        self.restore_type
    }

    pub fn target(self) -> RestoreTarget {
        self.target
    }

    /// The valid combinations as one line, for usage and error messages.
    pub fn valid_text() -> String {
        let list: Vec<String> = Self::VALID
            .iter()
            .map(|(t, targets)| {
                let targets: Vec<&str> = targets.iter().map(|t| t.as_str()).collect();
                format!("{t} to {}", targets.join("|"))
            })
            .collect();
        format!(
            "valid: {} (full_repo to new takes --org ORG --name NAME or --url URL; original takes --name NAME; existing takes --into ORG/NAME)",
            list.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_pairs_are_valid_and_the_error_lists_them() {
        assert!(RestoreCombination::new(RestoreType::FullRepo, RestoreTarget::Original).is_ok());
        assert!(RestoreCombination::new(RestoreType::WikiOnly, RestoreTarget::Existing).is_ok());
        let err = RestoreCombination::new(RestoreType::DownloadZip, RestoreTarget::New)
            .expect_err("a ZIP goes to download only");
        assert_eq!(
            err.to_string(),
            "restore type \"download_zip\" to target \"new\" is not a valid combination; valid: full_repo to new|original|download, issues_only to existing, wiki_only to existing, releases_only to existing, download_zip to download (full_repo to new takes --org ORG --name NAME or --url URL; original takes --name NAME; existing takes --into ORG/NAME)"
        );
        let valid = RestoreType::ALL
            .iter()
            .flat_map(|t| RestoreTarget::ALL.iter().map(move |g| (*t, *g)))
            .filter(|(t, g)| RestoreCombination::new(*t, *g).is_ok())
            .count();
        assert_eq!(valid, 7);
    }
}
