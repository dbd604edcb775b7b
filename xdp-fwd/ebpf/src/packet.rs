//! Bounds-checked access to the frame and the header constants.
use core::mem::{align_of, size_of};

pub use xdp_ebpf_frame::frame::{frame_len, ptr_at, ETH_HLEN, IPV4_HLEN, IPV6_HLEN, UDP_HLEN};

pub const VLAN_HLEN: usize = 4;
pub const TCP_HLEN: usize = 20;
pub const ICMP_HLEN: usize = 8;

/// EtherTypes as a little-endian load of the wire bytes sees them.
pub const ETH_P_IP_RAW: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6_RAW: u16 = 0x86ddu16.to_be();
pub const ETH_P_8021Q_RAW: u16 = 0x8100u16.to_be();

// Packet access in 16-bit units.
//
// Every header field the program reads or writes that is wider than a byte
// sits at an even offset from the frame start (Ethernet 14, VLAN +4, IP
// headers in 4-byte multiples, encapsulation in 4-byte multiples), and
// frames start at even addresses (drivers place them after XDP_PACKET_HEADROOM
// or NET_IP_ALIGN-style headroom). So 16-bit loads and stores are aligned.
// `read_unaligned` would be the alternative: the BPF target splits it into
// single bytes, which made the forward path measurably slower. A BPF program
// cannot test its packet pointer's alignment (the verifier forbids bit
// operations on pointers); should a frame ever start at an odd address, the
// 16-bit accesses are merely misaligned, which the verifier permits on
// architectures with efficient unaligned access (x86-64, arm64).

/// Reads a `T` at byte `at` of a pointer returned by [`ptr_at`], in 16-bit
/// units (or one byte for a 1-byte `T`).
///
/// # Safety
/// `at + size_of::<T>()` must be within the length checked by `ptr_at`;
/// for a `T` wider than a byte, `p + at` must be even (see above).
#[inline(always)]
pub unsafe fn read<T: Copy>(p: *const u8, at: usize) -> T {
    const { assert!(size_of::<T>() == 1 || (align_of::<T>() >= 2 && size_of::<T>().is_multiple_of(2))) };
    let src = unsafe { p.add(at) };
    if size_of::<T>() == 1 {
        return unsafe { core::ptr::read(src as *const T) };
    }
    let mut out = core::mem::MaybeUninit::<T>::uninit();
    let dst = out.as_mut_ptr() as *mut u16;
    let src = src as *const u16;
    let mut i = 0;
    while i < size_of::<T>() / 2 {
        // SAFETY: both in bounds and 2-aligned (caller's contract and T's alignment).
        unsafe { *dst.add(i) = core::ptr::read(src.add(i)) };
        i += 1;
    }
    // SAFETY: every byte was written.
    unsafe { out.assume_init() }
}

/// Writes a `T` at byte `at` of a pointer returned by [`ptr_at`].
///
/// # Safety
/// As for [`read`].
#[inline(always)]
pub unsafe fn write<T: Copy>(p: *mut u8, at: usize, v: T) {
    const { assert!(size_of::<T>() == 1 || (align_of::<T>() >= 2 && size_of::<T>().is_multiple_of(2))) };
    let dst = unsafe { p.add(at) };
    if size_of::<T>() == 1 {
        unsafe { core::ptr::write(dst as *mut T, v) };
        return;
    }
    let src = &v as *const T as *const u16;
    let dst = dst as *mut u16;
    let mut i = 0;
    while i < size_of::<T>() / 2 {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write(dst.add(i), *src.add(i)) };
        i += 1;
    }
}
