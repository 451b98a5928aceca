//! `repovault storage add|list|show|check`.

use std::collections::HashMap;

use repovault_proto::v1 as pb;

use crate::admin_client::{Admin, CliError};
use crate::args::{OutputFormat, StorageAddArgs, StorageCmd};
use crate::exit;
use crate::output::outln;
use crate::output::{self, is_json};

pub(super) async fn storage(
    c: &mut Admin,
    cmd: StorageCmd,
    out: OutputFormat,
) -> Result<i32, CliError> {
    match cmd {
        StorageCmd::Add(a) => {
            let req = request(
                &a,
                |k| std::env::var(k).ok(),
                |p| std::fs::read_to_string(p),
            )?;
            let r = c.add_storage_location(req).await?.into_inner();
            if is_json(out) {
                output::json(&r);
            } else {
                let l = r.location.unwrap_or_default();
                outln!("storage location {} added ({})", l.name, l.kind);
                print_probes(&r.probes);
            }
            Ok(exit::OK)
        }
        StorageCmd::List => {
            let r = c
                .list_storage_locations(pb::ListStorageLocationsRequest {})
                .await?
                .into_inner();
            if is_json(out) {
                output::json(&r.locations);
            } else {
                let rows: Vec<Vec<String>> = r.locations.iter().map(row).collect();
                output::table(&["NAME", "KIND", "WHERE", "ORGANISATIONS"], &rows);
            }
            Ok(exit::OK)
        }
        StorageCmd::Show { name } => {
            let r = c
                .list_storage_locations(pb::ListStorageLocationsRequest {})
                .await?
                .into_inner();
            let Some(l) = r.locations.into_iter().find(|l| l.name == name) else {
                return Err(CliError::new(
                    exit::NOT_FOUND,
                    format!("storage location {name:?} not found (repovault storage list)"),
                ));
            };
            if is_json(out) {
                output::json(&l);
            } else {
                show(&l);
            }
            Ok(exit::OK)
        }
        StorageCmd::Lifecycle { org } => {
            let r = c
                .get_storage_lifecycle(pb::GetStorageLifecycleRequest { org })
                .await?
                .into_inner();
            // The cloud's own document, in either output format: it is what the cloud's tools
            // take as it is.
            outln!("{}", r.policy_json);
            Ok(exit::OK)
        }
        StorageCmd::Move { org, to } => {
            let r = c
                .move_org_storage(pb::MoveOrgStorageRequest { org, to })
                .await?
                .into_inner();
            if is_json(out) {
                output::json(&r);
            } else {
                let o = r.org.clone().unwrap_or_default();
                outln!(
                    "{}: moved from {} to {}: {} repositories, {} objects ({} bytes) copied, {} verified",
                    o.name,
                    r.from,
                    o.storage,
                    r.repos,
                    r.objects_copied,
                    r.bytes_copied,
                    r.objects_verified
                );
                if !r.cleanup_error.is_empty() {
                    crate::output::errln!(
                        "warning: the old copy could not be deleted: {}",
                        r.cleanup_error
                    );
                }
            }
            Ok(exit::OK)
        }
        StorageCmd::Check { name } => {
            let r = c
                .check_storage_location(pb::CheckStorageLocationRequest { name })
                .await?
                .into_inner();
            if is_json(out) {
                output::json(&r.probes);
            } else {
                print_probes(&r.probes);
            }
            Ok(if r.probes.iter().all(|p| p.usable) {
                exit::OK
            } else {
                exit::VERIFY_FAILED
            })
        }
    }
}

/// The `AddStorageLocation` request of `storage add`: typed flags and `--option` as plain
/// options, `--*-secret-env`/`--*-secret-file` read through `env` and `read`.
pub(crate) fn request(
    a: &StorageAddArgs,
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&std::path::Path) -> std::io::Result<String>,
) -> Result<pb::AddStorageLocationRequest, CliError> {
    let mut options = HashMap::new();
    let typed = [
        ("bucket", a.bucket.clone()),
        ("container", a.container.clone()),
        ("endpoint", a.endpoint.clone()),
        ("region", a.region.clone()),
        ("prefix", a.prefix.clone()),
        ("account_name", a.account_name.clone()),
        ("root", a.root.as_ref().map(|p| p.display().to_string())),
    ];
    for (k, v) in typed {
        if let Some(v) = v {
            options.insert(k.to_string(), v);
        }
    }
    for o in &a.options {
        let (k, v) = pair("--option", o)?;
        options.insert(k.to_string(), v.to_string());
    }
    let from_env = |flag: &str, var: &str| -> Result<String, CliError> {
        match env(var) {
            Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            Some(_) => Err(CliError::usage(format!(
                "{flag} {var}: the variable is empty"
            ))),
            None => Err(CliError::usage(format!(
                "{flag} {var}: that environment variable is not set"
            ))),
        }
    };
    let from_file = |flag: &str, path: &str| -> Result<String, CliError> {
        let v = read(std::path::Path::new(path))
            .map_err(|e| CliError::usage(format!("{flag} {path}: {e}")))?;
        if v.trim().is_empty() {
            return Err(CliError::usage(format!("{flag} {path}: the file is empty")));
        }
        Ok(v.trim().to_string())
    };
    let mut writer = HashMap::new();
    if let Some(var) = &a.access_key_env {
        writer.insert("access_key_id".into(), from_env("--access-key-env", var)?);
    }
    if let Some(var) = &a.secret_key_env {
        writer.insert(
            "secret_access_key".into(),
            from_env("--secret-key-env", var)?,
        );
    }
    let mut maintainer = HashMap::new();
    for (flag, given, maintainer_role, file) in [
        ("--secret-env", &a.secret_env, false, false),
        ("--secret-file", &a.secret_file, false, true),
        (
            "--maintainer-secret-env",
            &a.maintainer_secret_env,
            true,
            false,
        ),
        (
            "--maintainer-secret-file",
            &a.maintainer_secret_file,
            true,
            true,
        ),
    ] {
        for g in given {
            let (k, source) = pair(flag, g)?;
            let v = if file {
                from_file(flag, source)?
            } else {
                from_env(flag, source)?
            };
            let into = if maintainer_role {
                &mut maintainer
            } else {
                &mut writer
            };
            into.insert(k.to_string(), v);
        }
    }
    Ok(pb::AddStorageLocationRequest {
        name: a.name.clone(),
        kind: a.kind.clone(),
        options,
        writer_secrets: writer,
        maintainer_secrets: maintainer,
    })
}

fn pair<'a>(flag: &str, given: &'a str) -> Result<(&'a str, &'a str), CliError> {
    given
        .split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| CliError::usage(format!("{flag} {given:?}: expected KEY=VALUE")))
}

/// Where a location keeps its data, in one field.
fn place(l: &pb::StorageLocation) -> String {
    let o = |k: &str| l.options.get(k).cloned().unwrap_or_default();
    let base = match l.kind.as_str() {
        "fs" => o("root"),
        "azblob" => format!("{}/{}", o("endpoint"), o("container")),
        _ => {
            let endpoint = o("endpoint");
            if endpoint.is_empty() {
                format!("{}://{}", l.kind, o("bucket"))
            } else {
                format!("{endpoint}/{}", o("bucket"))
            }
        }
    };
    match l.options.get("prefix") {
        Some(p) if !p.is_empty() => format!("{base}/{}", p.trim_matches('/')),
        _ => base,
    }
}

fn row(l: &pb::StorageLocation) -> Vec<String> {
    vec![
        l.name.clone(),
        l.kind.clone(),
        place(l),
        if l.orgs.is_empty() {
            "-".into()
        } else {
            l.orgs.join(", ")
        },
    ]
}

fn show(l: &pb::StorageLocation) {
    outln!("name:         {}", l.name);
    outln!("kind:         {}", l.kind);
    for (k, v) in l
        .options
        .iter()
        .collect::<std::collections::BTreeMap<_, _>>()
    {
        outln!("{:<13} {v}", format!("{k}:"));
    }
    let names = |s: &[String]| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.join(", ")
        }
    };
    outln!(
        "writer:       {} (secret options)",
        names(&l.writer_secrets)
    );
    if l.maintainer_secrets.is_empty() {
        outln!("maintainer:   the writer's credential");
    } else {
        outln!(
            "maintainer:   {} (secret options)",
            names(&l.maintainer_secrets)
        );
    }
    outln!("organisations: {}", names(&l.orgs));
}

fn print_probes(probes: &[pb::StorageProbe]) {
    for p in probes {
        let role = match pb::StorageRole::try_from(p.role) {
            Ok(pb::StorageRole::Maintainer) => "maintainer",
            _ => "writer",
        };
        outln!(
            "{role} credential: {}",
            if p.usable { "usable" } else { "NOT usable" }
        );
        for s in &p.steps {
            let mark = if s.as_wanted { "ok " } else { "!! " };
            outln!("  {mark}{:<9} {}", s.name, s.detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> StorageAddArgs {
        let mut all = vec!["repovault", "storage", "add"];
        all.extend_from_slice(args);
        match crate::Cli::try_parse_from(all).expect("parses").command {
            crate::args::Command::Storage(StorageCmd::Add(a)) => *a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_come_from_variables_and_files_never_from_arguments() {
        let a = parse(&[
            "client-a",
            "--kind",
            "s3",
            "--bucket",
            "b",
            "--region",
            "eu-west-1",
            "--access-key-env",
            "K",
            "--secret-key-env",
            "S",
            "--maintainer-secret-file",
            "secret_access_key=/keys/m",
            "--maintainer-secret-env",
            "access_key_id=MK",
        ]);
        let env = |k: &str| match k {
            "K" => Some("AKIA1".to_string()),
            "S" => Some("s3cr3t".to_string()),
            "MK" => Some("AKIA2".to_string()),
            _ => None,
        };
        let req = request(&a, env, |_| Ok("m-s3cr3t\n".into())).expect("request");
        assert_eq!(req.options.get("bucket").map(String::as_str), Some("b"));
        assert_eq!(
            req.writer_secrets
                .get("secret_access_key")
                .map(String::as_str),
            Some("s3cr3t")
        );
        assert_eq!(
            req.maintainer_secrets
                .get("secret_access_key")
                .map(String::as_str),
            Some("m-s3cr3t")
        );
        assert_eq!(
            req.maintainer_secrets
                .get("access_key_id")
                .map(String::as_str),
            Some("AKIA2")
        );

        let e = request(&a, |_| None, |_| Ok(String::new())).expect_err("unset variable");
        assert!(
            e.message
                .contains("--access-key-env K: that environment variable is not set"),
            "{}",
            e.message
        );
        let bad = parse(&["x", "--kind", "gcs", "--secret-env", "credential"]);
        let e = request(&bad, env, |_| Ok(String::new())).expect_err("no =");
        assert!(e.message.contains("expected KEY=VALUE"), "{}", e.message);
    }
}
