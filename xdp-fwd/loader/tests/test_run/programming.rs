//! Programming the maps: table updates rewrite only changed slots, and
//! rejected input leaves the state unchanged.
use std::net::IpAddr;

use packet_builder::tcp_flags;
use xdp_fwd::{ForwarderSettings, Protocol, VipKey, VipOptions};

use crate::common::{fixture::*, *};

#[test]
fn table_updates_write_only_changed_slots_of_the_inactive_half() {
    let lab = RouteLab::new("diff");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    fwd.set_vip(vip, VipOptions::default()).unwrap();
    let b: Vec<IpAddr> = V4_BACKENDS.iter().map(|s| ip(s)).collect();
    let t1 = round_robin_table(M, 3);
    let t2 = vec![0; M];
    let mut t3 = t1.clone();
    t3[5] = 0; // was 2
               // Both halves start unknown: full writes.
    assert_eq!(fwd.set_table(&vip, &b, &t1).unwrap(), M);
    assert_eq!(fwd.set_table(&vip, &b, &t2).unwrap(), M);
    // The inactive half now holds t1: one slot differs from t3.
    assert_eq!(fwd.set_table(&vip, &b, &t3).unwrap(), 1);
    // Then t2's half, which differs from t3 wherever t3 is not 0.
    assert_eq!(
        fwd.set_table(&vip, &b, &t3).unwrap(),
        t3.iter().filter(|&&x| x != 0).count()
    );
    // The live table is t3: a flow hashing to each slot goes where t3 says.
    for sport in 40000..40040 {
        let f = tcp("192.0.2.10", "203.0.113.7", sport, 80, tcp_flags::SYN);
        let h = hash_of(f.src, f.dst, sport, 80, 6, settings().hash_seed, 0);
        let out = lab
            .ns
            .run(|| fwd.test_run_on(&f.build(), lab.fwd0, 1))
            .unwrap();
        assert_eq!(outer_dst(&out.frame), b[t3[h as usize % M] as usize]);
    }
}

#[test]
fn programming_errors_are_rejected_without_changing_state() {
    let lab = RouteLab::new("errors");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let unknown = VipKey::new(ip("203.0.113.8"), 80, Protocol::Tcp);
    assert!(fwd
        .set_table(&unknown, &[ip("10.200.0.1")], &[0; M])
        .is_err());
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let b: Vec<IpAddr> = V4_BACKENDS.iter().map(|s| ip(s)).collect();
    assert!(
        fwd.set_table(&vip, &b, &[3; M]).is_err(),
        "slot refers past the backend list"
    );
    assert!(
        fwd.set_table(&vip, &[b[0], b[0]], &[0; M]).is_err(),
        "duplicate backend"
    );
    assert!(
        fwd.set_table(&vip, &b, &vec![0; CAP.table_size as usize + 1])
            .is_err(),
        "too large"
    );
    let bad = ForwarderSettings {
        source_v4: (std::net::Ipv4Addr::UNSPECIFIED, 33),
        ..settings()
    };
    assert!(fwd.set_settings(&bad).is_err());
    // Still forwarding with the table installed before.
    let f = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    assert_forwarded(&lab, &mut fwd, &f, &V4_BACKENDS, 0, Expect::IpIp);
    for i in 0..CAP.vips {
        let v = VipKey::new(ip("198.18.0.1"), i as u16 + 1, Protocol::Udp);
        let r = fwd.set_vip(v, VipOptions::default());
        assert_eq!(r.is_ok(), i + 1 < CAP.vips, "VIP {i}");
    }
    assert_eq!(
        fwd.backend_for(&vip, ip("192.0.2.10"), 40000).unwrap(),
        Some(expected_choice(&f, &V4_BACKENDS, 0).1)
    );
}
