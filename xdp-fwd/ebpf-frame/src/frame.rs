//! Bounds-checked access to the frame, and the header lengths both programs use.
use aya_ebpf::programs::XdpContext;

/// Ethernet header without VLAN tags.
pub const ETH_HLEN: usize = 14;
/// IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_HLEN: usize = 40;
/// UDP header.
pub const UDP_HLEN: usize = 8;

/// Pointer to `len` bytes at `offset`, or `None` if the frame is shorter.
/// (The comparison against `data_end` is what the verifier needs to see
/// before any access through the pointer.)
#[inline(always)]
pub fn ptr_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*mut u8> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut u8)
}

/// Frame length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}
