//! Scenario 7 (issue 17): a SYN flood from random sources while the
//! backend table changes. Long-lived connections are open; the client
//! namespace floods the VIP with SYNs as fast as it can; mid-flood a
//! backend is added. With cache admission on, the flood cannot evict the
//! connections' cache entries, so the table change moves none of them
//! (target: 0 broken); with it off (plain LRU), the same run shows the
//! failure it prevents.
//!
//! The nodes' caches are the smallest the config allows (1024 entries per
//! CPU) so that the flood rate one shared CPU produces is enough to churn
//! them; on a real node the cache is larger and so is the flood.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::json;

use super::{broken, broken_reasons, Report};
use crate::{
    cluster::{backend_addr, Cluster, ClusterSpec, VIP, VIP_TCP_PORT},
    traffic::spawn_in_namespace,
};

/// Cache entries per CPU of every node in this scenario (the config's
/// minimum): see the module docs.
const CONN_TABLE_SIZE: u32 = 1024;

/// One node's counters at one moment, summed over its CPUs.
#[derive(Debug, Clone, Default)]
struct Sample {
    at: Option<Instant>,
    /// Packets to the VIP (forwarded or dropped by the forwarder).
    vip_packets: u64,
    /// Forwarder drops, all reasons.
    drops: u64,
    /// `lru_*` and `flood_*` counters.
    cache: BTreeMap<String, u64>,
}

/// Every node's counters now (`lbctl --json stats`).
fn sample(cluster: &Cluster) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for n in &cluster.lbs {
        let v = cluster.stats_json(n.index)?;
        let after = &v["after"];
        let pairs = |key: &str| -> Vec<(String, u64)> {
            after[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| Some((x[0].as_str()?.to_owned(), x[1].as_u64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        out.push(Sample {
            at: Some(Instant::now()),
            vip_packets: after["vips"]
                .as_array()
                .map_or(0, |a| a.iter().filter_map(|x| x[1].as_u64()).sum()),
            drops: pairs("drops").iter().map(|(_, n)| n).sum(),
            cache: pairs("cache").into_iter().collect(),
        });
    }
    Ok(out)
}

/// Sums over nodes of `f(later) - f(earlier)`.
fn delta(a: &[Sample], b: &[Sample], f: impl Fn(&Sample) -> u64) -> u64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f(y).saturating_sub(f(x)))
        .sum()
}

/// Seconds between two samples (of the first node).
fn secs(a: &[Sample], b: &[Sample]) -> f64 {
    match (a.first().and_then(|s| s.at), b.first().and_then(|s| s.at)) {
        (Some(x), Some(y)) => y.duration_since(x).as_secs_f64().max(1e-3),
        _ => 1e-3,
    }
}

/// Runs the scenario once with cache admission on and once off (each its
/// own cluster), `connections` long-lived connections, the flood lasting
/// `flood`.
pub fn run(connections: usize, flood: Duration) -> anyhow::Result<Report> {
    let on = run_one(connections, flood, true)?;
    let off = run_one(connections, flood, false)?;
    Ok(Report::on_and_off(on, off))
}

/// One run: admission `on` (threshold "auto") or off.
pub fn run_one(connections: usize, flood: Duration, on: bool) -> anyhow::Result<Report> {
    let cluster = Cluster::start(ClusterSpec {
        backends: 5,
        conn_table_size: CONN_TABLE_SIZE,
        flood_threshold: if on { "\"auto\"" } else { "\"off\"" }.into(),
        ..Default::default()
    })?;
    let vip = format!("{VIP}:{VIP_TCP_PORT}/tcp");
    cluster.lbctl_any(&["vip", "add", &vip])?;
    for j in 1..=4 {
        cluster.lbctl_any(&["backend", "add", &vip, &backend_addr(j).to_string()])?;
    }
    cluster.converge(Duration::from_secs(20))?;
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;

    let traffic = cluster.long_lived(connections, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(1500));
    let s0 = sample(&cluster)?;
    std::thread::sleep(Duration::from_secs(1));
    let s1 = sample(&cluster)?;

    // The flood runs on the sim's CPU like all its traffic, so its packets
    // meet the connections in the same per-CPU cache slice.
    let flooder = spawn_in_namespace(cluster.client.name(), move || {
        crate::pinning::pin_to_sim_cpu()?;
        crate::syn_flood::flood(VIP, VIP_TCP_PORT, flood)
    });
    std::thread::sleep(flood / 2);
    let b5 = backend_addr(5).to_string();
    cluster.lbctl_any(&["backend", "add", &vip, &b5])?;
    let digest = cluster.converge(Duration::from_secs(30))?;
    let sent = flooder
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread panicked"))???;
    let s2 = sample(&cluster)?;
    // Time for the connections' next round trips on the new table.
    std::thread::sleep(Duration::from_secs(2));
    let outcomes = traffic.finish()?;
    let b = broken(&outcomes);

    let vip_during = delta(&s1, &s2, |s| s.vip_packets);
    let dropped_at_nodes = delta(&s1, &s2, |s| s.drops);
    let forwarded = vip_during.saturating_sub(dropped_at_nodes);
    let rate_before = delta(&s0, &s1, |s| s.vip_packets) as f64 / secs(&s0, &s1);
    let rate_during = vip_during as f64 / secs(&s1, &s2);
    let ev = |name: &str| delta(&s1, &s2, |s| s.cache.get(name).copied().unwrap_or(0));
    let mode = if on { "on (auto)" } else { "off" };
    let rows = vec![vec![
        mode.to_owned(),
        outcomes.len().to_string(),
        b.to_string(),
        format!("{:.0}", sent.rate()),
        sent.syns.to_string(),
        forwarded.to_string(),
        sent.syns.saturating_sub(forwarded).to_string(),
        format!("{rate_before:.0}"),
        format!("{rate_during:.0}"),
        ev("flood_not_cached").to_string(),
        ev("lru_evicted_established").to_string(),
    ]];
    Ok(Report {
        name: "SYN flood during a backend change",
        header: vec![
            "ADMISSION",
            "CONNECTIONS",
            "BROKEN",
            "SYN/S SENT",
            "SYNS SENT",
            "FORWARDED",
            "NOT FORWARDED",
            "NODE PKT/S BEFORE",
            "NODE PKT/S DURING",
            "NOT CACHED",
            "ESTABLISHED EVICTED",
        ],
        rows,
        data: json!({
            "admission": on, "connections": outcomes.len(), "broken": b,
            "reasons": broken_reasons(&outcomes, 5),
            "flood_secs": sent.elapsed.as_secs_f64(), "syns_sent": sent.syns,
            "syn_rate": sent.rate(),
            "vip_packets_during": vip_during, "forwarded": forwarded,
            "dropped_at_nodes": dropped_at_nodes,
            "node_pps_before": rate_before, "node_pps_during": rate_during,
            "flood_entered": ev("flood_entered"), "flood_left": ev("flood_left"),
            "flood_not_cached": ev("flood_not_cached"),
            "lru_evicted": ev("lru_evicted"),
            "lru_evicted_established": ev("lru_evicted_established"),
            "digest": digest,
        }),
    })
}
