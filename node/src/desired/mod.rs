//! The desired-state file `lbctl apply` reads and `lbctl export` writes:
//! cluster settings, VIPs with their options, backends with weight and
//! admin state, in TOML (example: `deploy/desired-state.example.toml`).
//!
//! `file` parses it (every error carries the line and the field path) and
//! renders the canonical form; `plan` turns the difference between the
//! cluster's table and the file into one batch of commands.

mod file;
mod plan;

use std::collections::BTreeMap;

use edgelb_consensus::{ClusterSettings, ConnectionSettings, Vip, VipKey};

pub use self::{
    file::{parse, render, DesiredError},
    plan::{plan, Change, Plan, PlanError},
};

/// What a desired-state file says the cluster should hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredState {
    /// Cluster settings; `None` leaves the cluster's as they are.
    pub settings: Option<ClusterSettings>,
    /// Connection-keeping settings (`[connection]`); `None` leaves the
    /// cluster's as they are.
    pub connection: Option<ConnectionSettings>,
    /// Every VIP the file names, with its backends, by key.
    pub vips: BTreeMap<VipKey, Vip>,
}
