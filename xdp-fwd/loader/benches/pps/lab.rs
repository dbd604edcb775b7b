//! The live-frame driver's namespace: the forwarder tests' route lab
//! (frames arrive on `fwd0`; backends 10.200.0.0/16 via a gateway on
//! `fwd0`, so the forwarder's encapsulated frames leave with XDP_TX), the
//! counters on both egress sides, and the kernel paths (routes, or an
//! nftables DNAT, doing the same job without XDP), which the TAP driver
//! sets up the same way.

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
        InNamespace, Namespace, RouteLab,
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
/// The VIP the kernel balances with nftables (jhash DNAT, conntrack).
pub const VIP_NFT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 22);

/// Connections the kernel-nft path must be able to track at once.
const NFT_FLOWS: u64 = 1_100_000;
/// The nftables table of the kernel-nft path.
const NFT_TABLE: &str = "edgelb_pps";

/// First nexthop object id of each kernel path (then one per backend; the
/// group is `first + BACKENDS`).
const ECMP_IDS: u32 = 1000;
const ENCAP_IDS: u32 = 2000;

/// Routes `vip` over a multipath group of the next hops `first ..
/// first + BACKENDS` (nexthop objects: one route with 100 inline next hops
/// is beyond what `ip` can send).
fn route_over_group(ns: &Namespace, vip: Ipv4Addr, first: u32) -> testbed::Result<()> {
    let members: Vec<String> = (first..first + BACKENDS).map(|i| i.to_string()).collect();
    let group = (first + BACKENDS).to_string();
    ns.ip(["nexthop", "add", "id", &group, "group", &members.join("/")])?;
    ns.ip(["route", "add", &format!("{vip}/32"), "nhid", &group])
        .map(|_| ())
}

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
    /// The kernel paths on `fwd0`.
    pub kernel: KernelPaths,
}

/// Attaches a counter (`verdict` after counting) to `dev` with a BPF link.
pub fn counter_on(ns: &Namespace, dev: &str, kind: u32, verdict: i32) -> Result<Counter, String> {
    let counts = create_map(map_type::ARRAY, 8, 256).map_err(|e| format!("counter map: {e}"))?;
    let (ptype, data, data_end, attach) = if kind == attach_type::XDP {
        (prog_type::XDP, 0, 4, attach_type::XDP)
    } else {
        (prog_type::SCHED_CLS, 76, 80, attach_type::TCX_EGRESS)
    };
    use std::os::fd::AsRawFd;
    let insns = programs::counter(counts.as_raw_fd(), data, data_end, verdict);
    let prog = load_program(ptype, 0, &insns).map_err(|e| format!("counter program: {e}"))?;
    let ifindex = ns.ifindex(dev);
    let link = ns
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
        let xdp_sink = counter_on(&route.ns, "fwd0p", attach_type::XDP, 1)?; // XDP_DROP
        let kernel = KernelPaths::new(&route.ns, "fwd0")?;
        Ok(Self {
            route,
            xdp_sink,
            kernel,
        })
    }
}

/// Connections the kernel tracks in `ns`.
pub fn conntrack_count(ns: &Namespace) -> String {
    ns.exec_stdout("cat", ["/proc/sys/net/netfilter/nf_conntrack_count"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unreadable ({e})"))
}

/// The kernel paths on ingress device `dev` of `ns` (frames arrive there;
/// backends are reached through it too), and the egress counter of what
/// the stack sends out of it.
pub struct KernelPaths {
    /// Counts and drops what the stack sends out of `dev` (tcx egress,
    /// before the driver).
    pub tcx_sink: Counter,
    /// The VXLAN encap path, or why it could not be set up.
    pub encap: Result<(), String>,
    /// The plain multipath path, or why it could not be set up.
    pub ecmp: Result<(), String>,
    /// The nftables DNAT path, or why it could not be set up.
    pub nft: Result<Nft, String>,
}

impl KernelPaths {
    /// Sets the kernel paths up in `ns` on `dev`.
    pub fn new(ns: &Namespace, dev: &str) -> Result<Self, String> {
        let e = |e: testbed::Error| e.to_string();
        // Same-interface forwarding would otherwise send a redirect per
        // flow; an operator turns that off on a load balancer.
        for d in ["all", "default", dev] {
            ns.sysctl(&format!("net.ipv4.conf.{d}.send_redirects"), "0")
                .map_err(e)?;
            ns.sysctl(&format!("net.ipv4.conf.{d}.rp_filter"), "0")
                .map_err(e)?;
        }
        // Multipath: hash on the 5-tuple (L4), so flows spread over backends.
        ns.sysctl("net.ipv4.fib_multipath_hash_policy", "1")
            .map_err(e)?;
        let tcx_sink = counter_on(ns, dev, attach_type::TCX_EGRESS, 2)?; // TC_ACT_SHOT
        Ok(Self {
            tcx_sink,
            ecmp: Self::ecmp(ns, dev).map_err(|e| e.to_string()),
            encap: Self::encap(ns).map_err(|e| e.to_string()),
            nft: Nft::new(ns),
        })
    }

    /// VIP_ECMP over 100 on-link next hops (distinct neighbours): the
    /// kernel's L3 load balancing, no tunnel (less work than encapsulating).
    fn ecmp(ns: &Namespace, dev: &str) -> testbed::Result<()> {
        for i in 0..BACKENDS {
            let hop = format!("10.99.0.{}", 10 + i);
            let mac = mac_str([0x02, 0, 0, 0, 3, i as u8]);
            ns.ip([
                "neigh",
                "add",
                &hop,
                "lladdr",
                &mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
            let id = (ECMP_IDS + i).to_string();
            ns.ip(["nexthop", "add", "id", &id, "via", &hop, "dev", dev])?;
        }
        route_over_group(ns, VIP_ECMP, ECMP_IDS)
    }

    /// VIP_ENCAP over 100 next hops, each a VXLAN tunnel (lightweight
    /// tunnel `encap ip` on a collect-metadata VXLAN device) to a backend:
    /// the kernel's own tunnel load balancing here (this kernel has no
    /// IPIP, GRE or SIT, CONFIG_NET_IPIP unset; VXLAN is built in).
    fn encap(ns: &Namespace) -> testbed::Result<()> {
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
        for i in 0..BACKENDS {
            let id = (ENCAP_IDS + i).to_string();
            let dst = backend(i).to_string();
            ns.ip([
                "nexthop",
                "add",
                "id",
                &id,
                "encap",
                "ip",
                "id",
                "1",
                "dst",
                &dst,
                "ttl",
                "64",
                "via",
                "10.250.0.1",
                "dev",
                "vx0",
                "onlink",
            ])?;
        }
        route_over_group(ns, VIP_ENCAP, ENCAP_IDS)
    }
}

/// The kernel-nft path: an nftables NAT chain that DNATs VIP_NFT:80 to one
/// of the backends by `jhash` over the 5-tuple; the DNATed packets are
/// routed like the forwarder's (10.200.0.0/16 via the gateway) and leave
/// as TCP. The chain turns conntrack on for the whole namespace, which
/// would tax the other kernel paths, so it is loaded only around this
/// path's runs ([`Nft::load`]).
pub struct Nft {
    /// The ruleset (`nft -f` input).
    ruleset: String,
    /// The global conntrack limit, raised for 1,000,000 flows.
    _max: ConntrackMax,
}

impl Nft {
    /// Checks that `nft` and `conntrack` run and the kernel takes the
    /// ruleset in `ns` (loaded once, then removed), or says why not.
    fn new(ns: &Namespace) -> Result<Self, String> {
        for tool in ["nft", "conntrack"] {
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .map_err(|e| {
                    format!("`{tool}` cannot run here ({e}); scripts/bootstrap.sh installs it")
                })?;
        }
        let e = |e: testbed::Error| e.to_string();
        // The frames' TCP checksums are not kept valid as the flows vary
        // (nor checked by any other path); the bench frames are ACKs of
        // connections conntrack never saw open, which it picks up (its
        // default, tcp_loose) and must not refuse on window grounds.
        ns.sysctl("net.netfilter.nf_conntrack_checksum", "0")
            .map_err(e)?;
        ns.sysctl("net.netfilter.nf_conntrack_tcp_be_liberal", "1")
            .map_err(e)?;
        let map: Vec<String> = (0..BACKENDS)
            .map(|i| format!("{i} : {}", backend(i)))
            .collect();
        let ruleset = format!(
            "table ip {NFT_TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr {VIP_NFT} tcp dport 80 dnat to jhash ip saddr . ip daddr . meta l4proto . tcp sport . tcp dport \
             mod {BACKENDS} seed 0x1 map {{ {} }}\n  }}\n}}\n",
            map.join(", ")
        );
        let nft = Self {
            ruleset,
            _max: ConntrackMax::raise(NFT_FLOWS)?,
        };
        drop(nft.load(ns)?);
        Ok(nft)
    }

    /// Loads the ruleset into `ns`, with conntrack's table empty; the rules
    /// go and the table is emptied again when the returned guard drops.
    pub fn load<'a>(&self, ns: &'a Namespace) -> Result<NftLoaded<'a>, String> {
        flush_conntrack(ns)?;
        let before = conntrack_memory()?;
        let file = std::env::temp_dir().join(format!("{}-nft.conf", ns.name()));
        std::fs::write(&file, &self.ruleset).map_err(|e| format!("{}: {e}", file.display()))?;
        let loaded = ns.exec("nft", ["-f".as_ref(), file.as_os_str()]);
        let _ = std::fs::remove_file(&file);
        loaded.map_err(|e| format!("loading the nftables ruleset: {e}"))?;
        Ok(NftLoaded { ns, before })
    }
}

/// The kernel-nft ruleset while loaded (see [`Nft::load`]).
pub struct NftLoaded<'a> {
    ns: &'a Namespace,
    /// Conntrack's slab memory when it was loaded (table empty).
    before: ConntrackMemory,
}

impl NftLoaded<'_> {
    /// What conntrack holds now in the namespace, and the memory it took
    /// since the load: the growth of the `nf_conntrack` slab (the entries)
    /// and of the `kmalloc-*` slabs (the entries' extensions, NAT's among
    /// them; anything else the machine allocated meanwhile counts too), from
    /// /proc/slabinfo.
    pub fn memory(&self) -> Result<String, String> {
        let now = conntrack_memory()?;
        Ok(format!(
            "{} connections tracked; nf_conntrack slab +{} bytes (+{} objects of {} bytes), kmalloc-* slabs +{} bytes",
            conntrack_count(self.ns),
            now.entries_bytes as i64 - self.before.entries_bytes as i64,
            now.entries as i64 - self.before.entries as i64,
            now.entry_size,
            now.kmalloc_bytes as i64 - self.before.kmalloc_bytes as i64,
        ))
    }
}

impl Drop for NftLoaded<'_> {
    fn drop(&mut self) {
        // Rules first, so no packet recreates an entry after the flush.
        if let Err(e) = self.ns.exec("nft", ["delete", "table", "ip", NFT_TABLE]) {
            eprintln!("kernel-nft: removing the ruleset: {e}");
        }
        if let Err(e) = flush_conntrack(self.ns) {
            eprintln!("kernel-nft: {e}");
        }
    }
}

/// Empties conntrack's table in `ns`.
fn flush_conntrack(ns: &Namespace) -> Result<(), String> {
    ns.exec("conntrack", ["-F"])
        .map(|_| ())
        .map_err(|e| format!("flushing conntrack: {e}"))
}

/// Slab memory of conntrack, from /proc/slabinfo (machine-wide).
struct ConntrackMemory {
    /// Bytes of the `nf_conntrack` cache's slabs.
    entries_bytes: u64,
    /// Objects in use in it.
    entries: u64,
    /// Bytes per object.
    entry_size: u64,
    /// Bytes of all `kmalloc-<size>` caches' slabs.
    kmalloc_bytes: u64,
}

fn conntrack_memory() -> Result<ConntrackMemory, String> {
    let text =
        std::fs::read_to_string("/proc/slabinfo").map_err(|e| format!("/proc/slabinfo: {e}"))?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let mut m = ConntrackMemory {
        entries_bytes: 0,
        entries: 0,
        entry_size: 0,
        kmalloc_bytes: 0,
    };
    let mut found = false;
    for line in text.lines().skip(2) {
        // name active_objs num_objs objsize objperslab pagesperslab :
        // tunables l b s : slabdata active_slabs num_slabs sharedavail
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let bytes = num(14) * num(5) * page;
        let sized = f[0].strip_prefix("kmalloc-").is_some_and(|s| {
            s.chars().all(|c| c.is_ascii_alphanumeric())
                && s.starts_with(|c: char| c.is_ascii_digit())
        });
        if f[0] == "nf_conntrack" {
            found = true;
            m.entries_bytes = bytes;
            m.entries = num(1);
            m.entry_size = num(3);
        } else if sized {
            m.kmalloc_bytes += bytes;
        }
    }
    found
        .then_some(m)
        .ok_or_else(|| "no nf_conntrack cache in /proc/slabinfo".to_string())
}

/// The machine's conntrack limit (`nf_conntrack_max`: only the initial
/// namespace may set it, and every namespace is held to it), raised for
/// the run and put back on drop.
struct ConntrackMax {
    previous: Option<String>,
}

/// The limit, read and written from the initial namespace (the bench's
/// main thread).
const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

impl ConntrackMax {
    fn raise(at_least: u64) -> Result<Self, String> {
        let now = std::fs::read_to_string(CONNTRACK_MAX)
            .map_err(|e| format!("{CONNTRACK_MAX}: {e} (no conntrack in this kernel?)"))?;
        let now = now.trim().to_string();
        if now.parse::<u64>().is_ok_and(|n| n >= at_least) {
            return Ok(Self { previous: None });
        }
        std::fs::write(CONNTRACK_MAX, at_least.to_string())
            .map_err(|e| format!("raising {CONNTRACK_MAX} to {at_least}: {e}"))?;
        Ok(Self {
            previous: Some(now),
        })
    }
}

impl Drop for ConntrackMax {
    fn drop(&mut self) {
        if let Some(p) = &self.previous {
            if let Err(e) = std::fs::write(CONNTRACK_MAX, p) {
                eprintln!("putting {CONNTRACK_MAX} back to {p}: {e}");
            }
        }
    }
}
