//! Backend-side decapsulation in XDP, for hosts whose kernel has no IPIP/FOU
//! tunnel devices (or that want decap at driver speed, as Katran's decap does).
//!
//! Strips one outer header -- IPv4 or IPv6 carrying IPv4 (proto 4), IPv6
//! (proto 41), or GUE variant 1 (UDP to the configured port, directly followed
//! by the inner IP packet) -- and passes the inner packet to the stack, which
//! delivers it to the VIP on loopback. Everything else passes untouched.
//!
//! Packets carrying a previous owner (second hop: GUE variant 0 with
//! EdgeLB's private data, or a marked middle IP-in-IP header) are decided
//! in [`hop`]: delivered here, or forwarded once to the previous owner.
#![no_std]
#![no_main]

mod hop;
mod packet;
mod route;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use xdp_fwd_common::second_hop::{
    decap_stat as stat, HopKey, IPIP_ID_HOPPED, IPIP_LABEL_HOPPED, SECOND_HOP_ENTRIES,
};

use crate::packet::*;

/// Index 0: the GUE destination port in host byte order (0 disables GUE).
#[map]
static DECAP_CONFIG: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `decap_stat`.
#[map]
static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// VIPs configured for second hop on this host, and their peers.
#[map]
static SECOND_HOP: HashMap<HopKey, u32> = HashMap::with_max_entries(SECOND_HOP_ENTRIES, 0);

/// What the outer headers of a frame are.
enum Outer {
    /// One layer to strip: its length after Ethernet, the inner EtherType,
    /// and the counter.
    Plain(usize, u16, u32),
    /// A second-hop record (see [`hop`]); the outer IP header's length.
    Hop(hop::Form, usize),
}

#[xdp]
pub fn xdp_decap(ctx: XdpContext) -> u32 {
    match outer_header(&ctx) {
        Some(Outer::Plain(outer_len, inner_ethertype, counter)) => {
            strip(&ctx, outer_len, inner_ethertype, counter)
        }
        Some(Outer::Hop(form, l3_len)) => hop::handle(&ctx, form, l3_len),
        None => xdp_action::XDP_PASS,
    }
}

/// The outer headers, or None when the frame is not an encapsulated packet
/// for us.
#[inline(always)]
fn outer_header(ctx: &XdpContext) -> Option<Outer> {
    let eth = ptr_at(ctx, 0, ETH_HLEN)?;
    // SAFETY: bounds checked by ptr_at.
    let ethertype = unsafe { u16::from_be_bytes([*eth.add(12), *eth.add(13)]) };
    // The IP-in-IP form after its second hop: the marker is in the outer header.
    let outer_hopped;
    // The outer destination (this host), which a middle header's source must be.
    let mut outer_dst = [0u32; 4];
    let (l3_len, proto) = match ethertype {
        ETH_P_IP => {
            let ip = ptr_at(ctx, ETH_HLEN, 20)?;
            // SAFETY: 20 bytes checked above.
            let (ver_ihl, frag, proto) = unsafe {
                (
                    *ip,
                    u16::from_be_bytes([*ip.add(6), *ip.add(7)]),
                    *ip.add(9),
                )
            };
            // SAFETY: as above.
            let id = unsafe { u16::from_be_bytes([*ip.add(4), *ip.add(5)]) };
            outer_hopped = id == IPIP_ID_HOPPED;
            // SAFETY: as above.
            outer_dst[0] = unsafe { word(ip, 16) };
            let ihl = ((ver_ihl & 0x0f) as usize) * 4;
            if ver_ihl >> 4 != 4 || ihl < 20 {
                return None;
            }
            // A fragmented outer packet cannot be decapsulated piecewise: leave
            // it to the stack (and count it, so operators see MTU problems).
            if frag & 0x3fff != 0 {
                if matches!(proto, IPPROTO_IPIP | IPPROTO_IPV6 | IPPROTO_UDP) {
                    count(stat::FRAGMENT);
                }
                return None;
            }
            (ihl, proto)
        }
        ETH_P_IPV6 => {
            let ip = ptr_at(ctx, ETH_HLEN, 40)?;
            // SAFETY: 40 bytes checked above.
            let (b1, b2, b3, next) = unsafe { (*ip.add(1), *ip.add(2), *ip.add(3), *ip.add(6)) };
            let label = ((b1 as u32 & 0x0f) << 16) | (b2 as u32) << 8 | b3 as u32;
            outer_hopped = label == IPIP_LABEL_HOPPED;
            // SAFETY: as above.
            outer_dst = unsafe { [word(ip, 24), word(ip, 28), word(ip, 32), word(ip, 36)] };
            (40, next)
        }
        _ => return None,
    };
    match proto {
        IPPROTO_IPIP | IPPROTO_IPV6 => {
            if let Some(form) = hop::ipip_form(
                ctx,
                l3_len,
                proto,
                outer_hopped,
                &outer_dst,
                ethertype == ETH_P_IPV6,
            ) {
                return Some(Outer::Hop(form, l3_len));
            }
            let inner = if proto == IPPROTO_IPIP {
                ETH_P_IP
            } else {
                ETH_P_IPV6
            };
            Some(Outer::Plain(l3_len, inner, stat::IPIP))
        }
        IPPROTO_UDP => {
            let gue_port = DECAP_CONFIG.get(0).copied().unwrap_or(0);
            let udp = ptr_at(ctx, ETH_HLEN + l3_len, 9)?;
            // SAFETY: 8 bytes of UDP header and the first inner byte checked above.
            let (dport, first) =
                unsafe { (u16::from_be_bytes([*udp.add(2), *udp.add(3)]), *udp.add(8)) };
            if gue_port == 0 || u32::from(dport) != gue_port {
                return None;
            }
            // GUE variant 0 with EdgeLB's private data: a second-hop record.
            if first >> 6 == 0 {
                let outer_v6 = ethertype == ETH_P_IPV6;
                return hop::gue_form(ctx, l3_len, outer_v6).map(|form| Outer::Hop(form, l3_len));
            }
            // GUE variant 1: the first two bits are 01, and the IP version
            // nibble tells the inner family.
            let inner = match first >> 4 {
                4 => ETH_P_IP,
                6 => ETH_P_IPV6,
                _ => return None,
            };
            Some(Outer::Plain(l3_len + 8, inner, stat::GUE))
        }
        _ => None,
    }
}

/// Moves the Ethernet header forward over the outer headers and drops them.
#[inline(always)]
fn strip(ctx: &XdpContext, outer_len: usize, inner_ethertype: u16, counter: u32) -> u32 {
    let Some(eth) = ptr_at(ctx, 0, ETH_HLEN) else {
        return xdp_action::XDP_PASS;
    };
    let mut macs = [0u8; 12];
    // SAFETY: 14 bytes checked by ptr_at.
    unsafe { core::ptr::copy_nonoverlapping(eth, macs.as_mut_ptr(), 12) };
    // SAFETY: helper call on our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len as i32) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let Some(eth) = ptr_at(ctx, 0, ETH_HLEN) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: 14 bytes checked by ptr_at after the head moved.
    unsafe {
        core::ptr::copy_nonoverlapping(macs.as_ptr(), eth, 12);
        let et = inner_ethertype.to_be_bytes();
        *eth.add(12) = et[0];
        *eth.add(13) = et[1];
    }
    count(counter);
    xdp_action::XDP_PASS
}

/// Adds one to a counter.
#[inline(always)]
fn count(counter: u32) {
    if let Some(c) = DECAP_STATS.get_ptr_mut(counter) {
        // SAFETY: this CPU's own slot.
        unsafe { *c += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
