//! The daemon's one path into the maps: every applied state, in order,
//! through [`DataPlane::apply`] ([`sync_loop`]); and the read-only handle
//! the other tasks get instead ([`DataPlaneReader`]).

use std::{net::IpAddr, sync::Arc, time::Duration};

use edgelb_consensus::{ClusterState, VipKey};
use tokio::sync::{watch, Mutex};

use super::{DataPlane, DataPlaneError, Lookup};
use crate::tables::digest_hex;

/// What the data plane has programmed, published for the other tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Programmed {
    /// Table version programmed.
    pub version: u64,
    /// Digest of the programmed tables.
    pub digest: u64,
    /// Last programming error, if the latest state could not be programmed.
    pub error: Option<String>,
}

/// Programs every applied state from `states` into `dataplane`, in order,
/// and publishes the outcome on `out`. A failed state is retried every
/// second until it succeeds or a newer state arrives.
pub async fn sync_loop(
    dataplane: Arc<Mutex<DataPlane>>,
    mut states: watch::Receiver<Arc<ClusterState>>,
    out: watch::Sender<Programmed>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // 1. Take the latest applied state (intermediate ones are subsumed).
        let state = states.borrow_and_update().clone();

        // 2. Program it. Map writes may wait out the ring's reuse grace:
        //    keep them off the async workers' hot path.
        let result = {
            let mut dp = dataplane.lock().await;
            tokio::task::block_in_place(|| dp.apply(&state).map(|t| (t.version, t.digest)))
        };

        // 3. Publish the outcome; on failure retry after a pause.
        match result {
            Ok((version, digest)) => {
                tracing::info!(version, digest = %digest_hex(digest), "data plane programmed");
                out.send_replace(Programmed {
                    version,
                    digest,
                    error: None,
                });
            }
            Err(e) => {
                tracing::error!(version = state.version, error = %e, "programming the data plane failed; retrying");
                out.send_modify(|p| p.error = Some(e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        }

        // 4. Wait for the next applied state, or stop; meanwhile close
        //    second-hop windows as they expire (one timer, no polling).
        loop {
            let close = dataplane.lock().await.next_window_close();
            let window = async {
                match close {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = states.changed() => if r.is_err() { return } else { break },
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
                () = window => {
                    let mut dp = dataplane.lock().await;
                    if let Err(e) = tokio::task::block_in_place(|| dp.close_windows(&state)) {
                        // The next applied state (or the next close) retries.
                        tracing::error!(error = %e, "dropping a previous table failed");
                        drop(dp);
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                            _ = stop.changed() => return,
                        }
                    }
                }
            }
        }
    }
}

/// What the admin API and metrics may do with the data plane: read it.
/// Holding one gives no way to write a map.
#[derive(Clone)]
pub struct DataPlaneReader {
    dataplane: Arc<Mutex<DataPlane>>,
}

impl DataPlaneReader {
    /// A read-only handle on `dataplane`.
    pub fn new(dataplane: &Arc<Mutex<DataPlane>>) -> Self {
        Self {
            dataplane: dataplane.clone(),
        }
    }

    /// The forwarder's map capacities.
    pub async fn capacity(&self) -> xdp_fwd::Capacity {
        self.dataplane.lock().await.capacity()
    }

    /// Counters, summed over CPUs.
    pub async fn stats(&self) -> Result<xdp_fwd::Stats, DataPlaneError> {
        self.dataplane.lock().await.stats()
    }

    /// Where a new flow from `src:sport` to VIP `key` goes (see
    /// [`DataPlane::lookup`]).
    pub async fn lookup(
        &self,
        key: &VipKey,
        src: IpAddr,
        sport: u16,
    ) -> Result<Lookup, DataPlaneError> {
        self.dataplane.lock().await.lookup(key, src, sport)
    }
}
