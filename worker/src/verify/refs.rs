//! `commit_count_match`: the ref tips the backup holds equal those the source advertised at
//! backup time, and the commits reachable from the default branch equal the forge's own count
//! where it gives one.

use std::collections::BTreeMap;
use std::path::Path;

use repovault_common::manifest::{CODE_DIR, Manifest};

use super::{COMMIT_COUNT_MATCH, Check};
use crate::git;

/// Differences shown in a failure; the rest are counted.
const SHOWN: usize = 8;

pub fn check(tree: &Path, manifest: &Manifest) -> Check {
    let Some(source) = &manifest.source_state else {
        return Check::skipped(
            COMMIT_COUNT_MATCH,
            "the backup predates recording the source's refs",
            false,
        );
    };
    let code = tree.join(CODE_DIR);
    let held = match git::inventory(&code) {
        Ok(inv) => inv.refs,
        Err(e) => {
            return Check::fail(
                COMMIT_COUNT_MATCH,
                format!("the backup's code.git cannot be read: {e}"),
            );
        }
    };
    let mut problems = tip_differences(&held, &source.refs);
    let mut counted = String::from("no commit count from the source (plain git)");
    if let Some(bc) = &source.default_branch {
        match git::count_commits(&code, &bc.oid) {
            Ok(n) if n == bc.commits => {
                counted = format!(
                    "{} holds {n} commits at {}, as the forge counts",
                    bc.branch,
                    short(&bc.oid)
                );
            }
            Ok(n) => problems.push(format!(
                "{} at {} holds {n} commits in the backup, the forge counts {}",
                bc.branch,
                short(&bc.oid),
                bc.commits
            )),
            Err(e) => problems.push(format!(
                "cannot count the commits of {} at {}: {e}",
                bc.branch,
                short(&bc.oid)
            )),
        }
    }
    if problems.is_empty() {
        Check::pass(
            COMMIT_COUNT_MATCH,
            format!(
                "all {} ref tips equal the source's; {counted}",
                source.refs.len()
            ),
        )
    } else {
        Check::fail(COMMIT_COUNT_MATCH, super::metadata::summarise(&problems))
    }
}

/// Each ref whose tip differs between the backup and the source, as a sentence.
pub fn tip_differences(
    held: &BTreeMap<String, String>,
    advertised: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, oid) in advertised {
        match held.get(name) {
            Some(h) if h == oid => {}
            Some(h) => out.push(format!(
                "{name}: the backup has {}, the source advertised {}",
                short(h),
                short(oid)
            )),
            None => out.push(format!(
                "{name} (at {}) is missing from the backup",
                short(oid)
            )),
        }
    }
    for (name, oid) in held {
        if !advertised.contains_key(name) {
            out.push(format!(
                "{name} (at {}) is in the backup but the source did not advertise it",
                short(oid)
            ));
        }
    }
    if out.len() > SHOWN {
        let more = out.len() - SHOWN;
        out.truncate(SHOWN);
        out.push(format!("... and {more} more refs differ"));
    }
    out
}

fn short(oid: &str) -> &str {
    &oid[..oid.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_ref() {
        let a = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let held = a(&[("refs/heads/main", "aaaa"), ("refs/heads/x", "bbbb")]);
        let adv = a(&[("refs/heads/main", "cccc"), ("refs/tags/v1", "dddd")]);
        let d = tip_differences(&held, &adv);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("refs/heads/main: the backup has aaaa, the source advertised cccc"));
        assert!(d[1].contains("refs/tags/v1 (at dddd) is missing"));
        assert!(d[2].contains("refs/heads/x (at bbbb) is in the backup"));
        assert!(tip_differences(&held, &held).is_empty());
    }
}
