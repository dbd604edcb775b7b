//! The speaker against real routers in network namespaces: GoBGP, FRR and
//! BIRD, each started by the test with its files under a temp dir.
//!
//! Needs root (namespaces) and gobgpd, FRR 8.4 and BIRD 2 installed
//! (scripts/bootstrap.sh installs them).

mod support;

use std::time::Duration;

use edgelb_bgp::{GracefulRestartConfig, PeerState, RouteAttributes, SpeakerConfig};
use support::lab::Lab;
use support::lb::{self, routes, Lb};
use testbed::wait::assert_eventually;

const WAIT: Duration = Duration::from_secs(20);

/// A router configuration example shipped in deploy/routers/ (the tests run
/// the examples exactly as shipped, plus a log file line).
fn deploy_example(path: &str) -> String {
    let full = format!("{}/../deploy/routers/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn vip() -> RouteAttributes {
    RouteAttributes::default()
}

/// GoBGP (deploy/routers/gobgp example) shows our paths with their attributes; withdraw, re-announce,
/// prepend and graceful shutdown all reach it.
#[test]
fn gobgp_sees_announce_withdraw_refresh_and_shutdown() {
    let lab = Lab::new(1);
    let gobgp = lab.gobgp(&deploy_example("gobgp/gobgpd.toml"));
    let lb1 = Lb::start(&lab, 1, lb::config(1, 9, None));
    let tagged = RouteAttributes {
        communities: vec![(65010 << 16) | 100],
        med: Some(50),
        ..vip()
    };
    lb1.set(routes(&[
        ("192.0.2.10/32", tagged.clone()),
        ("192.0.2.0/24", vip()),
        ("2001:db8::10/128", vip()),
    ]));
    lb1.wait_established();
    let rib4 = || gobgp.cli(&["global", "rib", "-a", "ipv4"]).unwrap();
    let rib6 = || gobgp.cli(&["global", "rib", "-a", "ipv6"]).unwrap();
    assert_eventually(WAIT, "IPv4 paths in GoBGP", || {
        rib4().contains("192.0.2.10/32") && rib4().contains("192.0.2.0/24")
    });
    assert_eventually(WAIT, "IPv6 path in GoBGP", || {
        rib6().contains("2001:db8::10/128")
    });
    let line = rib4()
        .lines()
        .find(|l| l.contains("192.0.2.10/32"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("10.0.1.2") && line.contains("65010"),
        "next hop self and AS path: {line}"
    );
    assert!(
        line.contains("Med: 50") && line.contains("65010:100"),
        "MED and community: {line}"
    );
    assert!(rib6().contains("fd00:0:1::2"), "IPv6 next hop: {}", rib6());

    // Drain: prepend twice, then withdraw.
    lb1.set(
        routes(&[
            ("192.0.2.10/32", tagged.clone()),
            ("192.0.2.0/24", vip()),
            ("2001:db8::10/128", vip()),
        ])
        .drained(2),
    );
    assert_eventually(WAIT, "prepended path", || {
        rib4().contains("65010 65010 65010")
    });
    lb1.set(routes(&[("192.0.2.0/24", vip())]));
    assert_eventually(WAIT, "VIP withdrawn", || {
        !rib4().contains("192.0.2.10/32") && !rib6().contains("2001:db8::10/128")
    });
    assert!(rib4().contains("192.0.2.0/24"), "aggregate stays");
    lb1.set(routes(&[
        ("192.0.2.10/32", tagged),
        ("192.0.2.0/24", vip()),
    ]));
    assert_eventually(WAIT, "VIP re-announced", || {
        rib4().contains("192.0.2.10/32")
    });

    // GoBGP keeps an Adj-RIB-In and re-applies policy locally on softresetin
    // (no ROUTE-REFRESH on the wire); the FRR and BIRD tests cover refresh.
    assert_eq!(lb1.peer().established_count, 1, "no flap");

    lb1.shutdown();
    assert_eventually(WAIT, "routes gone after shutdown", || {
        !rib4().contains("192.0.2.10/32") && !rib4().contains("192.0.2.0/24")
    });
    let neighbor = gobgp.cli(&["neighbor", "10.0.1.2"]).unwrap();
    assert!(!neighbor.contains("BGP state = established"), "{neighbor}");
}

fn frr_config(lab: &Lab, n: u8, extra_neighbor: &str) -> String {
    let mut c = format!(
        "hostname router\nlog file {}\n!\nroute-map DENY-ALL deny 10\n!\nrouter bgp 65000\n bgp router-id 10.0.0.254\n\
         \x20no bgp ebgp-requires-policy\n bgp graceful-restart\n neighbor LB peer-group\n neighbor LB remote-as 65010\n\
         \x20neighbor LB passive\n{extra_neighbor}",
        lab.path("bgpd.log")
    );
    for i in 1..=n {
        c.push_str(&format!(" neighbor 10.0.{i}.2 peer-group LB\n"));
    }
    c.push_str(
        " address-family ipv4 unicast\n  maximum-paths 8\n  neighbor LB route-map DENY-ALL out\n exit-address-family\n\
         \x20address-family ipv6 unicast\n  maximum-paths 8\n  neighbor LB activate\n  neighbor LB route-map DENY-ALL out\n\
         \x20exit-address-family\n",
    );
    c
}

/// Two nodes announce the same VIPs: FRR (deploy/routers/frr example) installs ECMP routes in the kernel;
/// withdraw, re-announce, route refresh, a killed daemon and graceful
/// shutdown each change the next-hop set as expected.
#[test]
fn frr_installs_ecmp_and_follows_changes() {
    let lab = Lab::new(2);
    let config = format!(
        "log file {}\n{}",
        lab.path("bgpd.log"),
        deploy_example("frr/frr.conf")
    );
    let frr = lab.frr(&config);
    let lb1 = Lb::start(&lab, 1, lb::config(1, 9, None));
    // A different ASN on the second node: ECMP needs the example's multipath-relax.
    let lb2 = Lb::start(
        &lab,
        2,
        SpeakerConfig {
            local_asn: 65011,
            ..lb::config(2, 9, None)
        },
    );
    let both = routes(&[("192.0.2.10/32", vip()), ("2001:db8::10/128", vip())]);
    lb1.set(routes(&[
        ("192.0.2.10/32", vip()),
        ("192.0.2.11/32", vip()),
        ("2001:db8::10/128", vip()),
        // Outside the example's VIP prefix-list: must be filtered.
        ("203.0.113.7/32", vip()),
    ]));
    lb2.set(both.clone());
    lb1.wait_established();
    lb2.wait_established();
    let hops = |p: &str| lab.kernel_next_hops(p);
    assert_eventually(WAIT, "IPv4 ECMP in kernel", || {
        hops("192.0.2.10") == ["10.0.1.2", "10.0.2.2"]
    });
    assert_eventually(WAIT, "IPv6 ECMP in kernel", || {
        hops("2001:db8::10") == ["fd00:0:1::2", "fd00:0:2::2"]
    });
    assert_eventually(WAIT, "single-node VIP", || {
        hops("192.0.2.11") == ["10.0.1.2"]
    });
    assert!(
        lab.kernel_route("203.0.113.7").is_empty(),
        "import policy must filter non-VIPs"
    );
    assert!(
        lab.kernel_route("192.0.2.10").contains("proto bgp"),
        "{}",
        lab.kernel_route("192.0.2.10")
    );

    lb1.set(routes(&[("192.0.2.11/32", vip())]));
    assert_eventually(WAIT, "lb1 withdrew", || {
        hops("192.0.2.10") == ["10.0.2.2"] && hops("2001:db8::10") == ["fd00:0:2::2"]
    });
    lb1.set(routes(&[
        ("192.0.2.10/32", vip()),
        ("192.0.2.11/32", vip()),
        ("2001:db8::10/128", vip()),
    ]));
    assert_eventually(WAIT, "lb1 re-announced", || {
        hops("192.0.2.10") == ["10.0.1.2", "10.0.2.2"]
    });

    frr.vtysh("clear bgp ipv4 unicast 10.0.1.2 soft in")
        .unwrap();
    assert_eventually(WAIT, "ROUTE-REFRESH answered", || {
        lb1.peer().route_refreshes_in >= 1
    });
    assert_eq!(hops("192.0.2.10"), ["10.0.1.2", "10.0.2.2"]);
    assert_eq!(
        lb1.peer().established_count,
        1,
        "refresh must not reset the session"
    );

    lb2.kill();
    assert_eventually(WAIT, "killed node's paths gone", || {
        hops("192.0.2.10") == ["10.0.1.2"] && hops("2001:db8::10") == ["fd00:0:1::2"]
    });

    lb1.shutdown();
    assert_eventually(WAIT, "all routes gone after shutdown", || {
        lab.kernel_route("192.0.2.10").is_empty()
            && lab.kernel_route("192.0.2.11").is_empty()
            && lab.kernel_route("2001:db8::10").is_empty()
    });
    let summary = frr.vtysh("show bgp neighbors 10.0.1.2").unwrap();
    assert!(
        summary.contains("Notification received (Cease/Administrative Shutdown)"),
        "{summary}"
    );
}

/// Hold-timer expiry both ways against FRR: when our keepalives stop
/// reaching the router it drops the session and the route; when the
/// router's stop reaching us, we send Hold Timer Expired. Both recover.
#[test]
fn frr_hold_timer_expiry_both_ways() {
    let lab = Lab::new(1);
    let frr = lab.frr(&frr_config(&lab, 1, " neighbor LB timers 1 3\n"));
    let lb1 = Lb::start(&lab, 1, lb::config(1, 3, None));
    lb1.set(routes(&[("192.0.2.10/32", vip())]));
    lb1.wait_established();
    assert_eventually(WAIT, "route installed", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });

    // Our packets to the router vanish: the router's hold timer expires.
    lab.lbs[0]
        .ip(["route", "add", "blackhole", "10.0.1.1/32"])
        .expect("ip");
    assert_eventually(WAIT, "router dropped the route", || {
        lab.kernel_route("192.0.2.10").is_empty()
    });
    let neighbor = frr.vtysh("show bgp neighbors 10.0.1.2").unwrap();
    assert!(
        neighbor.to_lowercase().contains("hold timer expired"),
        "{neighbor}"
    );
    lab.lbs[0]
        .ip(["route", "del", "blackhole", "10.0.1.1/32"])
        .expect("ip");
    assert_eventually(WAIT, "re-established", || {
        lb1.peer().established_count == 2 && lb1.peer().state == PeerState::Established
    });
    assert_eventually(WAIT, "route back", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });

    // The router's packets to us vanish: our hold timer expires.
    lab.router
        .ip(["route", "add", "blackhole", "10.0.1.2/32"])
        .expect("ip");
    assert_eventually(WAIT, "our hold timer fired", || {
        lb1.peer()
            .last_error
            .is_some_and(|e| e.contains("sent NOTIFICATION 4/0"))
    });
    lab.router
        .ip(["route", "del", "blackhole", "10.0.1.2/32"])
        .expect("ip");
    assert_eventually(WAIT, "re-established again", || {
        lb1.peer().established_count == 3 && lb1.peer().state == PeerState::Established
    });
    assert_eventually(WAIT, "route back again", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });
    lb1.shutdown();
}

/// Graceful restart (RFC 4724): a killed daemon's routes stay in the
/// router's kernel while it restarts, and are current again after End-of-RIB;
/// if it never comes back they go after the restart time.
#[test]
fn frr_graceful_restart_keeps_routes_across_a_daemon_restart() {
    let lab = Lab::new(1);
    let frr = lab.frr(&frr_config(&lab, 1, ""));
    let gr = |restarting| {
        Some(GracefulRestartConfig {
            restart_time_secs: 6,
            restarting,
        })
    };
    let lb1 = Lb::start(&lab, 1, lb::config(1, 9, gr(false)));
    lb1.set(routes(&[("192.0.2.10/32", vip())]));
    lb1.wait_established();
    assert_eventually(WAIT, "route installed", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });
    let neighbor = frr.vtysh("show bgp neighbors 10.0.1.2").unwrap();
    assert!(neighbor.contains("Graceful Restart"), "{neighbor}");

    lb1.kill();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lab.kernel_next_hops("192.0.2.10"),
        ["10.0.1.2"],
        "route must survive the restart"
    );
    assert!(frr
        .vtysh("show bgp ipv4 unicast 192.0.2.10/32")
        .unwrap()
        .to_lowercase()
        .contains("stale"));

    let lb1 = Lb::start(&lab, 1, lb::config(1, 9, gr(true)));
    lb1.set(routes(&[("192.0.2.10/32", vip())]));
    lb1.wait_established();
    assert_eventually(WAIT, "path current again after End-of-RIB", || {
        !frr.vtysh("show bgp ipv4 unicast 192.0.2.10/32")
            .unwrap()
            .to_lowercase()
            .contains("stale")
    });
    assert_eq!(lab.kernel_next_hops("192.0.2.10"), ["10.0.1.2"]);

    lb1.kill();
    assert_eventually(WAIT, "stale route flushed after restart time", || {
        lab.kernel_route("192.0.2.10").is_empty()
    });
}

/// BIRD (deploy/routers/bird example, `merge paths on`) installs kernel ECMP routes from two nodes;
/// withdraw, route refresh and graceful shutdown are followed.
#[test]
fn bird_installs_ecmp_and_follows_changes() {
    let lab = Lab::new(2);
    let config = format!(
        "log \"{}\" all;\n{}",
        lab.path("bird.log"),
        deploy_example("bird/bird.conf")
    );
    let bird = lab.bird(&config);
    let lb1 = Lb::start(&lab, 1, lb::config(1, 9, None));
    let lb2 = Lb::start(&lab, 2, lb::config(2, 9, None));
    let both = routes(&[("192.0.2.10/32", vip()), ("2001:db8::10/128", vip())]);
    lb1.set(routes(&[
        ("192.0.2.10/32", vip()),
        ("2001:db8::10/128", vip()),
        ("203.0.113.7/32", vip()),
    ]));
    lb2.set(both.clone());
    lb1.wait_established();
    lb2.wait_established();
    let hops = |p: &str| lab.kernel_next_hops(p);
    assert_eventually(WAIT, "IPv4 ECMP in kernel", || {
        hops("192.0.2.10") == ["10.0.1.2", "10.0.2.2"]
    });
    assert_eventually(WAIT, "IPv6 ECMP in kernel", || {
        hops("2001:db8::10") == ["fd00:0:1::2", "fd00:0:2::2"]
    });
    assert!(
        lab.kernel_route("203.0.113.7").is_empty(),
        "import filter must drop non-VIPs"
    );
    assert!(
        lab.kernel_route("192.0.2.10").contains("proto bird"),
        "{}",
        lab.kernel_route("192.0.2.10")
    );

    lb2.set(routes(&[("2001:db8::10/128", vip())]));
    assert_eventually(WAIT, "lb2 withdrew", || hops("192.0.2.10") == ["10.0.1.2"]);
    lb2.set(both);
    assert_eventually(WAIT, "lb2 re-announced", || {
        hops("192.0.2.10") == ["10.0.1.2", "10.0.2.2"]
    });

    bird.birdc("reload in lb2").unwrap();
    assert_eventually(WAIT, "ROUTE-REFRESH answered", || {
        lb2.peer().route_refreshes_in >= 1
    });
    assert_eq!(hops("192.0.2.10"), ["10.0.1.2", "10.0.2.2"]);
    assert_eq!(lb2.peer().established_count, 1);

    lb2.shutdown();
    assert_eventually(WAIT, "lb2's paths gone", || {
        hops("192.0.2.10") == ["10.0.1.2"] && hops("2001:db8::10") == ["fd00:0:1::2"]
    });
    lb1.kill();
    assert_eventually(WAIT, "killed node's routes gone", || {
        lab.kernel_route("192.0.2.10").is_empty() && lab.kernel_route("2001:db8::10").is_empty()
    });
    let proto = bird.birdc("show protocols all lb2").unwrap();
    assert!(
        proto.contains("Received: Administrative shutdown"),
        "{proto}"
    );
}

/// One node, two peers at once: eBGP to FRR and iBGP to GoBGP (on a second
/// router address and port). Both converge to the same desired set.
#[test]
fn one_node_two_peers_ebgp_and_ibgp() {
    let lab = Lab::new(1);
    lab.router
        .ip(["addr", "add", "10.0.1.3/24", "dev", "r1"])
        .expect("ip");
    let frr = lab.frr(&frr_config(&lab, 1, ""));
    let gobgp = lab.gobgp("[global.config]\n  as = 65010\n  router-id = \"10.0.1.3\"\n  port = 1790\n  local-address-list = [\"10.0.1.3\"]\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"10.0.1.2\"\n    peer-as = 65010\n\
         \x20 [neighbors.transport.config]\n    passive-mode = true\n",
    );
    let mut config = lb::config(1, 9, None);
    let mut ibgp = config.peers[0].clone();
    ibgp.address = "10.0.1.3".parse().unwrap();
    ibgp.port = 1790;
    ibgp.remote_asn = lb::LB_ASN;
    config.peers.push(ibgp);
    let lb1 = Lb::start(&lab, 1, config);
    lb1.set(routes(&[(
        "192.0.2.10/32",
        RouteAttributes {
            local_pref: Some(200),
            ..vip()
        },
    )]));
    lb1.wait_established();
    let rib = || gobgp.cli(&["global", "rib", "-a", "ipv4"]).unwrap();
    assert_eventually(WAIT, "eBGP route in FRR kernel", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });
    assert_eventually(WAIT, "iBGP path in GoBGP", || {
        rib().contains("192.0.2.10/32")
    });
    let line = rib()
        .lines()
        .find(|l| l.contains("192.0.2.10/32"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("LocalPref: 200") && !line.contains("65010 "),
        "iBGP: LOCAL_PREF, empty AS path: {line}"
    );
    let frr_path = frr.vtysh("show bgp ipv4 unicast 192.0.2.10/32").unwrap();
    assert!(
        frr_path.contains("65010"),
        "eBGP: our AS in the path: {frr_path}"
    );

    lb1.set(routes(&[]));
    assert_eventually(WAIT, "withdrawn from both", || {
        lab.kernel_route("192.0.2.10").is_empty() && !rib().contains("192.0.2.10/32")
    });
    lb1.shutdown();
}

/// An IPv6 transport session (RFC 4760 both ways): IPv6 VIPs get next-hop
/// self from the session, IPv4 VIPs the configured IPv4 next hop.
#[test]
fn frr_over_an_ipv6_session_carries_both_families() {
    let lab = Lab::new(1);
    let n = "fd00:0:1::2";
    let config = format!(
        "hostname router\nlog file {}\n!\nroute-map DENY-ALL deny 10\n!\nrouter bgp 65000\n bgp router-id 10.0.0.254\n\
         \x20no bgp ebgp-requires-policy\n neighbor {n} remote-as 65010\n neighbor {n} passive\n\
         \x20address-family ipv4 unicast\n  neighbor {n} activate\n  neighbor {n} route-map DENY-ALL out\n exit-address-family\n\
         \x20address-family ipv6 unicast\n  neighbor {n} activate\n  neighbor {n} route-map DENY-ALL out\n exit-address-family\n",
        lab.path("bgpd.log")
    );
    let _frr = lab.frr(&config);
    let mut speaker = lb::config(1, 9, None);
    speaker.peers[0].address = "fd00:0:1::1".parse().unwrap();
    speaker.peers[0].next_hop_v6 = None;
    speaker.peers[0].next_hop_v4 = Some("10.0.1.2".parse().unwrap());
    let lb1 = Lb::start(&lab, 1, speaker);
    lb1.set(routes(&[
        ("192.0.2.10/32", vip()),
        ("2001:db8::10/128", vip()),
    ]));
    lb1.wait_established();
    assert_eventually(WAIT, "IPv6 VIP via session address", || {
        lab.kernel_next_hops("2001:db8::10") == ["fd00:0:1::2"]
    });
    assert_eventually(WAIT, "IPv4 VIP via configured next hop", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });
    lb1.shutdown();
    assert_eventually(WAIT, "gone after shutdown", || {
        lab.kernel_route("2001:db8::10").is_empty() && lab.kernel_route("192.0.2.10").is_empty()
    });
}

/// A large table (5000 IPv4 + 2000 IPv6 VIPs, several UPDATEs per family)
/// is accepted whole by GoBGP, and withdrawn whole.
#[test]
fn gobgp_accepts_a_large_table() {
    use edgelb_bgp::{DesiredRoutes, IpNet};
    let lab = Lab::new(1);
    // No import filter here: the VIPs span 198.18.0.0/15 (benchmarking space).
    let gobgp = lab.gobgp("[global.config]\n  as = 65000\n  router-id = \"10.0.0.254\"\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"10.0.1.2\"\n    peer-as = 65010\n\
         \x20 [neighbors.transport.config]\n    passive-mode = true\n\
         \x20 [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n\
         \x20 [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n",
    );
    let lb1 = Lb::start(&lab, 1, lb::config(1, 9, None));
    let mut d = DesiredRoutes::new();
    for i in 0..5000u32 {
        let ip = std::net::Ipv4Addr::from(0xc612_0000u32 + i);
        d.insert(IpNet::new(ip.into(), 32).unwrap(), vip()).unwrap();
    }
    for i in 0..2000u32 {
        let ip = std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(i));
        d.insert(IpNet::new(ip.into(), 128).unwrap(), vip())
            .unwrap();
    }
    lb1.set(d);
    lb1.wait_established();
    let count = |family: &str| -> usize {
        let out = gobgp
            .cli(&["global", "rib", "summary", "-a", family])
            .unwrap();
        out.split("Destination: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_eventually(WAIT, "whole table in GoBGP", || {
        count("ipv4") == 5000 && count("ipv6") == 2000
    });
    let peer = lb1.peer();
    assert_eq!(peer.prefixes_announced, 7000);
    // 5000 x 5 bytes and 2000 x 17 bytes need at least 7 + 9 messages.
    assert!(peer.updates_out >= 16, "split into many UPDATEs: {peer:?}");
    lb1.set(DesiredRoutes::new());
    assert_eventually(WAIT, "whole table withdrawn", || {
        count("ipv4") == 0 && count("ipv6") == 0
    });
    lb1.shutdown();
}

fn speaker_file(prefixes: &[&str]) -> String {
    let mut c = String::from(
        "[speaker]\nlocal_asn = 65010\nrouter_id = \"10.0.1.2\"\n\
         [[speaker.peers]]\naddress = \"10.0.1.1\"\nremote_asn = 65000\nhold_time_secs = 9\n\
         connect_retry_min = 100\nconnect_retry_max = 1000\n",
    );
    for p in prefixes {
        c.push_str(&format!("[[routes]]\nprefix = \"{p}\"\nmed = 10\n"));
    }
    c
}

/// The stand-alone daemon as a real process: SIGHUP reloads its routes,
/// `kill -9` takes its routes out of FRR's kernel table, SIGTERM ends the
/// session with Cease / Administrative Shutdown and exits cleanly.
#[test]
fn frr_follows_the_speaker_process_killed_and_terminated() {
    use support::lb::SpeakerProcess;
    let lab = Lab::new(1);
    let config = format!(
        "log file {}\n{}",
        lab.path("bgpd.log"),
        deploy_example("frr/frr.conf")
    );
    let frr = lab.frr(&config);
    let daemon = SpeakerProcess::start(&lab, 1, &speaker_file(&["192.0.2.10/32"]));
    assert_eventually(WAIT, "route from the process", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });
    daemon.reload(&speaker_file(&["192.0.2.10/32", "192.0.2.11/32"]));
    assert_eventually(WAIT, "reloaded route", || {
        lab.kernel_next_hops("192.0.2.11") == ["10.0.1.2"]
    });
    daemon.kill();
    assert_eventually(WAIT, "routes gone after kill -9", || {
        lab.kernel_route("192.0.2.10").is_empty() && lab.kernel_route("192.0.2.11").is_empty()
    });

    let daemon = SpeakerProcess::start(&lab, 1, &speaker_file(&["192.0.2.10/32"]));
    assert_eventually(WAIT, "route back after restart", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });
    assert!(daemon.terminate().success(), "clean exit on SIGTERM");
    assert_eventually(WAIT, "route gone after SIGTERM", || {
        lab.kernel_route("192.0.2.10").is_empty()
    });
    let neighbor = frr.vtysh("show bgp neighbors 10.0.1.2").unwrap();
    assert!(
        neighbor.contains("Notification received (Cease/Administrative Shutdown)"),
        "{neighbor}"
    );
}

/// PeerMode::Both against FRR, which also connects (not passive): both TCP
/// connections come up, collision detection keeps one, and routes flow
/// over a single session that stays up.
#[test]
fn frr_connecting_both_ways_settles_on_one_session() {
    use edgelb_bgp::PeerMode;
    let lab = Lab::new(1);
    // FRR retries its own connection every second.
    let config = frr_config(&lab, 1, " neighbor LB timers connect 1\n")
        .replace(" neighbor LB passive\n", "");
    let mut speaker = lb::config(1, 9, None);
    speaker.listen = Some("0.0.0.0:179".parse().unwrap());
    speaker.peers[0].mode = PeerMode::Both;
    // Speaker first: its connects fail until FRR is up, then FRR connects
    // to it while its next attempt connects to FRR.
    let lb1 = Lb::start(&lab, 1, speaker);
    let _frr = lab.frr(&config);
    lb1.set(routes(&[("192.0.2.10/32", vip())]));
    lb1.wait_established();
    assert_eventually(WAIT, "route installed", || {
        lab.kernel_next_hops("192.0.2.10") == ["10.0.1.2"]
    });
    let count = lb1.peer().established_count;
    std::thread::sleep(Duration::from_secs(3));
    let peer = lb1.peer();
    assert_eq!(peer.state, PeerState::Established, "{peer:?}");
    assert_eq!(peer.established_count, count, "no flapping: {peer:?}");
    // The losing connection of the collision may end with FRR's own
    // NOTIFICATION (seen: 5/0 when FRR's two connection structures race on
    // a loaded machine) instead of Cease/Collision; what matters is that the
    // established session never went down, checked just above.
    assert_eq!(lab.kernel_next_hops("192.0.2.10"), ["10.0.1.2"]);
    lb1.shutdown();
    assert_eventually(WAIT, "gone after shutdown", || {
        lab.kernel_route("192.0.2.10").is_empty()
    });
}
