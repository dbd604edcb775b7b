//! Differential fuzz of the backend decap program: 250,000 frames (random
//! bytes, and IPIP / IP6IP6 / 4in6 / 6in4 / GUE frames as the forwarder
//! builds them, both second-hop forms, mutated) through the real program
//! (BPF_PROG_TEST_RUN) and through `xdp_decap::model`, failing on the
//! first difference in verdict, output frame or counters. Needs root.
//!
//! Second hop (FORWARDER.md, backend rules 1-8): two VIPs are configured
//! with peers; the test's namespace holds listeners, established TCP
//! connections and bound UDP sockets on them, and routes with permanent
//! neighbours (and one without) to the peers; the model is given that set
//! as input (it never asks the kernel). Frames carry tuples of those
//! connections, other tuples, SYNs, peers with and without routes, and
//! strangers.
//!
//! `EDGELB_FUZZ_SEED=<n>` runs another sequence, `EDGELB_FUZZ_FRAMES=<n>`
//! another count, `EDGELB_FUZZ_FRAME=<hex>` one frame alone (the
//! connections use fixed ports, so a replayed frame finds its socket).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use packet_builder::{headers, FrameBuilder, L4};
use std::io::Read;

use testbed::{
    fuzz::{self, hex, Rng},
    wait::assert_eventually,
    Namespace,
};
use xdp_decap::{
    model::{DecapModel, HopRule, Route, RouteTo, SecondHop},
    DecapStats, Decapper,
};

const DEFAULT_SEED: u64 = 0xed6e_1b00_dec0_0001;
const DEFAULT_FRAMES: u64 = 250_000;
const BATCH: usize = 1000;
/// Time bound of a run (a full run takes seconds).
const MAX_RUN: Duration = Duration::from_secs(600);
const GUE_PORT: u16 = 6080;
const XDP_TX: u32 = 3;

/// VIPs configured for second hop here (sockets on them), and not.
const VIP4: &str = "203.0.113.7";
const VIP6: &str = "2001:db8:ffff::7";
const VIP4_OFF: &str = "203.0.113.8";
const VIP6_OFF: &str = "2001:db8:ffff::8";
/// This host (outer destination) on `hop0`.
const SELF4: &str = "10.200.0.1";
const SELF6: &str = "fd00:200::1";
/// Peers: with a permanent neighbour (XDP_TX), behind a gateway without
/// a neighbour entry (passed to the kernel), without a route; and a
/// backend that is no peer.
const PEERS4: [&str; 4] = ["10.200.0.9", "10.210.0.9", "10.220.0.9", "10.200.0.66"];
const PEERS6: [&str; 4] = ["fd00:200::9", "fd00:210::9", "fd00:220::9", "fd00:200::66"];
const HOP0_MAC: [u8; 6] = [2, 0, 0, 0, 0x0c, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0x0c, 9];
/// Established connections per VIP: client port CLIENT_PORT + i (from the
/// VIP itself, over loopback) to port 80; then one from TIME_WAIT_PORT whose
/// server side is in TIME_WAIT; CLIENT_PORT + CONNS + 1 has no socket.
const CONNS: u16 = 4;
const CLIENT_PORT: u16 = 41000;
const TIME_WAIT_PORT: u16 = CLIENT_PORT + CONNS;
/// A UDP socket is bound on the VIPs' port 53 (not 5353).
const UDP_PORT: u16 = 53;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The client's packet to a VIP: configured for second hop (75 %) or
/// not; from a tuple of an established connection (30 %: TCP, random
/// flags) or another client (TCP to 80, UDP to the bound port or another).
fn inner(rng: &mut Rng) -> Vec<u8> {
    let v4 = rng.chance(50);
    let configured = rng.chance(75);
    let dst = ip(match (v4, configured) {
        (true, true) => VIP4,
        (true, false) => VIP4_OFF,
        (false, true) => VIP6,
        (false, false) => VIP6_OFF,
    });
    let (src, l4) = if rng.chance(30) {
        (
            ip(if v4 { VIP4 } else { VIP6 }),
            L4::Tcp {
                sport: CLIENT_PORT + rng.below(u64::from(CONNS) + 2) as u16,
                dport: 80,
                flags: rng.next() as u8,
            },
        )
    } else if rng.chance(55) {
        (
            ip(if v4 { "192.0.2.10" } else { "2001:db8::10" }),
            L4::Tcp {
                sport: 40000 + rng.below(100) as u16,
                dport: 80,
                flags: rng.next() as u8,
            },
        )
    } else {
        (
            ip(if v4 { "192.0.2.10" } else { "2001:db8::10" }),
            L4::Udp {
                sport: 40000 + rng.below(100) as u16,
                dport: if rng.chance(50) { UDP_PORT } else { 5353 },
            },
        )
    };
    let n = rng.below(64) as usize;
    FrameBuilder::new(src, dst, l4)
        .payload(&rng.bytes(n))
        .ip_packet()
}

/// A previous owner of the outer family: mostly the routed peer.
fn prev_owner(rng: &mut Rng, v4: bool) -> IpAddr {
    let i = match rng.below(10) {
        0..=4 => 0,
        5 | 6 => 1,
        7 => 2,
        _ => 3,
    };
    ip(if v4 { PEERS4[i] } else { PEERS6[i] })
}

/// An encapsulated frame as the forwarder sends it, or another UDP / IP
/// packet to the backend.
fn encapsulated(rng: &mut Rng) -> Vec<u8> {
    let inner = inner(rng);
    let outer_v4 = rng.chance(50);
    let (src, dst) = if outer_v4 {
        (ip("172.16.1.2"), ip(SELF4))
    } else {
        (ip("fd00::1:2"), ip(SELF6))
    };
    let prev = prev_owner(rng, outer_v4);
    let inner_proto = if inner[0] >> 4 == 4 { 4 } else { 41 };
    let (proto, payload) = match rng.below(14) {
        0..=3 => (inner_proto, inner),
        // Second hop, GUE form: variant 0, EdgeLB's private data.
        10 | 11 => {
            let hlen = if outer_v4 { 2 } else { 5 };
            let mut g = vec![
                hlen,
                inner_proto,
                0,
                0,
                0xe5,
                rng.below(2) as u8,
                if outer_v4 { 4 } else { 6 },
                0,
            ];
            g.extend_from_slice(&addr_bytes(prev));
            g.extend_from_slice(&inner);
            (
                17,
                headers::udp(src, dst, 0xc000 | rng.next() as u16 & 0x3fff, GUE_PORT, &g),
            )
        }
        // Second hop, IP-in-IP form: a marked middle header.
        12 | 13 => {
            let hopped = rng.chance(30);
            let middle = match (dst, prev) {
                (IpAddr::V4(s), IpAddr::V4(d)) => headers::Ipv4Header {
                    src: s,
                    dst: d,
                    proto: inner_proto,
                    tos: 0,
                    ttl: 64,
                    id: if hopped { 0xe55f } else { 0xe55e },
                    dont_fragment: true,
                }
                .bytes(inner.len()),
                (IpAddr::V6(s), IpAddr::V6(d)) => headers::Ipv6Header {
                    src: s,
                    dst: d,
                    next: inner_proto,
                    traffic_class: 0,
                    flow_label: if hopped { 0xe55e1 } else { 0xe55e0 },
                    hop_limit: 64,
                }
                .bytes(inner.len()),
                _ => unreachable!(),
            };
            if hopped {
                // After the second hop the middle header is the outer one.
                let mut m = middle;
                m.extend_from_slice(&inner);
                let mut f = headers::ethernet(
                    [2, 0, 0, 0, 0, 2],
                    [2, 0, 0, 0, 0, 1],
                    None,
                    if outer_v4 { 0x0800 } else { 0x86dd },
                );
                f.extend_from_slice(&m);
                return f;
            }
            let mut m = middle;
            m.extend_from_slice(&inner);
            (if outer_v4 { 4 } else { 41 }, m)
        }
        4..=7 => {
            let port = if rng.chance(85) {
                GUE_PORT
            } else {
                rng.next() as u16
            };
            (
                17,
                headers::udp(src, dst, 0xc000 | rng.next() as u16 & 0x3fff, port, &inner),
            )
        }
        _ => (rng.next() as u8, inner),
    };
    let (ethertype, mut ip_hdr) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (
            0x0800,
            headers::Ipv4Header {
                src: s,
                dst: d,
                proto,
                tos: 0,
                ttl: 64,
                id: 0,
                dont_fragment: true,
            }
            .bytes(payload.len()),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => (
            0x86dd,
            headers::Ipv6Header {
                src: s,
                dst: d,
                next: proto,
                traffic_class: 0,
                flow_label: 7,
                hop_limit: 64,
            }
            .bytes(payload.len()),
        ),
        _ => unreachable!(),
    };
    if outer_v4 && rng.chance(5) {
        // A fragment: MF, or an offset.
        ip_hdr[6] = if rng.chance(50) { 0x20 } else { 0x01 };
    }
    let vlan = if rng.chance(5) { Some(7) } else { None };
    let mut f = headers::ethernet([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], vlan, ethertype);
    f.extend_from_slice(&ip_hdr);
    f.extend_from_slice(&payload);
    f
}

/// Bit flips, truncation at header boundaries, IHL / protocol / next
/// header / EtherType / port rewrites, trailing bytes.
fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let v4 = f.len() > 14 && f[14] >> 4 == 4;
        let l4 = 14
            + if v4 {
                usize::from(f[14] & 0x0f) * 4
            } else {
                40
            };
        match rng.below(8) {
            0 | 1 => {
                let at = rng.below(f.len() as u64) as usize;
                f[at] ^= 1 << rng.below(8);
            }
            2 => {
                let cuts = [
                    14,
                    15,
                    33,
                    34,
                    53,
                    54,
                    l4,
                    l4 + 7,
                    l4 + 8,
                    l4 + 9,
                    l4 + 13,
                    l4 + 14,
                    l4 + 22,
                    l4 + 28,
                ];
                let cut = cuts[rng.below(cuts.len() as u64) as usize].max(14);
                f.truncate(cut.min(f.len()));
            }
            3 if f.len() > 14 => f[14] = (f[14] & 0xf0) | (rng.next() as u8 & 0x0f),
            4 if f.len() > 23 => {
                let at = if v4 { 23 } else { 20 };
                f[at] = [4, 41, 17, 44, 0, rng.next() as u8][rng.below(6) as usize];
            }
            5 => {
                let et = [
                    [0x08, 0x00],
                    [0x86, 0xdd],
                    [0x81, 0x00],
                    [rng.next() as u8, 0],
                ];
                f[12..14].copy_from_slice(&et[rng.below(4) as usize]);
            }
            6 if f.len() > l4 + 4 => f[l4 + 2..l4 + 4].copy_from_slice(&GUE_PORT.to_be_bytes()),
            _ => {
                let n = rng.below(40) as usize;
                let tail = rng.bytes(n);
                f.extend_from_slice(&tail);
            }
        }
        if f.len() < 14 {
            f.resize(14, 0);
        }
    }
}

fn frame(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        let n = 14 + rng.below(100) as usize;
        return rng.bytes(n);
    }
    let mut f = encapsulated(rng);
    if rng.chance(60) {
        mutate(rng, &mut f);
    }
    f
}

fn add(a: DecapStats, b: DecapStats) -> DecapStats {
    DecapStats {
        ipip: a.ipip + b.ipip,
        gue: a.gue + b.gue,
        fragments: a.fragments + b.fragments,
        second_hop_forwarded: a.second_hop_forwarded + b.second_hop_forwarded,
        second_hop_delivered: a.second_hop_delivered + b.second_hop_delivered,
        second_hop_loop_refused: a.second_hop_loop_refused + b.second_hop_loop_refused,
        second_hop_invalid: a.second_hop_invalid + b.second_hop_invalid,
        second_hop_no_route: a.second_hop_no_route + b.second_hop_no_route,
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The namespace: `hop0` (this host's addresses) with permanent neighbour
/// entries for the first peers, routes via a gateway without a neighbour
/// entry to the second, none to the third; the configured VIPs on
/// loopback; forwarding on (the route lookup requires it).
fn host() -> Namespace {
    let ns = Namespace::unique("dfz").expect("namespace");
    let run = |args: &[&str]| {
        ns.ip(args)
            .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    };
    let hop0_mac = mac(HOP0_MAC);
    run(&[
        "link", "add", "hop0", "address", &hop0_mac, "type", "veth", "peer", "name", "hop0p",
    ]);
    run(&["link", "set", "hop0", "up"]);
    run(&["link", "set", "hop0p", "up"]);
    run(&["link", "set", "lo", "up"]);
    run(&["addr", "add", &format!("{SELF4}/24"), "dev", "hop0"]);
    run(&[
        "addr",
        "add",
        &format!("{SELF6}/64"),
        "dev",
        "hop0",
        "nodad",
    ]);
    run(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
    run(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo"]);
    let peer_mac = mac(PEER_MAC);
    for (peer, fam) in [(PEERS4[0], "-4"), (PEERS6[0], "-6")] {
        run(&[
            fam,
            "neigh",
            "add",
            peer,
            "lladdr",
            &peer_mac,
            "dev",
            "hop0",
            "nud",
            "permanent",
        ]);
    }
    run(&["route", "add", "10.210.0.0/16", "via", "10.200.0.2"]);
    run(&["-6", "route", "add", "fd00:210::/64", "via", "fd00:200::2"]);
    ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    ns.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    ns
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

/// The sockets of the host (opened on the calling thread, inside the
/// namespace), kept open while they live.
struct Sockets {
    _listeners: Vec<TcpListener>,
    _streams: Vec<TcpStream>,
    _udp: Vec<UdpSocket>,
    /// Every non-listening TCP socket: (local, remote).
    tcp_connected: Vec<(SocketAddr, SocketAddr)>,
    udp_bound: Vec<SocketAddr>,
}

/// Listeners on both VIPs' port 80, `CONNS` connections to each from the
/// VIP itself with fixed client ports (both ends are sockets here), one
/// more whose server side is left in TIME_WAIT (its client side closed),
/// UDP bound on the VIPs' port 53.
fn open_sockets(ns: &Namespace) -> Sockets {
    let mut s = Sockets {
        _listeners: Vec::new(),
        _streams: Vec::new(),
        _udp: Vec::new(),
        tcp_connected: Vec::new(),
        udp_bound: Vec::new(),
    };
    let connect = |listener: &TcpListener, vip: IpAddr, port: u16| {
        let domain = if vip.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
        sock.set_reuse_address(true).unwrap();
        sock.bind(&SocketAddr::new(vip, port).into())
            .expect("bind the client port");
        sock.connect(&SocketAddr::new(vip, 80).into())
            .expect("connect to the VIP");
        let (server, _) = listener.accept().unwrap();
        (TcpStream::from(sock), server)
    };
    for vip in [ip(VIP4), ip(VIP6)] {
        let listener = TcpListener::bind((vip, 80)).expect("listen on the VIP");
        // The server closes first, so its side ends in TIME_WAIT.
        let (mut client, server) = connect(&listener, vip, TIME_WAIT_PORT);
        s.tcp_connected
            .push((server.local_addr().unwrap(), server.peer_addr().unwrap()));
        drop(server);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "EOF from the server");
        drop(client);
        for i in 0..CONNS {
            let (client, server) = connect(&listener, vip, CLIENT_PORT + i);
            s.tcp_connected
                .push((server.local_addr().unwrap(), server.peer_addr().unwrap()));
            s.tcp_connected
                .push((client.local_addr().unwrap(), client.peer_addr().unwrap()));
            s._streams.push(client);
            s._streams.push(server);
        }
        s._listeners.push(listener);
        let udp = UdpSocket::bind((vip, UDP_PORT)).expect("bind UDP on the VIP");
        s.udp_bound.push(udp.local_addr().unwrap());
        s._udp.push(udp);
    }
    // The TIME_WAIT sides are there and nothing else is closing: the set
    // of non-listening sockets is the one given to the model.
    let tw = |addr: &str| format!("{addr}:80");
    assert_eventually(
        Duration::from_secs(5),
        "two TIME_WAIT sockets, none closing",
        || {
            let ss = |state: &str| ns.exec_stdout("ss", ["-Htan", "state", state]).expect("ss");
            let time_wait = ss("time-wait");
            time_wait.lines().count() == 2
                && time_wait.contains(&tw(VIP4))
                && time_wait.contains(&tw(&format!("[{VIP6}]")))
                && [
                    "fin-wait-1",
                    "fin-wait-2",
                    "close-wait",
                    "last-ack",
                    "closing",
                ]
                .iter()
                .all(|st| ss(st).trim().is_empty())
        },
    );
    s
}

/// The model's view of the host: configured VIPs and peers, the sockets,
/// and what the route lookup gives towards the peers.
fn model(sockets: &Sockets) -> DecapModel {
    let next = RouteTo::Next {
        dst_mac: PEER_MAC,
        src_mac: HOP0_MAC,
        verdict: XDP_TX,
    };
    let route = |prefix: &str, len: u8, to: RouteTo| Route {
        prefix: ip(prefix),
        len,
        to,
    };
    DecapModel {
        gue_port: GUE_PORT,
        second_hop: SecondHop {
            vips: vec![(ip(VIP4), peers(true)), (ip(VIP6), peers(false))],
            tcp_connected: sockets.tcp_connected.clone(),
            udp_bound: sockets.udp_bound.clone(),
            routes: vec![
                route(PEERS4[0], 32, next),
                route(PEERS6[0], 128, next),
                route("10.210.0.0", 16, RouteTo::NoNeighbour),
                route("fd00:210::", 64, RouteTo::NoNeighbour),
            ],
        },
    }
}

/// The peers of a VIP: the first three of its family, and the routed one
/// of the other family (4in6 / 6in4 records).
fn peers(v4: bool) -> Vec<IpAddr> {
    let (own, other) = if v4 {
        (PEERS4, PEERS6)
    } else {
        (PEERS6, PEERS4)
    };
    own[..3].iter().chain(&other[..1]).map(|p| ip(p)).collect()
}

#[test]
fn decap_agrees_with_the_model_on_250k_frames() {
    let ns = host();
    let hop0 = ifindex(&ns, "hop0");
    let mut dec = Decapper::load(GUE_PORT).expect("load the decap program");
    for vip in [VIP4, VIP6] {
        dec.set_second_hop(ip(vip), &peers(vip == VIP4)).unwrap();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter_current_thread().expect("setns");
                let sockets = open_sockets(&ns);
                fuzz(&mut dec, &model(&sockets), hop0);
            })
            .join()
            .expect("fuzz thread panicked")
    });
}

/// Runs the frames (inside the namespace: socket and route lookups look there).
fn fuzz(dec: &mut Decapper, model: &DecapModel, hop0: u32) {
    type Step = (DecapStats, Option<HopRule>);
    let run = |dec: &mut Decapper, f: &[u8]| -> Result<Step, String> {
        let want = model.step(f);
        let (verdict, out) = dec
            .test_run_on(f, hop0)
            .map_err(|e| format!("test run: {e}"))?;
        if verdict != want.verdict || out != want.frame {
            return Err(format!(
                "program verdict {verdict} frame {}\n  model verdict {} frame {} ({:?})",
                hex(&out),
                want.verdict,
                hex(&want.frame),
                want.rule
            ));
        }
        Ok((want.stats, want.rule))
    };
    if let Some(f) = fuzz::replay_frame() {
        let before = dec.stats().unwrap();
        let (want, rule) = run(dec, &f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            dec.stats().unwrap(),
            add(before, want),
            "counters (program, model)"
        );
        eprintln!("frame agrees ({rule:?})");
        return;
    }
    let seed = fuzz::seed(DEFAULT_SEED);
    let total = fuzz::frames(DEFAULT_FRAMES);
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut want_stats = dec.stats().unwrap();
    let mut rules: BTreeMap<String, u64> = BTreeMap::new();
    let mut done = 0u64;
    while done < total {
        // Bounded in time as well as in count (minutes above what it takes).
        assert!(
            started.elapsed() < MAX_RUN,
            "seed {seed:#x}: {done} frames in {:?}, past the time bound",
            started.elapsed()
        );
        let n = BATCH.min((total - done) as usize);
        let frames: Vec<Vec<u8>> = (0..n).map(|_| frame(&mut rng)).collect();
        let before = want_stats;
        for (i, f) in frames.iter().enumerate() {
            match run(dec, f) {
                Ok((s, rule)) => {
                    want_stats = add(want_stats, s);
                    if let Some(r) = rule {
                        *rules.entry(format!("{r:?}")).or_default() += 1;
                    }
                }
                Err(e) => panic!(
                    "seed {seed:#x}, frame {}: {e}\n  frame {}\n  replay: EDGELB_FUZZ_FRAME={}",
                    done + i as u64,
                    hex(f),
                    hex(f)
                ),
            }
        }
        if dec.stats().unwrap() != want_stats {
            let mut expect = dec.stats().unwrap();
            for (i, f) in frames.iter().enumerate() {
                let (want, _) = run(dec, f).unwrap_or_else(|e| panic!("{e}"));
                let got = dec.stats().unwrap();
                expect = add(expect, want);
                assert_eq!(
                    got,
                    expect,
                    "seed {seed:#x}, frame {}: counters (program, model)\n  frame {}",
                    done + i as u64,
                    hex(f)
                );
            }
            panic!("seed {seed:#x}: counters differ over a batch (from {before:?}) but not frame by frame");
        }
        done += n as u64;
    }
    let s = dec.stats().unwrap();
    eprintln!(
        "decap diff_fuzz: {done} frames, seed {seed:#x}, {:.1} s; {s:?}; second-hop rules {rules:?}",
        started.elapsed().as_secs_f64(),
    );
    assert!(
        s.ipip * 10 > done && s.gue * 10 > done,
        "too few decapsulated frames: {s:?}"
    );
    // Every second-hop rule taken by a fair share of the frames.
    for r in [
        HopRule::Malformed,
        HopRule::Unconfigured,
        HopRule::HoppedDelivered,
        HopRule::LoopRefused,
        HopRule::UnknownPeer,
        HopRule::DeliveredSyn,
        HopRule::DeliveredSocket,
        HopRule::Forwarded,
        HopRule::ForwardedNoNeighbour,
        HopRule::NoRoute,
    ] {
        let n = rules.get(&format!("{r:?}")).copied().unwrap_or(0);
        assert!(n * 1000 > done, "rule {r:?} taken by {n} of {done} frames");
    }
}
