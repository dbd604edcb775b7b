//! The replicated backend table: plain serde types, independent of Raft.
//!
//! Every node applies the same [`Command`](crate::command::Command)s in the
//! same order to a [`ClusterState`], so every node ends up with the same table
//! and computes the same Maglev lookup tables from it. Maps are `BTreeMap`s so
//! iteration order (and therefore every derived table) is identical everywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Cluster member identifier (the Raft node id).
pub type NodeId = u64;

/// Smallest accepted Maglev table size (must also be prime).
pub const MIN_TABLE_SIZE: u32 = 251;
/// Largest accepted Maglev table size (must also be prime).
pub const MAX_TABLE_SIZE: u32 = 1_048_576;
/// Table size used by a freshly created cluster (prime).
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
/// Smallest accepted backend weight.
pub const MIN_WEIGHT: u32 = 1;
/// Largest accepted backend weight.
///
/// Weights are relative shares of the Maglev table: 1..=65535 keeps the
/// weighted population arithmetic well inside `u64` for any table size.
pub const MAX_WEIGHT: u32 = 65_535;
/// Most backends one VIP may have (bounded so a table slot per backend fits).
pub const MAX_BACKENDS_PER_VIP: usize = 4_096;

/// A VIP's identity (address, port, protocol), shared with the forwarder's
/// loader through the `vip-key` crate: one type on every layer. Its serde
/// encoding is part of the Raft log (pinned by the golden vectors).
pub use vip_key::{Protocol, VipKey};

/// Per-VIP hashing options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipFlags {
    /// Leave the source port out of the flow hash (all connections of a client
    /// land on the same backend).
    pub hash_without_source_port: bool,
    /// Hash on the destination port only (ignores both source fields).
    pub hash_dst_port_only: bool,
}

/// How packets are carried from the load balancer to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encapsulation {
    /// IP-in-IP (protocol 4 for an IPv4 inner packet, 41 for IPv6).
    IpIp,
    /// Generic UDP Encapsulation to the given UDP destination port (non-zero).
    Gue {
        /// UDP destination port of the GUE tunnel on the backend.
        port: u16,
    },
}

/// Administrative state of a backend: Maglev's own [`maglev::BackendState`]
/// (`Active`, `Draining`, `Down`), replicated as is, so the table and the
/// Maglev input need no conversion. Its encoding is pinned by the golden
/// vectors of `command` and `cluster_state`.
pub use maglev::BackendState;

/// One backend (real server) of a VIP, as replicated: address, weight and
/// administrative state. Not [`maglev::Backend`], which is a backend's entry
/// in one built table (its key, weight, state and slot count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Address packets are tunnelled to.
    pub address: IpAddr,
    /// Relative share of the Maglev table, in `MIN_WEIGHT..=MAX_WEIGHT`.
    pub weight: u32,
    /// Administrative state.
    pub state: BackendState,
}

/// A VIP and its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip {
    /// Identity of the VIP.
    pub key: VipKey,
    /// Hashing options.
    pub flags: VipFlags,
    /// Tunnel used towards the backends.
    pub encapsulation: Encapsulation,
    /// Backends, ordered by address.
    pub backends: BTreeMap<IpAddr, Backend>,
}

/// Cluster-wide settings every node must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Seed of the flow hash (the same on every node, or flows move).
    pub hash_seed: u64,
    /// Maglev lookup table size: a prime in `MIN_TABLE_SIZE..=MAX_TABLE_SIZE`.
    pub table_size: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            hash_seed: 0,
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

/// Second-hop window used by a freshly created cluster (and by a cluster
/// restored from a format-1 snapshot, which predates the setting).
pub const DEFAULT_SECOND_HOP_WINDOW_SECS: u32 = 60;
/// Longest accepted second-hop window: an hour is far longer than any
/// rehash needs, and bounds how long stale previous tables stay programmed.
pub const MAX_SECOND_HOP_WINDOW_SECS: u32 = 3_600;
/// Largest accepted flood threshold (new flows per second per CPU): the
/// forwarder's own bound (`xdp_fwd_common::flood::MAX_FLOOD_RATE`).
pub const MAX_FLOOD_THRESHOLD: u64 = 100_000_000;

/// The cluster-wide SYN-flood admission threshold of the forwarders'
/// connection caches (FORWARDER.md, "Admission under flood").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FloodAdmission {
    /// Not set cluster-wide: each node uses its config's `xdp.flood_threshold`.
    #[default]
    NodeConfig,
    /// Sized from each node's cache capacity.
    FromCapacity,
    /// Never flooded: new flows always evict by LRU.
    Off,
    /// New flows per second per CPU, in `1..=MAX_FLOOD_THRESHOLD`.
    PerSecond(u64),
}

/// Cluster settings added after snapshot format 1: how the forwarders keep
/// established connections on their backend. Replicated by their own command
/// ([`Command::SetConnectionSettings`](crate::Command::SetConnectionSettings)),
/// so [`ClusterSettings`]' pinned encoding is untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSettings {
    /// How long after a VIP's table change each node keeps the previous table
    /// for second-hop lookups, in `0..=MAX_SECOND_HOP_WINDOW_SECS`; 0 turns
    /// the second hop off.
    pub second_hop_window_secs: u32,
    /// SYN-flood admission threshold; when set it wins over the node config.
    pub flood_threshold: FloodAdmission,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            second_hop_window_secs: DEFAULT_SECOND_HOP_WINDOW_SECS,
            flood_threshold: FloodAdmission::NodeConfig,
        }
    }
}

/// A VIP's Maglev input: table size and the backends that get a table
/// entry (active and draining, with their effective state; down ones are
/// left out), in address order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaglevInput {
    /// Table size the table is built with.
    pub table_size: u32,
    /// Backends with their effective (health-aware) state.
    pub backends: Vec<Backend>,
}

/// One entry of a VIP's history: its Maglev input before one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousTable {
    /// The table version whose change made this a previous input (a node
    /// starts a second-hop window for each one it has not seen before).
    pub since_version: u64,
    /// The input before that change.
    pub input: MaglevInput,
}

/// Most previous inputs kept per VIP ([`ClusterState::history`]). Two or
/// three changes inside one second-hop window are common (add a backend,
/// then drain another; a health flap); 4 covers such a burst while bounding
/// the replicated state (one input per entry) and each node's fold work
/// (one Maglev build per open entry).
pub const PREVIOUS_HISTORY_LEN: usize = 4;

/// A VIP's history: its previous inputs, newest first, at most
/// [`PREVIOUS_HISTORY_LEN`].
pub type History = Vec<PreviousTable>;

/// What the state holds beyond the format-1 layout, carried next to it by
/// snapshots (format 3) and the applied record (`applied.v3`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateAdditions {
    /// [`ClusterState::connection`].
    pub connection: ConnectionSettings,
    /// [`ClusterState::history`].
    pub history: BTreeMap<VipKey, History>,
}

/// Health observations of one VIP: backend -> observer -> healthy.
pub type VipHealth = BTreeMap<IpAddr, BTreeMap<NodeId, bool>>;

/// The whole replicated table at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Bumped by one for every change to the table; 0 for an empty cluster.
    pub version: u64,
    /// Cluster-wide settings.
    pub settings: ClusterSettings,
    /// All VIPs, ordered by key.
    pub vips: BTreeMap<VipKey, Vip>,
    /// Current voting members; only their health observations count.
    pub voters: BTreeSet<NodeId>,
    /// Latest health observation of each backend by each voter.
    pub health: BTreeMap<VipKey, VipHealth>,
    /// Each member's admin API address, registered by its own daemon, so
    /// `lbctl status` reaches nodes that joined after the cluster began.
    pub admin_addrs: BTreeMap<NodeId, std::net::SocketAddr>,
    /// Connection-keeping settings (added after format 1). Like
    /// [`ClusterState::history`] it is not part of this type's serde form,
    /// which stays the pinned format-1 layout: persist the state with
    /// [`ClusterState::additions`] next to it.
    #[serde(skip)]
    pub connection: ConnectionSettings,
    /// Per VIP, its inputs before its latest changes, newest first, at most
    /// [`PREVIOUS_HISTORY_LEN`] (absent for a VIP whose table never changed
    /// since it was created). Not in the serde form.
    #[serde(skip)]
    pub history: BTreeMap<VipKey, History>,
}

impl ClusterState {
    /// The fields added after format 1, for persisting next to the
    /// format-1 serde form.
    pub fn additions(&self) -> StateAdditions {
        StateAdditions {
            connection: self.connection,
            history: self.history.clone(),
        }
    }

    /// Restores the fields added after format 1.
    pub fn set_additions(&mut self, additions: StateAdditions) {
        self.connection = additions.connection;
        self.history = additions.history;
    }

    /// The Maglev input of `key`'s table (`None` for an unknown VIP): the
    /// one definition the data plane builds current and previous tables from.
    pub fn maglev_input(&self, key: &VipKey) -> Option<MaglevInput> {
        let vip = self.vips.get(key)?;
        let backends = vip
            .backends
            .values()
            .map(|b| Backend {
                state: self.effective_state(key, &b.address).unwrap_or(b.state),
                ..*b
            })
            .filter(|b| b.state != BackendState::Down)
            .collect();
        Some(MaglevInput {
            table_size: self.settings.table_size,
            backends,
        })
    }

    /// Every VIP's Maglev input.
    pub(crate) fn maglev_inputs(&self) -> BTreeMap<VipKey, MaglevInput> {
        self.vips
            .keys()
            .filter_map(|k| Some((*k, self.maglev_input(k)?)))
            .collect()
    }

    /// After a change that bumped the version: every VIP whose Maglev input
    /// differs from `before` gets `before` pushed at the front of its
    /// history, which keeps its newest [`PREVIOUS_HISTORY_LEN`] entries;
    /// removed VIPs lose theirs. Deterministic (a function of the states
    /// alone).
    pub(crate) fn record_previous(&mut self, before: BTreeMap<VipKey, MaglevInput>) {
        let version = self.version;
        for (key, old) in before {
            if self.maglev_input(&key).is_some_and(|now| now != old) {
                let previous = PreviousTable {
                    since_version: version,
                    input: old,
                };
                let history = self.history.entry(key).or_default();
                history.insert(0, previous);
                history.truncate(PREVIOUS_HISTORY_LEN);
            }
        }
        let vips = &self.vips;
        self.history.retain(|k, _| vips.contains_key(k));
    }

    /// Every backend address of every VIP, each once (the data plane keeps
    /// one entry and one set of counters per address).
    pub fn backend_addresses(&self) -> BTreeSet<IpAddr> {
        self.vips
            .values()
            .flat_map(|v| v.backends.keys().copied())
            .collect()
    }

    /// Whether a majority of the voters currently observe this backend as
    /// unhealthy (then it is treated as down whatever its admin state).
    pub fn is_health_down(&self, vip: &VipKey, backend: &IpAddr) -> bool {
        let Some(observations) = self.health.get(vip).and_then(|h| h.get(backend)) else {
            return false;
        };
        let down = observations
            .iter()
            .filter(|(observer, healthy)| !**healthy && self.voters.contains(observer))
            .count();
        !self.voters.is_empty() && down > self.voters.len() / 2
    }

    /// The state the data plane should use for a backend: its admin state,
    /// overridden to `Down` when a quorum of voters observes it unhealthy.
    /// `None` if the VIP or backend does not exist.
    pub fn effective_state(&self, vip: &VipKey, backend: &IpAddr) -> Option<BackendState> {
        let admin = self.vips.get(vip)?.backends.get(backend)?.state;
        if self.is_health_down(vip, backend) {
            Some(BackendState::Down)
        } else {
            Some(admin)
        }
    }

    /// Records a new voter set (from a committed membership change): drops
    /// the observations of former voters. Bumps the version if it changed.
    pub fn set_voters(&mut self, voters: BTreeSet<NodeId>) {
        if voters == self.voters {
            return;
        }
        let before = self.maglev_inputs();
        for backends in self.health.values_mut() {
            for observations in backends.values_mut() {
                observations.retain(|observer, _| voters.contains(observer));
            }
            backends.retain(|_, observations| !observations.is_empty());
        }
        self.health.retain(|_, backends| !backends.is_empty());
        self.voters = voters;
        self.version += 1;
        // Former voters' observations no longer count: effective states,
        // and so tables, may have changed.
        self.record_previous(before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is stored on disk and shipped in snapshots: pin its bytes
    /// (hand-derived from bincode 2's standard config, as for commands).
    #[test]
    fn golden_cluster_state_encoding() {
        let mut s = ClusterState {
            version: 300,
            ..Default::default()
        };
        s.voters = [1, 2, 3].into();
        let bytes = crate::encoding::encode(&s).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // version 300 | seed 0 | size 65537 | no VIPs | voters {1,2,3} | no health | no admin addresses
        assert_eq!(
            hex,
            "fb2c01".to_string() + "00" + "fc01000100" + "00" + "03010203" + "00" + "00"
        );
        assert_eq!(crate::encoding::decode::<ClusterState>(&bytes).unwrap(), s);
    }
}
