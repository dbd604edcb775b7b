//! Packets per second through one LB node: small UDP datagrams over many
//! flows from the client, through the router, through the node, back
//! through the router to one backend. Two ways through the node, measured
//! in alternating rounds of the same run:
//!
//! * `edgelb-xdp`: the real `lbnode` with its XDP forwarder (driver mode),
//!   which encapsulates to the backend and sends the packet back out;
//! * `kernel-forwarding`: a second, identical node namespace with no XDP
//!   that routes the same flows with the kernel's IP forwarding (the router
//!   steers them there and on to the backend with policy rules).
//!
//! Linux IPVS would be the natural comparison, but this kernel is built
//! without it (CONFIG_IP_VS unset), so that comparison cannot run here.
//! Delivered packets are counted on the router's link to the backend.

use std::{net::SocketAddr, time::Duration};

use anyhow::{anyhow, bail};
use serde_json::json;

use super::{cpu::CpuTimes, median, udp_flood};
use crate::{
    cluster::{backend_addr, in_namespace, Cluster, ClusterSpec, VIP},
    netns::{disable_offloads, unique_stem, veth_pair, Namespace},
    scenario::Report,
};

/// UDP port of the benchmark's VIP (nothing listens there: the backend
/// drops the datagrams after decapsulation, so no replies load the run).
pub const BENCH_PORT: u16 = 9000;

/// Policy-routing table on the router: VIP traffic from the client to the
/// plain forwarder.
const TO_FORWARDER: &str = "200";
/// Policy-routing table on the router: VIP traffic from the plain forwarder
/// to the backend.
const TO_BACKEND: &str = "201";

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
    busy: f64,
    softirq: f64,
    cpu_us_per_packet: f64,
}

/// (rx, tx) packet counters of `dev` in `ns`.
fn counters(ns: &Namespace, dev: &str) -> anyhow::Result<(u64, u64)> {
    let out = ns.ip(["-s", "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let s = &v[0]["stats64"];
    let get = |d: &str| s[d]["packets"].as_u64().ok_or_else(|| anyhow!("no {d} packets for {dev}: {v}"));
    Ok((get("rx")?, get("tx")?))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// The plain forwarder: a namespace linked to the router like an LB node,
/// routing with the kernel only.
fn plain_forwarder(cluster: &Cluster) -> anyhow::Result<(Namespace, xdp_fwd::PassProgram)> {
    let ns = Namespace::create(&format!("{}pf", unique_stem()))?;
    let router = &cluster.router;
    veth_pair(router, "f0", &ns, "eth0")?;
    for (n, dev, addr) in [(router, "f0", "10.103.0.1/30"), (&ns, "eth0", "10.103.0.2/30")] {
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
    // XDP program (needed there for XDP_TX; here for a like-for-like path).
    let pass = in_namespace(router.name(), || -> anyhow::Result<xdp_fwd::PassProgram> {
        let mut p = xdp_fwd::PassProgram::load()?;
        p.attach("f0", xdp_fwd::AttachMode::Driver)?;
        Ok(p)
    })??;
    let vip = format!("{VIP}/32");
    router.ip(["route", "add", &vip, "via", "10.103.0.2", "dev", "f0", "table", TO_FORWARDER])?;
    router.ip(["route", "add", &vip, "via", &backend_addr(1).to_string(), "dev", "b1", "table", TO_BACKEND])?;
    router.ip(["rule", "add", "pref", "100", "iif", "f0", "to", &vip, "lookup", TO_BACKEND])?;
    Ok((ns, pass))
}

/// Steers the client's VIP traffic through the plain forwarder (or not).
fn steer_to_forwarder(cluster: &Cluster, on: bool) -> anyhow::Result<()> {
    let vip = format!("{VIP}/32");
    let verb = if on { "add" } else { "del" };
    cluster.router.ip(["rule", verb, "pref", "101", "iif", "c0", "to", &vip, "lookup", TO_FORWARDER])?;
    Ok(())
}

fn measure(cluster: &Cluster, mode: Mode, opts: &Options) -> anyhow::Result<Sample> {
    let through = match mode {
        Mode::Xdp => "l1",
        Mode::Kernel => "f0",
    };
    let (_, b_before) = counters(&cluster.router, "b1")?;
    let (via_before, _) = counters(&cluster.router, through)?;
    let cpu_before = CpuTimes::now()?;
    let target = SocketAddr::from((VIP, BENCH_PORT));
    let (flows, duration) = (opts.flows, Duration::from_secs_f64(opts.seconds));
    let sent = in_namespace(cluster.client.name(), move || {
        crate::netns::pin_to_sim_cpu()?;
        udp_flood::flood(target, flows, duration)
    })??;
    let cpu_after = CpuTimes::now()?;
    // Let queues drain before reading the delivered count.
    std::thread::sleep(Duration::from_millis(200));
    let (_, b_after) = counters(&cluster.router, "b1")?;
    let (via_after, _) = counters(&cluster.router, through)?;
    let delivered = b_after.saturating_sub(b_before);
    let via = via_after.saturating_sub(via_before);
    // The packets must really have come back through the node under test.
    if delivered > 0 && (via as f64) < 0.9 * delivered as f64 {
        bail!("{}: {delivered} packets delivered but only {via} came back through {through}", mode.name());
    }
    let (busy, softirq, _) = cpu_before.shares_until(&cpu_after);
    let busy_secs = cpu_after.busy.saturating_sub(cpu_before.busy) as f64 / ticks_per_second();
    Ok(Sample {
        offered_pps: sent as f64 / opts.seconds,
        delivered_pps: delivered as f64 / opts.seconds,
        busy,
        softirq,
        cpu_us_per_packet: if delivered > 0 { busy_secs * 1e6 / delivered as f64 } else { f64::NAN },
    })
}

/// Runs the benchmark: one LB node, one backend, alternating rounds.
pub fn run(opts: Options) -> anyhow::Result<Report> {
    if opts.rounds == 0 || opts.flows == 0 || !(0.2..=60.0).contains(&opts.seconds) {
        bail!("rounds and flows must be positive and seconds within 0.2..=60");
    }
    let cluster = Cluster::start(ClusterSpec { lb_nodes: 1, backends: 1, ..Default::default() })?;
    let vip = format!("{VIP}:{BENCH_PORT}/udp");
    cluster.lbctl_any(&["vip", "add", &vip])?;
    cluster.lbctl_any(&["backend", "add", &vip, &backend_addr(1).to_string(), "--weight", "100"])?;
    cluster.converge(Duration::from_secs(20))?;
    cluster.wait_for_ecmp(1, Duration::from_secs(30))?;
    let (_forwarder, _pass) = plain_forwarder(&cluster)?;

    let mut samples: Vec<(Mode, Sample)> = Vec::new();
    for _ in 0..opts.rounds.min(100) {
        for mode in [Mode::Xdp, Mode::Kernel] {
            steer_to_forwarder(&cluster, mode == Mode::Kernel)?;
            let s = measure(&cluster, mode, &opts);
            if mode == Mode::Kernel {
                steer_to_forwarder(&cluster, false)?;
            }
            samples.push((mode, s?));
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let summary = |mode: Mode| {
        let of = |f: fn(&Sample) -> f64| -> f64 {
            median(&samples.iter().filter(|(m, _)| *m == mode).map(|(_, s)| f(s)).collect::<Vec<_>>())
        };
        (of(|s| s.offered_pps), of(|s| s.delivered_pps), of(|s| s.busy), of(|s| s.softirq), of(|s| s.cpu_us_per_packet))
    };
    let (xo, xd, xb, xs, xc) = summary(Mode::Xdp);
    let (ko, kd, kb, ks, kc) = summary(Mode::Kernel);
    let row = |mode: Mode, o: f64, d: f64, b: f64, s: f64, c: f64| {
        vec![mode.name().to_owned(), format!("{o:.0}"), format!("{d:.0}"), format!("{:.1}%", b * 100.0),
             format!("{:.1}%", s * 100.0), format!("{c:.2}")]
    };
    let ratio = if kd > 0.0 { xd / kd } else { f64::NAN };
    let cpu_ratio = if xc > 0.0 { kc / xc } else { f64::NAN };
    Ok(Report {
        name: "packets/s through one LB node (UDP, 46-byte packets)",
        header: vec!["PATH THROUGH THE NODE", "OFFERED PPS", "DELIVERED PPS", "CPU BUSY", "SOFTIRQ", "CPU US/PKT"],
        rows: vec![
            row(Mode::Xdp, xo, xd, xb, xs, xc),
            row(Mode::Kernel, ko, kd, kb, ks, kc),
            vec!["ratio xdp/kernel".into(), "-".into(), format!("{ratio:.2}x"), "-".into(), "-".into(),
                 format!("{cpu_ratio:.2}x less")],
            vec!["linux-ipvs: not run, CONFIG_IP_VS unset".into(), "n/a".into(), "n/a".into(), "n/a".into(), "n/a".into(), "n/a".into()],
        ],
        data: json!({
            "rounds": opts.rounds, "seconds": opts.seconds, "flows": opts.flows, "cpus": cpus,
            "xdp": {"offered_pps": xo, "delivered_pps": xd, "busy": xb, "softirq": xs, "cpu_us_per_packet": xc},
            "kernel": {"offered_pps": ko, "delivered_pps": kd, "busy": kb, "softirq": ks, "cpu_us_per_packet": kc},
            "delivered_ratio": ratio, "cpu_per_packet_ratio": cpu_ratio,
            "ipvs": "not available: CONFIG_IP_VS unset in this kernel",
            "samples": samples.iter().map(|(m, s)| json!({"mode": m.name(), "delivered_pps": s.delivered_pps,
                "offered_pps": s.offered_pps, "busy": s.busy, "softirq": s.softirq})).collect::<Vec<_>>(),
        }),
    })
}
