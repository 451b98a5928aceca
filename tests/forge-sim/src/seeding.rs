//! Turns a [`Seed`] into the world: accounts, organisations, teams, tokens, apps and
//! installations, repositories with their git history; then each area's items through the area's
//! own `seed_repo` (issues, pull requests, releases, settings, wiki, LFS, attachments); then
//! fine-grained tokens and apps, which name repositories.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, bail};
use chrono::Utc;

use crate::Sim;
use crate::gitrepo;
use crate::seed::{self, Loaded, RepoSeed, Seed};
use crate::state::{
    Account, AccountKind, App, Hook, Installation, Org, OrgRole, Permission, Principal, Repo, Team,
    Token,
};

/// A fresh token in GitHub's format (`ghp_` + 36 characters for personal tokens, `ghs_` for
/// installation tokens).
pub fn new_token(prefix: &str) -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let s: String = (0..36)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}_{s}")
}

pub fn load(sim: &Sim, seed: &Seed) -> anyhow::Result<Loaded> {
    let now = Utc::now();
    let mut first_token = None;
    {
        let mut world = sim.world.lock();
        let mut users = seed.users.clone();
        if users.is_empty() {
            users.push(seed::UserSeed {
                login: "octo-admin".into(),
                ..Default::default()
            });
        }
        for (i, u) in users.iter().enumerate() {
            seed::check_name("user", &u.login)?;
            if world.account(&u.login).is_some() {
                bail!("user {:?} is seeded twice", u.login);
            }
            let id = world.id();
            world.accounts.insert(
                u.login.clone(),
                Account {
                    id,
                    login: u.login.clone(),
                    kind: AccountKind::User,
                    name: u.name.clone(),
                    email: u.email.clone(),
                    site_admin: u.site_admin,
                    created_at: now,
                },
            );
            let mut tokens = u.tokens.clone();
            if i == 0 && tokens.is_empty() {
                tokens.push(new_token("ghp"));
            }
            for t in tokens {
                if first_token.is_none() {
                    first_token = Some(t.clone());
                }
                world.tokens.insert(
                    t,
                    Token {
                        principal: Principal::User(u.login.clone()),
                        expires_at: None,
                        repositories: None,
                        permissions: None,
                        resource_owner: None,
                    },
                );
            }
        }
        let first_user = users[0].login.clone();
        for o in &seed.orgs {
            seed::check_name("organisation", &o.login)?;
            if world.account(&o.login).is_some() {
                bail!("account {:?} is seeded twice", o.login);
            }
            let id = world.id();
            world.accounts.insert(
                o.login.clone(),
                Account {
                    id,
                    login: o.login.clone(),
                    kind: AccountKind::Organization,
                    name: o.name.clone(),
                    email: None,
                    site_admin: false,
                    created_at: now,
                },
            );
            let mut members = BTreeMap::new();
            members.insert(first_user.clone(), OrgRole::Admin);
            for (login, role) in &o.members {
                if world.account(login).is_none() {
                    bail!(
                        "organisation {}: member {login:?} is not a seeded user",
                        o.login
                    );
                }
                let role = match role.as_str() {
                    "admin" | "owner" => OrgRole::Admin,
                    "member" => OrgRole::Member,
                    other => bail!(
                        "organisation {}: role {other:?} of {login} is not admin or member",
                        o.login
                    ),
                };
                members.insert(login.clone(), role);
            }
            let default_repository_permission = match &o.default_repository_permission {
                Some(p) => Permission::parse(p).with_context(|| {
                    format!(
                        "organisation {}: default_repository_permission {p:?}",
                        o.login
                    )
                })?,
                None => Permission::Read,
            };
            let mut teams = BTreeMap::new();
            for t in &o.teams {
                let id = world.id();
                teams.insert(
                    t.slug.clone(),
                    Team {
                        id,
                        slug: t.slug.clone(),
                        name: t.name.clone().unwrap_or_else(|| t.slug.clone()),
                        description: t.description.clone(),
                        privacy: "closed".into(),
                        members: t.members.iter().cloned().collect(),
                    },
                );
            }
            let mut hooks = BTreeMap::new();
            for h in &o.hooks {
                let hook = hook_from_seed(&mut world, h);
                hooks.insert(hook.id, hook);
            }
            world.orgs.insert(
                o.login.clone(),
                Org {
                    login: o.login.clone(),
                    description: o.description.clone(),
                    members,
                    default_repository_permission,
                    teams,
                    hooks,
                },
            );
        }
    }

    // Repositories are independent and seeding them is mostly waiting on git processes, so they
    // are seeded in parallel; each takes the world lock only briefly. Issue numbers are per
    // repository and stay deterministic; ids are not (they never were promised to be).
    let jobs: Vec<(&str, &RepoSeed)> = seed
        .orgs
        .iter()
        .flat_map(|o| o.repos.iter().map(move |r| (o.login.as_str(), r)))
        .collect();
    let links = crate::attachments::seeded_links(seed, &sim.web_base);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .min(jobs.len().max(1));
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some((owner, r)) = jobs.get(i) else {
                            return Ok(());
                        };
                        seed_repo(sim, owner, r, &links)
                            .with_context(|| format!("seeding {owner}/{}", r.name))?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a seeding thread panicked"))??;
        }
        Ok(())
    })?;

    for t in &seed.fine_grained_tokens {
        crate::auth::seed_fine_grained_token(sim, t)
            .with_context(|| format!("seeding the fine-grained token of {}", t.user))?;
    }

    let mut loaded = Loaded {
        token: first_token.context("no token seeded")?,
        app_id: None,
        installation_id: None,
        app_private_key: None,
    };
    for a in &seed.apps {
        let (app_id, inst, key_path) =
            seed_app(sim, seed, a).with_context(|| format!("seeding app {}", a.slug))?;
        if loaded.app_id.is_none() {
            loaded.app_id = Some(app_id);
            loaded.installation_id = inst;
            loaded.app_private_key = Some(key_path);
        }
    }
    Ok(loaded)
}

pub fn hook_from_seed(world: &mut crate::state::World, h: &seed::HookSeed) -> Hook {
    let now = Utc::now();
    Hook {
        id: world.id(),
        name: "web".into(),
        active: h.active.unwrap_or(true),
        events: if h.events.is_empty() {
            vec!["push".into()]
        } else {
            h.events.clone()
        },
        url: h.url.clone(),
        content_type: h.content_type.clone().unwrap_or_else(|| "json".into()),
        insecure_ssl: "0".into(),
        secret: h.secret.clone(),
        created_at: now,
        updated_at: now,
        deliveries: Vec::new(),
    }
}

/// Creates an empty repository record and its bare git directory (what
/// `POST /orgs/{org}/repos` does too). Returns its id.
pub fn create_repo(
    sim: &Sim,
    owner: &str,
    name: &str,
    private: bool,
    default_branch: &str,
) -> anyhow::Result<u64> {
    let now = Utc::now();
    let dir = sim.data_dir.join("git").join(owner.to_ascii_lowercase());
    let git_dir = dir.join(format!("{}.git", name.to_ascii_lowercase()));
    let wiki_dir = dir.join(format!("{}.wiki.git", name.to_ascii_lowercase()));
    let lfs_dir = sim
        .data_dir
        .join("lfs")
        .join(owner.to_ascii_lowercase())
        .join(name.to_ascii_lowercase());
    if git_dir.exists() {
        // A repository deleted earlier under the same name: its directory goes with it.
        std::fs::remove_dir_all(&git_dir).ok();
        std::fs::remove_dir_all(&wiki_dir).ok();
        std::fs::remove_dir_all(&lfs_dir).ok();
    }
    gitrepo::init_bare(&git_dir, default_branch)?;
    let mut world = sim.world.lock();
    if world.repo_id(owner, name).is_some() {
        bail!("repository {owner}/{name} already exists");
    }
    let id = world.id();
    let owner = world
        .account(owner)
        .map(|a| a.login.clone())
        .unwrap_or_else(|| owner.to_string());
    world.repos.insert(
        id,
        Repo {
            id,
            owner,
            name: name.to_string(),
            private,
            archived: false,
            disabled: false,
            deleted: false,
            blocked: false,
            description: None,
            homepage: None,
            default_branch: default_branch.to_string(),
            has_issues: true,
            has_projects: true,
            has_wiki: true,
            has_discussions: false,
            topics: Vec::new(),
            created_at: now,
            updated_at: now,
            pushed_at: now,
            git_dir,
            wiki_dir,
            next_number: 1,
            issues: BTreeMap::new(),
            comments: BTreeMap::new(),
            reviews: BTreeMap::new(),
            review_comments: BTreeMap::new(),
            events: BTreeMap::new(),
            releases: BTreeMap::new(),
            labels: BTreeMap::new(),
            milestones: BTreeMap::new(),
            workflows: BTreeMap::new(),
            protections: BTreeMap::new(),
            rulesets: BTreeMap::new(),
            hooks: BTreeMap::new(),
            deploy_keys: BTreeMap::new(),
            collaborators: BTreeMap::new(),
            teams: BTreeMap::new(),
            lfs: BTreeMap::new(),
            lfs_dir,
            version: 0,
        },
    );
    Ok(id)
}

fn seed_repo(
    sim: &Sim,
    owner: &str,
    r: &RepoSeed,
    links: &[(String, String)],
) -> anyhow::Result<()> {
    seed::check_name("repository", &r.name)?;
    // The seed's attachment links, on the simulator's host.
    let r = &crate::attachments::on_sim_host(r, links);
    let default_branch = r.default_branch.clone().unwrap_or_else(|| "main".into());
    let id = create_repo(sim, owner, &r.name, r.private, &default_branch)?;
    let git_dir = sim.world.lock().repos[&id].git_dir.clone();
    if !r.commits.is_empty() || !r.tags.is_empty() {
        write_history(&git_dir, &default_branch, r)?;
    }
    {
        let mut world = sim.world.lock();
        let first_user = world
            .accounts
            .values()
            .filter(|a| a.kind == AccountKind::User)
            .min_by_key(|a| a.id)
            .map(|a| a.login.clone());
        let mut hooks = Vec::new();
        for h in &r.hooks {
            hooks.push(hook_from_seed(&mut world, h));
        }
        let repo = world.repos.get_mut(&id).context("repository vanished")?;
        repo.description = r.description.clone();
        repo.homepage = r.homepage.clone();
        repo.archived = r.archived;
        repo.has_wiki = r.has_wiki.unwrap_or(true);
        repo.has_issues = r.has_issues.unwrap_or(true);
        repo.topics = r.topics.clone();
        if let Some(t) = r.created_at {
            repo.created_at = t;
        }
        for h in hooks {
            repo.hooks.insert(h.id, h);
        }
        for (login, p) in &r.collaborators {
            let perm = Permission::parse(p)
                .with_context(|| format!("collaborator {login}: permission {p:?}"))?;
            repo.collaborators.insert(login.clone(), perm);
        }
        for (slug, p) in &r.teams {
            let perm =
                Permission::parse(p).with_context(|| format!("team {slug}: permission {p:?}"))?;
            repo.teams.insert(slug.clone(), perm);
        }
        let _ = first_user;
    }
    crate::lfs::seed_repo(sim, id, r).context("LFS")?;
    crate::git_http::seed_wiki(sim, id, r).context("wiki")?;
    crate::api::issues::seed_repo(sim, id, r).context("labels, milestones and issues")?;
    crate::api::pulls::seed_repo(sim, id, r).context("pull requests")?;
    crate::api::releases::seed_repo(sim, id, r).context("releases")?;
    crate::api::settings::seed_repo(sim, id, r).context("settings")?;
    crate::attachments::seed_repo(sim, id, owner, r).context("attachments")?;
    Ok(())
}

/// Commits `files` (path → content; `None` deletes) as one commit on `branch` of the bare
/// repository at `git_dir`, the way [`write_history`] writes seeds (no clone, no push). Works on
/// an empty repository, whose first branch this makes. Used by the wiki, LFS and workflow seeds.
pub fn commit_files(
    git_dir: &Path,
    branch: &str,
    files: BTreeMap<String, Option<String>>,
    message: &str,
) -> anyhow::Result<()> {
    let seed = RepoSeed {
        commits: vec![seed::CommitSeed {
            message: message.to_string(),
            branch: Some(branch.to_string()),
            files,
            ..Default::default()
        }],
        ..Default::default()
    };
    write_history(git_dir, branch, &seed)
}

/// Makes the seed's commits and tags (see [`write_history`]); also used by
/// `POST /orgs/{org}/repos` with `auto_init`.
pub fn write_history_pub(git_dir: &Path, default_branch: &str, r: &RepoSeed) -> anyhow::Result<()> {
    write_history(git_dir, default_branch, r)
}

/// Makes the seed's commits and tags with the git CLI, straight in the bare repository: git runs
/// with the bare repository as `GIT_DIR`, a scratch work tree and a scratch index, so no clone
/// and no push are needed (each git process costs about 20 ms, and seeding is mostly git
/// processes). HEAD is pointed back at the default branch afterwards.
fn write_history(git_dir: &Path, default_branch: &str, r: &RepoSeed) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("forge-sim-seed-")
        .tempdir()?;
    let w = scratch.path().join("work");
    std::fs::create_dir_all(&w)?;
    let index = scratch.path().join("index");
    let git = |args: &[&str]| {
        let mut c = gitrepo::git(&w);
        c.env("GIT_DIR", git_dir)
            .env("GIT_WORK_TREE", &w)
            .env("GIT_INDEX_FILE", &index)
            .args(args);
        c
    };
    let run = |mut c: std::process::Command, what: &str| -> anyhow::Result<()> {
        let out = c
            .output()
            .with_context(|| format!("running git for {what}"))?;
        if !out.status.success() {
            bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    let mut created: BTreeSet<String> = gitrepo::refs(git_dir)?
        .into_iter()
        .filter_map(|(r, _)| r.strip_prefix("refs/heads/").map(str::to_string))
        .collect();
    let mut current = String::new();
    for (i, c) in r.commits.iter().enumerate() {
        let branch = c
            .branch
            .clone()
            .unwrap_or_else(|| default_branch.to_string());
        if branch != current {
            if created.contains(&branch) {
                run(
                    git(&["checkout", "-q", "-f", &branch]),
                    &format!("commit {i}: checking out {branch}"),
                )?;
            } else if created.is_empty() {
                // The first commit of an empty repository: HEAD names the unborn branch.
                run(
                    git(&["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")]),
                    &format!("commit {i}: starting {branch}"),
                )?;
            } else {
                let from = c.from.clone().unwrap_or_else(|| default_branch.to_string());
                run(
                    git(&["checkout", "-q", "-f", "-b", &branch, &from]),
                    &format!("commit {i}: starting branch {branch} at {from}"),
                )?;
            }
            current = branch.clone();
        }
        for (path, content) in &c.files {
            let p = w.join(path);
            match content {
                Some(text) => {
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&p, text)?;
                }
                None => {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("commit {i}: deleting {path}"))?;
                }
            }
        }
        run(git(&["add", "-A"]), &format!("commit {i}: git add"))?;
        let author = c.author.clone().unwrap_or_else(|| "Seed Author".into());
        let date = c
            .date
            .map(|d| d.to_rfc3339())
            .unwrap_or_else(|| Utc::now().to_rfc3339());
        let email = format!(
            "{}@users.noreply.example",
            author.replace(' ', ".").to_lowercase()
        );
        let mut commit = git(&["commit", "-q", "--allow-empty", "-m", &c.message]);
        commit
            .env("GIT_AUTHOR_NAME", &author)
            .env("GIT_AUTHOR_EMAIL", &email)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_NAME", &author)
            .env("GIT_COMMITTER_EMAIL", &email)
            .env("GIT_COMMITTER_DATE", &date);
        run(commit, &format!("commit {i} ({:?})", c.message))?;
        created.insert(branch);
    }
    for t in &r.tags {
        let target = t
            .target
            .clone()
            .unwrap_or_else(|| default_branch.to_string());
        let cmd = match &t.message {
            Some(m) => {
                let mut c = git(&["tag", "-a", &t.name, &target, "-m", m]);
                c.env("GIT_COMMITTER_NAME", "Seed Author")
                    .env("GIT_COMMITTER_EMAIL", "seed@users.noreply.example");
                c
            }
            None => git(&["tag", &t.name, &target]),
        };
        run(cmd, &format!("tag {} at {target}", t.name))?;
    }
    run(
        git(&[
            "symbolic-ref",
            "HEAD",
            &format!("refs/heads/{default_branch}"),
        ]),
        "resetting HEAD",
    )?;
    Ok(())
}

fn seed_app(
    sim: &Sim,
    seed: &Seed,
    a: &seed::AppSeed,
) -> anyhow::Result<(u64, Option<u64>, std::path::PathBuf)> {
    let key_path = sim.data_dir.join(format!("app-{}.private-key.pem", a.slug));
    let (private_pem, public_pem) = match &a.private_key_file {
        Some(f) => {
            let pem =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let kp = rcgen::KeyPair::from_pem(&pem).context("parsing the app's private key")?;
            (pem, kp.public_key_pem())
        }
        None => {
            let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
                .context("generating the app's RSA key")?;
            (kp.serialize_pem(), kp.public_key_pem())
        }
    };
    crate::write_private(&key_path, private_pem.as_bytes())?;
    let mut world = sim.world.lock();
    let owner = a
        .owner
        .clone()
        .or_else(|| seed.orgs.first().map(|o| o.login.clone()))
        .context("an app needs an owner (no organisation is seeded)")?;
    let app_id = world.id();
    let now = Utc::now();
    world.apps.insert(
        app_id,
        App {
            id: app_id,
            slug: a.slug.clone(),
            name: a.name.clone().unwrap_or_else(|| a.slug.clone()),
            owner,
            public_key_pem: public_pem,
            webhook_url: a.webhook_url.clone(),
            webhook_secret: a.webhook_secret.clone(),
            events: a.events.clone(),
            permissions: a.permissions.clone(),
            created_at: now,
        },
    );
    let bot = format!("{}[bot]", a.slug);
    if world.account(&bot).is_none() {
        let id = world.id();
        world.accounts.insert(
            bot.clone(),
            Account {
                id,
                login: bot,
                kind: AccountKind::Bot,
                name: None,
                email: None,
                site_admin: false,
                created_at: now,
            },
        );
    }
    let mut first = None;
    for i in &a.installations {
        if world.org(&i.account).is_none() && world.account(&i.account).is_none() {
            bail!("installation on {:?}: no such account", i.account);
        }
        let repositories = match &i.repositories {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        world
                            .repo_id(&i.account, n)
                            .with_context(|| format!("installation repository {}/{n}", i.account))
                    })
                    .collect::<anyhow::Result<BTreeSet<u64>>>()?,
            ),
        };
        let id = world.id();
        world.installations.insert(
            id,
            Installation {
                id,
                app_id,
                account: i.account.clone(),
                repositories,
                permissions: i
                    .permissions
                    .clone()
                    .unwrap_or_else(|| a.permissions.clone()),
                created_at: now,
            },
        );
        first.get_or_insert(id);
    }
    Ok((app_id, first, key_path))
}
