//! Cross-crate integration tests of EdgeLB live in `tests/`.
