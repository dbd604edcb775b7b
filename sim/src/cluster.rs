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
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};

use crate::{
    frr::{router_config, Frr},
    netns::{disable_offloads, unique_stem, veth_pair, Namespace, ProcessGuard},
};

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
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            lb_nodes: 3,
            backends: 4,
            drain_secs: 2,
            drain_prepend_secs: 0,
        }
    }
}

/// Address of LB node `i` (1-based) on its link to the router.
pub fn lb_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 101, i as u8, 2)
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
        crate::netns::sweep_stale();
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
                &format!("10.101.{i}.1/30"),
                &ns,
                "eth0",
                &format!("{}/30", lb_addr(i)),
            )?;
            ns.ip(["route", "add", "default", "via", &format!("10.101.{i}.1")])?;
            // The forwarder's bpf_fib_lookup routes as a forwarded packet.
            ns.sysctl("net.ipv4.ip_forward", "1")?;
            ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            lb_ns.push(ns);
        }
        let n = spec.lb_nodes;
        let pass = in_namespace(
            router.name(),
            move || -> anyhow::Result<Vec<xdp_fwd::PassProgram>> {
                let mut progs = Vec::new();
                for i in 1..=n {
                    let mut p = xdp_fwd::PassProgram::load()?;
                    p.attach(&format!("l{i}"), xdp_fwd::AttachMode::Driver)?;
                    progs.push(p);
                }
                Ok(progs)
            },
        )??;

        let neighbors: Vec<String> = (1..=spec.lb_nodes)
            .map(|i| lb_addr(i).to_string())
            .collect();
        let frr = Frr::start(
            &router,
            &dir.path().join("frr"),
            &router_config(ROUTER_ASN, "10.100.0.1", LB_ASN, &neighbors),
        )?;

        let bpffs = dir.path().join("bpffs");
        fs::create_dir_all(&bpffs)?;
        let out = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&bpffs)
            .output()?;
        if !out.status.success() {
            bail!("mounting bpffs: {}", String::from_utf8_lossy(&out.stderr));
        }
        crate::netns::register_mount(&bpffs);
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
            cluster.start_lb(&mut node)?;
            cluster.lbs.push(node);
        }
        cluster.wait_for_leader(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The run's temp dir (logs, configs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn start_backend(&self, b: &mut BackendHost) -> anyhow::Result<()> {
        let log = fs::File::create(self.dir.path().join(format!("backend{}.log", b.index)))?;
        let mut cmd = b.ns.command(&find_binary("edgelb-sim")?.to_string_lossy());
        cmd.args([
            "serve-backend",
            "--name",
            &format!("b{}", b.index),
            "--decap-interface",
            "eth0",
        ])
        // TCP on every address: the VIP (DSR) and the backend's own
        // address (health checks). UDP on the VIP only, so answers leave
        // from the VIP.
        .args([
            "--tcp",
            &format!("0.0.0.0:{VIP_TCP_PORT}"),
            "--udp",
            &format!("{VIP}:{VIP_UDP_PORT}"),
        ])
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
        b.process = Some(ProcessGuard::spawn(cmd)?);
        Ok(())
    }

    fn write_lb_config(&self, i: usize) -> anyhow::Result<PathBuf> {
        let d = self.dir.path();
        let members: Vec<String> = (1..=self.spec.lb_nodes)
            .map(|k| {
                format!(
                    "  {{ id = {k}, addr = \"{a}:{RAFT_PORT}\", admin = \"{a}:{ADMIN_PORT}\" }},",
                    a = lb_addr(k)
                )
            })
            .collect();
        let a = lb_addr(i);
        let text = format!(
            r#"[node]
id = {i}
data_dir = "{data}"

[cluster]
listen = "{a}:{RAFT_PORT}"
secret_file = "{secret}"
election_timeout_ms = 500
heartbeat_ms = 100
initial_members = [
{members}
]

[admin]
listen = "{a}:{ADMIN_PORT}"
token_file = "{token}"

[metrics]
listen = "{a}:{METRICS_PORT}"

[log]
format = "plain"
level = "info"

[xdp]
interfaces = ["eth0"]
mode = "driver"
pin_dir = "{pins}"
conn_table_size = 65536

[bgp]
local_asn = {LB_ASN}
router_id = "{a}"

[[bgp.peers]]
address = "10.101.{i}.1"
remote_asn = {ROUTER_ASN}
hold_time_secs = 3

[health]
enabled = true
kind = "tcp"
port = {VIP_TCP_PORT}
interval_ms = 300
timeout_ms = 200
rise = 2
fall = 2

[drain]
period_secs = {drain}
prepend_secs = {prepend}
"#,
            data = d.join(format!("lb{i}-data")).display(),
            secret = d.join("cluster.secret").display(),
            members = members.join("\n"),
            token = self.token_file.display(),
            pins = self._bpffs.path.join(format!("lb{i}")).display(),
            drain = self.spec.drain_secs,
            prepend = self.spec.drain_prepend_secs,
        );
        let path = d.join(format!("lb{i}.toml"));
        fs::write(&path, text)?;
        Ok(path)
    }

    fn start_lb(&self, node: &mut LbNode) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("lb{}.log", node.index)))?;
        let mut cmd = node.ns.command(&find_binary("lbnode")?.to_string_lossy());
        cmd.arg("--config")
            .arg(&node.config)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        node.process = Some(ProcessGuard::spawn(cmd)?);
        Ok(())
    }

    /// Restarts LB node `i` (1-based) after it was stopped or killed.
    pub fn restart_lb(&mut self, i: usize) -> anyhow::Result<()> {
        let mut node = self.lbs.remove(i - 1);
        let result = self.start_lb(&mut node);
        self.lbs.insert(i - 1, node);
        result
    }

    /// Kills LB node `i` with SIGKILL (no withdraw, no detach).
    pub fn kill_lb(&mut self, i: usize) {
        if let Some(p) = self.lbs[i - 1].process.as_ref() {
            p.signal(libc::SIGKILL);
        }
        if let Some(mut p) = self.lbs[i - 1].process.take() {
            p.stop(Duration::from_secs(1));
        }
    }

    /// Fails LB node `i` the way a machine dies: the daemon is killed with
    /// SIGKILL and the node's link loses carrier. Killing only the daemon is
    /// a hot-restart situation, not a failure: its XDP program stays
    /// attached (pinned link) and keeps forwarding, and routers hold its
    /// routes by graceful restart until it comes back.
    pub fn fail_lb(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill_lb(i);
        // The machine is gone: its NIC loses carrier, and the router sees
        // that at once. (A silent death that keeps carrier leaves it to the
        // BGP hold timer, and routers that keep a gracefully restarting
        // peer's routes keep them for its restart time.)
        self.lbs[i - 1].ns.ip(["link", "set", "eth0", "down"])?;
        Ok(())
    }

    /// Sends SIGTERM to LB node `i` and waits up to `limit` for it to exit.
    pub fn stop_lb(&mut self, i: usize, limit: Duration) -> bool {
        self.signal_lb_and_wait(i, libc::SIGTERM, limit)
    }

    /// Sends `signal` to LB node `i` and waits up to `limit` for it to exit
    /// (SIGUSR2: hot restart, the node exits leaving its data plane running).
    pub fn signal_lb_and_wait(&mut self, i: usize, signal: i32, limit: Duration) -> bool {
        let Some(mut p) = self.lbs[i - 1].process.take() else {
            return true;
        };
        p.signal(signal);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if p.has_exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Runs `lbctl` (from the client namespace) against node `i`.
    pub fn lbctl(&self, i: usize, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self
            .client
            .command(&find_binary("lbctl")?.to_string_lossy());
        cmd.args(["--node", &format!("{}:{ADMIN_PORT}", lb_addr(i))])
            .arg("--token-file")
            .arg(&self.token_file)
            .args(args)
            .stdin(Stdio::null());
        Ok(cmd.output()?)
    }

    /// Runs `lbctl`, trying the nodes in turn until one answers successfully.
    pub fn lbctl_any(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut last = String::new();
        for node in &self.lbs {
            if node.process.is_none() {
                continue;
            }
            let out = self.lbctl(node.index, args)?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        bail!("lbctl {args:?} failed on every node: {last}")
    }

    /// `lbctl --json status` parsed.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(
            &self.lbctl_any(&["--json", "status"])?,
        )?)
    }

    fn wait_for_leader(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.status() {
                Ok(s) if !s["leader"].is_null() => return Ok(()),
                Ok(s) => last = s.to_string(),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "no Raft leader within {limit:?}: {last}\n{}",
            self.log_tails(15)
        )
    }

    /// The last `lines` lines of every daemon log of the run, for failures.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for p in names {
            let text = fs::read_to_string(&p).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ---\n", p.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Configures the sim's VIP (TCP and UDP) with every backend at `weight`.
    pub fn configure_vip(&self, weight: u32) -> anyhow::Result<()> {
        for vip in [
            format!("{VIP}:{VIP_TCP_PORT}/tcp"),
            format!("{VIP}:{VIP_UDP_PORT}/udp"),
        ] {
            self.lbctl_any(&["vip", "add", &vip])?;
            for b in &self.backends {
                self.lbctl_any(&[
                    "backend",
                    "add",
                    &vip,
                    &backend_addr(b.index).to_string(),
                    "--weight",
                    &weight.to_string(),
                ])?;
            }
        }
        Ok(())
    }

    /// Waits until the router has an ECMP route to the VIP through exactly
    /// `nodes` next hops; returns them.
    pub fn wait_for_ecmp(&self, nodes: usize, limit: Duration) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + limit;
        let mut hops = Vec::new();
        while Instant::now() < deadline {
            hops = self.vip_next_hops()?;
            if hops.len() == nodes {
                return Ok(hops);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "router has next hops {hops:?} for {VIP}, wanted {nodes}\n{}",
            self.log_tails(15)
        )
    }

    /// The router's kernel next hops for the VIP.
    pub fn vip_next_hops(&self) -> anyhow::Result<Vec<String>> {
        let out = self
            .router
            .ip(["-4", "route", "show", &format!("{VIP}/32")])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut hops: Vec<String> = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_owned())
            .collect();
        hops.sort();
        hops.dedup();
        Ok(hops)
    }

    /// Waits until every running node reports the same table digest at
    /// version >= `min_version`; returns the digest.
    pub fn wait_for_agreement(&self, min_version: u64, limit: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(s) = self.status() {
                let reports: Vec<&serde_json::Value> = s["nodes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n[1].get("Ok")).collect())
                    .unwrap_or_default();
                let running = self.lbs.iter().filter(|n| n.process.is_some()).count();
                let digests: std::collections::BTreeSet<String> = reports
                    .iter()
                    .map(|r| r["table_digest"].as_str().unwrap_or("").to_owned())
                    .collect();
                let versions_ok = reports
                    .iter()
                    .all(|r| r["table_version"].as_u64().unwrap_or(0) >= min_version);
                if reports.len() >= running && digests.len() == 1 && versions_ok {
                    return Ok(digests.into_iter().next().unwrap_or_default());
                }
                last = s.to_string();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "nodes did not agree on one table digest within {limit:?}: {last}\n{}",
            self.log_tails(15)
        )
    }

    /// The table version at the leader now (a linearizable read).
    pub fn current_version(&self) -> anyhow::Result<u64> {
        let v: serde_json::Value =
            serde_json::from_str(&self.lbctl_any(&["--json", "vip", "list"])?)?;
        v["version"]
            .as_u64()
            .ok_or_else(|| anyhow!("no version in {v}"))
    }

    /// Waits until every running node has programmed the leader's current
    /// table and they all report the same digest; returns it.
    pub fn converge(&self, limit: Duration) -> anyhow::Result<String> {
        let version = self.current_version()?;
        self.wait_for_agreement(version, limit)
    }

    /// Cuts LB node `i` off from the other nodes' Raft traffic (policy
    /// rules in the router; its BGP session and client traffic keep going).
    pub fn partition(&self, i: usize) -> anyhow::Result<()> {
        for k in (1..=self.lbs.len()).filter(|k| *k != i) {
            for (from, to) in [(lb_addr(k), lb_addr(i)), (lb_addr(i), lb_addr(k))] {
                self.router.ip([
                    "rule",
                    "add",
                    "from",
                    &from.to_string(),
                    "to",
                    &to.to_string(),
                    "blackhole",
                ])?;
            }
        }
        Ok(())
    }

    /// Undoes [`Cluster::partition`].
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        for k in (1..=self.lbs.len()).filter(|k| *k != i) {
            for (from, to) in [(lb_addr(k), lb_addr(i)), (lb_addr(i), lb_addr(k))] {
                self.router.ip([
                    "rule",
                    "del",
                    "from",
                    &from.to_string(),
                    "to",
                    &to.to_string(),
                    "blackhole",
                ])?;
            }
        }
        Ok(())
    }

    /// The current Raft leader's node index.
    pub fn leader(&self) -> anyhow::Result<usize> {
        let s = self.status()?;
        s["leader"]
            .as_u64()
            .map(|l| l as usize)
            .ok_or_else(|| anyhow!("no leader: {s}"))
    }

    /// Waits until the router's next hops for the VIP satisfy `f`; returns
    /// the time it took.
    pub fn wait_next_hops(
        &self,
        limit: Duration,
        f: impl Fn(&[String]) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let hops = self.vip_next_hops()?;
            if f(&hops) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!("router next hops {hops:?} did not change as expected within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The socket address of the VIP's TCP service.
    pub fn vip_tcp(&self) -> SocketAddr {
        SocketAddr::from((VIP, VIP_TCP_PORT))
    }
}
