//! Scenario 1: many TCP connections and UDP flows; share per LB node and per
//! backend against the weights.

use std::collections::BTreeMap;

use serde_json::json;

use super::Report;
use crate::{
    cluster::{Cluster, ClusterSpec, VIP, VIP_UDP_PORT},
    traffic,
};

/// Runs the balance scenario: `weights[j]` is backend j+1's weight.
pub fn run(
    lb_nodes: usize,
    weights: &[u32],
    tcp_connections: usize,
    udp_flows: usize,
) -> anyhow::Result<Report> {
    let cluster = Cluster::start(ClusterSpec {
        lb_nodes,
        backends: weights.len(),
        ..Default::default()
    })?;
    cluster.configure_vip(1)?;
    for (j, w) in weights.iter().enumerate() {
        for vip in [format!("{VIP}:80/tcp"), format!("{VIP}:{VIP_UDP_PORT}/udp")] {
            cluster.lbctl_any(&[
                "backend",
                "set-weight",
                &vip,
                &crate::cluster::backend_addr(j + 1).to_string(),
                &w.to_string(),
            ])?;
        }
    }
    let digest = cluster.converge(std::time::Duration::from_secs(20))?;
    cluster.wait_for_ecmp(lb_nodes, std::time::Duration::from_secs(30))?;
    let before = node_packets(&cluster)?;
    let tcp = traffic::tcp_spread(cluster.client.name(), cluster.vip_tcp(), tcp_connections)?;
    let udp = traffic::udp_spread(cluster.client.name(), (VIP, VIP_UDP_PORT).into(), udp_flows)?;
    let after = node_packets(&cluster)?;

    let total_w: u32 = weights.iter().sum();
    let mut rows = Vec::new();
    let mut backends = Vec::new();
    for (j, w) in weights.iter().enumerate() {
        let name = format!("b{}", j + 1);
        let t = tcp.get(&name).copied().unwrap_or(0);
        let u = udp.get(&name).copied().unwrap_or(0);
        let expected = f64::from(*w) / f64::from(total_w);
        rows.push(vec![
            format!("backend {name}"),
            w.to_string(),
            format!("{:.1}%", 100.0 * expected),
            format!(
                "{t} ({:.1}%)",
                100.0 * t as f64 / tcp_connections.max(1) as f64
            ),
            format!("{u} ({:.1}%)", 100.0 * u as f64 / udp_flows.max(1) as f64),
        ]);
        backends.push(
            json!({"name": name, "weight": w, "expected_share": expected, "tcp": t, "udp": u}),
        );
    }
    let mut nodes = Vec::new();
    let total: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        let p = a - b;
        rows.push(vec![
            format!("lb node {}", i + 1),
            "-".into(),
            format!("{:.1}%", 100.0 / lb_nodes as f64),
            format!("{p} pkts ({:.1}%)", 100.0 * p as f64 / total.max(1) as f64),
            "-".into(),
        ]);
        nodes.push(json!({"node": i + 1, "packets": p}));
    }
    let failures: usize = tcp
        .iter()
        .chain(udp.iter())
        .filter(|(k, _)| k.starts_with('('))
        .map(|(_, v)| v)
        .sum();
    Ok(Report {
        name: "balance",
        header: vec!["WHO", "WEIGHT", "EXPECTED", "TCP CONNECTIONS", "UDP FLOWS"],
        rows,
        data: json!({"backends": backends, "nodes": nodes, "failures": failures, "digest": digest,
                     "tcp_connections": tcp_connections, "udp_flows": udp_flows}),
    })
}

/// Packets each node's forwarder handled for the VIPs so far.
pub fn node_packets(cluster: &Cluster) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for n in &cluster.lbs {
        let v = cluster.stats_json(n.index)?;
        let p: u64 = v["after"]["vips"]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|x| x[1].as_u64()).sum());
        out.push(p);
    }
    Ok(out)
}

/// Per-backend counts as a map (for tests).
pub fn shares(report: &Report) -> BTreeMap<String, (f64, u64)> {
    report.data["backends"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    (
                        b["name"].as_str().unwrap_or("").to_owned(),
                        (
                            b["expected_share"].as_f64().unwrap_or(0.0),
                            b["tcp"].as_u64().unwrap_or(0),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
