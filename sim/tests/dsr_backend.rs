//! The backend side of DSR, for real: a client sends IPIP- and
//! GUE-encapsulated packets (as the XDP forwarder would) to a backend
//! namespace; the backend's XDP decapsulator (driver mode on its veth)
//! strips them, its service answers, and the answer goes straight back to the
//! client from the VIP.
//!
//! client 10.1.0.2/24 (eth0) ──veth── (eth0) 10.1.0.3/24 backend, VIP on lo

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use edgelb_sim::{
    backend::{prepare_backend, GUE_PORT},
    pinning::pin_child_to_sim_cpu,
};
use packet_builder::{frame::tcp_flags, FrameBuilder, L4};
use testbed::{
    namespace::{disable_offloads, unique_stem, veth_pair},
    Namespace, ProcessGuard,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);

struct Topology {
    client: Namespace,
    _backend: Namespace,
    _service: ProcessGuard,
}

fn topology() -> Topology {
    let stem = unique_stem();
    let client = Namespace::create(&format!("{stem}c")).unwrap();
    let backend = Namespace::create(&format!("{stem}b")).unwrap();
    veth_pair(&client, "eth0", &backend, "eth0").unwrap();
    for (ns, addr) in [(&client, "10.1.0.2/24"), (&backend, "10.1.0.3/24")] {
        ns.ip(["addr", "add", addr, "dev", "eth0"]).unwrap();
        disable_offloads(ns, "eth0").unwrap();
        ns.ip(["link", "set", "eth0", "up"]).unwrap();
    }
    prepare_backend(&backend, &[VIP.into()]).unwrap();
    let mut cmd = backend.command(env!("CARGO_BIN_EXE_edgelb-sim"));
    cmd.args(["serve-backend", "--name", "b1", "--decap-interface", "eth0"]);
    cmd.args(["--tcp", &format!("{VIP}:80"), "--udp", &format!("{VIP}:53")]);
    pin_child_to_sim_cpu(&mut cmd);
    let service = ProcessGuard::spawn(cmd).unwrap();
    Topology {
        client,
        _backend: backend,
        _service: service,
    }
}

/// Runs `f` inside `ns`'s network namespace on a fresh thread.
fn in_namespace<T: Send + 'static>(ns: &Namespace, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on a thread we own, with a valid namespace fd.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn raw_socket(proto: i32) -> OwnedFd {
    // SAFETY: plain socket(2); the fd is owned by the returned OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, proto) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sends `payload` as the body of an IPv4 packet with protocol `proto` to `dst`
/// (the kernel writes the outer header).
fn send_raw(sock: &OwnedFd, dst: Ipv4Addr, payload: &[u8]) {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid buffer and sockaddr for the duration of the call.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(
        n,
        payload.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );
}

/// An inner UDP packet from `sock`'s address to the VIP, and the answer.
fn udp_round_trip(sock: &UdpSocket, send: impl Fn(&[u8])) -> Option<(String, SocketAddr)> {
    let local = sock.local_addr().unwrap();
    let inner = FrameBuilder::new(
        CLIENT.into(),
        VIP.into(),
        L4::Udp {
            sport: local.port(),
            dport: 53,
        },
    )
    .payload(b"ping")
    .ip_packet();
    // The service may still be starting: retry for a bounded time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        send(&inner);
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
        }
    }
    None
}

#[test]
fn gue_and_ipip_are_decapsulated_and_answered_from_the_vip() {
    let t = topology();
    let (gue, ipip) = in_namespace(&t.client, || {
        let sock = UdpSocket::bind((CLIENT, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let carrier = UdpSocket::bind((CLIENT, 0)).unwrap();
        let gue = udp_round_trip(&sock, |inner| {
            carrier.send_to(inner, (BACKEND, GUE_PORT)).unwrap();
        });
        let raw = raw_socket(libc::IPPROTO_IPIP);
        let ipip = udp_round_trip(&sock, |inner| send_raw(&raw, BACKEND, inner));
        (gue, ipip)
    });
    let vip53: SocketAddr = (VIP, 53).into();
    assert_eq!(gue, Some(("b1 ping".to_owned(), vip53)), "GUE round trip");
    assert_eq!(ipip, Some(("b1 ping".to_owned(), vip53)), "IPIP round trip");
}

#[test]
fn tcp_syn_over_ipip_gets_a_syn_ack_from_the_vip() {
    let t = topology();
    let got_syn_ack = in_namespace(&t.client, || {
        let ipip = raw_socket(libc::IPPROTO_IPIP);
        let tcp = raw_socket(libc::IPPROTO_TCP);
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 300_000,
        };
        // SAFETY: setsockopt with a valid timeval.
        unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        let sport = 45123u16;
        let syn = FrameBuilder::new(
            CLIENT.into(),
            VIP.into(),
            L4::Tcp {
                sport,
                dport: 80,
                flags: tcp_flags::SYN,
            },
        )
        .payload(b"")
        .ip_packet();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            send_raw(&ipip, BACKEND, &syn);
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                // SAFETY: recv into our buffer.
                let n =
                    unsafe { libc::recv(tcp.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 40 {
                    break;
                }
                let p = &buf[..n as usize];
                let ihl = usize::from(p[0] & 0x0f) * 4;
                let (src, l4) = (&p[12..16], &p[ihl..]);
                let (from_port, to_port, flags) = (
                    u16::from_be_bytes([l4[0], l4[1]]),
                    u16::from_be_bytes([l4[2], l4[3]]),
                    l4[13],
                );
                if src == VIP.octets()
                    && from_port == 80
                    && to_port == sport
                    && flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK
                {
                    return true;
                }
            }
        }
        false
    });
    assert!(got_syn_ack, "no SYN-ACK from the VIP");
}
