//! Applying a validated [`Command`] to a [`ClusterState`]: the one
//! deterministic transition every node runs for every committed entry.

use std::net::IpAddr;

use super::{Command, CommandError};
use crate::cluster_state::{Backend, ClusterState, Vip, VipKey};

impl ClusterState {
    /// Applies `command`: on success the version is bumped by one (unless
    /// the command repeats what is already recorded) and the resulting
    /// version returned; on error nothing changes.
    ///
    /// A change of any VIP's Maglev input records the input before it as
    /// that VIP's previous table (a batch counts as one change).
    pub fn apply(&mut self, command: &Command) -> Result<u64, CommandError> {
        let before = self.maglev_inputs();
        let version = self.version;
        let applied = self.apply_unrecorded(command)?;
        if self.version != version {
            self.record_previous(before);
        }
        Ok(applied)
    }

    /// [`ClusterState::apply`] without recording previous tables (a batch's
    /// entries: the batch records once).
    fn apply_unrecorded(&mut self, command: &Command) -> Result<u64, CommandError> {
        if let Command::Batch {
            expect_version,
            commands,
        } = command
        {
            return self.apply_batch(*expect_version, commands);
        }
        self.validate(command)?;
        // Validation passed, so every lookup below succeeds; the `if let`s only
        // avoid a panic path.
        match command {
            Command::AddVip {
                key,
                flags,
                encapsulation,
            } => {
                self.vips.insert(
                    *key,
                    Vip {
                        key: *key,
                        flags: *flags,
                        encapsulation: *encapsulation,
                        backends: Default::default(),
                    },
                );
            }
            Command::UpdateVip {
                key,
                flags,
                encapsulation,
            } => {
                if let Some(v) = self.vips.get_mut(key) {
                    v.flags = *flags;
                    v.encapsulation = *encapsulation;
                }
            }
            Command::RemoveVip { key } => {
                self.vips.remove(key);
                self.health.remove(key);
            }
            Command::AddBackend { vip, backend } => {
                if let Some(v) = self.vips.get_mut(vip) {
                    v.backends.insert(backend.address, *backend);
                }
            }
            Command::SetBackendWeight {
                vip,
                address,
                weight,
            } => {
                if let Some(b) = self.backend_mut(vip, address) {
                    b.weight = *weight;
                }
            }
            Command::SetBackendState {
                vip,
                address,
                state,
            } => {
                if let Some(b) = self.backend_mut(vip, address) {
                    b.state = *state;
                }
            }
            Command::RemoveBackend { vip, address } => {
                if let Some(v) = self.vips.get_mut(vip) {
                    v.backends.remove(address);
                }
                if let Some(h) = self.health.get_mut(vip) {
                    h.remove(address);
                    if h.is_empty() {
                        self.health.remove(vip);
                    }
                }
            }
            Command::SetSettings(settings) => {
                self.settings = *settings;
            }
            Command::SetConnectionSettings(settings) => {
                self.connection = *settings;
            }
            Command::ReportHealth {
                observer,
                vip,
                backend,
                healthy,
            } => {
                let observations = self
                    .health
                    .entry(*vip)
                    .or_default()
                    .entry(*backend)
                    .or_default();
                if observations.insert(*observer, *healthy) == Some(*healthy) {
                    return Ok(self.version);
                }
            }
            Command::SetAdminAddr { node, addr } => {
                if self.admin_addrs.insert(*node, *addr) == Some(*addr) {
                    return Ok(self.version);
                }
            }
            // Handled above, before validation.
            Command::Batch { .. } => return Ok(self.version),
        }
        self.version += 1;
        Ok(self.version)
    }

    /// Applies every entry, in order, to a copy of the state; the copy
    /// replaces this state only if every entry was accepted, with the
    /// version bumped once in all (not at all if nothing changed).
    pub(super) fn apply_batch(
        &mut self,
        expect_version: Option<u64>,
        commands: &[Command],
    ) -> Result<u64, CommandError> {
        if let Some(expected) = expect_version {
            if expected != self.version {
                return Err(CommandError::VersionMismatch {
                    expected,
                    actual: self.version,
                });
            }
        }
        let mut next = self.clone();
        for (index, command) in commands.iter().enumerate() {
            let result = if matches!(command, Command::Batch { .. }) {
                Err(CommandError::NestedBatch)
            } else {
                next.apply_unrecorded(command)
            };
            if let Err(error) = result {
                return Err(CommandError::InBatch {
                    index,
                    command: command.name().to_owned(),
                    field: error.field_in(command).to_owned(),
                    error: Box::new(error),
                });
            }
        }
        if next.version != self.version {
            next.version = self.version + 1;
            *self = next;
        }
        Ok(self.version)
    }

    fn backend_mut(&mut self, vip: &VipKey, address: &IpAddr) -> Option<&mut Backend> {
        self.vips.get_mut(vip)?.backends.get_mut(address)
    }
}
