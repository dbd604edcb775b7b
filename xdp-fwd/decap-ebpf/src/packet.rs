//! Bounds-checked frame access and header constants.
pub use xdp_ebpf_frame::frame::{ptr_at, ETH_HLEN, IPV4_HLEN, IPV6_HLEN, UDP_HLEN};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_IPV6: u8 = 41;

/// Reads a big-endian u16 at `p + at`.
///
/// # Safety
/// `p + at + 2` must be within a range checked by [`ptr_at`].
#[inline(always)]
pub unsafe fn be16(p: *const u8, at: usize) -> u16 {
    unsafe { u16::from_be_bytes([*p.add(at), *p.add(at + 1)]) }
}

/// Reads four bytes at `p + at` as an address word (little-endian load of
/// the wire bytes, as `xdp_fwd_common::addr_words` builds them).
///
/// # Safety
/// As for [`be16`], four bytes.
#[inline(always)]
pub unsafe fn word(p: *const u8, at: usize) -> u32 {
    unsafe { u32::from_le_bytes([*p.add(at), *p.add(at + 1), *p.add(at + 2), *p.add(at + 3)]) }
}

/// Writes an address word at `p + at`.
///
/// # Safety
/// As for [`word`].
#[inline(always)]
pub unsafe fn put_word(p: *mut u8, at: usize, w: u32) {
    let b = w.to_le_bytes();
    unsafe {
        *p.add(at) = b[0];
        *p.add(at + 1) = b[1];
        *p.add(at + 2) = b[2];
        *p.add(at + 3) = b[3];
    }
}

/// One's-complement sum of 16-bit big-endian words of `len` bytes at `p`
/// (`len` even, constant), not folded.
///
/// # Safety
/// As for [`be16`], `len` bytes.
#[inline(always)]
pub unsafe fn sum16(p: *const u8, len: usize) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < len {
        s += unsafe { be16(p, i) } as u32;
        i += 2;
    }
    s
}

/// Sum of an address's 16-bit words as carried (address words, little-endian
/// loads), for checksum arithmetic in big-endian.
#[inline(always)]
pub fn addr_sum(a: &[u32; 4], words: usize) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < words && i < 4 {
        let b = a[i].to_le_bytes();
        s += u16::from_be_bytes([b[0], b[1]]) as u32 + u16::from_be_bytes([b[2], b[3]]) as u32;
        i += 1;
    }
    s
}

/// Folds a sum to 16 bits.
#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}
