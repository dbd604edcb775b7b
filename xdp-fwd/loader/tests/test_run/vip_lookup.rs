//! Which traffic is for a VIP: exact and port-0 VIPs, VIPs without
//! backends, non-VIP traffic, the VIP address filter, hash-field flags.
use std::net::IpAddr;

use packet_builder::{tcp_flags, FrameBuilder, L4};
use xdp_fwd::{
    common::{addr_words, stats::stat, vip_filter_bit, vip_flags},
    verdict, HashFields, Protocol, VipKey, VipOptions, NO_BACKEND,
};

use crate::common::{fixture::*, *};

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
    let mut fwd = forwarder_with_tcp_80_vips();
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
