//! The simulated cluster: a client, a router running FRR with ECMP, N load
//! balancer nodes running the real `lbnode` with XDP in driver mode on their
//! veth, and M backends that decapsulate in XDP and answer clients directly.
//!
//! ```text
//!  client 10.100.0.2 ── c0 ┐
//!                          │ router (FRR, AS 65000, ECMP, L4 multipath hash)
//!  lb i  10.101.i.2 ─── li ┤   learns the VIP from every LB node by BGP
//!  backend j 10.102.j.2 bj ┘
//! ```
//!
//! Everything (namespaces, daemons, BPF pins) is removed when [`Cluster`]
//! drops, also when a test panics.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{anyhow, bail};

use testbed::{
    namespace::{disable_offloads, unique_stem, veth_pair},
    routers::Frr,
    Namespace, ProcessGuard,
};

use crate::router::router_config;

mod nodes;
mod observe;
mod routing;

/// AS of the router.
pub const ROUTER_ASN: u32 = 65000;
/// AS of every LB node.
pub const LB_ASN: u32 = 65010;
/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
/// The VIP the sim serves (TCP 80, UDP 53).
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// TCP port of the VIP.
pub const VIP_TCP_PORT: u16 = 80;
/// UDP port of the VIP.
pub const VIP_UDP_PORT: u16 = 53;
/// Raft port of every node.
pub const RAFT_PORT: u16 = 7000;
/// Admin API port of every node.
pub const ADMIN_PORT: u16 = 7100;
/// Prometheus port of every node.
pub const METRICS_PORT: u16 = 9100;
/// Port of every LB node's JSON HTTP API (`[http]`).
pub const HTTP_PORT: u16 = 7200;

/// Shape of a simulated cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Load-balancer nodes (1..=50).
    pub lb_nodes: usize,
    /// Backends (1..=50).
    pub backends: usize,
    /// Seconds an LB node keeps forwarding after withdrawing on SIGTERM.
    pub drain_secs: u64,
    /// Seconds an LB node announces a prepended AS_PATH on SIGTERM before
    /// withdrawing (0: withdraw at once).
    pub drain_prepend_secs: u64,
    /// Every node's `xdp.conn_table_size` (entries per CPU).
    pub conn_table_size: u32,
    /// Every node's `xdp.flood_threshold`, as a TOML value (`"auto"`,
    /// `"off"` or a number).
    pub flood_threshold: String,
    /// Backends get second-hop handling for the VIP (every other backend a
    /// peer), write their decapsulator counters for
    /// [`Cluster::decap_stats`], and the router's backend links get an XDP
    /// program so the backends' XDP_TX frames arrive (veth driver-mode rule).
    pub second_hop: bool,
    /// LB nodes (1-based) listed in every node's Raft initial members and
    /// peered by the router, but not started by [`Cluster::start`]: they
    /// join later with [`Cluster::join_lb`], empty caches and all. Node 1
    /// cannot be held back: it bootstraps the cluster.
    pub held_back: Vec<usize>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            lb_nodes: 3,
            backends: 4,
            drain_secs: 2,
            drain_prepend_secs: 0,
            conn_table_size: 65536,
            flood_threshold: "\"auto\"".into(),
            second_hop: false,
            held_back: Vec::new(),
        }
    }
}

/// Address of LB node `i` (1-based) on its link to the router.
pub fn lb_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 101, i as u8, 2)
}

/// The router's address on its link to LB node `i`: the node's default
/// route and BGP peer.
pub fn lb_router_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 101, i as u8, 1)
}

/// Address of backend `j` (1-based).
pub fn backend_addr(j: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 102, j as u8, 2)
}

/// Where the workspace's binaries are: `EDGELB_BIN_DIR`, else next to (or
/// one above) the running executable, as cargo lays out tests and binaries.
pub fn find_binary(name: &str) -> anyhow::Result<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("EDGELB_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_owned());
            if let Some(up) = dir.parent() {
                dirs.push(up.to_owned());
            }
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("binary `{name}` not found in {dirs:?}; build the workspace first"))
}

/// One load-balancer node.
pub struct LbNode {
    /// 1-based index (also its Raft id).
    pub index: usize,
    /// The daemon (None after it was killed).
    pub process: Option<ProcessGuard>,
    /// Its namespace.
    pub ns: Namespace,
    /// Its config file.
    pub config: PathBuf,
}

/// One backend.
pub struct BackendHost {
    /// 1-based index.
    pub index: usize,
    /// Its service + decapsulator.
    pub process: Option<ProcessGuard>,
    /// Its namespace.
    pub ns: Namespace,
}

/// A private bpffs mount for the nodes' pinned maps, unmounted on drop.
struct BpfFs {
    path: PathBuf,
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A running simulated cluster. Fields drop in order: processes before the
/// namespaces they live in.
pub struct Cluster {
    /// The nodes.
    pub lbs: Vec<LbNode>,
    /// The backends.
    pub backends: Vec<BackendHost>,
    /// The router's FRR.
    pub frr: Frr,
    _pass: Vec<xdp_fwd::PassProgram>,
    /// The router namespace.
    pub router: Namespace,
    /// The client namespace.
    pub client: Namespace,
    _bpffs: BpfFs,
    dir: tempfile::TempDir,
    /// The admin token.
    pub token_file: PathBuf,
    spec: ClusterSpec,
}

/// Runs `f` in `ns`'s network namespace on a fresh thread and waits for it.
pub fn in_namespace<T: Send + 'static>(
    ns_name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    crate::traffic::spawn_in_namespace(ns_name, f)
        .join()
        .map_err(|_| anyhow!("namespace thread panicked"))?
}

fn link(
    a: &Namespace,
    a_if: &str,
    a_addr: &str,
    b: &Namespace,
    b_if: &str,
    b_addr: &str,
) -> anyhow::Result<()> {
    veth_pair(a, a_if, b, b_if)?;
    for (ns, dev, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        ns.ip(["addr", "add", addr, "dev", dev])?;
        disable_offloads(ns, dev)?;
        ns.ip(["link", "set", dev, "up"])?;
    }
    Ok(())
}

impl Cluster {
    /// Builds the topology, starts FRR, the backends and the nodes, and waits
    /// until the Raft cluster has a leader.
    pub fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        if !(1..=50).contains(&spec.lb_nodes) || !(1..=50).contains(&spec.backends) {
            bail!("lb_nodes and backends must be within 1..=50");
        }
        if let Some(i) = spec
            .held_back
            .iter()
            .find(|i| !(2..=spec.lb_nodes).contains(*i))
        {
            bail!(
                "held-back LB node {i} is not one of 2..={}: node 1 bootstraps the cluster",
                spec.lb_nodes
            );
        }
        // A majority of the initial members must start, or no leader is elected.
        if spec.lb_nodes - spec.held_back.len() <= spec.lb_nodes / 2 {
            bail!(
                "holding back {:?} of {} LB nodes leaves no Raft majority",
                spec.held_back,
                spec.lb_nodes
            );
        }
        testbed::namespace::sweep_stale();
        let stem = unique_stem();
        let dir = tempfile::Builder::new().prefix("edgelb-sim").tempdir()?;
        let client = Namespace::create(&format!("{stem}cl"))?;
        let router = Namespace::create(&format!("{stem}rt"))?;
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.fib_multipath_hash_policy", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ] {
            router.sysctl(k, v)?;
        }
        link(
            &client,
            "eth0",
            "10.100.0.2/24",
            &router,
            "c0",
            "10.100.0.1/24",
        )?;
        client.ip(["route", "add", "default", "via", "10.100.0.1"])?;

        // Backends.
        let mut backend_ns = Vec::new();
        for j in 1..=spec.backends {
            let ns = Namespace::create(&format!("{stem}b{j}"))?;
            link(
                &router,
                &format!("b{j}"),
                &format!("10.102.{j}.1/30"),
                &ns,
                "eth0",
                &format!("{}/30", backend_addr(j)),
            )?;
            ns.ip(["route", "add", "default", "via", &format!("10.102.{j}.1")])?;
            crate::backend::prepare_backend(&ns, &[VIP.into()])?;
            if spec.second_hop {
                // The decapsulator's bpf_fib_lookup routes a second hop as a
                // forwarded packet: refused while forwarding is off.
                ns.sysctl("net.ipv4.ip_forward", "1")?;
                ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            }
            backend_ns.push(ns);
        }

        // LB node links; the router's end needs an XDP program for the
        // nodes' XDP_TX frames to be delivered (veth driver-mode rule).
        let mut lb_ns = Vec::new();
        for i in 1..=spec.lb_nodes {
            let ns = Namespace::create(&format!("{stem}l{i}"))?;
            link(
                &router,
                &format!("l{i}"),
                &format!("{}/30", lb_router_addr(i)),
                &ns,
                "eth0",
                &format!("{}/30", lb_addr(i)),
            )?;
            ns.ip([
                "route",
                "add",
                "default",
                "via",
                &lb_router_addr(i).to_string(),
            ])?;
            // The forwarder's bpf_fib_lookup routes as a forwarded packet.
            ns.sysctl("net.ipv4.ip_forward", "1")?;
            ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            lb_ns.push(ns);
        }
        let n = spec.lb_nodes;
        let backends_xdp_tx = if spec.second_hop { spec.backends } else { 0 };
        let pass = in_namespace(
            router.name(),
            move || -> anyhow::Result<Vec<xdp_fwd::PassProgram>> {
                let mut progs = Vec::new();
                let links = (1..=n)
                    .map(|i| format!("l{i}"))
                    .chain((1..=backends_xdp_tx).map(|j| format!("b{j}")));
                for dev in links {
                    let mut p = xdp_fwd::PassProgram::load()?;
                    p.attach(&dev, xdp_fwd::AttachMode::Driver)?;
                    progs.push(p);
                }
                Ok(progs)
            },
        )??;

        let neighbors: Vec<String> = (1..=spec.lb_nodes)
            .map(|i| lb_addr(i).to_string())
            .collect();
        // zebra and bgpd run on the sim's CPU like every other sim process.
        let frr = crate::pinning::on_sim_cpu(|| {
            Frr::start(
                &router,
                &dir.path().join("frr"),
                "sim-router",
                &router_config(ROUTER_ASN, "10.100.0.1", LB_ASN, &neighbors),
            )
        })??;
        // Routes with their next hops inline, not kernel nexthop groups:
        // with groups, the kernel drops an LB node's next hop from the
        // group when its link loses carrier, and zebra, believing the group
        // intact, never puts it back when the node returns (seen: FRR's RIB
        // with 3 next hops, the kernel's group with 2).
        frr.vtysh("configure terminal\nno zebra nexthop kernel enable")?;

        let bpffs = dir.path().join("bpffs");
        fs::create_dir_all(&bpffs)?;
        let out = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&bpffs)
            .output()?;
        if !out.status.success() {
            bail!("mounting bpffs: {}", String::from_utf8_lossy(&out.stderr));
        }
        crate::teardown::register_mount(&bpffs);
        let bpffs = BpfFs { path: bpffs };

        let token_file = dir.path().join("admin.token");
        fs::write(&token_file, "sim-admin-token-0123456789")?;
        fs::write(
            dir.path().join("cluster.secret"),
            "sim-cluster-secret-0123456789",
        )?;

        let mut cluster = Cluster {
            lbs: Vec::new(),
            backends: Vec::new(),
            frr,
            _pass: pass,
            router,
            client,
            _bpffs: bpffs,
            dir,
            token_file,
            spec,
        };
        for (j, ns) in backend_ns.into_iter().enumerate() {
            let mut b = BackendHost {
                index: j + 1,
                process: None,
                ns,
            };
            cluster.start_backend(&mut b)?;
            cluster.backends.push(b);
        }
        for (i, ns) in lb_ns.into_iter().enumerate() {
            let config = cluster.write_lb_config(i + 1)?;
            let mut node = LbNode {
                index: i + 1,
                process: None,
                ns,
                config,
            };
            if !cluster.spec.held_back.contains(&node.index) {
                cluster.start_lb(&mut node)?;
            }
            cluster.lbs.push(node);
        }
        cluster.wait_for_leader(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The run's temp dir (logs, configs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
