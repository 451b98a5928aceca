//! Dispatch, and the long-running commands: standalone, coordinator, worker.

use repovault_common::telemetry::LogFormat;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use repovault_common::secret::Secret;
use repovault_coordinator::config::{ConfigError, CoordinatorConfig, Settings};
use repovault_worker::local_paths::LocalPaths;
use repovault_worker::session::{self, Exit, WorkerConfig};

use crate::admin_client::{CliError, connect};
use crate::args::{Cli, Command, StandaloneArgs, WorkerArgs};
use crate::connection::Timeouts;
use crate::output::{errln, outln};
use crate::{commands, exit};

/// Runs the command and returns its exit code; a failed write of its output (other than a
/// closed pipe, see `output`) turns a success into a failure.
pub async fn run_cli(cli: Cli) -> i32 {
    let result = match dispatch(cli).await {
        Err(e) => Err(crate::failure::refine(e).await),
        ok => ok,
    };
    let written = crate::output::finish();
    match result.and_then(|code| written.map(|()| code)) {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {}", e.message);
            e.code
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32, CliError> {
    let Cli {
        coordinator: url,
        admin_token_file,
        ca_file,
        output: out,
        timeout,
        log_format,
        command,
    } = cli;
    let admin_command = match command {
        Command::Standalone(a) => return standalone(a, log_format).await,
        Command::Coordinator { config, check } => {
            return if check {
                check_coordinator(&config)
            } else {
                coordinator(&config, log_format).await
            };
        }
        Command::Worker(a) => return worker(&url, ca_file, &a, log_format).await,
        Command::Completions { shell } => return crate::docs::completions(shell),
        Command::Man { dir } => return crate::docs::man_pages(&dir),
        admin_command => admin_command,
    };
    let timeouts = Timeouts::new(timeout);
    let mut c = connect(
        &url,
        admin_token_file.as_deref(),
        ca_file.as_deref(),
        timeouts,
    )
    .await?;
    commands::run(&mut c, admin_command, out).await
}

/// `coordinator --config FILE --check`: the effective configuration on stdout, what a start
/// would create on stderr; nothing written.
fn check_coordinator(config: &Path) -> Result<i32, CliError> {
    let cfg = CoordinatorConfig::load(config).map_err(config_err)?;
    let report = cfg.check().map_err(config_err)?;
    outln!("{}", report.effective.trim_end());
    for p in &report.would_create {
        errln!("a start would create {}", p.display());
    }
    errln!("{}: valid", config.display());
    Ok(exit::OK)
}

/// A new master key is announced as a log event (a warning: it must be copied somewhere safe),
/// so a JSON log stays one object per line.
fn announce_master_key(path: &Path) {
    tracing::warn!(path = %path.display(), "generated a new master key (mode 0600): keep a copy, it seals every credential and organisation key");
}

fn init_telemetry(format: LogFormat) {
    repovault_common::telemetry::init("info", format);
}

/// Files the long-running commands create are private: `state.redb`, `master.key`, storage,
/// download artifacts, worker caches (and what git writes into them) get no group or other
/// permission bits, whatever umask the process was started with (0022 outside the systemd
/// units, which set `UMask=0077` themselves). The admin commands keep the caller's umask: what
/// they write (a restored repository, a ZIP) is the caller's to share.
fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The local roots tasks may use, checked now (each must exist): a worker that cannot use
/// them refuses to start rather than failing every task later.
fn local_paths(
    roots: &[std::path::PathBuf],
    refused: &[std::path::PathBuf],
) -> Result<LocalPaths, CliError> {
    LocalPaths::new(roots, refused).map_err(|e| CliError::usage(format!("--allow-local-root: {e}")))
}

/// Cancelled on SIGINT or SIGTERM.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

fn config_err(e: ConfigError) -> CliError {
    CliError::usage(e.to_string())
}

/// The settings `standalone` runs with (public so tests start the same thing in-process).
pub async fn standalone_settings(
    data_dir: &Path,
    listen: std::net::SocketAddr,
    http: Option<std::net::SocketAddr>,
    heartbeat: &str,
) -> Result<Settings, ConfigError> {
    let mut cfg = CoordinatorConfig::for_data_dir(data_dir);
    cfg.listen = listen;
    cfg.heartbeat_interval = heartbeat.to_string();
    let mut s = cfg.resolve().await?;
    s.http_listen = http;
    Ok(s)
}

/// Slots of each in-process worker of `standalone`.
const STANDALONE_SLOTS: u32 = 2;

async fn standalone(a: StandaloneArgs, log_format: LogFormat) -> Result<i32, CliError> {
    private_umask();
    init_telemetry(log_format);
    let settings = standalone_settings(&a.data_dir, a.listen, Some(a.http_listen), &a.heartbeat)
        .await
        .map_err(config_err)?;
    if let Some(p) = &settings.master_key_created {
        announce_master_key(p);
    }
    tracing::info!(settings = ?settings, "starting standalone");
    let join_token = settings.join_token.clone();
    // The data directory holds every worker's cache and the storage: never a task's source or
    // target, even under an allowed root.
    let local = local_paths(&a.allow_local_roots, std::slice::from_ref(&a.data_dir))?;
    let handle = repovault_coordinator::server::start(settings)
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    let url = handle.url();
    let metrics = handle.http_addr.map(|a| a.to_string()).unwrap_or_default();
    let workers = match a.autoscale {
        Some(b) => format!("{}..{} workers, following the queue", b.min, b.max),
        None => format!("{} workers", a.workers),
    };
    // The banner is for a person at a terminal; a JSON log gets it as an event, one object per
    // line.
    match log_format {
        LogFormat::Text => errln!(
            "repovault standalone: coordinator on {url}, metrics on http://{metrics}/metrics, {workers}"
        ),
        LogFormat::Json => {
            tracing::info!(coordinator = %url, metrics = %format!("http://{metrics}/metrics"), workers = %workers, "repovault standalone")
        }
    }
    let shutdown = shutdown_signal();
    let data_dir = a.data_dir.clone();
    let stop = shutdown.clone();
    let spawn = move |i: u32, exit_when_idle: Option<Duration>| {
        let cfg = WorkerConfig {
            coordinator: url.clone(),
            ca_file: None,
            client_cert: None,
            join_token: join_token.clone(),
            name: format!("standalone-{i}"),
            slots: STANDALONE_SLOTS,
            exit_when_idle,
            cache_dir: data_dir.join("cache").join(format!("worker-{i}")),
            cache_max_bytes: None,
            scratch_dir: data_dir.join("scratch").join(format!("worker-{i}")),
            drain_grace: Duration::from_secs(30),
            local_paths: local.clone(),
            full_check_every: repovault_worker::session::DEFAULT_FULL_CHECK_EVERY,
        };
        let stop = stop.clone();
        let run: futures::future::BoxFuture<'static, ()> = Box::pin(async move {
            if let Err(e) = session::run(cfg, stop).await {
                tracing::error!(error = %e, "worker stopped");
            }
        });
        run
    };
    match a.autoscale {
        Some(bounds) => {
            crate::autoscale::run(
                handle.core.scaling.clone(),
                bounds,
                STANDALONE_SLOTS,
                std::sync::Arc::new(spawn),
                shutdown.clone(),
            )
            .await
        }
        None => {
            let mut workers = tokio::task::JoinSet::new();
            for i in 0..a.workers {
                workers.spawn(spawn(i, None));
            }
            shutdown.cancelled().await;
            while workers.join_next().await.is_some() {}
        }
    }
    handle.shutdown().await;
    Ok(exit::OK)
}

async fn coordinator(config: &Path, log_format: LogFormat) -> Result<i32, CliError> {
    private_umask();
    init_telemetry(log_format);
    let cfg = CoordinatorConfig::load(config).map_err(config_err)?;
    let settings = cfg.resolve().await.map_err(config_err)?;
    if let Some(p) = &settings.master_key_created {
        announce_master_key(p);
    }
    tracing::info!(settings = ?settings, "starting coordinator");
    if let Some(group) = settings.group.clone() {
        use repovault_coordinator::leadership::coordinator_group;
        coordinator_group::check(&settings).map_err(CliError::usage)?;
        coordinator_group::run(settings, group, shutdown_signal())
            .await
            .map_err(|e| CliError::failed(e.to_string()))?;
        return Ok(exit::OK);
    }
    let handle = repovault_coordinator::server::start(settings)
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    shutdown_signal().cancelled().await;
    handle.shutdown().await;
    Ok(exit::OK)
}

async fn worker(
    url: &str,
    ca_file: Option<std::path::PathBuf>,
    a: &WorkerArgs,
    log_format: LogFormat,
) -> Result<i32, CliError> {
    private_umask();
    init_telemetry(log_format);
    let token = std::fs::read_to_string(&a.join_token_file).map_err(|e| {
        CliError::usage(format!(
            "--join-token-file {}: {e}",
            a.join_token_file.display()
        ))
    })?;
    let parse = |what: &str, v: &str| {
        humantime::parse_duration(v)
            .map_err(|e| CliError::usage(format!("{what} {v:?} is not a duration like 60s: {e}")))
    };
    let cfg = WorkerConfig {
        coordinator: url.to_string(),
        ca_file,
        // Paths only: the key is read when the worker connects, never passed as an argument.
        client_cert: a.client_cert.files(),
        join_token: Secret::new(token.trim()),
        name: a
            .name
            .clone()
            .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into())),
        slots: a.slots,
        exit_when_idle: a
            .exit_when_idle
            .as_deref()
            .map(|v| parse("--exit-when-idle", v))
            .transpose()?,
        cache_dir: a.cache_dir.clone(),
        cache_max_bytes: a.cache_max_bytes,
        scratch_dir: a.cache_dir.join(".scratch"),
        drain_grace: parse("--drain-grace", &a.drain_grace)?,
        full_check_every: parse("--full-check-every", &a.full_check_every)?,
        // The cache, its scratch and the storage root are refused at each check.
        local_paths: local_paths(&a.allow_local_roots, &[])?,
    };
    let shutdown = shutdown_signal();
    if let Some(addr) = a.metrics_listen {
        let bound = repovault_worker::worker_metrics::serve(addr, shutdown.clone())
            .await
            .map_err(|e| CliError::usage(format!("--metrics-listen {addr}: {e}")))?;
        tracing::info!(metrics = %format!("http://{bound}/metrics"), "worker metrics served");
    }
    match session::run(cfg, shutdown).await {
        Ok(Exit::Shutdown) | Ok(Exit::Idle) => Ok(exit::OK),
        Err(session::WorkerError::Refused(m)) => Err(CliError::new(
            exit::UNREACHABLE,
            format!("coordinator refused this worker: {m}"),
        )),
        Err(e) => Err(CliError::new(exit::UNREACHABLE, e.to_string())),
    }
}
