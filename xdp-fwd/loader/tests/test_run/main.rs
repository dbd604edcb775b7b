//! BPF_PROG_TEST_RUN fixtures: real frames through the real XDP program,
//! checking the verdict and the output frame byte for byte. Frames that are
//! forwarded arrive on `fwd0` of a [`RouteLab`](common::RouteLab) namespace
//! so `bpf_fib_lookup` sees real routes and neighbours. Needs root.
//!
//! One test target, a module per feature; the shared set-up (the loaded
//! forwarder, its settings, frame builders) is `common::fixture`.

#[path = "../common/mod.rs"]
mod common;

mod conn_cache;
mod flood;
mod forwarding;
mod icmp;
mod malformed;
mod programming;
mod routes;
mod second_hop;
mod vip_lookup;
