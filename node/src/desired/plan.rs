//! The difference between the cluster's table and a [`DesiredState`]: the
//! changes an operator reviews (`lbctl apply --dry-run`), the one batch that
//! makes them, and the share of each VIP's Maglev slots that would move.

use std::{collections::BTreeMap, net::IpAddr};

use edgelb_consensus::{Backend, ClusterState, Command, CommandError, Encapsulation, Vip, VipKey};

use super::{file::state_name, DesiredState};
use crate::tables::{compute, TableError, TableSet};

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The VIP (`None` for the cluster settings).
    pub vip: Option<VipKey>,
    /// The backend, for a backend change.
    pub backend: Option<IpAddr>,
    /// What happens: `add`, `remove`, `weight`, `state`, `options`, `settings`.
    pub change: &'static str,
    /// The value before (`-` for an addition).
    pub old: String,
    /// The value after (`-` for a removal).
    pub new: String,
}

/// What applying a desired state would do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The table version the plan was computed from.
    pub from_version: u64,
    /// The changes, in the order the batch makes them.
    pub changes: Vec<Change>,
    /// The batch's entries (empty: nothing to do).
    pub commands: Vec<Command>,
    /// Per VIP whose table changes: the share (0..=1) of its slots that
    /// would point to another backend (1 for an added or removed VIP).
    pub moved: BTreeMap<VipKey, f64>,
    /// The table after the batch, as every node would compute it.
    pub next: ClusterState,
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The cluster would refuse the batch (the message names the entry).
    #[error("{0}")]
    Rejected(#[from] CommandError),
    /// Maglev tables could not be computed.
    #[error("{0}")]
    Tables(#[from] TableError),
}

fn encap(e: Encapsulation) -> String {
    match e {
        Encapsulation::IpIp => "ipip".into(),
        Encapsulation::Gue { port } => format!("gue:{port}"),
    }
}

fn options(v: &Vip) -> String {
    format!(
        "{} no-sport={} dport-only={}",
        encap(v.encapsulation),
        v.flags.hash_without_source_port,
        v.flags.hash_dst_port_only
    )
}

fn backend_text(b: &Backend) -> String {
    format!("weight {} {}", b.weight, state_name(b.state))
}

/// Collects changes and the commands that make them.
#[derive(Default)]
struct Builder {
    changes: Vec<Change>,
    commands: Vec<Command>,
}

impl Builder {
    fn push(&mut self, change: Change, command: Command) {
        self.changes.push(change);
        self.commands.push(command);
    }

    fn add_backend(&mut self, vip: VipKey, b: &Backend) {
        self.push(
            Change {
                vip: Some(vip),
                backend: Some(b.address),
                change: "add",
                old: "-".into(),
                new: backend_text(b),
            },
            Command::AddBackend { vip, backend: *b },
        );
    }

    /// Brings an existing VIP to `want` (removing unnamed backends if `prune`).
    fn update_vip(&mut self, have: &Vip, want: &Vip, prune: bool) {
        let key = want.key;
        if prune {
            for b in have.backends.values() {
                if !want.backends.contains_key(&b.address) {
                    self.push(
                        Change {
                            vip: Some(key),
                            backend: Some(b.address),
                            change: "remove",
                            old: backend_text(b),
                            new: "-".into(),
                        },
                        Command::RemoveBackend {
                            vip: key,
                            address: b.address,
                        },
                    );
                }
            }
        }
        if (have.flags, have.encapsulation) != (want.flags, want.encapsulation) {
            self.push(
                Change {
                    vip: Some(key),
                    backend: None,
                    change: "options",
                    old: options(have),
                    new: options(want),
                },
                Command::UpdateVip {
                    key,
                    flags: want.flags,
                    encapsulation: want.encapsulation,
                },
            );
        }
        for b in want.backends.values() {
            let Some(old) = have.backends.get(&b.address) else {
                self.add_backend(key, b);
                continue;
            };
            if old.weight != b.weight {
                self.push(
                    Change {
                        vip: Some(key),
                        backend: Some(b.address),
                        change: "weight",
                        old: old.weight.to_string(),
                        new: b.weight.to_string(),
                    },
                    Command::SetBackendWeight {
                        vip: key,
                        address: b.address,
                        weight: b.weight,
                    },
                );
            }
            if old.state != b.state {
                self.push(
                    Change {
                        vip: Some(key),
                        backend: Some(b.address),
                        change: "state",
                        old: state_name(old.state).into(),
                        new: state_name(b.state).into(),
                    },
                    Command::SetBackendState {
                        vip: key,
                        address: b.address,
                        state: b.state,
                    },
                );
            }
        }
    }
}

/// Computes what applying `desired` to `current` does. Without `prune`
/// only additions and updates are planned; with it, VIPs and backends the
/// file does not name are removed too. The batch is applied to a copy of
/// `current` here, exactly as every node will, so a plan that the cluster
/// would refuse fails now, naming the entry.
pub fn plan(
    current: &ClusterState,
    desired: &DesiredState,
    prune: bool,
) -> Result<Plan, PlanError> {
    let mut b = Builder::default();
    // Removals first: they free capacity the additions may need.
    if prune {
        for v in current.vips.values() {
            if !desired.vips.contains_key(&v.key) {
                b.push(
                    Change {
                        vip: Some(v.key),
                        backend: None,
                        change: "remove",
                        old: format!("{} backends", v.backends.len()),
                        new: "-".into(),
                    },
                    Command::RemoveVip { key: v.key },
                );
            }
        }
    }
    if let Some(s) = desired.settings {
        if s != current.settings {
            b.push(
                Change {
                    vip: None,
                    backend: None,
                    change: "settings",
                    old: format!(
                        "seed {} size {}",
                        current.settings.hash_seed, current.settings.table_size
                    ),
                    new: format!("seed {} size {}", s.hash_seed, s.table_size),
                },
                Command::SetSettings(s),
            );
        }
    }
    if let Some(c) = desired.connection {
        if c != current.connection {
            let show = |c: &edgelb_consensus::ConnectionSettings| {
                format!(
                    "window {} s flood {:?}",
                    c.second_hop_window_secs, c.flood_threshold
                )
            };
            b.push(
                Change {
                    vip: None,
                    backend: None,
                    change: "connection",
                    old: show(&current.connection),
                    new: show(&c),
                },
                Command::SetConnectionSettings(c),
            );
        }
    }
    for want in desired.vips.values() {
        match current.vips.get(&want.key) {
            Some(have) => b.update_vip(have, want, prune),
            None => {
                b.push(
                    Change {
                        vip: Some(want.key),
                        backend: None,
                        change: "add",
                        old: "-".into(),
                        new: options(want),
                    },
                    Command::AddVip {
                        key: want.key,
                        flags: want.flags,
                        encapsulation: want.encapsulation,
                    },
                );
                for backend in want.backends.values() {
                    b.add_backend(want.key, backend);
                }
            }
        }
    }
    let mut next = current.clone();
    next.apply(&Command::Batch {
        expect_version: None,
        commands: b.commands.clone(),
    })?;
    let moved = moved_shares(&compute(current)?, &compute(&next)?);
    Ok(Plan {
        from_version: current.version,
        changes: b.changes,
        commands: b.commands,
        moved,
        next,
    })
}

/// Per VIP whose slots change: the share that points elsewhere afterwards.
/// Slots are compared by backend address (indices shift as backends come
/// and go), as Maglev's own `TableDiff` matches them.
fn moved_shares(old: &TableSet, new: &TableSet) -> BTreeMap<VipKey, f64> {
    let owner = |t: &crate::tables::VipTable, slot: usize| -> Option<IpAddr> {
        let i = *t.slots.get(slot)?;
        t.backends.get(i as usize).copied()
    };
    let mut out = BTreeMap::new();
    for key in old.tables.keys().chain(new.tables.keys()) {
        let share = match (old.tables.get(key), new.tables.get(key)) {
            (Some(a), Some(b)) => {
                let size = a.slots.len().max(b.slots.len());
                if size == 0 {
                    continue;
                }
                let changed = (0..size).filter(|&s| owner(a, s) != owner(b, s)).count();
                changed as f64 / size as f64
            }
            _ => 1.0,
        };
        if share > 0.0 {
            out.insert(*key, share);
        }
    }
    out
}

#[cfg(test)]
mod tests;
