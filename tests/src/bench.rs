//! What every benchmark binary prints and tidies the same way: medians, sizes, removal.

use std::path::Path;

use anyhow::{Context as _, Result};

/// The median (the mean of the middle two for an even count; 0 for none).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn mib(b: u64) -> String {
    mib_f(b as f64)
}

pub fn mib_f(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

pub fn kib_f(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}

/// Removes the file or directory `p`, if it exists.
pub fn remove_if_exists(p: &Path) -> Result<()> {
    let r = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", p.display()))
        }
        _ => Ok(()),
    }
}

/// The size of the generated source repository and the number of runs, as the git benchmarks
/// take them.
#[derive(Debug, Clone, Copy)]
pub struct SourceArgs {
    pub commits: usize,
    pub files: usize,
    pub runs: usize,
}

/// `--commits N` (default 20,000), `--files N` (300), `--runs N` (3) from the command line;
/// `-h` prints `usage` and exits. Every value must be at least 1.
pub fn parse_source_args(usage: &str) -> Result<SourceArgs> {
    let mut a = SourceArgs {
        commits: 20_000,
        files: 300,
        runs: 3,
    };
    parse_counts(
        usage,
        &mut [
            ("--commits", &mut a.commits),
            ("--files", &mut a.files),
            ("--runs", &mut a.runs),
        ],
    )?;
    Ok(a)
}

/// Reads `--FLAG N` pairs from the command line into `flags` (each keeps its default when not
/// given); `-h` prints `usage` and exits. Every value must be a number of at least 1.
pub fn parse_counts(usage: &str, flags: &mut [(&str, &mut usize)]) -> Result<()> {
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        let Some((_, slot)) = flags.iter_mut().find(|(name, _)| *name == flag) else {
            anyhow::bail!("unknown argument {flag:?}\n{usage}");
        };
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        **slot = v
            .parse()
            .with_context(|| format!("{flag} {v:?} is not a number"))?;
        if **slot == 0 {
            anyhow::bail!("{flag} must be at least 1");
        }
    }
    Ok(())
}

/// Pushes one commit editing five `.rs` files of `bare`'s `main` to `url`, as a developer would:
/// from a clone sharing the source's objects, in `scratch/push-work` (removed afterwards).
pub fn push_five_file_commit(bare: &Path, url: &str, scratch: &Path) -> Result<()> {
    use crate::fixtures::git;
    let work = scratch.join("push-work");
    remove_if_exists(&work)?;
    let bare = bare.to_str().context("non-UTF-8 source path")?;
    let work_s = work.to_str().context("non-UTF-8 scratch path")?;
    git(
        scratch,
        &["clone", "-q", "--shared", "--no-checkout", bare, work_s],
    )?;
    git(&work, &["read-tree", "HEAD"])?;
    let files = git(&work, &["ls-tree", "-r", "--name-only", "HEAD"])?;
    let paths: Vec<String> = files
        .lines()
        .filter(|p| p.ends_with(".rs"))
        .step_by(7)
        .take(5)
        .map(str::to_string)
        .collect();
    if paths.len() < 5 {
        anyhow::bail!("the source has fewer than five .rs files to change");
    }
    for path in &paths {
        let mut text = git(&work, &["show", &format!("HEAD:{path}")])?;
        text.push_str("\n// One more line, from the benchmark.\n");
        let file = work.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        git(&work, &["add", path])?;
    }
    git(
        &work,
        &["commit", "-q", "-m", "Benchmark: one commit of five files"],
    )?;
    git(&work, &["push", "-q", url, "HEAD:refs/heads/main"])?;
    remove_if_exists(&work)
}

/// Prints the lines every benchmark's report starts with: its name, the command line, the build
/// (a debug build's figures do not compare with the README's) and the machine: its cores, then
/// `machine` (the versions of the tools measured beside repovault). Labels are padded to
/// `width` characters, as the report's own lines are.
pub fn print_header(name: &str, width: usize, machine: &[&str]) {
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let machine = std::iter::once(format!("nproc {cores}"))
        .chain(machine.iter().map(|m| m.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    println!("{name}");
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    for (label, value) in [
        ("command:", command.as_str()),
        ("build:", build),
        ("machine:", machine.as_str()),
    ] {
        println!("{label:<width$}{value}");
    }
}
