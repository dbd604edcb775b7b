//! EdgeLB's network-namespace simulation: real routers, real daemons and real
//! XDP on veth pairs, all on one machine. It is the demo, the home of the
//! end-to-end tests, and the benchmark bed.
//!
//! Everything created here is owned by a guard that removes it on drop, and
//! names are unique per run, so a failing test never leaves state behind.

pub mod backend;
pub mod bench;
pub mod cluster;
pub mod pinning;
pub mod router;
pub mod scenario;
pub mod syn_flood;
pub mod teardown;
pub mod traffic;
