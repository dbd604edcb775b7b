//! Frames the differential fuzz (`tests/diff_fuzz.rs`) found the program
//! and the model disagreeing on, each kept as a named fixture (the frames
//! are the fuzz's own, as hex). In each the program was wrong.
use xdp_fwd::{verdict, Protocol, VipKey, VipOptions};

use crate::common::fixture::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Runs `frame` and checks it passes untouched, counting nothing but the
/// pass.
fn assert_passed_untouched(fwd: &mut xdp_fwd::Forwarder, frame: &[u8]) {
    let out = fwd.test_run(frame).unwrap();
    assert_eq!(out.verdict, verdict::PASS, "{}", hex(frame));
    assert_eq!(hex(&out.frame), hex(frame));
    let s = fwd.stats().unwrap();
    let counted: Vec<_> = s.named().filter(|(_, v)| *v != 0).collect();
    assert_eq!(counted, [("action_pass", 1)]);
    assert!(s.vips.values().all(|t| t.packets == 0));
}

/// IPv6 payload length 0 with next header UDP: the UDP header lies past
/// the IP packet (in the frame's trailing bytes). The program read ports
/// from there and forwarded a packet the backend's stack drops; the rule:
/// every header read lies inside the IP packet, else XDP_PASS.
#[test]
fn udp_header_past_the_ipv6_payload_length_passes() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("2001:db8:ffff::7"), 0, Protocol::Udp),
        VipOptions::default(),
        &V6_BACKENDS,
    );
    let frame = unhex(
        "0200000000aa020000000c2886dd600000000000114020010db800000000000000000008001720010db8ffff000000000000000000079c500050001324080e39485609e50c35dce59a",
    );
    assert_passed_untouched(&mut fwd, &frame);
}

/// ICMPv6 packet-too-big whose quoted "IPv6" header has version 7: not a
/// flow of any VIP. The program took its addresses and ports anyway and
/// forwarded the message to a backend.
#[test]
fn packet_too_big_quoting_a_non_ipv6_header_passes() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("2001:db8:ffff::8"), 443, Protocol::Tcp),
        VipOptions::default(),
        &V6_BACKENDS,
    );
    let frame = unhex(
        "1c00000000aa020000000c0d86dd6000000000343a4020010db800000000000000000000002520010db8ffff0000000000000000000802003c05000005dc70000000001a064020010db8ffff0000000000000000000820010db800000000000000000000002501bb9c5c",
    );
    assert_passed_untouched(&mut fwd, &frame);
}

/// IPv4 with protocol 58 (ICMPv6) and an "echo request" type 8, to a VIP
/// address: ICMPv6 is not ICMP. The program dispatched on the protocol
/// number alone and answered it as an IPv4 echo (XDP_TX).
#[test]
fn icmpv6_protocol_number_in_ipv4_is_not_answered() {
    let mut fwd = forwarder();
    serve(
        &mut fwd,
        VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp),
        VipOptions::default(),
        &V4_BACKENDS,
    );
    let frame = unhex(
        "0200080000aa020000000c730800454c005b00000000403a7c33c0000219cb007109080017c0000005dce8c811149d8ecb53bb0f7d909844c3a13fdd4c7d458d0168be6ae0030ab4e744c6134f9a46a7fed859986ff0d2e1103e7659b681adf868672b16f7f7f5cc52",
    );
    assert_passed_untouched(&mut fwd, &frame);
}
