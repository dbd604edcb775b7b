//! EdgeLB consensus: the Raft-replicated backend table.
//!
//! Every node of the cluster holds the same [`ClusterState`] (VIPs,
//! backends, cluster settings, table version) through Raft
//! ([openraft] 0.9), so every node computes the same Maglev tables.
//!
//! - [`model`] and [`command`]: the table and its transitions, plain serde
//!   types with no Raft dependency, for the Maglev and node code.
//! - [`storage`]: durable log, vote and state machine (redb, fsync per commit).
//! - [`wire`]: length-prefixed bincode frames over TCP, authenticated with
//!   a cluster secret (HMAC-SHA256 handshake and per-frame tags).
//! - [`network`] / `server`: Raft RPCs and forwarded client requests.
//! - [`ConsensusNode`]: start a member, write from any node (forwarded to
//!   the leader), read through the leader's read index, change membership,
//!   subscribe to applied state, query status.

pub mod command;
pub mod config;
pub mod encoding;
pub mod error;
pub mod model;
pub mod network;
mod node;
pub mod raft_types;
mod server;
pub mod storage;
pub mod wire;

pub use command::{Command, CommandError};
pub use config::{ConsensusConfig, Timeouts};
pub use error::ConsensusError;
pub use model::{
    Backend, BackendState, ClusterSettings, ClusterState, Encapsulation, Protocol, Vip, VipFlags, VipKey,
};
pub use node::{ConsensusNode, NodeStatus, Role};
pub use raft_types::NodeId;
pub use wire::channel::ClusterSecret;
pub use wire::message::{MembershipChange, WriteReceipt};
