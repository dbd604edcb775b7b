//! Benchmarks run on the simulated cluster: how fast a CLI write reaches
//! every node's BPF maps, and how many packets per second one LB node
//! forwards with EdgeLB's XDP against the kernel's plain IP forwarding.
//! Results are medians over rounds (testbed::stats); BENCHMARKS.md records them.

pub mod apply_batch;
pub mod convergence;
pub mod cpu;
pub mod pps;
pub mod udp_flood;
