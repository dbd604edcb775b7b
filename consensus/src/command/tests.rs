//! Commands against the table: acceptance, rejection without change, and
//! the pinned log encoding.

use std::net::IpAddr;

use super::*;
use crate::cluster_state::{ClusterState, NodeId, Protocol};

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

fn batch(expect_version: Option<u64>, commands: Vec<Command>) -> Command {
    Command::Batch {
        expect_version,
        commands,
    }
}

#[test]
fn a_batch_applies_entry_by_entry_with_one_version_bump() {
    let mut s = ClusterState::default();
    let mut commands = vec![add_vip()];
    for i in 1..=20 {
        commands.push(Command::AddBackend {
            vip: key(),
            backend: backend(&format!("10.0.0.{i}"), i),
        });
    }
    commands.push(Command::SetBackendWeight {
        vip: key(),
        address: "10.0.0.1".parse().unwrap(),
        weight: 77,
    });
    assert_eq!(s.apply(&batch(Some(0), commands)), Ok(1));
    let v = &s.vips[&key()];
    assert_eq!(v.backends.len(), 20);
    assert_eq!(
        v.backends[&"10.0.0.1".parse::<IpAddr>().unwrap()].weight,
        77
    );
    // An empty batch, or one that changes nothing, leaves the version.
    assert_eq!(s.apply(&batch(None, vec![])), Ok(1));
    s.set_voters([1].into());
    s.apply(&report(1, true)).unwrap();
    let v = s.version;
    assert_eq!(s.apply(&batch(None, vec![report(1, true)])), Ok(v));
}

#[test]
fn a_bad_entry_rejects_the_whole_batch_and_names_it() {
    let mut s = ClusterState::default();
    s.apply(&add_vip()).unwrap();
    let good = Command::AddBackend {
        vip: key(),
        backend: backend("10.0.0.1", 5),
    };
    let cases = [
        (
            Command::AddBackend {
                vip: key(),
                backend: backend("10.0.0.2", 0),
            },
            "backend.weight",
            CommandError::WeightOutOfRange(0),
        ),
        (good.clone(), "backend.address", {
            CommandError::DuplicateBackend {
                vip: key(),
                backend: "10.0.0.1".parse().unwrap(),
            }
        }),
        (
            Command::RemoveVip {
                key: VipKey { port: 81, ..key() },
            },
            "key",
            CommandError::UnknownVip(VipKey { port: 81, ..key() }),
        ),
        (batch(None, vec![]), "commands", CommandError::NestedBatch),
    ];
    for (bad, field, error) in cases {
        let err = rejected(&mut s, batch(None, vec![good.clone(), bad.clone()]));
        assert_eq!(
            err,
            CommandError::InBatch {
                index: 1,
                command: bad.name().to_owned(),
                field: field.to_owned(),
                error: Box::new(error),
            }
        );
        assert!(
            err.to_string()
                .starts_with(&format!("batch entry 1 ({}), field `{field}`", bad.name())),
            "{err}"
        );
        // The leader's pre-check gives the same answer without applying.
        assert_eq!(s.validate(&batch(None, vec![good.clone(), bad])), Err(err));
    }
    assert!(s.vips[&key()].backends.is_empty());
}

#[test]
fn a_batch_expecting_another_version_is_refused() {
    let mut s = ClusterState::default();
    s.apply(&add_vip()).unwrap();
    let add = Command::AddBackend {
        vip: key(),
        backend: backend("10.0.0.1", 5),
    };
    assert_eq!(
        rejected(&mut s, batch(Some(0), vec![add.clone()])),
        CommandError::VersionMismatch {
            expected: 0,
            actual: 1
        }
    );
    assert_eq!(s.apply(&batch(Some(1), vec![add])), Ok(2));
}

/// The batch variant is appended (index 10); its entries encode as the
/// commands they are.
#[test]
fn golden_batch_encoding() {
    use crate::encoding::{decode, encode};
    let command = batch(
        Some(300),
        vec![
            Command::RemoveVip { key: key() },
            Command::SetSettings(ClusterSettings {
                hash_seed: 1,
                table_size: 251,
            }),
        ],
    );
    let bytes = encode(&command).unwrap();
    // variant 10 | Some(300) | 2 entries | RemoveVip 192.0.2.10:80/tcp | SetSettings 1, 251
    let expected = "0a".to_string()
        + "01fb2c01"
        + "02"
        + "02"
        + "00c000020a"
        + "50"
        + "00"
        + "07"
        + "01"
        + "fbfb00";
    assert_eq!(hex(&bytes), expected);
    assert_eq!(decode::<Command>(&bytes).unwrap(), command);
}

fn connection(window: u32, flood: crate::cluster_state::FloodAdmission) -> Command {
    Command::SetConnectionSettings(crate::cluster_state::ConnectionSettings {
        second_hop_window_secs: window,
        flood_threshold: flood,
    })
}

/// The connection-settings variant is appended (index 11); the flood
/// threshold's variants keep their order.
#[test]
fn golden_connection_settings_encoding() {
    use crate::cluster_state::FloodAdmission as F;
    use crate::encoding::{decode, encode};
    let cases = [
        // variant 11 | window 60 | node config
        (connection(60, F::NodeConfig), "0b3c00"),
        // variant 11 | window 0 | from capacity
        (connection(0, F::FromCapacity), "0b0001"),
        // variant 11 | window 3600 | off
        (connection(3600, F::Off), "0bfb100e02"),
        // variant 11 | window 30 | 5000 per second
        (connection(30, F::PerSecond(5000)), "0b1e03fb8813"),
    ];
    for (command, expected) in cases {
        let bytes = encode(&command).unwrap();
        assert_eq!(hex(&bytes), expected, "{command:?}");
        assert_eq!(decode::<Command>(&bytes).unwrap(), command);
    }
}

#[test]
fn connection_settings_are_bounded_and_name_their_field() {
    use crate::cluster_state::{
        ConnectionSettings, FloodAdmission as F, MAX_FLOOD_THRESHOLD, MAX_SECOND_HOP_WINDOW_SECS,
    };
    let mut s = ClusterState::default();
    assert_eq!(s.connection, ConnectionSettings::default());
    assert_eq!(s.connection.second_hop_window_secs, 60);
    let cases = [
        (
            connection(MAX_SECOND_HOP_WINDOW_SECS + 1, F::NodeConfig),
            "second_hop_window_secs",
            CommandError::SecondHopWindowOutOfRange(MAX_SECOND_HOP_WINDOW_SECS + 1),
        ),
        (
            connection(60, F::PerSecond(0)),
            "flood_threshold",
            CommandError::FloodThresholdOutOfRange(0),
        ),
        (
            connection(60, F::PerSecond(MAX_FLOOD_THRESHOLD + 1)),
            "flood_threshold",
            CommandError::FloodThresholdOutOfRange(MAX_FLOOD_THRESHOLD + 1),
        ),
        (
            connection(60, F::PerSecond(u64::MAX)),
            "flood_threshold",
            CommandError::FloodThresholdOutOfRange(u64::MAX),
        ),
    ];
    for (bad, field, error) in cases {
        assert_eq!(rejected(&mut s, bad.clone()), error);
        assert!(error.to_string().starts_with(field), "{error}");
        let err = rejected(&mut s, batch(None, vec![bad.clone()]));
        assert!(
            err.to_string().contains(&format!("field `{field}`")),
            "{err}"
        );
    }
    assert_eq!(s.version, 0);
    for good in [
        connection(0, F::Off),
        connection(MAX_SECOND_HOP_WINDOW_SECS, F::PerSecond(1)),
        connection(60, F::PerSecond(MAX_FLOOD_THRESHOLD)),
        connection(60, F::FromCapacity),
    ] {
        s.apply(&good).unwrap();
        let Command::SetConnectionSettings(want) = good else {
            unreachable!()
        };
        assert_eq!(s.connection, want);
    }
    // The format-1 settings are untouched by the new command.
    assert_eq!(s.settings, ClusterSettings::default());
}

fn input_addresses(s: &ClusterState) -> Option<(u64, Vec<IpAddr>)> {
    let p = s.history.get(&key())?.first()?;
    Some((
        p.since_version,
        p.input.backends.iter().map(|b| b.address).collect(),
    ))
}

fn addrs(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

/// Every change of a VIP's Maglev input keeps the input before it; changes
/// that leave the input alone keep the previous one; a batch is one change.
#[test]
fn the_previous_table_is_the_input_before_the_latest_change() {
    let mut s = ClusterState::default();
    s.apply(&add_vip()).unwrap();
    assert_eq!(input_addresses(&s), None, "a new VIP has no previous table");
    let add = |a: &str| Command::AddBackend {
        vip: key(),
        backend: backend(a, 1),
    };
    s.apply(&add("10.0.0.1")).unwrap();
    assert_eq!(input_addresses(&s), Some((2, vec![])));
    s.apply(&add("10.0.0.2")).unwrap();
    assert_eq!(input_addresses(&s), Some((3, addrs(&["10.0.0.1"]))));
    // Options and settings that do not change the input keep it.
    s.apply(&Command::UpdateVip {
        key: key(),
        flags: VipFlags::default(),
        encapsulation: Encapsulation::Gue { port: 6080 },
    })
    .unwrap();
    s.apply(&connection(30, crate::cluster_state::FloodAdmission::Off))
        .unwrap();
    assert_eq!(input_addresses(&s), Some((3, addrs(&["10.0.0.1"]))));
    // A batch of two changes: the previous table is the one before both.
    let v = s
        .apply(&batch(None, vec![add("10.0.0.3"), add("10.0.0.4")]))
        .unwrap();
    assert_eq!(
        input_addresses(&s),
        Some((v, addrs(&["10.0.0.1", "10.0.0.2"])))
    );
    // Draining keeps the backend in the input, with its state.
    let v = s
        .apply(&Command::SetBackendState {
            vip: key(),
            address: "10.0.0.4".parse().unwrap(),
            state: BackendState::Draining,
        })
        .unwrap();
    let p = &s.history[&key()][0];
    assert_eq!(p.since_version, v);
    assert!(p
        .input
        .backends
        .iter()
        .all(|b| b.state == BackendState::Active));
    let now = s.maglev_input(&key()).unwrap();
    assert_eq!(now.backends[3].state, BackendState::Draining);
    // Health: a quorum observing a backend down is a change.
    s.set_voters([1].into());
    let before = s.maglev_input(&key()).unwrap();
    let v = s.apply(&report(1, false)).unwrap();
    assert_eq!(s.history[&key()][0].since_version, v);
    assert_eq!(s.history[&key()][0].input, before);
    assert_eq!(s.maglev_input(&key()).unwrap().backends.len(), 3);
    // A table size change is a change of every VIP's table.
    let v = s
        .apply(&Command::SetSettings(ClusterSettings {
            hash_seed: 0,
            table_size: 251,
        }))
        .unwrap();
    assert_eq!(s.history[&key()][0].since_version, v);
    assert_eq!(s.history[&key()][0].input.table_size, 65_537);
    // A rejected command records nothing.
    let kept = s.history.clone();
    rejected(&mut s, add("10.0.0.2"));
    assert_eq!(s.history, kept);
    s.apply(&Command::RemoveVip { key: key() }).unwrap();
    assert!(s.history.is_empty(), "a removed VIP has no previous table");
}

#[test]
fn previous_tables_are_deterministic() {
    let commands = [
        add_vip(),
        Command::AddBackend {
            vip: key(),
            backend: backend("10.0.0.2", 3),
        },
        Command::AddBackend {
            vip: key(),
            backend: backend("10.0.0.1", 5),
        },
        Command::SetBackendWeight {
            vip: key(),
            address: "10.0.0.2".parse().unwrap(),
            weight: 9,
        },
    ];
    let run = || {
        let mut s = ClusterState::default();
        for c in &commands {
            s.apply(c).unwrap();
        }
        s
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    let p = &a.history[&key()][0];
    assert_eq!(p.since_version, 4);
    // Address order, weights as they were.
    assert_eq!(
        p.input
            .backends
            .iter()
            .map(|b| (b.address, b.weight))
            .collect::<Vec<_>>(),
        vec![
            ("10.0.0.1".parse().unwrap(), 5),
            ("10.0.0.2".parse().unwrap(), 3)
        ]
    );
}

/// The history keeps every change's previous input, newest first, at most
/// `PREVIOUS_HISTORY_LEN`: the oldest goes first; changes that leave the
/// input alone push nothing.
#[test]
fn the_history_keeps_the_newest_inputs_in_order() {
    use crate::cluster_state::PREVIOUS_HISTORY_LEN;
    let mut s = ClusterState::default();
    s.apply(&add_vip()).unwrap();
    let history = |s: &ClusterState| -> Vec<(u64, Vec<IpAddr>)> {
        s.history[&key()]
            .iter()
            .map(|p| {
                let a = p.input.backends.iter().map(|b| b.address).collect();
                (p.since_version, a)
            })
            .collect()
    };
    let mut versions = Vec::new();
    for n in 1..=PREVIOUS_HISTORY_LEN + 2 {
        let v = s
            .apply(&Command::AddBackend {
                vip: key(),
                backend: backend(&format!("10.0.0.{n}"), 1),
            })
            .unwrap();
        versions.push(v);
        let h = history(&s);
        assert_eq!(h.len(), n.min(PREVIOUS_HISTORY_LEN));
        // The front is the input just before this change: n - 1 backends.
        assert_eq!(h[0].0, v);
        assert_eq!(h[0].1.len(), n - 1);
        // Newest first: versions strictly falling, inputs one backend less.
        for pair in h.windows(2) {
            assert!(pair[0].0 > pair[1].0);
            assert_eq!(pair[0].1.len(), pair[1].1.len() + 1);
        }
    }
    // The oldest two (the empty input and 10.0.0.1 alone) were dropped.
    let want: Vec<u64> = versions
        .iter()
        .rev()
        .take(PREVIOUS_HISTORY_LEN)
        .copied()
        .collect();
    assert_eq!(history(&s).iter().map(|e| e.0).collect::<Vec<_>>(), want);
    // A change elsewhere (options) pushes nothing.
    let before = s.history.clone();
    s.apply(&Command::UpdateVip {
        key: key(),
        flags: VipFlags::default(),
        encapsulation: Encapsulation::Gue { port: 6080 },
    })
    .unwrap();
    assert_eq!(s.history, before);
    // Back to an earlier input (X -> Y -> X) is a change like any other.
    let drain = |state| Command::SetBackendState {
        vip: key(),
        address: "10.0.0.1".parse().unwrap(),
        state,
    };
    let v1 = s.apply(&drain(BackendState::Draining)).unwrap();
    let v2 = s.apply(&drain(BackendState::Active)).unwrap();
    let h = &s.history[&key()];
    assert_eq!((h[0].since_version, h[1].since_version), (v2, v1));
    assert_eq!(h[0].input.backends[0].state, BackendState::Draining);
    assert_eq!(h[1].input, s.maglev_input(&key()).unwrap());
}

/// Every VIP keeps its own history; removing one VIP drops only its own.
#[test]
fn histories_are_per_vip() {
    let other = VipKey { port: 443, ..key() };
    let mut s = ClusterState::default();
    s.apply(&add_vip()).unwrap();
    s.apply(&Command::AddVip {
        key: other,
        flags: VipFlags::default(),
        encapsulation: Encapsulation::IpIp,
    })
    .unwrap();
    for (vip, a) in [
        (key(), "10.0.0.1"),
        (other, "10.0.0.2"),
        (key(), "10.0.0.3"),
    ] {
        s.apply(&Command::AddBackend {
            vip,
            backend: backend(a, 1),
        })
        .unwrap();
    }
    assert_eq!(s.history[&key()].len(), 2);
    assert_eq!(s.history[&other].len(), 1);
    s.apply(&Command::RemoveVip { key: key() }).unwrap();
    assert!(!s.history.contains_key(&key()));
    assert_eq!(s.history[&other].len(), 1);
}
