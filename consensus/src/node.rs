//! A running cluster member: Raft core, durable stores, peer server and the
//! client API (writes, current reads, membership, status, subscription).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::command::Command;
use crate::config::ConsensusConfig;
use crate::encoding::MAX_DECODE_BYTES;
use crate::error::ConsensusError;
use crate::model::ClusterState;
use crate::network::{CallError, NetworkFactory, PeerClient, TransportSettings};
use crate::raft_types::{ApplyOutcome, Node, NodeId, Raft};
use crate::server;
use crate::storage::{self, CommittedIndex, ReleaseProbe};
use crate::wire::message::{ForwardError, MembershipChange, Request, Response, WriteReceipt};

/// Smallest accepted frame limit (a snapshot chunk is a quarter of it).
const MIN_FRAME: usize = 64 * 1024;

/// Pause before retrying when no leader is known or the leader moved.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

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

/// State shared by the client API and the peer server.
pub(crate) struct NodeShared {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) config: ConsensusConfig,
    pub(crate) transport: Arc<TransportSettings>,
    state: watch::Receiver<Arc<ClusterState>>,
    committed: CommittedIndex,
    /// Idle forwarding clients per peer, so forwarded writes reuse
    /// authenticated connections.
    forward_pool: Mutex<HashMap<NodeId, Vec<PeerClient>>>,
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

        let shared = Arc::new(NodeShared {
            id: config.node_id,
            raft,
            config,
            transport,
            state,
            committed,
            forward_pool: Mutex::new(HashMap::new()),
        });
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
        let request = Request::Write(command);
        self.shared
            .route(request)
            .await
            .and_then(|response| match response {
                Response::Write(Ok(receipt)) => Ok(receipt),
                Response::Write(Err(e)) => Err(forward_error(e)),
                _ => Err(ConsensusError::Indeterminate("unexpected response".into())),
            })
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
        let response = self.shared.route(Request::ChangeMembership(change)).await?;
        match response {
            Response::ChangeMembership(Ok(index)) => Ok(index),
            Response::ChangeMembership(Err(ForwardError::Failed(e))) => {
                Err(ConsensusError::Membership(e))
            }
            Response::ChangeMembership(Err(e)) => Err(forward_error(e)),
            _ => Err(ConsensusError::Indeterminate("unexpected response".into())),
        }
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

fn forward_error(e: ForwardError) -> ConsensusError {
    match e {
        ForwardError::Rejected(e) => ConsensusError::Rejected(e),
        ForwardError::NotLeader { .. } => ConsensusError::NoLeader(Duration::ZERO),
        ForwardError::Failed(e) => ConsensusError::Indeterminate(e),
    }
}

/// The leader a request should go to.
enum Target {
    Me,
    Peer(NodeId, String),
}

fn not_leader(response: &Response) -> Option<Option<(NodeId, String)>> {
    let err = match response {
        Response::Write(Err(e)) => e,
        Response::ReadIndex(Err(e)) => e,
        Response::ChangeMembership(Err(e)) => e,
        _ => return None,
    };
    match err {
        ForwardError::NotLeader { leader } => Some(leader.clone()),
        _ => None,
    }
}

impl NodeShared {
    /// Read-index read: see [`ConsensusNode::read_current`].
    pub(crate) async fn read_current(&self) -> Result<Arc<ClusterState>, ConsensusError> {
        let started = Instant::now();
        let response = self.route(Request::ReadIndex).await?;
        let index = match response {
            Response::ReadIndex(Ok(index)) => index,
            Response::ReadIndex(Err(e)) => return Err(forward_error(e)),
            _ => return Err(ConsensusError::Indeterminate("unexpected response".into())),
        };
        let remaining = self
            .config
            .timeouts
            .client
            .saturating_sub(started.elapsed());
        if index.is_some() {
            self.raft
                .wait(Some(remaining))
                .applied_index_at_least(index, "read index")
                .await
                .map_err(|e| ConsensusError::Raft(e.to_string()))?;
        }
        Ok(self.state.borrow().clone())
    }

    fn leader_target(&self) -> Option<Target> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        if leader == self.id {
            return Some(Target::Me);
        }
        let node = m.membership_config.membership().get_node(&leader)?;
        Some(Target::Peer(leader, node.addr.clone()))
    }

    /// Sends a client `request` to the leader (locally or forwarded),
    /// retrying while the leader is unknown or has moved and the request was
    /// certainly not executed, until the client timeout.
    async fn route(&self, request: Request) -> Result<Response, ConsensusError> {
        let limit = self.config.timeouts.client;
        let deadline = Instant::now() + limit;
        let mut hint: Option<Target> = None;
        loop {
            if Instant::now() >= deadline {
                return Err(ConsensusError::NoLeader(limit));
            }
            let Some(target) = hint.take().or_else(|| self.leader_target()) else {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            let response = match target {
                Target::Me => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let local = clone_client_request(&request)
                        .ok_or_else(|| ConsensusError::Raft("not a client request".into()))?;
                    tokio::time::timeout(remaining, self.handle_as_leader(local))
                        .await
                        .map_err(|_| {
                            ConsensusError::Indeterminate(format!("no result within {limit:?}"))
                        })?
                }
                Target::Peer(id, addr) => match self.forward(id, addr, &request, deadline).await {
                    Ok(r) => r,
                    Err(CallError::Unreachable(e)) => {
                        tracing::debug!(leader = id, error = %e, "leader unreachable; retrying");
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    Err(e) => return Err(ConsensusError::Indeterminate(e.to_string())),
                },
            };
            let Some(leader) = not_leader(&response) else {
                return Ok(response);
            };
            hint = leader.map(|(id, addr)| {
                if id == self.id {
                    Target::Me
                } else {
                    Target::Peer(id, addr)
                }
            });
            // Leadership is moving; pausing keeps two nodes that briefly
            // point at each other from spinning.
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn forward(
        &self,
        id: NodeId,
        addr: String,
        request: &Request,
        deadline: Instant,
    ) -> Result<Response, CallError> {
        let pooled = self
            .forward_pool
            .lock()
            .ok()
            .and_then(|mut pool| pool.get_mut(&id).and_then(|v| v.pop()));
        let mut client =
            pooled.unwrap_or_else(|| PeerClient::new(id, addr, self.transport.clone()));
        let remaining = deadline.saturating_duration_since(Instant::now());
        let response = client.call(request, remaining).await?;
        if let Ok(mut pool) = self.forward_pool.lock() {
            pool.entry(id).or_default().push(client);
        }
        Ok(response)
    }

    /// Executes a client request on this node, which must be the leader.
    pub(crate) async fn handle_as_leader(&self, request: Request) -> Response {
        match request {
            Request::Write(command) => Response::Write(self.write_as_leader(command).await),
            Request::ReadIndex => Response::ReadIndex(self.read_index_as_leader().await),
            Request::ChangeMembership(change) => {
                Response::ChangeMembership(self.change_membership_as_leader(change).await)
            }
            other => {
                tracing::warn!(?other, "raft rpc routed as a client request");
                Response::Write(Err(ForwardError::Failed("not a client request".into())))
            }
        }
    }

    fn not_leader_error(&self, leader: Option<NodeId>, node: Option<Node>) -> ForwardError {
        // Never point a forwarder back at ourselves.
        let leader = match (leader, node) {
            (Some(id), Some(n)) if id != self.id => Some((id, n.addr)),
            _ => None,
        };
        ForwardError::NotLeader { leader }
    }

    async fn write_as_leader(&self, command: Command) -> Result<WriteReceipt, ForwardError> {
        // Validate before proposing so bad commands never reach the log. The
        // applied table may lag a new leader's log, so a failure is
        // re-checked after catching up (read index) before it is reported.
        let current = self.state.borrow().clone();
        if current.validate(&command).is_err() {
            self.read_index_as_leader().await?;
            let caught_up = self.state.borrow().clone();
            caught_up
                .validate(&command)
                .map_err(ForwardError::Rejected)?;
        }
        match self.raft.client_write(command).await {
            Ok(resp) => match resp.data {
                ApplyOutcome::Applied { version } => Ok(WriteReceipt {
                    version,
                    log_index: resp.log_id.index,
                }),
                ApplyOutcome::Rejected(e) => Err(ForwardError::Rejected(e)),
                ApplyOutcome::Internal => {
                    Err(ForwardError::Failed("entry applied as internal".into()))
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(self.not_leader_error(f.leader_id, f.leader_node))
            }
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        }
    }

    async fn read_index_as_leader(&self) -> Result<Option<u64>, ForwardError> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(self.not_leader_error(f.leader_id, f.leader_node))
            }
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        }
    }

    async fn change_membership_as_leader(
        &self,
        change: MembershipChange,
    ) -> Result<u64, ForwardError> {
        let result = match change {
            MembershipChange::AddLearner { id, addr } => {
                self.raft.add_learner(id, Node::new(addr), true).await
            }
            MembershipChange::Promote { id } => {
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
            }
            MembershipChange::Remove { id } => {
                let is_voter = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == id);
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                self.raft.change_membership(change, false).await
            }
        };
        match result {
            Ok(resp) => Ok(resp.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(self.not_leader_error(f.leader_id, f.leader_node))
            }
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        }
    }
}

/// A copy of a client request (small); `None` for Raft RPCs, which are
/// never routed.
fn clone_client_request(request: &Request) -> Option<Request> {
    match request {
        Request::Write(c) => Some(Request::Write(c.clone())),
        Request::ReadIndex => Some(Request::ReadIndex),
        Request::ChangeMembership(m) => Some(Request::ChangeMembership(m.clone())),
        _ => None,
    }
}
