//! Shell completions and man pages, generated from the same clap definition as `--help`, so
//! they never disagree with the binary.

use std::path::Path;

use clap::CommandFactory;

use crate::admin_client::CliError;
use crate::args::Cli;
use crate::exit;

/// `repovault completions SHELL`: the script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<i32, CliError> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "repovault", &mut script);
    crate::output::raw(&script);
    Ok(exit::OK)
}

/// `repovault man --dir DIR`: `repovault.1` and one page per subcommand at every level
/// (`repovault-org-add.1`), as man(1) finds them. Blocking file writes: run before any runtime
/// work, from the command's own dispatch.
pub fn man_pages(dir: &Path) -> Result<i32, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::usage(format!("--dir {}: {e}", dir.display())))?;
    let cmd = Cli::command();
    let written = write_pages(&cmd, "repovault", dir)?;
    crate::output::errln!("{written} man pages written to {}", dir.display());
    Ok(exit::OK)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> Result<usize, CliError> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .render(&mut roff)
        .map_err(|e| CliError::failed(format!("rendering the man page of {name}: {e}")))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, roff)
        .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        n += write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::args::Cli;

    /// Splits a shell line on spaces, keeping double-quoted words whole.
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for ch in line.chars() {
            match ch {
                '"' => quoted = !quoted,
                ' ' if !quoted => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    /// Every example in a `--help` is a command line the binary accepts.
    #[test]
    fn every_help_example_parses() {
        let mut examples = Vec::new();
        let mut stack = vec![Cli::command()];
        while let Some(cmd) = stack.pop() {
            if let Some(help) = cmd.get_after_help() {
                for line in help.to_string().lines() {
                    let line = line.trim().trim_start_matches("GH_TOKEN=... ");
                    if line.starts_with("repovault ") {
                        examples.push(line.to_string());
                    }
                }
            }
            stack.extend(cmd.get_subcommands().cloned());
        }
        assert!(examples.len() >= 10, "{examples:?}");
        for e in examples {
            // The command alone: an example may show where its output goes (`> FILE`, `| jq`).
            let command = e.split(['>', '|']).next().unwrap_or_default().trim_end();
            if let Err(err) = Cli::try_parse_from(words(command)) {
                panic!("{e}: {err}");
            }
        }
    }
}
