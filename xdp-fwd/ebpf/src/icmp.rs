//! ICMP addressed to a VIP (a side path, not one of the numbered steps in
//! `main.rs`).
//!
//! - Echo request to a VIP address: answered in place (XDP_TX).
//! - ICMP fragmentation-needed / ICMPv6 packet-too-big about a VIP flow: the
//!   quoted packet was sent by a backend (VIP -> client), so the reversed
//!   quoted 5-tuple is the client's flow; the message is forwarded to the
//!   backend owning that flow, so its path-MTU discovery works.
//! - Anything else passes.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use xdp_fwd_common::{family, proto, stats::stat, FlowKey};

use crate::{
    csum, forward_flow,
    maps::count,
    packet::*,
    parse::{in_packet, Packet},
    select,
};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_ECHO: u8 = 8;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const REPLY_TTL: u8 = 64;

/// Handles an ICMP or ICMPv6 packet.
#[inline(always)]
pub fn handle(ctx: &XdpContext, pkt: &Packet) -> u32 {
    let Some(icmp) = ptr_at(ctx, pkt.l4_off, ICMP_HLEN) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: the ICMP header was checked.
    let (kind, code): (u8, u8) = unsafe { (read(icmp, 0), read(icmp, 1)) };
    if pkt.family == family::V4 {
        if kind == ICMP_ECHO && select::is_vip_address(pkt.flow.dst, pkt.family) {
            return echo_reply_v4(ctx, pkt);
        }
        if kind == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED {
            return too_big_v4(ctx, pkt);
        }
    } else {
        if kind == ICMPV6_ECHO_REQUEST && select::is_vip_address(pkt.flow.dst, pkt.family) {
            return echo_reply_v6(ctx, pkt);
        }
        if kind == ICMPV6_PKT_TOOBIG {
            return too_big_v6(ctx, pkt);
        }
    }
    xdp_action::XDP_PASS
}

/// Swaps the Ethernet addresses so the frame goes back where it came from.
#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> Option<()> {
    let eth = ptr_at(ctx, 0, ETH_HLEN)?;
    // SAFETY: 14 bytes checked.
    unsafe {
        let dst: [u16; 3] = read(eth, 0);
        let src: [u16; 3] = read(eth, 6);
        write(eth, 0, src);
        write(eth, 6, dst);
    }
    Some(())
}

#[inline(always)]
fn echo_reply_v4(ctx: &XdpContext, pkt: &Packet) -> u32 {
    let (Some(ip), Some(icmp)) = (
        ptr_at(ctx, pkt.l3_off, IPV4_HLEN),
        ptr_at(ctx, pkt.l4_off, ICMP_HLEN),
    ) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: both headers checked.
    unsafe {
        write(ip, 12, pkt.flow.dst[0]);
        write(ip, 16, pkt.flow.src[0]);
        let old: u16 = read(ip, 8); // TTL, protocol
        let new = (old & 0xff00) | REPLY_TTL as u16;
        write(ip, 8, new);
        write(ip, 10, csum::replace16(read(ip, 10), old, new));
        let old: u16 = read(icmp, 0); // type, code
        let new = (old & 0xff00) | ICMP_ECHO_REPLY as u16;
        write(icmp, 0, new);
        write(icmp, 2, csum::replace16(read(icmp, 2), old, new));
    }
    if swap_macs(ctx).is_none() {
        return xdp_action::XDP_PASS;
    }
    count(stat::ICMP_ECHO_REPLY);
    xdp_action::XDP_TX
}

#[inline(always)]
fn echo_reply_v6(ctx: &XdpContext, pkt: &Packet) -> u32 {
    let (Some(ip), Some(icmp)) = (
        ptr_at(ctx, pkt.l3_off, IPV6_HLEN),
        ptr_at(ctx, pkt.l4_off, ICMP_HLEN),
    ) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: both headers checked. Swapping the addresses leaves the
    // pseudo-header sum unchanged; only the type changes the checksum.
    unsafe {
        write(ip, 7, REPLY_TTL);
        write(ip, 8, pkt.flow.dst);
        write(ip, 24, pkt.flow.src);
        let old: u16 = read(icmp, 0);
        let new = (old & 0xff00) | ICMPV6_ECHO_REPLY as u16;
        write(icmp, 0, new);
        write(icmp, 2, csum::replace16(read(icmp, 2), old, new));
    }
    if swap_macs(ctx).is_none() {
        return xdp_action::XDP_PASS;
    }
    count(stat::ICMP_ECHO_REPLY);
    xdp_action::XDP_TX
}

/// The client's flow from a quoted (backend -> client) packet.
#[inline(always)]
fn reversed(quoted_src: [u32; 4], quoted_dst: [u32; 4], ports: u32, protocol: u8) -> FlowKey {
    FlowKey {
        src: quoted_dst,
        dst: quoted_src,
        sport: (ports >> 16) as u16,
        dport: (ports & 0xffff) as u16,
        proto: protocol,
        _pad: [0; 3],
    }
}

#[inline(always)]
fn forward_too_big(ctx: &XdpContext, pkt: &Packet, flow: FlowKey) -> u32 {
    if flow.proto != proto::TCP && flow.proto != proto::UDP {
        return xdp_action::XDP_PASS;
    }
    let Some(vip) = select::vip_lookup(flow.dst, flow.dport, flow.proto, pkt.family) else {
        return xdp_action::XDP_PASS;
    };
    count(stat::ICMP_PTB_FORWARDED);
    forward_flow(ctx, pkt, &flow, &vip, false)
}

#[inline(always)]
fn too_big_v4(ctx: &XdpContext, pkt: &Packet) -> u32 {
    let quoted = pkt.l4_off + ICMP_HLEN;
    if !in_packet(pkt, quoted, IPV4_HLEN) {
        return xdp_action::XDP_PASS;
    }
    let Some(ip) = ptr_at(ctx, quoted, IPV4_HLEN) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: the quoted IPv4 header checked.
    let (ver_ihl, protocol, src, dst): (u8, u8, u32, u32) =
        unsafe { (read(ip, 0), read(ip, 9), read(ip, 12), read(ip, 16)) };
    let ihl = ((ver_ihl & 0x0f) as usize) * 4;
    if ver_ihl >> 4 != 4 || ihl < IPV4_HLEN {
        return xdp_action::XDP_PASS;
    }
    // RFC 792: the quote holds at least 8 bytes past the header, the ports.
    if !in_packet(pkt, quoted + ihl, 4) {
        return xdp_action::XDP_PASS;
    }
    let Some(l4) = ptr_at(ctx, quoted + ihl, 4) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: 4 bytes checked.
    let ports: u32 = unsafe { read(l4, 0) };
    forward_too_big(
        ctx,
        pkt,
        reversed([src, 0, 0, 0], [dst, 0, 0, 0], ports, protocol),
    )
}

#[inline(always)]
fn too_big_v6(ctx: &XdpContext, pkt: &Packet) -> u32 {
    let quoted = pkt.l4_off + ICMP_HLEN;
    if !in_packet(pkt, quoted, IPV6_HLEN + 4) {
        return xdp_action::XDP_PASS;
    }
    let Some(ip) = ptr_at(ctx, quoted, IPV6_HLEN + 4) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: the quoted IPv6 header and the ports checked.
    let (version, next, src, dst, ports): (u8, u8, [u32; 4], [u32; 4], u32) = unsafe {
        (
            read(ip, 0),
            read(ip, 6),
            read(ip, 8),
            read(ip, 24),
            read(ip, IPV6_HLEN),
        )
    };
    // Only an IPv6 packet can be a flow of an IPv6 VIP.
    if version >> 4 != 6 {
        return xdp_action::XDP_PASS;
    }
    forward_too_big(ctx, pkt, reversed(src, dst, ports, next))
}
