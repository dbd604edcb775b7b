//! Hot restart: a second forwarder process adopts the pinned maps and link
//! of the first, with VIPs, tables, settings, counters and the connection
//! table intact, and the program stays attached in between. Needs root.

mod common;

use std::{net::IpAddr, path::PathBuf, process::Command};

use common::*;
use packet_builder::{tcp_flags, FrameBuilder, L4};
use xdp_fwd::{
    common::stats::stat, verdict, AttachMode, Capacity, Encap, Forwarder, ForwarderSettings,
    HashFields, LoadOptions, Protocol, Vip, VipOptions,
};

const M: usize = 13;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A private BPF filesystem mount, unmounted (with its pins) on drop.
struct BpfFs {
    dir: tempfile::TempDir,
}

impl BpfFs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        sh(&["mount", "-t", "bpf", "bpf", dir.path().to_str().unwrap()]);
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("edgelb")
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
    let options = LoadOptions {
        pin_dir: Some(fs.path()),
        capacity: Capacity {
            vips: 4,
            backends: 16,
            table_size: 13,
            flows: 1024,
        },
    };
    let settings = ForwarderSettings {
        hash_seed: 99,
        ..Default::default()
    };
    let vip = Vip::new(ip("203.0.113.7"), 80, Protocol::Tcp);
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
