//! The openraft type configuration: what a log entry carries and what
//! applying it returns.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError};

pub use crate::cluster_state::NodeId;

/// Address book entry of a node: its Raft listen address (`host:port`).
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// openraft type configuration of the EdgeLB cluster.
    pub TypeConfig:
        D = Command,
        R = ApplyOutcome,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle for this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// Membership as recorded in the log.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// Storage error as openraft wants it.
pub type StorageError = openraft::StorageError<NodeId>;

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// The command was applied; the table is now at this version.
    Applied {
        /// Table version after the command.
        version: u64,
    },
    /// The command was invalid at apply time and changed nothing.
    Rejected(CommandError),
    /// A blank or membership entry: no table change.
    Internal,
}
