//! `bpf_fib_lookup`: the kernel's route and neighbour for an outer packet.
use aya_ebpf::{helpers::generated::bpf_fib_lookup, programs::XdpContext, EbpfContext};

pub use aya_ebpf::bindings::{
    BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
};

/// `AF_INET`, the lookup's family for IPv4.
pub const AF_INET: u8 = 2;
/// `AF_INET6`, the lookup's family for IPv6.
pub const AF_INET6: u8 = 10;

/// `struct bpf_fib_lookup` (uapi/linux/bpf.h), without the unions: `tot_len`
/// also carries the MTU back, `tos_flowinfo` is the IPv4 TOS or the IPv6
/// flow info.
#[repr(C)]
pub struct FibParams {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    /// IP protocol of the packet routed.
    pub l4_protocol: u8,
    /// Source port (0: not part of the lookup).
    pub sport: u16,
    /// Destination port (0: not part of the lookup).
    pub dport: u16,
    /// In: packet length to check against the MTU (0: none). Out: the MTU
    /// when the lookup returns [`BPF_FIB_LKUP_RET_FRAG_NEEDED`].
    pub tot_len: u16,
    /// In: the ingress interface. Out: the egress interface.
    pub ifindex: u32,
    /// IPv4 TOS or IPv6 flow info.
    pub tos_flowinfo: u32,
    /// Source address words as carried in the packet (IPv4 in word 0).
    pub src: [u32; 4],
    /// Destination address words as carried in the packet.
    pub dst: [u32; 4],
    /// VLAN protocol (out).
    pub vlan_proto: u16,
    /// VLAN TCI (out).
    pub vlan_tci: u16,
    /// Out: source MAC as raw 16-bit words (the field is 2-aligned, so the
    /// forwarder can store it with aligned 16-bit writes).
    pub smac: [u16; 3],
    /// Out: next hop's MAC, as raw 16-bit words.
    pub dmac: [u16; 3],
}

impl FibParams {
    /// Parameters for routing a packet of `l4_protocol` from `src` to `dst`
    /// that arrived on `ifindex`, with no MTU check.
    #[inline(always)]
    pub fn new(
        v6: bool,
        l4_protocol: u8,
        ifindex: u32,
        tos_flowinfo: u32,
        src: [u32; 4],
        dst: [u32; 4],
    ) -> Self {
        FibParams {
            family: if v6 { AF_INET6 } else { AF_INET },
            l4_protocol,
            sport: 0,
            dport: 0,
            tot_len: 0,
            ifindex,
            tos_flowinfo,
            src,
            dst,
            vlan_proto: 0,
            vlan_tci: 0,
            smac: [0; 3],
            dmac: [0; 3],
        }
    }

    /// Runs the lookup in place; returns the helper's `BPF_FIB_LKUP_RET_*`.
    #[inline(always)]
    pub fn lookup(&mut self, ctx: &XdpContext) -> u32 {
        // SAFETY: `self` is a valid bpf_fib_lookup of the size passed.
        let rc = unsafe {
            bpf_fib_lookup(
                ctx.as_ptr(),
                (self as *mut FibParams).cast(),
                core::mem::size_of::<FibParams>() as i32,
                0,
            )
        };
        rc as u32
    }
}
