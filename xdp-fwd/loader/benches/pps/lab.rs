//! The namespace every path of the bench runs in: the forwarder tests'
//! route lab (frames arrive on `fwd0`; backends 10.200.0.0/16 via a
//! gateway on `fwd0`, so the forwarder's encapsulated frames leave with
//! XDP_TX), plus what the kernel paths need to do the same job without
//! XDP, and the counters on both egress sides.

use std::{
    net::Ipv4Addr,
    os::fd::{AsFd, OwnedFd},
};

use crate::{
    common::{
        mac_str,
        raw_bpf::{
            attach_link, attach_type, create_map, load_program, lookup_u64, map_type, prog_type,
        },
        InNamespace, RouteLab,
    },
    programs,
};

/// Backends of every path.
pub const BACKENDS: u32 = 100;

/// The VIP the forwarder serves (TCP port 80).
pub const VIP_EDGELB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// The VIP the kernel balances with multipath routes over VXLAN tunnels.
pub const VIP_ENCAP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 21);
/// The VIP the kernel balances with plain multipath next hops (no tunnel).
pub const VIP_ECMP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);

/// Backend `i` (0-based): where the forwarder and the VXLAN path send to.
pub fn backend(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 0, 1 + i as u8)
}

/// A counter program attached somewhere, with its per-protocol counts.
pub struct Counter {
    counts: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Counter {
    /// Packets counted under IPv4 protocol `proto` (or [`programs::SHORT`]).
    pub fn get(&self, proto: u32) -> u64 {
        lookup_u64(self.counts.as_fd(), proto).expect("counter map lookup")
    }

    /// All counts (index: protocol number).
    pub fn all(&self) -> Vec<u64> {
        (0..256).map(|p| self.get(p)).collect()
    }
}

/// The lab, and which kernel paths could be set up here (with why not).
pub struct Lab {
    /// The route lab (namespace, `fwd0`).
    pub route: RouteLab,
    /// Counts and drops what XDP_TX sends (XDP on `fwd0p`, the peer).
    pub xdp_sink: Counter,
    /// Counts and drops what the kernel's stack sends out of `fwd0`
    /// (tcx egress, before the driver).
    pub tcx_sink: Counter,
    /// The VXLAN encap path, or why it could not be set up.
    pub encap: Result<(), String>,
    /// The plain multipath path, or why it could not be set up.
    pub ecmp: Result<(), String>,
}

/// Attaches a counter (`verdict` after counting) to `dev` with a BPF link.
fn counter_on(lab: &RouteLab, dev: &str, kind: u32, verdict: i32) -> Result<Counter, String> {
    let counts = create_map(map_type::ARRAY, 8, 256).map_err(|e| format!("counter map: {e}"))?;
    let (ptype, data, data_end, attach) = if kind == attach_type::XDP {
        (prog_type::XDP, 0, 4, attach_type::XDP)
    } else {
        (prog_type::SCHED_CLS, 76, 80, attach_type::TCX_EGRESS)
    };
    use std::os::fd::AsRawFd;
    let insns = programs::counter(counts.as_raw_fd(), data, data_end, verdict);
    let prog = load_program(ptype, 0, &insns).map_err(|e| format!("counter program: {e}"))?;
    let ifindex = lab.ns.ifindex(dev);
    let link = lab
        .ns
        .run(|| attach_link(prog.as_fd(), ifindex, attach))
        .map_err(|e| format!("attaching the counter to {dev}: {e}"))?;
    Ok(Counter {
        counts,
        _prog: prog,
        _link: link,
    })
}

impl Lab {
    /// Sets the lab up; the XDP side must work (else nothing can be
    /// measured), the kernel paths report why they cannot.
    pub fn new() -> Result<Self, String> {
        let route = RouteLab::new("pps");
        let ns = &route.ns;
        let e = |e: testbed::Error| e.to_string();
        // Same-interface forwarding would otherwise send a redirect per
        // flow; an operator turns that off on a load balancer.
        for dev in ["all", "default", "fwd0"] {
            ns.sysctl(&format!("net.ipv4.conf.{dev}.send_redirects"), "0")
                .map_err(e)?;
            ns.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")
                .map_err(e)?;
        }
        // Multipath: hash on the 5-tuple (L4), so flows spread over backends.
        ns.sysctl("net.ipv4.fib_multipath_hash_policy", "1")
            .map_err(e)?;
        let xdp_sink = counter_on(&route, "fwd0p", attach_type::XDP, 1)?; // XDP_DROP
        let tcx_sink = counter_on(&route, "fwd0", attach_type::TCX_EGRESS, 2)?; // TC_ACT_SHOT
        let ecmp = Self::ecmp(&route).map_err(|e| e.to_string());
        let encap = Self::encap(&route).map_err(|e| e.to_string());
        Ok(Self {
            route,
            xdp_sink,
            tcx_sink,
            encap,
            ecmp,
        })
    }

    /// VIP_ECMP over 100 on-link next hops (distinct neighbours): the
    /// kernel's L3 load balancing, no tunnel (less work than encapsulating).
    fn ecmp(lab: &RouteLab) -> testbed::Result<()> {
        let mut args: Vec<String> = ["route", "add", format!("{VIP_ECMP}/32").as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for i in 0..BACKENDS {
            let hop = format!("10.99.0.{}", 10 + i);
            lab.ns.ip([
                "neigh",
                "add",
                hop.as_str(),
                "lladdr",
                mac_str([0x02, 0, 0, 0, 3, i as u8]).as_str(),
                "dev",
                "fwd0",
                "nud",
                "permanent",
            ])?;
            args.extend(["nexthop", "via", hop.as_str(), "dev", "fwd0"].map(String::from));
        }
        lab.ns.ip(args).map(|_| ())
    }

    /// VIP_ENCAP over 100 next hops, each a VXLAN tunnel (lightweight
    /// tunnel `encap ip` on a collect-metadata VXLAN device) to a backend:
    /// the kernel's own tunnel load balancing here (this kernel has no
    /// IPIP, GRE or SIT, CONFIG_NET_IPIP unset; VXLAN is built in).
    fn encap(lab: &RouteLab) -> testbed::Result<()> {
        let ns = &lab.ns;
        ns.ip([
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "external",
            "dstport",
            "4789",
            "noudpcsum",
        ])?;
        ns.ip(["addr", "add", "10.250.0.254/24", "dev", "vx0"])?;
        ns.ip(["link", "set", "vx0", "up"])?;
        ns.ip([
            "neigh",
            "add",
            "10.250.0.1",
            "lladdr",
            "02:00:00:00:04:01",
            "dev",
            "vx0",
            "nud",
            "permanent",
        ])?;
        let mut args: Vec<String> = ["route", "add", format!("{VIP_ENCAP}/32").as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for i in 0..BACKENDS {
            args.extend(
                [
                    "nexthop",
                    "encap",
                    "ip",
                    "id",
                    "1",
                    "dst",
                    backend(i).to_string().as_str(),
                    "ttl",
                    "64",
                    "via",
                    "10.250.0.1",
                    "dev",
                    "vx0",
                    "onlink",
                ]
                .map(String::from),
            );
        }
        ns.ip(args).map(|_| ())
    }

    /// Connections the kernel tracks in the lab's namespace.
    pub fn conntrack_count(&self) -> String {
        self.route
            .ns
            .exec_stdout("cat", ["/proc/sys/net/netfilter/nf_conntrack_count"])
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("unreadable ({e})"))
    }
}
