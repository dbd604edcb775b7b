//! Deterministic, weighted Maglev lookup tables (see the crate docs).
