//! Cache admission under a flood of new flows: below the threshold a SYN
//! takes a way as always (evicting by LRU); above it, SYNs are forwarded by
//! the current table but never take the way of an established connection,
//! so a table change during the flood moves none of them.
use std::net::IpAddr;

use packet_builder::tcp_flags;
use xdp_fwd::{
    common::stats::stat, verdict, Capacity, FloodThreshold, Forwarder, ForwarderSettings,
    LoadOptions, Protocol, VipKey, VipOptions,
};

use crate::common::{fixture::*, *};

/// Client ports of the long-lived connections of these fixtures.
const CONNECTIONS: [u16; 4] = [1001, 1002, 1003, 1004];

/// A forwarder whose cache is one set of four ways (`flows: 4`), so every
/// flow competes for the same ways, with `threshold`; serving TCP 80.
fn one_set_forwarder(threshold: FloodThreshold) -> (Forwarder, VipKey) {
    let mut fwd = Forwarder::load_with(LoadOptions {
        pin_dir: None,
        capacity: Capacity { flows: 4, ..CAP },
    })
    .unwrap();
    fwd.set_settings(&ForwarderSettings {
        flood_threshold: threshold,
        ..settings()
    })
    .unwrap();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    serve(&mut fwd, vip, VipOptions::default(), &V4_BACKENDS);
    (fwd, vip)
}

/// Runs a TCP packet of 192.0.2.10:`sport` with `flags` on CPU 0 (one
/// cache slice); returns the backend it was sent to.
fn send(lab: &RouteLab, fwd: &mut Forwarder, sport: u16, flags: u8) -> IpAddr {
    let f = tcp("192.0.2.10", "203.0.113.7", sport, 80, flags);
    let out = lab
        .ns
        .run_on_cpu(0, || fwd.test_run_on(&f.build(), lab.fwd0, 1))
        .unwrap();
    assert_eq!(out.verdict, verdict::TX, "sport {sport}");
    outer_dst(&out.frame)
}

/// Opens [`CONNECTIONS`] (SYN, then ACK: established) and returns their
/// backends.
fn open_connections(lab: &RouteLab, fwd: &mut Forwarder) -> Vec<IpAddr> {
    let backends: Vec<IpAddr> = CONNECTIONS
        .iter()
        .map(|&p| send(lab, fwd, p, tcp_flags::SYN))
        .collect();
    for &p in &CONNECTIONS {
        send(lab, fwd, p, tcp_flags::ACK);
    }
    backends
}

/// Points every slot at a backend none of the flows has.
fn move_every_slot(fwd: &mut Forwarder, vip: &VipKey) -> IpAddr {
    let other = ip("10.200.0.99");
    let mut pool: Vec<IpAddr> = V4_BACKENDS.iter().map(|s| ip(s)).collect();
    pool.push(other);
    fwd.set_table(vip, &pool, &[3; M]).unwrap();
    other
}

#[test]
fn below_the_threshold_syns_are_cached() {
    let lab = RouteLab::new("fldlow");
    let (mut fwd, vip) = one_set_forwarder(FloodThreshold::PerSecond(1_000_000));
    open_connections(&lab, &mut fwd);
    // A fifth connection: the set is full of established flows, and plain
    // LRU makes room by evicting one.
    let fifth = send(&lab, &mut fwd, 2001, tcp_flags::SYN);
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::LRU_EVICTED), 1);
    assert_eq!(s.get(stat::LRU_EVICTED_ESTABLISHED), 1);
    assert_eq!(
        (s.get(stat::FLOOD_ENTERED), s.get(stat::FLOOD_NOT_CACHED)),
        (0, 0)
    );
    // It was cached: it keeps its backend over a table change.
    move_every_slot(&mut fwd, &vip);
    assert_eq!(send(&lab, &mut fwd, 2001, tcp_flags::ACK), fifth);
}

/// Above the threshold (one new flow per second per CPU: the second new
/// flow in a window is a flood), 200 SYNs from other clients are each
/// forwarded byte for byte by the table, none is cached, and no
/// established connection loses its way: after a table change they all
/// keep their backends, while a flood flow's next packet goes by the new
/// table.
#[test]
fn above_the_threshold_syns_are_forwarded_uncached_and_established_entries_stay() {
    let lab = RouteLab::new("fldhigh");
    // A window with at most one new flow ends flood mode; on a machine that
    // stalls this thread for a whole window (100 ms) between two SYNs the
    // flood paused, which is not what this fixture is about: try again.
    for attempt in 1..=3 {
        let (mut fwd, vip) = one_set_forwarder(FloodThreshold::PerSecond(1));
        let before = open_connections(&lab, &mut fwd);
        for i in 0..200u32 {
            let src = format!("198.18.{}.{}", i / 250, 1 + i % 250);
            let syn = tcp(&src, "203.0.113.7", 20000 + i as u16, 80, tcp_flags::SYN);
            // On CPU 0, like every packet of these fixtures.
            assert_forwarded(&lab, &mut fwd, &syn, &V4_BACKENDS, 0, Expect::IpIp);
        }
        let s = fwd.stats().unwrap();
        if s.get(stat::FLOOD_LEFT) != 0 {
            eprintln!("attempt {attempt}: flood mode left mid-flood (thread stalled), retrying");
            continue;
        }
        assert!(s.get(stat::FLOOD_ENTERED) >= 1);
        assert_eq!(s.get(stat::FLOOD_NOT_CACHED), 200, "no flood SYN cached");
        assert_eq!(
            (
                s.get(stat::LRU_EVICTED),
                s.get(stat::LRU_EVICTED_ESTABLISHED)
            ),
            (0, 0)
        );
        let other = move_every_slot(&mut fwd, &vip);
        for (&p, b) in CONNECTIONS.iter().zip(&before) {
            assert_eq!(
                send(&lab, &mut fwd, p, tcp_flags::ACK),
                *b,
                "sport {p} kept"
            );
        }
        let f = tcp("198.18.0.1", "203.0.113.7", 20000, 80, tcp_flags::ACK);
        let out = lab
            .ns
            .run_on_cpu(0, || fwd.test_run_on(&f.build(), lab.fwd0, 1))
            .unwrap();
        assert_eq!(outer_dst(&out.frame), other, "flood flow was not cached");
        return;
    }
    panic!("flood mode was left mid-flood in every attempt");
}

/// In flood mode a SYN may still take a way whose entry never saw a second
/// packet (another SYN's): real new connections keep being cached while
/// the flood only churns its own entries.
#[test]
fn in_flood_mode_a_syn_replaces_only_unestablished_entries() {
    let lab = RouteLab::new("fldnew");
    for attempt in 1..=3 {
        let (mut fwd, vip) = one_set_forwarder(FloodThreshold::PerSecond(1));
        // Three established connections, one way left.
        let before: Vec<IpAddr> = CONNECTIONS[..3]
            .iter()
            .map(|&p| send(&lab, &mut fwd, p, tcp_flags::SYN))
            .collect();
        for &p in &CONNECTIONS[..3] {
            send(&lab, &mut fwd, p, tcp_flags::ACK);
        }
        // SYNs of new clients: each takes the fourth way from the previous.
        let mut last = None;
        for sport in 3001..3021 {
            last = Some(send(&lab, &mut fwd, sport, tcp_flags::SYN));
        }
        let s = fwd.stats().unwrap();
        if s.get(stat::FLOOD_LEFT) != 0 {
            eprintln!("attempt {attempt}: flood mode left mid-flood (thread stalled), retrying");
            continue;
        }
        assert!(s.get(stat::FLOOD_ENTERED) >= 1);
        assert_eq!(s.get(stat::FLOOD_NOT_CACHED), 0);
        assert_eq!(
            s.get(stat::LRU_EVICTED),
            19,
            "each SYN replaced the one before"
        );
        assert_eq!(s.get(stat::LRU_EVICTED_ESTABLISHED), 0);
        move_every_slot(&mut fwd, &vip);
        for (&p, b) in CONNECTIONS[..3].iter().zip(&before) {
            assert_eq!(send(&lab, &mut fwd, p, tcp_flags::ACK), *b);
        }
        assert_eq!(
            Some(send(&lab, &mut fwd, 3020, tcp_flags::ACK)),
            last,
            "the newest connection is cached"
        );
        return;
    }
    panic!("flood mode was left mid-flood in every attempt");
}

/// Flood mode ends once the new flows stop: after two quiet windows the
/// next SYN leaves it (counted once) and is cached by plain LRU again, even
/// where that evicts an established entry, so it keeps its backend over a
/// table change.
#[test]
fn after_quiet_windows_flood_mode_ends_and_syns_are_cached_again() {
    let lab = RouteLab::new("fldend");
    for attempt in 1..=3 {
        let (mut fwd, vip) = one_set_forwarder(FloodThreshold::PerSecond(1));
        open_connections(&lab, &mut fwd);
        for sport in 3001..3011 {
            send(&lab, &mut fwd, sport, tcp_flags::SYN);
        }
        let flooded = fwd.stats().unwrap();
        if flooded.get(stat::FLOOD_LEFT) != 0 {
            eprintln!("attempt {attempt}: flood mode left mid-flood (thread stalled), retrying");
            continue;
        }
        assert!(flooded.get(stat::FLOOD_ENTERED) >= 1);
        assert_eq!(
            flooded.get(stat::FLOOD_NOT_CACHED),
            10,
            "full of established"
        );
        // More than two windows without a new flow (a window is 100 ms).
        std::thread::sleep(std::time::Duration::from_millis(
            3 * u64::from(xdp_fwd::common::flood::FLOOD_WINDOW_MS),
        ));
        let newcomer = send(&lab, &mut fwd, 4001, tcp_flags::SYN);
        let s = fwd.stats().unwrap();
        assert_eq!(s.get(stat::FLOOD_LEFT), 1, "left once");
        assert_eq!(
            s.get(stat::FLOOD_ENTERED),
            flooded.get(stat::FLOOD_ENTERED),
            "one new flow in a window is not a flood"
        );
        assert_eq!(s.get(stat::FLOOD_NOT_CACHED), 10, "the newcomer was cached");
        assert_eq!(s.get(stat::LRU_EVICTED_ESTABLISHED), 1, "by plain LRU");
        move_every_slot(&mut fwd, &vip);
        assert_eq!(send(&lab, &mut fwd, 4001, tcp_flags::ACK), newcomer);
        return;
    }
    panic!("flood mode was left mid-flood in every attempt");
}

/// A threshold of 0 or above the maximum is refused by name, and the
/// settings in the map stay as they were.
#[test]
fn bad_flood_thresholds_are_refused() {
    let mut fwd = forwarder();
    let before = fwd.settings().unwrap();
    for bad in [0, 100_000_001, u32::MAX] {
        let err = fwd
            .set_settings(&ForwarderSettings {
                flood_threshold: FloodThreshold::PerSecond(bad),
                ..settings()
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("flood_threshold"), "{err}");
        assert_eq!(fwd.settings().unwrap(), before, "nothing applied");
    }
}
