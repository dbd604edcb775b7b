//! Packets per second through one LB node: small UDP datagrams over many
//! flows from the client, through the router, through the node (which sends
//! each one on towards the one backend, back through the router). Two ways
//! through the node, measured in alternating rounds of the same run:
//!
//! * `edgelb-xdp`: the real `lbnode` with its XDP forwarder (driver mode),
//!   which encapsulates to the backend and sends the packet back out;
//! * `kernel-forwarding`: a second, identical node namespace with no XDP
//!   that routes the same flows with the kernel's IP forwarding (the router
//!   steers them there with a policy rule).
//!
//! The node's whole receive path (the XDP program, or the kernel's receive
//! and forwarding) runs in a threaded NAPI poll: a kernel thread of its own,
//! pinned to a CPU apart from the sender's. Its CPU time (schedstat) per
//! forwarded packet is the node's cost, whatever else the machine runs. The
//! router's receive of what the node sends out is threaded too, in its own
//! thread on the same CPU (as a NIC's transmit ring would be, handing a
//! packet over costs no cross-CPU wake-up), so it is not charged to the
//! node; there the packets are counted and dropped (a blackhole route).
//! Forwarded packets/s depend on how much of that CPU the rest of the
//! machine leaves; the cost per packet does not. The plain forwarder's link
//! carries a pass-all XDP program so that its veth runs the same NAPI
//! receive path as the LB node's.
//!
//! Linux IPVS would be the natural comparison, but this kernel is built
//! without it (CONFIG_IP_VS unset), so that comparison cannot run here.
//! Forwarded packets are counted on the router's end of the node's link.

use std::{net::SocketAddr, time::Duration};

use anyhow::{anyhow, bail};
use serde_json::json;

use super::{cpu::CpuTimes, udp_flood};
use testbed::{
    namespace::{disable_offloads, unique_stem, veth_pair},
    stats::median,
    Namespace,
};

use crate::{
    cluster::{backend_addr, in_namespace, Cluster, ClusterSpec, VIP},
    pinning,
    scenario::Report,
};

/// UDP port of the benchmark's VIP (no packet reaches a backend: see the
/// module doc).
pub const BENCH_PORT: u16 = 9000;

/// Policy-routing table on the router: VIP traffic from the client to the
/// plain forwarder.
const TO_FORWARDER: &str = "200";
/// Policy-routing table on the router: drops what the node under test
/// forwarded, once counted.
const SINK: &str = "201";

/// Benchmark settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Rounds per mode.
    pub rounds: usize,
    /// Seconds of load per round.
    pub seconds: f64,
    /// UDP flows (distinct source ports).
    pub flows: usize,
}

/// The two ways through the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Xdp,
    Kernel,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Xdp => "edgelb-xdp",
            Mode::Kernel => "kernel-forwarding",
        }
    }
}

/// One round's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    offered_pps: f64,
    delivered_pps: f64,
    node_ns_per_packet: f64,
    busy: f64,
    softirq: f64,
}

/// (rx, tx) packet counters of `dev` in `ns`.
fn counters(ns: &Namespace, dev: &str) -> anyhow::Result<(u64, u64)> {
    let out = ns.ip(["-s", "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let s = &v[0]["stats64"];
    let get = |d: &str| {
        s[d]["packets"]
            .as_u64()
            .ok_or_else(|| anyhow!("no {d} packets for {dev}: {v}"))
    };
    Ok((get("rx")?, get("tx")?))
}

/// Pids of the NAPI kernel threads now running.
fn napi_threads() -> std::collections::BTreeSet<i32> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("napi/")) {
            out.insert(pid);
        }
    }
    out
}

/// Moves `dev`'s receive polling in `ns` to its own kernel thread, pinned to `cpu`.
fn threaded_napi_on(ns: &Namespace, dev: &str, cpu: usize) -> anyhow::Result<Vec<i32>> {
    let before = napi_threads();
    ns.exec(
        "sh",
        ["-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")],
    )?;
    let new: Vec<i32> = napi_threads().difference(&before).copied().collect();
    if new.is_empty() {
        bail!("no NAPI thread appeared for {dev} in {}", ns.name());
    }
    for &pid in &new {
        if let Err(e) = testbed::cpu::pin_to_cpu(pid, cpu) {
            bail!("pinning NAPI thread {pid}: {e}");
        }
    }
    Ok(new)
}

/// Nanoseconds the threads `pids` have run so far (`/proc/<pid>/schedstat`).
fn runtime_ns(pids: &[i32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in pids {
        let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
        total += text
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("unexpected schedstat of {pid}: {text:?}"))?;
    }
    Ok(total)
}

/// A CPU other than the sim's, for the node under test.
fn forwarding_cpu() -> anyhow::Result<usize> {
    let sim = pinning::sim_cpu();
    // SAFETY: plain-data cpu set filled by the kernel.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        (0..libc::CPU_SETSIZE as usize)
            .find(|c| libc::CPU_ISSET(*c, &allowed) && Some(*c) != sim)
            .ok_or_else(|| anyhow!("the pps benchmark needs two CPUs: one sends, one forwards"))
    }
}

/// The plain forwarder: a namespace linked to the router like an LB node,
/// routing with the kernel only.
fn plain_forwarder(cluster: &Cluster) -> anyhow::Result<(Namespace, Vec<xdp_fwd::PassProgram>)> {
    let ns = Namespace::create(&format!("{}pf", unique_stem()))?;
    let router = &cluster.router;
    veth_pair(router, "f0", &ns, "eth0")?;
    for (n, dev, addr) in [
        (router, "f0", "10.103.0.1/30"),
        (&ns, "eth0", "10.103.0.2/30"),
    ] {
        n.ip(["addr", "add", addr, "dev", dev])?;
        disable_offloads(n, dev)?;
        n.ip(["link", "set", dev, "up"])?;
    }
    ns.ip(["route", "add", "default", "via", "10.103.0.1"])?;
    for (k, v) in [
        ("net.ipv4.ip_forward", "1"),
        // It sends packets back out the interface they came in on: no
        // redirects, no reverse-path filter.
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.eth0.send_redirects", "0"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.eth0.rp_filter", "0"),
    ] {
        ns.sysctl(k, v)?;
    }
    // Same link set-up as an LB node's: the router's end runs a pass-all
    // XDP program (needed there for XDP_TX; here for a like-for-like path),
    // and so does the forwarder's end (the LB node's runs the forwarder).
    let mut pass = Vec::new();
    for (n, dev) in [(router.name(), "f0"), (ns.name(), "eth0")] {
        pass.push(in_namespace(
            n,
            move || -> anyhow::Result<xdp_fwd::PassProgram> {
                let mut p = xdp_fwd::PassProgram::load()?;
                p.attach(dev, xdp_fwd::AttachMode::Driver)?;
                Ok(p)
            },
        )??);
    }
    let vip = format!("{VIP}/32");
    router.ip([
        "route",
        "add",
        &vip,
        "via",
        "10.103.0.2",
        "dev",
        "f0",
        "table",
        TO_FORWARDER,
    ])?;
    let backend = format!("{}/32", backend_addr(1));
    router.ip(["route", "add", "blackhole", &vip, "table", SINK])?;
    router.ip(["route", "add", "blackhole", &backend, "table", SINK])?;
    router.ip([
        "rule", "add", "pref", "100", "iif", "f0", "to", &vip, "lookup", SINK,
    ])?;
    // Only the encapsulated packets (IP-in-IP, the VIP's encapsulation):
    // the node's health checks to the backend must keep getting through.
    router.ip([
        "rule", "add", "pref", "100", "iif", "l1", "to", &backend, "ipproto", "4", "lookup", SINK,
    ])?;
    Ok((ns, pass))
}

/// Steers the client's VIP traffic through the plain forwarder (or not).
fn steer_to_forwarder(cluster: &Cluster, on: bool) -> anyhow::Result<()> {
    let vip = format!("{VIP}/32");
    let verb = if on { "add" } else { "del" };
    cluster.router.ip([
        "rule",
        verb,
        "pref",
        "101",
        "iif",
        "c0",
        "to",
        &vip,
        "lookup",
        TO_FORWARDER,
    ])?;
    Ok(())
}

fn measure(
    cluster: &Cluster,
    mode: Mode,
    opts: &Options,
    cpu: usize,
    node_threads: &[i32],
) -> anyhow::Result<Sample> {
    let (through, other) = match mode {
        Mode::Xdp => ("l1", "f0"),
        Mode::Kernel => ("f0", "l1"),
    };
    let (via_before, _) = counters(&cluster.router, through)?;
    let (other_before, _) = counters(&cluster.router, other)?;
    let cpu_before = CpuTimes::now(Some(cpu))?;
    let run_before = runtime_ns(node_threads)?;
    let target = SocketAddr::from((VIP, BENCH_PORT));
    let (flows, duration) = (opts.flows, Duration::from_secs_f64(opts.seconds));
    let sent = in_namespace(cluster.client.name(), move || {
        pinning::pin_to_sim_cpu()?;
        udp_flood::flood(target, flows, duration)
    })??;
    let cpu_after = CpuTimes::now(Some(cpu))?;
    // Let queues drain before reading the forwarded count.
    std::thread::sleep(Duration::from_millis(200));
    let run_after = runtime_ns(node_threads)?;
    let (via_after, _) = counters(&cluster.router, through)?;
    let (other_after, _) = counters(&cluster.router, other)?;
    let delivered = via_after.saturating_sub(via_before);
    let stray = other_after.saturating_sub(other_before);
    // The packets must really have gone through the node under test only
    // (a few BGP keepalives aside).
    if delivered < sent / 100 || stray > delivered / 100 + 20 {
        bail!(
            "{}: sent {sent}, {delivered} came back through {through}, {stray} through {other}",
            mode.name()
        );
    }
    let (busy, softirq, _) = cpu_before.shares_until(&cpu_after);
    Ok(Sample {
        offered_pps: sent as f64 / opts.seconds,
        delivered_pps: delivered as f64 / opts.seconds,
        node_ns_per_packet: if delivered > 0 {
            run_after.saturating_sub(run_before) as f64 / delivered as f64
        } else {
            f64::NAN
        },
        busy,
        softirq,
    })
}

/// Runs the benchmark: one LB node, one backend, alternating rounds.
pub fn run(opts: Options) -> anyhow::Result<Report> {
    if opts.rounds == 0 || opts.flows == 0 || !(0.2..=60.0).contains(&opts.seconds) {
        bail!("rounds and flows must be positive and seconds within 0.2..=60");
    }
    let cluster = Cluster::start(ClusterSpec {
        lb_nodes: 1,
        backends: 1,
        ..Default::default()
    })?;
    let vip = format!("{VIP}:{BENCH_PORT}/udp");
    cluster.lbctl_any(&["vip", "add", &vip])?;
    cluster.lbctl_any(&[
        "backend",
        "add",
        &vip,
        &backend_addr(1).to_string(),
        "--weight",
        "100",
    ])?;
    cluster.converge(Duration::from_secs(20))?;
    cluster.wait_for_ecmp(1, Duration::from_secs(30))?;
    let (forwarder, _pass) = plain_forwarder(&cluster)?;
    let cpu = forwarding_cpu()?;
    let sender_cpu = pinning::sim_cpu();
    let xdp_threads = threaded_napi_on(&cluster.lbs[0].ns, "eth0", cpu)?;
    let kernel_threads = threaded_napi_on(&forwarder, "eth0", cpu)?;
    for dev in ["l1", "f0"] {
        threaded_napi_on(&cluster.router, dev, cpu)?;
    }

    let mut samples: Vec<(Mode, Sample)> = Vec::new();
    for _ in 0..opts.rounds.min(100) {
        for mode in [Mode::Xdp, Mode::Kernel] {
            let s = if mode == Mode::Kernel {
                steer_to_forwarder(&cluster, true)?;
                let s = measure(&cluster, mode, &opts, cpu, &kernel_threads);
                steer_to_forwarder(&cluster, false)?;
                s
            } else {
                measure(&cluster, mode, &opts, cpu, &xdp_threads)
            };
            samples.push((mode, s?));
        }
    }
    let summary = |mode: Mode| {
        let of = |f: fn(&Sample) -> f64| -> f64 {
            median(
                &samples
                    .iter()
                    .filter(|(m, _)| *m == mode)
                    .map(|(_, s)| f(s))
                    .collect::<Vec<_>>(),
            )
        };
        json!({"offered_pps": of(|s| s.offered_pps), "forwarded_pps": of(|s| s.delivered_pps),
               "node_ns_per_packet": of(|s| s.node_ns_per_packet), "cpu_busy": of(|s| s.busy),
               "cpu_softirq": of(|s| s.softirq)})
    };
    let (x, k) = (summary(Mode::Xdp), summary(Mode::Kernel));
    let g = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    let row = |mode: Mode, v: &serde_json::Value| {
        let ns = g(v, "node_ns_per_packet");
        vec![
            mode.name().to_owned(),
            format!("{:.0}", g(v, "offered_pps")),
            format!("{:.0}", g(v, "forwarded_pps")),
            format!("{ns:.0}"),
            format!("{:.0}", 1e9 / ns),
            format!("{:.0}%", 100.0 * g(v, "cpu_busy")),
        ]
    };
    let pps_ratio = g(&x, "forwarded_pps") / g(&k, "forwarded_pps");
    let cost_ratio = g(&k, "node_ns_per_packet") / g(&x, "node_ns_per_packet");
    Ok(Report {
        name: "packets/s through one LB node (UDP, 46-byte packets, medians)",
        header: vec![
            "PATH THROUGH THE NODE",
            "OFFERED PPS",
            "FORWARDED PPS",
            "NODE CPU NS/PKT",
            "PPS PER NODE CPU",
            "FWD CPU BUSY (ALL TASKS)",
        ],
        rows: vec![
            row(Mode::Xdp, &x),
            row(Mode::Kernel, &k),
            vec![
                "ratio xdp / kernel".into(),
                "-".into(),
                format!("{pps_ratio:.2}x"),
                format!("{:.2}x", 1.0 / cost_ratio),
                format!("{cost_ratio:.2}x"),
                "-".into(),
            ],
            vec![
                "linux-ipvs: not run, CONFIG_IP_VS unset".into(),
                "n/a".into(),
                "n/a".into(),
                "n/a".into(),
                "n/a".into(),
                "n/a".into(),
            ],
        ],
        data: json!({
            "rounds": opts.rounds, "seconds": opts.seconds, "flows": opts.flows,
            "sending_cpu": sender_cpu, "forwarding_cpu": cpu,
            "xdp": x, "kernel": k, "forwarded_ratio": pps_ratio, "node_cost_ratio": cost_ratio,
            "ipvs": "not available: CONFIG_IP_VS unset in this kernel",
            "samples": samples.iter().map(|(m, s)| json!({"mode": m.name(), "forwarded_pps": s.delivered_pps,
                "offered_pps": s.offered_pps, "node_ns_per_packet": s.node_ns_per_packet,
                "cpu_busy": s.busy, "cpu_softirq": s.softirq})).collect::<Vec<_>>(),
        }),
    })
}
