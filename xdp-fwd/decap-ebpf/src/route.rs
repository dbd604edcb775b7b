//! Routing a second hop: `bpf_fib_lookup` towards the previous owner, then
//! XDP_TX (same interface) or XDP_REDIRECT (another one).
use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_redirect, programs::XdpContext};
use xdp_ebpf_frame::fib::{FibParams, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS};

/// Where a second hop goes.
pub enum Route {
    /// Resolved: destination and source MACs, egress interface.
    Next([u8; 12], u32),
    /// The route exists, its neighbour is not resolved yet: the kernel
    /// forwards the rewritten packet (and resolves the neighbour).
    NoNeighbour,
    /// No usable route.
    Unreachable,
}

/// The route from the ingress interface to `dst` for an outer packet
/// of `proto` from `src`.
#[inline(always)]
pub fn lookup(ctx: &XdpContext, v6: bool, proto: u8, src: &[u32; 4], dst: &[u32; 4]) -> Route {
    let mut p = FibParams::new(v6, proto, ctx.ingress_ifindex() as u32, 0, *src, *dst);
    match p.lookup(ctx) {
        BPF_FIB_LKUP_RET_SUCCESS => {
            // The MACs as the frame carries them (raw memory order).
            // SAFETY: [u16; 3] and [u8; 6] have the same size, any bits valid.
            let (dmac, smac) = unsafe {
                (
                    core::mem::transmute::<[u16; 3], [u8; 6]>(p.dmac),
                    core::mem::transmute::<[u16; 3], [u8; 6]>(p.smac),
                )
            };
            let mut macs = [0u8; 12];
            macs[..6].copy_from_slice(&dmac);
            macs[6..].copy_from_slice(&smac);
            Route::Next(macs, p.ifindex)
        }
        BPF_FIB_LKUP_RET_NO_NEIGH => Route::NoNeighbour,
        _ => Route::Unreachable,
    }
}

/// The verdict that sends the frame out of `ifindex`.
#[inline(always)]
pub fn send(ctx: &XdpContext, ifindex: u32) -> u32 {
    if ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    // SAFETY: plain helper call; on failure it returns XDP_ABORTED's value.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}
