//! The forwarder attached in DRIVER mode to a veth in one namespace; real
//! frames sent from the peer namespace through an AF_PACKET socket, and the
//! encapsulated frames captured there, compared byte for byte. Needs root.

mod common;

use std::{
    net::IpAddr,
    os::fd::RawFd,
    time::{Duration, Instant},
};

use common::*;
use packet_builder::{tcp_flags, FrameBuilder, L4};
use xdp_fwd::{
    common::stats::stat, AttachMode, Capacity, Encap, Forwarder, ForwarderSettings, LoadOptions,
    PassProgram, Protocol, VipKey, VipOptions,
};

const LB_MAC: [u8; 6] = [0x02, 0x10, 0, 0, 0, 1];
const CL_MAC: [u8; 6] = [0x02, 0x10, 0, 0, 0, 2];
const M: usize = 13;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An AF_PACKET socket on `ifindex`, closed on drop.
struct PacketSocket(RawFd);

impl PacketSocket {
    fn open(ifindex: u32) -> Self {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket calls with valid arguments.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            let rc = libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            Self(fd)
        }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::send(self.0, frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Next frame received (not one we sent), or None after the timeout.
    fn recv_incoming(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: buffers valid for their lengths.
        let (n, kind) = unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = libc::recvfrom(
                self.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                &mut sll as *mut _ as *mut libc::sockaddr,
                &mut len,
            );
            (n, sll.sll_pkttype)
        };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        if kind == libc::PACKET_OUTGOING {
            return Some(Vec::new());
        }
        Some(buf)
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: our fd.
        unsafe { libc::close(self.0) };
    }
}

/// The load balancer's namespace and the client's, joined by the veth pair
/// lb0 - cl0, with routes to the backends through the client.
fn lb_and_client() -> testbed::Result<(Namespace, Namespace)> {
    let lb = Namespace::unique("vlb")?;
    let cl = Namespace::unique("vcl")?;
    lb.ip([
        "link",
        "add",
        "lb0",
        "address",
        mac_str(LB_MAC).as_str(),
        "type",
        "veth",
        "peer",
        "name",
        "cl0",
        "netns",
        cl.name(),
    ])?;
    cl.ip(["link", "set", "cl0", "address", mac_str(CL_MAC).as_str()])?;
    lb.ip(["addr", "add", "10.0.0.1/24", "dev", "lb0"])?;
    lb.ip(["addr", "add", "fd10::1/64", "dev", "lb0", "nodad"])?;
    cl.ip(["addr", "add", "10.0.0.2/24", "dev", "cl0"])?;
    cl.ip(["addr", "add", "fd10::2/64", "dev", "cl0", "nodad"])?;
    lb.ip(["link", "set", "lb0", "up"])?;
    cl.ip(["link", "set", "cl0", "up"])?;
    lb.ip([
        "neigh",
        "add",
        "10.0.0.2",
        "lladdr",
        mac_str(CL_MAC).as_str(),
        "dev",
        "lb0",
        "nud",
        "permanent",
    ])?;
    lb.ip([
        "-6",
        "neigh",
        "add",
        "fd10::2",
        "lladdr",
        mac_str(CL_MAC).as_str(),
        "dev",
        "lb0",
        "nud",
        "permanent",
    ])?;
    lb.ip(["route", "add", "10.200.0.0/16", "via", "10.0.0.2"])?;
    lb.ip(["-6", "route", "add", "fd00:200::/64", "via", "fd10::2"])?;
    lb.sysctl("net.ipv4.ip_forward", "1")?;
    lb.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    // Frames the kernel would build must carry real checksums on the wire.
    cl.exec("ethtool", ["-K", "cl0", "tx", "off"])?;
    Ok((lb, cl))
}

#[test]
fn driver_mode_on_a_veth_pair_encapsulates_real_packets() {
    let (lb, cl) = lb_and_client().expect("veth pair set-up");

    let settings = ForwarderSettings {
        hash_seed: 77,
        ..Default::default()
    };
    let capacity = Capacity {
        vips: 4,
        backends: 16,
        table_size: 13,
        flows: 1024,
    };
    let v4_backends = [ip("10.200.0.1"), ip("10.200.0.2"), ip("10.200.0.3")];
    let v6_backends = [ip("fd00:200::1"), ip("fd00:200::2")];
    let udp_vip = VipKey::new(ip("203.0.113.7"), 53, Protocol::Udp);
    let tcp_vip = VipKey::new(ip("203.0.113.7"), 443, Protocol::Tcp);
    let v6_vip = VipKey::new(ip("2001:db8:ffff::7"), 80, Protocol::Tcp);

    let mut fwd = lb.run(|| {
        let mut fwd = Forwarder::load_with(LoadOptions {
            pin_dir: None,
            capacity,
        })
        .unwrap();
        fwd.set_settings(&settings).unwrap();
        let rr = |n: usize| round_robin_table(M, n);
        fwd.set_vip(udp_vip, VipOptions::default()).unwrap();
        fwd.set_table(&udp_vip, &v4_backends, &rr(3)).unwrap();
        fwd.set_vip(
            tcp_vip,
            VipOptions {
                encap: Encap::Gue,
                ..Default::default()
            },
        )
        .unwrap();
        fwd.set_table(&tcp_vip, &v4_backends, &rr(3)).unwrap();
        fwd.set_vip(v6_vip, VipOptions::default()).unwrap();
        fwd.set_table(&v6_vip, &v6_backends, &rr(2)).unwrap();
        fwd.attach("lb0", AttachMode::Driver)
            .expect("driver-mode attach");
        fwd
    });
    assert!(xdp_prog_id(&lb, "lb0").is_some(), "program attached");
    let out = ns_output(&lb, &["ip", "-d", "link", "show", "lb0"]);
    assert!(
        out.contains("xdp") && !out.contains("xdpgeneric"),
        "driver mode: {out}"
    );

    let inputs = [
        (
            FrameBuilder::new(
                ip("192.0.2.10"),
                ip("203.0.113.7"),
                L4::Udp {
                    sport: 5353,
                    dport: 53,
                },
            ),
            Expect::IpIp,
            &v4_backends[..],
            3,
        ),
        (
            FrameBuilder::new(
                ip("192.0.2.10"),
                ip("203.0.113.7"),
                L4::Tcp {
                    sport: 40000,
                    dport: 443,
                    flags: tcp_flags::SYN,
                },
            )
            .tos(0x2e),
            Expect::Gue(6080),
            &v4_backends[..],
            3,
        ),
        (
            FrameBuilder::new(
                ip("2001:db8::10"),
                ip("2001:db8:ffff::7"),
                L4::Tcp {
                    sport: 40000,
                    dport: 80,
                    flags: tcp_flags::SYN,
                },
            ),
            Expect::IpIp,
            &v6_backends[..],
            2,
        ),
    ];
    let mut expected = Vec::new();
    for (f, mode, backends, n) in &inputs {
        let (sport, dport, proto) = match f.l4 {
            L4::Tcp { sport, dport, .. } => (sport, dport, 6),
            L4::Udp { sport, dport } => (sport, dport, 17),
            L4::Icmp { .. } => unreachable!(),
        };
        let h = hash_of(f.src, f.dst, sport, dport, proto, settings.hash_seed, 0);
        let backend = backends[rr_backend(h, M, *n)];
        expected.push(expected_encap(
            f, &settings, backend, h, *mode, CL_MAC, LB_MAC,
        ));
    }

    let cl0 = cl.ifindex("cl0");
    let captured = cl.run(|| {
        let mut pass = PassProgram::load().unwrap();
        pass.attach("cl0", AttachMode::Driver)
            .expect("pass program on the peer");
        let sock = PacketSocket::open(cl0);
        for (f, ..) in &inputs {
            let frame = f.clone().macs(LB_MAC, CL_MAC).build();
            sock.send(&frame);
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < expected.len() && Instant::now() < deadline {
            match sock.recv_incoming() {
                Some(f) if expected.contains(&f) => got.push(f),
                _ => {}
            }
        }
        got
    });
    for want in &expected {
        assert!(
            captured.contains(want),
            "missing encapsulated frame {want:02x?}"
        );
    }
    let stats = fwd.stats().unwrap();
    assert!(stats.get(stat::ACTION_TX) >= 3);
    assert_eq!(stats.vips[&udp_vip].packets, 1);

    lb.run(|| fwd.detach("lb0")).unwrap();
    assert_eq!(xdp_prog_id(&lb, "lb0"), None, "detached");
}
