//! `lbctl`'s command line.

use std::{net::IpAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use edgelb_consensus::{cluster_state::MAX_FLOOD_THRESHOLD, FloodAdmission};

/// EdgeLB admin CLI: talks to any node; writes reach the Raft leader.
#[derive(Debug, Parser)]
#[command(name = "lbctl", version, about)]
pub struct Cli {
    /// Admin address of any node.
    #[arg(
        long,
        env = "LBCTL_NODE",
        default_value = "127.0.0.1:7100",
        global = true
    )]
    pub node: String,
    /// File holding the admin token.
    #[arg(long, env = "LBCTL_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print JSON instead of human tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Milliseconds to wait for each answer.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub timeout_ms: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

// Named apart from `edgelb_consensus::Command`, which some of these become.
/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Leader, every node's applied version and table digest, BGP and XDP.
    Status,
    /// Manage VIPs.
    #[command(subcommand)]
    Vip(VipCommand),
    /// Manage the backends of a VIP.
    #[command(subcommand)]
    Backend(BackendCommand),
    /// Manage Raft membership.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Change cluster-wide settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Live per-VIP and per-backend rates of the node.
    Stats {
        /// Seconds between the two samples the rates come from.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Which backend a flow goes to, computed as the data plane does.
    Lookup {
        /// The VIP, e.g. 198.18.0.10:80/tcp.
        vip: String,
        /// The client, ADDR:PORT.
        #[arg(long)]
        from: String,
    },
    /// Make the cluster match a desired-state file, as one table version.
    Apply(ApplyArgs),
    /// Write the cluster's state in the desired-state format (`apply -f`).
    Export {
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Print a completion script for a shell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print lbctl's man page (roff).
    Man,
}

/// `lbctl apply ...`
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The desired-state file (TOML; see deploy/desired-state.example.toml).
    #[arg(short = 'f', long)]
    pub file: PathBuf,
    /// Print the plan (changes, and the share of each VIP's slots that would
    /// move) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove the VIPs and backends the file does not name.
    #[arg(long)]
    pub prune: bool,
    /// Refuse unless the cluster's table is at this version (checked again
    /// when the batch is applied, on every node).
    #[arg(long)]
    pub expect_version: Option<u64>,
}

/// `lbctl vip ...`
#[derive(Debug, Subcommand)]
pub enum VipCommand {
    /// Add a VIP (no backends yet).
    Add {
        /// ADDR:PORT/tcp|udp, or ADDR/tcp|udp for all ports.
        vip: String,
        #[command(flatten)]
        args: VipArgs,
    },
    /// Change a VIP's hashing and encapsulation options.
    Update {
        /// The VIP.
        vip: String,
        #[command(flatten)]
        args: VipArgs,
    },
    /// Remove a VIP and all its backends.
    Remove {
        /// The VIP.
        vip: String,
    },
    /// List VIPs.
    List,
}

// The `vip add` / `vip update` flags; `xdp_fwd::VipOptions` is the
// forwarder's own (binary) form of the same settings.
/// Options of a VIP.
#[derive(Debug, Args)]
pub struct VipArgs {
    /// Encapsulation towards the backends.
    #[arg(long, value_enum, default_value_t = EncapArg::Ipip)]
    pub encap: EncapArg,
    /// GUE destination port (with --encap gue).
    #[arg(long, default_value_t = 6080)]
    pub gue_port: u16,
    /// Leave the source port out of the flow hash.
    #[arg(long)]
    pub hash_no_source_port: bool,
    /// Hash on the destination port only.
    #[arg(long)]
    pub hash_dst_port_only: bool,
}

/// Encapsulation choice.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EncapArg {
    /// IP-in-IP / IP6-in-IP6.
    Ipip,
    /// Generic UDP encapsulation.
    Gue,
}

/// `lbctl backend ...`
#[derive(Debug, Subcommand)]
pub enum BackendCommand {
    /// Add a backend to a VIP.
    Add {
        /// The VIP.
        vip: String,
        /// The backend's address.
        address: IpAddr,
        /// Relative weight (1..=65535).
        #[arg(long, default_value_t = 100)]
        weight: u32,
    },
    /// Remove a backend (its flows move to others).
    Remove {
        /// The VIP.
        vip: String,
        /// The backend's address.
        address: IpAddr,
    },
    /// Change a backend's weight.
    SetWeight {
        /// The VIP.
        vip: String,
        /// The backend's address.
        address: IpAddr,
        /// New weight (1..=65535).
        weight: u32,
    },
    /// Stop sending new flows to a backend; existing flows continue.
    Drain {
        /// The VIP.
        vip: String,
        /// The backend's address.
        address: IpAddr,
    },
    /// Make a drained or down backend active again.
    Undrain {
        /// The VIP.
        vip: String,
        /// The backend's address.
        address: IpAddr,
    },
    /// Take a backend out completely (no flows at all).
    Down {
        /// The VIP.
        vip: String,
        /// The backend's address.
        address: IpAddr,
    },
    /// List the backends of a VIP.
    List {
        /// The VIP.
        vip: String,
    },
}

/// `lbctl node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List Raft members.
    List,
    /// Add a node (as a learner, then promoted to voter unless --learner).
    Add {
        /// Its Raft node id.
        id: u64,
        /// Its Raft RPC address, ADDR:PORT.
        addr: String,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        /// Its Raft node id.
        id: u64,
    },
}

/// `lbctl settings ...`
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Set the cluster-wide hash seed and Maglev table size.
    Set {
        /// Flow hash seed.
        #[arg(long)]
        hash_seed: u64,
        /// Maglev table size (a prime, e.g. 65537).
        #[arg(long)]
        table_size: u32,
    },
    /// Set how the forwarders keep established connections: the second-hop
    /// window and the SYN-flood admission threshold (an option left out
    /// keeps the cluster's current value).
    Connection {
        /// Seconds each node keeps a VIP's previous table after a change
        /// (0..=3600; 0 turns the second hop off).
        #[arg(long)]
        second_hop_window_secs: Option<u32>,
        /// New flows per second per CPU above which the cache spares
        /// established flows: a number, `auto` (sized from the cache), `off`,
        /// or `node` (each node's `xdp.flood_threshold`; a cluster value wins
        /// over it).
        #[arg(long, value_parser = parse_flood_threshold)]
        flood_threshold: Option<FloodAdmission>,
    },
}

/// `--flood-threshold`: a rate, `auto`, `off` or `node`.
pub fn parse_flood_threshold(s: &str) -> Result<FloodAdmission, String> {
    match s {
        "node" => Ok(FloodAdmission::NodeConfig),
        "auto" => Ok(FloodAdmission::FromCapacity),
        "off" => Ok(FloodAdmission::Off),
        n => match n.parse::<u64>() {
            Ok(rate) if (1..=MAX_FLOOD_THRESHOLD).contains(&rate) => {
                Ok(FloodAdmission::PerSecond(rate))
            }
            _ => Err(format!(
                "flood_threshold `{n}`: expected 1..={MAX_FLOOD_THRESHOLD} new flows per second \
                 per CPU, `auto`, `off` or `node`"
            )),
        },
    }
}
