//! Real packets through the real XDP program with BPF_PROG_TEST_RUN.
//! Needs root (CAP_BPF + CAP_NET_ADMIN), as the suite runs in CI.

use packet_builder::{FrameBuilder, L4};
use xdp_fwd::{common::drop_reason, common::VipMeta, verdict, vip_key, Forwarder, Protocol};

fn udp_frame(dst: &str, dport: u16) -> Vec<u8> {
    FrameBuilder::new("192.0.2.10".parse().unwrap(), dst.parse().unwrap(), L4::Udp {
        sport: 40000,
        dport,
    })
    .build()
}

#[test]
fn non_vip_traffic_passes_untouched() {
    let mut fwd = Forwarder::load().expect("load and verify the XDP program");
    let frame = udp_frame("198.51.100.1", 53);
    let out = fwd.test_run(&frame).unwrap();
    assert_eq!(out.verdict, verdict::PASS);
    assert_eq!(out.frame, frame);
}

#[test]
fn vip_without_backend_is_dropped_and_counted() {
    let mut fwd = Forwarder::load().unwrap();
    let key = vip_key("203.0.113.7".parse().unwrap(), 53, Protocol::Udp);
    fwd.set_vip(key, VipMeta { flags: 0, index: 0 }).unwrap();

    let out = fwd.test_run(&udp_frame("203.0.113.7", 53)).unwrap();
    assert_eq!(out.verdict, verdict::DROP);
    assert_eq!(fwd.drop_count(drop_reason::NO_BACKEND).unwrap(), 1);

    // Same address, other port: not this VIP.
    let out = fwd.test_run(&udp_frame("203.0.113.7", 54)).unwrap();
    assert_eq!(out.verdict, verdict::PASS);

    fwd.remove_vip(&key).unwrap();
    let out = fwd.test_run(&udp_frame("203.0.113.7", 53)).unwrap();
    assert_eq!(out.verdict, verdict::PASS);
    assert_eq!(fwd.drop_count(drop_reason::NO_BACKEND).unwrap(), 1);
}

#[test]
fn port_zero_vip_matches_every_port() {
    let mut fwd = Forwarder::load().unwrap();
    let key = vip_key("203.0.113.8".parse().unwrap(), 0, Protocol::Udp);
    fwd.set_vip(key, VipMeta { flags: 0, index: 1 }).unwrap();
    for port in [1u16, 53, 65535] {
        assert_eq!(fwd.test_run(&udp_frame("203.0.113.8", port)).unwrap().verdict, verdict::DROP);
    }
}

#[test]
fn truncated_frames_pass_without_harm() {
    let mut fwd = Forwarder::load().unwrap();
    fwd.set_vip(vip_key("203.0.113.7".parse().unwrap(), 53, Protocol::Udp), VipMeta {
        flags: 0,
        index: 0,
    })
    .unwrap();
    let frame = udp_frame("203.0.113.7", 53);
    // The kernel needs at least an Ethernet header for XDP test runs.
    // Everything shorter than Ethernet + IPv4 + UDP headers.
    for len in 14..14 + 20 + 8 {
        let out = fwd.test_run(&frame[..len]).unwrap();
        assert_eq!(out.verdict, verdict::PASS, "truncated to {len} bytes");
    }
}
