//! When this node announces its VIPs, and which routes: the announce loop.
//!
//! The BGP announcement follows from the node's readiness, sampled every
//! 100 ms: [`decision`] says whether to announce, [`routes`] what. The loop
//! hands the speaker a new route set only when the decision changes.

pub mod decision;
pub mod routes;

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use edgelb_bgp::DesiredRoutes;
use tokio::{sync::watch, time::Instant};

pub use self::{
    decision::{in_cluster, Readiness, SyncClock, Withheld, SYNC_GRACE},
    routes::{announced_routes, speaker_config, vip_routes, AnnouncedAttributes},
};
use super::Shared;
use crate::config::Config;

/// How far the stop sequence has got, as the announce loop sees it. Set by
/// the daemon's stop step, read by the loop on every sample.
#[derive(Debug, Default)]
pub struct DrainProgress {
    prepending: AtomicBool,
    draining: AtomicBool,
}

impl DrainProgress {
    /// Routes are to be announced with the longer (prepended) AS_PATH.
    pub fn start_prepending(&self) {
        self.prepending.store(true, Ordering::SeqCst);
    }

    /// Routes are to be withdrawn for good.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn prepending(&self) -> bool {
        self.prepending.load(Ordering::SeqCst)
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// After a hot restart (`adopted`), the moment until which a node that is
/// not ready yet stays silent instead of withdrawing: half the graceful
/// restart time, so it still becomes ready before the routers give up.
pub fn restart_grace_deadline(config: &Config, adopted: bool) -> Option<Instant> {
    adopted.then(|| {
        Instant::now() + Duration::from_secs(u64::from(config.bgp.graceful_restart_secs) / 2)
    })
}

/// The node's readiness right now, with `out_of_sync_for` zero: only the
/// announce loop knows since when the node has been out of sync.
pub fn readiness(shared: &Shared, draining: bool) -> Readiness {
    let status = shared.consensus.status();
    let applied_version = shared.consensus.state().version;
    let programmed = shared.programmed.borrow().clone();
    let in_cluster = in_cluster(&status, shared.config.quorum_ack_bound());
    let apply_lag = status
        .committed_index
        .unwrap_or(0)
        .saturating_sub(status.applied_index.unwrap_or(0));
    let attached = !shared
        .attached
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty();
    Readiness {
        attached,
        programmed_version: programmed.version,
        applied_version,
        in_cluster,
        apply_lag,
        applied_index: status.applied_index.unwrap_or(0),
        draining,
        out_of_sync_for: Duration::ZERO,
        programming_failed: programmed.error.is_some(),
    }
}

/// The VIP addresses to announce and whether their paths are prepended, or
/// why nothing is announced.
type Decision = Result<(Vec<IpAddr>, bool), Withheld>;

/// Converges the BGP announcement to the node's readiness and VIPs;
/// publishes on `out` whether routes are announced.
pub async fn announce_loop(
    shared: Arc<Shared>,
    out: watch::Sender<bool>,
    drain: Arc<DrainProgress>,
    mut restart_grace: Option<Instant>,
    mut stop: watch::Receiver<bool>,
) {
    let attributes = AnnouncedAttributes::from_config(&shared.config);
    let mut last: Option<Decision> = None;
    let mut sync_clock = SyncClock::default();
    loop {
        // 1. Sample: the node's readiness now, with how long it has trailed
        //    the applied state without progress.
        let mut ready = readiness(&shared, drain.draining());
        ready.out_of_sync_for = sync_clock.observe(&ready, std::time::Instant::now());

        // 2. Decide: announce which addresses (prepended or not), or why not.
        let decision: Decision = ready.decide().map(|()| {
            let state = shared.consensus.state();
            let mut addrs: Vec<_> = state.vips.keys().map(|k| k.address).collect();
            addrs.dedup();
            (addrs, drain.prepending())
        });

        // 3. Hold: a restarted node that is not ready yet stays silent
        //    rather than withdrawing; the routers hold its previous routes
        //    meanwhile.
        let holding = restart_grace.is_some_and(|t| decision.is_err() && Instant::now() < t);
        if !holding && restart_grace.take().is_some() {
            tracing::info!(ready = decision.is_ok(), "restart grace over");
        }

        // 4. Converge: hand the speaker a new route set only on a change, so
        //    routers see no churn while nothing changes.
        if !holding && last.as_ref() != Some(&decision) {
            match &decision {
                Ok((addrs, prepended)) => {
                    tracing::info!(vips = addrs.len(), prepended, "announcing VIPs");
                    shared.bgp.set_desired(announced_routes(
                        &shared.config,
                        addrs,
                        attributes.get(*prepended),
                    ));
                }
                Err(why) => {
                    tracing::warn!(reason = ?why, "withdrawing VIPs");
                    shared.bgp.set_desired(DesiredRoutes::new());
                }
            }
            out.send_replace(decision.is_ok());
            last = Some(decision);
        }

        // 5. Wait for the next sample, or stop.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => if *stop.borrow() { return },
        }
    }
}
