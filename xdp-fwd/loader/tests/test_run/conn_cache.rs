//! The connection cache: established flows keep their backend, one slice
//! of sets per CPU, VIP changes, LRU eviction, UDP expiry.
use std::{net::IpAddr, time::Duration};

use packet_builder::{tcp_flags, FrameBuilder};
use xdp_fwd::{
    common::stats::stat, verdict, Capacity, Encap, FloodThreshold, Forwarder, ForwarderSettings,
    LoadOptions, Protocol, VipKey, VipOptions,
};

use crate::common::{fixture::*, *};

#[test]
fn established_flow_keeps_its_backend_after_a_table_change() {
    let lab = RouteLab::new("lru");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    let first = assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);

    // New table: every slot to a backend the flow did not have.
    let other = ip("10.200.0.99");
    let backends = [first, other];
    fwd.set_table(&vip, &backends, &[1; M]).unwrap();
    let ack = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::ACK);
    let run = |fwd: &mut Forwarder, f: &FrameBuilder| {
        lab.ns
            .run(|| fwd.test_run_on(&f.build(), lab.fwd0, 1))
            .unwrap()
    };
    let out = run(&mut fwd, &ack);
    assert_eq!(out.verdict, verdict::TX);
    assert_eq!(
        outer_dst(&out.frame),
        first,
        "LRU hit keeps the old backend"
    );
    // A new connection of another client port goes by the new table.
    let new_conn = tcp("192.0.2.10", "203.0.113.7", 40001, 80, tcp_flags::SYN);
    assert_eq!(outer_dst(&run(&mut fwd, &new_conn).frame), other);
    // A SYN reusing the old tuple is a new connection: current table, and it sticks.
    assert_eq!(outer_dst(&run(&mut fwd, &syn).frame), other);
    assert_eq!(outer_dst(&run(&mut fwd, &ack).frame), other);
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::LRU_HIT), 2);
    assert_eq!(s.get(stat::LRU_MISS), 3);

    // When the flow's backend leaves the pool, the entry is not used.
    fwd.set_table(&vip, &[ip("10.200.0.77")], &[0; M]).unwrap();
    assert_eq!(outer_dst(&run(&mut fwd, &ack).frame), ip("10.200.0.77"));
}

#[test]
fn connection_table_is_per_cpu() {
    let lab = RouteLab::new("percpu");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    let first = assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);
    let other = ip("10.200.0.99");
    fwd.set_table(&vip, &[first, other], &[1; M]).unwrap();
    let ack = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::ACK).build();
    // CPU 1 has no entry for the flow (its own slice of sets does not hold
    // the entry CPU 0 inserted): the current table decides.
    let out = lab
        .ns
        .run_on_cpu(1, || fwd.test_run_on(&ack, lab.fwd0, 1))
        .unwrap();
    assert_eq!(outer_dst(&out.frame), other);
    // CPU 0 still has the flow on its first backend.
    let out = lab
        .ns
        .run_on_cpu(0, || fwd.test_run_on(&ack, lab.fwd0, 1))
        .unwrap();
    assert_eq!(outer_dst(&out.frame), first);
    let s = fwd.stats().unwrap();
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (1, 2));
}

/// Established flows skip the VIP lookup while their VIP is unchanged
/// (VIP_EPOCHS): a changed VIP applies to them at once, with the backend
/// kept, and a removed VIP stops them even though their backend is still
/// live for another VIP.
#[test]
fn cached_flows_follow_vip_changes_and_removal() {
    let lab = RouteLab::new("vipchg");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let sibling = VipKey::new(ip("203.0.113.8"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    serve(&mut fwd, sibling, VipOptions::default(), &V4_BACKENDS);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN);
    let ack = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::ACK);
    let first = assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);
    assert_forwarded(&lab, &mut fwd, &ack, &V4_BACKENDS, 0, Expect::IpIp);
    assert_eq!(fwd.counter(stat::LRU_HIT).unwrap(), 1);

    // New options: the cached flow is encapsulated the new way.
    let gue = VipOptions {
        encap: Encap::Gue,
        ..Default::default()
    };
    fwd.set_vip(vip, gue).unwrap();
    assert_forwarded(&lab, &mut fwd, &ack, &V4_BACKENDS, 0, Expect::Gue(6080));
    // ... and keeps its backend when the table moves.
    let other = ip("10.200.0.99");
    fwd.set_table(&vip, &[first, other], &[1; M]).unwrap();
    let run = |fwd: &mut Forwarder| {
        lab.ns
            .run(|| fwd.test_run_on(&ack.build(), lab.fwd0, 1))
            .unwrap()
    };
    assert_eq!(outer_dst(&run(&mut fwd).frame), first);
    assert_eq!(fwd.counter(stat::LRU_HIT).unwrap(), 3);

    // Removed: not a VIP any more, although `first` still serves `sibling`.
    fwd.remove_vip(&vip).unwrap();
    let out = run(&mut fwd);
    assert_eq!(out.verdict, verdict::PASS);
    assert_eq!(out.frame, ack.build());
    // Its index goes to a new VIP: the old flow's entry does not match it.
    let newcomer = VipKey::new(ip("203.0.113.9"), 80, Protocol::Tcp);
    serve(&mut fwd, newcomer, VipOptions::default(), &["10.200.0.55"]);
    assert_eq!(run(&mut fwd).verdict, verdict::PASS);
    assert_eq!(fwd.stats().unwrap().vips[&newcomer].packets, 0);

    // A flow cached under an all-ports VIP moves to an exact-port VIP of
    // its address added later (precedence, counters, encapsulation), and
    // keeps its backend.
    let all_ports = VipKey::new(ip("203.0.113.20"), 0, Protocol::Tcp);
    serve(&mut fwd, all_ports, VipOptions::default(), &V4_BACKENDS);
    let ack = tcp("192.0.2.10", "203.0.113.20", 40000, 443, tcp_flags::ACK);
    let b = assert_forwarded(&lab, &mut fwd, &ack, &V4_BACKENDS, 0, Expect::IpIp);
    assert_forwarded(&lab, &mut fwd, &ack, &V4_BACKENDS, 0, Expect::IpIp);
    let exact = VipKey::new(ip("203.0.113.20"), 443, Protocol::Tcp);
    fwd.set_vip(exact, gue).unwrap();
    fwd.set_table(&exact, &[ip("10.200.0.66")], &[0; M])
        .unwrap();
    let out = lab
        .ns
        .run(|| fwd.test_run_on(&ack.build(), lab.fwd0, 1))
        .unwrap();
    assert_eq!(outer_dst(&out.frame), b, "cached backend kept");
    assert_eq!(out.frame[23], 17, "GUE: the exact-port VIP's encapsulation");
    let s = fwd.stats().unwrap();
    assert_eq!((s.vips[&all_ports].packets, s.vips[&exact].packets), (2, 1));
}

/// A full set evicts its least recently used way. With `flows: 4` the
/// cache is one set of four ways, so every flow shares it. Flood admission
/// is off: this is plain LRU (the flood cases are in `flood`).
#[test]
fn full_set_evicts_the_least_recently_used_flow() {
    let lab = RouteLab::new("evict");
    let mut fwd = Forwarder::load_with(LoadOptions {
        pin_dir: None,
        capacity: Capacity { flows: 4, ..CAP },
    })
    .unwrap();
    fwd.set_settings(&ForwarderSettings {
        flood_threshold: FloodThreshold::Off,
        ..settings()
    })
    .unwrap();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let run = |fwd: &mut Forwarder, sport: u16, flags: u8| {
        let f = tcp("192.0.2.10", "203.0.113.7", sport, 80, flags);
        let out = lab
            .ns
            .run(|| fwd.test_run_on(&f.build(), lab.fwd0, 1))
            .unwrap();
        assert_eq!(out.verdict, verdict::TX);
        outer_dst(&out.frame)
    };
    // Recency is kept in jiffies: let at least one tick pass (HZ >= 100)
    // between the packets whose order matters.
    let next_tick = || std::thread::sleep(Duration::from_millis(25));
    let mut first = std::collections::BTreeMap::new();
    for sport in [1001, 1002, 1003, 1004] {
        first.insert(sport, run(&mut fwd, sport, tcp_flags::SYN));
        next_tick();
    }
    assert_eq!(
        fwd.counter(stat::LRU_EVICTED).unwrap(),
        0,
        "four ways, four flows"
    );
    // 1001 is used again, so 1002 is now the least recently used.
    run(&mut fwd, 1001, tcp_flags::ACK);
    next_tick();
    first.insert(1005, run(&mut fwd, 1005, tcp_flags::SYN));
    assert_eq!(fwd.counter(stat::LRU_EVICTED).unwrap(), 1);

    // Move every slot to a backend none of the flows has.
    let other = ip("10.200.0.99");
    let mut pool: Vec<IpAddr> = V4_BACKENDS.iter().map(|s| ip(s)).collect();
    pool.push(other);
    fwd.set_table(&vip, &pool, &[3; M]).unwrap();
    for sport in [1001, 1003, 1004, 1005] {
        assert_eq!(
            run(&mut fwd, sport, tcp_flags::ACK),
            first[&sport],
            "{sport} is cached"
        );
    }
    assert_eq!(
        run(&mut fwd, 1002, tcp_flags::ACK),
        other,
        "1002 was evicted"
    );
    let s = fwd.stats().unwrap();
    // Hits: 1001 once before, four after the table change.
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (5, 6));
    assert_eq!(
        s.get(stat::LRU_EVICTED),
        2,
        "1002 came back in place of another"
    );
}

#[test]
fn udp_flows_stick_until_they_expire() {
    let lab = RouteLab::new("udp");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 53, Protocol::Udp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    let q = udp("192.0.2.10", "203.0.113.7", 5353, 53);
    let first = assert_forwarded(&lab, &mut fwd, &q, &V4_BACKENDS, 0, Expect::IpIp);
    let other = ip("10.200.0.99");
    fwd.set_table(&vip, &[first, other], &[1; M]).unwrap();
    let run = |fwd: &mut Forwarder| {
        outer_dst(
            &lab.ns
                .run(|| fwd.test_run_on(&q.build(), lab.fwd0, 1))
                .unwrap()
                .frame,
        )
    };
    assert_eq!(run(&mut fwd), first, "within the timeout");
    fwd.set_settings(&ForwarderSettings {
        udp_timeout: Duration::ZERO,
        ..settings()
    })
    .unwrap();
    // The program ages entries in jiffies (one tick: up to 10 ms).
    std::thread::sleep(Duration::from_millis(25));
    assert_eq!(
        run(&mut fwd),
        other,
        "expired: re-hashed on the current table"
    );
    assert_eq!(fwd.counter(stat::LRU_UDP_EXPIRED).unwrap(), 1);
}
