//! Hot restart: a second forwarder process adopts the pinned maps and link
//! of the first, with VIPs, tables, settings, counters and the connection
//! table intact, and the program stays attached in between; pins it must
//! not adopt (other capacities, another build's map types or counter
//! count) are refused.
//! Needs root.

mod common;

use std::{net::IpAddr, path::PathBuf, process::Command};

use common::*;
use packet_builder::{tcp_flags, FrameBuilder, L4};
use xdp_fwd::{
    common::stats::stat, verdict, AttachMode, Capacity, Encap, Forwarder, ForwarderSettings,
    HashFields, LoadOptions, Protocol, VipKey, VipOptions,
};

const M: usize = 13;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The capacity the tests load with (a restart must ask for the same to
/// adopt the pins).
const CAPACITY: Capacity = Capacity {
    vips: 4,
    backends: 16,
    table_size: 13,
    flows: 1024,
};

/// A private BPF filesystem mount, unmounted (with its pins) on drop.
struct BpfFs {
    dir: tempfile::TempDir,
}

impl BpfFs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        testbed::command::run("mount", ["-t", "bpf", "bpf", dir.path().to_str().unwrap()])
            .expect("mount a BPF filesystem");
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("edgelb")
    }

    /// Load options that pin under this mount, at `capacity`.
    fn options(&self, capacity: Capacity) -> LoadOptions {
        LoadOptions {
            pin_dir: Some(self.path()),
            capacity,
        }
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

fn outer_dst(frame: &[u8]) -> IpAddr {
    IpAddr::from(<[u8; 4]>::try_from(&frame[30..34]).unwrap())
}

#[test]
fn a_new_process_takes_over_pinned_maps_and_link() {
    let fs = BpfFs::mount();
    let lab = RouteLab::new("restart");
    let options = fs.options(CAPACITY);
    let settings = ForwarderSettings {
        hash_seed: 99,
        ..Default::default()
    };
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let vip_options = VipOptions {
        hash: HashFields::NoSourcePort,
        encap: Encap::IpIp,
    };
    let backends = [ip("10.200.0.1"), ip("10.200.0.2"), ip("10.200.0.3")];
    let syn = FrameBuilder::new(
        ip("192.0.2.10"),
        ip("203.0.113.7"),
        L4::Tcp {
            sport: 40000,
            dport: 80,
            flags: tcp_flags::SYN,
        },
    );
    let ack = FrameBuilder {
        l4: L4::Tcp {
            sport: 40000,
            dport: 80,
            flags: tcp_flags::ACK,
        },
        ..syn.clone()
    };

    // First process: program, attach, carry one connection.
    let (first_backend, first_prog) = lab.ns.run(|| {
        let mut a = Forwarder::load_with(options.clone()).unwrap();
        assert!(!a.adopted());
        a.set_settings(&settings).unwrap();
        a.set_vip(vip, vip_options).unwrap();
        a.set_table(&vip, &backends, &round_robin_table(M, 3))
            .unwrap();
        a.attach("fwd0", AttachMode::Driver).unwrap();
        let out = a.test_run_on(&syn.build(), lab.fwd0, 1).unwrap();
        assert_eq!(out.verdict, verdict::TX);
        (outer_dst(&out.frame), xdp_prog_id(&lab.ns, "fwd0"))
        // `a` is dropped here: the process is gone.
    });
    assert!(first_prog.is_some());
    assert_eq!(
        xdp_prog_id(&lab.ns, "fwd0"),
        first_prog,
        "still attached with no process"
    );

    // Second process: adopts everything.
    lab.ns.run(|| {
        let mut b = Forwarder::load_with(options.clone()).unwrap();
        assert!(b.adopted());
        assert_eq!(b.vips(), vec![(vip, vip_options)]);
        assert_eq!(b.settings().unwrap().hash_seed, 99);
        assert_eq!(
            b.stats().unwrap().get(stat::ACTION_TX),
            1,
            "counters survive"
        );
        assert_eq!(
            b.backend_for(&vip, ip("192.0.2.10"), 1).unwrap(),
            Some(first_backend)
        );

        // A new table moving every slot elsewhere: the established flow stays
        // (the connection table survived), a new client goes by the new table.
        let other = ip("10.200.0.99");
        b.set_table(&vip, &[first_backend, other], &[1; M]).unwrap();
        let out = b.test_run_on(&ack.build(), lab.fwd0, 1).unwrap();
        assert_eq!(outer_dst(&out.frame), first_backend);
        let mut new_client = syn.clone();
        new_client.src = ip("192.0.2.11");
        let out = b.test_run_on(&new_client.build(), lab.fwd0, 1).unwrap();
        assert_eq!(outer_dst(&out.frame), other);

        // Taking over the link swaps the program in place.
        b.attach("fwd0", AttachMode::Driver).unwrap();
        let now = xdp_prog_id(&lab.ns, "fwd0");
        assert!(
            now.is_some() && now != first_prog,
            "new program in the link: {now:?}"
        );
        b.detach("fwd0").unwrap();
    });
    assert_eq!(xdp_prog_id(&lab.ns, "fwd0"), None, "detached");

    // A process configured with other capacities must not adopt the maps.
    for capacity in [
        Capacity {
            table_size: 17,
            ..options.capacity
        },
        Capacity {
            flows: 2048,
            ..options.capacity
        },
    ] {
        let other = LoadOptions {
            capacity,
            ..options.clone()
        };
        match Forwarder::load_with(other) {
            Err(xdp_fwd::Error::Invalid(msg)) => assert!(msg.contains("pinned map"), "{msg}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("adopted maps of another size"),
        }
    }
    let again = Forwarder::load_with(options.clone()).unwrap();
    assert_eq!(
        again.vips(),
        vec![(vip, vip_options)],
        "a refused load changed nothing"
    );
    drop(again);
    Forwarder::remove_pins(&fs.path()).unwrap();
    assert!(!fs.path().exists());
}

/// Creates a map with the given type and shape and pins it at `path`
/// (stands for a pin left by another build of the program).
fn pin_foreign_map(path: &std::path::Path, map_type: u32, key: u32, value: u32, entries: u32) {
    use std::os::unix::ffi::OsStrExt;
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
    let mut attr = [0u8; 128];
    for (i, v) in [map_type, key, value, entries].iter().enumerate() {
        attr[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    // SAFETY: no pointers in these fields.
    let fd = unsafe { bpf_syscall(bpf_cmd::MAP_CREATE, &mut attr, "BPF_MAP_CREATE") };
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // BPF_OBJ_PIN: pathname, bpf_fd.
    let mut attr = [0u8; 128];
    attr[0..8].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
    attr[8..12].copy_from_slice(&(fd as u32).to_ne_bytes());
    // SAFETY: the path outlives the call.
    unsafe { bpf_syscall(bpf_cmd::OBJ_PIN, &mut attr, "BPF_OBJ_PIN") };
    // SAFETY: our descriptor; the pin keeps the map.
    unsafe { libc::close(fd as i32) };
}

#[test]
fn pins_of_other_capacities_or_another_build_are_refused() {
    let fs = BpfFs::mount();
    let capacity = CAPACITY;
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    {
        let mut first = Forwarder::load_with(fs.options(capacity)).unwrap();
        first.set_vip(vip, VipOptions::default()).unwrap();
    }

    // Other capacities: refused before anything is loaded; the pins stay
    // usable by a restart with the right ones.
    let err = Forwarder::load_with(fs.options(Capacity {
        flows: 4096,
        ..capacity
    }))
    .err()
    .expect("other capacities refused");
    assert!(
        err.to_string().contains("pinned map CONN_CACHE has"),
        "{err}"
    );
    let second = Forwarder::load_with(fs.options(capacity)).unwrap();
    assert!(second.adopted());
    assert_eq!(second.vips().len(), 1);
    drop(second);

    // The connection cache as an earlier build pinned it: a per-CPU array
    // of the same key, value and entry count. The kernel would let the
    // program use it; the loader must not.
    let conn = fs.path().join("CONN_CACHE");
    let entries = aya::maps::MapInfo::from_pin(&conn).unwrap().max_entries();
    let value = std::mem::size_of::<xdp_fwd::common::ConnSet>() as u32;
    std::fs::remove_file(&conn).unwrap();
    const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
    pin_foreign_map(&conn, BPF_MAP_TYPE_PERCPU_ARRAY, 4, value, entries);
    let err = Forwarder::load_with(fs.options(capacity))
        .err()
        .expect("a map of another type refused");
    assert!(
        err.to_string().contains("pinned map CONN_CACHE (type 6,")
            && err.to_string().contains("another build"),
        "{err}"
    );

    // Global counters as a build with another number of them pinned them.
    std::fs::remove_file(&conn).unwrap();
    let stats = fs.path().join("STATS");
    std::fs::remove_file(&stats).unwrap();
    pin_foreign_map(&stats, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, stat::COUNT + 1);
    let err = Forwarder::load_with(fs.options(capacity))
        .err()
        .expect("another number of counters refused");
    assert!(
        err.to_string().contains(&format!(
            "pinned map STATS has {} entries, this program's has {}",
            stat::COUNT + 1,
            stat::COUNT
        )),
        "{err}"
    );
}

#[test]
fn a_previous_table_survives_a_hot_restart() {
    let fs = BpfFs::mount();
    let lab = RouteLab::new("restarthop");
    let options = fs.options(CAPACITY);
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let (current, previous) = (ip("10.200.0.1"), ip("10.200.0.2"));
    let ack = FrameBuilder::new(
        ip("192.0.2.10"),
        ip("203.0.113.7"),
        L4::Tcp {
            sport: 40000,
            dport: 80,
            flags: tcp_flags::ACK,
        },
    );
    // Outer and middle destinations of an IPIP-form second-hop frame.
    let owners = |frame: &[u8]| {
        (
            outer_dst(frame),
            IpAddr::from(<[u8; 4]>::try_from(&frame[50..54]).unwrap()),
        )
    };
    lab.ns.run(|| {
        let mut a = Forwarder::load_with(options.clone()).unwrap();
        a.set_settings(&ForwarderSettings::default()).unwrap();
        a.set_vip(vip, VipOptions::default()).unwrap();
        a.set_table(&vip, &[previous], &[0; M]).unwrap();
        a.set_table_with_previous(&vip, &[current], &[0; M], Some((&[previous], &[0; M])))
            .unwrap();
        let out = a.test_run_on(&ack.build(), lab.fwd0, 1).unwrap();
        assert_eq!(owners(&out.frame), (current, previous));
    });
    lab.ns.run(|| {
        let mut b = Forwarder::load_with(options.clone()).unwrap();
        assert!(b.adopted());
        assert_eq!(
            b.owners_for(&vip, ip("192.0.2.10"), 40000).unwrap(),
            (Some(current), Some(previous)),
            "the previous table was recovered"
        );
        let out = b.test_run_on(&ack.build(), lab.fwd0, 1).unwrap();
        assert_eq!(owners(&out.frame), (current, previous));
        // Its backend stayed referenced, and goes with it.
        assert!(b.stats().unwrap().backends.contains_key(&previous));
        b.clear_previous(&vip).unwrap();
        assert!(!b.stats().unwrap().backends.contains_key(&previous));
        assert_eq!(
            b.owners_for(&vip, ip("192.0.2.10"), 40000).unwrap(),
            (Some(current), None)
        );
    });
    Forwarder::remove_pins(&fs.path()).unwrap();
}

/// Reads `count` RING slots from `first` of a pinned RING through the map
/// API (one lookup syscall each), not through a mapping.
fn read_pinned_ring(path: &std::path::Path, first: u32, count: u32) -> Vec<u32> {
    let data = aya::maps::MapData::from_pin(path).unwrap();
    let ring: aya::maps::Array<_, u32> =
        aya::maps::Array::try_from(aya::maps::Map::Array(data)).unwrap();
    (first..first + count)
        .map(|i| ring.get(&i, 0).unwrap())
        .collect()
}

#[test]
fn a_table_written_through_the_mapping_reads_back_and_a_non_mmapable_ring_is_refused() {
    let fs = BpfFs::mount();
    let table_size = CAPACITY.table_size;
    let options = fs.options(CAPACITY);
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let backends = [ip("10.200.0.1"), ip("10.200.0.2"), ip("10.200.0.3")];
    let slots: Vec<u32> = (0..table_size).map(|i| (i * 7 + 1) % 3).collect();
    {
        let mut first = Forwarder::load_with(options.clone()).unwrap();
        first.set_vip(vip, VipOptions::default()).unwrap();
        assert_eq!(
            first.set_table(&vip, &backends, &slots).unwrap(),
            table_size as usize
        );
    }

    // The live half, as the map API (not the mapping) reads it: the
    // program's view. Slot -> backend id must follow slot -> index.
    let vips: aya::maps::HashMap<_, xdp_fwd::common::VipMapKey, xdp_fwd::common::VipMeta> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(
            aya::maps::MapData::from_pin(fs.path().join("VIPS")).unwrap(),
        ))
        .unwrap();
    let metas: Vec<_> = vips.iter().map(|r| r.unwrap().1).collect();
    assert_eq!(metas.len(), 1);
    let meta = metas[0];
    assert_eq!(meta.table_size, table_size);
    let ring_pin = fs.path().join("RING");
    let base = (meta.index * 2 + u32::from(meta.active_half & 1)) * table_size;
    let live = read_pinned_ring(&ring_pin, base, table_size);
    let mut id_of = std::collections::BTreeMap::new();
    for (slot, (&index, &id)) in slots.iter().zip(&live).enumerate() {
        assert_ne!(id, xdp_fwd::NO_BACKEND, "slot {slot} written");
        assert_eq!(*id_of.entry(index).or_insert(id), id, "slot {slot}");
    }
    let distinct: std::collections::BTreeSet<_> = id_of.values().collect();
    assert_eq!(distinct.len(), backends.len(), "one id per backend");
    // And a restart recovers the same table through its own mapping.
    {
        let again = Forwarder::load_with(options.clone()).unwrap();
        assert!(again.adopted());
        let via_api: Vec<Option<IpAddr>> = (0..64u16)
            .map(|p| {
                again
                    .backend_for(&vip, ip("192.0.2.10"), 40000 + p)
                    .unwrap()
            })
            .collect();
        assert!(via_api
            .iter()
            .all(|b| b.is_some_and(|b| backends.contains(&b))));
    }

    // RING as a build before it was mmapable pinned it: same type, key,
    // value and entry count, flags 0. Refused, with the flags named.
    let entries = aya::maps::MapInfo::from_pin(&ring_pin)
        .unwrap()
        .max_entries();
    std::fs::remove_file(&ring_pin).unwrap();
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    pin_foreign_map(&ring_pin, BPF_MAP_TYPE_ARRAY, 4, 4, entries);
    let err = Forwarder::load_with(options.clone())
        .err()
        .expect("a RING that is not mmapable refused");
    let msg = err.to_string();
    assert!(
        msg.contains("pinned map RING has flags 0x0, this program's has 0x400")
            && msg.contains("BPF_F_MMAPABLE")
            && msg.contains("restart cold"),
        "{msg}"
    );
    // The cold restart the message asks for works.
    Forwarder::remove_pins(&fs.path()).unwrap();
    let cold = Forwarder::load_with(options).unwrap();
    assert!(!cold.adopted());
}
