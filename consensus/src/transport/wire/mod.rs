//! The peer-to-peer wire protocol: frames, authenticated channels, messages.

pub mod channel;
pub mod frame;
pub mod message;
