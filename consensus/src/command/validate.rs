//! Checking a [`Command`] against a [`ClusterState`] without changing it:
//! the leader runs this before proposing, and every node again at apply time.

use std::net::IpAddr;

use super::{Command, CommandError};
use crate::cluster_state::{
    Backend, ClusterState, ConnectionSettings, Encapsulation, FloodAdmission, Vip, VipKey,
    MAX_BACKENDS_PER_VIP, MAX_FLOOD_THRESHOLD, MAX_SECOND_HOP_WINDOW_SECS, MAX_TABLE_SIZE,
    MAX_WEIGHT, MIN_TABLE_SIZE, MIN_WEIGHT,
};

/// Whether `address` can be a VIP or a backend (not unspecified, multicast
/// or broadcast): the rule every command is held to, for front ends that
/// check input before building commands.
pub fn check_address(address: IpAddr) -> Result<(), CommandError> {
    let reason = if address.is_unspecified() {
        "unspecified address"
    } else if address.is_multicast() {
        "multicast address"
    } else if matches!(address, IpAddr::V4(a) if a.is_broadcast()) {
        "broadcast address"
    } else {
        return Ok(());
    };
    Err(CommandError::BadAddress {
        address,
        reason: reason.to_owned(),
    })
}

fn check_weight(weight: u32) -> Result<(), CommandError> {
    if (MIN_WEIGHT..=MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(CommandError::WeightOutOfRange(weight))
    }
}

fn check_encapsulation(encapsulation: Encapsulation) -> Result<(), CommandError> {
    match encapsulation {
        Encapsulation::Gue { port: 0 } => Err(CommandError::BadGuePort),
        _ => Ok(()),
    }
}

/// Checks connection-keeping settings: each bound names its field.
pub fn check_connection_settings(settings: &ConnectionSettings) -> Result<(), CommandError> {
    let window = settings.second_hop_window_secs;
    if window > MAX_SECOND_HOP_WINDOW_SECS {
        return Err(CommandError::SecondHopWindowOutOfRange(window));
    }
    if let FloodAdmission::PerSecond(rate) = settings.flood_threshold {
        if rate == 0 || rate > MAX_FLOOD_THRESHOLD {
            return Err(CommandError::FloodThresholdOutOfRange(rate));
        }
    }
    Ok(())
}

impl ClusterState {
    /// The data plane carries one GUE destination port: a GUE VIP must use
    /// the port every other GUE VIP (`key` itself aside) uses.
    fn check_gue_port(
        &self,
        key: &VipKey,
        encapsulation: Encapsulation,
    ) -> Result<(), CommandError> {
        let Encapsulation::Gue { port } = encapsulation else {
            return Ok(());
        };
        let other =
            self.vips
                .values()
                .filter(|v| v.key != *key)
                .find_map(|v| match v.encapsulation {
                    Encapsulation::Gue { port: p } if p != port => Some(p),
                    _ => None,
                });
        match other {
            Some(existing) => Err(CommandError::GuePortConflict { port, existing }),
            None => Ok(()),
        }
    }

    /// Checks `command` against this state without changing anything.
    pub fn validate(&self, command: &Command) -> Result<(), CommandError> {
        match command {
            Command::AddVip {
                key, encapsulation, ..
            } => {
                check_address(key.address)?;
                check_encapsulation(*encapsulation)?;
                if self.vips.contains_key(key) {
                    return Err(CommandError::DuplicateVip(*key));
                }
                self.check_gue_port(key, *encapsulation)?;
            }
            Command::UpdateVip {
                key, encapsulation, ..
            } => {
                check_encapsulation(*encapsulation)?;
                self.vip(key)?;
                self.check_gue_port(key, *encapsulation)?;
            }
            Command::RemoveVip { key } => {
                self.vip(key)?;
            }
            Command::AddBackend { vip, backend } => {
                check_address(backend.address)?;
                check_weight(backend.weight)?;
                let v = self.vip(vip)?;
                if v.backends.contains_key(&backend.address) {
                    return Err(CommandError::DuplicateBackend {
                        vip: *vip,
                        backend: backend.address,
                    });
                }
                if v.backends.len() >= MAX_BACKENDS_PER_VIP {
                    return Err(CommandError::TooManyBackends(*vip));
                }
            }
            Command::SetBackendWeight {
                vip,
                address,
                weight,
            } => {
                check_weight(*weight)?;
                self.backend(vip, address)?;
            }
            Command::SetBackendState { vip, address, .. }
            | Command::RemoveBackend { vip, address } => {
                self.backend(vip, address)?;
            }
            Command::SetSettings(settings) => {
                let size = settings.table_size;
                // Primality is Maglev's own rule (maglev::TableSize).
                if !(MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&size)
                    || maglev::TableSize::new(size).is_err()
                {
                    return Err(CommandError::BadTableSize(size));
                }
            }
            Command::ReportHealth {
                observer,
                vip,
                backend,
                ..
            } => {
                self.backend(vip, backend)?;
                if !self.voters.contains(observer) {
                    return Err(CommandError::UnknownObserver(*observer));
                }
            }
            Command::SetAdminAddr { addr, .. } => {
                if addr.port() == 0 || check_address(addr.ip()).is_err() {
                    return Err(CommandError::BadAdminAddr(*addr));
                }
            }
            Command::SetConnectionSettings(settings) => check_connection_settings(settings)?,
            // A batch's entries depend on each other: validating one means
            // applying it to a copy.
            Command::Batch {
                expect_version,
                commands,
            } => {
                self.clone().apply_batch(*expect_version, commands)?;
            }
        }
        Ok(())
    }

    fn vip(&self, key: &VipKey) -> Result<&Vip, CommandError> {
        self.vips.get(key).ok_or(CommandError::UnknownVip(*key))
    }

    fn backend(&self, vip: &VipKey, address: &IpAddr) -> Result<&Backend, CommandError> {
        self.vip(vip)?
            .backends
            .get(address)
            .ok_or(CommandError::UnknownBackend {
                vip: *vip,
                backend: *address,
            })
    }
}
