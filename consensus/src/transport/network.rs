//! Client side of the transport: openraft's `RaftNetwork` over authenticated
//! TCP channels, and the peer client used to forward client operations.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RPCTypes, RaftNetwork, RaftNetworkFactory};

use crate::raft_types::{Node, NodeId, TypeConfig};
use crate::transport::wire::channel::{ChannelError, ClusterSecret, SecureChannel};
use crate::transport::wire::message::{RemoteFailure, Request, Response, SnapshotFailure};

/// What every outgoing connection of a node needs.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// This node's id (announced in the handshake).
    pub my_id: NodeId,
    /// The shared cluster secret.
    pub secret: ClusterSecret,
    /// Largest frame sent or accepted.
    pub max_frame: usize,
    /// Limit for connecting plus the handshake.
    pub connect_timeout: Duration,
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No channel could be set up: the request was certainly not delivered.
    #[error("peer unreachable: {0}")]
    Unreachable(ChannelError),
    /// The request may or may not have been delivered.
    #[error("call failed: {0}")]
    Failed(ChannelError),
    /// The peer answered with the wrong kind of response.
    #[error("unexpected response from peer")]
    UnexpectedResponse,
}

/// A lazily connected client for one peer; reconnects after any failure.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    settings: Arc<TransportSettings>,
    channel: Option<SecureChannel>,
}

impl PeerClient {
    /// A client for `target` listening at `addr`; connects on first use.
    pub fn new(target: NodeId, addr: String, settings: Arc<TransportSettings>) -> Self {
        PeerClient {
            target,
            addr,
            settings,
            channel: None,
        }
    }

    /// The peer this client talks to.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// Sends `request` and waits for the response, within `limit` (plus the
    /// connect timeout if a new connection is needed).
    pub async fn call(
        &mut self,
        request: &Request,
        limit: Duration,
    ) -> Result<Response, CallError> {
        let channel = match self.channel.take().filter(SecureChannel::is_open) {
            Some(c) => c,
            None => SecureChannel::connect(
                self.addr.as_str(),
                self.settings.my_id,
                &self.settings.secret,
                self.settings.max_frame,
                self.settings.connect_timeout,
            )
            .await
            .map_err(CallError::Unreachable)?,
        };
        let mut channel = channel;
        // On failure the channel is dropped: its sequence numbers or stream
        // position can no longer be trusted.
        let response = channel
            .call(request, limit)
            .await
            .map_err(CallError::Failed)?;
        self.channel = Some(channel);
        Ok(response)
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        option: &RPCOption,
        e: CallError,
    ) -> RPCError<NodeId, Node, E> {
        match e {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Failed(ChannelError::Timeout(_)) => RPCError::Timeout(Timeout {
                action,
                id: self.settings.my_id,
                target: self.target,
                timeout: option.hard_ttl(),
            }),
            e => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

/// openraft's factory of per-peer network clients.
pub struct NetworkFactory {
    settings: Arc<TransportSettings>,
}

impl NetworkFactory {
    /// A factory whose clients use `settings`.
    pub fn new(settings: Arc<TransportSettings>) -> Self {
        NetworkFactory { settings }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient::new(target, node.addr.clone(), self.settings.clone())
    }
}

fn stopped<E: std::error::Error>(target: NodeId, why: RemoteFailure) -> RaftError<NodeId, E> {
    tracing::debug!(target, %why, "remote raft failure");
    RaftError::Fatal(Fatal::Stopped)
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let action = RPCTypes::AppendEntries;
        match self
            .call(&Request::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(Response::AppendEntries(Ok(r))) => Ok(r),
            Ok(Response::AppendEntries(Err(f))) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                stopped(self.target, f),
            ))),
            Ok(_) => Err(self.rpc_error(action, &option, CallError::UnexpectedResponse)),
            Err(e) => Err(self.rpc_error(action, &option, e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let action = RPCTypes::InstallSnapshot;
        match self
            .call(&Request::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(Response::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(Response::InstallSnapshot(Err(SnapshotFailure::Mismatch(m)))) => {
                Err(RPCError::RemoteError(RemoteError::new(
                    self.target,
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)),
                )))
            }
            Ok(Response::InstallSnapshot(Err(SnapshotFailure::Stopped(_)))) => {
                Err(RPCError::RemoteError(RemoteError::new(
                    self.target,
                    RaftError::Fatal(Fatal::Stopped),
                )))
            }
            Ok(_) => Err(self.rpc_error(action, &option, CallError::UnexpectedResponse)),
            Err(e) => Err(self.rpc_error(action, &option, e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let action = RPCTypes::Vote;
        match self.call(&Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Response::Vote(Ok(r))) => Ok(r),
            Ok(Response::Vote(Err(f))) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                stopped(self.target, f),
            ))),
            Ok(_) => Err(self.rpc_error(action, &option, CallError::UnexpectedResponse)),
            Err(e) => Err(self.rpc_error(action, &option, e)),
        }
    }
}
