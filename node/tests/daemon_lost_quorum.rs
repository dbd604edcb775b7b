//! A Raft leader cut off from the other voters withdraws its VIP route (the
//! majority elects a new leader and keeps announcing), and announces again
//! once the partition heals. Real daemons, real FRR router, real partition
//! (policy blackhole rules in the router between the nodes' addresses).
//!
//! Needs root and `cargo build --release -p edgelb-node -p edgelb-sim`.

mod support;

use std::time::Duration;

use edgelb_sim::cluster::lb_addr;
use support::{lbctl, POLL};
use testbed::wait::wait_for;

#[test]
fn partitioned_leader_withdraws_and_returns_after_healing() {
    let cluster = support::serving_cluster();

    let old = cluster.leader().expect("a leader");
    let hop = lb_addr(old).to_string();
    cluster.partition(old).expect("partition");
    let took = cluster
        .wait_next_hops(Duration::from_secs(20), |h| {
            h.len() == 2 && !h.contains(&hop)
        })
        .unwrap_or_else(|e| {
            panic!(
                "partitioned leader {old} kept announcing: {e}\n{}",
                cluster.log_tails(20)
            )
        });
    eprintln!("partitioned leader withdrawn after {took:?}");

    // It is still the leader in its own eyes, but says it is not announcing.
    let local = wait_for("local", Duration::from_secs(5), POLL, || {
        let r = lbctl(
            &cluster,
            old,
            &["--json", "status", "--timeout-ms", "10000"],
        );
        let v: serde_json::Value = serde_json::from_str(&r.stdout).ok()?;
        let mine = v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n[0].as_u64() == Some(old as u64))?
            .clone();
        Some(mine[1]["Ok"].clone())
    })
    .expect("the partitioned node answers its own status");
    assert_eq!(local["announcing"], false, "{local}");

    // The majority side has a new leader and serves.
    let new = wait_for("new", Duration::from_secs(10), POLL, || {
        let other = (1..=3).find(|i| *i != old)?;
        let r = lbctl(&cluster, other, &["--json", "status"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).ok()?;
        v["leader"].as_u64().filter(|l| *l != old as u64)
    })
    .expect("a new leader on the majority side");
    assert_ne!(new, old as u64);

    cluster.heal(old).expect("heal");
    cluster
        .wait_next_hops(Duration::from_secs(30), |h| h.len() == 3)
        .unwrap_or_else(|e| {
            panic!(
                "node {old} did not announce again after healing: {e}\n{}",
                cluster.log_tails(20)
            )
        });
}
