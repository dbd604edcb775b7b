//! The speaker: one task per peer, a listener for passive peers, and the
//! API the node daemon drives.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netgauze_bgp_pkt::notification::{BgpNotificationMessage, CeaseError};
use netgauze_bgp_pkt::BgpMessage;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, PeerMode, SpeakerConfig};
use crate::negotiation::LocalOpen;
use crate::peer::PeerTask;
use crate::route::DesiredRoutes;
use crate::stats::{PeerSnapshot, PeerStats};
use crate::wire;

/// How long [`BgpSpeaker::shutdown`] waits for peers to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The speaker failed to start.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// The configuration is invalid.
    #[error("invalid BGP configuration: {0}")]
    Config(#[from] ConfigError),
    /// The listen socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The configured listen address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An announce-only BGP speaker.
///
/// Create it with [`BgpSpeaker::start`] inside a tokio runtime, give it the
/// routes to announce with [`BgpSpeaker::set_desired`]; every peer converges
/// to the latest set. [`BgpSpeaker::shutdown`] ends every session with
/// Cease / Administrative Shutdown.
pub struct BgpSpeaker {
    stats: Vec<Arc<PeerStats>>,
    /// `None` until the first [`Self::set_desired`] when restarting.
    desired_tx: watch::Sender<Option<Arc<DesiredRoutes>>>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    listen_addr: Option<SocketAddr>,
}

impl BgpSpeaker {
    /// Validates the configuration, binds the listener (if any) and starts
    /// one task per peer. Announces nothing until [`Self::set_desired`].
    /// With graceful restart's Restart State set, End-of-RIB also waits for
    /// that first call, so routers keep our previous routes until then.
    pub async fn start(config: SpeakerConfig) -> Result<Self, SpeakerError> {
        config.validate()?;
        let restarting = config.graceful_restart.is_some_and(|g| g.restarting);
        let initial = (!restarting).then(|| Arc::new(DesiredRoutes::new()));
        let (desired_tx, desired_rx) = watch::channel(initial);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut stats = Vec::new();
        let mut tasks = Vec::new();
        let mut passive: HashMap<IpAddr, mpsc::Sender<TcpStream>> = HashMap::new();
        for peer in &config.peers {
            let peer_stats = Arc::new(PeerStats::new(peer.address));
            let (inbound_tx, inbound) = mpsc::channel(1);
            if peer.mode != PeerMode::Active {
                passive.insert(peer.address, inbound_tx);
            }
            let task = PeerTask {
                config: peer.clone(),
                local: LocalOpen {
                    local_asn: config.local_asn,
                    router_id: config.router_id,
                    hold_time_secs: peer.hold_time_secs,
                    graceful_restart: config.graceful_restart,
                },
                stats: peer_stats.clone(),
                inbound,
                desired_rx: desired_rx.clone(),
                stop_rx: stop_rx.clone(),
            };
            stats.push(peer_stats);
            tasks.push(tokio::spawn(task.run()));
        }
        let mut listen_addr = None;
        if let Some(addr) = config.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SpeakerError::Listen { addr, source })?;
            listen_addr = listener.local_addr().ok();
            tasks.push(tokio::spawn(accept_loop(
                listener,
                passive,
                stop_rx.clone(),
            )));
        }
        Ok(BgpSpeaker {
            stats,
            desired_tx,
            stop_tx,
            tasks,
            listen_addr,
        })
    }

    /// The bound listen address (useful when the configuration asked for port 0).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// Replaces the set of routes to announce; every established peer gets
    /// the withdrawals and announcements that take it there.
    pub fn set_desired(&self, routes: DesiredRoutes) {
        self.desired_tx.send_replace(Some(Arc::new(routes)));
    }

    /// The set of routes currently asked for.
    pub fn desired(&self) -> Arc<DesiredRoutes> {
        self.desired_tx.borrow().clone().unwrap_or_default()
    }

    /// State and counters of every peer, in configuration order.
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        self.stats.iter().map(|s| s.snapshot()).collect()
    }

    /// State and counters of one peer.
    pub fn peer(&self, address: IpAddr) -> Option<PeerSnapshot> {
        self.peers().into_iter().find(|p| p.address == address)
    }

    /// Ends every session with Cease / Administrative Shutdown (routers then
    /// withdraw our routes at once) and waits briefly for the tasks.
    pub async fn shutdown(mut self) {
        self.stop_tx.send_replace(true);
        let tasks = std::mem::take(&mut self.tasks);
        for mut task in tasks {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl BgpSpeaker {
    /// For a hot restart: leaves every session as it is, to end without a
    /// NOTIFICATION when this process exits (its sockets close), as after a
    /// crash. Routers that negotiated graceful restart then keep our routes,
    /// marked stale, until the next process sends End-of-RIB or the restart
    /// time runs out. (Dropping or [`Self::shutdown`] would send Cease, and
    /// routers would withdraw our routes at once.)
    pub fn abandon(self) {
        // Keep the stop and route channels open for the rest of the process.
        std::mem::forget(self);
    }
}

impl Drop for BgpSpeaker {
    fn drop(&mut self) {
        // Without shutdown(): stop the tasks anyway rather than leak them.
        self.stop_tx.send_replace(true);
    }
}

/// Accepts connections and hands each to its passive peer; refuses the rest
/// with Cease / Connection Rejected.
async fn accept_loop(
    listener: TcpListener,
    passive: HashMap<IpAddr, mpsc::Sender<TcpStream>>,
    mut stop_rx: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop_rx.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = match remote.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        // Unknown or active peers are refused; a passive peer takes one waiting
        // connection (it is picked up when the current session, if any, ends).
        let refused = match passive.get(&ip) {
            Some(tx) => tx.try_send(stream).err().map(|e| match e {
                mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
            }),
            None => Some(stream),
        };
        if let Some(stream) = refused {
            tracing::info!(%remote, "refusing BGP connection");
            tokio::spawn(reject(stream));
        }
    }
}

async fn reject(mut stream: TcpStream) {
    let cease = BgpNotificationMessage::CeaseError(CeaseError::ConnectionRejected {
        value: Box::new([]),
    });
    if let Ok(bytes) = wire::encode(&BgpMessage::Notification(cease)) {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&bytes)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}
