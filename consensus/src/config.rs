//! Configuration of one consensus node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::raft_types::NodeId;
use crate::transport::wire::channel::ClusterSecret;

/// Raft and transport timing.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Lower bound of the randomized election timeout.
    pub election_min: Duration,
    /// Upper bound of the randomized election timeout.
    pub election_max: Duration,
    /// Connect plus authentication handshake with a peer.
    pub connect: Duration,
    /// How long a client operation (write, read, membership change) may take,
    /// including waiting for a leader and forwarding.
    pub client: Duration,
    /// An inbound connection idle for this long is closed.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            connect: Duration::from_millis(1_000),
            client: Duration::from_secs(10),
            idle: Duration::from_secs(300),
        }
    }
}

/// Everything needed to start a [`ConsensusNode`](crate::ConsensusNode).
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// This node's Raft id (unique in the cluster, never reused).
    pub node_id: NodeId,
    /// Address to listen on for peers (port 0 picks a free port).
    pub listen_addr: SocketAddr,
    /// Address peers should use to reach us; defaults to the bound address.
    pub advertise_addr: Option<String>,
    /// Directory holding the log and state machine databases.
    pub data_dir: PathBuf,
    /// Shared secret authenticating cluster members.
    pub secret: ClusterSecret,
    /// Raft and transport timing.
    pub timeouts: Timeouts,
    /// Largest frame sent or accepted, in bytes.
    pub max_frame: usize,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every: u64,
    /// Log entries kept behind the last snapshot (lets slightly lagging
    /// followers catch up from the log instead of a snapshot).
    pub logs_kept_after_snapshot: u64,
    /// Voters (id -> address) of a brand-new cluster. When non-empty, a node
    /// whose data directory is pristine bootstraps the cluster with exactly
    /// this membership at start; a node that already belongs to a cluster
    /// ignores it. Giving the same map to every initial member is safe;
    /// different maps would split the cluster. Empty: join later as a
    /// learner, or call [`ConsensusNode::initialize`](crate::ConsensusNode::initialize).
    pub initial_members: BTreeMap<NodeId, String>,
}

/// Default largest frame: 16 MiB (snapshots are sent in chunks well below).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

impl ConsensusConfig {
    /// A configuration with default timing and limits.
    pub fn new(
        node_id: NodeId,
        listen_addr: SocketAddr,
        data_dir: PathBuf,
        secret: ClusterSecret,
    ) -> Self {
        ConsensusConfig {
            node_id,
            listen_addr,
            advertise_addr: None,
            data_dir,
            secret,
            timeouts: Timeouts::default(),
            max_frame: DEFAULT_MAX_FRAME,
            snapshot_every: 5_000,
            logs_kept_after_snapshot: 1_000,
            initial_members: BTreeMap::new(),
        }
    }
}
