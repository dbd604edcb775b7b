//! Starting, stopping and failing the cluster's daemons (LB nodes and
//! backends), and talking to the nodes through `lbctl`.

use std::{
    fs,
    path::PathBuf,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::bail;
use testbed::ProcessGuard;

use super::{
    backend_addr, find_binary, lb_addr, lb_router_addr, BackendHost, Cluster, LbNode, ADMIN_PORT,
    HTTP_PORT, LB_ASN, METRICS_PORT, RAFT_PORT, ROUTER_ASN, VIP, VIP_TCP_PORT, VIP_UDP_PORT,
};
use crate::pinning::pin_child_to_sim_cpu;

impl Cluster {
    pub(super) fn start_backend(&self, b: &mut BackendHost) -> anyhow::Result<()> {
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
        if self.spec.second_hop {
            cmd.args(["--second-hop-vip", &VIP.to_string()]);
            for peer in (1..=self.spec.backends).filter(|k| *k != b.index) {
                cmd.args(["--second-hop-peer", &backend_addr(peer).to_string()]);
            }
            cmd.arg("--decap-stats").arg(self.decap_stats_path(b.index));
        }
        pin_child_to_sim_cpu(&mut cmd);
        b.process = Some(ProcessGuard::spawn(cmd)?);
        Ok(())
    }

    /// Where backend `j` writes its decapsulator counters.
    fn decap_stats_path(&self, j: usize) -> PathBuf {
        self.dir.path().join(format!("backend{j}.decap.json"))
    }

    /// Backend `j`'s (1-based) decapsulator counters, as it last wrote them
    /// (only with [`ClusterSpec::second_hop`](super::ClusterSpec)).
    pub fn decap_stats(&self, j: usize) -> anyhow::Result<serde_json::Value> {
        let text = fs::read_to_string(self.decap_stats_path(j))?;
        Ok(serde_json::from_str(&text)?)
    }

    pub(super) fn write_lb_config(&self, i: usize) -> anyhow::Result<PathBuf> {
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
[http]
listen = "{a}:{HTTP_PORT}"
[metrics]
listen = "{a}:{METRICS_PORT}"
[log]
format = "plain"
level = "info"
[xdp]
interfaces = ["eth0"]
mode = "driver"
pin_dir = "{pins}"
conn_table_size = {conn_table_size}
flood_threshold = {flood_threshold}
[bgp]
local_asn = {LB_ASN}
router_id = "{a}"
[[bgp.peers]]
address = "{peer}"
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
            conn_table_size = self.spec.conn_table_size,
            flood_threshold = self.spec.flood_threshold,
            peer = lb_router_addr(i),
        );
        let path = d.join(format!("lb{i}.toml"));
        fs::write(&path, text)?;
        Ok(path)
    }

    pub(super) fn start_lb(&self, node: &mut LbNode) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("lb{}.log", node.index)))?;
        let mut cmd = node.ns.command(&find_binary("lbnode")?.to_string_lossy());
        cmd.arg("--config")
            .arg(&node.config)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        pin_child_to_sim_cpu(&mut cmd);
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

    /// Brings LB node `i` back after [`Cluster::fail_lb`]: its link up
    /// again (with the default route the link loss removed) and its daemon
    /// restarted. The restarted daemon adopts the node's pinned maps with
    /// their contents (`Forwarder::load_with`, a hot restart): the
    /// connection cache still holds the flows it served before the kill,
    /// with their backends, and its XDP program stayed attached all along
    /// (pinned link). It rejoins Raft as the member it was, catches up,
    /// programs the applied state (its second-hop windows open at that
    /// install) and announces again.
    pub fn revive_lb(&mut self, i: usize) -> anyhow::Result<()> {
        let ns = &self.lbs[i - 1].ns;
        ns.ip(["link", "set", "eth0", "up"])?;
        ns.ip([
            "route",
            "replace",
            "default",
            "via",
            &lb_router_addr(i).to_string(),
        ])?;
        self.restart_lb(i)
    }

    /// Starts LB node `i`, held back by
    /// [`ClusterSpec::held_back`](super::ClusterSpec): a node that never
    /// ran, with an empty connection cache and no Raft state; it joins as
    /// the initial member it is listed as, and the router already has it
    /// as a BGP neighbour.
    pub fn join_lb(&mut self, i: usize) -> anyhow::Result<()> {
        if !self.spec.held_back.contains(&i) {
            bail!("LB node {i} was not held back");
        }
        if self.lbs[i - 1].process.is_some() {
            bail!("LB node {i} is already running");
        }
        self.restart_lb(i)
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
}
