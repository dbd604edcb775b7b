//! Layout and indexing of the connection cache (the CONN_CACHE map).
//!
//! The connection table is a set-associative cache, like a CPU's hardware
//! caches: a `BPF_MAP_TYPE_ARRAY` of [`ConnSet`]s, each holding
//! [`CONN_WAYS`] entries, one slice of `set_mask + 1` sets per possible
//! CPU. On CPU `c` a flow lives in the set
//! `c * (set_mask + 1) + (conn_index(flow, seed) & set_mask)`; a hit is a
//! full-key match in that set; a new flow takes an empty way of its set,
//! else the way used least recently (recency in jiffies, ties to the lowest
//! way: an approximated LRU per set); in flood mode (see [`crate::flood`])
//! a new flow takes only an empty, expired or not yet established way, or
//! none. Entries are written in place by the
//! program, so neither path calls a map helper: the kernel inlines array
//! lookups and the CPU number.

use crate::FlowKey;

/// Entries (ways) per set.
pub const CONN_WAYS: usize = 4;

/// Largest number of sets (keeps `sets * CONN_WAYS` and the map's memory
/// within reason; 2^24 sets are 4.5 GiB per CPU).
pub const MAX_CONN_SETS: u32 = 1 << 24;

/// One cached flow: its full key, where it goes, its VIP and its ages.
/// 64 bytes: one cache line (see [`ConnSet`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    /// The flow (compared in full on lookup).
    pub key: FlowKey,
    /// Backend id chosen for the flow.
    pub backend: u32,
    /// [`crate::BackendEntry::generation`] when chosen; a mismatch means the id
    /// was given to another backend since. 0 = empty way (generations start
    /// at 1).
    pub generation: u32,
    /// The flow hash (encapsulation entropy), cached so hits skip hashing.
    pub hash: u32,
    /// Low 32 bits of `bpf_jiffies64` at the last packet: the set's LRU
    /// order and, for UDP, the expiry clock (wraps after 49 days at
    /// HZ=1000, far beyond any timeout or cache residence).
    pub touched: u32,
    /// Index of the flow's VIP ([`crate::VipMeta::index`]; the loader keeps
    /// indices below 2^16).
    pub vip_index: u16,
    /// One of [`crate::flood::conn_state`]: whether the flow has seen a
    /// packet after the one that cached it (flood-mode admission spares it).
    pub state: u8,
    /// 1 if the flow was cached carrying a previous owner (second hop):
    /// that owner is in the same set and way of CONN_PREV ([`ConnPrevSet`]);
    /// 0 otherwise (and then CONN_PREV's way is stale, never read).
    pub has_prev: u8,
    /// [`crate::VipEpoch::epoch`] of that index when cached: while it still
    /// matches, a hit skips the VIP hash lookup.
    pub vip_epoch: u32,
}

/// One set of the connection cache: the value type of CONN_CACHE. 256
/// bytes, so with the map's values starting at a cache-line boundary each
/// way is one line and a probe that matches its first way reads one line.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnSet {
    /// The ways.
    pub ways: [ConnEntry; CONN_WAYS],
}

/// The previous owner a cached flow carries on every packet (second hop):
/// a backend id and its generation when cached, so an id given to another
/// backend since is never used. Kept beside the cache line, not in it: the
/// line has no 8 spare bytes without narrowing generations or the flow hash
/// (FORWARDER.md, "Second hop"), and only flagged entries read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrevRef {
    /// Backend id of the previous owner.
    pub backend: u32,
    /// Its [`crate::BackendEntry::generation`] when cached.
    pub generation: u32,
}

/// Value of CONN_PREV: the [`PrevRef`] of each way of the [`ConnSet`] with
/// the same index, valid only where that way's [`ConnEntry::has_prev`] is 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnPrevSet {
    /// The ways.
    pub ways: [PrevRef; CONN_WAYS],
}

/// Number of sets for a cache of at least `flows` entries per CPU: `flows /
/// CONN_WAYS` rounded up to a power of two (the set index is a mask).
/// `None` if `flows` is 0 or needs more than [`MAX_CONN_SETS`] sets.
pub fn conn_sets(flows: u32) -> Option<u32> {
    if flows == 0 {
        return None;
    }
    let sets = flows
        .div_ceil(CONN_WAYS as u32)
        .checked_next_power_of_two()?;
    (sets <= MAX_CONN_SETS).then_some(sets)
}

/// Set-index hash of a flow: all of the 5-tuple (whatever the VIP's flow
/// hash leaves out), seeded. Multiply-xorshift over the folded key: far
/// cheaper than the Maglev flow hash, which established flows then never
/// compute. Only placement in this node's cache depends on it.
#[inline(always)]
pub fn conn_index(key: &FlowKey, seed: u32) -> u32 {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    const K3: u64 = 0x1656_67b1_9e37_79f9;
    let w = |a: u32, b: u32| (a as u64) | ((b as u64) << 32);
    let src = w(key.src[0], key.src[1]) ^ w(key.src[2], key.src[3]).rotate_left(17);
    let dst = w(key.dst[0], key.dst[1]) ^ w(key.dst[2], key.dst[3]).rotate_left(29);
    let rest = w(
        key.sport as u32 | ((key.dport as u32) << 16),
        key.proto as u32 ^ seed,
    );
    let mut h = src.wrapping_mul(K1) ^ dst.wrapping_mul(K2) ^ rest.wrapping_mul(K3);
    h ^= h >> 29;
    // The high half of a product depends on every input bit.
    (h.wrapping_mul(K1) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{addr_words, port_raw, proto};
    use core::mem::size_of;

    fn key(src: &str, sport: u16) -> FlowKey {
        FlowKey {
            src: addr_words(src.parse().unwrap()).0,
            dst: addr_words("203.0.113.7".parse().unwrap()).0,
            sport: port_raw(sport),
            dport: port_raw(80),
            proto: proto::TCP,
            _pad: [0; 3],
        }
    }

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<ConnEntry>(), 64);
        assert_eq!(size_of::<ConnSet>(), 64 * CONN_WAYS);
        assert_eq!(size_of::<PrevRef>(), 8);
        assert_eq!(size_of::<ConnPrevSet>(), 8 * CONN_WAYS);
    }

    #[test]
    fn sets_round_up_to_a_power_of_two() {
        assert_eq!(conn_sets(0), None);
        assert_eq!(conn_sets(1), Some(1));
        assert_eq!(conn_sets(4), Some(1));
        assert_eq!(conn_sets(5), Some(2));
        assert_eq!(conn_sets(1024), Some(256));
        assert_eq!(conn_sets(1000), Some(256));
        assert_eq!(conn_sets(1 << 26), Some(1 << 24));
        assert_eq!(conn_sets((1 << 26) + 1), None);
        assert_eq!(conn_sets(u32::MAX), None);
    }

    /// Flows that differ in one field only spread over the sets about
    /// evenly (a weak index would pile them into a few sets).
    #[test]
    fn index_spreads_near_flows() {
        const SETS: usize = 256;
        let mut by_port = [0u32; SETS];
        let mut by_addr = [0u32; SETS];
        for i in 0..(SETS * 16) as u32 {
            by_port[conn_index(&key("192.0.2.10", 1024 + i as u16), 1) as usize % SETS] += 1;
            let a = core::net::Ipv4Addr::from(0xc612_0000 + i);
            let k = FlowKey {
                src: addr_words(a.into()).0,
                ..key("0.0.0.0", 40000)
            };
            by_addr[conn_index(&k, 1) as usize % SETS] += 1;
        }
        for counts in [by_port, by_addr] {
            let max = *counts.iter().max().unwrap();
            let min = *counts.iter().min().unwrap();
            // 16 per set on average.
            assert!(max <= 40 && min >= 2, "min {min} max {max}");
        }
        assert_ne!(
            conn_index(&key("192.0.2.10", 1), 1),
            conn_index(&key("192.0.2.10", 1), 2),
            "the seed matters"
        );
    }
}
