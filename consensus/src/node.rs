//! A running cluster member: starting and stopping it (Raft core, durable
//! stores, peer server) and its public client API (writes, current reads,
//! membership, status, subscription). Getting client requests to the leader
//! is [`client_router`](crate::client_router)'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client_router::NodeShared;
use crate::cluster_state::ClusterState;
use crate::command::Command;
use crate::config::ConsensusConfig;
use crate::encoding::MAX_DECODE_BYTES;
use crate::error::ConsensusError;
use crate::raft_types::{Node, NodeId, Raft};
use crate::storage::{self, ReleaseProbe};
use crate::transport::network::{NetworkFactory, TransportSettings};
use crate::transport::server;
use crate::transport::wire::message::{MembershipChange, WriteReceipt};

/// Smallest accepted frame limit (a snapshot chunk is a quarter of it).
const MIN_FRAME: usize = 64 * 1024;

/// Role of a node in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes.
    Leader,
    /// Votes and replicates.
    Follower,
    /// Running an election.
    Candidate,
    /// Replicates without voting.
    Learner,
    /// The Raft core has stopped.
    Shutdown,
}

/// A snapshot of a node's Raft status (for metrics and `lbctl status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's id.
    pub id: NodeId,
    /// This node's role.
    pub role: Role,
    /// Current Raft term.
    pub term: u64,
    /// Leader this node knows of.
    pub leader: Option<NodeId>,
    /// Index of the last entry in the local log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry known committed.
    pub committed_index: Option<u64>,
    /// Index of the last entry applied to the table.
    pub applied_index: Option<u64>,
    /// Last log index covered by the local snapshot.
    pub snapshot_index: Option<u64>,
    /// Last log index removed from the local log (compacted into a snapshot).
    pub purged_index: Option<u64>,
    /// Voting members.
    pub voters: BTreeSet<NodeId>,
    /// Non-voting members.
    pub learners: BTreeSet<NodeId>,
    /// Every member's address.
    pub nodes: BTreeMap<NodeId, String>,
    /// Version of the locally applied table.
    pub table_version: u64,
    /// On a leader: milliseconds since a quorum last acknowledged it (`None`
    /// elsewhere, or before the first acknowledgement). A leader cut off from
    /// its quorum keeps its role, so this is how it notices.
    pub millis_since_quorum_ack: Option<u64>,
}

/// One member of the EdgeLB Raft cluster.
///
/// Dropping it without [`shutdown`](Self::shutdown) stops the peer server;
/// the Raft core stops when the last handle goes away.
pub struct ConsensusNode {
    shared: Arc<NodeShared>,
    local_addr: SocketAddr,
    advertise_addr: String,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    release: ReleaseProbe,
}

impl ConsensusNode {
    /// Opens the stores in `config.data_dir`, binds the listen address and
    /// starts Raft. A node restarted on the same data directory comes back
    /// with its vote, log and applied table.
    pub async fn start(config: ConsensusConfig) -> Result<Self, ConsensusError> {
        let t = &config.timeouts;
        let ms = |d: Duration| d.as_millis() as u64;
        if t.election_min <= t.heartbeat || t.election_max <= t.election_min {
            return Err(ConsensusError::Config(
                "need heartbeat < election_min < election_max".into(),
            ));
        }
        if !(MIN_FRAME..=MAX_DECODE_BYTES).contains(&config.max_frame) {
            return Err(ConsensusError::Config(format!(
                "max_frame {} outside {MIN_FRAME}..={MAX_DECODE_BYTES}",
                config.max_frame
            )));
        }
        let raft_config = Config {
            cluster_name: "edgelb".into(),
            heartbeat_interval: ms(t.heartbeat),
            election_timeout_min: ms(t.election_min),
            election_timeout_max: ms(t.election_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
            // Chunks stay well under the frame limit (bincode adds little).
            snapshot_max_chunk_size: (config.max_frame / 4) as u64,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| ConsensusError::Config(e.to_string()))?,
        );

        let data_dir = config.data_dir.clone();
        let (log, sm) = tokio::task::spawn_blocking(move || storage::open(&data_dir))
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))??;
        let state = sm.subscribe();
        let release = ReleaseProbe::new(&log, &sm);
        let committed = log.committed_watch();

        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(ConsensusError::Listen)?;
        let local_addr = listener.local_addr().map_err(ConsensusError::Listen)?;
        let advertise_addr = config
            .advertise_addr
            .clone()
            .unwrap_or_else(|| local_addr.to_string());

        let transport = Arc::new(TransportSettings {
            my_id: config.node_id,
            secret: config.secret.clone(),
            max_frame: config.max_frame,
            connect_timeout: config.timeouts.connect,
        });
        let raft = Raft::new(
            config.node_id,
            raft_config,
            NetworkFactory::new(transport.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| ConsensusError::Raft(e.to_string()))?;

        if !config.initial_members.is_empty() {
            bootstrap(&raft, &config.initial_members).await?;
        }

        let shared = Arc::new(NodeShared::new(raft, config, transport, state, committed));
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(ConsensusNode {
            shared,
            local_addr,
            advertise_addr,
            stop,
            server: Some(server),
            release,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The bound listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address peers use to reach this node.
    pub fn advertise_addr(&self) -> &str {
        &self.advertise_addr
    }

    /// How many peer connections this node's Raft server has dropped
    /// because the peer broke the protocol (garbage or oversized frames, a
    /// failed handshake, a bad tag, an undecodable message) since start.
    /// Connections that merely close or time out are not counted.
    pub fn rejected_peers(&self) -> u64 {
        self.shared
            .rejected_peers
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this node already belongs to a cluster (initialized here, or
    /// has received a membership from a leader, or restarted from such a
    /// data directory). A daemon calls [`initialize`](Self::initialize)
    /// only when this is false.
    pub async fn is_initialized(&self) -> Result<bool, ConsensusError> {
        self.shared
            .raft
            .is_initialized()
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))
    }

    /// Bootstraps a brand-new cluster with `members` (id → address) as
    /// voters. Call on exactly one node, once; other members learn the
    /// configuration through replication.
    pub async fn initialize(
        &self,
        members: BTreeMap<NodeId, String>,
    ) -> Result<(), ConsensusError> {
        let nodes: BTreeMap<NodeId, Node> = members
            .into_iter()
            .map(|(id, addr)| (id, Node::new(addr)))
            .collect();
        self.shared
            .raft
            .initialize(nodes)
            .await
            .map_err(|e| ConsensusError::Membership(e.to_string()))
    }

    /// Proposes `command` through the leader (forwarded if this node is not
    /// the leader) and returns once it is committed and applied on the
    /// leader. `Ok` means the write is durable on a quorum.
    pub async fn write(&self, command: Command) -> Result<WriteReceipt, ConsensusError> {
        self.shared.write(command).await
    }

    /// The table as of now: waits until this node has applied everything
    /// the leader had committed when the read started (read index), so the
    /// result includes every write acknowledged before the call.
    pub async fn read_current(&self) -> Result<Arc<ClusterState>, ConsensusError> {
        self.shared.read_current().await
    }

    /// The locally applied table (may lag the leader).
    pub fn state(&self) -> Arc<ClusterState> {
        self.shared.state.borrow().clone()
    }

    /// A receiver of the applied table. Every value is a complete table at
    /// some version; versions only increase. A slow reader may skip
    /// intermediate versions but always ends up at the latest one, so the
    /// data plane can be driven from it directly.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.shared.state.clone()
    }

    /// Adds a non-voting member and waits until it has caught up.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<u64, ConsensusError> {
        self.change_membership(MembershipChange::AddLearner { id, addr })
            .await
    }

    /// Turns a learner into a voter.
    pub async fn promote_voter(&self, id: NodeId) -> Result<u64, ConsensusError> {
        self.change_membership(MembershipChange::Promote { id })
            .await
    }

    /// Removes a voter or learner from the cluster.
    pub async fn remove_node(&self, id: NodeId) -> Result<u64, ConsensusError> {
        self.change_membership(MembershipChange::Remove { id })
            .await
    }

    async fn change_membership(&self, change: MembershipChange) -> Result<u64, ConsensusError> {
        self.shared.change_membership(change).await
    }

    /// Current Raft status.
    pub fn status(&self) -> NodeStatus {
        let m = self.shared.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let nodes = membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        NodeStatus {
            id: self.shared.id,
            role: if m.running_state.is_err() {
                Role::Shutdown
            } else {
                role
            },
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: self.shared.committed.index(),
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            voters,
            learners,
            nodes,
            table_version: self.state().version,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
        }
    }

    /// Waits until some node is leader (as seen from here) and returns it.
    pub async fn wait_for_leader(&self, limit: Duration) -> Result<NodeId, ConsensusError> {
        let mut metrics = self.shared.raft.metrics();
        let found = tokio::time::timeout(limit, async {
            loop {
                let leader = metrics.borrow().current_leader;
                if let Some(l) = leader {
                    return Ok(l);
                }
                if metrics.changed().await.is_err() {
                    return Err(ConsensusError::Raft("raft stopped".into()));
                }
            }
        })
        .await;
        found.unwrap_or(Err(ConsensusError::NoLeader(limit)))
    }

    /// Asks the local Raft core to build a snapshot now.
    pub async fn trigger_snapshot(&self) -> Result<(), ConsensusError> {
        self.shared
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))
    }

    /// Stops the peer server and the Raft core, and waits (bounded by the
    /// client timeout) until the data directory is closed, so a new node can
    /// be started on it at once. Durable state stays on disk.
    pub async fn shutdown(mut self) -> Result<(), ConsensusError> {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let stopped = self
            .shared
            .raft
            .shutdown()
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()));
        let release = self.release.clone();
        let limit = self.shared.config.timeouts.client;
        drop(self);
        // openraft's background tasks (replication, snapshot building,
        // pending blocking I/O) drop their store handles shortly after the
        // core stops.
        let deadline = Instant::now() + limit;
        while !release.is_released() {
            if Instant::now() >= deadline {
                return Err(ConsensusError::Raft(format!(
                    "stores still open {limit:?} after shutdown"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stopped
    }
}

impl Drop for ConsensusNode {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

/// Initializes a pristine node with `members`; a no-op on a node that is
/// already part of a cluster (openraft answers `NotAllowed`).
async fn bootstrap(raft: &Raft, members: &BTreeMap<NodeId, String>) -> Result<(), ConsensusError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ConsensusError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    let nodes: BTreeMap<NodeId, Node> = members
        .iter()
        .map(|(id, addr)| (*id, Node::new(addr.clone())))
        .collect();
    match raft.initialize(nodes).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(ConsensusError::Membership(e.to_string())),
    }
}
