//! Step 1: parse Ethernet (one optional 802.1Q tag), IPv4 (IHL honoured) or
//! IPv6, and the transport header, into a [`Packet`].
use aya_ebpf::programs::XdpContext;
use xdp_fwd_common::{family, proto, FlowKey};

use crate::packet::*;

/// What the rest of the path needs to know about a frame.
pub struct Packet {
    /// Offset of the IP header (14, or 18 with a VLAN tag).
    pub l3_off: usize,
    /// Offset of the transport header.
    pub l4_off: usize,
    /// The 5-tuple (ports zero for ICMP).
    pub flow: FlowKey,
    /// [`family::V4`] or [`family::V6`].
    pub family: u8,
    /// IPv4 ToS / IPv6 traffic class.
    pub tos: u8,
    /// IP total length in bytes (header included), host order.
    pub ip_len: u16,
    /// Fragment (IPv4 MF/offset, IPv6 fragment header).
    pub fragment: bool,
    /// IPv6 extension header other than a fragment header.
    pub ext_header: bool,
    /// IPv4 header longer than 20 bytes.
    pub ipv4_options: bool,
    /// IPv4 don't-fragment bit.
    pub dont_fragment: bool,
    /// TCP SYN without ACK: a new connection.
    pub tcp_syn: bool,
    /// IPv6: first two words of the header (version/class/label, length,
    /// next header, hop limit), raw, for the GUE checksum.
    pub v6_head: [u32; 2],
    /// UDP checksum field was zero (IPv4 "no checksum").
    pub udp_no_csum: bool,
}

/// Parses the frame; `None` for anything this program does not handle
/// (non-IP, truncated, inconsistent lengths), which then passes untouched.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Option<Packet> {
    let eth = ptr_at(ctx, 0, ETH_HLEN)?;
    // SAFETY: ETH_HLEN bytes checked.
    let mut ethertype: u16 = unsafe { read(eth, 12) };
    let mut l3_off = ETH_HLEN;
    if ethertype == ETH_P_8021Q_RAW {
        let tag = ptr_at(ctx, ETH_HLEN, VLAN_HLEN)?;
        // SAFETY: the 4-byte tag checked.
        ethertype = unsafe { read(tag, 2) };
        l3_off = ETH_HLEN + VLAN_HLEN;
    }
    let frame_len = ctx.data_end() - ctx.data();
    let mut pkt = if ethertype == ETH_P_IP_RAW {
        parse_ipv4(ctx, l3_off)?
    } else if ethertype == ETH_P_IPV6_RAW {
        parse_ipv6(ctx, l3_off)?
    } else {
        return None;
    };
    if l3_off + pkt.ip_len as usize > frame_len {
        return None;
    }
    if pkt.fragment || pkt.ext_header {
        return Some(pkt);
    }
    parse_l4(ctx, &mut pkt)?;
    Some(pkt)
}

#[inline(always)]
fn empty(l3_off: usize, fam: u8) -> Packet {
    Packet {
        l3_off,
        l4_off: 0,
        flow: FlowKey {
            src: [0; 4],
            dst: [0; 4],
            sport: 0,
            dport: 0,
            proto: 0,
            _pad: [0; 3],
        },
        family: fam,
        tos: 0,
        ip_len: 0,
        fragment: false,
        ext_header: false,
        ipv4_options: false,
        dont_fragment: false,
        tcp_syn: false,
        v6_head: [0; 2],
        udp_no_csum: false,
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3_off: usize) -> Option<Packet> {
    let ip = ptr_at(ctx, l3_off, IPV4_HLEN)?;
    // SAFETY: 20 header bytes checked.
    let (ver_ihl, tos, tot_len, frag, protocol, saddr, daddr) = unsafe {
        (
            read::<u8>(ip, 0),
            read::<u8>(ip, 1),
            u16::from_be(read::<u16>(ip, 2)),
            u16::from_be(read::<u16>(ip, 6)),
            read::<u8>(ip, 9),
            read::<u32>(ip, 12),
            read::<u32>(ip, 16),
        )
    };
    if ver_ihl >> 4 != 4 {
        return None;
    }
    let ihl = ((ver_ihl & 0x0f) as usize) * 4;
    if ihl < IPV4_HLEN || (tot_len as usize) < ihl {
        return None;
    }
    let mut pkt = empty(l3_off, family::V4);
    pkt.l4_off = l3_off + ihl;
    pkt.flow.src[0] = saddr;
    pkt.flow.dst[0] = daddr;
    pkt.flow.proto = protocol;
    pkt.tos = tos;
    pkt.ip_len = tot_len;
    pkt.fragment = frag & 0x3fff != 0;
    pkt.dont_fragment = frag & 0x4000 != 0;
    pkt.ipv4_options = ihl > IPV4_HLEN;
    Some(pkt)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3_off: usize) -> Option<Packet> {
    let ip = ptr_at(ctx, l3_off, IPV6_HLEN)?;
    // SAFETY: 40 header bytes checked.
    let (w0, w1, src, dst) = unsafe {
        (
            read::<u32>(ip, 0),
            read::<u32>(ip, 4),
            read::<[u32; 4]>(ip, 8),
            read::<[u32; 4]>(ip, 24),
        )
    };
    if (w0 & 0xf0) != 0x60 {
        return None;
    }
    let payload_len = u16::from_be((w1 & 0xffff) as u16);
    let next = ((w1 >> 16) & 0xff) as u8;
    let mut pkt = empty(l3_off, family::V6);
    pkt.l4_off = l3_off + IPV6_HLEN;
    pkt.flow.src = src;
    pkt.flow.dst = dst;
    pkt.flow.proto = next;
    // Traffic class straddles the first two bytes: 4 bits in each.
    pkt.tos = (((w0 & 0x0f) << 4) | ((w0 >> 12) & 0x0f)) as u8;
    pkt.ip_len = payload_len.checked_add(IPV6_HLEN as u16)?;
    pkt.v6_head = [w0, w1];
    match next {
        proto::TCP | proto::UDP | proto::ICMPV6 => {}
        44 => pkt.fragment = true,
        // Hop-by-hop, routing, destination options, AH, ESP-less mobility...:
        // not parsed; the VIP policy decides what happens to them.
        0 | 43 | 60 | 51 | 135 | 139 | 140 => pkt.ext_header = true,
        _ => {}
    }
    Some(pkt)
}

/// Whether `len` bytes at frame offset `off` lie inside the IP packet as
/// its length field describes it, not merely inside the frame: bytes past
/// the IP length (Ethernet padding, or a length that lies) are no part of
/// the packet, so no header is read from them.
#[inline(always)]
pub fn in_packet(pkt: &Packet, off: usize, len: usize) -> bool {
    // A volatile read: parse checked `l3_off + ip_len` against the frame,
    // so LLVM would otherwise find the frame check (`ptr_at`) that follows
    // implied by this one and delete it, and the verifier needs that one.
    // SAFETY: a read of a field of a live reference.
    let ip_len = unsafe { core::ptr::read_volatile(&pkt.ip_len) };
    off + len <= pkt.l3_off + ip_len as usize
}

/// Reads ports and TCP flags; other protocols keep zero ports. The
/// transport header must lie inside the IP packet.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, pkt: &mut Packet) -> Option<()> {
    let hlen = match pkt.flow.proto {
        proto::TCP => TCP_HLEN,
        proto::UDP => UDP_HLEN,
        proto::ICMP | proto::ICMPV6 => ICMP_HLEN,
        _ => 0,
    };
    if !in_packet(pkt, pkt.l4_off, hlen) {
        return None;
    }
    match pkt.flow.proto {
        proto::TCP => {
            let l4 = ptr_at(ctx, pkt.l4_off, TCP_HLEN)?;
            // SAFETY: the TCP header checked.
            let (sport, dport, flags) =
                unsafe { (read::<u16>(l4, 0), read::<u16>(l4, 2), read::<u8>(l4, 13)) };
            pkt.flow.sport = sport;
            pkt.flow.dport = dport;
            // SYN set, ACK clear.
            pkt.tcp_syn = flags & 0x12 == 0x02;
        }
        proto::UDP => {
            let l4 = ptr_at(ctx, pkt.l4_off, UDP_HLEN)?;
            // SAFETY: the UDP header checked.
            let (sport, dport, csum) =
                unsafe { (read::<u16>(l4, 0), read::<u16>(l4, 2), read::<u16>(l4, 6)) };
            pkt.flow.sport = sport;
            pkt.flow.dport = dport;
            pkt.udp_no_csum = csum == 0;
        }
        proto::ICMP | proto::ICMPV6 => {
            ptr_at(ctx, pkt.l4_off, ICMP_HLEN)?;
        }
        _ => {}
    }
    Some(())
}
