//! Convergence: the time from an `lbctl` write until every node's data
//! plane runs the new table (each node's programmed table version reaches
//! the version the write was applied at, and all digests agree).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use serde_json::json;

use crate::{
    cluster::{backend_addr, Cluster, ClusterSpec, VIP},
    scenario::Report,
};
use testbed::stats::{median, percentile};

/// One round's figures, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Until `lbctl` returned (the write committed and applied at the leader).
    pub acknowledged: f64,
    /// Until every node had programmed the new table.
    pub converged: f64,
}

/// One report row in milliseconds: MEDIAN, P90, MIN, MAX of `v`.
pub(crate) fn latency_row(label: &str, v: &[f64]) -> Vec<String> {
    vec![
        label.to_owned(),
        format!("{:.1}", median(v)),
        format!("{:.1}", percentile(v, 90.0)),
        format!("{:.1}", percentile(v, 0.0)),
        format!("{:.1}", percentile(v, 100.0)),
    ]
}

/// Whether every one of `nodes` nodes in an `lbctl --json status` answer has
/// programmed at least `version`, all with one digest.
pub(crate) fn all_programmed(status: &serde_json::Value, nodes: usize, version: u64) -> bool {
    let reports: Vec<&serde_json::Value> = status["nodes"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n[1].get("Ok")).collect())
        .unwrap_or_default();
    let digests: std::collections::BTreeSet<&str> = reports
        .iter()
        .map(|r| r["table_digest"].as_str().unwrap_or(""))
        .collect();
    reports.len() == nodes
        && digests.len() == 1
        && reports
            .iter()
            .all(|r| r["table_version"].as_u64().unwrap_or(0) >= version)
}

/// Runs `rounds` weight changes on a 3-node, 4-backend cluster and measures each.
pub fn run(rounds: usize) -> anyhow::Result<Report> {
    let cluster = Cluster::start(ClusterSpec::default())?;
    cluster.configure_vip(100)?;
    cluster.converge(Duration::from_secs(20))?;
    let vip = format!("{VIP}:80/tcp");
    let b1 = backend_addr(1).to_string();
    let nodes = cluster.lbs.len();
    let mut results = Vec::new();
    for k in 0..rounds.clamp(1, 1000) {
        let weight = (101 + k % 500).to_string();
        let start = Instant::now();
        let out = cluster.lbctl_any(&["--json", "backend", "set-weight", &vip, &b1, &weight])?;
        let acknowledged = start.elapsed().as_secs_f64();
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let version = v["version"]
            .as_u64()
            .ok_or_else(|| anyhow!("write answer without a version: {out}"))?;
        let deadline = start + Duration::from_secs(10);
        let converged = loop {
            let status = cluster.status()?;
            if all_programmed(&status, nodes, version) {
                break start.elapsed().as_secs_f64();
            }
            if Instant::now() > deadline {
                bail!("round {k}: nodes did not program version {version} within 10 s: {status}");
            }
        };
        results.push(Round {
            acknowledged,
            converged,
        });
    }
    let ack: Vec<f64> = results.iter().map(|r| r.acknowledged * 1e3).collect();
    let conv: Vec<f64> = results.iter().map(|r| r.converged * 1e3).collect();
    Ok(Report {
        name: "convergence: lbctl write -> every node's maps (3 nodes)",
        header: vec!["MEASURE (ms)", "MEDIAN", "P90", "MIN", "MAX"],
        rows: vec![
            latency_row("write acknowledged", &ack),
            latency_row("all nodes programmed", &conv),
        ],
        data: json!({"rounds": results.len(), "nodes": nodes,
                     "ack_ms": {"median": median(&ack), "p90": percentile(&ack, 90.0)},
                     "converged_ms": {"median": median(&conv), "p90": percentile(&conv, 90.0),
                                      "min": percentile(&conv, 0.0), "max": percentile(&conv, 100.0)}}),
    })
}
