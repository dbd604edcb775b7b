//! ICMP to VIPs: echo replies, and packet-too-big forwarded to the backend
//! of the quoted flow.

use packet_builder::{tcp_flags, FrameBuilder, L4};
use xdp_fwd::{common::stats::stat, verdict, Encap, Protocol, VipKey, VipOptions};

use crate::common::{fixture::*, *};

#[test]
fn icmp_echo_to_a_vip_is_answered() {
    let mut fwd = forwarder_with_tcp_80_vips();
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
