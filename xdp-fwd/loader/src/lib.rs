//! Userspace side of EdgeLB's XDP forwarder: loads the eBPF program built by
//! `build.rs`, attaches it (driver mode in production), pins its maps so a
//! restarted daemon takes over without dropping traffic, and offers a typed
//! API over its maps: settings, VIPs, backends and Maglev tables, counters.
//!
//! Only the node's applied-state pipeline should call the map-writing
//! methods: Raft log -> applied state -> Maglev tables (built by the `maglev`
//! crate, never here) -> [`Forwarder::set_table`].
//!
//! The packet path, the policies for what is not forwarded, the table swap
//! and hot restart are described in `xdp-fwd/FORWARDER.md`.

#![warn(missing_docs)]

mod config;
mod forwarder;
mod kernel_hz;
pub mod model;
mod registry;
mod stats;
mod test_run;

pub use aya::programs::XdpMode;
pub use config::{
    check_flood_rate, protocol_number, Encap, FloodThreshold, ForwarderSettings, HashFields,
    VipOptions,
};
pub use forwarder::{flow_key, AttachMode, Capacity, Forwarder, LoadOptions, PassProgram};
pub use stats::Stats;
pub use test_run::TestRunOutput;
pub use vip_key::{Protocol, VipKey};
pub use xdp_fwd_common as common;
pub use xdp_fwd_common::NO_BACKEND;

/// The compiled eBPF object (bpfel ELF), embedded at build time.
pub static PROGRAM_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xdp-fwd"));

/// Name of the forwarding XDP program in [`PROGRAM_OBJECT`].
pub const PROGRAM_NAME: &str = "xdp_fwd";

/// Name of the pass-everything XDP program in [`PROGRAM_OBJECT`].
pub const PASS_PROGRAM_NAME: &str = "xdp_pass";

/// Errors from loading, attaching or programming the forwarder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be parsed or its maps created.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The verifier rejected the program, or attach/test-run failed.
    #[error("eBPF program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    /// A map operation failed.
    #[error("eBPF map: {0}")]
    Map(#[from] aya::maps::MapError),
    /// A device-map operation failed.
    #[error("device map: {0}")]
    DevMap(#[from] aya::maps::xdp::XdpMapError),
    /// A link could not be adopted or converted.
    #[error("XDP link: {0}")]
    Link(#[from] aya::programs::links::LinkError),
    /// Pinning to the BPF filesystem failed.
    #[error("pinning: {0}")]
    Pin(#[from] aya::pin::PinError),
    /// A filesystem operation (pin directory) failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A map or program the object must contain is missing.
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    /// A map is full.
    #[error("no room for more {0}")]
    Capacity(&'static str),
    /// The VIP is not configured.
    #[error("unknown VIP {0}")]
    UnknownVip(VipKey),
    /// The interface does not exist.
    #[error("unknown interface {0}")]
    UnknownInterface(String),
    /// Rejected input (table, settings, sizes), with the reason.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// XDP verdict numbers (`enum xdp_action`).
pub mod verdict {
    /// XDP_ABORTED.
    pub const ABORTED: u32 = 0;
    /// XDP_DROP.
    pub const DROP: u32 = 1;
    /// XDP_PASS.
    pub const PASS: u32 = 2;
    /// XDP_TX.
    pub const TX: u32 = 3;
    /// XDP_REDIRECT.
    pub const REDIRECT: u32 = 4;
}
