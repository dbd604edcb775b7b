//! Request and response messages exchanged between cluster members.
//!
//! Raft RPCs are carried as openraft's own serde types; forwarded client
//! operations (writes, read-index, membership changes) are ours. Variants are
//! only ever appended (bincode encodes the variant index).

use openraft::error::SnapshotMismatch;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::cluster_state::ClusterState;
use crate::command::{Command, CommandError};
use crate::raft_types::{NodeId, TypeConfig};

/// A request from one member to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Raft log replication / heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft election.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a Raft snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client write forwarded to the leader.
    Write(Command),
    /// Ask the leader for a linearizable read index.
    ReadIndex,
    /// A membership change forwarded to the leader.
    ChangeMembership(MembershipChange),
    /// Read the current table from the receiving node (it first catches up
    /// to the leader's read index, so the result is linearizable). For
    /// operator tools holding the cluster secret.
    ReadState,
}

/// A runtime membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a node that replicates the log but does not vote.
    AddLearner {
        /// The new node's id.
        id: NodeId,
        /// The new node's Raft address (`host:port`).
        addr: String,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's id.
        id: NodeId,
    },
    /// Remove a voter or learner from the cluster.
    Remove {
        /// The node's id.
        id: NodeId,
    },
}

/// The reply to a [`Request`] (same variant).
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Reply to `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RemoteFailure>),
    /// Reply to `Vote`.
    Vote(Result<VoteResponse<NodeId>, RemoteFailure>),
    /// Reply to `InstallSnapshot`.
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, SnapshotFailure>),
    /// Reply to `Write`.
    Write(Result<WriteReceipt, ForwardError>),
    /// Reply to `ReadIndex`: the log index a read must wait for.
    ReadIndex(Result<Option<u64>, ForwardError>),
    /// Reply to `ChangeMembership`: the log index of the new membership.
    ChangeMembership(Result<u64, ForwardError>),
    /// Reply to `ReadState`.
    ReadState(Result<Box<ClusterState>, ForwardError>),
}

/// Proof that a write was committed and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReceipt {
    /// Table version the command produced.
    pub version: u64,
    /// Log index of the command.
    pub log_index: u64,
}

/// The remote Raft node could not handle an RPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteFailure {
    /// The remote Raft core has stopped.
    #[error("remote raft stopped: {0}")]
    Stopped(String),
}

/// The remote node could not take a snapshot chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SnapshotFailure {
    /// The chunk does not continue the snapshot being received.
    #[error(transparent)]
    Mismatch(SnapshotMismatch),
    /// The remote Raft core has stopped.
    #[error("remote raft stopped: {0}")]
    Stopped(String),
}

/// Why a forwarded operation failed at the receiving node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader (and says who is, if it knows).
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id and address, if known.
        leader: Option<(NodeId, String)>,
    },
    /// The command is invalid and changed nothing.
    #[error(transparent)]
    Rejected(CommandError),
    /// Anything else; the outcome of a write is then unknown.
    #[error("{0}")]
    Failed(String),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::encoding::{decode, encode};

    proptest! {
        /// Whatever an authenticated peer sends, decoding returns a value or
        /// an error: it never panics nor allocates past the decode limit.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
        }

        /// Flipping any byte of a valid message yields an error or another
        /// well-formed message, never a panic.
        #[test]
        fn mutated_messages_never_panic(index in any::<prop::sample::Index>(), bit in 0u8..8) {
            let command = Command::SetBackendWeight {
                vip: crate::cluster_state::VipKey {
                    address: "192.0.2.1".parse().unwrap(),
                    port: 80,
                    protocol: crate::cluster_state::Protocol::Tcp,
                },
                address: "10.0.0.1".parse().unwrap(),
                weight: 7,
            };
            let mut bytes = encode(&Request::Write(command)).unwrap();
            let i = index.index(bytes.len());
            bytes[i] ^= 1 << bit;
            let _ = decode::<Request>(&bytes);
        }
    }

    #[test]
    fn huge_length_claims_are_refused_without_allocating() {
        // A length prefix claiming 2^60 elements must fail on the decode
        // limit, not attempt the allocation.
        let mut vec_claim = vec![0xfdu8];
        vec_claim.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<Vec<u64>>(&vec_claim).is_err());
    }
}
