//! Routing towards backends: XDP_TX, XDP_REDIRECT, missing neighbour or
//! route, path MTU and cached-route refresh.
use std::time::Duration;

use packet_builder::{tcp_flags, FrameBuilder};
use xdp_fwd::{common::stats::stat, verdict, Forwarder, Protocol, VipKey, VipOptions};

use crate::common::{fixture::*, *};

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
fn path_mtu_and_cached_route_refresh() {
    let lab = RouteLab::new("mtu");
    lab.ns.ip(["link", "set", "fwd0", "mtu", "120"]).unwrap();
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
        .ip(["route", "replace", "blackhole", "10.200.0.0/16"])
        .unwrap();
    // The cache lives 25 jiffies: 100 ms at HZ=250, 250 ms at HZ=100.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run(&mut fwd, &small), verdict::DROP);
    assert_eq!(fwd.counter(stat::DROP_FIB).unwrap(), 1);
}
