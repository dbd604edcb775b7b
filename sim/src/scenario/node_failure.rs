//! Scenario 2: long-lived TCP connections open; one LB node dies (its
//! daemon is killed with -9 and its link loses carrier, as when the machine
//! fails; see [`Cluster::fail_lb`]); count connections that break and the
//! time until the router stops sending to the dead node.
//!
//! Connections the router moves to the surviving nodes keep their backend:
//! every node runs the same Maglev table. Only packets the router sends to
//! the dead node before it converges are lost, and TCP retransmits them, so
//! the target is zero broken connections as long as the router converges
//! well within the connections' 15 s read timeout.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{broken, broken_reasons, Report};
use crate::cluster::{lb_addr, Cluster, ClusterSpec};

/// Runs the scenario with `connections` long-lived connections.
pub fn run(connections: usize) -> anyhow::Result<Report> {
    let mut cluster = Cluster::start(ClusterSpec::default())?;
    cluster.configure_vip(100)?;
    cluster.converge(Duration::from_secs(20))?;
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;
    let traffic = cluster.long_lived(connections, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));
    let victim = 2;
    let dead = lb_addr(victim).to_string();
    let killed_at = Instant::now();
    cluster.fail_lb(victim)?;
    let converge = cluster.wait_next_hops(Duration::from_secs(20), |h| !h.contains(&dead))?;
    let round_trips_at_kill = traffic.round_trips();
    // Let retransmissions ride it out, then look.
    std::thread::sleep(Duration::from_secs(4));
    let progress_after = traffic.round_trips() - round_trips_at_kill;
    let outcomes = traffic.finish()?;
    let b = broken(&outcomes);
    let reasons = broken_reasons(&outcomes, 5);
    Ok(Report {
        name: "lb node failure (kill -9 and carrier loss)",
        header: vec![
            "CONNECTIONS",
            "BROKEN",
            "ROUTER CONVERGED AFTER",
            "ROUND TRIPS AFTER KILL",
        ],
        rows: vec![vec![
            outcomes.len().to_string(),
            b.to_string(),
            format!("{:.2} s", converge.as_secs_f64()),
            progress_after.to_string(),
        ]],
        data: json!({"connections": outcomes.len(), "broken": b, "router_converged_secs": converge.as_secs_f64(),
                     "since_kill_secs": killed_at.elapsed().as_secs_f64(), "broken_reasons": reasons,
                     "round_trips_after_kill": progress_after}),
    })
}
