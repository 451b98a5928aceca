//! `forge-sim --seed FILE --listen 127.0.0.1:0 [--data-dir DIR]`: starts the simulator and
//! prints one JSON line (the ready line) on stdout when it accepts connections; runs until
//! SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "forge-sim",
    about = "A GitHub (Enterprise) simulator for tests: REST under /api/v3, git smart HTTP, LFS, Apps, rate limits, webhooks",
    long_about = "Starts a stateful GitHub simulator over HTTPS with a CA made at start-up and prints one JSON \
line on stdout when ready: api_url, git_url, uploads_url, ca_cert, token, app_id, installation_id, \
app_private_key, data_dir, listen. The seed file (JSON, or TOML by extension) is documented in \
tests/forge-sim/README.md. Knobs (rate limits, token lifetime, injected failures) live in the \
seed's [options] and can be changed at run time with PATCH /_sim/options."
)]
struct Args {
    /// Seed file (JSON, or TOML when it ends in .toml). Without it: one user and no organisation.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where repositories, LFS objects, the CA and keys are kept (default: a temporary directory
    /// removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FORGE_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let seed = match &args.seed {
        Some(p) => forge_sim::seed::Seed::from_file(p)?,
        None => forge_sim::seed::Seed::default(),
    };
    let sim = forge_sim::ForgeSim::start(&seed, args.listen, args.data_dir.as_deref())
        .await
        .context("starting forge-sim")?;
    println!("{}", serde_json::to_string(sim.ready())?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
