//! EdgeLB's test bed: everything a test, bench or the simulation needs to
//! build a small network on one machine and watch it.
//!
//! - [`alloc`]: the largest allocation a piece of code made (fuzz bounds).
//! - [`cpu`]: pinning a thread or process to one CPU.
//! - [`fuzz`]: the case budget, runtime and seeded generator fuzz targets share.
//! - [`namespace`]: network namespaces with guaranteed teardown, veth pairs.
//! - [`process`]: processes killed (SIGTERM, then SIGKILL) when their guard drops.
//! - [`routers`]: FRR, BIRD and GoBGP launchers, every file under the caller's dir.
//! - [`runtime`]: a tokio runtime whose sockets live inside a namespace.
//! - [`wait`]: polling until a condition holds, sync and async.
//! - [`routes`]: kernel routes and ECMP next hops seen from a namespace.
//! - [`stats`]: median, percentiles and interquartile mean for benches.
//!
//! Every resource is owned by a guard that removes it on drop, also when a
//! test panics, and names are unique per process, so a failing test leaves
//! nothing behind. aya's `NetNsGuard` is the model.

pub mod alloc;
pub mod command;
pub mod cpu;
pub mod fuzz;
pub mod namespace;
pub mod process;
pub mod routers;
pub mod routes;
pub mod runtime;
pub mod stats;
pub mod wait;

pub use command::{Error, Result};
pub use namespace::Namespace;
pub use process::ProcessGuard;
