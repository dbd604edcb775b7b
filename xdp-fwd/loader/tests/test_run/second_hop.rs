//! Second hop, forwarder side: a non-SYN cache miss whose slot changed
//! owner carries the previous owner (GUE variant 0 private data, or a
//! middle IP-in-IP header), byte for byte, and is cached with it: its hits
//! carry it too, through later table changes, until a SYN of the tuple
//! replaces the entry or the previous owner's id is given to another
//! backend. SYNs, flows cached plain, unchanged slots and a VIP without
//! previous table are forwarded exactly as before.
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
fn non_syn_miss_carries_the_previous_owner_ipip_v4_and_is_cached_with_it() {
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
    // Cached with its previous owner: the next packet is a hit and still
    // carries it.
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &ack)), hex(&want));
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::SECOND_HOP_SENT), 2);
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (1, 1));
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

    // A flow cached before a change keeps its backend on this node, plain:
    // another change (the flow's slot moving again) leaves its hits alone.
    let next = V4_BACKENDS[2];
    fwd.set_table_with_previous(&vip, &[ip(next)], &[0; M], Some((&[ip(cur)], &[0; M])))
        .unwrap();
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&plain(&ack, ip(cur), Expect::IpIp))
    );
    let s = fwd.stats().unwrap();
    assert_eq!((s.get(stat::SECOND_HOP_SENT), s.get(stat::LRU_HIT)), (0, 2));
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
    // The same live table with another previous one: no flip (a new flow:
    // the first one is cached with its previous owner).
    let other = ip(V4_BACKENDS[0]);
    fwd.set_table_with_previous(&vip, &[cur], &[0; M], Some((&[other], &[0; M])))
        .unwrap();
    let ack = tcp("192.0.2.10", "203.0.113.7", 40005, 80, tcp_flags::ACK);
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
    let ack = tcp("192.0.2.10", "203.0.113.7", 40006, 80, tcp_flags::ACK);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&plain(&ack, cur, Expect::IpIp))
    );
}

/// A flow cached with its previous owner keeps carrying it whatever the
/// tables do next: a second change (whose previous table names another
/// owner for the slot) and the window's end (`clear_previous`), as long as
/// both owners stay backends of the forwarder.
#[test]
fn cached_previous_owner_survives_a_second_change_and_clear_previous() {
    let lab = RouteLab::new("hopkeep");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let (cur, prev, next) = (V4_BACKENDS[1], V4_BACKENDS[0], V4_BACKENDS[2]);
    moved_vip(&mut fwd, vip, VipOptions::default(), cur, prev);
    let ack = tcp("192.0.2.10", "203.0.113.7", 40010, 80, tcp_flags::ACK).payload(b"a");
    let want = expected_ipip_hop(&ack, ip(cur), ip(prev));
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &ack)), hex(&want));

    // Second change inside the window: every slot to `next`; the previous
    // table (one change back) names `cur`. `cur` and `prev` stay backends.
    let live = [ip(next), ip(prev), ip(cur)];
    fwd.set_table_with_previous(&vip, &live, &[0; M], Some((&[ip(cur)], &[0; M])))
        .unwrap();
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &ack)), hex(&want));
    // A flow first seen now goes by the new tables.
    let other = tcp("192.0.2.10", "203.0.113.7", 40011, 80, tcp_flags::ACK);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &other)),
        hex(&expected_ipip_hop(&other, ip(next), ip(cur)))
    );
    // The window ends: the cached flows still carry what they were cached
    // with; a new one goes plain.
    fwd.clear_previous(&vip).unwrap();
    assert_eq!(hex(&run_tx(&lab, &mut fwd, &ack)), hex(&want));
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &other)),
        hex(&expected_ipip_hop(&other, ip(next), ip(cur)))
    );
    let fresh = tcp("192.0.2.10", "203.0.113.7", 40012, 80, tcp_flags::ACK);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &fresh)),
        hex(&plain(&fresh, ip(next), Expect::IpIp))
    );
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::SECOND_HOP_SENT), 5);
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (3, 3));
}

/// A SYN of the tuple replaces the entry: the new connection goes to the
/// current owner, plain, and so do its later packets.
#[test]
fn syn_clears_a_cached_previous_owner() {
    let lab = RouteLab::new("hopsynclr");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let (cur, prev) = (V4_BACKENDS[1], V4_BACKENDS[0]);
    moved_vip(&mut fwd, vip, VipOptions::default(), cur, prev);
    let ack = tcp("192.0.2.10", "203.0.113.7", 40020, 80, tcp_flags::ACK);
    let syn = tcp("192.0.2.10", "203.0.113.7", 40020, 80, tcp_flags::SYN);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&expected_ipip_hop(&ack, ip(cur), ip(prev)))
    );
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &syn)),
        hex(&plain(&syn, ip(cur), Expect::IpIp))
    );
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&plain(&ack, ip(cur), Expect::IpIp))
    );
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::SECOND_HOP_SENT), 1);
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (1, 2));
}

/// The entry keeps the previous owner's backend id and generation: once
/// that id is released the owner is not carried, and once it is given to
/// another backend, that backend is not carried either.
#[test]
fn previous_owner_id_released_or_reassigned_is_not_carried() {
    let lab = RouteLab::new("hopreid");
    let mut fwd = forwarder();
    let vip = VipKey::new(ip("203.0.113.7"), 80, Protocol::Tcp);
    let (cur, prev) = (V4_BACKENDS[1], V4_BACKENDS[0]);
    moved_vip(&mut fwd, vip, VipOptions::default(), cur, prev);
    let ack = tcp("192.0.2.10", "203.0.113.7", 40030, 80, tcp_flags::ACK);
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&expected_ipip_hop(&ack, ip(cur), ip(prev)))
    );
    // `prev` leaves every table: its id is released.
    fwd.set_table(&vip, &[ip(cur)], &[0; M]).unwrap();
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&plain(&ack, ip(cur), Expect::IpIp))
    );
    // Another VIP's backend takes the free id (new generation).
    let vip2 = VipKey::new(ip("203.0.113.8"), 80, Protocol::Tcp);
    fwd.set_vip(vip2, VipOptions::default()).unwrap();
    fwd.set_table(&vip2, &[ip("10.200.0.9")], &[0; M]).unwrap();
    assert_eq!(
        hex(&run_tx(&lab, &mut fwd, &ack)),
        hex(&plain(&ack, ip(cur), Expect::IpIp))
    );
    let s = fwd.stats().unwrap();
    assert_eq!(s.get(stat::SECOND_HOP_SENT), 1);
    assert_eq!((s.get(stat::LRU_HIT), s.get(stat::LRU_MISS)), (2, 1));
}

/// Both programs agree on the wire format: the forwarder's second-hop
/// frames, fed to the decap program on the current owner (no socket
/// there), go on to the previous owner marked HOPPED with the original
/// packet intact; fed again (the previous owner's decap) they are
/// delivered, never forwarded a second time.
#[test]
fn forwarder_output_is_forwarded_once_by_the_decap_program() {
    let lab = RouteLab::new("hopchain");
    let mut fwd = forwarder();
    let mut decap = xdp_decap::Decapper::load(settings().gue_port).unwrap();
    let (cur, prev) = (V4_BACKENDS[1], V4_BACKENDS[0]);
    let gue = VipOptions {
        encap: Encap::Gue,
        ..Default::default()
    };
    for (n, options) in [VipOptions::default(), gue].into_iter().enumerate() {
        let vip_addr = format!("203.0.113.{}", 20 + n);
        let vip = VipKey::new(ip(&vip_addr), 80, Protocol::Tcp);
        moved_vip(&mut fwd, vip, options, cur, prev);
        decap.set_second_hop(ip(&vip_addr), &[ip(prev)]).unwrap();
        let ack = tcp("192.0.2.10", &vip_addr, 40000, 80, tcp_flags::ACK).payload(b"x");
        let original = ack.ip_packet();
        let first = run_tx(&lab, &mut fwd, &ack);
        let (verdict, second) = lab.ns.run(|| decap.test_run_on(&first, lab.fwd0)).unwrap();
        assert_eq!(verdict, verdict::TX, "{options:?}: second hop sent");
        assert_eq!(
            outer_dst(&second),
            ip(prev),
            "{options:?}: to the previous owner"
        );
        assert!(
            second.ends_with(&original),
            "{options:?}: the original packet travels unchanged"
        );
        // At the previous owner (no socket either): delivered, not again.
        let (verdict, delivered) = lab.ns.run(|| decap.test_run_on(&second, lab.fwd0)).unwrap();
        assert_eq!(verdict, verdict::PASS, "{options:?}: delivered");
        assert_eq!(&delivered[14..], &original[..], "{options:?}: stripped");
    }
    let s = decap.stats().unwrap();
    assert_eq!(
        (
            s.second_hop_forwarded,
            s.second_hop_loop_refused,
            s.second_hop_invalid
        ),
        (2, 2, 0)
    );
}
