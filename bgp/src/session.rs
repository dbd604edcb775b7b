//! Drives one [`fsm::Session`](crate::fsm::Session) over a TCP connection:
//! reads and decodes messages, fires timers, writes what the FSM says.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netgauze_bgp_pkt::BgpMessage;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};

use crate::collision::{Collisions, Registration};
use crate::config::PeerConfig;
use crate::fsm::{Action, Event, Session, SessionEnd, SessionParams};
use crate::negotiation::LocalOpen;
use crate::route::DesiredRoutes;
use crate::stats::{PeerState, PeerStats};
use crate::wire::{self, FrameReader, ReadError};

/// Longest a write may block before the connection counts as dead, until a
/// hold time is negotiated (afterwards the hold time is the limit).
const OPEN_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// This connection's entry in its peer's collision registry (PeerMode::Both).
pub(crate) struct CollisionSlot {
    pub registry: Arc<Collisions>,
    pub registration: Registration,
}

/// Unregisters the connection however the session ends.
struct Unregister<'a>(Option<&'a CollisionSlot>);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            slot.registry.unregister(slot.registration.id);
        }
    }
}

/// How a session ended, and whether it got as far as Established.
pub(crate) struct Outcome {
    pub end: SessionEnd,
    pub was_established: bool,
}

/// Next hops for a connection: configured ones, else the local address of
/// this connection for its own family (next-hop self).
fn next_hops(
    peer: &PeerConfig,
    local: SocketAddr,
) -> (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>) {
    let (self_v4, self_v6) = match local.ip() {
        IpAddr::V4(a) => (Some(a), None),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (Some(v4), None),
            None => (None, Some(a)),
        },
    };
    (peer.next_hop_v4.or(self_v4), peer.next_hop_v6.or(self_v6))
}

/// Runs a BGP session on an established TCP connection until it ends.
pub(crate) async fn run(
    stream: TcpStream,
    peer: PeerConfig,
    local: LocalOpen,
    mut desired_rx: watch::Receiver<Option<Arc<DesiredRoutes>>>,
    mut stop_rx: watch::Receiver<bool>,
    stats: Arc<PeerStats>,
    collision: Option<CollisionSlot>,
) -> Outcome {
    let peer = &peer;
    let stats = &*stats;
    let _unregister = Unregister(collision.as_ref());
    let mut lost_rx = collision.as_ref().map(|c| c.registration.lost.clone());
    let mut collision_checked = false;
    let local_addr = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => {
            return Outcome {
                end: SessionEnd::ConnectionLost(e.to_string()),
                was_established: false,
            }
        }
    };
    // Small messages (KEEPALIVE, one-prefix UPDATE) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (next_hop_v4, next_hop_v6) = next_hops(peer, local_addr);
    let params = SessionParams {
        local,
        peer_asn: peer.remote_asn,
        next_hop_v4,
        next_hop_v6,
    };
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = FrameReader::new(read_half);
    let mut ctx = crate::wire::parsing_context();

    let desired = desired_rx.borrow_and_update().clone();
    let (mut session, actions) = Session::start(params, desired, Instant::now().into_std());
    let mut was_established = false;
    let mut refreshes_seen = 0;
    let mut pending = actions;
    loop {
        let write_limit = session
            .negotiated()
            .filter(|n| n.hold_time_secs > 0)
            .map_or(OPEN_WRITE_TIMEOUT, |n| {
                Duration::from_secs(n.hold_time_secs.into())
            });
        if let Some(end) = execute(pending, &mut write_half, stats, write_limit).await {
            if was_established {
                stats.set_prefixes(0);
            }
            return Outcome {
                end,
                was_established,
            };
        }
        // Collision check first: a losing connection must not touch the
        // peer's stats, which the winning one owns.
        if let Some(n) = session.negotiated() {
            ctx.set_asn4(n.asn4);
            if let (Some(slot), false) = (&collision, collision_checked) {
                collision_checked = true;
                if !slot
                    .registry
                    .open_received(slot.registration.id, n.peer_router_id)
                {
                    pending = session.handle(Event::CollisionLost, Instant::now().into_std());
                    continue;
                }
            }
        }
        stats.set_state(session.state());
        stats.set_prefixes(session.announced());
        if !was_established && session.state() == PeerState::Established {
            tracing::info!(peer = %peer.address, "BGP session established");
            was_established = true;
        }
        if session.route_refreshes() > refreshes_seen {
            refreshes_seen = session.route_refreshes();
            stats.count_route_refresh();
        }
        if let (Some(slot), true) = (&collision, session.state() == PeerState::Established) {
            slot.registry.established(slot.registration.id);
        }

        let deadline = session.next_deadline().map(Instant::from_std);
        let event = tokio::select! {
            biased;
            _ = stop_rx.changed() => Event::Stop,
            changed = desired_rx.changed() => match changed {
                // The table never goes back to "not given".
                Ok(()) => match desired_rx.borrow_and_update().clone() {
                    Some(desired) => Event::DesiredChanged(desired),
                    None => Event::Tick,
                },
                Err(_) => Event::Stop,
            },
            frame = reader.next_frame() => match frame {
                Ok(Some(bytes)) => {
                    stats.count_in();
                    match wire::decode(&bytes, &mut ctx) {
                        Ok(msg) => Event::Message(msg),
                        Err(notification) => Event::Malformed(notification),
                    }
                }
                Ok(None) => {
                    if was_established { stats.set_prefixes(0); }
                    return Outcome { end: SessionEnd::ConnectionLost("peer closed the connection".into()), was_established };
                }
                Err(ReadError::Io(e)) => {
                    if was_established { stats.set_prefixes(0); }
                    return Outcome { end: SessionEnd::ConnectionLost(e.to_string()), was_established };
                }
                Err(ReadError::Malformed(notification)) => {
                    stats.count_in();
                    Event::Malformed(notification)
                }
            },
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Event::Tick,
            _ = collision_lost(&mut lost_rx) => Event::CollisionLost,
        };
        pending = session.handle(event, Instant::now().into_std());
    }
}

/// Resolves when another connection to the same peer won the collision;
/// never for peers without collision detection.
async fn collision_lost(lost_rx: &mut Option<watch::Receiver<bool>>) {
    match lost_rx {
        Some(rx) => {
            if rx.wait_for(|lost| *lost).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Writes the FSM's messages in one batch; returns the end reason when the
/// FSM closed the session or the write failed.
async fn execute(
    actions: Vec<Action>,
    writer: &mut OwnedWriteHalf,
    stats: &PeerStats,
    write_limit: Duration,
) -> Option<SessionEnd> {
    let mut buf = Vec::new();
    let mut close = None;
    let mut counts = Vec::new();
    for action in actions {
        match action {
            Action::Send(msg) => match wire::encode(&msg) {
                Ok(bytes) => {
                    buf.extend_from_slice(&bytes);
                    counts.push(matches!(msg, BgpMessage::Update(_)));
                }
                Err(e) => {
                    // Only a bug in our own message building gets here.
                    tracing::error!(error = %e, "dropping a message we could not encode");
                }
            },
            Action::Close(end) => {
                close = Some(end);
                break;
            }
        }
    }
    if !buf.is_empty() {
        match timeout(write_limit, writer.write_all(&buf)).await {
            Ok(Ok(())) => counts.into_iter().for_each(|u| stats.count_out(u)),
            Ok(Err(e)) => return Some(close.unwrap_or(SessionEnd::ConnectionLost(e.to_string()))),
            Err(_) => {
                return Some(close.unwrap_or(SessionEnd::ConnectionLost("write timed out".into())))
            }
        }
    }
    if close.is_some() {
        // Let the NOTIFICATION reach the peer before the FIN.
        let _ = timeout(Duration::from_secs(1), writer.shutdown()).await;
    }
    close
}
