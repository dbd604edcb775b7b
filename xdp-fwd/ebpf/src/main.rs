//! EdgeLB's XDP Maglev forwarder, kernel side.
//!
//! One packet path, each step a small function in its own module:
//!
//! 1. [`parse`]: Ethernet (+802.1Q), IPv4 / IPv6, TCP / UDP / ICMP(v6).
//! 2. [`select::vip_lookup`]: (address, port, protocol), then port 0.
//! 3. [`select::select_backend`]: [`conn`] cache, else flow hash + Maglev.
//! 4. [`encap::encapsulate`]: IP-in-IP or GUE towards the backend.
//! 5. [`transmit::transmit`]: `bpf_fib_lookup`, then XDP_TX or XDP_REDIRECT.
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
mod icmp;
mod maps;
mod packet;
mod parse;
mod select;
mod transmit;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use xdp_fwd_common::{encap as encap_mode, proto, stats::stat, FlowKey, VipMeta};

use crate::{
    maps::{count, count_traffic, BACKEND_STATS, SETTINGS, VIP_STATS},
    parse::Packet,
};

/// The forwarder.
#[xdp]
pub fn xdp_fwd(ctx: XdpContext) -> u32 {
    let action = forward(&ctx);
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
    match pkt.flow.proto {
        proto::TCP | proto::UDP => {
            let f = &pkt.flow;
            match select::vip_lookup(f.dst, f.dport, f.proto, pkt.family) {
                Some(vip) => forward_flow(ctx, &pkt, &pkt.flow, &vip, pkt.tcp_syn),
                None => xdp_action::XDP_PASS,
            }
        }
        proto::ICMP | proto::ICMPV6 => icmp::handle(ctx, &pkt),
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

/// Steps 3-7 for a packet of `flow` to `vip`: choose the backend,
/// encapsulate, send.
#[inline(always)]
pub(crate) fn forward_flow(
    ctx: &XdpContext,
    pkt: &Packet,
    flow: &FlowKey,
    vip: &VipMeta,
    new_flow: bool,
) -> u32 {
    let bytes = packet::frame_len(ctx);
    count_traffic(&VIP_STATS, vip.index, bytes);
    if pkt.ipv4_options {
        count(stat::IPV4_OPTIONS);
    }
    let Some(settings) = SETTINGS.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let chosen = match select::select_backend(flow, vip, settings, new_flow) {
        Ok(c) => c,
        Err(reason) => {
            count(reason);
            return xdp_action::XDP_DROP;
        }
    };
    count_traffic(&BACKEND_STATS, chosen.id, bytes);
    let mode = if vip.encap == encap_mode::DEFAULT {
        settings.default_encap
    } else {
        vip.encap
    };
    match encap::encapsulate(ctx, pkt, &chosen, mode, settings) {
        Ok(outer) => transmit::transmit(ctx, &outer, &chosen),
        Err(reason) => {
            count(reason);
            xdp_action::XDP_DROP
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
