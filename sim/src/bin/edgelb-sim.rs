//! `edgelb-sim`: runs pieces of the namespace simulation.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "edgelb-sim", about = "EdgeLB network-namespace simulation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Brings the cluster up, configures the VIP, and keeps it up for a while
    /// (for poking at it by hand); tears everything down at the end.
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
        /// TCP address to serve on (e.g. the VIP and port).
        #[arg(long)]
        tcp: Vec<SocketAddr>,
        /// UDP address to serve on.
        #[arg(long)]
        udp: Vec<SocketAddr>,
        /// Interface to attach the XDP decapsulator to (driver mode).
        #[arg(long)]
        decap_interface: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Up { seconds } => {
            let cluster = edgelb_sim::cluster::Cluster::start(Default::default())?;
            cluster.configure_vip(100)?;
            println!("namespaces: client {} router {}", cluster.client.name(), cluster.router.name());
            for n in &cluster.lbs {
                println!("lb{} {}", n.index, n.ns.name());
            }
            for b in &cluster.backends {
                println!("backend{} {}", b.index, b.ns.name());
            }
            println!("dir {}", cluster.dir().display());
            std::thread::sleep(std::time::Duration::from_secs(seconds.min(3600)));
            Ok(())
        }
        Command::ServeBackend { name, tcp, udp, decap_interface } => {
            anyhow::ensure!(tcp.len() == udp.len(), "give as many --tcp as --udp addresses");
            anyhow::ensure!(!tcp.is_empty(), "give at least one --tcp and --udp address");
            let services = tcp
                .iter()
                .zip(&udp)
                .map(|(t, u)| edgelb_sim::backend::Service::start(&name, *t, *u))
                .collect::<std::io::Result<Vec<_>>>()?;
            let _decap = match &decap_interface {
                Some(dev) => Some(edgelb_sim::backend::attach_decap(dev)?),
                None => None,
            };
            eprintln!("edgelb-sim backend {name}: serving {} address pairs", services.len());
            loop {
                std::thread::park();
            }
        }
    }
}
