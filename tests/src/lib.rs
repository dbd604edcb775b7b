//! Cross-crate integration tests of EdgeLB live in `tests/tests/`: they tie
//! several crates together where no single crate's tests can (for example
//! Raft → applied state → Maglev → BPF maps on several nodes at once).
