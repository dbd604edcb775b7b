//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fake_peer;
pub mod lab;
pub mod lb;
