//! Step 7: route the encapsulated packet with `bpf_fib_lookup` (next-hop MAC
//! and egress interface from the kernel's FIB and neighbour table), then
//! XDP_TX on the ingress interface or XDP_REDIRECT through the device map.
use aya_ebpf::{
    bindings::{
        xdp_action, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS,
    },
    helpers::generated::bpf_fib_lookup,
    programs::XdpContext,
    EbpfContext,
};
use xdp_fwd_common::{family, stats::stat};

use crate::{
    encap::Outer,
    maps::{count, TX_PORTS},
    packet::*,
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

/// Sends the packet towards `outer.dst`; returns the verdict.
#[inline(always)]
pub fn transmit(ctx: &XdpContext, outer: &Outer) -> u32 {
    let ingress = ctx.ingress_ifindex() as u32;
    let v6 = outer.family == family::V6;
    let mut p = FibParams {
        family: if v6 { AF_INET6 } else { AF_INET },
        l4_protocol: outer.proto,
        sport: 0,
        dport: 0,
        // Set so the lookup checks the egress MTU.
        tot_len: outer.tot_len,
        ifindex: ingress,
        tos_flowinfo: if v6 { 0 } else { outer.tos as u32 },
        src: outer.src,
        dst: outer.dst,
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
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            // The kernel resolves the neighbour and forwards this packet itself.
            count(stat::PASS_NO_NEIGH);
            return xdp_action::XDP_PASS;
        }
        BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            count(stat::DROP_MTU);
            return xdp_action::XDP_DROP;
        }
        _ => {
            count(stat::DROP_FIB);
            return xdp_action::XDP_DROP;
        }
    }
    let Some(eth) = ptr_at(ctx, 0, ETH_HLEN) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: 14 bytes checked.
    unsafe {
        write(eth, 0, p.dmac);
        write(eth, 6, p.smac);
    }
    if p.ifindex == ingress {
        return xdp_action::XDP_TX;
    }
    match TX_PORTS.redirect(p.ifindex, xdp_action::XDP_DROP as u64) {
        Ok(action) => action,
        Err(_) => {
            count(stat::DROP_NO_EGRESS);
            xdp_action::XDP_DROP
        }
    }
}
