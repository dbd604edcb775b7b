//! Decapsulation fixtures through the real program (BPF_PROG_TEST_RUN):
//! input frame -> verdict and output frame, byte for byte.

use packet_builder::{checksum, FrameBuilder, L4};
use xdp_decap::Decapper;

const PASS: u32 = 2;
const GUE_PORT: u16 = 6080;
const MACS: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

fn inner_v4() -> FrameBuilder {
    FrameBuilder::new(
        "192.0.2.10".parse().unwrap(),
        "198.18.0.10".parse().unwrap(),
        L4::Tcp {
            sport: 40000,
            dport: 80,
            flags: 0x02,
        },
    )
}

fn inner_v6() -> FrameBuilder {
    FrameBuilder::new(
        "2001:db8::10".parse().unwrap(),
        "2001:db8:f::10".parse().unwrap(),
        L4::Udp {
            sport: 40000,
            dport: 53,
        },
    )
}

fn outer_v4(proto: u8, payload: &[u8], frag: u16) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&[10, 0, 0, 1]);
    h[16..20].copy_from_slice(&[10, 2, 0, 2]);
    let c = checksum::internet(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn outer_v6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(
        &"2001:db8:1::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h[24..40].copy_from_slice(
        &"2001:db8:2::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend_from_slice(payload);
    h
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&51000u16.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = MACS.to_vec();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

#[test]
fn strips_every_supported_encapsulation() {
    let mut d = Decapper::load(GUE_PORT).expect("load and verify the decap program");
    let v4 = inner_v4();
    let v6 = inner_v6();
    let cases = [
        (
            "ipip",
            frame(0x0800, &outer_v4(4, &v4.ip_packet(), 0)),
            v4.build(),
        ),
        (
            "6in4",
            frame(0x0800, &outer_v4(41, &v6.ip_packet(), 0)),
            v6.build(),
        ),
        (
            "4in6",
            frame(0x86dd, &outer_v6(4, &v4.ip_packet())),
            v4.build(),
        ),
        (
            "ip6ip6",
            frame(0x86dd, &outer_v6(41, &v6.ip_packet())),
            v6.build(),
        ),
        (
            "gue4",
            frame(0x0800, &outer_v4(17, &udp(GUE_PORT, &v4.ip_packet()), 0)),
            v4.build(),
        ),
        (
            "gue6",
            frame(0x86dd, &outer_v6(17, &udp(GUE_PORT, &v6.ip_packet()))),
            v6.build(),
        ),
    ];
    for (name, input, expected) in cases {
        let (verdict, out) = d.test_run(&input).unwrap();
        assert_eq!(verdict, PASS, "{name}");
        assert_eq!(out, expected, "{name}: output frame");
    }
    let s = d.stats().unwrap();
    assert_eq!((s.ipip, s.gue, s.fragments), (4, 2, 0));
}

#[test]
fn leaves_everything_else_untouched() {
    let mut d = Decapper::load(GUE_PORT).unwrap();
    let v4 = inner_v4();
    let fragment = frame(0x0800, &outer_v4(4, &v4.ip_packet(), 0x2000));
    let cases = [
        ("plain tcp", v4.build()),
        ("plain udp v6", inner_v6().build()),
        (
            "udp to another port",
            frame(
                0x0800,
                &outer_v4(17, &udp(GUE_PORT + 1, &v4.ip_packet()), 0),
            ),
        ),
        (
            "gue with a non-IP payload",
            frame(
                0x0800,
                &outer_v4(17, &udp(GUE_PORT, b"\x00\x01\x02garbage"), 0),
            ),
        ),
        ("fragmented ipip", fragment),
        ("arp", frame(0x0806, &[0u8; 28])),
        ("runt ipv4", frame(0x0800, &[0x45, 0, 0])),
    ];
    for (name, input) in cases {
        let (verdict, out) = d.test_run(&input).unwrap();
        assert_eq!(verdict, PASS, "{name}");
        assert_eq!(out, input, "{name}: must pass untouched");
    }
    let s = d.stats().unwrap();
    assert_eq!((s.ipip, s.gue, s.fragments), (0, 0, 1));
}

#[test]
fn gue_port_zero_disables_gue() {
    let mut d = Decapper::load(0).unwrap();
    let input = frame(
        0x0800,
        &outer_v4(17, &udp(GUE_PORT, &inner_v4().ip_packet()), 0),
    );
    let (verdict, out) = d.test_run(&input).unwrap();
    assert_eq!((verdict, out), (PASS, input));
}
