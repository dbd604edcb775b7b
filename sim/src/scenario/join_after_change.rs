//! Scenario 9 (issue 14): a new LB node joins right after a backend
//! change. Long-lived TCP connections run through LB nodes 1 and 2 to 4
//! backends, node 3 held back (a Raft initial member and a BGP neighbour
//! of the router, never started). A fifth backend is added and, within a
//! second, node 3 starts ([`Cluster::join_lb`]): an empty connection
//! cache. When it announces, the router hashes over 3 nodes and moves
//! flows onto nodes whose caches never saw them (node 3, and with the
//! kernel's hash-threshold next hops also some from node 1 to node 2). A
//! moved flow whose slot changed owner in the change needs the second hop,
//! from node 3 too: it opens its window when it first installs the
//! replicated previous table. Target: 0 broken; with the window at 0, the
//! breakage it prevents.

use std::time::{Duration, Instant};

use super::{
    second_hop_tally::{run_report, second_hop_cluster, Step, Tally},
    Report,
};
use crate::cluster::{backend_addr, ClusterSpec, VIP, VIP_TCP_PORT};

/// Backends of the cluster: 4 at first, the fifth added before the join.
const BACKENDS: usize = 5;
/// The LB node that joins.
const JOINER: usize = 3;

/// Runs the scenario with the second-hop window at 60 s and at 0 (each its
/// own cluster), `connections` long-lived connections each.
pub fn run(connections: usize) -> anyhow::Result<Report> {
    let on = run_one(connections, 60)?;
    let off = run_one(connections, 0)?;
    Ok(Report::on_and_off(on, off))
}

/// One run with the second-hop window at `window_secs`.
pub fn run_one(connections: usize, window_secs: u32) -> anyhow::Result<Report> {
    let mut cluster = second_hop_cluster(
        ClusterSpec {
            held_back: vec![JOINER],
            ..Default::default()
        },
        BACKENDS,
        window_secs,
    )?;
    let vip = format!("{VIP}:{VIP_TCP_PORT}/tcp");
    cluster.wait_for_ecmp(2, Duration::from_secs(30))?;

    let traffic = cluster.long_lived(connections, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));
    let mut tally = Tally::start(&cluster, BACKENDS);

    // A fifth backend, programmed by nodes 1 and 2; then node 3 joins.
    let start = Instant::now();
    let added = backend_addr(BACKENDS).to_string();
    cluster.lbctl_any(&["backend", "add", &vip, &added])?;
    cluster.converge(Duration::from_secs(20))?;
    cluster.join_lb(JOINER)?;
    let joined = Instant::now();
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;
    let announced = joined.elapsed();
    // Retransmissions and the connections' next lines on the new paths.
    std::thread::sleep(Duration::from_secs(3));
    let steps = [Step {
        label: "add b5, lb3 joins",
        start,
        counts: tally.end_step(&cluster),
    }];

    let round_trips = traffic.round_trips();
    let outcomes = traffic.finish()?;
    let mut report = run_report(
        "join after a backend change (a new LB node, empty cache)",
        window_secs,
        &steps,
        &outcomes,
        round_trips,
    );
    report.data["join_to_ecmp_secs"] = serde_json::json!(announced.as_secs_f64());
    eprintln!("{}", report.table().trim_end());
    Ok(report)
}
