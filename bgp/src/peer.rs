//! One peer's lifetime: get a connection (connect with backoff, or wait for
//! the peer to connect), run a session, repeat until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::collision::Collisions;

use crate::config::{PeerConfig, PeerMode};
use crate::fsm::SessionEnd;
use crate::negotiation::LocalOpen;
use crate::route::DesiredRoutes;
use crate::session::{self, CollisionSlot};
use crate::stats::{PeerState, PeerStats};
use crate::wire::NotificationCode;

/// How long one TCP connect attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a peer task needs.
pub(crate) struct PeerTask {
    pub config: PeerConfig,
    pub local: LocalOpen,
    pub stats: Arc<PeerStats>,
    pub inbound: mpsc::Receiver<TcpStream>,
    pub desired_rx: watch::Receiver<Option<Arc<DesiredRoutes>>>,
    pub stop_rx: watch::Receiver<bool>,
}

async fn connect(config: &PeerConfig) -> std::io::Result<TcpStream> {
    let remote = SocketAddr::new(config.address, config.port);
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(local) = config.local_address {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(remote)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

/// Resolves when the session in `slot` ends; never while the slot is empty.
async fn join_slot(
    slot: &mut Option<JoinHandle<session::Outcome>>,
) -> Result<session::Outcome, tokio::task::JoinError> {
    match slot {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

fn stopped(stop_rx: &watch::Receiver<bool>) -> bool {
    *stop_rx.borrow() || stop_rx.has_changed().is_err()
}

impl PeerTask {
    /// Runs one session in its own task so that a bug (a panic) ends only
    /// this session: the peer records it and reconnects as after any error.
    async fn supervised_session(&self, stream: TcpStream) -> session::Outcome {
        let handle = self.spawn_session(stream, None);
        self.outcome(handle.await)
    }

    fn spawn_session(
        &self,
        stream: TcpStream,
        collision: Option<CollisionSlot>,
    ) -> JoinHandle<session::Outcome> {
        tokio::spawn(session::run(
            stream,
            self.config.clone(),
            self.local.clone(),
            self.desired_rx.clone(),
            self.stop_rx.clone(),
            self.stats.clone(),
            collision,
        ))
    }

    fn outcome(
        &self,
        joined: Result<session::Outcome, tokio::task::JoinError>,
    ) -> session::Outcome {
        match joined {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(peer = %self.config.address, error = %e, "BGP session task failed");
                self.stats.set_prefixes(0);
                session::Outcome {
                    end: SessionEnd::ConnectionLost(format!("internal error: {e}")),
                    was_established: false,
                }
            }
        }
    }

    /// Records a finished session; returns true when it ended by our own
    /// administrative stop (the peer task is done).
    fn record(&self, outcome: &session::Outcome) -> bool {
        tracing::info!(peer = %self.config.address, reason = %outcome.end, "BGP session ended");
        self.stats.set_error(outcome.end.to_string());
        outcome.end
            == SessionEnd::NotificationSent(NotificationCode {
                code: 6,
                subcode: 2,
            })
    }

    /// [`PeerMode::Both`]: we connect while no session exists and accept the
    /// peer's connection at any time; when both are up at once the collision
    /// registry keeps one of them.
    async fn run_both(mut self) {
        let collisions = Arc::new(Collisions::new(self.local.router_id));
        let mut backoff = self.config.connect_retry_min;
        let mut next_connect = tokio::time::Instant::now();
        let mut outgoing: Option<JoinHandle<session::Outcome>> = None;
        let mut incoming: Option<JoinHandle<session::Outcome>> = None;
        let slot = |outgoing: bool| CollisionSlot {
            registry: collisions.clone(),
            registration: collisions.register(outgoing),
        };
        while !stopped(&self.stop_rx) {
            if outgoing.is_none() && incoming.is_none() {
                self.stats.set_state(PeerState::Connect);
            }
            tokio::select! {
                _ = self.stop_rx.changed() => break,
                r = async {
                    tokio::time::sleep_until(next_connect).await;
                    connect(&self.config).await
                }, if outgoing.is_none() && incoming.is_none() => match r {
                    Ok(stream) => outgoing = Some(self.spawn_session(stream, Some(slot(true)))),
                    Err(e) => {
                        self.stats.set_connect_error(e.to_string());
                        next_connect = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(self.config.connect_retry_max);
                    }
                },
                s = self.inbound.recv(), if incoming.is_none() => match s {
                    Some(stream) => incoming = Some(self.spawn_session(stream, Some(slot(false)))),
                    None => break,
                },
                joined = join_slot(&mut outgoing) => {
                    outgoing = None;
                    let outcome = self.outcome(joined);
                    if self.record(&outcome) {
                        break;
                    }
                    if outcome.was_established {
                        backoff = self.config.connect_retry_min;
                    }
                    next_connect = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(self.config.connect_retry_max);
                },
                joined = join_slot(&mut incoming) => {
                    incoming = None;
                    let outcome = self.outcome(joined);
                    if self.record(&outcome) {
                        break;
                    }
                },
            }
        }
        // Sessions see the same stop signal and end with Cease on their own.
        for handle in [outgoing, incoming].into_iter().flatten() {
            let _ = handle.await;
        }
        self.stats.set_state(PeerState::Idle);
        self.stats.set_prefixes(0);
    }

    /// Runs until the speaker stops.
    pub(crate) async fn run(mut self) {
        if self.config.mode == PeerMode::Both {
            return self.run_both().await;
        }
        let mut backoff = self.config.connect_retry_min;
        while !stopped(&self.stop_rx) {
            let stream = match self.config.mode {
                PeerMode::Active => {
                    self.stats.set_state(PeerState::Connect);
                    tokio::select! {
                        r = connect(&self.config) => r,
                        _ = self.stop_rx.changed() => break,
                    }
                }
                PeerMode::Passive | PeerMode::Both => {
                    self.stats.set_state(PeerState::Active);
                    tokio::select! {
                        s = self.inbound.recv() => match s {
                            Some(s) => Ok(s),
                            None => break,
                        },
                        _ = self.stop_rx.changed() => break,
                    }
                }
            };
            match stream {
                Ok(stream) => {
                    let outcome = self.supervised_session(stream).await;
                    if self.record(&outcome) {
                        break;
                    }
                    if outcome.was_established {
                        backoff = self.config.connect_retry_min;
                    }
                }
                Err(e) => self.stats.set_connect_error(e.to_string()),
            }
            self.stats.set_state(PeerState::Idle);
            if self.config.mode == PeerMode::Passive {
                // The peer decides when to reconnect; its connection waits in `inbound`.
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop_rx.changed() => break,
            }
            backoff = (backoff * 2).min(self.config.connect_retry_max);
        }
        self.stats.set_state(PeerState::Idle);
        self.stats.set_prefixes(0);
    }
}
