//! Admin API messages.

use std::net::IpAddr;

use edgelb_consensus::{
    Backend, BackendState, ClusterSettings, Command, ConnectionSettings, Encapsulation, Protocol,
    Vip, VipFlags, VipKey,
};
use serde::{Deserialize, Serialize};

/// First frame of every connection: the admin token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// The token from the node's `admin.token_file`.
    pub token: String,
}

/// A request from `lbctl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The cluster: leader, every node's applied version and digest, BGP, XDP.
    Status,
    /// This node alone (used by a node collecting [`Request::Status`]).
    LocalStatus,
    /// Add a VIP with no backends.
    VipAdd {
        /// Identity.
        key: VipKey,
        /// Hashing options.
        flags: VipFlags,
        /// Tunnel to the backends.
        encapsulation: Encapsulation,
    },
    /// Change a VIP's hashing and encapsulation options.
    VipUpdate {
        /// Identity.
        key: VipKey,
        /// Hashing options.
        flags: VipFlags,
        /// Tunnel to the backends.
        encapsulation: Encapsulation,
    },
    /// Remove a VIP and its backends.
    VipRemove {
        /// Identity.
        key: VipKey,
    },
    /// List VIPs with their backends (a linearizable read at the leader).
    VipList,
    /// Add a backend to a VIP.
    BackendAdd {
        /// The VIP.
        vip: VipKey,
        /// The backend.
        backend: Backend,
    },
    /// Remove a backend.
    BackendRemove {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
    },
    /// Change a backend's weight.
    BackendSetWeight {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
        /// The new weight.
        weight: u32,
    },
    /// Change a backend's administrative state (drain / undrain / down).
    BackendSetState {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
        /// The new state.
        state: BackendState,
    },
    /// Replace the cluster settings (hash seed, table size).
    SettingsSet {
        /// The new settings.
        settings: ClusterSettings,
    },
    /// Replace the connection-keeping settings (second-hop window, flood
    /// threshold).
    ConnectionSettingsSet {
        /// The new settings.
        settings: ConnectionSettings,
    },
    /// Raft membership.
    NodeList,
    /// Add a node as a learner, then (if `voter`) promote it.
    NodeAdd {
        /// Its Raft node id.
        id: u64,
        /// Its Raft RPC address.
        addr: String,
        /// Promote to voter once it has caught up.
        voter: bool,
    },
    /// Remove a node from the cluster.
    NodeRemove {
        /// Its Raft node id.
        id: u64,
    },
    /// Per-VIP and per-backend packet and byte counters of this node.
    Stats,
    /// Which backend a 5-tuple goes to, computed as the data plane does.
    Lookup {
        /// Source address.
        src: IpAddr,
        /// Source port.
        sport: u16,
        /// Destination (VIP) address.
        dst: IpAddr,
        /// Destination port.
        dport: u16,
        /// Protocol.
        protocol: Protocol,
    },
    /// Several writes (`vip_add`, `backend_set_weight`, `settings_set`...)
    /// as one Raft command: validated as a whole against the table as it
    /// evolves entry by entry, applied all-or-nothing with one version bump
    /// (none if nothing changes). An error names the entry's index and field.
    Batch {
        /// Refuse unless the table is at exactly this version when the batch
        /// is applied.
        #[serde(default)]
        expect_version: Option<u64>,
        /// The writes, in order (no reads, no membership changes, no batches).
        requests: Vec<Request>,
    },
}

impl Request {
    /// The request's `op` name, as on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::LocalStatus => "local_status",
            Request::VipAdd { .. } => "vip_add",
            Request::VipUpdate { .. } => "vip_update",
            Request::VipRemove { .. } => "vip_remove",
            Request::VipList => "vip_list",
            Request::BackendAdd { .. } => "backend_add",
            Request::BackendRemove { .. } => "backend_remove",
            Request::BackendSetWeight { .. } => "backend_set_weight",
            Request::BackendSetState { .. } => "backend_set_state",
            Request::SettingsSet { .. } => "settings_set",
            Request::ConnectionSettingsSet { .. } => "connection_settings_set",
            Request::NodeList => "node_list",
            Request::NodeAdd { .. } => "node_add",
            Request::NodeRemove { .. } => "node_remove",
            Request::Stats => "stats",
            Request::Lookup { .. } => "lookup",
            Request::Batch { .. } => "batch",
        }
    }

    /// The write request for a table command (the inverse of
    /// [`Request::table_command`]); `None` for the commands only nodes send
    /// (health reports, admin addresses) and for batches.
    pub fn for_command(command: &Command) -> Option<Request> {
        Some(match command.clone() {
            Command::AddVip {
                key,
                flags,
                encapsulation,
            } => Request::VipAdd {
                key,
                flags,
                encapsulation,
            },
            Command::UpdateVip {
                key,
                flags,
                encapsulation,
            } => Request::VipUpdate {
                key,
                flags,
                encapsulation,
            },
            Command::RemoveVip { key } => Request::VipRemove { key },
            Command::AddBackend { vip, backend } => Request::BackendAdd { vip, backend },
            Command::SetBackendWeight {
                vip,
                address,
                weight,
            } => Request::BackendSetWeight {
                vip,
                address,
                weight,
            },
            Command::SetBackendState {
                vip,
                address,
                state,
            } => Request::BackendSetState {
                vip,
                address,
                state,
            },
            Command::RemoveBackend { vip, address } => Request::BackendRemove { vip, address },
            Command::SetSettings(settings) => Request::SettingsSet { settings },
            Command::SetConnectionSettings(settings) => Request::ConnectionSettingsSet { settings },
            Command::ReportHealth { .. } | Command::SetAdminAddr { .. } | Command::Batch { .. } => {
                return None
            }
        })
    }

    /// The table change a write request stands for; `None` for reads,
    /// membership changes and batches (which are not one table command).
    pub fn table_command(&self) -> Option<Command> {
        Some(match self.clone() {
            Request::VipAdd {
                key,
                flags,
                encapsulation,
            } => Command::AddVip {
                key,
                flags,
                encapsulation,
            },
            Request::VipUpdate {
                key,
                flags,
                encapsulation,
            } => Command::UpdateVip {
                key,
                flags,
                encapsulation,
            },
            Request::VipRemove { key } => Command::RemoveVip { key },
            Request::BackendAdd { vip, backend } => Command::AddBackend { vip, backend },
            Request::BackendRemove { vip, address } => Command::RemoveBackend { vip, address },
            Request::BackendSetWeight {
                vip,
                address,
                weight,
            } => Command::SetBackendWeight {
                vip,
                address,
                weight,
            },
            Request::BackendSetState {
                vip,
                address,
                state,
            } => Command::SetBackendState {
                vip,
                address,
                state,
            },
            Request::SettingsSet { settings } => Command::SetSettings(settings),
            Request::ConnectionSettingsSet { settings } => Command::SetConnectionSettings(settings),
            _ => return None,
        })
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    /// A write was committed and applied at this table version.
    Written {
        /// Table version after the write.
        version: u64,
    },
    /// The request failed; nothing was changed unless the message says the
    /// outcome is unknown.
    Error {
        /// What went wrong.
        message: String,
    },
    /// Answer to [`Request::Status`].
    Status(ClusterStatus),
    /// Answer to [`Request::LocalStatus`].
    LocalStatus(NodeReport),
    /// Answer to [`Request::VipList`].
    Vips {
        /// Table version the listing is from.
        version: u64,
        /// Every VIP.
        vips: Vec<Vip>,
        /// Cluster settings.
        settings: ClusterSettings,
        /// Connection-keeping settings (absent from older nodes' answers).
        #[serde(default)]
        connection: ConnectionSettings,
    },
    /// Answer to [`Request::NodeList`].
    Nodes {
        /// Every member.
        nodes: Vec<MemberInfo>,
    },
    /// Answer to [`Request::Stats`].
    Stats(StatsReport),
    /// Answer to [`Request::Lookup`].
    Lookup(LookupResult),
}

/// One node's view of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Raft node id.
    pub id: u64,
    /// Raft role (`leader`, `follower`, ...).
    pub role: String,
    /// Raft term.
    pub term: u64,
    /// Leader this node knows of.
    pub leader: Option<u64>,
    /// Last applied log index.
    pub applied_index: Option<u64>,
    /// Table version applied to the data plane.
    pub table_version: u64,
    /// Digest of every Maglev table programmed into the data plane.
    pub table_digest: String,
    /// XDP attach mode per interface (`driver`, `generic`) or `detached`.
    pub xdp: Vec<(String, String)>,
    /// Whether the node currently announces its VIPs.
    pub announcing: bool,
    /// Per-peer BGP session state.
    pub bgp_peers: Vec<BgpPeerReport>,
}

/// One BGP session as seen by a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgpPeerReport {
    /// The peer's address.
    pub address: IpAddr,
    /// FSM state (`Established`, `Active`, ...).
    pub state: String,
    /// Prefixes announced to it.
    pub prefixes: u64,
}

/// Answer to [`Request::Status`]: every member's report, or why it is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The leader as known by the answering node.
    pub leader: Option<u64>,
    /// Table version at the answering node.
    pub version: u64,
    /// Per member: its report or the error reaching it.
    pub nodes: Vec<(u64, Result<NodeReport, String>)>,
}

/// A Raft member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Raft node id.
    pub id: u64,
    /// Raft RPC address.
    pub addr: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// Admin API address the node registered, if it did.
    #[serde(default)]
    pub admin: Option<std::net::SocketAddr>,
}

/// Counters of one node's data plane, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StatsReport {
    /// Per VIP: key, packets, bytes.
    pub vips: Vec<(VipKey, u64, u64)>,
    /// Per backend address (summed over every VIP it serves: the data
    /// plane counts per backend): address, packets, bytes.
    pub backends: Vec<(IpAddr, u64, u64)>,
    /// Drops by reason.
    pub drops: Vec<(String, u64)>,
    /// Connection-cache events: `lru_*` (hits, misses, evictions, of them
    /// established ones) and cache admission under flood (`flood_*`).
    /// Absent from older nodes' answers.
    #[serde(default)]
    pub cache: Vec<(String, u64)>,
}

/// Answer to [`Request::Lookup`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupResult {
    /// The VIP that matched (port-specific first, then all-ports).
    pub vip: VipKey,
    /// Flow hash, as the data plane computes it.
    pub hash: u32,
    /// Maglev slot.
    pub slot: u32,
    /// The backend owning the slot, if the VIP has any usable backend.
    pub backend: Option<IpAddr>,
    /// The slot's owner in the VIP's previous table, when it differs from
    /// `backend` and the second-hop window is open: where a non-SYN packet
    /// missing the connection cache is second-hopped to. Absent from older
    /// nodes' answers.
    #[serde(default)]
    pub previous_backend: Option<IpAddr>,
}
