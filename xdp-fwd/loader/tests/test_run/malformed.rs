//! What is not forwarded: fragments to a VIP, truncated and garbage frames.

use packet_builder::{tcp_flags, Fragment};
use xdp_fwd::{common::stats::stat, verdict, Protocol, VipKey, VipOptions};

use crate::common::fixture::*;

#[test]
fn fragments_to_a_vip_are_dropped_and_counted() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("203.0.113.7"), 53, Protocol::Udp),
        VipOptions::default(),
        &V4_BACKENDS,
    );
    serve(
        &mut fwd,
        VipKey::new(ip("2001:db8:ffff::7"), 53, Protocol::Udp),
        VipOptions::default(),
        &V6_BACKENDS,
    );
    let first = Fragment {
        offset: 0,
        more: true,
        id: 1,
    };
    let later = Fragment {
        offset: 185,
        more: false,
        id: 1,
    };
    for frag in [first, later] {
        for (c, v) in [
            ("192.0.2.10", "203.0.113.7"),
            ("2001:db8::10", "2001:db8:ffff::7"),
        ] {
            let mut f = udp(c, v, 5353, 53).fragment(frag);
            f.dont_fragment = false;
            assert_eq!(fwd.test_run(&f.build()).unwrap().verdict, verdict::DROP);
        }
    }
    assert_eq!(fwd.counter(stat::DROP_FRAGMENT).unwrap(), 4);
    // Fragments for other destinations are the kernel's business.
    let f = udp("192.0.2.10", "198.51.100.1", 5353, 53)
        .fragment(first)
        .build();
    let out = fwd.test_run(&f).unwrap();
    assert_eq!((out.verdict, out.frame), (verdict::PASS, f));
}

#[test]
fn truncated_and_garbage_frames_pass_without_harm() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("203.0.113.7"), 0, Protocol::Tcp),
        VipOptions::default(),
        &V4_BACKENDS,
    );
    serve(
        &mut fwd,
        VipKey::new(ip("2001:db8:ffff::7"), 0, Protocol::Udp),
        VipOptions::default(),
        &V6_BACKENDS,
    );
    let full = [
        tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN)
            .payload(&[])
            .build(),
        tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN)
            .payload(&[])
            .vlan(5)
            .build(),
        udp("2001:db8::10", "2001:db8:ffff::7", 40000, 53)
            .payload(&[])
            .build(),
    ];
    for frame in &full {
        // BPF_PROG_TEST_RUN needs at least an Ethernet header.
        for len in 14..frame.len() {
            let out = fwd.test_run(&frame[..len]).unwrap();
            assert_eq!(
                out.verdict,
                verdict::PASS,
                "truncated to {len}: {}",
                hex(&frame[..len])
            );
            assert_eq!(out.frame, &frame[..len]);
        }
    }
    // Lies in the IPv4 header.
    let good = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::SYN).build();
    let mut bad_version = good.clone();
    bad_version[14] = 0x55;
    let mut short_ihl = good.clone();
    short_ihl[14] = 0x44;
    let mut long_total = good.clone();
    long_total[16..18].copy_from_slice(&1500u16.to_be_bytes());
    let mut ihl_past_end = good.clone();
    ihl_past_end[14] = 0x4f;
    for frame in [bad_version, short_ihl, long_total, ihl_past_end] {
        assert_eq!(
            fwd.test_run(&frame).unwrap().verdict,
            verdict::PASS,
            "{}",
            hex(&frame)
        );
    }
    // Random bytes (a fixed xorshift sequence, so failures reproduce).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..2000 {
        let len = 14 + (n % 120);
        let frame: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let out = fwd.test_run(&frame).unwrap();
        assert_ne!(out.verdict, verdict::ABORTED, "{}", hex(&frame));
    }
}
