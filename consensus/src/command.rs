//! Commands that change the backend table, their validation and their effect.
//!
//! [`ClusterState::apply`] is the one deterministic transition function: it
//! either applies a command completely and bumps the version, or rejects it
//! with a [`CommandError`] and changes nothing. The leader runs the same
//! validation before proposing, so bad commands are normally refused before
//! they reach the log; a command that becomes invalid while in flight (two
//! racing adds of the same VIP) is rejected at apply time, identically on
//! every node.
//!
//! Wire compatibility: variants are only ever appended, never reordered, as
//! bincode encodes the variant index (pinned by golden tests).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{
    Backend, BackendState, ClusterSettings, ClusterState, Encapsulation, NodeId, Vip, VipFlags,
    VipKey, MAX_BACKENDS_PER_VIP, MAX_TABLE_SIZE, MAX_WEIGHT, MIN_TABLE_SIZE, MIN_WEIGHT,
};

/// A change to the replicated table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create a VIP with no backends.
    AddVip {
        /// Identity of the new VIP.
        key: VipKey,
        /// Hashing options.
        flags: VipFlags,
        /// Tunnel towards the backends.
        encapsulation: Encapsulation,
    },
    /// Change the options of an existing VIP (backends are kept).
    UpdateVip {
        /// The VIP to change.
        key: VipKey,
        /// New hashing options.
        flags: VipFlags,
        /// New tunnel.
        encapsulation: Encapsulation,
    },
    /// Delete a VIP and all its backends.
    RemoveVip {
        /// The VIP to delete.
        key: VipKey,
    },
    /// Add a backend to a VIP.
    AddBackend {
        /// The VIP.
        vip: VipKey,
        /// The new backend.
        backend: Backend,
    },
    /// Change the weight of a backend.
    SetBackendWeight {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
        /// New weight in `MIN_WEIGHT..=MAX_WEIGHT`.
        weight: u32,
    },
    /// Change the administrative state of a backend.
    SetBackendState {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
        /// New state.
        state: BackendState,
    },
    /// Remove a backend from a VIP.
    RemoveBackend {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        address: IpAddr,
    },
    /// Replace the cluster settings.
    SetSettings(ClusterSettings),
    /// A voter's health check result for a backend. A backend is treated as
    /// down once a majority of voters observe it unhealthy. Repeating the
    /// current observation is accepted and changes nothing.
    ReportHealth {
        /// The observing node (must be a voter).
        observer: NodeId,
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        backend: IpAddr,
        /// Whether the check passed.
        healthy: bool,
    },
    /// A member's admin API address (each daemon registers its own).
    SetAdminAddr {
        /// The member.
        node: NodeId,
        /// Where its admin API listens (a routable address, not 0.0.0.0).
        addr: std::net::SocketAddr,
    },
}

/// Why a command was rejected. A rejected command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    /// `AddVip` for a key that already exists.
    #[error("VIP {0} already exists")]
    DuplicateVip(VipKey),
    /// The command names a VIP that does not exist.
    #[error("unknown VIP {0}")]
    UnknownVip(VipKey),
    /// `AddBackend` for an address already present in the VIP.
    #[error("backend {backend} already exists in VIP {vip}")]
    DuplicateBackend {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        backend: IpAddr,
    },
    /// The command names a backend that the VIP does not have.
    #[error("unknown backend {backend} in VIP {vip}")]
    UnknownBackend {
        /// The VIP.
        vip: VipKey,
        /// The backend's address.
        backend: IpAddr,
    },
    /// Weight outside `MIN_WEIGHT..=MAX_WEIGHT`.
    #[error("weight {0} out of range {MIN_WEIGHT}..={MAX_WEIGHT}")]
    WeightOutOfRange(u32),
    /// An address that cannot be a VIP or a backend (unspecified, multicast,
    /// broadcast).
    #[error("bad address {address}: {reason}")]
    BadAddress {
        /// The offending address.
        address: IpAddr,
        /// Why it is refused.
        reason: String,
    },
    /// A GUE tunnel with destination port 0.
    #[error("GUE encapsulation needs a non-zero UDP port")]
    BadGuePort,
    /// The VIP already has `MAX_BACKENDS_PER_VIP` backends.
    #[error("VIP {0} already has the maximum of {MAX_BACKENDS_PER_VIP} backends")]
    TooManyBackends(VipKey),
    /// Table size not a prime in `MIN_TABLE_SIZE..=MAX_TABLE_SIZE`.
    #[error("table size {0} must be a prime in {MIN_TABLE_SIZE}..={MAX_TABLE_SIZE}")]
    BadTableSize(u32),
    /// A health report from a node that is not a voter.
    #[error("node {0} is not a voter and cannot report health")]
    UnknownObserver(NodeId),
    /// An admin address other nodes could not connect to.
    #[error("admin address {0}: must be a routable address with a non-zero port")]
    BadAdminAddr(std::net::SocketAddr),
    /// A GUE port other than the one the cluster's GUE VIPs already use:
    /// the data plane has one GUE destination port.
    #[error(
        "GUE port {port}: the cluster's GUE VIPs use port {existing} (one GUE port per cluster)"
    )]
    GuePortConflict {
        /// The port asked for.
        port: u16,
        /// The port the other GUE VIPs use.
        existing: u16,
    },
}

fn check_address(address: IpAddr) -> Result<(), CommandError> {
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
        }
        Ok(())
    }

    /// Applies `command`: on success the version is bumped by one (unless
    /// the command repeats what is already recorded) and the resulting
    /// version returned; on error nothing changes.
    pub fn apply(&mut self, command: &Command) -> Result<u64, CommandError> {
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
        }
        self.version += 1;
        Ok(self.version)
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

    fn backend_mut(&mut self, vip: &VipKey, address: &IpAddr) -> Option<&mut Backend> {
        self.vips.get_mut(vip)?.backends.get_mut(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn key() -> VipKey {
        VipKey {
            address: "192.0.2.10".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn add_vip() -> Command {
        Command::AddVip {
            key: key(),
            flags: VipFlags::default(),
            encapsulation: Encapsulation::IpIp,
        }
    }

    fn backend(addr: &str, weight: u32) -> Backend {
        Backend {
            address: addr.parse().unwrap(),
            weight,
            state: BackendState::Active,
        }
    }

    fn rejected(state: &mut ClusterState, cmd: Command) -> CommandError {
        let before = state.clone();
        let err = state.apply(&cmd).unwrap_err();
        assert_eq!(*state, before, "a rejected command must change nothing");
        err
    }

    #[test]
    fn accepted_commands_bump_the_version() {
        let mut s = ClusterState::default();
        assert_eq!(s.apply(&add_vip()), Ok(1));
        let b = backend("10.0.0.1", 10);
        assert_eq!(
            s.apply(&Command::AddBackend {
                vip: key(),
                backend: b
            }),
            Ok(2)
        );
        let set = Command::SetBackendWeight {
            vip: key(),
            address: b.address,
            weight: 20,
        };
        assert_eq!(s.apply(&set), Ok(3));
        let drain = Command::SetBackendState {
            vip: key(),
            address: b.address,
            state: BackendState::Draining,
        };
        assert_eq!(s.apply(&drain), Ok(4));
        let got = s.vips[&key()].backends[&b.address];
        assert_eq!((got.weight, got.state), (20, BackendState::Draining));
        assert_eq!(
            s.apply(&Command::RemoveBackend {
                vip: key(),
                address: b.address
            }),
            Ok(5)
        );
        assert!(s.vips[&key()].backends.is_empty());
        assert_eq!(s.apply(&Command::RemoveVip { key: key() }), Ok(6));
        assert!(s.vips.is_empty());
    }

    #[test]
    fn admin_addresses_are_recorded_once_and_must_be_reachable() {
        let mut s = ClusterState::default();
        let set = |addr: &str| Command::SetAdminAddr {
            node: 4,
            addr: addr.parse().unwrap(),
        };
        assert_eq!(s.apply(&set("10.0.0.4:7100")), Ok(1));
        assert_eq!(
            s.apply(&set("10.0.0.4:7100")),
            Ok(1),
            "repeating changes nothing"
        );
        assert_eq!(s.apply(&set("[2001:db8::4]:7100")), Ok(2));
        for bad in ["0.0.0.0:7100", "10.0.0.4:0", "224.0.0.1:7100"] {
            assert_eq!(
                rejected(&mut s, set(bad)),
                CommandError::BadAdminAddr(bad.parse().unwrap())
            );
        }
        assert_eq!(s.admin_addrs[&4], "[2001:db8::4]:7100".parse().unwrap());
    }

    #[test]
    fn gue_vips_share_one_port() {
        let gue = |port| Encapsulation::Gue { port };
        let other = VipKey { port: 443, ..key() };
        let mut s = ClusterState::default();
        let add = |k, e| Command::AddVip {
            key: k,
            flags: VipFlags::default(),
            encapsulation: e,
        };
        let update = |k, e| Command::UpdateVip {
            key: k,
            flags: VipFlags::default(),
            encapsulation: e,
        };
        s.apply(&add(key(), gue(6080))).unwrap();
        // Alone, a GUE VIP may change its port.
        s.apply(&update(key(), gue(7000))).unwrap();
        assert_eq!(
            rejected(&mut s, add(other, gue(6080))),
            CommandError::GuePortConflict {
                port: 6080,
                existing: 7000
            }
        );
        s.apply(&add(other, gue(7000))).unwrap();
        assert_eq!(
            rejected(&mut s, update(key(), gue(6080))),
            CommandError::GuePortConflict {
                port: 6080,
                existing: 7000
            }
        );
        // IPIP VIPs are not concerned.
        s.apply(&update(key(), Encapsulation::IpIp)).unwrap();
        s.apply(&update(other, gue(6080))).unwrap();
    }

    #[test]
    fn bad_commands_are_rejected_without_change() {
        let mut s = ClusterState::default();
        s.apply(&add_vip()).unwrap();
        s.apply(&Command::AddBackend {
            vip: key(),
            backend: backend("10.0.0.1", 1),
        })
        .unwrap();

        assert_eq!(
            rejected(&mut s, add_vip()),
            CommandError::DuplicateVip(key())
        );
        assert!(matches!(
            rejected(
                &mut s,
                Command::AddBackend {
                    vip: key(),
                    backend: backend("10.0.0.1", 1)
                }
            ),
            CommandError::DuplicateBackend { .. }
        ));
        assert!(matches!(
            rejected(
                &mut s,
                Command::RemoveBackend {
                    vip: key(),
                    address: "10.0.0.9".parse().unwrap()
                }
            ),
            CommandError::UnknownBackend { .. }
        ));
        for w in [0, MAX_WEIGHT + 1] {
            assert_eq!(
                rejected(
                    &mut s,
                    Command::AddBackend {
                        vip: key(),
                        backend: backend("10.0.0.2", w)
                    }
                ),
                CommandError::WeightOutOfRange(w)
            );
        }
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
            assert!(matches!(
                rejected(
                    &mut s,
                    Command::AddBackend {
                        vip: key(),
                        backend: backend(bad, 1)
                    }
                ),
                CommandError::BadAddress { .. }
            ));
        }
        let mut other = key();
        other.port = 81;
        assert_eq!(
            rejected(&mut s, Command::RemoveVip { key: other }),
            CommandError::UnknownVip(other)
        );
        assert_eq!(
            rejected(
                &mut s,
                Command::AddVip {
                    key: other,
                    flags: VipFlags::default(),
                    encapsulation: Encapsulation::Gue { port: 0 }
                }
            ),
            CommandError::BadGuePort
        );
        for size in [65_536, 13, 2_000_003] {
            assert_eq!(
                rejected(
                    &mut s,
                    Command::SetSettings(ClusterSettings {
                        hash_seed: 1,
                        table_size: size
                    })
                ),
                CommandError::BadTableSize(size)
            );
        }
        assert_eq!(s.version, 2);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Log entries are decoded by every node, across versions: pin the bytes.
    /// Expected values derived by hand from bincode 2's standard config
    /// (variant index and integers as varints: <251 one byte, 0xfb + u16,
    /// 0xfc + u32, 0xfd + u64, little endian; IpAddr as variant + octets).
    #[test]
    fn golden_command_encoding() {
        use crate::encoding::{decode, encode};
        let cases = [
            (
                Command::AddVip {
                    key: key(),
                    flags: VipFlags::default(),
                    encapsulation: Encapsulation::Gue { port: 6080 },
                },
                "00".to_string() + "00c000020a" + "50" + "00" + "0000" + "01fbc017",
            ),
            (
                Command::AddBackend {
                    vip: VipKey {
                        address: "2001:db8::1".parse().unwrap(),
                        port: 443,
                        protocol: Protocol::Udp,
                    },
                    backend: Backend {
                        address: "10.0.0.1".parse().unwrap(),
                        weight: 300,
                        state: BackendState::Draining,
                    },
                },
                "0301".to_string()
                    + "20010db8000000000000000000000001"
                    + "fbbb01"
                    + "01"
                    + "000a000001"
                    + "fb2c01"
                    + "01",
            ),
            (
                Command::SetSettings(ClusterSettings {
                    hash_seed: 0x0123_4567_89ab_cdef,
                    table_size: 65_537,
                }),
                "07fdefcdab8967452301fc01000100".to_string(),
            ),
        ];
        for (command, expected) in cases {
            let bytes = encode(&command).unwrap();
            assert_eq!(hex(&bytes), expected, "{command:?}");
            assert_eq!(decode::<Command>(&bytes).unwrap(), command);
        }
    }

    #[test]
    fn update_vip_changes_options_and_keeps_backends() {
        let mut s = ClusterState::default();
        s.apply(&add_vip()).unwrap();
        s.apply(&Command::AddBackend {
            vip: key(),
            backend: backend("10.0.0.1", 3),
        })
        .unwrap();
        let flags = VipFlags {
            hash_without_source_port: true,
            hash_dst_port_only: false,
        };
        let update = Command::UpdateVip {
            key: key(),
            flags,
            encapsulation: Encapsulation::Gue { port: 9000 },
        };
        assert_eq!(s.apply(&update), Ok(3));
        let v = &s.vips[&key()];
        assert_eq!(
            (v.flags, v.encapsulation),
            (flags, Encapsulation::Gue { port: 9000 })
        );
        assert_eq!(v.backends.len(), 1);
        assert_eq!(
            rejected(
                &mut s,
                Command::UpdateVip {
                    key: key(),
                    flags,
                    encapsulation: Encapsulation::Gue { port: 0 }
                }
            ),
            CommandError::BadGuePort
        );
    }

    #[test]
    fn settings_accept_documented_primes() {
        let mut s = ClusterState::default();
        for size in [16_381, 65_537, 131_071, 655_373] {
            s.apply(&Command::SetSettings(ClusterSettings {
                hash_seed: 7,
                table_size: size,
            }))
            .unwrap();
            assert_eq!(s.settings.table_size, size);
        }
    }

    fn report(observer: NodeId, healthy: bool) -> Command {
        Command::ReportHealth {
            observer,
            vip: key(),
            backend: "10.0.0.1".parse().unwrap(),
            healthy,
        }
    }

    #[test]
    fn a_backend_is_down_once_a_majority_of_voters_says_so() {
        let b: IpAddr = "10.0.0.1".parse().unwrap();
        let mut s = ClusterState::default();
        s.set_voters([1, 2, 3].into());
        s.apply(&add_vip()).unwrap();
        s.apply(&Command::AddBackend {
            vip: key(),
            backend: backend("10.0.0.1", 5),
        })
        .unwrap();
        let v = s.version;
        assert_eq!(
            rejected(&mut s, report(9, false)),
            CommandError::UnknownObserver(9)
        );
        s.apply(&report(1, false)).unwrap();
        assert_eq!(s.effective_state(&key(), &b), Some(BackendState::Active));
        // Repeating an observation is accepted but changes nothing.
        assert_eq!(s.apply(&report(1, false)), Ok(v + 1));
        s.apply(&report(2, false)).unwrap();
        assert!(s.is_health_down(&key(), &b));
        assert_eq!(s.effective_state(&key(), &b), Some(BackendState::Down));
        s.apply(&report(2, true)).unwrap();
        assert_eq!(s.effective_state(&key(), &b), Some(BackendState::Active));
        s.apply(&report(3, false)).unwrap();
        assert!(s.is_health_down(&key(), &b));
        // Node 3 leaves: its observation no longer counts (1 of 2 voters).
        let before = s.version;
        s.set_voters([1, 2].into());
        assert_eq!(s.version, before + 1);
        assert!(!s.is_health_down(&key(), &b));
        // Removing the backend forgets its observations.
        s.apply(&Command::RemoveBackend {
            vip: key(),
            address: b,
        })
        .unwrap();
        assert!(s.health.is_empty());
    }

    #[test]
    fn backend_limit_is_enforced() {
        let mut s = ClusterState::default();
        s.apply(&add_vip()).unwrap();
        for i in 0..MAX_BACKENDS_PER_VIP as u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0001 + i));
            s.apply(&Command::AddBackend {
                vip: key(),
                backend: Backend {
                    address: addr,
                    weight: 1,
                    state: BackendState::Active,
                },
            })
            .unwrap();
        }
        assert_eq!(
            rejected(
                &mut s,
                Command::AddBackend {
                    vip: key(),
                    backend: backend("192.0.2.200", 1)
                }
            ),
            CommandError::TooManyBackends(key())
        );
    }
}
