//! Builds Ethernet frames (IPv4/IPv6, TCP/UDP/ICMP, VLAN, options,
//! fragments) with correct checksums, and single headers for expected
//! tunnel output, for tests, benchmarks and the simulation. Pure: no I/O.

#![warn(missing_docs)]

pub mod checksum;
pub mod frame;
pub mod headers;

pub use frame::{tcp_flags, Fragment, FrameBuilder, L4};
