//! Steps 4 and 5: route the outer packet with `bpf_fib_lookup` (next-hop MAC and
//! egress interface from the kernel's FIB and neighbour table), then XDP_TX
//! on the ingress interface or XDP_REDIRECT through the device map. The
//! route is looked up before the encapsulation is written, so the frame's
//! MACs are written once.
//!
//! Lookup results are cached per CPU and backend for `NEXT_HOP_TTL_JIFFIES`
//! (see `NextHop`): the lookup costs more than the rest of the path.
use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_jiffies64, programs::XdpContext};
use xdp_ebpf_frame::fib::{
    FibParams, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
};
use xdp_fwd_common::{family, stats::stat, NextHop, NEXT_HOP_TTL_JIFFIES};

use crate::{
    encap::Outer,
    maps::{count, NEXT_HOPS, TX_PORTS},
    select::Chosen,
};

/// Asking for a route for a packet this large makes the lookup report the
/// path MTU (as "fragmentation needed").
const MTU_PROBE_LEN: u16 = 0xffff;

/// Why there is no next hop.
pub enum NoRoute {
    /// The route exists but its neighbour is not resolved yet.
    NoNeighbour,
    /// No usable route (counted by the caller).
    Unreachable,
}

/// The next hop towards `outer.dst`: this CPU's cached lookup for the
/// backend while fresh, else `bpf_fib_lookup`.
#[inline(always)]
pub fn next_hop(ctx: &XdpContext, outer: &Outer, chosen: &Chosen) -> Result<NextHop, NoRoute> {
    let Some(hop) = NEXT_HOPS.get_ptr_mut(chosen.id) else {
        return Err(NoRoute::Unreachable);
    };
    // SAFETY: per-CPU value; only this CPU reads or writes it.
    let cached = unsafe { *hop };
    // SAFETY: helper without arguments (the verifier inlines it to a load).
    let now = unsafe { bpf_jiffies64() };
    if cached.ifindex != 0
        && cached.generation == chosen.backend.generation
        && now.wrapping_sub(cached.filled_jiffies) < NEXT_HOP_TTL_JIFFIES
    {
        return Ok(cached);
    }
    let mut next = route(ctx, outer)?;
    next.generation = chosen.backend.generation;
    next.filled_jiffies = now;
    // SAFETY: as above.
    unsafe { *hop = next };
    Ok(next)
}

/// The verdict that sends an encapsulated frame to `next`: XDP_TX back out
/// of the ingress interface, else XDP_REDIRECT through the device map.
#[inline(always)]
pub fn send_to(ctx: &XdpContext, next: &NextHop) -> u32 {
    if next.ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    match TX_PORTS.redirect(next.ifindex, xdp_action::XDP_DROP as u64) {
        Ok(action) => action,
        Err(_) => {
            count(stat::DROP_NO_EGRESS);
            xdp_action::XDP_DROP
        }
    }
}

/// Looks the route up from the ingress interface.
#[inline(always)]
fn route(ctx: &XdpContext, outer: &Outer) -> Result<NextHop, NoRoute> {
    let ingress = ctx.ingress_ifindex() as u32;
    let v6 = outer.family == family::V6;
    let tos = if v6 { 0 } else { outer.tos as u32 };
    let mut p = FibParams::new(v6, outer.proto, ingress, tos, outer.src, outer.dst);
    match p.lookup(ctx) {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        BPF_FIB_LKUP_RET_NO_NEIGH => return Err(NoRoute::NoNeighbour),
        _ => return Err(NoRoute::Unreachable),
    }
    let mut next = NextHop {
        dmac: p.dmac,
        smac: p.smac,
        ifindex: p.ifindex,
        mtu: MTU_PROBE_LEN as u32,
        generation: 0,
        filled_jiffies: 0,
    };
    // Second lookup, for the path MTU only.
    p.ifindex = ingress;
    p.tot_len = MTU_PROBE_LEN;
    if p.lookup(ctx) == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        // The kernel writes the MTU into the same field (a union).
        next.mtu = p.tot_len as u32;
    }
    Ok(next)
}
