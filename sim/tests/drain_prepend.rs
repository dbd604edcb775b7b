//! SIGTERM with `[drain] prepend_secs`: the node first re-announces its VIP
//! with a longer AS_PATH, so the router drops it from the ECMP set while the
//! route still backs the others up; then it withdraws, keeps forwarding for
//! the drain period, and exits. No connection breaks on the way.

use std::time::{Duration, Instant};

use edgelb_sim::{
    cluster::{lb_addr, Cluster, ClusterSpec, LB_ASN, VIP},
    scenario::{broken, broken_reasons},
};
use serde_json::Value;
use testbed::wait::wait_for;

/// AS_PATH length of the router's path from `peer` to the VIP, if it has one.
fn path_length_via(cluster: &Cluster, peer: &str) -> Option<u64> {
    let text = cluster
        .frr
        .vtysh(&format!("show bgp ipv4 unicast {VIP}/32 json"))
        .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["paths"]
        .as_array()?
        .iter()
        .find(|p| p["peer"]["peerId"] == peer)
        .and_then(|p| p["aspath"]["length"].as_u64())
}

/// How often the waits below poll.
const POLL: Duration = Duration::from_millis(50);

#[test]
fn sigterm_prepends_then_withdraws_without_breaking_connections() {
    let mut cluster = Cluster::start(ClusterSpec {
        drain_secs: 2,
        drain_prepend_secs: 3,
        ..Default::default()
    })
    .expect("cluster up");
    cluster.configure_vip(100).expect("configure VIP");
    cluster
        .converge(Duration::from_secs(20))
        .expect("digests agree");
    cluster
        .wait_for_ecmp(3, Duration::from_secs(30))
        .expect("ECMP over 3 nodes");
    let node = 2;
    let peer = lb_addr(node).to_string();
    assert_eq!(
        path_length_via(&cluster, &peer),
        Some(1),
        "plain path before the drain"
    );
    let traffic = cluster.long_lived(24, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));

    let sent = Instant::now();
    cluster.lbs[node - 1]
        .process
        .as_ref()
        .expect("node running")
        .signal(libc::SIGTERM);
    // Prepended by prepend_count (3) copies of the node's ASN.
    let length = wait_for("a prepended path", Duration::from_secs(3), POLL, || {
        path_length_via(&cluster, &peer).filter(|&l| l > 1)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(length, 4, "AS_PATH of {LB_ASN} plus three prepends");
    let hops = cluster
        .wait_next_hops(Duration::from_secs(3), |h| !h.contains(&peer))
        .map(|_| cluster.vip_next_hops());
    let hops = hops
        .expect("router leaves the prepended node out of ECMP")
        .expect("routes");
    assert_eq!(
        hops.len(),
        2,
        "the other two nodes carry the flows: {hops:?}"
    );
    assert!(
        path_length_via(&cluster, &peer).is_some(),
        "the prepended route must stay as a backup"
    );

    // Then the withdrawal, after prepend_secs.
    wait_for("the withdrawal", Duration::from_secs(10), POLL, || {
        path_length_via(&cluster, &peer).is_none().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sent.elapsed() >= Duration::from_secs(3),
        "withdrawn before prepend_secs: {:?}",
        sent.elapsed()
    );
    assert!(
        cluster.stop_lb(node, Duration::from_secs(20)),
        "node did not exit after the drain"
    );

    let outcomes = traffic.finish().expect("traffic");
    let reasons = broken_reasons(&outcomes, 5);
    assert_eq!(
        broken(&outcomes),
        0,
        "connections broke during the drain: {reasons:?}"
    );
}
