//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fake_peer;
pub mod netns;
pub mod routers;
pub mod lb;
