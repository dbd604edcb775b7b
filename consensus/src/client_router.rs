//! Client-request routing: sends writes, read-index reads and membership
//! changes to the leader (executing them here when this node leads,
//! forwarding them over a pooled peer connection otherwise), and executes
//! the ones that reach this node as leader, from the local API or from a
//! peer (`transport::server`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster_state::ClusterState;
use crate::command::Command;
use crate::config::ConsensusConfig;
use crate::error::ConsensusError;
use crate::raft_types::{ApplyOutcome, Node, NodeId, Raft};
use crate::storage::CommittedIndex;
use crate::transport::network::{CallError, PeerClient, TransportSettings};
use crate::transport::wire::message::{
    ForwardError, MembershipChange, Request, Response, WriteReceipt,
};

/// Pause before retrying when no leader is known or the leader moved.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// State shared by the client API and the peer server.
pub(crate) struct NodeShared {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) config: ConsensusConfig,
    pub(crate) transport: Arc<TransportSettings>,
    pub(crate) state: watch::Receiver<Arc<ClusterState>>,
    pub(crate) committed: CommittedIndex,
    /// Idle forwarding clients per peer, so forwarded writes reuse
    /// authenticated connections.
    forward_pool: Mutex<HashMap<NodeId, Vec<PeerClient>>>,
    /// Peer connections the server dropped because the peer broke the
    /// protocol (see `ChannelError::is_protocol_violation`).
    pub(crate) rejected_peers: AtomicU64,
}

impl NodeShared {
    /// Shared state of node `config.node_id`, with an empty forward pool.
    pub(crate) fn new(
        raft: Raft,
        config: ConsensusConfig,
        transport: Arc<TransportSettings>,
        state: watch::Receiver<Arc<ClusterState>>,
        committed: CommittedIndex,
    ) -> Self {
        NodeShared {
            id: config.node_id,
            raft,
            config,
            transport,
            state,
            committed,
            forward_pool: Mutex::new(HashMap::new()),
            rejected_peers: AtomicU64::new(0),
        }
    }

    /// Write through the leader: see [`ConsensusNode::write`](crate::ConsensusNode::write).
    pub(crate) async fn write(&self, command: Command) -> Result<WriteReceipt, ConsensusError> {
        let request = Request::Write(command);
        self.route(request)
            .await
            .and_then(|response| match response {
                Response::Write(Ok(receipt)) => Ok(receipt),
                Response::Write(Err(e)) => Err(forward_error(e)),
                _ => Err(ConsensusError::Indeterminate("unexpected response".into())),
            })
    }

    /// A membership change through the leader; the log index it committed at.
    pub(crate) async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<u64, ConsensusError> {
        let response = self.route(Request::ChangeMembership(change)).await?;
        match response {
            Response::ChangeMembership(Ok(index)) => Ok(index),
            Response::ChangeMembership(Err(ForwardError::Failed(e))) => {
                Err(ConsensusError::Membership(e))
            }
            Response::ChangeMembership(Err(e)) => Err(forward_error(e)),
            _ => Err(ConsensusError::Indeterminate("unexpected response".into())),
        }
    }

    /// Read-index read: see
    /// [`ConsensusNode::read_current`](crate::ConsensusNode::read_current).
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
