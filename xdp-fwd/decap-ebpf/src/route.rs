//! Routing a second hop: `bpf_fib_lookup` towards the previous owner, then
//! XDP_TX (same interface) or XDP_REDIRECT (another one).
use aya_ebpf::{
    bindings::{xdp_action, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
    EbpfContext,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// `struct bpf_fib_lookup` (uapi/linux/bpf.h), without the unions.
#[repr(C)]
struct FibParams {
    family: u8,
    l4_protocol: u8,
    sport: u16,
    dport: u16,
    tot_len: u16,
    ifindex: u32,
    tos_flowinfo: u32,
    src: [u32; 4],
    dst: [u32; 4],
    vlan_proto: u16,
    vlan_tci: u16,
    smac: [u8; 6],
    dmac: [u8; 6],
}

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
    let mut p = FibParams {
        family: if v6 { AF_INET6 } else { AF_INET },
        l4_protocol: proto,
        sport: 0,
        dport: 0,
        tot_len: 0,
        ifindex: ctx.ingress_ifindex() as u32,
        tos_flowinfo: 0,
        src: *src,
        dst: *dst,
        vlan_proto: 0,
        vlan_tci: 0,
        smac: [0; 6],
        dmac: [0; 6],
    };
    // SAFETY: `p` is a valid bpf_fib_lookup of the size passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            (&mut p as *mut FibParams).cast(),
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    } as u32;
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {
            let mut macs = [0u8; 12];
            macs[..6].copy_from_slice(&p.dmac);
            macs[6..].copy_from_slice(&p.smac);
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
