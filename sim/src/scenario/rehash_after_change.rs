//! Scenario 8 (issue 14): backend-table changes and ECMP rehashes at once,
//! twice within one second-hop window. Long-lived TCP connections run
//! through 3 LB nodes to 4 backends.
//!
//! 1. A fifth backend is added and, within a second, LB node 2 fails
//!    (kill -9 and carrier loss), so the router moves its flows to nodes
//!    whose caches have never seen them. A moved flow whose Maglev slot
//!    changed owner would go to a backend without its socket (RST). With
//!    the second hop the new node sends it to the new owner carrying the
//!    previous one, and the new owner's decapsulator, finding no socket,
//!    forwards it there.
//! 2. Node 2 comes back ([`Cluster::revive_lb`]): link up, daemon
//!    restarted. It adopts its pinned maps, so its connection cache still
//!    holds the flows it served before the kill (with their backends) and
//!    its XDP program stayed attached; once it announces again the router
//!    hashes over 3 nodes as before, and each flow returns to the node it
//!    started on.
//! 3. Backend 1 is drained and, within a second, LB node 3 fails (nodes 1
//!    and 2 keep the Raft quorum). Node 3's flows move to nodes without
//!    their entries; the previous owner they need is the one before step 1
//!    for flows whose slot moved then, the one before the drain for flows
//!    whose slot moved now: only a history of previous tables (a per-slot
//!    fold of them) serves both.
//!
//! Target: 0 broken in every step. With the window set to 0 (second hop
//! off) the same run shows the breakage it prevents. Broken connections
//! are counted in the step they were last seen working in.
//!
//! The failed nodes' counters die with them: a victim's are read just
//! before its kill, and second hops are counted where they happen, on the
//! backends (`second_hop_forwarded`).

use std::time::{Duration, Instant};

use super::{
    second_hop_tally::{run_report, second_hop_cluster, Step, Tally},
    Report,
};
use crate::cluster::{backend_addr, lb_addr, Cluster, ClusterSpec, VIP, VIP_TCP_PORT};

/// Backends of the cluster: 4 at first, the fifth added in step 1.
const BACKENDS: usize = 5;

/// Runs the scenario with the second-hop window at 60 s and at 0 (each its
/// own cluster), `connections` long-lived connections each.
pub fn run(connections: usize) -> anyhow::Result<Report> {
    let on = run_one(connections, 60)?;
    let off = run_one(connections, 0)?;
    Ok(Report::on_and_off(on, off))
}

/// A table change through `lbctl`, every node programming it, then within
/// a second LB node `victim` fails; waits until the router has moved its
/// flows and the connections have ridden it out.
fn change_then_fail(
    cluster: &mut Cluster,
    tally: &mut Tally,
    change: &[&str],
    victim: usize,
) -> anyhow::Result<()> {
    cluster.lbctl_any(change)?;
    cluster.converge(Duration::from_secs(20))?;
    tally.read_node(cluster, victim);
    cluster.fail_lb(victim)?;
    let dead = lb_addr(victim).to_string();
    cluster.wait_next_hops(Duration::from_secs(20), |h| !h.contains(&dead))?;
    // Retransmissions and the connections' next lines on the new paths.
    std::thread::sleep(Duration::from_secs(3));
    Ok(())
}

/// One run with the second-hop window at `window_secs`.
pub fn run_one(connections: usize, window_secs: u32) -> anyhow::Result<Report> {
    let mut cluster = second_hop_cluster(ClusterSpec::default(), BACKENDS, window_secs)?;
    let vip = format!("{VIP}:{VIP_TCP_PORT}/tcp");
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;

    let traffic = cluster.long_lived(connections, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));
    let mut tally = Tally::start(&cluster, BACKENDS);
    let mut steps = Vec::new();

    // Step 1: a fifth backend, then node 2 fails.
    let start = Instant::now();
    let added = backend_addr(BACKENDS).to_string();
    change_then_fail(
        &mut cluster,
        &mut tally,
        &["backend", "add", &vip, &added],
        2,
    )?;
    steps.push(Step {
        label: "1: add b5, kill -9 lb2",
        start,
        counts: tally.end_step(&cluster),
    });

    // Node 2 back, the router hashing over 3 nodes again.
    let start = Instant::now();
    cluster.revive_lb(2)?;
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(1));
    steps.push(Step {
        label: "lb2 back (restart)",
        start,
        counts: tally.end_step(&cluster),
    });

    // Step 2: backend 1 drained, then node 3 fails.
    let start = Instant::now();
    let drained = backend_addr(1).to_string();
    change_then_fail(
        &mut cluster,
        &mut tally,
        &["backend", "drain", &vip, &drained],
        3,
    )?;
    let last_step_done = steps[0].start.elapsed();
    steps.push(Step {
        label: "2: drain b1, kill -9 lb3",
        start,
        counts: tally.end_step(&cluster),
    });

    let round_trips = traffic.round_trips();
    let outcomes = traffic.finish()?;
    let mut report = run_report(
        "rehash after backend changes (kill -9 of an LB node, twice)",
        window_secs,
        &steps,
        &outcomes,
        round_trips,
    );
    // Whether both changes fell in one window (the interesting case).
    report.data["second_change_after_secs"] =
        serde_json::json!((start - steps[0].start).as_secs_f64());
    report.data["last_step_done_secs"] = serde_json::json!(last_step_done.as_secs_f64());
    eprintln!("{}", report.table().trim_end());
    Ok(report)
}
