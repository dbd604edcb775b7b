//! One's-complement checksum arithmetic on "raw" values (little-endian loads
//! of wire bytes). The one's-complement sum commutes with byte swapping, so
//! summing raw words and storing the raw result is correct without swaps.

/// Adds both 16-bit halves of a raw word.
#[inline(always)]
pub fn add32(acc: u32, w: u32) -> u32 {
    acc + (w & 0xffff) + (w >> 16)
}

/// Adds the four words of an address.
#[inline(always)]
pub fn add_addr(acc: u32, a: &[u32; 4]) -> u32 {
    add32(add32(add32(add32(acc, a[0]), a[1]), a[2]), a[3])
}

/// Folds a running sum to 16 bits (not complemented). Sums here are of at
/// most a few dozen words, so three folds always suffice.
#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// RFC 1624 incremental update: the checksum after one raw 16-bit word of
/// the covered data changed from `old` to `new`.
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let s = (!check as u32) + (!old as u32) + new as u32;
    !fold(s)
}
