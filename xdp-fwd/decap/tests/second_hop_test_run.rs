//! Second hop through the real decap program (BPF_PROG_TEST_RUN), byte for
//! byte: a packet carrying its flow's previous owner is delivered when this
//! host has a socket for the flow (real sockets in the test's namespace,
//! which is where the program's socket lookups look), forwarded once to the
//! previous owner when not, never forwarded twice; bad input is counted and
//! never forwarded. Needs root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};

use packet_builder::{
    headers::{self, Ipv4Header, Ipv6Header},
    tcp_flags, FrameBuilder, L4,
};
use testbed::Namespace;
use xdp_decap::{DecapStats, Decapper};
use xdp_fwd_common::second_hop as wire;

const DROP: u32 = 1;
const PASS: u32 = 2;
const TX: u32 = 3;
const GUE_PORT: u16 = 6080;
/// This host's interface (the frames arrive on it) and its gateway.
const HOP0_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 2];

const VIP4: &str = "198.18.0.10";
const VIP6: &str = "2001:db8:f::10";
/// The load balancer (outer source of the first hop).
const LB4: &str = "10.0.0.1";
const LB6: &str = "fd00::1";
/// This host (the current owner) and the previous owner, a configured peer.
const SELF4: &str = "10.50.0.1";
const PREV4: &str = "10.60.0.2";
const SELF6: &str = "fd50::1";
const PREV6: &str = "fd60::2";
/// A backend that is not a peer of the VIPs.
const STRANGER4: &str = "10.60.0.9";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The namespace: `hop0` (10.50.0.1, fd50::1) with a permanent gateway
/// neighbour and routes to the peers' prefixes through it; the VIPs on
/// loopback; forwarding on (the route lookup requires it).
fn host() -> Namespace {
    let ns = Namespace::unique("hop").expect("namespace");
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let run = |args: &[&str]| {
        ns.ip(args)
            .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    };
    run(&[
        "link",
        "add",
        "hop0",
        "address",
        &mac(HOP0_MAC),
        "type",
        "veth",
        "peer",
        "name",
        "hop0p",
    ]);
    run(&["link", "set", "hop0", "up"]);
    run(&["link", "set", "hop0p", "up"]);
    run(&["link", "set", "lo", "up"]);
    run(&["addr", "add", "10.50.0.1/24", "dev", "hop0"]);
    run(&["addr", "add", "fd50::1/64", "dev", "hop0", "nodad"]);
    run(&["addr", "add", "198.18.0.10/32", "dev", "lo"]);
    run(&["addr", "add", "2001:db8:f::10/128", "dev", "lo"]);
    for (gw, fam) in [("10.50.0.2", "-4"), ("fd50::2", "-6")] {
        run(&[
            fam,
            "neigh",
            "add",
            gw,
            "lladdr",
            &mac(GW_MAC),
            "dev",
            "hop0",
            "nud",
            "permanent",
        ]);
    }
    run(&["route", "add", "10.60.0.0/16", "via", "10.50.0.2"]);
    run(&["-6", "route", "add", "fd60::/64", "via", "fd50::2"]);
    ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    ns.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    ns
}

/// Runs `f` on a thread inside `ns` (sockets it opens live there).
fn inside<T: Send>(ns: &Namespace, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().expect("setns");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// The decap program with both VIPs configured, the previous owners as
/// their only peers.
fn decapper() -> Decapper {
    let mut d = Decapper::load(GUE_PORT).expect("load and verify the decap program");
    d.set_second_hop(ip(VIP4), &[ip(PREV4)]).unwrap();
    d.set_second_hop(ip(VIP6), &[ip(PREV6)]).unwrap();
    d
}

fn tcp(src: IpAddr, dst: &str, sport: u16, flags: u8) -> FrameBuilder {
    FrameBuilder::new(
        src,
        ip(dst),
        L4::Tcp {
            sport,
            dport: 80,
            flags,
        },
    )
    .payload(b"data")
}

fn ipv4(src: &str, dst: &str, proto: u8, id: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = Ipv4Header {
        src: v4(src),
        dst: v4(dst),
        proto,
        tos: 0x10,
        ttl,
        id,
        dont_fragment: true,
    }
    .bytes(payload.len());
    h.extend_from_slice(payload);
    h
}

fn ipv6(src: &str, dst: &str, next: u8, label: u32, hops: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = Ipv6Header {
        src: v6(src),
        dst: v6(dst),
        next,
        traffic_class: 0x10,
        flow_label: label,
        hop_limit: hops,
    }
    .bytes(payload.len());
    h.extend_from_slice(payload);
    h
}

fn proto_of(inner: &[u8]) -> u8 {
    if inner[0] >> 4 == 4 {
        4
    } else {
        41
    }
}

/// Ethernet to this host (as received) or to the gateway (as forwarded).
fn eth(received: bool, l3: &[u8]) -> Vec<u8> {
    let ethertype = if l3[0] >> 4 == 4 { 0x0800 } else { 0x86dd };
    let (dst, src) = if received {
        (HOP0_MAC, GW_MAC)
    } else {
        (GW_MAC, HOP0_MAC)
    };
    let mut f = headers::ethernet(dst, src, None, ethertype);
    f.extend_from_slice(l3);
    f
}

/// The IP-in-IP form over IPv4: LB -> this host | this host -> `prev`
/// (middle, identification `id`) | `inner`.
fn ipip4(prev: &str, id: u16, inner: &[u8]) -> Vec<u8> {
    let middle = ipip4_middle(prev, id, 64, inner);
    eth(true, &ipv4(LB4, SELF4, 4, 0, 64, &middle))
}

fn ipip4_middle(prev: &str, id: u16, ttl: u8, inner: &[u8]) -> Vec<u8> {
    ipv4(SELF4, prev, proto_of(inner), id, ttl, inner)
}

/// An IP-in-IP packet after its second hop, arriving here from the host
/// that forwarded it: one header, marked HOPPED, then `inner`.
fn hopped4(inner: &[u8]) -> Vec<u8> {
    eth(
        true,
        &ipv4(
            PREV4,
            SELF4,
            proto_of(inner),
            wire::IPIP_ID_HOPPED,
            63,
            inner,
        ),
    )
}

/// The IP-in-IP form over IPv6 (middle flow label `label`).
fn ipip6(prev: &str, label: u32, inner: &[u8]) -> Vec<u8> {
    let middle = ipv6(SELF6, prev, proto_of(inner), label, 61, inner);
    eth(true, &ipv6(LB6, SELF6, 41, 0x12345, 64, &middle))
}

/// GUE variant 0 header + EdgeLB's private data for `prev`, then `inner`.
fn gue_payload(prev: IpAddr, flags: u8, inner: &[u8]) -> Vec<u8> {
    let mut g = match prev {
        IpAddr::V4(a) => {
            let mut g = vec![
                wire::GUE_HLEN_V4,
                proto_of(inner),
                0,
                0,
                wire::GUE_MAGIC,
                flags,
                4,
                0,
            ];
            g.extend_from_slice(&a.octets());
            g
        }
        IpAddr::V6(a) => {
            let mut g = vec![
                wire::GUE_HLEN_V6,
                proto_of(inner),
                0,
                0,
                wire::GUE_MAGIC,
                flags,
                6,
                0,
            ];
            g.extend_from_slice(&a.octets());
            g
        }
    };
    g.extend_from_slice(inner);
    g
}

/// The GUE form over IPv4, outer `src` -> `dst`, UDP checksum computed.
fn gue4(src: &str, dst: &str, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let udp = headers::udp(ip(src), ip(dst), 49321, GUE_PORT, payload);
    ipv4(src, dst, 17, 0, ttl, &udp)
}

fn gue6(src: &str, dst: &str, hops: u8, payload: &[u8]) -> Vec<u8> {
    let udp = headers::udp(ip(src), ip(dst), 49321, GUE_PORT, payload);
    ipv6(src, dst, 17, 0xabcde, hops, &udp)
}

/// The original packet delivered to the stack.
fn delivered(inner: &[u8]) -> Vec<u8> {
    eth(true, inner)
}

fn stats(d: &Decapper) -> (u64, u64, u64, u64, u64) {
    let DecapStats {
        second_hop_forwarded,
        second_hop_delivered,
        second_hop_loop_refused,
        second_hop_invalid,
        second_hop_no_route,
        ..
    } = d.stats().unwrap();
    (
        second_hop_forwarded,
        second_hop_delivered,
        second_hop_loop_refused,
        second_hop_invalid,
        second_hop_no_route,
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn tcp_delivered_with_a_socket_forwarded_once_without() {
    let ns = host();
    let mut d = decapper();
    let hop0 = ifindex(&ns, "hop0");
    inside(&ns, || {
        let listener = TcpListener::bind((v4(VIP4), 80)).unwrap();
        let client = TcpStream::connect((v4(VIP4), 80)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let (caddr, cport) = {
            let a = client.local_addr().unwrap();
            (a.ip(), a.port())
        };
        let run = |d: &mut Decapper, f: &[u8]| d.test_run_on(f, hop0).unwrap();

        // Established socket here: strip both layers, deliver.
        let ack = tcp(caddr, VIP4, cport, tcp_flags::ACK).ip_packet();
        let (v, out) = run(&mut d, &ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &ack));
        assert_eq!(
            (v, hex(&out)),
            (PASS, hex(&delivered(&ack))),
            "socket: delivered"
        );

        // No socket (only the listener): forwarded to the previous owner,
        // the middle header now outer and marked HOPPED, TTL reset.
        let moved = tcp(caddr, VIP4, cport.wrapping_add(1), tcp_flags::ACK).ip_packet();
        let (v, out) = run(&mut d, &ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &moved));
        let want = eth(
            false,
            &ipip4_middle(PREV4, wire::IPIP_ID_HOPPED, 64, &moved),
        );
        assert_eq!((v, hex(&out)), (TX, hex(&want)), "no socket: second hop");

        // A SYN always stays with the current owner.
        let syn = tcp(caddr, VIP4, cport.wrapping_add(2), tcp_flags::SYN).ip_packet();
        let (v, out) = run(&mut d, &ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &syn));
        assert_eq!((v, hex(&out)), (PASS, hex(&delivered(&syn))), "syn");

        // Already second-hopped: never forwarded again, with or without a
        // socket (the latter counted as a refused loop).
        let (v, out) = run(&mut d, &hopped4(&moved));
        assert_eq!(
            (v, hex(&out)),
            (PASS, hex(&delivered(&moved))),
            "hopped, no socket"
        );
        let (v, out) = run(&mut d, &hopped4(&ack));
        assert_eq!(
            (v, hex(&out)),
            (PASS, hex(&delivered(&ack))),
            "hopped, socket"
        );

        // GUE form: rewritten in place towards the previous owner.
        let payload = gue_payload(ip(PREV4), 0, &moved);
        let input = eth(true, &gue4(LB4, SELF4, 60, &payload));
        let (v, out) = run(&mut d, &input);
        let hopped = gue_payload(ip(PREV4), wire::GUE_FLAG_HOPPED, &moved);
        let want = eth(false, &gue4(SELF4, PREV4, 64, &hopped));
        assert_eq!((v, hex(&out)), (TX, hex(&want)), "gue: second hop");
        // ... and delivered when the socket is here.
        let input = eth(
            true,
            &gue4(LB4, SELF4, 60, &gue_payload(ip(PREV4), 0, &ack)),
        );
        let (v, out) = run(&mut d, &input);
        assert_eq!((v, hex(&out)), (PASS, hex(&delivered(&ack))), "gue: socket");
        // A GUE packet that already took its second hop.
        let input = eth(true, &gue4(LB4, SELF4, 60, &hopped));
        let (v, out) = run(&mut d, &input);
        assert_eq!(
            (v, hex(&out)),
            (PASS, hex(&delivered(&moved))),
            "gue: hopped"
        );
    });
    // forwarded, delivered (socket, syn, hopped+socket, gue socket), loops, invalid, no route
    assert_eq!(stats(&d), (2, 4, 2, 0, 0));
    let s = d.stats().unwrap();
    assert_eq!((s.ipip, s.gue), (4, 2), "stripped packets by form");
}

#[test]
fn ipv6_forms_and_udp_policy() {
    let ns = host();
    let mut d = decapper();
    let hop0 = ifindex(&ns, "hop0");
    inside(&ns, || {
        let run = |d: &mut Decapper, f: &[u8]| d.test_run_on(f, hop0).unwrap();
        let client = ip("2001:db8::77");
        let dgram = FrameBuilder::new(
            client,
            ip(VIP6),
            L4::Udp {
                sport: 5353,
                dport: 53,
            },
        )
        .payload(b"query")
        .ip_packet();
        // No UDP socket: forwarded (GUE over IPv6).
        let input = eth(
            true,
            &gue6(LB6, SELF6, 64, &gue_payload(ip(PREV6), 0, &dgram)),
        );
        let (v, out) = run(&mut d, &input);
        let hopped = gue_payload(ip(PREV6), wire::GUE_FLAG_HOPPED, &dgram);
        let want = eth(false, &gue6(SELF6, PREV6, 64, &hopped));
        assert_eq!(
            (v, hex(&out)),
            (TX, hex(&want)),
            "udp without socket: second hop"
        );
        // Any UDP socket for the tuple: delivered.
        let _sock = UdpSocket::bind((v6(VIP6), 53)).unwrap();
        let (v, out) = run(&mut d, &input);
        assert_eq!(
            (v, hex(&out)),
            (PASS, hex(&delivered(&dgram))),
            "udp socket"
        );

        // IP-in-IP over IPv6, TCP without socket: the middle header goes
        // out with the HOPPED flow label.
        let ack = tcp(client, VIP6, 40000, tcp_flags::ACK).ip_packet();
        let (v, out) = run(&mut d, &ipip6(PREV6, wire::IPIP_LABEL_CANDIDATE, &ack));
        let want = eth(
            false,
            &ipv6(SELF6, PREV6, 41, wire::IPIP_LABEL_HOPPED, 64, &ack),
        );
        assert_eq!((v, hex(&out)), (TX, hex(&want)), "ip6ip6 second hop");
        // That frame, at a host without a socket either: the HOPPED flow
        // label in its (only) outer header stops it: delivered.
        let (v, back) = run(&mut d, &out);
        let mut stripped = out[..14].to_vec();
        stripped.extend_from_slice(&ack);
        assert_eq!((v, hex(&back)), (PASS, hex(&stripped)), "hopped ip6ip6");
        // IPv4 VIP traffic inside the IPv6 form.
        let ack4 = tcp(ip("192.0.2.10"), VIP4, 40000, tcp_flags::ACK).ip_packet();
        let input = ipip6(PREV6, wire::IPIP_LABEL_CANDIDATE, &ack4);
        let (v, _) = run(&mut d, &input);
        // PREV6 is not a peer of the IPv4 VIP.
        assert_eq!(v, DROP, "previous owner not a peer of that VIP");
    });
    assert_eq!(stats(&d), (2, 1, 1, 1, 0));
}

#[test]
fn bad_input_is_counted_and_never_forwarded() {
    let ns = host();
    let mut d = decapper();
    let hop0 = ifindex(&ns, "hop0");
    inside(&ns, || {
        let run = |d: &mut Decapper, f: &[u8]| d.test_run_on(f, hop0).unwrap();
        let client = ip("192.0.2.10");
        let ack = tcp(client, VIP4, 40000, tcp_flags::ACK).ip_packet();

        // Previous owner that is not a peer of the VIP: dropped.
        let (v, _) = run(&mut d, &ipip4(STRANGER4, wire::IPIP_ID_CANDIDATE, &ack));
        assert_eq!(v, DROP, "unknown peer");
        // Marked middle header with options: malformed, dropped.
        let mut bad = ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &ack);
        bad[14 + 20] = 0x46;
        assert_eq!(run(&mut d, &bad).0, DROP, "middle header with IHL 6");
        // HOPPED in a middle header (a second hop sends it in the outer
        // one): malformed, dropped.
        let bad = ipip4(PREV4, wire::IPIP_ID_HOPPED, &ack);
        assert_eq!(run(&mut d, &bad).0, DROP, "HOPPED middle header");
        // Original packet truncated inside its TCP header: dropped.
        let full = ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &ack);
        let cut = &full[..14 + 20 + 20 + 20 + 10];
        assert_eq!(run(&mut d, cut).0, DROP, "truncated original packet");
        // GUE record with a wrong length for its family: dropped.
        let mut p = gue_payload(ip(PREV4), 0, &ack);
        p[0] = wire::GUE_HLEN_V6;
        let input = eth(true, &gue4(LB4, SELF4, 64, &p));
        assert_eq!(run(&mut d, &input).0, DROP, "gue hlen mismatch");
        // GUE record cut inside the previous owner's address: dropped.
        let p = gue_payload(ip(PREV4), 0, &ack);
        let input = eth(true, &gue4(LB4, SELF4, 64, &p));
        let cut = &input[..14 + 20 + 8 + 8 + 2];
        assert_eq!(run(&mut d, cut).0, DROP, "gue record truncated");
        // Unknown flag bits: dropped.
        let p = gue_payload(ip(PREV4), 0x80, &ack);
        let input = eth(true, &gue4(LB4, SELF4, 64, &p));
        assert_eq!(run(&mut d, &input).0, DROP, "gue unknown flags");

        // A VIP not configured for second hop here: both layers stripped,
        // the original packet delivered (what an old decap does in effect).
        let other = tcp(client, "198.18.0.99", 40000, tcp_flags::ACK).ip_packet();
        let (v, out) = run(&mut d, &ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &other));
        assert_eq!(
            (v, hex(&out)),
            (PASS, hex(&delivered(&other))),
            "unconfigured VIP"
        );
        // ... and so after clear_second_hop.
        d.clear_second_hop(ip(VIP4)).unwrap();
        let (v, out) = run(&mut d, &ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &ack));
        assert_eq!((v, hex(&out)), (PASS, hex(&delivered(&ack))), "cleared VIP");
        // No route to the previous owner: dropped, counted apart.
        d.set_second_hop(ip(VIP4), &[ip("10.70.0.1")]).unwrap();
        let (v, _) = run(&mut d, &ipip4("10.70.0.1", wire::IPIP_ID_CANDIDATE, &ack));
        assert_eq!(v, DROP, "no route");
        // A client's own packet whose IP ID happens to be the marker is
        // not a record (it carries TCP, not IP): plain decapsulation.
        let plain = ipv4(
            "192.0.2.10",
            VIP4,
            6,
            wire::IPIP_ID_CANDIDATE,
            64,
            &ack[20..],
        );
        let input = eth(true, &ipv4(LB4, SELF4, 4, 0, 64, &plain));
        let (v, out) = run(&mut d, &input);
        assert_eq!(
            (v, hex(&out)),
            (PASS, hex(&delivered(&plain))),
            "marker-like client ID"
        );
    });
    assert_eq!(stats(&d), (0, 0, 0, 9, 1));
    assert!(
        d.set_second_hop(ip(VIP4), &[ip(VIP4)]).is_err(),
        "VIP as its own peer"
    );
}

/// ifindex of `dev` in `ns` (from `ip -j link`).
fn ifindex(ns: &Namespace, dev: &str) -> u32 {
    let text = ns
        .ip_stdout(["-j", "link", "show", "dev", dev])
        .expect("ip link");
    let at = text.find("\"ifindex\":").expect("ifindex in ip -j output") + 10;
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .expect("ifindex")
}

#[test]
fn time_wait_counts_as_this_hosts_connection() {
    use std::io::Read;
    let ns = host();
    let mut d = decapper();
    let hop0 = ifindex(&ns, "hop0");
    let cport = inside(&ns, || {
        let listener = TcpListener::bind((v4(VIP4), 80)).unwrap();
        let mut client = TcpStream::connect((v4(VIP4), 80)).unwrap();
        let (server, _) = listener.accept().unwrap();
        let cport = client.local_addr().unwrap().port();
        // The server closes first, so its side ends in TIME_WAIT; the
        // listener goes too, so only that socket can match.
        drop(server);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "EOF from the server");
        drop(client);
        drop(listener);
        cport
    });
    let in_time_wait = || {
        ns.exec_stdout("ss", ["-Htan", "state", "time-wait"])
            .unwrap()
            .contains(&format!("{VIP4}:80"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !in_time_wait() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(in_time_wait(), "the server side is in TIME_WAIT");
    inside(&ns, || {
        let ack = tcp(ip(VIP4), VIP4, cport, tcp_flags::ACK).ip_packet();
        let (v, out) = d
            .test_run_on(&ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &ack), hop0)
            .unwrap();
        assert_eq!(
            (v, hex(&out)),
            (PASS, hex(&delivered(&ack))),
            "TIME_WAIT: delivered"
        );
        // Another port of the same client: no socket at all, forwarded.
        let other = tcp(ip(VIP4), VIP4, cport.wrapping_add(1), tcp_flags::ACK).ip_packet();
        let (v, _) = d
            .test_run_on(&ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &other), hop0)
            .unwrap();
        assert_eq!(v, TX, "no socket: second hop");
    });
    assert_eq!(stats(&d), (1, 1, 0, 0, 0));
}

#[test]
fn zero_udp_checksum_stays_zero_on_the_second_hop() {
    let ns = host();
    let mut d = decapper();
    let hop0 = ifindex(&ns, "hop0");
    inside(&ns, || {
        let ack = tcp(ip("192.0.2.10"), VIP4, 40000, tcp_flags::ACK).ip_packet();
        let zero = |mut f: Vec<u8>, udp_at: usize| {
            f[udp_at + 6] = 0;
            f[udp_at + 7] = 0;
            f
        };
        let input = zero(
            eth(
                true,
                &gue4(LB4, SELF4, 64, &gue_payload(ip(PREV4), 0, &ack)),
            ),
            14 + 20,
        );
        let hopped = gue_payload(ip(PREV4), wire::GUE_FLAG_HOPPED, &ack);
        let want = zero(eth(false, &gue4(SELF4, PREV4, 64, &hopped)), 14 + 20);
        let (v, out) = d.test_run_on(&input, hop0).unwrap();
        assert_eq!((v, hex(&out)), (TX, hex(&want)), "IPv4");

        let dgram = FrameBuilder::new(
            ip("2001:db8::77"),
            ip(VIP6),
            L4::Udp {
                sport: 5353,
                dport: 53,
            },
        )
        .ip_packet();
        let input = zero(
            eth(
                true,
                &gue6(LB6, SELF6, 64, &gue_payload(ip(PREV6), 0, &dgram)),
            ),
            14 + 40,
        );
        let hopped = gue_payload(ip(PREV6), wire::GUE_FLAG_HOPPED, &dgram);
        let want = zero(eth(false, &gue6(SELF6, PREV6, 64, &hopped)), 14 + 40);
        let (v, out) = d.test_run_on(&input, hop0).unwrap();
        assert_eq!((v, hex(&out)), (TX, hex(&want)), "IPv6 zero-checksum mode");
    });
    assert_eq!(stats(&d), (2, 0, 0, 0, 0));
}

/// The first difference the decap differential fuzz found (seed
/// 0xed6e1b00dec00001, frame 195968): an IP6IP6 record whose middle header
/// came from ff00:200::1 instead of the outer destination; the program took
/// it as a second-hop candidate and tried to forward it with that source.
const FUZZ_FOUND_FORGED_MIDDLE_SOURCE: &str = "02000000000202000000000186dd6000000700932940fd000000000000000000000000010002fd000200000000000000000000000001600e55e0006b2940ff000200000000000000000000000001fd000200000000000000000000000009610000000043064020010db800000000000000000000001020010db8ffff000000000000000000079c6e005000000001000000005031faf0b9540000afe353a5f7d80bfdc6ae4a6250f3e9aba6c9d68f4928a87b621af1066c88bb348580399e08d633875d93a4450db6bb";

/// A marked middle header must come from this host (the outer
/// destination, as the forwarder writes it): a second hop sends it as it
/// is, so any other source would leave this host spoofed. Malformed,
/// dropped, never forwarded.
#[test]
fn middle_header_not_from_this_host_is_malformed() {
    let ns = host();
    let mut d = decapper();
    let hop0 = ifindex(&ns, "hop0");
    inside(&ns, || {
        let run = |d: &mut Decapper, f: &[u8]| d.test_run_on(f, hop0).unwrap();
        // No socket for these flows: with this host's source they would be
        // forwarded (XDP_TX).
        let ack = tcp(ip("192.0.2.10"), VIP4, 40000, tcp_flags::ACK).ip_packet();
        let forged = ipv4("10.50.0.77", PREV4, 4, wire::IPIP_ID_CANDIDATE, 64, &ack);
        let input = eth(true, &ipv4(LB4, SELF4, 4, 0, 64, &forged));
        assert_eq!(run(&mut d, &input).0, DROP, "IPv4 middle from another host");
        let ok = ipip4(PREV4, wire::IPIP_ID_CANDIDATE, &ack);
        assert_eq!(run(&mut d, &ok).0, TX, "the same from this host");

        let ack6 = tcp(ip("2001:db8::77"), VIP6, 40000, tcp_flags::ACK).ip_packet();
        let forged = ipv6("fd50::77", PREV6, 41, wire::IPIP_LABEL_CANDIDATE, 64, &ack6);
        let input = eth(true, &ipv6(LB6, SELF6, 41, 0x12345, 64, &forged));
        assert_eq!(run(&mut d, &input).0, DROP, "IPv6 middle from another host");
        // One family for both headers: an IPv4 middle header in IPv6.
        let middle = ipip4_middle(PREV4, wire::IPIP_ID_CANDIDATE, 64, &ack);
        let input = eth(true, &ipv6(LB6, SELF6, 4, 0x12345, 64, &middle));
        assert_eq!(run(&mut d, &input).0, DROP, "IPv4 middle in IPv6");

        let h = FUZZ_FOUND_FORGED_MIDDLE_SOURCE;
        let found: Vec<u8> = (0..h.len() / 2)
            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let (v, out) = run(&mut d, &found);
        assert_eq!((v, hex(&out)), (DROP, hex(&found)), "the fuzz's frame");
    });
    // forwarded (the good one), invalid (the four forged)
    assert_eq!(stats(&d), (1, 0, 0, 4, 0));
}
