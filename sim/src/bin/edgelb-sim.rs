//! `edgelb-sim`: the namespace simulation — the demo, the scenarios, and
//! the backend service the simulated backends run.

use std::{net::SocketAddr, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use edgelb_sim::{
    cluster::{Cluster, ClusterSpec, VIP, VIP_UDP_PORT},
    scenario::{self, Report},
    traffic,
};

#[derive(Parser)]
#[command(name = "edgelb-sim", about = "EdgeLB network-namespace simulation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The demo: 3 LB nodes, 4 backends, FRR; traffic; live per-node and
    /// per-backend counts; table digests agreeing; then teardown.
    Demo {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Runs one scenario and prints its report.
    Scenario {
        /// Which one.
        #[arg(value_enum)]
        name: ScenarioName,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Runs a benchmark and prints its report.
    Bench {
        /// Which one.
        #[command(subcommand)]
        which: BenchName,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Brings the cluster up with the VIP configured and keeps it up (for
    /// poking at it by hand); tears everything down at the end or on Ctrl-C.
    Up {
        /// Seconds to keep the cluster up.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Runs the backend service (TCP line echo + UDP echo) until killed.
    ServeBackend {
        /// Name the service puts in front of every answer.
        #[arg(long)]
        name: String,
        /// TCP address to serve on.
        #[arg(long)]
        tcp: Vec<SocketAddr>,
        /// UDP address to serve on.
        #[arg(long)]
        udp: Vec<SocketAddr>,
        /// Interface to attach the XDP decapsulator to (driver mode).
        #[arg(long)]
        decap_interface: Option<String>,
        /// VIP to enable second-hop handling for in the decapsulator (with
        /// `--second-hop-peer` as the only addresses it forwards to).
        #[arg(long, requires = "decap_interface")]
        second_hop_vip: Vec<std::net::IpAddr>,
        /// Another backend of the second-hop VIPs.
        #[arg(long)]
        second_hop_peer: Vec<std::net::IpAddr>,
        /// File the decapsulator's counters are written to (JSON, every
        /// half second), for the sim to read.
        #[arg(long, requires = "decap_interface")]
        decap_stats: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchName {
    /// `lbctl apply` of 10 VIPs x 20 backends against 210 single lbctl calls.
    Apply {
        /// Rounds of each.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Time from an lbctl write until every node's maps hold the new table.
    Convergence {
        /// Writes to time.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
    /// Packets/s through one LB node: EdgeLB's XDP against kernel forwarding.
    Pps {
        /// Rounds per path (alternating).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds of load per round.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// UDP flows.
        #[arg(long, default_value_t = 256)]
        flows: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ScenarioName {
    Balance,
    NodeFailure,
    NodeDrain,
    BackendChanges,
    LeaderKill,
    Partition,
    /// A 10 s SYN flood during a backend change, admission on and off.
    SynFlood,
    /// Backend changes each followed within a second by an LB node's
    /// kill -9 (a backend added, the node back, a backend drained), second
    /// hop on (window 60 s) and off (window 0).
    RehashAfterChange,
    /// A backend added, then within a second a new LB node (empty cache)
    /// joins, second hop on (window 60 s) and off (window 0).
    JoinAfterChange,
}

fn run_scenario(name: ScenarioName) -> anyhow::Result<Report> {
    match name {
        ScenarioName::Balance => scenario::balance::run(3, &[100, 100, 200, 400], 400, 400),
        ScenarioName::NodeFailure => scenario::node_failure::run(60),
        ScenarioName::NodeDrain => scenario::node_drain::run(60),
        ScenarioName::BackendChanges => scenario::backend_changes::run(60),
        ScenarioName::LeaderKill => scenario::leader_kill::run(40),
        ScenarioName::Partition => scenario::partition::run(),
        ScenarioName::SynFlood => scenario::syn_flood::run(50, std::time::Duration::from_secs(10)),
        ScenarioName::RehashAfterChange => scenario::rehash_after_change::run(60),
        ScenarioName::JoinAfterChange => scenario::join_after_change::run(100),
    }
}

fn demo(seconds: u64) -> anyhow::Result<()> {
    println!("bringing up: client, FRR router, 3 lbnode (XDP driver mode), 4 backends ...");
    let cluster = Cluster::start(ClusterSpec::default())?;
    println!("configuring {VIP}:80/tcp and {VIP}:{VIP_UDP_PORT}/udp through lbctl ...");
    cluster.configure_vip(100)?;
    for vip in [format!("{VIP}:80/tcp"), format!("{VIP}:{VIP_UDP_PORT}/udp")] {
        cluster.lbctl_any(&["backend", "set-weight", &vip, "10.102.4.2", "200"])?;
    }
    let digest = cluster.converge(Duration::from_secs(20))?;
    println!(
        "all {} nodes programmed the same table: digest {digest}",
        cluster.lbs.len()
    );
    let hops = cluster.wait_for_ecmp(3, Duration::from_secs(30))?;
    println!("router ECMP next hops for {VIP}: {}", hops.join(", "));
    println!(
        "\n$ lbctl backend list {VIP}:80/tcp\n{}",
        cluster.lbctl_any(&["backend", "list", &format!("{VIP}:80/tcp")])?
    );

    let long = cluster.long_lived(30, Duration::from_millis(50));
    let seconds = seconds.clamp(1, 600);
    println!("\nlive: each second 40 new TCP connections and 40 UDP flows; 30 long-lived TCP connections talking throughout");
    println!(
        "{:>4}  {:<30}  {:<30}  {:<28}  long-lived round trips",
        "t", "new TCP per backend", "UDP flows per backend", "packets per LB node"
    );
    let mut before = scenario::balance::node_packets(&cluster)?;
    for s in 0..seconds {
        let tcp = traffic::tcp_spread(cluster.client.name(), cluster.vip_tcp(), 40)?;
        let udp = traffic::udp_spread(cluster.client.name(), (VIP, VIP_UDP_PORT).into(), 40)?;
        let now = scenario::balance::node_packets(&cluster)?;
        let per_node: Vec<String> = now
            .iter()
            .zip(&before)
            .enumerate()
            .map(|(i, (a, b))| format!("lb{}={}", i + 1, a.saturating_sub(*b)))
            .collect();
        before = now;
        println!(
            "{:>3}s  {:<30}  {:<30}  {:<28}  {}",
            s + 1,
            counts(&tcp),
            counts(&udp),
            per_node.join(" "),
            long.round_trips()
        );
    }
    let outcomes = long.finish()?;
    println!(
        "\nlong-lived connections: {} open, {} broken",
        outcomes.len(),
        scenario::broken(&outcomes)
    );
    let digest = cluster.converge(Duration::from_secs(20))?;
    println!(
        "table digests: all {} nodes agree on {digest}",
        cluster.lbs.len()
    );
    println!("\n$ lbctl status\n{}", cluster.lbctl_any(&["status"])?);
    println!(
        "\n$ lbctl stats (node 1)\n{}",
        String::from_utf8_lossy(&cluster.lbctl(1, &["stats", "--interval", "0.5"])?.stdout)
    );
    println!("tearing down ...");
    Ok(())
}

/// `b1=12 b2=9 ...` from per-backend counts.
fn counts(map: &std::collections::BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::ServeBackend { .. }) {
        edgelb_sim::teardown::teardown_on_signals();
    }
    match cli.command {
        Command::Demo { seconds } => demo(seconds),
        Command::Scenario { name, json } => {
            let report = run_scenario(name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.json())?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
        Command::Bench { which, json } => {
            let report = match which {
                BenchName::Convergence { rounds } => edgelb_sim::bench::convergence::run(rounds)?,
                BenchName::Apply { rounds } => edgelb_sim::bench::apply_batch::run(rounds)?,
                BenchName::Pps {
                    rounds,
                    seconds,
                    flows,
                } => edgelb_sim::bench::pps::run(edgelb_sim::bench::pps::Options {
                    rounds,
                    seconds,
                    flows,
                })?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report.json())?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
        Command::Up { seconds } => {
            let cluster = Cluster::start(ClusterSpec::default())?;
            cluster.configure_vip(100)?;
            println!(
                "namespaces: client {} router {}",
                cluster.client.name(),
                cluster.router.name()
            );
            for n in &cluster.lbs {
                println!("lb{} {}", n.index, n.ns.name());
            }
            for b in &cluster.backends {
                println!("backend{} {}", b.index, b.ns.name());
            }
            println!(
                "dir {} (admin token: {})",
                cluster.dir().display(),
                cluster.token_file.display()
            );
            std::thread::sleep(Duration::from_secs(seconds.min(3600)));
            Ok(())
        }
        Command::ServeBackend {
            name,
            tcp,
            udp,
            decap_interface,
            second_hop_vip,
            second_hop_peer,
            decap_stats,
        } => {
            anyhow::ensure!(
                tcp.len() == udp.len(),
                "give as many --tcp as --udp addresses"
            );
            anyhow::ensure!(!tcp.is_empty(), "give at least one --tcp and --udp address");
            // Started by the sim, so already on the sim's CPU; stated for
            // when it is run by hand.
            edgelb_sim::pinning::pin_to_sim_cpu()?;
            let mut decap = match &decap_interface {
                Some(dev) => Some(edgelb_sim::backend::attach_decap(dev)?),
                None => None,
            };
            if let Some(d) = decap.as_mut() {
                for vip in &second_hop_vip {
                    d.set_second_hop(*vip, &second_hop_peer)?;
                }
            }
            let services = tcp
                .iter()
                .zip(&udp)
                .map(|(t, u)| edgelb_sim::backend::Service::start(&name, *t, *u))
                .collect::<std::io::Result<Vec<_>>>()?;
            eprintln!(
                "edgelb-sim backend {name}: serving {} address pairs",
                services.len()
            );
            loop {
                match (&decap, &decap_stats) {
                    (Some(d), Some(path)) => {
                        edgelb_sim::backend::write_decap_stats(d, path)?;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    _ => std::thread::park(),
                }
            }
        }
    }
}
