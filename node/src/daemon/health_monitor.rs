//! Runs health checks against every backend and reports verdict changes
//! through Raft (`ReportHealth`). The replicated state decides: a backend is
//! down when a majority of voters observe it unhealthy, so every node keeps
//! computing the same table.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use edgelb_consensus::{Command, VipKey};
use tokio::sync::watch;

use super::Shared;
use crate::{
    config::HealthKind,
    health::{probe, Hysteresis, Probe, Verdict},
};

/// Checks every backend each `interval`, reporting changed verdicts.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let h = shared.config.health.clone();
    let interval = Duration::from_millis(h.interval_ms);
    let limit = Duration::from_millis(h.timeout_ms);
    let kind = match h.kind {
        HealthKind::Tcp => Probe::Tcp,
        HealthKind::Http => Probe::Http {
            path: h.http_path.clone(),
            expect_status: h.http_expect_status,
        },
    };
    let me = shared.config.node.id;
    let mut trackers: BTreeMap<(VipKey, IpAddr), Hysteresis> = BTreeMap::new();
    loop {
        let state = shared.consensus.state();
        trackers.retain(|(k, b), _| {
            state
                .vips
                .get(k)
                .is_some_and(|v| v.backends.contains_key(b))
        });
        let mut probes = Vec::new();
        for (key, vip) in &state.vips {
            let Some(port) = h.port.or((key.port != 0).then_some(key.port)) else {
                continue; // an all-ports VIP needs health.port
            };
            for addr in vip.backends.keys() {
                let (k, a, kind) = (*key, *addr, kind.clone());
                probes.push(async move {
                    (
                        (k, a),
                        probe(SocketAddr::new(a, port), &kind, limit).await.is_ok(),
                    )
                });
            }
        }
        let results = futures_join_all(probes).await;
        for ((key, addr), healthy) in results {
            let tracker = trackers
                .entry((key, addr))
                .or_insert_with(|| Hysteresis::new(h.rise, h.fall));
            tracker.record(healthy);
            let verdict = match tracker.verdict() {
                Verdict::Up => true,
                Verdict::Down => false,
                Verdict::Unknown => continue,
            };
            // Report when the replicated record of our observation differs.
            let recorded = state
                .health
                .get(&key)
                .and_then(|b| b.get(&addr))
                .and_then(|o| o.get(&me))
                .copied();
            if recorded != Some(verdict) && (recorded.is_some() || !verdict) {
                let cmd = Command::ReportHealth {
                    observer: me,
                    vip: key,
                    backend: addr,
                    healthy: verdict,
                };
                match shared.consensus.write(cmd).await {
                    Ok(_) => {
                        tracing::info!(vip = %key, backend = %addr, healthy = verdict, "health observation reported")
                    }
                    Err(e) => {
                        tracing::warn!(vip = %key, backend = %addr, error = %e, "reporting health failed")
                    }
                }
            }
            metrics::gauge!("edgelb_health_check_up", "vip" => key.to_string(), "backend" => addr.to_string())
                .set(f64::from(u8::from(verdict)));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => if *stop.borrow() { return },
        }
    }
}

/// Awaits all futures concurrently (a small join_all without a dependency).
async fn futures_join_all<F, T>(futures: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}
