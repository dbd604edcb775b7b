//! EdgeLB's XDP Maglev forwarder, kernel side.
//!
//! One packet path, each step a small function in its own module:
//!
//! 1. [`parse`]: Ethernet (+802.1Q), IPv4 / IPv6, TCP / UDP / ICMP(v6).
//! 2. [`select::cached_flow`]: an established flow whose [`conn`] cache
//!    entry and VIP are unchanged skips to step 4; else
//!    [`select::vip_lookup`]: (address, port, protocol), then port 0.
//! 3. [`select::select_backend`]: [`conn`] cache, else flow hash + Maglev.
//! 4. [`transmit::next_hop`]: the route to the backend (`bpf_fib_lookup`,
//!    cached per CPU), looked up before anything is written.
//! 5. [`encap::encapsulate`]: IP-in-IP or GUE with the next hop's MACs, then
//!    [`transmit::send_to`]: XDP_TX or XDP_REDIRECT.
//!
//! Second hop: a non-SYN cache miss whose slot had another owner in the
//! VIP's previous table carries that owner in its encapsulation (see
//! `select::previous_owner`, `encap`, and FORWARDER.md) and is cached with
//! it, so its later hits carry it too; other entries never carry one.
//!
//! ICMP to VIPs is handled by [`icmp`]. Policy for what is not forwarded:
//! - not addressed to a VIP, or not parseable: XDP_PASS, untouched;
//! - IPv4/IPv6 fragments and IPv6 extension headers addressed to a VIP
//!   address: XDP_DROP, counted (the non-first fragments carry no ports, so
//!   they cannot be steered consistently; backends see no partial datagrams);
//! - IPv4 options: forwarded (they stay in the inner header), counted.
#![no_std]
#![no_main]

mod conn;
mod csum;
mod encap;
mod flood;
mod icmp;
mod maps;
mod packet;
mod parse;
mod select;
mod transmit;

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    macros::xdp,
    programs::XdpContext,
};
use xdp_fwd_common::{encap as encap_mode, family, proto, stats::stat, FlowKey, Settings, VipMeta};

use crate::{
    maps::{count, count_traffic, BACKEND_STATS, SETTINGS, VIP_STATS},
    parse::Packet,
    select::{Chosen, VipRef},
};

/// The forwarder.
///
/// Written out instead of `#[xdp]`: the attribute wraps the body in a
/// separate function that LLVM does not inline, so every packet paid a
/// BPF-to-BPF call and its return (a return thunk on kernels with SRSO
/// mitigation) before doing anything.
#[unsafe(no_mangle)]
#[unsafe(link_section = "xdp")]
pub extern "C" fn xdp_fwd(ctx: *mut xdp_md) -> u32 {
    forward_counted(&XdpContext::new(ctx))
}

/// The whole path, and the action totals.
#[inline(always)]
fn forward_counted(ctx: &XdpContext) -> u32 {
    let action = forward(ctx);
    // Action totals are the first counters, indexed by the action itself.
    if action <= xdp_action::XDP_REDIRECT {
        count(action);
    }
    action
}

/// Passes everything: for the peer of a veth the forwarder transmits on
/// (driver-mode XDP_TX/REDIRECT frames only arrive where a program is
/// attached), and the floor of the benchmarks.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn forward(ctx: &XdpContext) -> u32 {
    let Some(pkt) = parse::parse(ctx) else {
        return xdp_action::XDP_PASS;
    };
    if pkt.fragment || pkt.ext_header {
        return unsupported_to_vip(&pkt);
    }
    // ICMP is ICMP only in IPv4 and ICMPv6 only in IPv6: an IPv6 packet
    // with next header 1 is not answered or forwarded as ICMPv6.
    match (pkt.flow.proto, pkt.family) {
        (proto::TCP | proto::UDP, _) => forward_l4(ctx, &pkt),
        (proto::ICMP, family::V4) | (proto::ICMPV6, family::V6) => icmp::handle(ctx, &pkt),
        _ => xdp_action::XDP_PASS,
    }
}

/// Fragments and IPv6 extension headers: dropped if addressed to a VIP
/// address, passed otherwise.
#[inline(always)]
fn unsupported_to_vip(pkt: &Packet) -> u32 {
    if !select::is_vip_address(pkt.flow.dst, pkt.family) {
        return xdp_action::XDP_PASS;
    }
    count(if pkt.fragment {
        stat::DROP_FRAGMENT
    } else {
        stat::DROP_IPV6_EXT
    });
    xdp_action::XDP_DROP
}

/// Steps 2-5 for TCP and UDP: an established flow whose cache entry and
/// VIP are unchanged goes straight to its backend; anything else looks its
/// VIP up first (not a VIP: XDP_PASS).
#[inline(always)]
fn forward_l4(ctx: &XdpContext, pkt: &Packet) -> u32 {
    let Some(settings) = SETTINGS.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let bytes = packet::frame_len(ctx);
    let f = &pkt.flow;
    let cached = if pkt.tcp_syn {
        None
    } else {
        select::cached_flow(f, settings)
    };
    let (chosen, prev, vip) = match cached {
        Some((chosen, vip, prev)) => {
            count_vip(pkt, vip.index, bytes);
            (chosen, prev, vip)
        }
        None => {
            let Some(meta) = select::vip_lookup(f.dst, f.dport, f.proto, pkt.family) else {
                return xdp_action::XDP_PASS;
            };
            count_vip(pkt, meta.index, bytes);
            // Only a non-SYN miss may carry a previous owner (second hop).
            match select::select_backend(f, &meta, settings, pkt.tcp_syn, !pkt.tcp_syn) {
                Ok((chosen, prev)) => (
                    chosen,
                    prev,
                    VipRef {
                        index: meta.index,
                        encap: meta.encap,
                    },
                ),
                Err(reason) => return dropped(reason),
            }
        }
    };
    send(ctx, pkt, &chosen, prev, vip.encap, settings, bytes)
}

/// Steps 3-5 for a packet of `flow` to `vip` (ICMP errors quoting a flow):
/// choose the backend, encapsulate, send.
#[inline(always)]
pub(crate) fn forward_flow(
    ctx: &XdpContext,
    pkt: &Packet,
    flow: &FlowKey,
    vip: &VipMeta,
    new_flow: bool,
) -> u32 {
    let Some(settings) = SETTINGS.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let bytes = packet::frame_len(ctx);
    count_vip(pkt, vip.index, bytes);
    // ICMP errors go to the current owner only: no second hop.
    match select::select_backend(flow, vip, settings, new_flow, false) {
        Ok((chosen, prev)) => send(ctx, pkt, &chosen, prev, vip.encap, settings, bytes),
        Err(reason) => dropped(reason),
    }
}

/// Counters of a packet to a VIP.
#[inline(always)]
fn count_vip(pkt: &Packet, vip_index: u32, bytes: u64) {
    count_traffic(&VIP_STATS, vip_index, bytes);
    if pkt.ipv4_options {
        count(stat::IPV4_OPTIONS);
    }
}

/// Steps 4-5: route towards the chosen backend, encapsulate, transmit.
#[inline(always)]
fn send(
    ctx: &XdpContext,
    pkt: &Packet,
    chosen: &Chosen,
    prev: select::PrevOwner,
    vip_encap: u8,
    settings: &Settings,
    bytes: u64,
) -> u32 {
    count_traffic(&BACKEND_STATS, chosen.id, bytes);
    let mode = if vip_encap == encap_mode::DEFAULT {
        settings.default_encap
    } else {
        vip_encap
    };
    let outer = match encap::outer_header(pkt, chosen, prev, mode, settings) {
        Ok(outer) => outer,
        Err(reason) => return dropped(reason),
    };
    // The route first, so the MACs are written once, with the encapsulation.
    let next = transmit::next_hop(ctx, &outer, chosen);
    let macs = match &next {
        Ok(next) => {
            if outer.tot_len as u32 > next.mtu {
                return dropped(stat::DROP_MTU);
            }
            next.eth_addrs()
        }
        // The kernel resolves the neighbour and forwards this packet itself:
        // encapsulated, still addressed to this host.
        Err(transmit::NoRoute::NoNeighbour) => match encap::frame_eth_addrs(ctx) {
            Some(macs) => macs,
            None => return dropped(stat::DROP_ENCAP),
        },
        Err(transmit::NoRoute::Unreachable) => return dropped(stat::DROP_FIB),
    };
    if let Err(reason) = encap::encapsulate(ctx, pkt, &outer, chosen, settings, macs) {
        return dropped(reason);
    }
    match next {
        Ok(next) => transmit::send_to(ctx, &next),
        Err(_) => {
            count(stat::PASS_NO_NEIGH);
            xdp_action::XDP_PASS
        }
    }
}

/// Counts `reason` and drops.
#[inline(always)]
fn dropped(reason: u32) -> u32 {
    count(reason);
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
