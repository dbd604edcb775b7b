//! The admin API `lbctl` talks to: authenticated, length-prefixed JSON frames
//! over TCP. Every node serves it; writes go through Raft (forwarded to the
//! leader by the consensus layer), so any node can take them.

pub mod client;
pub mod frame;
pub mod protocol;
pub mod server;
