//! EdgeLB consensus: the Raft-replicated backend table.
//!
//! Every node of the cluster holds the same [`ClusterState`] (VIPs,
//! backends, cluster settings, table version) through Raft
//! ([openraft] 0.9), so every node computes the same Maglev tables.
//!
//! - [`cluster_state`] and [`command`]: the table and its transitions,
//!   plain serde types with no Raft dependency, for the Maglev and node code.
//! - [`storage`]: durable log, vote and state machine (redb, fsync per commit).
//! - [`transport`]: everything between members. [`wire`]: length-prefixed
//!   bincode frames over TCP, authenticated with a cluster secret
//!   (HMAC-SHA256 handshake and per-frame tags); [`network`] / `server`:
//!   Raft RPCs and forwarded client requests.
//! - [`ConsensusNode`]: start a member, write from any node (forwarded to
//!   the leader by `client_router`), read through the leader's read index,
//!   change membership, subscribe to applied state, query status.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use edgelb_consensus::*;
//!
//! let secret = ClusterSecret::new(std::fs::read("/etc/edgelb/cluster.secret")?)?;
//! let config = ConsensusConfig::new(1, "10.0.0.1:7400".parse()?, "/var/lib/edgelb/raft".into(), secret);
//! let node = ConsensusNode::start(config).await?;
//! // Once, on one node of a new cluster:
//! node.initialize([(1, "10.0.0.1:7400".to_string()), (2, "10.0.0.2:7400".to_string()),
//!                  (3, "10.0.0.3:7400".to_string())].into()).await?;
//!
//! // Drive the data plane from applied state only.
//! let mut applied = node.subscribe();
//! tokio::spawn(async move {
//!     while applied.changed().await.is_ok() {
//!         let state = applied.borrow_and_update().clone();
//!         // rebuild Maglev tables for state.version ...
//!         # let _ = state;
//!     }
//! });
//!
//! // Writes work from any node (forwarded to the leader).
//! let vip = VipKey { address: "192.0.2.1".parse()?, port: 443, protocol: Protocol::Tcp };
//! node.write(Command::AddVip { key: vip, flags: VipFlags::default(), encapsulation: Encapsulation::IpIp }).await?;
//! let receipt = node.write(Command::AddBackend {
//!     vip,
//!     backend: Backend { address: "10.1.0.7".parse()?, weight: 100, state: BackendState::Active },
//! }).await?;
//! println!("table at version {}", receipt.version);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client_router;
pub mod cluster_state;
pub mod command;
pub mod config;
pub mod encoding;
pub mod error;
mod node;
pub mod raft_types;
pub mod storage;
pub mod transport;

// The transport's modules keep their original paths (`edgelb_consensus::wire`,
// `edgelb_consensus::network`), which tests and tools use.
pub use transport::{network, wire};

pub use cluster_state::{
    Backend, BackendState, ClusterSettings, ClusterState, ConnectionSettings, Encapsulation,
    FloodAdmission, History, MaglevInput, PreviousTable, Protocol, StateAdditions, Vip, VipFlags,
    VipKey, PREVIOUS_HISTORY_LEN,
};
pub use command::{Command, CommandError};
pub use config::{ConsensusConfig, Timeouts};
pub use error::ConsensusError;
pub use node::{ConsensusNode, NodeStatus, Role};
pub use raft_types::NodeId;
pub use transport::wire::channel::ClusterSecret;
pub use transport::wire::message::{MembershipChange, WriteReceipt};
