//! Scenario 6: one LB node is cut off from the Raft majority: it withdraws
//! its routes; the cluster changes meanwhile; after healing it catches up,
//! agrees on the digest and announces again.

use std::time::Duration;

use serde_json::json;

use super::Report;
use crate::cluster::{backend_addr, lb_addr, Cluster, ClusterSpec, VIP};

/// Runs the scenario.
pub fn run() -> anyhow::Result<Report> {
    let cluster = Cluster::start(ClusterSpec::default())?;
    cluster.configure_vip(100)?;
    cluster.converge(Duration::from_secs(20))?;
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;
    // Cut off a follower (the leader of a minority cannot commit either way).
    let leader = cluster.leader()?;
    let victim = (1..=3).find(|i| *i != leader).unwrap_or(3);
    let addr = lb_addr(victim).to_string();
    cluster.partition(victim)?;
    let withdrawn = cluster.wait_next_hops(Duration::from_secs(30), |h| !h.contains(&addr))?;
    // The majority keeps working.
    let vip = format!("{VIP}:80/tcp");
    let majority_node = (1..=3).find(|i| *i != victim).unwrap_or(1);
    let out = cluster.lbctl(
        majority_node,
        &[
            "--json",
            "backend",
            "set-weight",
            &vip,
            &backend_addr(1).to_string(),
            "250",
        ],
    )?;
    let majority_wrote = out.status.success();
    let written: Option<u64> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["version"].as_u64());
    // The cut-off node's own view: it must not have the majority's write.
    let victim_version = victim_table_version(&cluster, victim)?;
    let behind = matches!((written, victim_version), (Some(w), Some(v)) if v < w);
    cluster.heal(victim)?;
    let reannounced = cluster.wait_next_hops(Duration::from_secs(30), |h| h.contains(&addr))?;
    let digest = cluster.converge(Duration::from_secs(30))?;
    Ok(Report {
        name: "partition of one lb node from the raft majority",
        header: vec![
            "NODE",
            "WITHDRAWN AFTER",
            "MAJORITY WROTE",
            "NODE BEHIND",
            "RE-ANNOUNCED AFTER HEAL",
            "DIGEST (ALL AGREE)",
        ],
        rows: vec![vec![
            format!("node {victim}"),
            format!("{:.2} s", withdrawn.as_secs_f64()),
            majority_wrote.to_string(),
            format!(
                "{} < {}",
                victim_version.map_or("?".into(), |v| v.to_string()),
                written.map_or("?".into(), |v| v.to_string())
            ),
            format!("{:.2} s", reannounced.as_secs_f64()),
            digest.clone(),
        ]],
        data: json!({"node": victim, "withdrawn_secs": withdrawn.as_secs_f64(), "majority_wrote": majority_wrote,
                     "written_version": written, "victim_version_while_partitioned": victim_version,
                     "behind_while_partitioned": behind,
                     "reannounced_secs": reannounced.as_secs_f64(), "digest": digest}),
    })
}

/// The table version node `i` has programmed, as it reports itself.
fn victim_table_version(cluster: &Cluster, i: usize) -> anyhow::Result<Option<u64>> {
    let out = cluster.lbctl(i, &["--json", "status"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "status from node {i}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(v["nodes"].as_array().and_then(|nodes| {
        nodes
            .iter()
            .find(|n| n[0].as_u64() == Some(i as u64))
            .and_then(|n| n[1].get("Ok"))
            .and_then(|r| r["table_version"].as_u64())
    }))
}
