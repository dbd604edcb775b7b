//! Errors returned by [`ConsensusNode`](crate::ConsensusNode).

use std::time::Duration;

use crate::command::CommandError;
use crate::storage::StoreError;

/// Why a consensus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The command is invalid; nothing was changed.
    #[error("command rejected: {0}")]
    Rejected(#[from] CommandError),
    /// No leader could be reached in time; nothing was changed.
    #[error("no leader reachable within {0:?}")]
    NoLeader(Duration),
    /// The operation may or may not have taken effect (connection lost or
    /// timed out after the request was sent). Read the state to find out.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// A membership change was refused.
    #[error("membership change failed: {0}")]
    Membership(String),
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The on-disk store failed.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// Binding the listen socket failed.
    #[error("listen: {0}")]
    Listen(std::io::Error),
    /// The Raft core failed or has stopped.
    #[error("raft: {0}")]
    Raft(String),
}
