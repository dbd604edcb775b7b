//! EdgeLB's announce-only BGP speaker.
//!
//! Each node announces its VIPs (IPv4 /32, IPv6 /128, or aggregates) to its
//! upstream routers so they spread flows over nodes by ECMP. The speaker
//! never installs routes; it only sends them.
//!
//! Layers, from the wire up:
//! - [`wire`]: framing, decoding with RFC 4271 error codes (netgauze-bgp-pkt does the codec);
//! - [`negotiation`]: our OPEN and the checks on the peer's;
//! - [`rib_out`]: what a peer has from us and the UPDATEs that converge it;
//! - [`fsm`]: the session state machine, free of I/O;
//! - `session`, `peer`: the tokio transport driving the FSM;
//! - [`BgpSpeaker`]: the API for the node daemon.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use edgelb_bgp::{BgpSpeaker, DesiredRoutes, PeerConfig, RouteAttributes, SpeakerConfig};
//! let config = SpeakerConfig {
//!     local_asn: 65010,
//!     router_id: "10.0.0.2".parse()?,
//!     listen: None,
//!     graceful_restart: None,
//!     peers: vec![PeerConfig::new("10.0.0.1".parse()?, 65000)],
//! };
//! let speaker = BgpSpeaker::start(config).await?;
//! let mut routes = DesiredRoutes::new();
//! routes.insert("192.0.2.10/32".parse()?, RouteAttributes::default())?;
//! speaker.set_desired(routes);
//! // ... later
//! speaker.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod collision;
pub mod config;
pub mod fsm;
pub mod negotiation;
mod peer;
pub mod rib_out;
pub mod route;
mod session;
pub mod speaker;
pub mod stats;
pub mod wire;

pub use config::{GracefulRestartConfig, PeerConfig, PeerMode, SpeakerConfig};
pub use route::{DesiredRoutes, RouteAttributes, RouteError};
pub use speaker::{BgpSpeaker, SpeakerError};
pub use stats::{PeerSnapshot, PeerState};

/// Re-exported so callers can name prefixes without adding the dependency.
pub use ipnet::IpNet;
