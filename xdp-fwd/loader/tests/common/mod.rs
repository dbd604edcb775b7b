//! Shared test fixtures: network namespaces (removed on drop, even when the
//! test fails) and the expected encapsulated frames, built independently of
//! the program from packet-builder headers.
#![allow(dead_code)]

pub mod fixture;
pub mod raw_bpf;

use std::net::IpAddr;

use packet_builder::{
    headers::{self, Ipv4Header, Ipv6Header},
    FrameBuilder,
};
use xdp_fwd::{common::flow_hash, flow_key, ForwarderSettings};

/// Commands of the bpf(2) system call that fixtures issue themselves, for
/// what aya has no call for (foreign map pins, bare programs, live-frame
/// test runs).
pub mod bpf_cmd {
    /// BPF_MAP_CREATE.
    pub const MAP_CREATE: i64 = 0;
    /// BPF_PROG_LOAD.
    pub const PROG_LOAD: i64 = 5;
    /// BPF_OBJ_PIN.
    pub const OBJ_PIN: i64 = 6;
    /// BPF_PROG_TEST_RUN.
    pub const PROG_TEST_RUN: i64 = 10;
}

/// bpf(2) `cmd` with a `union bpf_attr` of 128 bytes (zero beyond the
/// fields set; the kernel may write results into it). Panics naming `what`
/// if the call fails; returns its result (a new descriptor for the
/// commands that create one, else 0).
///
/// # Safety
/// Every pointer stored in `attr` must be valid for the kernel to read (or
/// write) as `cmd` defines, until the call returns.
pub unsafe fn bpf_syscall(cmd: i64, attr: &mut [u8; 128], what: &str) -> i64 {
    // SAFETY: `attr` is valid for its length; its pointers are the caller's
    // contract.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
    rc
}

pub use testbed::Namespace;

/// What the fixtures do in a [`Namespace`] beyond the test bed: run code
/// on a thread inside it, pinned to a CPU.
pub trait InNamespace {
    /// Runs `f` on a thread that has entered the namespace, pinned to CPU 0:
    /// each CPU has its own slice of the connection cache, so a flow's
    /// packets must all be processed on one CPU (as RSS does for real
    /// traffic).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.run_on_cpu(0, f)
    }

    /// As [`InNamespace::run`], pinned to `cpu`.
    fn run_on_cpu<T: Send>(&self, cpu: usize, f: impl FnOnce() -> T + Send) -> T;

    /// ifindex of `dev` in the namespace.
    fn ifindex(&self, dev: &str) -> u32 {
        let dev = std::ffi::CString::new(dev).unwrap();
        // SAFETY: a valid NUL-terminated name.
        self.run(|| unsafe { libc::if_nametoindex(dev.as_ptr()) })
    }
}

impl InNamespace for Namespace {
    fn run_on_cpu<T: Send>(&self, cpu: usize, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter_current_thread()
                    .unwrap_or_else(|e| panic!("setns {}: {e}", self.name()));
                pin_to_cpu(cpu);
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    if let Err(e) = testbed::cpu::pin_current_thread(cpu) {
        panic!("sched_setaffinity: {e}");
    }
}

pub const FWD0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
pub const GW0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];
pub const FWD1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0xaa];
pub const GW1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0xbb];

/// A namespace with routes for `bpf_fib_lookup` (interfaces are veths):
/// - `fwd0` (ingress): 10.200.0.0/16 and fd00:200::/64 via a gateway with a
///   permanent neighbour entry (XDP_TX), 10.202.0.0/16 via a gateway with
///   no neighbour entry (XDP_PASS), 10.203.0.0/16 blackholed (drop);
/// - `fwd1`: 10.201.0.0/16 via its gateway (XDP_REDIRECT).
pub struct RouteLab {
    pub ns: Namespace,
    pub fwd0: u32,
}

impl RouteLab {
    /// Sets the namespace up; panics if it cannot (no fixture can run then).
    pub fn new(tag: &str) -> Self {
        Self::build(tag).expect("route lab set-up")
    }

    fn build(tag: &str) -> testbed::Result<Self> {
        let ns = Namespace::unique(tag)?;
        // veth pairs (the kernel here has no dummy driver); the peers only
        // exist to bring the links up.
        for (dev, peer, m) in [("fwd0", "fwd0p", FWD0_MAC), ("fwd1", "fwd1p", FWD1_MAC)] {
            ns.ip([
                "link",
                "add",
                dev,
                "address",
                mac_str(m).as_str(),
                "type",
                "veth",
                "peer",
                "name",
                peer,
            ])?;
            ns.ip(["link", "set", dev, "up"])?;
            ns.ip(["link", "set", peer, "up"])?;
        }
        ns.ip(["addr", "add", "10.99.0.1/24", "dev", "fwd0"])?;
        ns.ip(["addr", "add", "fd99::1/64", "dev", "fwd0", "nodad"])?;
        ns.ip(["addr", "add", "10.98.0.1/24", "dev", "fwd1"])?;
        ns.ip([
            "neigh",
            "add",
            "10.99.0.2",
            "lladdr",
            mac_str(GW0_MAC).as_str(),
            "dev",
            "fwd0",
            "nud",
            "permanent",
        ])?;
        ns.ip([
            "-6",
            "neigh",
            "add",
            "fd99::2",
            "lladdr",
            mac_str(GW0_MAC).as_str(),
            "dev",
            "fwd0",
            "nud",
            "permanent",
        ])?;
        ns.ip([
            "neigh",
            "add",
            "10.98.0.2",
            "lladdr",
            mac_str(GW1_MAC).as_str(),
            "dev",
            "fwd1",
            "nud",
            "permanent",
        ])?;
        ns.ip(["route", "add", "10.200.0.0/16", "via", "10.99.0.2"])?;
        ns.ip(["-6", "route", "add", "fd00:200::/64", "via", "fd99::2"])?;
        ns.ip(["route", "add", "10.201.0.0/16", "via", "10.98.0.2"])?;
        ns.ip(["route", "add", "10.202.0.0/16", "via", "10.99.0.3"])?;
        ns.ip(["route", "add", "blackhole", "10.203.0.0/16"])?;
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        let fwd0 = ns.ifindex("fwd0");
        Ok(Self { ns, fwd0 })
    }
}

/// How the expected frame is encapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    IpIp,
    Gue(u16),
}

/// The flow hash the program computes for `frame`'s 5-tuple (TCP/UDP).
pub fn hash_of(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
    seed: u32,
    flags: u32,
) -> u32 {
    flow_hash(&flow_key(src, dst, sport, dport, proto), seed, flags)
}

/// Outer source: the configured prefix with its host bits taken from the
/// flow hash's bytes (little-endian), as `Settings` documents.
pub fn outer_source(settings: &ForwarderSettings, backend: IpAddr, hash: u32) -> IpAddr {
    let h = hash.to_le_bytes();
    match backend {
        IpAddr::V4(_) => {
            let (p, len) = settings.source_v4;
            let mask: [u8; 4] = if len == 32 {
                [0; 4]
            } else {
                (u32::MAX >> len).to_be_bytes()
            };
            let o = p.octets();
            let s: Vec<u8> = (0..4)
                .map(|i| (o[i] & !mask[i]) | (h[i] & mask[i]))
                .collect();
            IpAddr::from(<[u8; 4]>::try_from(s).unwrap())
        }
        IpAddr::V6(_) => {
            let (p, len) = settings.source_v6;
            let mask: [u8; 4] = if len == 128 {
                [0; 4]
            } else {
                (u32::MAX >> (len - 96)).to_be_bytes()
            };
            let mut o = p.octets();
            for i in 0..4 {
                o[12 + i] = (o[12 + i] & !mask[i]) | (h[i] & mask[i]);
            }
            IpAddr::from(o)
        }
    }
}

/// The frame the forwarder should emit for `input` sent to `backend`:
/// next-hop MACs, the input's VLAN tag, outer header(s), then the input's
/// IP packet unchanged.
pub fn expected_encap(
    input: &FrameBuilder,
    settings: &ForwarderSettings,
    backend: IpAddr,
    hash: u32,
    mode: Expect,
    dmac: [u8; 6],
    smac: [u8; 6],
) -> Vec<u8> {
    expected_encap_of(
        &input.ip_packet(),
        input.vlan,
        settings,
        backend,
        hash,
        mode,
        dmac,
        smac,
    )
}

/// As [`expected_encap`], for an inner packet given as bytes.
#[allow(clippy::too_many_arguments)]
pub fn expected_encap_of(
    inner: &[u8],
    vlan: Option<u16>,
    settings: &ForwarderSettings,
    backend: IpAddr,
    hash: u32,
    mode: Expect,
    dmac: [u8; 6],
    smac: [u8; 6],
) -> Vec<u8> {
    let inner_v4 = inner[0] >> 4 == 4;
    let tos = if inner_v4 {
        inner[1]
    } else {
        (inner[0] << 4) | (inner[1] >> 4)
    };
    let inner_df = inner_v4 && inner[6] & 0x40 != 0;
    let src = outer_source(settings, backend, hash);
    let (proto, payload) = match mode {
        Expect::IpIp => (if inner_v4 { 4 } else { 41 }, inner.to_vec()),
        Expect::Gue(port) => {
            let sport = ((hash & 0x3fff) | 0xc000) as u16;
            (17, headers::udp(src, backend, sport, port, inner))
        }
    };
    let (ethertype, ip) = match (src, backend) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (
            0x0800,
            Ipv4Header {
                src: s,
                dst: d,
                proto,
                tos,
                ttl: 64,
                id: 0,
                dont_fragment: !inner_v4 || inner_df,
            }
            .bytes(payload.len()),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => (
            0x86dd,
            Ipv6Header {
                src: s,
                dst: d,
                next: proto,
                traffic_class: tos,
                flow_label: hash & 0xfffff,
                hop_limit: 64,
            }
            .bytes(payload.len()),
        ),
        _ => unreachable!(),
    };
    let mut f = headers::ethernet(dmac, smac, vlan, ethertype);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&payload);
    f
}

/// A simple table: slot `i` belongs to backend `i % n` (the loader does not
/// care how a table was made; the `maglev` crate builds the real ones).
pub fn round_robin_table(size: usize, n: usize) -> Vec<u32> {
    (0..size).map(|i| (i % n) as u32).collect()
}

/// Which backend of a [`round_robin_table`] a hash selects.
pub fn rr_backend(hash: u32, size: usize, n: usize) -> usize {
    (hash as usize % size) % n
}

/// Output of a command run in a namespace.
pub fn ns_output(ns: &Namespace, args: &[&str]) -> String {
    let out = ns
        .command(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The id of the XDP program attached to `dev`, if any (from `ip -j link`).
pub fn xdp_prog_id(ns: &Namespace, dev: &str) -> Option<u64> {
    let json = ns_output(ns, &["ip", "-j", "-d", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&json).ok()?;
    let xdp = v.get(0)?.get("xdp")?;
    xdp.get("prog")
        .and_then(|p| p.get("id"))
        .and_then(|i| i.as_u64())
        .or_else(|| {
            // Several programs (modes) are listed under "attached".
            xdp.get("attached")?
                .get(0)?
                .get("prog")?
                .get("id")?
                .as_u64()
        })
}

/// A MAC address as `ip` writes it.
pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
