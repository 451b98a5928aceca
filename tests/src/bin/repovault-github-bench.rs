//! repovault against python-github-backup on the same simulated GitHub organisation, side by
//! side in one run.
//!
//! The organisation is the forge simulator's `acme` seed (six repositories: pull requests with
//! reviews, releases with assets, LFS, a wiki, an issue with 131 comments, 111 issues in one
//! repository) plus `--extra-repos` generated repositories of `--issues` issues with two comments
//! each. Each side gets its own fresh simulator from the same seed, so the simulator's counters
//! (`/_sim/stats`) are that side's alone. Per run:
//!
//! 1. first backup of every repository: repovault (`repovault standalone` in process: a
//!    coordinator and a worker of 2 slots; `org add` lists the repositories, then a full backup
//!    of each) against `github-backup` 0.65.1 with the flags the simulator's own test uses
//!    (issues, comments, pulls, reviews, labels, milestones, hooks, releases with assets, wikis,
//!    repositories, LFS);
//! 2. nothing changes; the second backup: repovault incremental against `github-backup
//!    --incremental`.
//!
//! Figures are wall time and REST requests as the simulator counts them: all answered, those
//! that count against the primary limit (GitHub does not count 304s), and 304s. repovault also
//! backs up what python-github-backup does not (branch protection, rulesets, deploy keys,
//! collaborators, teams, workflows, attachments).
//!
//! ```text
//! cargo run --release -p repovault-tests --bin repovault-github-bench -- [--runs N] [--extra-repos N] [--issues N]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use forge_sim::ForgeSim;
use forge_sim::seed::{CommitSeed, GenerateSeed, RepoSeed, Seed};
use repovault_common::domain::Provider;
use repovault_common::forge::ForgeCredential;
use repovault_common::secret::Secret;
use repovault_coordinator::forge_access::org_discovery::NewForgeOrg;
use repovault_tests::bench::{median, print_header};
use repovault_tests::standalone::Standalone;

const USAGE: &str = "usage: repovault-github-bench [--runs N] [--extra-repos N] [--issues N]";
/// The owner token of seeds/acme.toml.
const OWNER: &str = "ghp_acmeOwner0000000000000000000000000";
const ORG: &str = "acme";

struct Args {
    runs: usize,
    extra_repos: usize,
    issues: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        runs: 3,
        extra_repos: 10,
        issues: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> Result<usize> {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?
                .parse()
                .with_context(|| format!("{flag} takes a number\n{USAGE}"))
        };
        match flag.as_str() {
            "--runs" => a.runs = value()?.max(1),
            "--extra-repos" => a.extra_repos = value()?,
            "--issues" => a.issues = value()? as u64,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(a)
}

fn seed(args: &Args) -> Result<Seed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("forge-sim/seeds/acme.toml");
    let mut seed = Seed::from_file(&path)?;
    let org = seed
        .orgs
        .iter_mut()
        .find(|o| o.login == ORG)
        .context("the acme seed has no acme organisation")?;
    for i in 1..=args.extra_repos {
        org.repos.push(RepoSeed {
            name: format!("generated-{i:03}"),
            description: Some("generated for the benchmark".into()),
            commits: vec![CommitSeed {
                message: "Initial commit".into(),
                files: [("README.md".to_string(), Some(format!("Repository {i}\n")))].into(),
                ..Default::default()
            }],
            generate: Some(GenerateSeed {
                issues: args.issues,
                comments_each: 2,
                closed_every: 4,
            }),
            ..Default::default()
        });
    }
    Ok(seed)
}

/// One side's figures for one backup (first or second).
#[derive(Debug, Clone, Copy, Default)]
struct Pass {
    secs: f64,
    requests: u64,
    counted: u64,
    not_modified: u64,
}

/// One figure of a run, read from its [`Figures`].
type Figure = fn(&Figures) -> f64;

/// How a row of the report is printed.
enum Unit {
    Secs,
    Count,
    /// The count divided by the number of repositories.
    PerRepo,
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    first: Pass,
    second: Pass,
}

async fn start_sim(seed: &Seed) -> Result<ForgeSim> {
    ForgeSim::start(seed, "127.0.0.1:0".parse()?, None).await
}

/// Runs `f` and returns its time and the simulator's counters for it.
async fn measure<F, Fut>(sim: &ForgeSim, f: F) -> Result<Pass>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let before = sim.stats();
    let t = Instant::now();
    f().await?;
    let secs = t.elapsed().as_secs_f64();
    let after = sim.stats();
    if std::env::var_os("BENCH_ROUTES").is_some() {
        for (route, n) in &after.by_route {
            let d = n - before.by_route.get(route).copied().unwrap_or(0);
            if d > 0 {
                eprintln!("  {d:>5}  {route}");
            }
        }
    }
    Ok(Pass {
        secs,
        requests: after.api_requests - before.api_requests,
        counted: after.counted_requests - before.counted_requests,
        not_modified: after.not_modified - before.not_modified,
    })
}

async fn repovault(seed: &Seed, scratch: &Path) -> Result<Figures> {
    let sim = start_sim(seed).await?;
    let ready = sim.ready().clone();
    let vault = Standalone::start(scratch.join("repovault"), 2).await?;
    let core = vault.handle.core.clone();
    let ca = std::fs::read_to_string(&ready.ca_cert)?;
    let names: Vec<String> = seed.orgs[0].repos.iter().map(|r| r.name.clone()).collect();
    let backup_all = |kind: &'static str| {
        let (core, names) = (core.clone(), names.clone());
        let vault = &vault;
        async move {
            let mut ids = Vec::new();
            for n in &names {
                ids.push(
                    core.backups
                        .run_backup_of_type(&format!("{ORG}/{n}"), kind.parse()?)
                        .await?
                        .id,
                );
            }
            for id in ids {
                vault.wait_backup(&id).await?;
            }
            Ok::<(), anyhow::Error>(())
        }
    };
    let first = measure(&sim, || async {
        core.forge
            .add_forge_org(NewForgeOrg {
                provider: Provider::Github,
                name: ORG.into(),
                api_url: Some(ready.api_url.clone()),
                ca_cert_pem: Some(ca.clone()),
                credential: ForgeCredential::Token(Secret::new(OWNER)),
            })
            .await?;
        backup_all("full").await
    })
    .await?;
    let second = measure(&sim, || backup_all("incremental")).await?;
    vault.shutdown().await;
    Ok(Figures { first, second })
}

fn github_backup() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("REPOVAULT_GITHUB_BACKUP") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("github-backup"))
        .find(|p| p.is_file())
        .context("github-backup is not on PATH: pip install github-backup==0.65.1")
}

async fn python(seed: &Seed, scratch: &Path, exe: &Path) -> Result<Figures> {
    let sim = start_sim(seed).await?;
    let ready = sim.ready().clone();
    let out = scratch.join("python-out");
    let home = scratch.join("python-home");
    std::fs::create_dir_all(&home)?;
    let host = format!("127.0.0.1:{}", ready.listen.port());
    let run = |incremental: bool| {
        let (exe, out, home, host, ca) = (
            exe.to_path_buf(),
            out.clone(),
            home.clone(),
            host.clone(),
            ready.ca_cert.clone(),
        );
        async move {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args(["-t", OWNER, "-H", &host, "-O", "-P", "-o"])
                .arg(&out)
                .args([
                    "--issues",
                    "--issue-comments",
                    "--pulls",
                    "--pull-comments",
                    "--pull-reviews",
                    "--labels",
                    "--milestones",
                    "--hooks",
                    "--releases",
                    "--assets",
                    "--wikis",
                    "--repositories",
                    "--lfs",
                ]);
            if incremental {
                cmd.arg("--incremental");
            }
            let output = cmd
                .arg(ORG)
                .env("SSL_CERT_FILE", &ca)
                .env("GIT_SSL_CAINFO", &ca)
                .env("HOME", &home)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_TERMINAL_PROMPT", "0")
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .with_context(|| format!("running {}", exe.display()))?;
            if !output.status.success() {
                bail!(
                    "github-backup failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(())
        }
    };
    let first = measure(&sim, || run(false)).await?;
    let second = measure(&sim, || run(true)).await?;
    Ok(Figures { first, second })
}

#[tokio::main]
async fn main() -> Result<()> {
    repovault_common::tls::install_crypto_provider();
    let args = parse_args()?;
    let exe = github_backup()?;
    let seed = seed(&args)?;
    let repos = seed.orgs[0].repos.len();
    let issues: u64 = seed.orgs[0]
        .repos
        .iter()
        .filter_map(|r| seed.counts(ORG, &r.name))
        .map(|c| c.issues + c.pulls)
        .sum();
    let version = std::process::Command::new(&exe)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut vault_runs = Vec::new();
    let mut python_runs = Vec::new();
    for i in 0..args.runs {
        let scratch = tempfile::tempdir()?;
        // Alternate which side goes first, so neither always meets a cold disk cache.
        if i % 2 == 0 {
            vault_runs.push(repovault(&seed, scratch.path()).await?);
            python_runs.push(python(&seed, scratch.path(), &exe).await?);
        } else {
            python_runs.push(python(&seed, scratch.path(), &exe).await?);
            vault_runs.push(repovault(&seed, scratch.path()).await?);
        }
        eprintln!("run {} of {} done", i + 1, args.runs);
    }
    print_header("repovault-github-bench", 10, &[]);
    println!(
        "source:   forge simulator, organisation {ORG}: {repos} repositories, {issues} issues and pull requests"
    );
    println!("peer:     {} ({})", exe.display(), version);
    println!(
        "runs:     {} (alternating which side goes first; medians below)",
        args.runs
    );
    println!();
    let m = |runs: &[Figures], f: Figure| median(runs.iter().map(f));
    let per_repo = repos as f64;
    let rows: [(&str, Figure, Unit); 8] = [
        ("first backup, time (s)", |f| f.first.secs, Unit::Secs),
        (
            "first backup, REST requests",
            |f| f.first.requests as f64,
            Unit::Count,
        ),
        (
            "first backup, requests counted by the limit",
            |f| f.first.counted as f64,
            Unit::Count,
        ),
        (
            "second backup (nothing changed), time (s)",
            |f| f.second.secs,
            Unit::Secs,
        ),
        (
            "second backup, REST requests",
            |f| f.second.requests as f64,
            Unit::Count,
        ),
        (
            "second backup, requests counted by the limit",
            |f| f.second.counted as f64,
            Unit::Count,
        ),
        (
            "second backup, answered 304 (not counted)",
            |f| f.second.not_modified as f64,
            Unit::Count,
        ),
        (
            "second backup, counted requests per repository",
            |f| f.second.counted as f64,
            Unit::PerRepo,
        ),
    ];
    println!("{:<52} {:>12} {:>16}", "", "repovault", "github-backup");
    for (name, f, unit) in rows {
        let (v, p) = (m(&vault_runs, f), m(&python_runs, f));
        match unit {
            Unit::Secs => println!("{name:<52} {v:>12.2} {p:>16.2}"),
            Unit::Count => println!("{name:<52} {v:>12.0} {p:>16.0}"),
            Unit::PerRepo => println!("{name:<52} {:>12.2} {:>16.2}", v / per_repo, p / per_repo),
        }
    }
    println!();
    println!("ratios (medians), repovault / github-backup");
    let ratio =
        |f: fn(&Figures) -> f64| m(&vault_runs, f) / m(&python_runs, f).max(f64::MIN_POSITIVE);
    let first_req = ratio(|f| f.first.requests as f64);
    println!(
        "  first backup time:                     {:.2}",
        ratio(|f| f.first.secs)
    );
    println!(
        "  first backup REST requests:            {first_req:.2}   (goal < 1.00: {})",
        if first_req < 1.0 {
            "goal met"
        } else {
            "goal NOT met"
        }
    );
    println!(
        "  second backup time:                    {:.2}",
        ratio(|f| f.second.secs)
    );
    println!(
        "  second backup counted requests:        {:.2}",
        ratio(|f| f.second.counted as f64)
    );
    let per_repo = m(&vault_runs, |f| f.second.counted as f64) / repos as f64;
    println!(
        "  repovault second backup, counted requests per repository: {per_repo:.2}   (goal <= 3: {})",
        if per_repo <= 3.0 {
            "goal met"
        } else {
            "goal NOT met"
        }
    );
    Ok(())
}
