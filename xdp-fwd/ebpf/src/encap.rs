//! Step 5: encapsulate the packet towards the chosen backend.
//!
//! IP-in-IP (IPIP, IP6IP6, IPv4-in-IPv6, IPv6-in-IPv4: the backend's family
//! decides the outer header) or GUE variant 1 (outer IP + UDP, then the inner
//! IP packet). The outer source carries flow entropy in its host bits (as
//! Katran does) so the backend's RSS spreads flows over its queues; GUE also
//! puts entropy in the UDP source port. ToS / traffic class is copied.
use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext, EbpfContext};
use xdp_fwd_common::{encap, family, proto, stats::stat, Settings};

use crate::{csum, packet::*, parse::Packet, select::Chosen};

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
}

const TTL: u8 = 64;

/// The outer header towards `chosen` in encapsulation `mode`, before
/// anything is written (the route lookup needs it). `Err` carries the drop
/// counter.
#[inline(always)]
pub fn outer_header(
    pkt: &Packet,
    chosen: &Chosen,
    mode: u8,
    settings: &Settings,
) -> Result<Outer, u32> {
    let gue = mode == encap::GUE;
    let outer_v6 = chosen.backend.family == family::V6;
    let inner_len = pkt.ip_len as u32;
    let tot_len = inner_len + header_len(outer_v6, gue) as u32;
    if tot_len > 0xffff {
        return Err(stat::DROP_MTU);
    }
    let proto = if gue {
        proto::UDP
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
    })
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
fn header_len(outer_v6: bool, gue: bool) -> usize {
    (if outer_v6 { IPV6_HLEN } else { IPV4_HLEN }) + if gue { UDP_HLEN } else { 0 }
}

/// Grows the frame and writes Ethernet (+ the original VLAN tag), the outer
/// IP header and, for GUE, the UDP header. `macs` are the Ethernet
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
    let hdr_len = header_len(outer_v6, gue);
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
            chosen.hash,
            inner_len as u16 + (hdr_len - ip_hlen) as u16,
        )?;
    } else {
        write_ipv4(
            ctx,
            l3,
            outer,
            pkt.family != family::V4 || pkt.dont_fragment,
        )?;
    }
    if gue {
        let sport = (((chosen.hash & 0x3fff) | 0xc000) as u16).to_be();
        let udp_len = ((inner_len + UDP_HLEN as u32) as u16).to_be();
        let check = gue_checksum(pkt, outer, sport, settings.gue_port, udp_len);
        let udp = ptr_at(ctx, l3 + ip_hlen, UDP_HLEN).ok_or(stat::DROP_ENCAP)?;
        // SAFETY: the UDP header checked.
        unsafe {
            write(udp, 0, sport);
            write(udp, 2, settings.gue_port);
            write(udp, 4, udp_len);
            write(udp, 6, check);
        }
    }
    Ok(())
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
fn write_ipv4(ctx: &XdpContext, l3: usize, o: &Outer, dont_fragment: bool) -> Result<(), u32> {
    let w0 = 0x45u32 | (o.tos as u32) << 8 | (o.tot_len.to_be() as u32) << 16;
    let frag: u16 = if dont_fragment { 0x4000u16.to_be() } else { 0 };
    let w1 = (frag as u32) << 16; // id 0
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
    hash: u32,
    payload_len: u16,
) -> Result<(), u32> {
    // Version 6, traffic class, and the flow hash as flow label (ECMP entropy).
    let label = hash & 0xfffff;
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
