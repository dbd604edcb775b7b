//! The flow hash: Bob Jenkins' lookup3 (`jhash2`, as in the Linux kernel)
//! over the ten words of a [`FlowKey`], seeded with the cluster-wide seed.
//!
//! This one implementation runs in the XDP program and in userspace, so
//! "which backend does this 5-tuple go to" has one answer everywhere. Golden
//! vectors in the tests (cross-checked with an independent implementation)
//! pin it: changing it reshuffles every flow in the cluster.

use crate::{vip_flags, FlowKey};

const JHASH_INITVAL: u32 = 0xdead_beef;

#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn finalize(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// `jhash2` of exactly ten words (the length is fixed so the BPF program
/// needs no loop).
#[inline(always)]
pub fn jhash_10words(k: &[u32; 10], seed: u32) -> u32 {
    let init = JHASH_INITVAL.wrapping_add(10 << 2).wrapping_add(seed);
    let (mut a, mut b, mut c) = (init, init, init);
    a = a.wrapping_add(k[0]);
    b = b.wrapping_add(k[1]);
    c = c.wrapping_add(k[2]);
    mix(&mut a, &mut b, &mut c);
    a = a.wrapping_add(k[3]);
    b = b.wrapping_add(k[4]);
    c = c.wrapping_add(k[5]);
    mix(&mut a, &mut b, &mut c);
    a = a.wrapping_add(k[6]);
    b = b.wrapping_add(k[7]);
    c = c.wrapping_add(k[8]);
    mix(&mut a, &mut b, &mut c);
    a = a.wrapping_add(k[9]);
    finalize(&mut a, &mut b, &mut c);
    c
}

/// Hash of a flow for backend selection and encapsulation entropy.
///
/// `vip_flags` are the VIP's [`vip_flags`] bits: with
/// [`vip_flags::HASH_NO_SRC_PORT`] the source port is left out (all
/// connections of one client go to one backend); with
/// [`vip_flags::HASH_DST_PORT_ONLY`] only the destination address, destination
/// port and protocol count (every client of one port goes to one backend).
#[inline(always)]
pub fn flow_hash(key: &FlowKey, seed: u32, vip_flags: u32) -> u32 {
    let dst_port_only = vip_flags & vip_flags::HASH_DST_PORT_ONLY != 0;
    let no_sport = dst_port_only || vip_flags & vip_flags::HASH_NO_SRC_PORT != 0;
    let src = if dst_port_only { [0; 4] } else { key.src };
    let sport = if no_sport { 0 } else { key.sport as u32 };
    let ports = sport | ((key.dport as u32) << 16);
    let words = [
        src[0],
        src[1],
        src[2],
        src[3],
        key.dst[0],
        key.dst[1],
        key.dst[2],
        key.dst[3],
        ports,
        key.proto as u32,
    ];
    jhash_10words(&words, seed)
}

/// The Maglev slot a flow hash selects in a table of `table_size` slots.
#[inline(always)]
pub fn maglev_slot(hash: u32, table_size: u32) -> u32 {
    if table_size == 0 {
        0
    } else {
        hash % table_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{addr_words, port_raw, proto};
    use core::net::IpAddr;

    fn key(src: &str, dst: &str, sport: u16, dport: u16, p: u8) -> FlowKey {
        let s: IpAddr = src.parse().unwrap();
        let d: IpAddr = dst.parse().unwrap();
        FlowKey {
            src: addr_words(s).0,
            dst: addr_words(d).0,
            sport: port_raw(sport),
            dport: port_raw(dport),
            proto: p,
            _pad: [0; 3],
        }
    }

    /// Linux `jhash2` values, computed with an independent implementation
    /// (the Python transcription of lookup3 in `common/tests/jhash_reference.py`).
    #[test]
    fn jhash_golden_vectors() {
        assert_eq!(jhash_10words(&[0; 10], 0), 0xc0fe_d4b2);
        assert_eq!(
            jhash_10words(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0),
            0x673e_141f
        );
        assert_eq!(jhash_10words(&[0xffff_ffff; 10], 0x1234_5678), 0x89c9_cf0d);
    }

    /// Flow hashes of real tuples: these pin the word layout and byte order.
    #[test]
    fn flow_hash_golden_vectors() {
        let k4 = key("192.0.2.10", "203.0.113.7", 40000, 80, proto::TCP);
        let k6 = key("2001:db8::10", "2001:db8:ffff::7", 40000, 443, proto::UDP);
        assert_eq!(flow_hash(&k4, 0, 0), 0xe53b_7d7e);
        assert_eq!(flow_hash(&k4, 0xdead_beef, 0), 0x1687_129b);
        assert_eq!(flow_hash(&k6, 7, 0), 0x47e9_09e4);
        assert_eq!(flow_hash(&k4, 7, vip_flags::HASH_NO_SRC_PORT), 0x341d_236d);
        assert_eq!(
            flow_hash(&k4, 7, vip_flags::HASH_DST_PORT_ONLY),
            0x27b8_d9b7
        );
    }

    #[test]
    fn flags_drop_the_right_fields() {
        let a = key("192.0.2.10", "203.0.113.7", 40000, 80, proto::TCP);
        let b = key("192.0.2.10", "203.0.113.7", 40001, 80, proto::TCP);
        let c = key("192.0.2.11", "203.0.113.7", 40001, 80, proto::TCP);
        assert_ne!(flow_hash(&a, 1, 0), flow_hash(&b, 1, 0));
        assert_eq!(
            flow_hash(&a, 1, vip_flags::HASH_NO_SRC_PORT),
            flow_hash(&b, 1, vip_flags::HASH_NO_SRC_PORT)
        );
        assert_ne!(
            flow_hash(&b, 1, vip_flags::HASH_NO_SRC_PORT),
            flow_hash(&c, 1, vip_flags::HASH_NO_SRC_PORT)
        );
        assert_eq!(
            flow_hash(&a, 1, vip_flags::HASH_DST_PORT_ONLY),
            flow_hash(&c, 1, vip_flags::HASH_DST_PORT_ONLY)
        );
        assert_ne!(flow_hash(&a, 1, 0), flow_hash(&a, 2, 0), "the seed matters");
    }

    #[test]
    fn slot_is_in_range() {
        assert_eq!(maglev_slot(65537, 65537), 0);
        assert_eq!(maglev_slot(u32::MAX, 65537), u32::MAX % 65537);
        assert_eq!(maglev_slot(5, 0), 0);
    }
}
