//! Scenario 3: SIGTERM one LB node under long-lived connections: it
//! withdraws, keeps forwarding through the drain period, then exits. No
//! connection may break.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{broken, broken_reasons, Report};
use crate::cluster::{lb_addr, Cluster, ClusterSpec};

/// Runs the scenario with `connections` long-lived connections.
pub fn run(connections: usize) -> anyhow::Result<Report> {
    let mut cluster = Cluster::start(ClusterSpec {
        drain_secs: 3,
        ..Default::default()
    })?;
    cluster.configure_vip(100)?;
    cluster.converge(Duration::from_secs(20))?;
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;
    let traffic = cluster.long_lived(connections, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));
    let victim = 2;
    let gone = lb_addr(victim).to_string();
    let sent = Instant::now();
    cluster.lbs[victim - 1]
        .process
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("node not running"))?
        .signal(libc::SIGTERM);
    let withdrawn = cluster.wait_next_hops(Duration::from_secs(10), |h| !h.contains(&gone))?;
    let exited = cluster.stop_lb(victim, Duration::from_secs(20));
    let exit_secs = sent.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let outcomes = traffic.finish()?;
    let b = broken(&outcomes);
    let reasons = broken_reasons(&outcomes, 5);
    Ok(Report {
        name: "lb node drain (SIGTERM)",
        header: vec![
            "CONNECTIONS",
            "BROKEN",
            "ROUTES WITHDRAWN AFTER",
            "NODE EXITED AFTER",
        ],
        rows: vec![vec![
            outcomes.len().to_string(),
            b.to_string(),
            format!("{:.2} s", withdrawn.as_secs_f64()),
            if exited {
                format!("{exit_secs:.2} s")
            } else {
                "did not exit".into()
            },
        ]],
        data: json!({"connections": outcomes.len(), "broken": b, "withdrawn_secs": withdrawn.as_secs_f64(),
                     "exited": exited, "exit_secs": exit_secs, "broken_reasons": reasons}),
    })
}
