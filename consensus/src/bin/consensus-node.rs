//! Runs one consensus member as its own process until it is signalled:
//! used by the crash tests (SIGKILL of a real process) and for experiments.
//! The production node daemon embeds `ConsensusNode` instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use edgelb_consensus::{ClusterSecret, ConsensusConfig, ConsensusNode, NodeId};

/// One EdgeLB consensus member.
#[derive(Parser)]
struct Args {
    /// Raft node id.
    #[arg(long)]
    id: NodeId,
    /// Address to listen on for peers.
    #[arg(long)]
    listen: SocketAddr,
    /// Data directory (log and state machine).
    #[arg(long)]
    data_dir: PathBuf,
    /// File holding the cluster secret (at least 16 bytes).
    #[arg(long)]
    secret_file: PathBuf,
    /// Bootstrap a new cluster with these voters (`id=host:port`, repeated);
    /// ignored once the data directory belongs to a cluster.
    #[arg(long, value_parser = parse_member)]
    init: Vec<(NodeId, String)>,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Election timeout lower bound in milliseconds.
    #[arg(long, default_value_t = 400)]
    election_min_ms: u64,
    /// Election timeout upper bound in milliseconds.
    #[arg(long, default_value_t = 800)]
    election_max_ms: u64,
}

fn parse_member(s: &str) -> Result<(NodeId, String), String> {
    let (id, addr) = s.split_once('=').ok_or("expected id=host:port")?;
    let id = id.parse().map_err(|e| format!("bad node id {id:?}: {e}"))?;
    Ok((id, addr.to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret = std::fs::read(&args.secret_file)
        .with_context(|| format!("reading {}", args.secret_file.display()))?;
    let secret = ClusterSecret::new(secret)?;
    let mut config = ConsensusConfig::new(args.id, args.listen, args.data_dir, secret);
    config.timeouts.heartbeat = Duration::from_millis(args.heartbeat_ms);
    config.timeouts.election_min = Duration::from_millis(args.election_min_ms);
    config.timeouts.election_max = Duration::from_millis(args.election_max_ms);
    if !args.init.is_empty() && !args.init.iter().any(|(id, _)| *id == args.id) {
        bail!("--init must include this node ({})", args.id);
    }
    config.initial_members = args.init.into_iter().collect();
    let node = ConsensusNode::start(config).await?;
    println!("READY {}", node.local_addr());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    node.shutdown().await?;
    Ok(())
}
