//! EdgeLB's node daemon (`lbnode`) and admin CLI (`lbctl`).
//!
//! The daemon ties the parts together: it follows the Raft-applied backend
//! table, computes Maglev tables, programs the XDP forwarder, health-checks
//! backends and announces VIPs by BGP while it is in sync with the cluster.

pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod desired;
pub mod health;
pub mod http;
pub mod located;
pub mod tables;
