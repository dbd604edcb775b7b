//! Commands that change the backend table, their validation and their effect.
//!
//! [`ClusterState::apply`](crate::ClusterState::apply) is the one
//! deterministic transition function: it either applies a command completely
//! and bumps the version, or rejects it with a [`CommandError`] and changes
//! nothing. The leader runs the same
//! validation before proposing, so bad commands are normally refused before
//! they reach the log; a command that becomes invalid while in flight (two
//! racing adds of the same VIP) is rejected at apply time, identically on
//! every node.
//!
//! This module holds the types; `validate` and `apply` hold the two halves of
//! the transition.
//!
//! Wire compatibility: variants are only ever appended, never reordered, as
//! bincode encodes the variant index (pinned by golden tests).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cluster_state::{
    Backend, BackendState, ClusterSettings, ConnectionSettings, Encapsulation, NodeId, VipFlags,
    VipKey, MAX_BACKENDS_PER_VIP, MAX_FLOOD_THRESHOLD, MAX_SECOND_HOP_WINDOW_SECS, MAX_TABLE_SIZE,
    MAX_WEIGHT, MIN_TABLE_SIZE, MIN_WEIGHT,
};

mod apply;
mod validate;

pub use validate::{check_address, check_connection_settings};

/// A change to the replicated table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create a VIP with no backends.
    AddVip {
        /// Identity of the new VIP.
        key: VipKey,
        /// Hashing options.
        flags: VipFlags,
        /// Tunnel towards the backends.
        encapsulation: Encapsulation,
    },
    /// Change the options of an existing VIP (backends are kept).
    UpdateVip {
        /// The VIP to change.
        key: VipKey,
        /// New hashing options.
        flags: VipFlags,
        /// New tunnel.
        encapsulation: Encapsulation,
    },
    /// Delete a VIP and all its backends.
    RemoveVip {
        /// The VIP to delete.
        key: VipKey,
    },
    /// Add a backend to a VIP.
    AddBackend {
        /// The VIP.
        vip: VipKey,
        /// The new backend.
        backend: Backend,
    },
    /// Change the weight of a backend.
    SetBackendWeight {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
        /// New weight in `MIN_WEIGHT..=MAX_WEIGHT`.
        weight: u32,
    },
    /// Change the administrative state of a backend.
    SetBackendState {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
        /// New state.
        state: BackendState,
    },
    /// Remove a backend from a VIP.
    RemoveBackend {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
    },
    /// Replace the cluster settings.
    SetSettings(ClusterSettings),
    /// A voter's health check result for a backend. A backend is treated as
    /// down once a majority of voters observe it unhealthy. Repeating the
    /// current observation is accepted and changes nothing.
    ReportHealth {
        /// The observing node (must be a voter).
        observer: NodeId,
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        backend: IpAddr,
        /// Whether the check passed.
        healthy: bool,
    },
    /// A member's admin API address (each daemon registers its own).
    SetAdminAddr {
        /// The member.
        node: NodeId,
        /// Where its admin API listens (a routable address, not 0.0.0.0).
        addr: std::net::SocketAddr,
    },
    /// Several commands applied as one: validated against the state as it
    /// evolves entry by entry (so "add a VIP, then its backend" works), and
    /// applied all-or-nothing with one version bump (none if no entry
    /// changes anything). Batches do not nest.
    Batch {
        /// Refuse the batch unless the table is at exactly this version when
        /// it is applied (optimistic concurrency, checked identically on
        /// every node).
        expect_version: Option<u64>,
        /// The entries, in order.
        commands: Vec<Command>,
    },
    /// Replace the connection-keeping settings (second-hop window, flood
    /// threshold): appended after format 1, so [`Command::SetSettings`]'
    /// encoding stays pinned.
    SetConnectionSettings(ConnectionSettings),
}

impl Command {
    /// The command's name as the admin API and error messages spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::AddVip { .. } => "add_vip",
            Command::UpdateVip { .. } => "update_vip",
            Command::RemoveVip { .. } => "remove_vip",
            Command::AddBackend { .. } => "add_backend",
            Command::SetBackendWeight { .. } => "set_backend_weight",
            Command::SetBackendState { .. } => "set_backend_state",
            Command::RemoveBackend { .. } => "remove_backend",
            Command::SetSettings(_) => "set_settings",
            Command::ReportHealth { .. } => "report_health",
            Command::SetAdminAddr { .. } => "set_admin_addr",
            Command::Batch { .. } => "batch",
            Command::SetConnectionSettings(_) => "set_connection_settings",
        }
    }
}

/// Why a command was rejected. A rejected command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    /// `AddVip` for a key that already exists.
    #[error("VIP {0} already exists")]
    DuplicateVip(VipKey),
    /// The command names a VIP that does not exist.
    #[error("unknown VIP {0}")]
    UnknownVip(VipKey),
    /// `AddBackend` for an address already present in the VIP.
    #[error("backend {backend} already exists in VIP {vip}")]
    DuplicateBackend {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        backend: IpAddr,
    },
    /// The command names a backend that the VIP does not have.
    #[error("unknown backend {backend} in VIP {vip}")]
    UnknownBackend {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        backend: IpAddr,
    },
    /// Weight outside `MIN_WEIGHT..=MAX_WEIGHT`.
    #[error("weight {0} out of range {MIN_WEIGHT}..={MAX_WEIGHT}")]
    WeightOutOfRange(u32),
    /// An address that cannot be a VIP or a backend (unspecified, multicast,
    /// broadcast).
    #[error("bad address {address}: {reason}")]
    BadAddress {
        /// The offending address.
        address: IpAddr,
        /// Why it is refused.
        reason: String,
    },
    /// A GUE tunnel with destination port 0.
    #[error("GUE encapsulation needs a non-zero UDP port")]
    BadGuePort,
    /// The VIP already has `MAX_BACKENDS_PER_VIP` backends.
    #[error("VIP {0} already has the maximum of {MAX_BACKENDS_PER_VIP} backends")]
    TooManyBackends(VipKey),
    /// Table size not a prime in `MIN_TABLE_SIZE..=MAX_TABLE_SIZE`.
    #[error("table size {0} must be a prime in {MIN_TABLE_SIZE}..={MAX_TABLE_SIZE}")]
    BadTableSize(u32),
    /// A health report from a node that is not a voter.
    #[error("node {0} is not a voter and cannot report health")]
    UnknownObserver(NodeId),
    /// An admin address other nodes could not connect to.
    #[error("admin address {0}: must be a routable address with a non-zero port")]
    BadAdminAddr(std::net::SocketAddr),
    /// A GUE port other than the one the cluster's GUE VIPs already use:
    /// the data plane has one GUE destination port.
    #[error(
        "GUE port {port}: the cluster's GUE VIPs use port {existing} (one GUE port per cluster)"
    )]
    GuePortConflict {
        /// The port asked for.
        port: u16,
        /// The port the other GUE VIPs use.
        existing: u16,
    },
    /// A batch inside a batch.
    #[error("a batch cannot contain another batch")]
    NestedBatch,
    /// A batch's `expect_version` is not the table's current version.
    #[error("the table is at version {actual}, not the expected {expected}: it changed meanwhile")]
    VersionMismatch {
        /// The version the batch expected.
        expected: u64,
        /// The table's version when the batch was applied.
        actual: u64,
    },
    /// One entry of a batch was rejected (so the whole batch was).
    #[error("batch entry {index} ({command}), field `{field}`: {error}")]
    InBatch {
        /// 0-based position of the entry in the batch.
        index: usize,
        /// The entry's command name ([`Command::name`]).
        command: String,
        /// The offending field of the entry ([`CommandError::field`]).
        field: String,
        /// Why the entry was rejected.
        error: Box<CommandError>,
    },
    /// A second-hop window above `MAX_SECOND_HOP_WINDOW_SECS`.
    #[error("second_hop_window_secs {0} out of range 0..={MAX_SECOND_HOP_WINDOW_SECS}")]
    SecondHopWindowOutOfRange(u32),
    /// A flood threshold of 0 or above `MAX_FLOOD_THRESHOLD`.
    #[error(
        "flood_threshold {0} out of range 1..={MAX_FLOOD_THRESHOLD} new flows per second per CPU"
    )]
    FloodThresholdOutOfRange(u64),
}

impl CommandError {
    /// The field of `command` this error is about, as a dotted path in the
    /// command's own fields (`backend.weight` for a bad weight in
    /// `AddBackend`), so a rejected batch entry can be traced to its input.
    pub fn field_in(&self, command: &Command) -> &'static str {
        use CommandError as E;
        match (command, self) {
            (_, E::UnknownVip(_))
                if matches!(
                    command,
                    Command::UpdateVip { .. } | Command::RemoveVip { .. }
                ) =>
            {
                "key"
            }
            (_, E::UnknownVip(_)) => "vip",
            (Command::AddBackend { .. }, E::BadAddress { .. } | E::DuplicateBackend { .. }) => {
                "backend.address"
            }
            (Command::AddBackend { .. }, E::WeightOutOfRange(_)) => "backend.weight",
            (Command::AddBackend { .. }, E::TooManyBackends(_)) => "vip",
            (Command::ReportHealth { .. }, E::UnknownBackend { .. }) => "backend",
            (_, E::UnknownBackend { .. } | E::DuplicateBackend { .. }) => "address",
            (_, E::DuplicateVip(_)) => "key",
            (_, E::BadAddress { .. }) => "key.address",
            (_, E::WeightOutOfRange(_)) => "weight",
            (_, E::BadGuePort | E::GuePortConflict { .. }) => "encapsulation.port",
            (_, E::TooManyBackends(_)) => "vip",
            (_, E::BadTableSize(_)) => "table_size",
            (_, E::UnknownObserver(_)) => "observer",
            (_, E::BadAdminAddr(_)) => "addr",
            (_, E::NestedBatch | E::InBatch { .. }) => "commands",
            (_, E::VersionMismatch { .. }) => "expect_version",
            (_, E::SecondHopWindowOutOfRange(_)) => "second_hop_window_secs",
            (_, E::FloodThresholdOutOfRange(_)) => "flood_threshold",
        }
    }
}

#[cfg(test)]
mod tests;
