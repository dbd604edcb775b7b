//! Scenario 8 (issue 14): a backend-table change and an ECMP rehash at
//! once. Long-lived TCP connections run through 3 LB nodes to 4 backends;
//! a fifth backend is added and, within a second, one LB node fails
//! (kill -9 and carrier loss), so the router moves its flows to nodes whose
//! caches have never seen them. A moved flow whose Maglev slot changed owner would go
//! to a backend without its socket (RST). With the second hop the new node
//! sends it to the new owner carrying the previous one, and the new owner's
//! decapsulator, finding no socket, forwards it there (target: 0 broken).
//! With the window set to 0 (second hop off) the same run shows the breakage
//! it prevents.
//!
//! The failed nodes' counters die with them: second hops are counted where
//! they happen, on the backends (`second_hop_forwarded`).

use std::time::Duration;

use serde_json::json;

use super::{broken, broken_reasons, Report};
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

/// Sum of one decapsulator counter over every backend.
fn backend_sum(cluster: &Cluster, name: &str) -> u64 {
    (1..=BACKENDS)
        .filter_map(|j| cluster.decap_stats(j).ok())
        .filter_map(|v| v[name].as_u64())
        .sum()
}

/// `second_hop_sent` of LB node `i` (0 if it cannot be read).
fn sent(cluster: &Cluster, i: usize) -> u64 {
    let Ok(v) = cluster.stats_json(i) else {
        return 0;
    };
    v["after"]["cache"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x[0].as_str() == Some("second_hop_sent"))
        .filter_map(|x| x[1].as_u64())
        .sum()
}

/// Step: a table change through `lbctl`, every node programming it, then
/// within a second LB node `victim` fails; waits until the router has
/// moved its flows and the connections have ridden it out. Returns the
/// victim's `second_hop_sent` read just before it failed.
fn change_then_fail(cluster: &mut Cluster, change: &[&str], victim: usize) -> anyhow::Result<u64> {
    cluster.lbctl_any(change)?;
    cluster.converge(Duration::from_secs(20))?;
    let before = sent(cluster, victim);
    cluster.fail_lb(victim)?;
    let dead = lb_addr(victim).to_string();
    cluster.wait_next_hops(Duration::from_secs(20), |h| !h.contains(&dead))?;
    // Retransmissions and the connections' next lines on the new paths.
    std::thread::sleep(Duration::from_secs(3));
    Ok(before)
}

/// One run with the second-hop window at `window_secs`.
pub fn run_one(connections: usize, window_secs: u32) -> anyhow::Result<Report> {
    let mut cluster = Cluster::start(ClusterSpec {
        backends: BACKENDS,
        second_hop: true,
        ..Default::default()
    })?;
    let vip = format!("{VIP}:{VIP_TCP_PORT}/tcp");
    cluster.lbctl_any(&["vip", "add", &vip])?;
    for j in 1..BACKENDS {
        cluster.lbctl_any(&["backend", "add", &vip, &backend_addr(j).to_string()])?;
    }
    let window = window_secs.to_string();
    cluster.lbctl_any(&[
        "settings",
        "connection",
        "--second-hop-window-secs",
        &window,
    ])?;
    cluster.converge(Duration::from_secs(20))?;
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;

    let traffic = cluster.long_lived(connections, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));

    // Step 1: a fifth backend, then node 2 fails.
    let added = backend_addr(BACKENDS).to_string();
    let sent_2 = change_then_fail(&mut cluster, &["backend", "add", &vip, &added], 2)?;

    let forwarded = backend_sum(&cluster, "second_hop_forwarded");
    let delivered = backend_sum(&cluster, "second_hop_delivered");
    let refused = backend_sum(&cluster, "second_hop_loop_refused");
    let invalid = backend_sum(&cluster, "second_hop_invalid");
    let no_route = backend_sum(&cluster, "second_hop_no_route");
    let sent_total = sent(&cluster, 1) + sent_2 + sent(&cluster, 3);
    let round_trips = traffic.round_trips();
    let outcomes = traffic.finish()?;
    let b = broken(&outcomes);
    let mode = if window_secs == 0 {
        "off (window 0)".to_owned()
    } else {
        format!("on (window {window_secs} s)")
    };
    let report = Report {
        name: "rehash after a backend change (kill -9 of an LB node)",
        header: vec![
            "SECOND HOP",
            "CONNECTIONS",
            "BROKEN",
            "CANDIDATES SENT",
            "SECOND HOPS TAKEN",
            "LOOPS REFUSED",
            "INVALID",
        ],
        rows: vec![vec![
            mode,
            outcomes.len().to_string(),
            b.to_string(),
            sent_total.to_string(),
            forwarded.to_string(),
            refused.to_string(),
            invalid.to_string(),
        ]],
        data: json!({
            "window_secs": window_secs, "connections": outcomes.len(), "broken": b,
            "reasons": broken_reasons(&outcomes, 5),
            "second_hop_sent": sent_total, "second_hop_forwarded": forwarded,
            "second_hop_delivered": delivered, "second_hop_loop_refused": refused,
            "second_hop_invalid": invalid, "second_hop_no_route": no_route,
            "round_trips": round_trips,
        }),
    };
    eprintln!("{}", report.table().trim_end());
    Ok(report)
}
