//! Keys and values of the program's BPF maps, and the map names.
//!
//! Layout rules: `#[repr(C)]`, explicit padding fields (so userspace never
//! hands the kernel uninitialised bytes), sizes pinned by tests.

/// Names of the program's maps (the names userspace opens and pins).
pub mod map_name {
    /// [`crate::Settings`] at index 0.
    pub const SETTINGS: &str = "SETTINGS";
    /// [`crate::VipMapKey`] -> [`crate::VipMeta`].
    pub const VIPS: &str = "VIPS";
    /// [`crate::AddrKey`] -> number of VIPs on that address (ICMP echo, fragments).
    pub const VIP_ADDRS: &str = "VIP_ADDRS";
    /// Maglev slots of every VIP, two halves each (see [`crate::VipMeta`]).
    pub const RING: &str = "RING";
    /// Backend id -> [`crate::BackendEntry`].
    pub const BACKENDS: &str = "BACKENDS";
    /// Set-associative connection cache, one slice of sets per CPU: set
    /// index -> [`crate::ConnSet`] (a plain array, see [`crate::conn`]).
    pub const CONN_CACHE: &str = "CONN_CACHE";
    /// Previous owners of second-hop flows, beside CONN_CACHE: set index ->
    /// [`crate::ConnPrevSet`] (same indices, read only for flagged ways).
    pub const CONN_PREV: &str = "CONN_PREV";
    /// Per-CPU global counters indexed by [`crate::stats::stat`].
    pub const STATS: &str = "STATS";
    /// Per-CPU [`crate::Traffic`] per VIP index.
    pub const VIP_STATS: &str = "VIP_STATS";
    /// Per-CPU [`crate::Traffic`] per backend id.
    pub const BACKEND_STATS: &str = "BACKEND_STATS";
    /// Device map (ifindex -> ifindex) of interfaces the program may redirect to.
    pub const TX_PORTS: &str = "TX_PORTS";
    /// VIP index -> [`crate::VipEpoch`] (what a cached flow needs of its VIP).
    pub const VIP_EPOCHS: &str = "VIP_EPOCHS";
    /// Per-CPU cache of `bpf_fib_lookup` results per backend id ([`crate::NextHop`]).
    pub const NEXT_HOPS: &str = "NEXT_HOPS";
    /// Per-CPU [`crate::FloodWindow`] at index 0 (not pinned: a restart
    /// starts a new window).
    pub const FLOOD: &str = "FLOOD";
    /// Bitmap words (u64) of addresses that may carry a VIP (see
    /// [`crate::vip_filter_bit`]).
    pub const VIP_FILTER: &str = "VIP_FILTER";
}

/// Default capacities of the maps (the loader can override them at load time).
pub mod capacity {
    /// VIPs.
    pub const VIPS: u32 = 64;
    /// Backends (distinct backend addresses over all VIPs).
    pub const BACKENDS: u32 = 4096;
    /// Largest Maglev table (slots) a VIP may use.
    pub const TABLE: u32 = 65537;
    /// Connection-cache entries (flows) per CPU.
    pub const FLOWS: u32 = 65536;
    /// Interfaces in the device map.
    pub const TX_PORTS: u32 = 64;
}

/// Bits of the VIP address filter (the VIP_FILTER map holds
/// `VIP_FILTER_BITS / 64` words): 8 KiB, so it stays in the CPU's cache.
pub const VIP_FILTER_BITS: u32 = 1 << 16;

/// The VIP address filter's bit for an address (address words and family, as
/// in [`AddrKey`]).
///
/// The program tests this bit before any VIP hash lookup: a clear bit means
/// no VIP lives on the address, so traffic that is not for a VIP passes
/// after one inlined array read instead of two hash-map lookups (helper
/// calls). A set bit may be shared with another address; the exact lookups
/// decide then. Node-local: only this node's program and loader use it.
#[inline(always)]
pub fn vip_filter_bit(addr: &[u32; 4], family: u8) -> u32 {
    let folded = addr[0]
        ^ addr[1].rotate_left(8)
        ^ addr[2].rotate_left(16)
        ^ addr[3].rotate_left(24)
        ^ u32::from(family);
    // The high half of the product depends on every input bit.
    (folded.wrapping_mul(0x9e37_79b1) >> 16) & (VIP_FILTER_BITS - 1)
}

/// A RING slot holding this value has no backend (packets hashing to it drop).
pub const NO_BACKEND: u32 = u32::MAX;

/// Key of the VIP map: (address, port, protocol). Port 0 means "all ports".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipMapKey {
    /// Address words (see the crate docs); IPv4 uses `addr[0]` only.
    pub addr: [u32; 4],
    /// Destination port in network byte order (see [`crate::port_raw`]); 0 = any.
    pub port: u16,
    /// IP protocol number ([`crate::proto::TCP`] or [`crate::proto::UDP`]).
    pub proto: u8,
    /// [`crate::family::V4`] or [`crate::family::V6`].
    pub family: u8,
}

/// Key of the VIP address map: an address that carries at least one VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// Address words; IPv4 uses `addr[0]` only.
    pub addr: [u32; 4],
    /// [`crate::family::V4`] or [`crate::family::V6`].
    pub family: u8,
    /// Always zero.
    pub _pad: [u8; 3],
}

/// Bits of [`VipMeta::flags`].
pub mod vip_flags {
    /// Leave the source port out of the flow hash.
    pub const HASH_NO_SRC_PORT: u32 = 1 << 0;
    /// Hash only destination address, port and protocol.
    pub const HASH_DST_PORT_ONLY: u32 = 1 << 1;
}

/// How packets of a VIP are encapsulated towards its backends.
pub mod encap {
    /// Use [`crate::Settings::default_encap`].
    pub const DEFAULT: u8 = 0;
    /// IP-in-IP: IPIP, IP6IP6, IPv4-in-IPv6 or IPv6-in-IPv4 by family.
    pub const IPIP: u8 = 1;
    /// GUE variant 1 (UDP directly followed by the inner IP packet).
    pub const GUE: u8 = 2;
}

/// Value of the VIP map.
///
/// The VIP's Maglev table lives in RING at
/// `(index * 2 + active_half) * Settings::ring_stride`, `table_size` slots;
/// its previous table, if `prev_table_size` is not 0, in the other half.
/// Userspace writes the inactive half, then replaces this value with the
/// other half selected: one map update, so a packet sees either the whole
/// old table or the whole new one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipMeta {
    /// Bit set of [`vip_flags`].
    pub flags: u32,
    /// Dense VIP index: selects its RING rows and its counters.
    pub index: u32,
    /// Slots in the active table; 0 = no table (every packet drops).
    pub table_size: u32,
    /// Which RING half (0 or 1) is live.
    pub active_half: u8,
    /// One of [`encap`].
    pub encap: u8,
    /// Always zero.
    pub _pad: [u8; 2],
    /// Slots of the previous table, held by the inactive half (the VIP's
    /// table before its latest change) for second-hop lookups; 0 = none.
    pub prev_table_size: u32,
}

/// Value of the VIP_EPOCHS map, per VIP index: lets a connection-cache hit
/// skip the VIP hash lookup.
///
/// Userspace gives the index a new epoch whenever the VIP at that index is
/// added, changed or removed, or another VIP is added on its address, so
/// entries cached before stop taking the shortcut (they then go through the
/// VIP lookup and keep their backend).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipEpoch {
    /// Current epoch of the index; 0 = no VIP (never matches).
    pub epoch: u32,
    /// The VIP's [`VipMeta::encap`].
    pub encap: u8,
    /// Always zero.
    pub _pad: [u8; 3],
}

/// Value of the BACKENDS map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendEntry {
    /// Address words of the backend (the outer destination).
    pub addr: [u32; 4],
    /// Bumped whenever the id is given to another address, so connection
    /// table entries of the old backend stop matching. Never 0.
    pub generation: u32,
    /// [`crate::family::V4`] or [`crate::family::V6`]; 0 = unused id.
    pub family: u8,
    /// Always zero.
    pub _pad: [u8; 3],
}

/// Key of the connection cache (and input of the flow hash): the 5-tuple
/// as the packet carries it. 8-aligned so the program compares it in five
/// 64-bit words (the BPF verifier wants aligned stack access).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address words (client).
    pub src: [u32; 4],
    /// Destination address words (VIP).
    pub dst: [u32; 4],
    /// Source port, raw (see [`crate::port_raw`]).
    pub sport: u16,
    /// Destination port, raw.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Always zero.
    pub _pad: [u8; 3],
}

/// Value of the NEXT_HOPS map: a cached route lookup for one backend.
///
/// `bpf_fib_lookup` (route + neighbour) costs far more than the rest of the
/// packet path, so each CPU keeps its result per backend for
/// [`NEXT_HOP_TTL_JIFFIES`]: route or neighbour changes apply within that time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// Next-hop MAC, as three raw 16-bit words (wire order in memory).
    pub dmac: [u16; 3],
    /// Egress interface MAC, likewise.
    pub smac: [u16; 3],
    /// Egress interface; 0 = empty entry.
    pub ifindex: u32,
    /// Path MTU towards the backend (largest outer IP packet).
    pub mtu: u32,
    /// [`BackendEntry::generation`] the entry was filled for.
    pub generation: u32,
    /// `bpf_jiffies64` when filled.
    pub filled_jiffies: u64,
}

impl NextHop {
    /// Destination then source MAC: the start of the Ethernet header.
    #[inline(always)]
    pub fn eth_addrs(&self) -> [u16; 6] {
        let (d, s) = (self.dmac, self.smac);
        [d[0], d[1], d[2], s[0], s[1], s[2]]
    }
}

/// How long a [`NextHop`] entry is used before the route is looked up again,
/// in kernel ticks (jiffies are nearly free to read in BPF; a clock helper is
/// not): 100 ms at CONFIG_HZ=250, 25 ms at 1000, 250 ms at 100.
pub const NEXT_HOP_TTL_JIFFIES: u64 = 25;

/// Value of the SETTINGS map (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Cluster-wide flow hash seed (replicated).
    pub hash_seed: u32,
    /// RING slots reserved per table half (the largest table size allowed).
    pub ring_stride: u32,
    /// UDP connection-cache entries idle longer than this many kernel ticks
    /// (jiffies; the loader converts from the kernel's HZ) are ignored.
    pub udp_timeout_jiffies: u64,
    /// Encapsulation of VIPs whose [`VipMeta::encap`] is [`encap::DEFAULT`].
    pub default_encap: u8,
    /// Always zero.
    pub _pad: u8,
    /// GUE destination port, raw (see [`crate::port_raw`]).
    pub gue_port: u16,
    /// Outer IPv4 source: fixed bits (address word).
    pub src_v4: u32,
    /// Bits of the outer IPv4 source taken from the flow hash (address word):
    /// the source is `(src_v4 & !mask) | (hash & mask)` on address words, so
    /// address byte `i` takes byte `i` of the hash's little-endian bytes.
    pub src_v4_hash_mask: u32,
    /// Outer IPv6 source: fixed bits (address words).
    pub src_v6: [u32; 4],
    /// Bits of the last outer IPv6 source word taken from the flow hash, as
    /// for IPv4.
    pub src_v6_hash_mask: u32,
    /// Connection-cache sets minus one (the sets are a power of two; see
    /// [`crate::conn`]).
    pub conn_set_mask: u32,
    /// New flows per CPU per rate window above which the CPU is in flood
    /// mode ([`crate::flood::FLOOD_OFF`]: never); see [`crate::flood`].
    pub flood_window_flows: u32,
    /// Length of a rate window in kernel ticks (at least 1).
    pub flood_window_jiffies: u32,
    /// Always zero.
    pub _pad2: u32,
}

/// Packets and bytes, one per-CPU element per VIP or backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets.
    pub packets: u64,
    /// Bytes (whole frames as received).
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are #[repr(C)] plain old data with explicit padding; any
    // bit pattern is a valid value.
    unsafe impl aya::Pod for super::VipMapKey {}
    unsafe impl aya::Pod for super::VipMeta {}
    unsafe impl aya::Pod for super::VipEpoch {}
    unsafe impl aya::Pod for super::AddrKey {}
    unsafe impl aya::Pod for super::BackendEntry {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for crate::ConnSet {}
    unsafe impl aya::Pod for crate::ConnPrevSet {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::Traffic {}
    unsafe impl aya::Pod for crate::FloodWindow {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    /// The layouts are an ABI between two compilers: pin them.
    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<VipMapKey>(), 20);
        assert_eq!(size_of::<AddrKey>(), 20);
        assert_eq!(size_of::<VipMeta>(), 20);
        assert_eq!(size_of::<VipEpoch>(), 8);
        assert_eq!(size_of::<BackendEntry>(), 24);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<Settings>(), 64);
        assert_eq!(size_of::<Traffic>(), 16);
        assert_eq!(size_of::<NextHop>(), 32);
    }
}
