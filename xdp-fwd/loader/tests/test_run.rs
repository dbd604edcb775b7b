//! BPF_PROG_TEST_RUN fixtures: real frames through the real XDP program,
//! checking the verdict and the output frame byte for byte. Frames that are
//! forwarded arrive on `fwd0` of a [`RouteLab`] namespace so
//! `bpf_fib_lookup` sees real routes and neighbours. Needs root.

mod common;

use std::{net::IpAddr, time::Duration};

use common::*;
use packet_builder::{tcp_flags, Fragment, FrameBuilder, L4};
use xdp_fwd::{
    common::{addr_words, stats::stat, vip_filter_bit, vip_flags},
    verdict, Capacity, Encap, Forwarder, ForwarderSettings, HashFields, LoadOptions, Protocol,
    VipKey, VipOptions, NO_BACKEND,
};

const CAP: Capacity = Capacity {
    vips: 16,
    backends: 64,
    table_size: 251,
    flows: 1024,
};
/// Table size used by the fixtures (prime, like real Maglev tables).
const M: usize = 13;

fn settings() -> ForwarderSettings {
    ForwarderSettings {
        hash_seed: 0x5eed_0001,
        gue_port: 6080,
        ..Default::default()
    }
}

fn forwarder() -> Forwarder {
    let mut f = Forwarder::load_with(LoadOptions {
        pin_dir: None,
        capacity: CAP,
    })
    .expect("load and verify the XDP program");
    f.set_settings(&settings()).unwrap();
    f
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> FrameBuilder {
    FrameBuilder::new(
        ip(src),
        ip(dst),
        L4::Tcp {
            sport,
            dport,
            flags,
        },
    )
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> FrameBuilder {
    FrameBuilder::new(ip(src), ip(dst), L4::Udp { sport, dport })
}

/// Adds `vip` with `options` and a round-robin table over `backends`.
fn serve(fwd: &mut Forwarder, vip: VipKey, options: VipOptions, backends: &[&str]) {
    let b: Vec<IpAddr> = backends.iter().map(|s| ip(s)).collect();
    fwd.set_vip(vip, options).unwrap();
    fwd.set_table(&vip, &b, &round_robin_table(M, b.len()))
        .unwrap();
}

#[test]
fn table_updates_write_only_changed_slots_of_the_inactive_half() {
    let lab = RouteLab::new("diff");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    fwd.set_vip(vip, VipOptions::default()).unwrap();
    let b: Vec<IpAddr> = V4_BACKENDS.iter().map(|s| ip(s)).collect();
    let t1 = round_robin_table(M, 3);
    let t2 = vec![0; M];
    let mut t3 = t1.clone();
    t3[5] = 0; // was 2
               // Both halves start unknown: full writes.
    assert_eq!(fwd.set_table(&vip, &b, &t1).unwrap(), M);
    assert_eq!(fwd.set_table(&vip, &b, &t2).unwrap(), M);
    // The inactive half now holds t1: one slot differs from t3.
    assert_eq!(fwd.set_table(&vip, &b, &t3).unwrap(), 1);
    // Then t2's half, which differs from t3 wherever t3 is not 0.
    assert_eq!(
        fwd.set_table(&vip, &b, &t3).unwrap(),
        t3.iter().filter(|&&x| x != 0).count()
    );
    // The live table is t3: a flow hashing to each slot goes where t3 says.
    for sport in 40000..40040 {
        let f = tcp("192.0.2.10", "203.0.113.7", sport, 80, tcp_flags::SYN);
        let h = hash_of(f.src, f.dst, sport, 80, 6, settings().hash_seed, 0);
        let out = lab
            .ns
            .run(|| fwd.test_run_on(&f.build(), lab.fwd0, 1))
            .unwrap();
        assert_eq!(outer_dst(&out.frame), b[t3[h as usize % M] as usize]);
    }
}

/// (hash, backend) the program must pick for a new flow of `frame`.
fn expected_choice(frame: &FrameBuilder, backends: &[&str], flags: u32) -> (u32, IpAddr) {
    let (sport, dport, proto) = match frame.l4 {
        L4::Tcp { sport, dport, .. } => (sport, dport, 6),
        L4::Udp { sport, dport } => (sport, dport, 17),
        L4::Icmp { .. } => panic!("not a flow"),
    };
    let h = hash_of(
        frame.src,
        frame.dst,
        sport,
        dport,
        proto,
        settings().hash_seed,
        flags,
    );
    (h, ip(backends[rr_backend(h, M, backends.len())]))
}

/// Runs `frame` on fwd0 and checks XDP_TX with the exact expected frame.
fn assert_forwarded(
    lab: &RouteLab,
    fwd: &mut Forwarder,
    frame: &FrameBuilder,
    backends: &[&str],
    flags: u32,
    mode: Expect,
) -> IpAddr {
    let (hash, backend) = expected_choice(frame, backends, flags);
    let out = lab
        .ns
        .run(|| fwd.test_run_on(&frame.build(), lab.fwd0, 1))
        .unwrap();
    assert_eq!(out.verdict, verdict::TX, "verdict for {frame:?}");
    let want = expected_encap(frame, &settings(), backend, hash, mode, GW0_MAC, FWD0_MAC);
    assert_eq!(hex(&out.frame), hex(&want), "frame for {frame:?}");
    backend
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The outer destination of an encapsulated frame (no VLAN).
fn outer_dst(frame: &[u8]) -> IpAddr {
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => IpAddr::from(<[u8; 4]>::try_from(&frame[30..34]).unwrap()),
        0x86dd => IpAddr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap()),
        t => panic!("not IP: ethertype {t:#x}"),
    }
}

const V4_BACKENDS: [&str; 3] = ["10.200.0.1", "10.200.0.2", "10.200.0.3"];
const V6_BACKENDS: [&str; 3] = ["fd00:200::1", "fd00:200::2", "fd00:200::3"];

#[test]
fn ipv4_vip_ipip_byte_exact() {
    let lab = RouteLab::new("ipip");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let mut per_backend = std::collections::BTreeMap::<IpAddr, (u64, u64)>::new();
    for (n, sport) in [40000u16, 40001, 40002, 51515].into_iter().enumerate() {
        let f = tcp("192.0.2.10", "203.0.113.7", sport, 80, tcp_flags::SYN)
            .tos(0x2e)
            .payload(&vec![7; n * 10]);
        let b = assert_forwarded(&lab, &mut fwd, &f, &V4_BACKENDS, 0, Expect::IpIp);
        let e = per_backend.entry(b).or_default();
        e.0 += 1;
        e.1 += f.build().len() as u64;
    }
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::ACTION_TX), 4);
    assert_eq!(s.get(stat::LRU_MISS), 4);
    assert_eq!(s.vips[&vip].packets, 4);
    let total: u64 = per_backend.values().map(|(_, b)| b).sum();
    assert_eq!(s.vips[&vip].bytes, total);
    for (b, (packets, bytes)) in &per_backend {
        assert_eq!(
            (s.backends[b].packets, s.backends[b].bytes),
            (*packets, *bytes),
            "{b}"
        );
    }
}

#[test]
fn ipv6_vip_ip6ip6_byte_exact() {
    let lab = RouteLab::new("ip6ip6");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("2001:db8:ffff::7"), 443, Protocol::Udp);
    serve(&mut fwd, vip, VipOptions::default(), &V6_BACKENDS);
    for sport in [1000, 2000, 3000] {
        let f = udp("2001:db8::10", "2001:db8:ffff::7", sport, 443).tos(0xb8);
        assert_forwarded(&lab, &mut fwd, &f, &V6_BACKENDS, 0, Expect::IpIp);
    }
}

#[test]
fn mixed_families_ipv4_in_ipv6_and_ipv6_in_ipv4() {
    let lab = RouteLab::new("mixed");
    let mut fwd = forwarder();
    let vip4 = VipKey::new(ip("203.0.113.8"), 80, Protocol::Tcp);
    serve(&mut fwd, vip4, VipOptions::default(), &V6_BACKENDS);
    let f = tcp("192.0.2.10", "203.0.113.8", 40000, 80, tcp_flags::SYN);
    assert_forwarded(&lab, &mut fwd, &f, &V6_BACKENDS, 0, Expect::IpIp);

    let vip6 = VipKey::new(ip("2001:db8:ffff::8"), 80, Protocol::Tcp);
    serve(&mut fwd, vip6, VipOptions::default(), &V4_BACKENDS);
    let f = tcp(
        "2001:db8::10",
        "2001:db8:ffff::8",
        40000,
        80,
        tcp_flags::SYN,
    )
    .tos(0x10);
    assert_forwarded(&lab, &mut fwd, &f, &V4_BACKENDS, 0, Expect::IpIp);
}

#[test]
fn gue_per_vip_and_global_with_valid_outer_checksums() {
    let lab = RouteLab::new("gue");
    let mut fwd = forwarder();
    let gue = VipOptions {
        encap: Encap::Gue,
        ..Default::default()
    };
    let cases: [(&str, &str, &[&str]); 4] = [
        ("203.0.113.9", "192.0.2.10", &V4_BACKENDS),
        ("203.0.113.10", "192.0.2.10", &V6_BACKENDS),
        ("2001:db8:ffff::9", "2001:db8::10", &V6_BACKENDS),
        ("2001:db8:ffff::10", "2001:db8::10", &V4_BACKENDS),
    ];
    for (vip_addr, client, backends) in cases {
        let vip = VipKey::new(ip(vip_addr), 53, Protocol::Udp);
        serve(&mut fwd, vip, gue, backends);
        let f = udp(client, vip_addr, 5353, 53).payload(b"a GUE payload of odd length");
        assert_forwarded(&lab, &mut fwd, &f, backends, 0, Expect::Gue(6080));
        let vip = VipKey::new(ip(vip_addr), 80, Protocol::Tcp);
        serve(&mut fwd, vip, gue, backends);
        let f = tcp(client, vip_addr, 40000, 80, tcp_flags::ACK).tos(0x48);
        assert_forwarded(&lab, &mut fwd, &f, backends, 0, Expect::Gue(6080));
    }
    // An IPv4 UDP datagram without checksum: the outer checksum cannot be
    // derived from the headers, so it is 0 (allowed for UDP over IPv4).
    let vip = VipKey::new(ip("203.0.113.12"), 53, Protocol::Udp);
    serve(&mut fwd, vip, gue, &V4_BACKENDS);
    let f = udp("192.0.2.10", "203.0.113.12", 5353, 53);
    let mut frame = f.build();
    frame[40..42].copy_from_slice(&[0, 0]);
    let (hash, backend) = expected_choice(&f, &V4_BACKENDS, 0);
    let out = lab.ns.run(|| fwd.test_run_on(&frame, lab.fwd0, 1)).unwrap();
    let mut want = expected_encap_of(
        &frame[14..],
        None,
        &settings(),
        backend,
        hash,
        Expect::Gue(6080),
        GW0_MAC,
        FWD0_MAC,
    );
    want[40..42].copy_from_slice(&[0, 0]);
    assert_eq!((out.verdict, hex(&out.frame)), (verdict::TX, hex(&want)));

    // GUE as the global choice for VIPs that do not pick one.
    let global = ForwarderSettings {
        default_encap: Encap::Gue,
        gue_port: 9886,
        ..settings()
    };
    fwd.set_settings(&global).unwrap();
    let vip = VipKey::new(ip("203.0.113.11"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let f = tcp("192.0.2.10", "203.0.113.11", 40000, 80, tcp_flags::SYN);
    let (hash, backend) = expected_choice(&f, &V4_BACKENDS, 0);
    let out = lab
        .ns
        .run(|| fwd.test_run_on(&f.build(), lab.fwd0, 1))
        .unwrap();
    assert_eq!(out.verdict, verdict::TX);
    let want = expected_encap(
        &f,
        &global,
        backend,
        hash,
        Expect::Gue(9886),
        GW0_MAC,
        FWD0_MAC,
    );
    assert_eq!(hex(&out.frame), hex(&want));
}

#[test]
fn vlan_tag_is_parsed_and_kept() {
    let lab = RouteLab::new("vlan");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let f = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN).vlan(42);
    assert_forwarded(&lab, &mut fwd, &f, &V4_BACKENDS, 0, Expect::IpIp);
    let vip6 = VipKey::new(ip("2001:db8:ffff::7"), 80, Protocol::Tcp);
    serve(
        &mut fwd,
        vip6,
        VipOptions {
            encap: Encap::Gue,
            ..Default::default()
        },
        &V6_BACKENDS,
    );
    let f = tcp(
        "2001:db8::10",
        "2001:db8:ffff::7",
        40000,
        80,
        tcp_flags::SYN,
    )
    .vlan(4000);
    assert_forwarded(&lab, &mut fwd, &f, &V6_BACKENDS, 0, Expect::Gue(6080));
}

#[test]
fn ipv4_options_are_forwarded_and_counted() {
    let lab = RouteLab::new("opts");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    // Router alert (4 bytes), then 8 bytes of NOPs / end of list: IHL 8.
    let f = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN)
        .ipv4_options(&[0x94, 0x04, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0]);
    assert_forwarded(&lab, &mut fwd, &f, &V4_BACKENDS, 0, Expect::IpIp);
    let f = udp("192.0.2.10", "203.0.113.7", 40000, 80).ipv4_options(&[1, 1, 1, 0]);
    assert_eq!(
        fwd.test_run(&f.build()).unwrap().verdict,
        verdict::PASS,
        "UDP is not the VIP"
    );
    assert_eq!(fwd.counter(stat::IPV4_OPTIONS).unwrap(), 1);
}

#[test]
fn port_zero_vip_and_exact_port_precedence() {
    let lab = RouteLab::new("port0");
    let mut fwd = forwarder();
    let any = VipKey::new(ip("203.0.113.20"), 0, Protocol::Tcp);
    serve(&mut fwd, any, VipOptions::default(), &V4_BACKENDS);
    for port in [1u16, 22, 443, 65535] {
        let f = tcp("192.0.2.10", "203.0.113.20", 40000, port, tcp_flags::SYN);
        assert_forwarded(&lab, &mut fwd, &f, &V4_BACKENDS, 0, Expect::IpIp);
    }
    let exact = VipKey::new(ip("203.0.113.20"), 443, Protocol::Tcp);
    serve(&mut fwd, exact, VipOptions::default(), &["10.200.9.9"]);
    let f = tcp("192.0.2.10", "203.0.113.20", 40001, 443, tcp_flags::SYN);
    assert_forwarded(&lab, &mut fwd, &f, &["10.200.9.9"], 0, Expect::IpIp);
    // A UDP packet to the same address is not a TCP VIP.
    let f = udp("192.0.2.10", "203.0.113.20", 40000, 443);
    assert_eq!(fwd.test_run(&f.build()).unwrap().verdict, verdict::PASS);
}

#[test]
fn vip_without_usable_backend_drops_and_counts() {
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 53, Protocol::Udp);
    fwd.set_vip(vip, VipOptions::default()).unwrap();
    let frame = udp("192.0.2.10", "203.0.113.7", 40000, 53).build();
    // No table yet.
    assert_eq!(fwd.test_run(&frame).unwrap().verdict, verdict::DROP);
    // An empty table (all backends gone).
    fwd.set_table(&vip, &[], &[]).unwrap();
    assert_eq!(fwd.test_run(&frame).unwrap().verdict, verdict::DROP);
    // A table whose every slot is empty.
    fwd.set_table(&vip, &[ip("10.200.0.1")], &[NO_BACKEND; M])
        .unwrap();
    assert_eq!(fwd.test_run(&frame).unwrap().verdict, verdict::DROP);
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::DROP_NO_BACKEND), 3);
    assert_eq!(s.get(stat::ACTION_DROP), 3);
    assert_eq!(s.vips[&vip].packets, 3);
    // Removing the VIP: its traffic passes untouched again.
    fwd.remove_vip(&vip).unwrap();
    let out = fwd.test_run(&frame).unwrap();
    assert_eq!((out.verdict, out.frame), (verdict::PASS, frame));
}

#[test]
fn non_vip_traffic_passes_untouched() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp),
        VipOptions::default(),
        &V4_BACKENDS,
    );
    serve(
        &mut fwd,
        VipKey::new(ip("2001:db8:ffff::7"), 80, Protocol::Tcp),
        VipOptions::default(),
        &V6_BACKENDS,
    );
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(60, 0);
    let frames = vec![
        tcp("192.0.2.10", "198.51.100.1", 40000, 80, tcp_flags::SYN).build(),
        tcp("192.0.2.10", "203.0.113.7", 40000, 81, tcp_flags::SYN).build(),
        udp("192.0.2.10", "203.0.113.7", 40000, 80).build(),
        tcp(
            "2001:db8::10",
            "2001:db8:ffff::8",
            40000,
            80,
            tcp_flags::SYN,
        )
        .build(),
        tcp(
            "2001:db8::10",
            "2001:db8:ffff::7",
            40000,
            80,
            tcp_flags::SYN,
        )
        .vlan(7)
        .build()[..]
            .to_vec()
            .iter()
            .enumerate()
            // Same frame with a double (QinQ) tag: only one tag is parsed.
            .flat_map(|(i, b)| {
                if i == 12 {
                    vec![0x81, 0x00, 0x00, 0x07, *b]
                } else {
                    vec![*b]
                }
            })
            .collect(),
        FrameBuilder::new(
            ip("192.0.2.10"),
            ip("198.51.100.1"),
            L4::Icmp {
                kind: 8,
                code: 0,
                rest: [0; 4],
            },
        )
        .build(),
        arp,
    ];
    for frame in frames {
        let out = fwd.test_run(&frame).unwrap();
        assert_eq!(out.verdict, verdict::PASS, "{}", hex(&frame));
        assert_eq!(out.frame, frame);
    }
    assert_eq!(fwd.counter(stat::ACTION_PASS).unwrap(), 7);
}

/// The VIP address filter only ever short-cuts traffic that is not for a
/// VIP: an address whose filter bit is a VIP's still passes untouched (the
/// exact lookup decides), the VIP is forwarded, and an ICMP echo to the
/// twin address is not answered.
#[test]
fn vip_filter_never_hides_a_vip_nor_claims_its_twin() {
    let lab = RouteLab::new("filter");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let bit = |a: IpAddr| {
        let (words, fam) = addr_words(a);
        vip_filter_bit(&words, fam)
    };
    let twin = (1..1u32 << 24)
        .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
        .find(|a| bit(*a) == bit(vip.address))
        .expect("some 10/8 address shares the VIP's filter bit");
    let twin = twin.to_string();
    let to_twin = tcp("192.0.2.10", &twin, 40000, 80, tcp_flags::SYN).build();
    let echo_twin = FrameBuilder::new(
        ip("192.0.2.10"),
        ip(&twin),
        L4::Icmp {
            kind: 8,
            code: 0,
            rest: [0; 4],
        },
    )
    .build();
    for frame in [to_twin, echo_twin] {
        let out = lab.ns.run(|| fwd.test_run_on(&frame, lab.fwd0, 1)).unwrap();
        assert_eq!(out.verdict, verdict::PASS, "{}", hex(&frame));
        assert_eq!(out.frame, frame);
    }
    let syn = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);
    // Removing the VIP clears its bit; adding it back sets it again.
    fwd.remove_vip(&vip).unwrap();
    let out = fwd.test_run(&syn.build()).unwrap();
    assert_eq!(out.verdict, verdict::PASS);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);
}

#[test]
fn established_flow_keeps_its_backend_after_a_table_change() {
    let lab = RouteLab::new("lru");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    let first = assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);

    // New table: every slot to a backend the flow did not have.
    let other = ip("10.200.0.99");
    let backends = [first, other];
    fwd.set_table(&vip, &backends, &[1; M]).unwrap();
    let ack = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::ACK);
    let run = |fwd: &mut Forwarder, f: &FrameBuilder| {
        lab.ns
            .run(|| fwd.test_run_on(&f.build(), lab.fwd0, 1))
            .unwrap()
    };
    let out = run(&mut fwd, &ack);
    assert_eq!(out.verdict, verdict::TX);
    assert_eq!(
        outer_dst(&out.frame),
        first,
        "LRU hit keeps the old backend"
    );
    // A new connection of another client port goes by the new table.
    let new_conn = tcp("192.0.2.10", "203.0.113.7", 40001, 80, tcp_flags::SYN);
    assert_eq!(outer_dst(&run(&mut fwd, &new_conn).frame), other);
    // A SYN reusing the old tuple is a new connection: current table, and it sticks.
    assert_eq!(outer_dst(&run(&mut fwd, &syn).frame), other);
    assert_eq!(outer_dst(&run(&mut fwd, &ack).frame), other);
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::LRU_HIT), 2);
    assert_eq!(s.get(stat::LRU_MISS), 3);

    // When the flow's backend leaves the pool, the entry is not used.
    fwd.set_table(&vip, &[ip("10.200.0.77")], &[0; M]).unwrap();
    assert_eq!(outer_dst(&run(&mut fwd, &ack).frame), ip("10.200.0.77"));
}

#[test]
fn connection_table_is_per_cpu() {
    let lab = RouteLab::new("percpu");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    let first = assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);
    let other = ip("10.200.0.99");
    fwd.set_table(&vip, &[first, other], &[1; M]).unwrap();
    let ack = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::ACK).build();
    // CPU 1 has no entry for the flow (its own slice of sets does not hold
    // the entry CPU 0 inserted): the current table decides.
    let out = lab
        .ns
        .run_on_cpu(1, || fwd.test_run_on(&ack, lab.fwd0, 1))
        .unwrap();
    assert_eq!(outer_dst(&out.frame), other);
    // CPU 0 still has the flow on its first backend.
    let out = lab
        .ns
        .run_on_cpu(0, || fwd.test_run_on(&ack, lab.fwd0, 1))
        .unwrap();
    assert_eq!(outer_dst(&out.frame), first);
    let s = fwd.stats().unwrap();
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (1, 2));
}

/// Established flows skip the VIP lookup while their VIP is unchanged
/// (VIP_EPOCHS): a changed VIP applies to them at once, with the backend
/// kept, and a removed VIP stops them even though their backend is still
/// live for another VIP.
#[test]
fn cached_flows_follow_vip_changes_and_removal() {
    let lab = RouteLab::new("vipchg");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let sibling = VipKey::new(ip("203.0.113.8"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    serve(&mut fwd, sibling, VipOptions::default(), &V4_BACKENDS);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    let ack = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::ACK);
    let first = assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);
    assert_forwarded(&lab, &mut fwd, &ack, &V4_BACKENDS, 0, Expect::IpIp);
    assert_eq!(fwd.counter(stat::LRU_HIT).unwrap(), 1);

    // New options: the cached flow is encapsulated the new way.
    let gue = VipOptions {
        encap: Encap::Gue,
        ..Default::default()
    };
    fwd.set_vip(vip, gue).unwrap();
    assert_forwarded(&lab, &mut fwd, &ack, &V4_BACKENDS, 0, Expect::Gue(6080));
    // ... and keeps its backend when the table moves.
    let other = ip("10.200.0.99");
    fwd.set_table(&vip, &[first, other], &[1; M]).unwrap();
    let run = |fwd: &mut Forwarder| {
        lab.ns
            .run(|| fwd.test_run_on(&ack.build(), lab.fwd0, 1))
            .unwrap()
    };
    assert_eq!(outer_dst(&run(&mut fwd).frame), first);
    assert_eq!(fwd.counter(stat::LRU_HIT).unwrap(), 3);

    // Removed: not a VIP any more, although `first` still serves `sibling`.
    fwd.remove_vip(&vip).unwrap();
    let out = run(&mut fwd);
    assert_eq!(out.verdict, verdict::PASS);
    assert_eq!(out.frame, ack.build());
    // Its index goes to a new VIP: the old flow's entry does not match it.
    let newcomer = VipKey::new(ip("203.0.113.9"), 80, Protocol::Tcp);
    serve(&mut fwd, newcomer, VipOptions::default(), &["10.200.0.55"]);
    assert_eq!(run(&mut fwd).verdict, verdict::PASS);
    assert_eq!(fwd.stats().unwrap().vips[&newcomer].packets, 0);

    // A flow cached under an all-ports VIP moves to an exact-port VIP of
    // its address added later (precedence, counters, encapsulation), and
    // keeps its backend.
    let all_ports = VipKey::new(ip("203.0.113.20"), 0, Protocol::Tcp);
    serve(&mut fwd, all_ports, VipOptions::default(), &V4_BACKENDS);
    let ack = tcp("192.0.2.10", "203.0.113.20", 40000, 443, tcp_flags::ACK);
    let b = assert_forwarded(&lab, &mut fwd, &ack, &V4_BACKENDS, 0, Expect::IpIp);
    assert_forwarded(&lab, &mut fwd, &ack, &V4_BACKENDS, 0, Expect::IpIp);
    let exact = VipKey::new(ip("203.0.113.20"), 443, Protocol::Tcp);
    fwd.set_vip(exact, gue).unwrap();
    fwd.set_table(&exact, &[ip("10.200.0.66")], &[0; M])
        .unwrap();
    let out = lab
        .ns
        .run(|| fwd.test_run_on(&ack.build(), lab.fwd0, 1))
        .unwrap();
    assert_eq!(outer_dst(&out.frame), b, "cached backend kept");
    assert_eq!(out.frame[23], 17, "GUE: the exact-port VIP's encapsulation");
    let s = fwd.stats().unwrap();
    assert_eq!((s.vips[&all_ports].packets, s.vips[&exact].packets), (2, 1));
}

/// A full set evicts its least recently used way. With `flows: 4` the
/// cache is one set of four ways, so every flow shares it.
#[test]
fn full_set_evicts_the_least_recently_used_flow() {
    let lab = RouteLab::new("evict");
    let mut fwd = Forwarder::load_with(LoadOptions {
        pin_dir: None,
        capacity: Capacity { flows: 4, ..CAP },
    })
    .unwrap();
    fwd.set_settings(&settings()).unwrap();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let run = |fwd: &mut Forwarder, sport: u16, flags: u8| {
        let f = tcp("192.0.2.10", "203.0.113.7", sport, 80, flags);
        let out = lab
            .ns
            .run(|| fwd.test_run_on(&f.build(), lab.fwd0, 1))
            .unwrap();
        assert_eq!(out.verdict, verdict::TX);
        outer_dst(&out.frame)
    };
    // Recency is kept in jiffies: let at least one tick pass (HZ >= 100)
    // between the packets whose order matters.
    let next_tick = || std::thread::sleep(Duration::from_millis(25));
    let mut first = std::collections::BTreeMap::new();
    for sport in [1001, 1002, 1003, 1004] {
        first.insert(sport, run(&mut fwd, sport, tcp_flags::SYN));
        next_tick();
    }
    assert_eq!(
        fwd.counter(stat::LRU_EVICTED).unwrap(),
        0,
        "four ways, four flows"
    );
    // 1001 is used again, so 1002 is now the least recently used.
    run(&mut fwd, 1001, tcp_flags::ACK);
    next_tick();
    first.insert(1005, run(&mut fwd, 1005, tcp_flags::SYN));
    assert_eq!(fwd.counter(stat::LRU_EVICTED).unwrap(), 1);

    // Move every slot to a backend none of the flows has.
    let other = ip("10.200.0.99");
    let mut pool: Vec<IpAddr> = V4_BACKENDS.iter().map(|s| ip(s)).collect();
    pool.push(other);
    fwd.set_table(&vip, &pool, &[3; M]).unwrap();
    for sport in [1001, 1003, 1004, 1005] {
        assert_eq!(
            run(&mut fwd, sport, tcp_flags::ACK),
            first[&sport],
            "{sport} is cached"
        );
    }
    assert_eq!(
        run(&mut fwd, 1002, tcp_flags::ACK),
        other,
        "1002 was evicted"
    );
    let s = fwd.stats().unwrap();
    // Hits: 1001 once before, four after the table change.
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (5, 6));
    assert_eq!(
        s.get(stat::LRU_EVICTED),
        2,
        "1002 came back in place of another"
    );
}

#[test]
fn udp_flows_stick_until_they_expire() {
    let lab = RouteLab::new("udp");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 53, Protocol::Udp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let q = udp("192.0.2.10", "203.0.113.7", 5353, 53);
    let first = assert_forwarded(&lab, &mut fwd, &q, &V4_BACKENDS, 0, Expect::IpIp);
    let other = ip("10.200.0.99");
    fwd.set_table(&vip, &[first, other], &[1; M]).unwrap();
    let run = |fwd: &mut Forwarder| {
        outer_dst(
            &lab.ns
                .run(|| fwd.test_run_on(&q.build(), lab.fwd0, 1))
                .unwrap()
                .frame,
        )
    };
    assert_eq!(run(&mut fwd), first, "within the timeout");
    fwd.set_settings(&ForwarderSettings {
        udp_timeout: Duration::ZERO,
        ..settings()
    })
    .unwrap();
    // The program ages entries in jiffies (one tick: up to 10 ms).
    std::thread::sleep(Duration::from_millis(25));
    assert_eq!(
        run(&mut fwd),
        other,
        "expired: re-hashed on the current table"
    );
    assert_eq!(fwd.counter(stat::LRU_UDP_EXPIRED).unwrap(), 1);
}

#[test]
fn hash_field_flags() {
    let lab = RouteLab::new("flags");
    let mut fwd = forwarder();
    let many: Vec<String> = (1..=7).map(|i| format!("10.200.1.{i}")).collect();
    let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
    let no_sport = VipKey::new(ip("203.0.113.30"), 80, Protocol::Tcp);
    serve(
        &mut fwd,
        no_sport,
        VipOptions {
            hash: HashFields::NoSourcePort,
            ..Default::default()
        },
        &many,
    );
    let dport_only = VipKey::new(ip("203.0.113.31"), 80, Protocol::Tcp);
    serve(
        &mut fwd,
        dport_only,
        VipOptions {
            hash: HashFields::DestinationPortOnly,
            ..Default::default()
        },
        &many,
    );
    let mut seen = std::collections::BTreeSet::new();
    for (client, sport) in [
        ("192.0.2.10", 1000),
        ("192.0.2.10", 2000),
        ("192.0.2.11", 3000),
    ] {
        let f = tcp(client, "203.0.113.30", sport, 80, tcp_flags::SYN);
        let b = assert_forwarded(
            &lab,
            &mut fwd,
            &f,
            &many,
            vip_flags::HASH_NO_SRC_PORT,
            Expect::IpIp,
        );
        seen.insert((client, b));
        let f = tcp(client, "203.0.113.31", sport, 80, tcp_flags::SYN);
        assert_forwarded(
            &lab,
            &mut fwd,
            &f,
            &many,
            vip_flags::HASH_DST_PORT_ONLY,
            Expect::IpIp,
        );
    }
    assert_eq!(
        seen.iter().filter(|(c, _)| *c == "192.0.2.10").count(),
        1,
        "one client, one backend"
    );
}

#[test]
fn icmp_echo_to_a_vip_is_answered() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp),
        VipOptions::default(),
        &V4_BACKENDS,
    );
    serve(
        &mut fwd,
        VipKey::new(ip("2001:db8:ffff::7"), 80, Protocol::Tcp),
        VipOptions::default(),
        &V6_BACKENDS,
    );
    let cases = [
        ("192.0.2.10", "203.0.113.7", 8u8, 0u8),
        ("2001:db8::10", "2001:db8:ffff::7", 128, 129),
    ];
    for (client, vip, req, rep) in cases {
        let rest = [0x12, 0x34, 0, 1];
        let request = FrameBuilder::new(
            ip(client),
            ip(vip),
            L4::Icmp {
                kind: req,
                code: 0,
                rest,
            },
        )
        .payload(b"ping payload")
        .ttl(57)
        .vlan(3);
        let reply = FrameBuilder::new(
            ip(vip),
            ip(client),
            L4::Icmp {
                kind: rep,
                code: 0,
                rest,
            },
        )
        .payload(b"ping payload")
        .ttl(64)
        .vlan(3)
        .macs(request.src_mac, request.dst_mac);
        let out = fwd.test_run(&request.build()).unwrap();
        assert_eq!(out.verdict, verdict::TX);
        assert_eq!(hex(&out.frame), hex(&reply.build()));
    }
    // Not a VIP address: the kernel answers (or not).
    let other = FrameBuilder::new(
        ip("192.0.2.10"),
        ip("203.0.113.99"),
        L4::Icmp {
            kind: 8,
            code: 0,
            rest: [0; 4],
        },
    );
    assert_eq!(fwd.test_run(&other.build()).unwrap().verdict, verdict::PASS);
    assert_eq!(fwd.counter(stat::ICMP_ECHO_REPLY).unwrap(), 2);
}

#[test]
fn icmp_too_big_goes_to_the_backend_of_the_quoted_flow() {
    let lab = RouteLab::new("ptb");
    let mut fwd = forwarder();
    let v4 = VipKey::new(ip("203.0.113.7"), 443, Protocol::Tcp);
    serve(&mut fwd, v4, VipOptions::default(), &V4_BACKENDS);
    let v6 = VipKey::new(ip("2001:db8:ffff::7"), 443, Protocol::Tcp);
    serve(
        &mut fwd,
        v6,
        VipOptions {
            encap: Encap::Gue,
            ..Default::default()
        },
        &V6_BACKENDS,
    );
    let cases = [
        (
            "192.0.2.10",
            "203.0.113.7",
            "198.51.100.254",
            3u8,
            4u8,
            &V4_BACKENDS,
            Expect::IpIp,
        ),
        (
            "2001:db8::10",
            "2001:db8:ffff::7",
            "2001:db8:1::fe",
            2,
            0,
            &V6_BACKENDS,
            Expect::Gue(6080),
        ),
    ];
    for (client, vip, router, kind, code, backends, mode) in cases {
        // The client's flow, to learn which backend owns it.
        let client_flow = tcp(client, vip, 40000, 443, tcp_flags::ACK);
        let (_, owner) = expected_choice(&client_flow, backends, 0);
        // What that backend sent (VIP -> client, direct return), quoted by a router.
        let quoted = tcp(vip, client, 443, 40000, tcp_flags::ACK)
            .payload(&[0xaa; 64])
            .ip_packet();
        let ptb = FrameBuilder::new(
            ip(router),
            ip(vip),
            L4::Icmp {
                kind,
                code,
                rest: [0, 0, 0x05, 0x00],
            },
        )
        .payload(&quoted);
        let out = lab
            .ns
            .run(|| fwd.test_run_on(&ptb.build(), lab.fwd0, 1))
            .unwrap();
        assert_eq!(out.verdict, verdict::TX);
        // Encapsulated like the flow's packets (the hash of the client's flow
        // gives the outer entropy).
        let (hash, _) = expected_choice(&client_flow, backends, 0);
        let want = expected_encap(&ptb, &settings(), owner, hash, mode, GW0_MAC, FWD0_MAC);
        assert_eq!(hex(&out.frame), hex(&want));
    }
    assert_eq!(fwd.counter(stat::ICMP_PTB_FORWARDED).unwrap(), 2);
    // A PTB quoting a flow of no VIP passes.
    let quoted = tcp("198.51.100.1", "192.0.2.10", 443, 40000, tcp_flags::ACK).ip_packet();
    let ptb = FrameBuilder::new(
        ip("198.51.100.254"),
        ip("198.51.100.1"),
        L4::Icmp {
            kind: 3,
            code: 4,
            rest: [0, 0, 5, 0],
        },
    )
    .payload(&quoted);
    assert_eq!(fwd.test_run(&ptb.build()).unwrap().verdict, verdict::PASS);
}

#[test]
fn fragments_to_a_vip_are_dropped_and_counted() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("203.0.113.7"), 53, Protocol::Udp),
        VipOptions::default(),
        &V4_BACKENDS,
    );
    serve(
        &mut fwd,
        VipKey::new(ip("2001:db8:ffff::7"), 53, Protocol::Udp),
        VipOptions::default(),
        &V6_BACKENDS,
    );
    let first = Fragment {
        offset: 0,
        more: true,
        id: 1,
    };
    let later = Fragment {
        offset: 185,
        more: false,
        id: 1,
    };
    for frag in [first, later] {
        for (c, v) in [
            ("192.0.2.10", "203.0.113.7"),
            ("2001:db8::10", "2001:db8:ffff::7"),
        ] {
            let mut f = udp(c, v, 5353, 53).fragment(frag);
            f.dont_fragment = false;
            assert_eq!(fwd.test_run(&f.build()).unwrap().verdict, verdict::DROP);
        }
    }
    assert_eq!(fwd.counter(stat::DROP_FRAGMENT).unwrap(), 4);
    // Fragments for other destinations are the kernel's business.
    let f = udp("192.0.2.10", "198.51.100.1", 5353, 53)
        .fragment(first)
        .build();
    let out = fwd.test_run(&f).unwrap();
    assert_eq!((out.verdict, out.frame), (verdict::PASS, f));
}

#[test]
fn truncated_and_garbage_frames_pass_without_harm() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("203.0.113.7"), 0, Protocol::Tcp),
        VipOptions::default(),
        &V4_BACKENDS,
    );
    serve(
        &mut fwd,
        VipKey::new(ip("2001:db8:ffff::7"), 0, Protocol::Udp),
        VipOptions::default(),
        &V6_BACKENDS,
    );
    let full = [
        tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN)
            .payload(&[])
            .build(),
        tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN)
            .payload(&[])
            .vlan(5)
            .build(),
        udp("2001:db8::10", "2001:db8:ffff::7", 40000, 53)
            .payload(&[])
            .build(),
    ];
    for frame in &full {
        // BPF_PROG_TEST_RUN needs at least an Ethernet header.
        for len in 14..frame.len() {
            let out = fwd.test_run(&frame[..len]).unwrap();
            assert_eq!(
                out.verdict,
                verdict::PASS,
                "truncated to {len}: {}",
                hex(&frame[..len])
            );
            assert_eq!(out.frame, &frame[..len]);
        }
    }
    // Lies in the IPv4 header.
    let good = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN).build();
    let mut bad_version = good.clone();
    bad_version[14] = 0x55;
    let mut short_ihl = good.clone();
    short_ihl[14] = 0x44;
    let mut long_total = good.clone();
    long_total[16..18].copy_from_slice(&1500u16.to_be_bytes());
    let mut ihl_past_end = good.clone();
    ihl_past_end[14] = 0x4f;
    for frame in [bad_version, short_ihl, long_total, ihl_past_end] {
        assert_eq!(
            fwd.test_run(&frame).unwrap().verdict,
            verdict::PASS,
            "{}",
            hex(&frame)
        );
    }
    // Random bytes (a fixed xorshift sequence, so failures reproduce).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..2000 {
        let len = 14 + (n % 120);
        let frame: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let out = fwd.test_run(&frame).unwrap();
        assert_ne!(out.verdict, verdict::ABORTED, "{}", hex(&frame));
    }
}

#[test]
fn route_outcomes_redirect_no_neighbour_and_unreachable() {
    let lab = RouteLab::new("routes");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    let run = |fwd: &mut Forwarder| {
        lab.ns
            .run(|| fwd.test_run_on(&syn.build(), lab.fwd0, 1))
            .unwrap()
    };

    // Egress on another interface: XDP_REDIRECT through the device map,
    // once that interface is allowed.
    serve(&mut fwd, vip, VipOptions::default(), &["10.201.0.1"]);
    assert_eq!(run(&mut fwd).verdict, verdict::DROP);
    assert_eq!(fwd.counter(stat::DROP_NO_EGRESS).unwrap(), 1);
    lab.ns.run(|| fwd.add_tx_port("fwd1")).unwrap();
    let out = run(&mut fwd);
    assert_eq!(out.verdict, verdict::REDIRECT);
    let (hash, _) = expected_choice(&syn, &["10.201.0.1"], 0);
    let want = expected_encap(
        &syn,
        &settings(),
        ip("10.201.0.1"),
        hash,
        Expect::IpIp,
        GW1_MAC,
        FWD1_MAC,
    );
    assert_eq!(hex(&out.frame), hex(&want));

    // Next hop without a neighbour entry: the kernel gets the encapsulated
    // packet (still addressed to our MAC) and resolves the neighbour.
    serve(&mut fwd, vip, VipOptions::default(), &["10.202.0.1"]);
    let out = run(&mut fwd);
    assert_eq!(out.verdict, verdict::PASS);
    let want = expected_encap(
        &syn,
        &settings(),
        ip("10.202.0.1"),
        hash,
        Expect::IpIp,
        syn.dst_mac,
        syn.src_mac,
    );
    assert_eq!(hex(&out.frame), hex(&want));
    assert_eq!(fwd.counter(stat::PASS_NO_NEIGH).unwrap(), 1);

    // No route.
    serve(&mut fwd, vip, VipOptions::default(), &["10.203.0.1"]);
    assert_eq!(run(&mut fwd).verdict, verdict::DROP);
    assert_eq!(fwd.counter(stat::DROP_FIB).unwrap(), 1);
}

#[test]
fn programming_errors_are_rejected_without_changing_state() {
    let lab = RouteLab::new("errors");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let unknown = VipKey::new(ip("203.0.113.8"), 80, Protocol::Tcp);
    assert!(fwd
        .set_table(&unknown, &[ip("10.200.0.1")], &[0; M])
        .is_err());
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let b: Vec<IpAddr> = V4_BACKENDS.iter().map(|s| ip(s)).collect();
    assert!(
        fwd.set_table(&vip, &b, &[3; M]).is_err(),
        "slot refers past the backend list"
    );
    assert!(
        fwd.set_table(&vip, &[b[0], b[0]], &[0; M]).is_err(),
        "duplicate backend"
    );
    assert!(
        fwd.set_table(&vip, &b, &vec![0; CAP.table_size as usize + 1])
            .is_err(),
        "too large"
    );
    let bad = ForwarderSettings {
        source_v4: (std::net::Ipv4Addr::UNSPECIFIED, 33),
        ..settings()
    };
    assert!(fwd.set_settings(&bad).is_err());
    // Still forwarding with the table installed before.
    let f = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    assert_forwarded(&lab, &mut fwd, &f, &V4_BACKENDS, 0, Expect::IpIp);
    for i in 0..CAP.vips {
        let v = VipKey::new(ip("198.18.0.1"), i as u16 + 1, Protocol::Udp);
        let r = fwd.set_vip(v, VipOptions::default());
        assert_eq!(r.is_ok(), i + 1 < CAP.vips, "VIP {i}");
    }
    assert_eq!(
        fwd.backend_for(&vip, ip("192.0.2.10"), 40000).unwrap(),
        Some(expected_choice(&f, &V4_BACKENDS, 0).1)
    );
}

#[test]
fn path_mtu_and_cached_route_refresh() {
    let lab = RouteLab::new("mtu");
    lab.ns.ip(&["link", "set", "fwd0", "mtu", "120"]);
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &["10.200.0.1"]);
    let run = |fwd: &mut Forwarder, f: &FrameBuilder| {
        lab.ns
            .run(|| fwd.test_run_on(&f.build(), lab.fwd0, 1))
            .unwrap()
            .verdict
    };
    // Inner 20 + 20 + 80 = 120 bytes: 140 with the outer header, over 120.
    let big = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN).payload(&[0; 80]);
    let small = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN).payload(&[0; 40]);
    assert_eq!(run(&mut fwd, &big), verdict::DROP);
    assert_eq!(fwd.counter(stat::DROP_MTU).unwrap(), 1);
    assert_eq!(run(&mut fwd, &small), verdict::TX);

    // Route changes reach the program once the cached lookup expires.
    lab.ns
        .ip(&["route", "replace", "blackhole", "10.200.0.0/16"]);
    // The cache lives 25 jiffies: 100 ms at HZ=250, 250 ms at HZ=100.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run(&mut fwd, &small), verdict::DROP);
    assert_eq!(fwd.counter(stat::DROP_FIB).unwrap(), 1);
}
