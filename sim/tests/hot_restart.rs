//! Hot restart of an LB node (SIGUSR2, then a new process): the XDP program
//! and its maps stay in the kernel, the BGP sessions end without a
//! NOTIFICATION so the router keeps the node's route (graceful restart), and
//! the new process adopts the data plane and sends End-of-RIB once ready.
//! Established connections through the node never notice.

use std::time::{Duration, Instant};

use edgelb_sim::{
    cluster::{lb_addr, Cluster, ClusterSpec, VIP},
    scenario::broken,
    traffic::LongLived,
};

#[test]
fn a_hot_restarted_node_keeps_its_route_and_its_connections() {
    let mut cluster = Cluster::start(ClusterSpec::default()).expect("cluster up");
    cluster.configure_vip(100).expect("configure VIP");
    let digest = cluster.converge(Duration::from_secs(20)).expect("digests agree");
    cluster.wait_for_ecmp(3, Duration::from_secs(30)).expect("ECMP over 3 nodes");
    let traffic = LongLived::start(cluster.client.name(), cluster.vip_tcp(), 24, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));

    let node = 2;
    let hop = lb_addr(node).to_string();
    assert!(cluster.signal_lb_and_wait(node, libc::SIGUSR2, Duration::from_secs(20)), "node did not exit on SIGUSR2");
    // The process is gone; its route must stay (stale) and keep its place
    // in the router's ECMP set.
    let prefix = format!("{VIP}/32");
    let frr_view = cluster.frr.vtysh(&format!("show bgp ipv4 unicast {prefix}")).unwrap_or_default();
    assert!(frr_view.to_lowercase().contains("stale"), "the router does not hold the route as stale:\n{frr_view}");
    let gap_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < gap_until {
        let hops = cluster.vip_next_hops().expect("router routes");
        assert!(hops.contains(&hop), "route via the restarting node withdrawn: {hops:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    cluster.restart_lb(node).expect("start the new process");
    assert_eq!(cluster.converge(Duration::from_secs(30)).expect("converge after restart"), digest);
    let refreshed = Instant::now() + Duration::from_secs(30);
    loop {
        let view = cluster.frr.vtysh(&format!("show bgp ipv4 unicast {prefix}")).unwrap_or_default();
        if !view.to_lowercase().contains("stale") {
            break;
        }
        assert!(Instant::now() < refreshed, "route still stale after the restart:\n{view}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let hops = cluster.vip_next_hops().expect("router routes");
    assert_eq!(hops.len(), 3, "{hops:?}");
    std::thread::sleep(Duration::from_secs(1));

    let outcomes = traffic.finish().expect("traffic");
    let reasons: Vec<_> = outcomes.iter().filter_map(|o| o.broken.clone()).take(5).collect();
    assert_eq!(broken(&outcomes), 0, "connections broke across the hot restart: {reasons:?}");
    assert!(outcomes.iter().all(|o| o.round_trips > 10), "connections stalled");
}
