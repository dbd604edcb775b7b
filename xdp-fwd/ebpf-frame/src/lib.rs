//! What EdgeLB's two XDP programs (the forwarder on the LB nodes and the
//! decapsulator on the backends) both need from the kernel side: bounds-checked
//! frame access and the `bpf_fib_lookup` parameters. Each program keeps its own
//! header walking; only these pieces are the same in both.
#![no_std]

pub mod fib;
pub mod frame;
