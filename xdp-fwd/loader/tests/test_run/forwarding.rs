//! Forwarded frames, byte for byte: IPIP, IP6IP6, mixed families, GUE,
//! VLAN tags and IPv4 options.
use std::net::IpAddr;

use packet_builder::tcp_flags;
use xdp_fwd::{
    common::stats::stat, verdict, Encap, ForwarderSettings, Protocol, VipKey, VipOptions,
};

use crate::common::{fixture::*, *};

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
