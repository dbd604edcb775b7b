//! One peer's lifetime: get a connection (connect with backoff, or wait for
//! the peer to connect), run a session, repeat until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::config::{PeerConfig, PeerMode};
use crate::fsm::SessionEnd;
use crate::negotiation::LocalOpen;
use crate::route::DesiredRoutes;
use crate::session;
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
    pub desired_rx: watch::Receiver<Arc<DesiredRoutes>>,
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

fn stopped(stop_rx: &watch::Receiver<bool>) -> bool {
    *stop_rx.borrow() || stop_rx.has_changed().is_err()
}

impl PeerTask {
    /// Runs one session in its own task so that a bug (a panic) ends only
    /// this session: the peer records it and reconnects as after any error.
    async fn supervised_session(&self, stream: TcpStream) -> session::Outcome {
        let run = session::run(
            stream,
            self.config.clone(),
            self.local.clone(),
            self.desired_rx.clone(),
            self.stop_rx.clone(),
            self.stats.clone(),
        );
        match tokio::spawn(run).await {
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

    /// Runs until the speaker stops.
    pub(crate) async fn run(mut self) {
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
                PeerMode::Passive => {
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
                    tracing::info!(peer = %self.config.address, reason = %outcome.end, "BGP session ended");
                    let admin_stop = outcome.end
                        == SessionEnd::NotificationSent(NotificationCode {
                            code: 6,
                            subcode: 2,
                        });
                    self.stats.set_error(outcome.end.to_string());
                    if admin_stop {
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
