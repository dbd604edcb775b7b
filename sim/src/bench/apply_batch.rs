//! `lbctl apply` of a 10 VIP x 20 backend desired-state file (one Raft
//! batch, one table version) against the same table built by 210 single
//! `lbctl` calls (10 `vip add`, 200 `backend add`): the time from the first
//! `lbctl` start until every node's maps hold the final table. The apply
//! time is also split: `lbctl apply --dry-run` of the same file against the
//! same (empty) table first (process start, linearizable read, the plan
//! with its Maglev tables), then the real apply until `lbctl` exits (that
//! plus the batch's Raft commit and the leader's apply), then until the
//! status polls see every node programmed.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use serde_json::json;

use super::convergence::{all_programmed, latency_row};
use crate::{
    cluster::{backend_addr, Cluster, ClusterSpec},
    scenario::Report,
};
use testbed::stats::{median, percentile};

const VIPS: usize = 10;
const BACKENDS: usize = 20;

fn vip(v: usize) -> String {
    format!("192.0.2.10:{}/tcp", 8000 + v)
}

/// The desired-state file: every VIP with the sim's 20 backends.
fn desired_file() -> String {
    let mut text = String::new();
    for v in 0..VIPS {
        let _ = write!(text, "[[vips]]\nvip = \"{}\"\n", vip(v));
        for b in 1..=BACKENDS {
            let _ = write!(
                text,
                "[[vips.backends]]\naddress = \"{}\"\nweight = {}\n",
                backend_addr(b),
                10 + b
            );
        }
    }
    text
}

/// Waits until every node has programmed at least `version` (bounded).
fn wait_programmed(cluster: &Cluster, version: u64, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cluster.status()?;
        if all_programmed(&status, cluster.lbs.len(), version) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: nodes did not program version {version} within 30 s: {status}");
        }
    }
}

/// Like [`wait_programmed`], also noting when each node was first seen
/// at `version` (ms since `start`, sorted): the first and last node.
fn wait_each_programmed(
    cluster: &Cluster,
    version: u64,
    start: Instant,
    what: &str,
) -> anyhow::Result<(f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: std::collections::BTreeMap<u64, f64> = Default::default();
    loop {
        let status = cluster.status()?;
        let at = start.elapsed().as_secs_f64() * 1e3;
        for node in status["nodes"].as_array().into_iter().flatten() {
            let report = &node[1]["Ok"];
            if report["table_version"].as_u64().unwrap_or(0) >= version {
                seen.entry(node[0].as_u64().unwrap_or(0)).or_insert(at);
            }
        }
        if all_programmed(&status, cluster.lbs.len(), version) {
            let first = seen.values().copied().fold(f64::INFINITY, f64::min);
            return Ok((first, at));
        }
        if Instant::now() > deadline {
            bail!("{what}: nodes did not program version {version} within 30 s: {status}");
        }
    }
}

/// The version a `--json` write (or apply) answer names.
fn written_version(out: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = serde_json::from_str(out)?;
    v["version"]
        .as_u64()
        .ok_or_else(|| anyhow!("no version in {out}"))
}

/// Runs `rounds` rounds of each way of building the table.
pub fn run(rounds: usize) -> anyhow::Result<Report> {
    let cluster = Cluster::start(ClusterSpec {
        backends: BACKENDS,
        ..ClusterSpec::default()
    })?;
    let dir = tempfile::tempdir()?;
    let full = dir.path().join("full.toml");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&full, desired_file())?;
    std::fs::write(&empty, "")?;
    let (full, empty) = (
        full.to_string_lossy().into_owned(),
        empty.to_string_lossy().into_owned(),
    );
    let reset = || -> anyhow::Result<()> {
        cluster.lbctl_any(&["apply", "-f", &empty, "--prune"])?;
        cluster.converge(Duration::from_secs(30))?;
        Ok(())
    };
    let (mut batch, mut single) = (Vec::new(), Vec::new());
    let (mut dry, mut returned) = (Vec::new(), Vec::new());
    let (mut first_node, mut polls) = (Vec::new(), Vec::new());
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
    for k in 0..rounds.clamp(1, 100) {
        reset()?;
        let start = Instant::now();
        cluster.lbctl_any(&["--json", "apply", "-f", &full, "--dry-run"])?;
        dry.push(ms(start));

        let start = Instant::now();
        let out = cluster.lbctl_any(&["--json", "apply", "-f", &full])?;
        returned.push(ms(start));
        let version = written_version(&out)?;
        let (first, last) =
            wait_each_programmed(&cluster, version, start, &format!("apply round {k}"))?;
        batch.push(last);
        first_node.push(first);
        // What one of the bench's status polls costs (its resolution).
        let poll = Instant::now();
        cluster.status()?;
        polls.push(ms(poll));

        reset()?;
        let start = Instant::now();
        let mut version = 0;
        for v in 0..VIPS {
            let out = cluster.lbctl_any(&["--json", "vip", "add", &vip(v)])?;
            version = written_version(&out)?;
            for b in 1..=BACKENDS {
                let addr = backend_addr(b).to_string();
                let weight = (10 + b).to_string();
                let out = cluster.lbctl_any(&[
                    "--json",
                    "backend",
                    "add",
                    &vip(v),
                    &addr,
                    "--weight",
                    &weight,
                ])?;
                version = written_version(&out)?;
            }
        }
        wait_programmed(&cluster, version, &format!("single round {k}"))?;
        single.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let ratio = median(&single) / median(&batch);
    Ok(Report {
        name: "apply: 10 VIPs x 20 backends -> every node's maps (3 nodes)",
        header: vec!["MEASURE (ms)", "MEDIAN", "P90", "MIN", "MAX"],
        rows: vec![
            latency_row("lbctl apply (one batch)", &batch),
            latency_row("  lbctl apply --dry-run (read + plan)", &dry),
            latency_row("  lbctl apply returns (+ commit)", &returned),
            latency_row("  first node seen programmed", &first_node),
            latency_row("  one status poll (resolution)", &polls),
            latency_row("210 single lbctl calls", &single),
            vec![
                "ratio single/apply (medians)".into(),
                format!("{ratio:.1}"),
                String::new(),
                String::new(),
                String::new(),
            ],
        ],
        data: json!({"rounds": batch.len(), "nodes": cluster.lbs.len(),
                     "apply_ms": {"median": median(&batch), "p90": percentile(&batch, 90.0)},
                     "dry_run_ms": {"median": median(&dry), "p90": percentile(&dry, 90.0)},
                     "apply_returned_ms": {"median": median(&returned), "p90": percentile(&returned, 90.0)},
                     "first_node_ms": {"median": median(&first_node), "p90": percentile(&first_node, 90.0)},
                     "status_poll_ms": {"median": median(&polls), "p90": percentile(&polls, 90.0)},
                     "single_ms": {"median": median(&single), "p90": percentile(&single, 90.0)},
                     "ratio": ratio}),
    })
}
