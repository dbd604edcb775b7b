//! Bounds-checked access to the frame and the header constants.
use aya_ebpf::programs::XdpContext;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const TCP_HLEN: usize = 20;
pub const ICMP_HLEN: usize = 8;

/// EtherTypes as a little-endian load of the wire bytes sees them.
pub const ETH_P_IP_RAW: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6_RAW: u16 = 0x86ddu16.to_be();
pub const ETH_P_8021Q_RAW: u16 = 0x8100u16.to_be();

/// Pointer to `len` bytes at `offset`, or `None` if the frame is shorter.
#[inline(always)]
pub fn ptr_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*mut u8> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut u8)
}

/// Reads a `T` at byte `at` of a pointer returned by [`ptr_at`].
///
/// # Safety
/// `at + size_of::<T>()` must be within the length checked by `ptr_at`.
#[inline(always)]
pub unsafe fn read<T: Copy>(p: *const u8, at: usize) -> T {
    unsafe { core::ptr::read_unaligned(p.add(at) as *const T) }
}

/// Writes a `T` at byte `at` of a pointer returned by [`ptr_at`].
///
/// # Safety
/// As for [`read`].
#[inline(always)]
pub unsafe fn write<T: Copy>(p: *mut u8, at: usize, v: T) {
    unsafe { core::ptr::write_unaligned(p.add(at) as *mut T, v) }
}

/// Frame length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}
