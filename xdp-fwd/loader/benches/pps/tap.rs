//! The second driver, for where the kernel refuses live-frame mode: a TAP
//! device as the node's NIC. Every frame is one write(2) to the TAP's
//! descriptor, in which the kernel runs the XDP program attached to the
//! TAP (tun's native XDP, as a driver's receive would) and carries out its
//! verdict in the writer's context: XDP_TX queues the frame on the TAP's
//! transmit ring (read back here, after the timed part, to check it),
//! XDP_PASS builds an skb and hands it to the stack at once. The cost per
//! frame is the writing thread's CPU time (system and user) over the
//! writes, which other processes on the CPU do not enter; it includes the
//! write system call itself, which every path pays (the floor shows it).

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use crate::{
    common::{
        mac_str,
        raw_bpf::{attach_link, attach_type},
        InNamespace, Namespace, FWD0_MAC, GW0_MAC,
    },
    lab::{conntrack_count, KernelPaths},
    programs,
};

/// The TAP lab: a namespace whose `tap0` is the ingress, set up as the
/// forwarder tests' route lab sets up `fwd0` (backends 10.200.0.0/16 via a
/// gateway on it), with the kernel paths on it too.
pub struct TapLab {
    /// The namespace (removed on drop, after the TAP closes).
    pub ns: Namespace,
    /// The TAP's descriptor (non-blocking).
    tap: OwnedFd,
    /// ifindex of `tap0`.
    pub ifindex: u32,
    /// The kernel paths on `tap0`.
    pub kernel: KernelPaths,
}

/// TUNSETIFF.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// IFF_TAP | IFF_NO_PI.
const TAP_FLAGS: libc::c_short = 0x0002 | 0x1000;

/// Opens TAP `name` in the calling thread's namespace.
fn open_tap(name: &str) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // struct ifreq: name[16], then the flags (short) in the union.
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..18].copy_from_slice(&TAP_FLAGS.to_ne_bytes());
    // SAFETY: ifr is a valid struct ifreq for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

impl TapLab {
    /// Sets the lab up, or says why it cannot.
    pub fn new() -> Result<Self, String> {
        let e = |e: testbed::Error| e.to_string();
        let ns = Namespace::unique("ppstap").map_err(e)?;
        let tap = ns
            .run(|| open_tap("tap0"))
            .map_err(|err| format!("opening a TAP: {err}"))?;
        // No IPv6 on the TAP: its neighbour discovery would go out too.
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            .map_err(e)?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
            .map_err(e)?;
        ns.sysctl("net.ipv6.conf.tap0.disable_ipv6", "1")
            .map_err(e)?;
        let mac = mac_str(FWD0_MAC);
        ns.ip([
            "link",
            "set",
            "tap0",
            "address",
            &mac,
            "txqueuelen",
            "1000",
            "up",
        ])
        .map_err(e)?;
        ns.ip(["addr", "add", "10.99.0.1/24", "dev", "tap0"])
            .map_err(e)?;
        let gw = mac_str(GW0_MAC);
        ns.ip([
            "neigh",
            "add",
            "10.99.0.2",
            "lladdr",
            &gw,
            "dev",
            "tap0",
            "nud",
            "permanent",
        ])
        .map_err(e)?;
        ns.ip(["route", "add", "10.200.0.0/16", "via", "10.99.0.2"])
            .map_err(e)?;
        ns.sysctl("net.ipv4.ip_forward", "1").map_err(e)?;
        let kernel = KernelPaths::new(&ns, "tap0")?;
        let ifindex = ns.ifindex("tap0");
        Ok(Self {
            ns,
            tap,
            ifindex,
            kernel,
        })
    }

    /// Connections the kernel tracks in the lab's namespace.
    pub fn conntrack_count(&self) -> String {
        conntrack_count(&self.ns)
    }

    /// Attaches `prog` to `tap0` (native XDP); detached when the returned
    /// link closes.
    fn attach(&self, prog: BorrowedFd) -> io::Result<OwnedFd> {
        self.ns
            .run(|| attach_link(prog, self.ifindex, attach_type::XDP))
    }

    /// Reads what the TAP transmitted (bounded by `max` frames), counting
    /// IPv4 frames by protocol into `counts`; returns the frames read.
    fn drain(&self, counts: &mut [u64], max: usize) -> io::Result<usize> {
        let mut buf = [0u8; 2048];
        for n in 0..max {
            // SAFETY: buf is valid for its length.
            let r = unsafe { libc::read(self.tap.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r < 0 {
                let err = io::Error::last_os_error();
                return if err.kind() == io::ErrorKind::WouldBlock {
                    Ok(n)
                } else {
                    Err(err)
                };
            }
            let f = &buf[..r as usize];
            let slot = if f.len() < 24 {
                programs::SHORT
            } else if f[12..14] != [0x08, 0x00] {
                programs::NOT_IPV4
            } else {
                f[23] as u32
            };
            counts[slot as usize] += 1;
        }
        Ok(max)
    }
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is valid for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writes flow `f`'s fields into `frame` (as the spray does in the kernel:
/// same fields, same arithmetic, see `programs::spray`).
fn set_flow(frame: &mut [u8], f: u32, src_low: u16) {
    let sport = (programs::FIRST_PORT + f % programs::PORTS_PER_ADDRESS) as u16;
    let step = (f / programs::PORTS_PER_ADDRESS) as u16;
    frame[34..36].copy_from_slice(&sport.to_be_bytes());
    frame[28..30].copy_from_slice(&(src_low + step).to_be_bytes());
    frame[18..20].copy_from_slice(&(programs::ID_BASE - step).to_be_bytes());
}

/// Frames written between two reads of the transmit ring (below its
/// length, 1000, so XDP_TX never finds it full).
const BATCH: u32 = 256;

/// What a TAP run checks against.
pub struct Expect<'a> {
    /// The path's name, for messages.
    pub name: &'a str,
    /// The program attached to the TAP.
    pub prog: BorrowedFd<'a>,
    /// IPv4 protocol of what must come out.
    pub out_proto: u32,
    /// Whether frames come back on the TAP (XDP_TX) or leave through the
    /// stack (counted at tcx egress).
    pub transmitted: bool,
}

/// The frames a path is sent: `frame` rewritten for flows `next % flows,
/// next % flows + 1, ...`.
pub struct FrameSource {
    /// The frame as last written.
    pub frame: Vec<u8>,
    /// The template's source address, low half (the runs rewrite it).
    pub src_low: u16,
    /// Distinct flows.
    pub flows: u32,
    /// The next flow (counts frames).
    pub next: u64,
}

impl FrameSource {
    /// Flows over `template` (built with [`programs::ID_BASE`]).
    pub fn new(template: Vec<u8>, flows: u32) -> Self {
        Self {
            src_low: u16::from_be_bytes([template[28], template[29]]),
            frame: template,
            flows,
            next: 0,
        }
    }

    /// The next frame.
    fn advance(&mut self) -> &[u8] {
        set_flow(
            &mut self.frame,
            (self.next % self.flows as u64) as u32,
            self.src_low,
        );
        self.next += 1;
        &self.frame
    }
}

/// One run of `repeat` frames from `src` on `lab`; checks that every
/// frame came out as it should (`extra` adds the forwarder's own check).
/// Returns CPU ns per frame.
pub fn run_checked(
    lab: &TapLab,
    x: &Expect,
    src: &mut FrameSource,
    repeat: u32,
    extra: &mut dyn FnMut() -> Result<(), String>,
) -> Result<u64, String> {
    let err = |e: io::Error| format!("{}: {e}", x.name);
    let _link = lab.attach(x.prog).map_err(err)?;
    let before = lab.kernel.tcx_sink.all();
    let mut read = vec![0u64; 256];
    let mut cpu = 0u64;
    let mut sent = 0u32;
    while sent < repeat {
        let n = BATCH.min(repeat - sent);
        let t0 = thread_cpu_ns();
        for _ in 0..n {
            let frame = src.advance();
            // SAFETY: frame is valid for its length.
            let w = unsafe { libc::write(lab.tap.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            if w != frame.len() as isize {
                return Err(err(io::Error::last_os_error()));
            }
        }
        cpu += thread_cpu_ns() - t0;
        sent += n;
        lab.drain(&mut read, n as usize + 64).map_err(err)?;
    }
    lab.drain(&mut read, 4096).map_err(err)?;
    let after = lab.kernel.tcx_sink.all();
    let out: Vec<u64> = if x.transmitted {
        read.clone()
    } else {
        after.iter().zip(&before).map(|(a, b)| a - b).collect()
    };
    let ipv4: u64 = out
        .iter()
        .enumerate()
        .filter(|&(p, _)| p != programs::NOT_IPV4 as usize)
        .map(|(_, n)| n)
        .sum();
    let expected = out[x.out_proto as usize];
    if expected != repeat as u64 || ipv4 != repeat as u64 {
        return Err(format!(
            "{}: {repeat} frames written, {expected} out with protocol {} ({ipv4} IPv4 frames out in all)",
            x.name, x.out_proto
        ));
    }
    extra()?;
    Ok(cpu / repeat as u64)
}
