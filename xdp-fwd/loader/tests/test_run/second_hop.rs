//! Second hop, forwarder side: a non-SYN cache miss whose slot changed
//! owner carries the previous owner (GUE variant 0 private data, or a
//! middle IP-in-IP header), byte for byte; SYNs, cache hits, unchanged
//! slots and a VIP without previous table are forwarded exactly as before.
use std::net::IpAddr;

use packet_builder::{
    headers::{self, Ipv4Header, Ipv6Header},
    tcp_flags, FrameBuilder,
};
use xdp_fwd::{
    common::{second_hop as hop, stats::stat},
    verdict, Encap, Forwarder, Protocol, VipKey, VipOptions,
};

use crate::common::{fixture::*, *};

/// A VIP whose live table sends every slot to `current` and whose previous
/// table sent every slot to `previous`.
fn moved_vip(fwd: &mut Forwarder, vip: VipKey, options: VipOptions, current: &str, previous: &str) {
    let (cur, prev) = (ip(current), ip(previous));
    fwd.set_vip(vip, options).unwrap();
    fwd.set_table(&vip, &[prev], &[0; M]).unwrap();
    fwd.set_table_with_previous(&vip, &[cur], &[0; M], Some((&[prev], &[0; M])))
        .unwrap();
}

/// The flow hash of `frame` (TCP or UDP) with the fixtures' seed.
fn hash(frame: &FrameBuilder) -> u32 {
    let (sport, dport, proto) = match frame.l4 {
        packet_builder::L4::Tcp { sport, dport, .. } => (sport, dport, 6),
        packet_builder::L4::Udp { sport, dport } => (sport, dport, 17),
        packet_builder::L4::Icmp { .. } => panic!("not a flow"),
    };
    hash_of(
        frame.src,
        frame.dst,
        sport,
        dport,
        proto,
        settings().hash_seed,
        0,
    )
}

/// Expected IP-in-IP form: outer IP to `current` | middle IP from `current`
/// to `previous` (marked as candidate) | the original packet.
fn expected_ipip_hop(input: &FrameBuilder, current: IpAddr, previous: IpAddr) -> Vec<u8> {
    let inner = input.ip_packet();
    let inner_v4 = inner[0] >> 4 == 4;
    let tos = if inner_v4 {
        inner[1]
    } else {
        (inner[0] << 4) | (inner[1] >> 4)
    };
    let next = if inner_v4 { 4 } else { 41 };
    let mut middle = match (current, previous) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Header {
            src: s,
            dst: d,
            proto: next,
            tos,
            ttl: 64,
            id: hop::IPIP_ID_CANDIDATE,
            dont_fragment: !inner_v4 || inner[6] & 0x40 != 0,
        }
        .bytes(inner.len()),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Header {
            src: s,
            dst: d,
            next,
            traffic_class: tos,
            flow_label: hop::IPIP_LABEL_CANDIDATE,
            hop_limit: 64,
        }
        .bytes(inner.len()),
        _ => unreachable!(),
    };
    middle.extend_from_slice(&inner);
    expected_encap_of(
        &middle,
        input.vlan,
        &settings(),
        current,
        hash(input),
        Expect::IpIp,
        GW0_MAC,
        FWD0_MAC,
    )
}

/// Expected GUE form: outer IP to `current` | UDP | GUE variant 0 header
/// with the private data (magic, flags, family, `previous`) | original.
fn expected_gue_hop(input: &FrameBuilder, current: IpAddr, previous: IpAddr) -> Vec<u8> {
    let inner = input.ip_packet();
    let inner_v4 = inner[0] >> 4 == 4;
    let tos = if inner_v4 {
        inner[1]
    } else {
        (inner[0] << 4) | (inner[1] >> 4)
    };
    let h = hash(input);
    let s = settings();
    let src = outer_source(&s, current, h);
    let mut gue = match previous {
        IpAddr::V4(a) => {
            let mut g = vec![hop::GUE_HLEN_V4, 4, 0, 0, hop::GUE_MAGIC, 0, 4, 0];
            g.extend_from_slice(&a.octets());
            g
        }
        IpAddr::V6(a) => {
            let mut g = vec![hop::GUE_HLEN_V6, 41, 0, 0, hop::GUE_MAGIC, 0, 6, 0];
            g.extend_from_slice(&a.octets());
            g
        }
    };
    gue[1] = if inner_v4 { 4 } else { 41 };
    gue.extend_from_slice(&inner);
    let sport = ((h & 0x3fff) | 0xc000) as u16;
    let udp = headers::udp(src, current, sport, s.gue_port, &gue);
    let (ethertype, ip) = match (src, current) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            0x0800,
            Ipv4Header {
                src: a,
                dst: b,
                proto: 17,
                tos,
                ttl: 64,
                id: 0,
                dont_fragment: !inner_v4 || inner[6] & 0x40 != 0,
            }
            .bytes(udp.len()),
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => (
            0x86dd,
            Ipv6Header {
                src: a,
                dst: b,
                next: 17,
                traffic_class: tos,
                flow_label: h & 0xfffff,
                hop_limit: 64,
            }
            .bytes(udp.len()),
        ),
        _ => unreachable!(),
    };
    let mut f = headers::ethernet(GW0_MAC, FWD0_MAC, input.vlan, ethertype);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// Runs `frame` on fwd0 of `lab` and returns the output, checking XDP_TX.
fn run_tx(lab: &RouteLab, fwd: &mut Forwarder, frame: &FrameBuilder) -> Vec<u8> {
    let out = lab
        .ns
        .run(|| fwd.test_run_on(&frame.build(), lab.fwd0, 1))
        .unwrap();
    assert_eq!(out.verdict, verdict::TX, "verdict for {frame:?}");
    out.frame
}

/// The frame the forwarder sends today (no previous owner).
fn plain(frame: &FrameBuilder, backend: IpAddr, mode: Expect) -> Vec<u8> {
    expected_encap(
        frame,
        &settings(),
        backend,
        hash(frame),
        mode,
        GW0_MAC,
        FWD0_MAC,
    )
}

#[test]
fn non_syn_miss_carries_the_previous_owner_ipip_v4_and_is_not_cached() {
    let lab = RouteLab::new("hop4");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let (cur, prev) = (V4_BACKENDS[1], V4_BACKENDS[0]);
    moved_vip(&mut fwd, vip, VipOptions::default(), cur, prev);
    let ack = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::ACK)
        .tos(0x2e)
        .payload(b"hello");
    let want = expected_ipip_hop(&ack, ip(cur), ip(prev));
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &ack)), hex(&want));
    // Not cached: the next packet of the flow takes both lookups again.
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &ack)), hex(&want));
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::SECOND_HOP_SENT), 2);
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (0, 2));
    assert_eq!(
        fwd.owners_for(&vip, ip("192.0.2.10"), 40000).unwrap(),
        (Some(ip(cur)), Some(ip(prev)))
    );
    let named: Vec<_> = s.named().filter(|(n, _)| *n == "second_hop_sent").collect();
    assert_eq!(named, [("second_hop_sent", 2)]);
}

#[test]
fn ipv6_vip_ip6ip6_and_ipv4_inner_over_v6_carry_the_previous_owner() {
    let lab = RouteLab::new("hop6");
    let mut fwd = forwarder();
    let vip6 = VipKey::new(ip("2001:db8:ffff::7"), 443, Protocol::Udp);
    let (cur, prev) = (V6_BACKENDS[2], V6_BACKENDS[0]);
    moved_vip(&mut fwd, vip6, VipOptions::default(), cur, prev);
    // UDP has no SYN: every miss is a candidate.
    let dgram = udp("2001:db8::10", "2001:db8:ffff::7", 5353, 443).tos(0xb8);
    let want = expected_ipip_hop(&dgram, ip(cur), ip(prev));
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &dgram)), hex(&want));

    let vip4 = VipKey::new(ip("203.0.113.9"), 80, Protocol::Tcp);
    moved_vip(&mut fwd, vip4, VipOptions::default(), cur, prev);
    let ack = tcp("192.0.2.10", "203.0.113.9", 40000, 80, tcp_flags::ACK);
    let want = expected_ipip_hop(&ack, ip(cur), ip(prev));
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &ack)), hex(&want));
    assert_eq!(fwd.stats().unwrap().get(stat::SECOND_HOP_SENT), 2);
}

#[test]
fn gue_carries_the_previous_owner_in_variant_0_private_data() {
    let lab = RouteLab::new("hopgue");
    let mut fwd = forwarder();
    let gue = VipOptions {
        encap: Encap::Gue,
        ..Default::default()
    };
    let vip4 = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    moved_vip(&mut fwd, vip4, gue, V4_BACKENDS[2], V4_BACKENDS[1]);
    let ack = tcp("192.0.2.10", "203.0.113.7", 40000, 80, tcp_flags::ACK).payload(&[9; 33]);
    let want = expected_gue_hop(&ack, ip(V4_BACKENDS[2]), ip(V4_BACKENDS[1]));
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &ack)), hex(&want));

    let vip6 = VipKey::new(ip("2001:db8:ffff::7"), 443, Protocol::Udp);
    moved_vip(&mut fwd, vip6, gue, V6_BACKENDS[0], V6_BACKENDS[1]);
    let dgram = udp("2001:db8::10", "2001:db8:ffff::7", 5353, 443).payload(b"q");
    let want = expected_gue_hop(&dgram, ip(V6_BACKENDS[0]), ip(V6_BACKENDS[1]));
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &dgram)), hex(&want));
    assert_eq!(fwd.stats().unwrap().get(stat::SECOND_HOP_SENT), 2);
}

#[test]
fn syn_goes_to_the_current_owner_and_its_cache_hits_stay_plain() {
    let lab = RouteLab::new("hopsyn");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let (cur, prev) = (V4_BACKENDS[1], V4_BACKENDS[0]);
    moved_vip(&mut fwd, vip, VipOptions::default(), cur, prev);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40001, 80, tcp_flags::SYN);
    let ack = tcp("192.0.2.10", "203.0.113.7", 40001, 80, tcp_flags::ACK);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &syn)),
        hex(&plain(&syn, ip(cur), Expect::IpIp))
    );
    // The SYN cached the flow: its ACK is a hit, plain, to the current owner.
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&plain(&ack, ip(cur), Expect::IpIp))
    );
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::SECOND_HOP_SENT), 0);
    assert_eq!(s.get(stat::LRU_HIT), 1);
}

#[test]
fn unchanged_slot_and_window_off_are_byte_identical_to_plain_forwarding() {
    let lab = RouteLab::new("hopoff");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let b: Vec<IpAddr> = V4_BACKENDS.iter().map(|s| ip(s)).collect();
    let rr = round_robin_table(M, b.len());
    fwd.set_vip(vip, VipOptions::default()).unwrap();
    fwd.set_table(&vip, &b, &rr).unwrap();
    // A change that keeps every slot's owner: no flow moved.
    fwd.set_table_with_previous(&vip, &b, &rr, Some((&b, &rr)))
        .unwrap();
    let ack = tcp("192.0.2.10", "203.0.113.7", 40002, 80, tcp_flags::ACK);
    let (_, owner) = expected_choice(&ack, &V4_BACKENDS, 0);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&plain(&ack, owner, Expect::IpIp))
    );
    assert_eq!(
        fwd.owners_for(&vip, ip("192.0.2.10"), 40002).unwrap(),
        (Some(owner), None)
    );
    // ... and the flow was cached as today: the next packet is a hit.
    run_tx(&lab, &mut fwd, &ack);
    assert_eq!(fwd.stats().unwrap().get(stat::LRU_HIT), 1);

    // A moved flow, then the window ends: plain again, to the current owner.
    let vip2 = VipKey::new(ip("203.0.113.8"), 80, Protocol::Tcp);
    let (cur, prev) = (V4_BACKENDS[2], V4_BACKENDS[0]);
    moved_vip(&mut fwd, vip2, VipOptions::default(), cur, prev);
    fwd.clear_previous(&vip2).unwrap();
    let ack2 = tcp("192.0.2.10", "203.0.113.8", 40003, 80, tcp_flags::ACK);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack2)),
        hex(&plain(&ack2, ip(cur), Expect::IpIp))
    );
    assert_eq!(fwd.stats().unwrap().get(stat::SECOND_HOP_SENT), 0);
    assert_eq!(
        fwd.owners_for(&vip2, ip("192.0.2.10"), 40003).unwrap(),
        (Some(ip(cur)), None)
    );
}

#[test]
fn previous_table_given_out_of_order_is_installed_and_released() {
    let lab = RouteLab::new("hopset");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let (cur, prev) = (ip(V4_BACKENDS[1]), ip(V4_BACKENDS[2]));
    fwd.set_vip(vip, VipOptions::default()).unwrap();
    // A previous table the forwarder never had live (a restart): written
    // into the inactive half after the flip.
    fwd.set_table_with_previous(&vip, &[cur], &[0; M], Some((&[prev], &[0; M])))
        .unwrap();
    let ack = tcp("192.0.2.10", "203.0.113.7", 40004, 80, tcp_flags::ACK);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&expected_ipip_hop(&ack, cur, prev))
    );
    // The same live table with another previous one: no flip.
    let other = ip(V4_BACKENDS[0]);
    fwd.set_table_with_previous(&vip, &[cur], &[0; M], Some((&[other], &[0; M])))
        .unwrap();
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&expected_ipip_hop(&ack, cur, other))
    );
    // Backends only the previous table used are counted while it lives.
    assert!(fwd.stats().unwrap().backends.contains_key(&other));
    fwd.clear_previous(&vip).unwrap();
    assert!(!fwd.stats().unwrap().backends.contains_key(&other));
    // Bad previous tables are refused, nothing changes.
    let err = fwd
        .set_table_with_previous(&vip, &[cur], &[0; M], Some((&[prev], &[3; M])))
        .unwrap_err();
    assert!(err.to_string().contains("previous table"), "{err}");
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&plain(&ack, cur, Expect::IpIp))
    );
}
