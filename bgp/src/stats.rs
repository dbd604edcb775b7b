//! Per-peer session state and counters, shared with the node daemon's metrics.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// RFC 4271 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PeerState {
    /// Not trying (stopped, or waiting before the next attempt).
    Idle,
    /// TCP connect in progress.
    Connect,
    /// Waiting for the peer to connect to us.
    Active,
    /// Our OPEN is sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the first KEEPALIVE.
    OpenConfirm,
    /// Routes flow.
    Established,
}

impl PeerState {
    /// Number for a Prometheus gauge (RFC 4273 bgpPeerState numbering).
    pub fn as_metric(self) -> u8 {
        match self {
            PeerState::Idle => 1,
            PeerState::Connect => 2,
            PeerState::Active => 3,
            PeerState::OpenSent => 4,
            PeerState::OpenConfirm => 5,
            PeerState::Established => 6,
        }
    }
}

/// A consistent copy of one peer's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerSnapshot {
    /// The peer's configured address.
    pub address: IpAddr,
    /// Current state.
    pub state: PeerState,
    /// Prefixes the peer currently has from us.
    pub prefixes_announced: u64,
    /// BGP messages received.
    pub messages_in: u64,
    /// BGP messages sent.
    pub messages_out: u64,
    /// UPDATE messages sent.
    pub updates_out: u64,
    /// ROUTE-REFRESH requests answered.
    pub route_refreshes_in: u64,
    /// Times the session reached Established.
    pub established_count: u64,
    /// Why the last session ended, if one did (NOTIFICATION sent or
    /// received, or connection lost).
    pub last_error: Option<String>,
    /// Why the last connection attempt failed, if one did.
    pub last_connect_error: Option<String>,
    /// When the current session was established.
    pub established_at: Option<SystemTime>,
}

#[derive(Debug)]
struct Status {
    state: PeerState,
    last_error: Option<String>,
    last_connect_error: Option<String>,
    established_at: Option<SystemTime>,
}

/// Live counters of one peer, updated by its task.
#[derive(Debug)]
pub struct PeerStats {
    address: IpAddr,
    status: Mutex<Status>,
    prefixes_announced: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    updates_out: AtomicU64,
    route_refreshes_in: AtomicU64,
    established_count: AtomicU64,
}

impl PeerStats {
    pub(crate) fn new(address: IpAddr) -> Self {
        PeerStats {
            address,
            status: Mutex::new(Status {
                state: PeerState::Idle,
                last_error: None,
                last_connect_error: None,
                established_at: None,
            }),
            prefixes_announced: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            updates_out: AtomicU64::new(0),
            route_refreshes_in: AtomicU64::new(0),
            established_count: AtomicU64::new(0),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        // A panic while holding this lock cannot leave Status inconsistent
        // (every write is a single field store), so a poisoned lock is usable.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_state(&self, state: PeerState) {
        let mut s = self.status();
        if state == PeerState::Established && s.state != PeerState::Established {
            s.established_at = Some(SystemTime::now());
            self.established_count.fetch_add(1, Ordering::Relaxed);
        }
        if state != PeerState::Established {
            s.established_at = None;
        }
        s.state = state;
    }

    pub(crate) fn set_error(&self, error: String) {
        self.status().last_error = Some(error);
    }

    pub(crate) fn set_connect_error(&self, error: String) {
        self.status().last_connect_error = Some(error);
    }

    pub(crate) fn set_prefixes(&self, n: usize) {
        self.prefixes_announced.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_out(&self, is_update: bool) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        if is_update {
            self.updates_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_route_refresh(&self) {
        self.route_refreshes_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the current values.
    pub fn snapshot(&self) -> PeerSnapshot {
        let s = self.status();
        PeerSnapshot {
            address: self.address,
            state: s.state,
            prefixes_announced: self.prefixes_announced.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            updates_out: self.updates_out.load(Ordering::Relaxed),
            route_refreshes_in: self.route_refreshes_in.load(Ordering::Relaxed),
            established_count: self.established_count.load(Ordering::Relaxed),
            last_error: s.last_error.clone(),
            last_connect_error: s.last_connect_error.clone(),
            established_at: s.established_at,
        }
    }
}
