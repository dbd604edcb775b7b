//! Stand-alone speaker: announces the routes of a TOML file until stopped.
//!
//! For operators and lab use; the node daemon embeds [`edgelb_bgp::BgpSpeaker`]
//! instead. SIGHUP re-reads the routes, SIGTERM/SIGINT end every session with
//! Cease / Administrative Shutdown.
//!
//! ```toml
//! [speaker]
//! local_asn = 65010
//! router_id = "10.0.1.2"
//! [[speaker.peers]]
//! address = "10.0.1.1"
//! remote_asn = 65000
//!
//! [[routes]]
//! prefix = "192.0.2.10/32"
//! communities = [4260429924]   # optional, also med, as_path_prepend, local_pref
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use edgelb_bgp::{BgpSpeaker, DesiredRoutes, IpNet, RouteAttributes, SpeakerConfig};
use serde::Deserialize;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "EdgeLB announce-only BGP speaker")]
struct Args {
    /// TOML file with [speaker] and [[routes]].
    #[arg(long)]
    config: PathBuf,
}

#[derive(Deserialize)]
struct File {
    speaker: SpeakerConfig,
    #[serde(default)]
    routes: Vec<RouteEntry>,
}

#[derive(Deserialize)]
struct RouteEntry {
    prefix: IpNet,
    #[serde(flatten)]
    attributes: RouteAttributes,
}

fn read(path: &Path) -> anyhow::Result<(SpeakerConfig, DesiredRoutes)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut routes = DesiredRoutes::new();
    for r in file.routes {
        routes.insert(r.prefix, r.attributes)?;
    }
    Ok((file.speaker, routes))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let (config, routes) = read(&args.config)?;
    let speaker = BgpSpeaker::start(config).await?;
    speaker.set_desired(routes);
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => match read(&args.config) {
                // Peers are fixed at start; only the routes are reloaded.
                Ok((_, routes)) => {
                    tracing::info!(prefixes = routes.len(), "routes reloaded");
                    speaker.set_desired(routes);
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "reload failed; keeping the current routes"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    speaker.shutdown().await;
    Ok(())
}
