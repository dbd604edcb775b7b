//! Logs (tracing, plain or JSON) and Prometheus metrics.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use metrics::{counter, gauge};
use tokio::sync::watch;

use super::Shared;
use crate::config::{LogFormat, LogSection};

/// Installs the global tracing subscriber.
pub fn init_logging(log: &LogSection) {
    let filter = tracing_subscriber::EnvFilter::try_new(log.level.as_deref().unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Serves `/metrics` on `addr`.
pub fn install_prometheus(addr: SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("metrics.listen {addr}: {e}"))
}

/// Publishes the node's state as metrics once a second.
pub async fn metrics_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut last_counters: std::collections::BTreeMap<String, u64> = Default::default();
    // Counters are exported as increments of the data plane's running totals.
    let mut bump = |name: String, labels: Vec<(&'static str, String)>, value: u64| {
        let key = format!("{name}{labels:?}");
        let prev = last_counters.insert(key, value).unwrap_or(0);
        counter!(name, &labels).increment(value.saturating_sub(prev));
    };
    let mut last_digest: Option<String> = None;
    loop {
        let status = shared.consensus.status();
        gauge!("edgelb_raft_term").set(status.term as f64);
        gauge!("edgelb_raft_leader").set(status.leader.unwrap_or(0) as f64);
        gauge!("edgelb_raft_is_leader").set(f64::from(u8::from(status.leader == Some(status.id))));
        gauge!("edgelb_raft_commit_index").set(status.committed_index.unwrap_or(0) as f64);
        gauge!("edgelb_raft_applied_index").set(status.applied_index.unwrap_or(0) as f64);
        // A running total kept by the Raft server: exported as is.
        counter!("edgelb_raft_peers_rejected_total").absolute(shared.consensus.rejected_peers());
        if let Some(ms) = status.millis_since_quorum_ack {
            gauge!("edgelb_raft_quorum_ack_age_seconds").set(ms as f64 / 1000.0);
        }
        let programmed = shared.programmed.borrow().clone();
        gauge!("edgelb_table_version").set(programmed.version as f64);
        // A digest does not fit a float exactly: export it as a label.
        let digest = crate::tables::digest_hex(programmed.digest);
        if let Some(old) = last_digest
            .replace(digest.clone())
            .filter(|old| *old != digest)
        {
            // Only the current digest reads 1, so `count by (digest)` over
            // the nodes shows whether they agree.
            gauge!("edgelb_table_digest_info", "digest" => old).set(0.0);
        }
        gauge!("edgelb_table_digest_info", "digest" => digest).set(1.0);
        gauge!("edgelb_bgp_announcing").set(f64::from(u8::from(*shared.announcing.borrow())));
        for peer in shared.bgp.peers() {
            let addr = peer.address.to_string();
            let up = matches!(peer.state, edgelb_bgp::PeerState::Established);
            gauge!("edgelb_bgp_session_established", "peer" => addr.clone())
                .set(f64::from(u8::from(up)));
            gauge!("edgelb_bgp_prefixes_announced", "peer" => addr)
                .set(peer.prefixes_announced as f64);
        }
        let state = shared.consensus.state();
        let stats = shared.dataplane.stats().await;
        if let Ok(stats) = stats {
            for key in state.vips.keys() {
                let t = stats.vips.get(key).copied().unwrap_or_default();
                bump(
                    "edgelb_vip_packets_total".into(),
                    vec![("vip", key.to_string())],
                    t.packets,
                );
                bump(
                    "edgelb_vip_bytes_total".into(),
                    vec![("vip", key.to_string())],
                    t.bytes,
                );
            }
            // The data plane counts per backend address, over all its VIPs.
            let addresses = state.backend_addresses();
            for addr in addresses {
                let t = stats.backends.get(&addr).copied().unwrap_or_default();
                let labels = vec![("backend", addr.to_string())];
                bump(
                    "edgelb_backend_packets_total".into(),
                    labels.clone(),
                    t.packets,
                );
                bump("edgelb_backend_bytes_total".into(), labels, t.bytes);
            }
            for (name, value) in stats.named() {
                bump(
                    "edgelb_xdp_events_total".into(),
                    vec![("event", name.to_owned())],
                    value,
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => if *stop.borrow() { return },
        }
    }
}
