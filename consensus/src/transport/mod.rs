//! Everything between cluster members: the wire protocol ([`wire`]), the
//! client side of peer connections ([`network`]: openraft's `RaftNetwork`
//! and the forwarding client) and the server side (`server`).

pub mod network;
pub(crate) mod server;
pub mod wire;
