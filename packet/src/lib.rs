//! Builds Ethernet frames (IPv4/IPv6, TCP/UDP) with correct checksums, for
//! tests, benchmarks and the simulation. Pure: no I/O.

pub mod checksum;
pub mod frame;

pub use frame::{FrameBuilder, L4};
