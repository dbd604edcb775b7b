//! The state the daemon's tasks share, built once by the start steps.

use std::sync::Mutex;

use edgelb_bgp::BgpSpeaker;
use edgelb_consensus::ConsensusNode;
use tokio::sync::watch;

use super::dataplane::{DataPlaneReader, Programmed};
use crate::config::Config;

/// Everything the tasks share.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// This node's Raft member.
    pub consensus: ConsensusNode,
    /// Read access to the data plane: only the sync loop writes its maps.
    pub dataplane: DataPlaneReader,
    /// Published programmed version/digest.
    pub programmed: watch::Receiver<Programmed>,
    /// The BGP speaker.
    pub bgp: BgpSpeaker,
    /// Whether routes are currently announced.
    pub announcing: watch::Receiver<bool>,
    /// Interfaces and their attach mode.
    pub attached: Mutex<Vec<(String, String)>>,
    /// Admin token (other nodes' admin APIs share it).
    pub admin_token: String,
}
