//! Step 5: encapsulate the packet towards the chosen backend.
//!
//! IP-in-IP (IPIP, IP6IP6, IPv4-in-IPv6, IPv6-in-IPv4: the backend's family
//! decides the outer header) or GUE variant 1 (outer IP + UDP, then the inner
//! IP packet). The outer source carries flow entropy in its host bits (as
//! Katran does) so the backend's RSS spreads flows over its queues; GUE also
//! puts entropy in the UDP source port. ToS / traffic class is copied.
//!
//! A second-hop candidate carries its previous owner: GUE variant 0 with
//! the address in the private data instead of variant 1, or, for IP-in-IP,
//! a middle IP header addressed to the previous owner (FORWARDER.md).
use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext, EbpfContext};
use xdp_fwd_common::{encap, family, proto, second_hop as hop, stats::stat, Settings};

use crate::{
    csum,
    maps::count,
    packet::*,
    parse::Packet,
    select::{Chosen, PrevOwner},
};

/// The outer header as written, for the route lookup.
pub struct Outer {
    /// Outer family.
    pub family: u8,
    /// Outer protocol (4, 41 or 17).
    pub proto: u8,
    /// Outer IP total length, host order.
    pub tot_len: u16,
    /// Outer ToS / traffic class.
    pub tos: u8,
    /// Outer source address words.
    pub src: [u32; 4],
    /// Outer destination address words (the backend).
    pub dst: [u32; 4],
    /// The previous owner carried (second hop), same family as `dst`.
    pub prev: PrevOwner,
}

const TTL: u8 = 64;

/// The outer header towards `chosen` in encapsulation `mode`, before
/// anything is written (the route lookup needs it). `Err` carries the drop
/// counter.
#[inline(always)]
pub fn outer_header(
    pkt: &Packet,
    chosen: &Chosen,
    prev: PrevOwner,
    mode: u8,
    settings: &Settings,
) -> Result<Outer, u32> {
    let gue = mode == encap::GUE;
    let outer_v6 = chosen.backend.family == family::V6;
    let inner_len = pkt.ip_len as u32;
    let tot_len = inner_len + header_len(outer_v6, gue, prev.is_some()) as u32;
    if tot_len > 0xffff {
        return Err(stat::DROP_MTU);
    }
    let proto = if gue {
        proto::UDP
    } else if prev.is_some() {
        // The middle header, of the backends' family, follows.
        ip_in_ip_proto(outer_v6)
    } else if pkt.family == family::V4 {
        proto::IPIP
    } else {
        proto::IPV6
    };
    Ok(Outer {
        family: chosen.backend.family,
        proto,
        tot_len: tot_len as u16,
        tos: pkt.tos,
        src: outer_source(outer_v6, chosen.hash, settings),
        dst: chosen.backend.addr,
        prev,
    })
}

/// The protocol number announcing an IP header of the given family.
#[inline(always)]
fn ip_in_ip_proto(v6: bool) -> u8 {
    if v6 {
        proto::IPV6
    } else {
        proto::IPIP
    }
}

/// The frame's own Ethernet destination and source, as received.
#[inline(always)]
pub fn frame_eth_addrs(ctx: &XdpContext) -> Option<[u16; 6]> {
    let eth = ptr_at(ctx, 0, ETH_HLEN)?;
    // SAFETY: ETH_HLEN bytes checked.
    Some(unsafe { read(eth, 0) })
}

/// Bytes the encapsulation adds.
#[inline(always)]
fn header_len(outer_v6: bool, gue: bool, second_hop: bool) -> usize {
    (if outer_v6 { IPV6_HLEN } else { IPV4_HLEN })
        + if gue { UDP_HLEN } else { 0 }
        + if second_hop {
            hop_len(outer_v6, gue)
        } else {
            0
        }
}

/// Bytes the previous owner adds: the GUE variant 0 header with its
/// private data, or the middle IP header.
#[inline(always)]
fn hop_len(v6: bool, gue: bool) -> usize {
    match (gue, v6) {
        (true, false) => hop::GUE_FIXED_LEN + 4,
        (true, true) => hop::GUE_FIXED_LEN + 16,
        (false, false) => IPV4_HLEN,
        (false, true) => IPV6_HLEN,
    }
}

/// Grows the frame and writes Ethernet (+ the original VLAN tag), the outer
/// IP header, for GUE the UDP header, and a second-hop candidate's
/// previous owner (counted as sent). `macs` are the Ethernet
/// destination and source, in wire order (the next hop's, or the frame's
/// own when the kernel is to forward it). `Err` carries the drop counter.
#[inline(always)]
pub fn encapsulate(
    ctx: &XdpContext,
    pkt: &Packet,
    outer: &Outer,
    chosen: &Chosen,
    settings: &Settings,
    macs: [u16; 6],
) -> Result<(), u32> {
    let gue = outer.proto == proto::UDP;
    let outer_v6 = outer.family == family::V6;
    let ip_hlen = if outer_v6 { IPV6_HLEN } else { IPV4_HLEN };
    // What `outer_header` added, taken from its result rather than worked
    // out again: no test of the mode, family or previous owner here.
    let hdr_len = (outer.tot_len - pkt.ip_len) as usize;
    let inner_len = pkt.ip_len as u32;

    let vlan_tci: u16 = if pkt.l3_off > ETH_HLEN {
        let tag = ptr_at(ctx, ETH_HLEN, VLAN_HLEN).ok_or(stat::DROP_ENCAP)?;
        // SAFETY: the tag was checked.
        unsafe { read(tag, 0) }
    } else {
        0
    };

    // SAFETY: the helper only moves ctx->data within the frame's headroom.
    if unsafe { bpf_xdp_adjust_head(ctx.as_ptr().cast(), -(hdr_len as i32)) } != 0 {
        return Err(stat::DROP_ENCAP);
    }

    let outer_ethertype = if outer_v6 {
        ETH_P_IPV6_RAW
    } else {
        ETH_P_IP_RAW
    };
    if pkt.l3_off > ETH_HLEN {
        let l2 = ptr_at(ctx, 0, ETH_HLEN + VLAN_HLEN).ok_or(stat::DROP_ENCAP)?;
        // SAFETY: 18 bytes checked.
        unsafe {
            write(l2, 0, macs);
            write(l2, 12, ETH_P_8021Q_RAW);
            write(l2, 14, vlan_tci);
            write(l2, 16, outer_ethertype);
        }
    } else {
        let l2 = ptr_at(ctx, 0, ETH_HLEN).ok_or(stat::DROP_ENCAP)?;
        // SAFETY: 14 bytes checked.
        unsafe {
            write(l2, 0, macs);
            write(l2, 12, outer_ethertype);
        }
    }

    let l3 = pkt.l3_off;
    if outer_v6 {
        write_ipv6(
            ctx,
            l3,
            outer,
            chosen.hash & 0xfffff,
            inner_len as u16 + (hdr_len - ip_hlen) as u16,
        )?;
    } else {
        write_ipv4(ctx, l3, outer, dont_fragment(pkt), 0)?;
    }
    let after_ip = l3 + ip_hlen;
    if gue {
        let sport = (((chosen.hash & 0x3fff) | 0xc000) as u16).to_be();
        let udp_len = ((hdr_len - ip_hlen) as u32 + inner_len) as u16;
        let udp_len = udp_len.to_be();
        let check = gue_checksum(pkt, outer, sport, settings.gue_port, udp_len);
        let udp = ptr_at(ctx, after_ip, UDP_HLEN).ok_or(stat::DROP_ENCAP)?;
        // SAFETY: the UDP header checked.
        unsafe {
            write(udp, 0, sport);
            write(udp, 2, settings.gue_port);
            write(udp, 4, udp_len);
            write(udp, 6, check);
        }
    }
    if let Some(prev) = &outer.prev {
        if gue {
            write_gue_prev(ctx, after_ip + UDP_HLEN, pkt, outer_v6, prev)?;
        } else {
            write_middle(ctx, after_ip, pkt, outer, chosen, prev)?;
        }
        // Counted in the branch that wrote it, the last write: a plain
        // packet tests for a previous owner here only.
        count(stat::SECOND_HOP_SENT);
    }
    Ok(())
}

/// DF of the outer headers: copied from an IPv4 inner header, set for IPv6.
#[inline(always)]
fn dont_fragment(pkt: &Packet) -> bool {
    pkt.family != family::V4 || pkt.dont_fragment
}

/// The GUE variant 0 header and its private data (magic, flags 0, family,
/// previous owner's address) as raw words: the bytes in wire order read
/// as little-endian u32, what the checksum and the writes use.
#[inline(always)]
fn gue_prev_words(pkt: &Packet, v6: bool) -> (u32, u32) {
    let hlen = if v6 {
        hop::GUE_HLEN_V6
    } else {
        hop::GUE_HLEN_V4
    };
    let inner_proto = ip_in_ip_proto(pkt.family == family::V6);
    let fam = if v6 { family::V6 } else { family::V4 };
    let w0 = (hop::GUE_V0 | hlen) as u32 | (inner_proto as u32) << 8;
    let w1 = hop::GUE_MAGIC as u32 | (fam as u32) << 16;
    (w0, w1)
}

/// Writes the GUE variant 0 header carrying `prev` at `at`.
#[inline(always)]
fn write_gue_prev(
    ctx: &XdpContext,
    at: usize,
    pkt: &Packet,
    v6: bool,
    prev: &[u32; 4],
) -> Result<(), u32> {
    let (w0, w1) = gue_prev_words(pkt, v6);
    if v6 {
        let p = ptr_at(ctx, at, hop::GUE_FIXED_LEN + 16).ok_or(stat::DROP_ENCAP)?;
        // SAFETY: 24 bytes checked.
        unsafe {
            write(p, 0, w0);
            write(p, 4, w1);
            write(p, 8, *prev);
        }
    } else {
        let p = ptr_at(ctx, at, hop::GUE_FIXED_LEN + 4).ok_or(stat::DROP_ENCAP)?;
        // SAFETY: 12 bytes checked.
        unsafe {
            write(p, 0, w0);
            write(p, 4, w1);
            write(p, 8, prev[0]);
        }
    }
    Ok(())
}

/// Writes the IP-in-IP form's middle header at `at`: from the current
/// owner to the previous owner, marked as a second-hop candidate, carrying
/// the original packet.
#[inline(always)]
fn write_middle(
    ctx: &XdpContext,
    at: usize,
    pkt: &Packet,
    outer: &Outer,
    chosen: &Chosen,
    prev: &[u32; 4],
) -> Result<(), u32> {
    let v6 = outer.family == family::V6;
    let inner_len = pkt.ip_len;
    let middle = Outer {
        family: outer.family,
        proto: ip_in_ip_proto(pkt.family == family::V6),
        tot_len: inner_len + if v6 { 0 } else { IPV4_HLEN as u16 },
        tos: outer.tos,
        src: chosen.backend.addr,
        dst: *prev,
        prev: None,
    };
    if v6 {
        write_ipv6(ctx, at, &middle, hop::IPIP_LABEL_CANDIDATE, inner_len)
    } else {
        write_ipv4(ctx, at, &middle, dont_fragment(pkt), hop::IPIP_ID_CANDIDATE)
    }
}

/// The node's configured source prefix with the host bits taken from the
/// flow hash.
#[inline(always)]
fn outer_source(v6: bool, hash: u32, s: &Settings) -> [u32; 4] {
    if v6 {
        let m = s.src_v6_hash_mask;
        [
            s.src_v6[0],
            s.src_v6[1],
            s.src_v6[2],
            (s.src_v6[3] & !m) | (hash & m),
        ]
    } else {
        let m = s.src_v4_hash_mask;
        [(s.src_v4 & !m) | (hash & m), 0, 0, 0]
    }
}

#[inline(always)]
fn write_ipv4(
    ctx: &XdpContext,
    l3: usize,
    o: &Outer,
    dont_fragment: bool,
    id: u16,
) -> Result<(), u32> {
    let w0 = 0x45u32 | (o.tos as u32) << 8 | (o.tot_len.to_be() as u32) << 16;
    let frag: u16 = if dont_fragment { 0x4000u16.to_be() } else { 0 };
    let w1 = id.to_be() as u32 | (frag as u32) << 16;
    let w2 = TTL as u32 | (o.proto as u32) << 8; // checksum 0 for now
    let mut sum = csum::add32(csum::add32(csum::add32(0, w0), w1), w2);
    sum = csum::add32(csum::add32(sum, o.src[0]), o.dst[0]);
    let check = !csum::fold(sum);
    let ip = ptr_at(ctx, l3, IPV4_HLEN).ok_or(stat::DROP_ENCAP)?;
    // SAFETY: 20 bytes checked.
    unsafe {
        write(ip, 0, w0);
        write(ip, 4, w1);
        write(ip, 8, w2 | (check as u32) << 16);
        write(ip, 12, o.src[0]);
        write(ip, 16, o.dst[0]);
    }
    Ok(())
}

#[inline(always)]
fn write_ipv6(
    ctx: &XdpContext,
    l3: usize,
    o: &Outer,
    label: u32,
    payload_len: u16,
) -> Result<(), u32> {
    // Version 6, traffic class, and the flow label (the outer header's: the
    // flow hash, ECMP entropy; a middle header's: the second-hop marker).
    let b0 = 0x60 | (o.tos as u32 >> 4);
    let b1 = ((o.tos as u32 & 0x0f) << 4) | (label >> 16);
    let b2 = (label >> 8) & 0xff;
    let b3 = label & 0xff;
    let w0 = b0 | b1 << 8 | b2 << 16 | b3 << 24;
    let w1 = payload_len.to_be() as u32 | (o.proto as u32) << 16 | (TTL as u32) << 24;
    let ip = ptr_at(ctx, l3, IPV6_HLEN).ok_or(stat::DROP_ENCAP)?;
    // SAFETY: 40 bytes checked.
    unsafe {
        write(ip, 0, w0);
        write(ip, 4, w1);
        write(ip, 8, o.src);
        write(ip, 24, o.dst);
    }
    Ok(())
}

/// The outer UDP checksum without reading the payload: a valid inner packet
/// sums to a value known from its headers alone (as Linux's local checksum
/// offload: the inner transport checksum cancels the payload). When that
/// cannot be known (inner IPv4 UDP without checksum) the checksum is 0, which
/// IPv4 allows and IPv6 tunnels accept with RFC 6935 zero-checksum mode.
#[inline(always)]
fn gue_checksum(pkt: &Packet, o: &Outer, sport: u16, dport: u16, udp_len: u16) -> u16 {
    let Some(inner) = inner_sum(pkt) else {
        return 0;
    };
    let mut s = csum::add_addr(csum::add_addr(inner, &o.src), &o.dst);
    if let Some(prev) = &o.prev {
        let (w0, w1) = gue_prev_words(pkt, o.family == family::V6);
        s = csum::add_addr(csum::add32(csum::add32(s, w0), w1), prev);
    }
    s += (proto::UDP as u32) << 8;
    s += udp_len as u32 * 2; // pseudo-header length + UDP length field
    s += sport as u32 + dport as u32;
    let c = !csum::fold(s);
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// One's-complement sum of the whole inner IP packet, from its headers.
#[inline(always)]
fn inner_sum(pkt: &Packet) -> Option<u32> {
    let f = &pkt.flow;
    let l4_len = pkt.ip_len as u32 - (pkt.l4_off - pkt.l3_off) as u32;
    if pkt.family == family::V4 {
        // A valid IPv4 header sums to zero; an ICMP message sums to zero.
        if f.proto == proto::ICMP {
            return Some(0);
        }
        if f.proto == proto::UDP && pkt.udp_no_csum {
            return None;
        }
        let pseudo = csum::add32(csum::add32(0, f.src[0]), f.dst[0])
            + ((f.proto as u32) << 8)
            + (l4_len as u16).to_be() as u32;
        Some(!csum::fold(pseudo) as u32)
    } else {
        let head = csum::add32(csum::add32(0, pkt.v6_head[0]), pkt.v6_head[1]);
        let head = csum::add_addr(csum::add_addr(head, &f.src), &f.dst);
        let pseudo = csum::add_addr(csum::add_addr(0, &f.src), &f.dst)
            + ((f.proto as u32) << 8)
            + (l4_len as u16).to_be() as u32;
        Some(head + !csum::fold(pseudo) as u32)
    }
}
