//! EdgeLB's XDP forwarder, kernel side.
//!
//! One packet path, each step a small function:
//! parse -> VIP lookup -> (backend selection, encapsulation, transmit).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use xdp_fwd_common::{drop_reason, family, VipKey, VipMeta};

/// VIPs served by this node, keyed by (address, port, protocol).
#[map]
static VIPS: HashMap<VipKey, VipMeta> = HashMap::with_max_entries(4096, 0);

/// Per-CPU drop counters indexed by `drop_reason::*`.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop_reason::COUNT, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[xdp]
pub fn xdp_fwd(ctx: XdpContext) -> u32 {
    process(&ctx)
}

/// The whole packet path; returns the XDP verdict.
#[inline(always)]
fn process(ctx: &XdpContext) -> u32 {
    let Some(key) = parse_vip_key(ctx) else {
        return xdp_action::XDP_PASS;
    };
    if vip_lookup(&key).is_none() {
        return xdp_action::XDP_PASS;
    }
    // No backends are programmed yet: a VIP without a usable backend drops.
    count_drop(drop_reason::NO_BACKEND);
    xdp_action::XDP_DROP
}

/// Bounds-checked pointer to `len` bytes at `offset` into the packet.
#[inline(always)]
fn ptr_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *const u8)
}

/// Parses Ethernet + IPv4 + TCP/UDP into the VIP key of the packet's destination.
#[inline(always)]
fn parse_vip_key(ctx: &XdpContext) -> Option<VipKey> {
    let eth = ptr_at(ctx, 0, ETH_HLEN)?;
    // SAFETY: ptr_at checked that ETH_HLEN bytes are inside the packet.
    let ethertype = unsafe { u16::from_be_bytes([*eth.add(12), *eth.add(13)]) };
    if ethertype != ETH_P_IP {
        return None;
    }
    let ip = ptr_at(ctx, ETH_HLEN, 20)?;
    // SAFETY: 20 bytes of IPv4 header checked above.
    let (ver_ihl, proto, daddr) = unsafe {
        (*ip, *ip.add(9), core::ptr::read_unaligned(ip.add(16) as *const u32))
    };
    if ver_ihl >> 4 != 4 {
        return None;
    }
    let ihl = ((ver_ihl & 0x0f) as usize) * 4;
    if ihl < 20 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
        return None;
    }
    // A VIP packet must carry its whole transport header; a runt is not ours.
    let l4_len = if proto == IPPROTO_TCP { 20 } else { 8 };
    let l4 = ptr_at(ctx, ETH_HLEN + ihl, l4_len)?;
    // SAFETY: the whole L4 header was checked above.
    let dport = unsafe { core::ptr::read_unaligned(l4.add(2) as *const u16) };
    Some(VipKey { addr: [daddr, 0, 0, 0], port: dport, proto, family: family::V4 })
}

/// Looks the VIP up with its port, then as an all-ports (port 0) VIP.
#[inline(always)]
fn vip_lookup(key: &VipKey) -> Option<VipMeta> {
    // SAFETY: map values are plain data copied out immediately.
    if let Some(meta) = unsafe { VIPS.get(key) } {
        return Some(*meta);
    }
    let any_port = VipKey { port: 0, ..*key };
    unsafe { VIPS.get(&any_port) }.copied()
}

#[inline(always)]
fn count_drop(reason: u32) {
    if let Some(counter) = DROPS.get_ptr_mut(reason) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
