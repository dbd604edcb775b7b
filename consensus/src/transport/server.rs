//! Server side of the transport: accepts peers, authenticates them and
//! answers their requests, one request at a time per connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::error::{InstallSnapshotError, RaftError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client_router::NodeShared;
use crate::error::ConsensusError;
use crate::transport::wire::channel::{ChannelError, SecureChannel};
use crate::transport::wire::message::{
    ForwardError, RemoteFailure, Request, Response, SnapshotFailure,
};

/// Accepts connections until `stop` turns true, then closes them all.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<NodeShared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    let stop = stop.clone();
                    connections.spawn(async move {
                        if let Err(e) = serve_connection(stream, &shared, stop).await {
                            if e.is_protocol_violation() {
                                shared.rejected_peers.fetch_add(1, Ordering::Relaxed);
                            }
                            tracing::debug!(%peer, error = %e, "peer connection closed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly
                    // rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    shared: &NodeShared,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ChannelError> {
    let transport = &shared.transport;
    let mut channel = SecureChannel::accept(
        stream,
        transport.my_id,
        &transport.secret,
        transport.max_frame,
        transport.connect_timeout,
    )
    .await
    .inspect_err(|e| tracing::warn!(error = %e, "refused peer"))?;
    let idle = shared.config.timeouts.idle;
    loop {
        let request: Request = tokio::select! {
            _ = stop.changed() => return Ok(()),
            r = tokio::time::timeout(idle, channel.recv()) => match r {
                Ok(r) => r?,
                Err(_) => return Err(ChannelError::Timeout(idle)),
            },
        };
        let response = handle(shared, request).await;
        tokio::time::timeout(shared.config.timeouts.client, channel.send(&response))
            .await
            .map_err(|_| ChannelError::Timeout(shared.config.timeouts.client))??;
    }
}

async fn handle(shared: &NodeShared, request: Request) -> Response {
    let raft = &shared.raft;
    match request {
        Request::AppendEntries(rpc) => Response::AppendEntries(
            raft.append_entries(rpc)
                .await
                .map_err(|e| RemoteFailure::Stopped(e.to_string())),
        ),
        Request::Vote(rpc) => Response::Vote(
            raft.vote(rpc)
                .await
                .map_err(|e| RemoteFailure::Stopped(e.to_string())),
        ),
        Request::InstallSnapshot(rpc) => {
            Response::InstallSnapshot(match raft.install_snapshot(rpc).await {
                Ok(r) => Ok(r),
                Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) => {
                    Err(SnapshotFailure::Mismatch(m))
                }
                Err(e) => Err(SnapshotFailure::Stopped(e.to_string())),
            })
        }
        client @ (Request::Write(_) | Request::ReadIndex | Request::ChangeMembership(_)) => {
            shared.handle_as_leader(client).await
        }
        Request::ReadState => Response::ReadState(
            shared
                .read_current()
                .await
                .map(|state| Box::new((*state).clone()))
                .map_err(|e| match e {
                    ConsensusError::NoLeader(_) => ForwardError::NotLeader { leader: None },
                    e => ForwardError::Failed(e.to_string()),
                }),
        ),
    }
}
