//! Types and functions shared by the EdgeLB XDP program (`xdp-fwd-ebpf`) and
//! its userspace loader (`xdp-fwd`).
//!
//! Everything here is `#[repr(C)]` plain data or a pure function: the same
//! bytes are written by userspace into BPF maps and read by the kernel program,
//! and the same [`flow_hash`] runs in the kernel and in `lbctl lookup`.
//!
//! Byte-order convention: addresses and ports are kept as the packet carries
//! them (network order). A 32-bit "word" of an address is the four bytes read
//! as a little-endian `u32`, which is what a plain load does on the BPF target
//! (bpfel); [`addr_words`] builds the same words on any host.
#![no_std]
#![warn(missing_docs)]

pub mod conn;
pub mod flood;
pub mod hash;
pub mod maps;
pub mod second_hop;
pub mod stats;

pub use conn::{conn_index, conn_sets, ConnEntry, ConnPrevSet, ConnSet, PrevRef, CONN_WAYS};
pub use flood::FloodWindow;
pub use hash::{flow_hash, maglev_slot};
pub use maps::*;

use core::net::IpAddr;

/// Address family tag used in keys and backend entries.
pub mod family {
    /// IPv4: only the first word of the address is used, the rest is zero.
    pub const V4: u8 = 4;
    /// IPv6: all four words are used.
    pub const V6: u8 = 6;
}

/// IP protocol numbers the forwarder understands.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv4-in-IP (outer protocol of IPIP and IPv4-in-IPv6).
    pub const IPIP: u8 = 4;
    /// IPv6-in-IP (outer protocol of IP6IP6 and IPv6-in-IPv4).
    pub const IPV6: u8 = 41;
}

/// The address words of `addr` and its [`family`] tag (see the crate docs
/// for the byte-order convention).
pub fn addr_words(addr: IpAddr) -> ([u32; 4], u8) {
    match addr {
        IpAddr::V4(a) => ([u32::from_le_bytes(a.octets()), 0, 0, 0], family::V4),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_le_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], family::V6)
        }
    }
}

/// The address described by `words` and `fam` (inverse of [`addr_words`]).
pub fn words_addr(words: [u32; 4], fam: u8) -> IpAddr {
    if fam == family::V4 {
        IpAddr::from(words[0].to_le_bytes())
    } else {
        let mut o = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        IpAddr::from(o)
    }
}

/// A port in network byte order as the packet carries it, read the way the
/// BPF program reads it (a little-endian `u16` load).
pub const fn port_raw(port: u16) -> u16 {
    u16::from_le_bytes(port.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_words_round_trip() {
        for a in ["192.0.2.1", "2001:db8::1:2", "0.0.0.0", "::ffff:1.2.3.4"] {
            let addr: IpAddr = a.parse().unwrap();
            let (w, f) = addr_words(addr);
            assert_eq!(words_addr(w, f), addr);
        }
        // The first word is the first four bytes as they sit in memory.
        let (w, _) = addr_words("10.1.2.3".parse().unwrap());
        assert_eq!(w[0].to_le_bytes(), [10, 1, 2, 3]);
        assert_eq!(port_raw(80).to_le_bytes(), [0, 80]);
    }
}
