//! Indices of the global per-CPU counters (the STATS map).

/// Counter indices. The first five are XDP action totals indexed by the
/// action number itself.
pub mod stat {
    /// Packets that ended XDP_ABORTED.
    pub const ACTION_ABORTED: u32 = 0;
    /// Packets that ended XDP_DROP.
    pub const ACTION_DROP: u32 = 1;
    /// Packets that ended XDP_PASS.
    pub const ACTION_PASS: u32 = 2;
    /// Packets that ended XDP_TX.
    pub const ACTION_TX: u32 = 3;
    /// Packets that ended XDP_REDIRECT.
    pub const ACTION_REDIRECT: u32 = 4;
    /// Connection-cache lookups that found a usable entry.
    pub const LRU_HIT: u32 = 5;
    /// Connection-cache lookups that did not (or were skipped for a SYN).
    pub const LRU_MISS: u32 = 6;
    /// Dropped: VIP without a table, or the slot has no live backend.
    pub const DROP_NO_BACKEND: u32 = 7;
    /// Dropped: IPv4 or IPv6 fragment addressed to a VIP address.
    pub const DROP_FRAGMENT: u32 = 8;
    /// Dropped: IPv6 extension header (other than fragment) to a VIP address.
    pub const DROP_IPV6_EXT: u32 = 9;
    /// Dropped: the frame could not be grown for the encapsulation headers.
    pub const DROP_ENCAP: u32 = 10;
    /// Dropped: `bpf_fib_lookup` found no route (blackhole, unreachable, ...).
    pub const DROP_FIB: u32 = 11;
    /// Dropped: the encapsulated packet exceeds the egress MTU.
    pub const DROP_MTU: u32 = 12;
    /// Dropped: the egress interface is not in the TX_PORTS device map.
    pub const DROP_NO_EGRESS: u32 = 13;
    /// Passed encapsulated to the kernel: no neighbour entry yet for the
    /// next hop (the kernel resolves it and forwards the packet).
    pub const PASS_NO_NEIGH: u32 = 14;
    /// VIP packets with IPv4 options (forwarded, options kept in the inner header).
    pub const IPV4_OPTIONS: u32 = 15;
    /// ICMP / ICMPv6 echo requests to a VIP address answered.
    pub const ICMP_ECHO_REPLY: u32 = 16;
    /// ICMP fragmentation-needed / ICMPv6 packet-too-big forwarded to a backend.
    pub const ICMP_PTB_FORWARDED: u32 = 17;
    /// Connection-cache entries ignored because the UDP flow timed out.
    pub const LRU_UDP_EXPIRED: u32 = 18;
    /// Connection-cache entries of another live flow replaced by a new flow
    /// (its set was full; the least recently used way went).
    pub const LRU_EVICTED: u32 = 19;
    /// Of [`LRU_EVICTED`], entries that had seen traffic after their first
    /// packet (established connections pushed out: 0 in flood mode).
    pub const LRU_EVICTED_ESTABLISHED: u32 = 20;
    /// A CPU entered flood mode (its new-flow rate passed the threshold).
    pub const FLOOD_ENTERED: u32 = 21;
    /// A CPU left flood mode (a rate window ended at or below the threshold).
    pub const FLOOD_LEFT: u32 = 22;
    /// New flows (SYNs, mostly) forwarded by the Maglev table without a
    /// cache entry: flood mode, and every way of the set established.
    pub const FLOOD_NOT_CACHED: u32 = 23;
    /// Packets sent carrying the flow's previous owner (second-hop
    /// candidates: a non-SYN cache miss whose slot changed owner).
    pub const SECOND_HOP_SENT: u32 = 24;
    /// Number of counters.
    pub const COUNT: u32 = 25;
}

/// Printable names of the counters, indexed like [`stat`].
pub const STAT_NAMES: [&str; stat::COUNT as usize] = [
    "action_aborted",
    "action_drop",
    "action_pass",
    "action_tx",
    "action_redirect",
    "lru_hit",
    "lru_miss",
    "drop_no_backend",
    "drop_fragment",
    "drop_ipv6_ext",
    "drop_encap",
    "drop_fib",
    "drop_mtu",
    "drop_no_egress",
    "pass_no_neigh",
    "ipv4_options",
    "icmp_echo_reply",
    "icmp_ptb_forwarded",
    "lru_udp_expired",
    "lru_evicted",
    "lru_evicted_established",
    "flood_entered",
    "flood_left",
    "flood_not_cached",
    "second_hop_sent",
];
