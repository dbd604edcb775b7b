//! Scenario 5: the Raft leader is killed under CLI write load; writes keep
//! succeeding after failover and every node converges to one digest.

use std::time::{Duration, Instant};

use serde_json::json;

use super::Report;
use crate::cluster::{backend_addr, Cluster, ClusterSpec, VIP};

/// Runs the scenario with `writes` weight changes, the leader killed midway.
pub fn run(writes: usize) -> anyhow::Result<Report> {
    let mut cluster = Cluster::start(ClusterSpec::default())?;
    cluster.configure_vip(100)?;
    cluster.converge(Duration::from_secs(20))?;
    let vip = format!("{VIP}:80/tcp");
    let b1 = backend_addr(1).to_string();
    let (mut ok, mut failed, mut ok_after) = (0usize, 0usize, 0usize);
    let mut killed = None;
    let mut failover = None;
    let start = Instant::now();
    for k in 0..writes {
        if k == writes / 2 {
            let leader = cluster.leader()?;
            cluster.kill_lb(leader);
            killed = Some((leader, Instant::now()));
        }
        let weight = (100 + k % 50).to_string();
        match cluster.lbctl_any(&["backend", "set-weight", &vip, &b1, &weight]) {
            Ok(_) => {
                ok += 1;
                if let Some((_, at)) = killed {
                    ok_after += 1;
                    failover.get_or_insert(at.elapsed());
                }
            }
            Err(_) => failed += 1,
        }
        if start.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    let digest = cluster.converge(Duration::from_secs(30))?;
    let (victim, _) = killed.ok_or_else(|| anyhow::anyhow!("the leader was never killed"))?;
    let new_leader = cluster.leader()?;
    let fo = failover.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    Ok(Report {
        name: "raft leader killed under write load",
        header: vec![
            "WRITES OK",
            "FAILED",
            "OK AFTER KILL",
            "KILLED",
            "NEW LEADER",
            "FIRST WRITE AFTER KILL",
            "DIGEST",
        ],
        rows: vec![vec![
            ok.to_string(),
            failed.to_string(),
            ok_after.to_string(),
            format!("node {victim}"),
            format!("node {new_leader}"),
            fo,
            digest.clone(),
        ]],
        data: json!({"ok": ok, "failed": failed, "ok_after_kill": ok_after, "killed": victim,
                     "new_leader": new_leader, "failover_secs": failover.map(|d| d.as_secs_f64()), "digest": digest}),
    })
}
