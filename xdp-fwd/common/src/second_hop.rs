//! Second hop (daisy-chain forwarding): the wire format shared by the
//! forwarder, which carries a flow's previous owner, and the decap program,
//! which forwards the packet there when it has no socket for the flow. See
//! "Second hop" in FORWARDER.md for the byte diagrams and the rules.

/// GUE form: the first byte of the GUE variant 0 header the forwarder
/// writes, before the header length (`GUE_HLEN_V4` / `GUE_HLEN_V6`) is
/// or-ed in: version 0, C = 0.
pub const GUE_V0: u8 = 0x00;
/// GUE form: length of the private data in 32-bit words, previous owner IPv4.
pub const GUE_HLEN_V4: u8 = 2;
/// GUE form: length of the private data in 32-bit words, previous owner IPv6.
pub const GUE_HLEN_V6: u8 = 5;
/// GUE form: first byte of the private data (identifies EdgeLB's record).
pub const GUE_MAGIC: u8 = 0xe5;
/// GUE form: bit of the private data's flags byte: the packet already took
/// its second hop (the address is the host it was sent to).
pub const GUE_FLAG_HOPPED: u8 = 0x01;
/// GUE base header (4 bytes) plus the private data's fixed part (4 bytes).
pub const GUE_FIXED_LEN: usize = 8;

/// IPIP form: IPv4 identification of the middle header (destination: the
/// previous owner) of a second-hop candidate.
pub const IPIP_ID_CANDIDATE: u16 = 0xe55e;
/// IPIP form: IPv4 identification of the middle header once the packet
/// took its second hop.
pub const IPIP_ID_HOPPED: u16 = 0xe55f;
/// IPIP form: IPv6 flow label of the middle header of a candidate.
pub const IPIP_LABEL_CANDIDATE: u32 = 0xe55e0;
/// IPIP form: IPv6 flow label of the middle header after the second hop.
pub const IPIP_LABEL_HOPPED: u32 = 0xe55e1;

/// TTL / hop limit of the headers the second hop writes.
pub const TTL: u8 = 64;

/// Key of the decap program's `SECOND_HOP` map. With `peer_family == 0`
/// (peer zero) it is the VIP's own entry: the VIP is configured for second
/// hop on this host. Otherwise `peer` is a backend of that VIP a packet may
/// be forwarded to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HopKey {
    /// VIP address words (see the crate docs).
    pub vip: [u32; 4],
    /// Peer address words; zero in the VIP's own entry.
    pub peer: [u32; 4],
    /// The VIP's [`crate::family`].
    pub vip_family: u8,
    /// The peer's [`crate::family`]; 0 in the VIP's own entry.
    pub peer_family: u8,
    /// Always zero.
    pub _pad: [u8; 2],
}

/// Names of the decap program's maps.
pub mod decap_map {
    /// Index 0: the GUE destination port, host order (0 disables GUE).
    pub const CONFIG: &str = "DECAP_CONFIG";
    /// Per-CPU counters indexed by [`super::decap_stat`].
    pub const STATS: &str = "DECAP_STATS";
    /// [`super::HopKey`] -> 1: VIPs configured for second hop and their peers.
    pub const SECOND_HOP: &str = "SECOND_HOP";
}

/// Capacity of the decap program's `SECOND_HOP` map (VIP entries + peers).
pub const SECOND_HOP_ENTRIES: u32 = 4096;

/// Indices of the decap program's counters.
pub mod decap_stat {
    /// IPIP / IP6IP6 / 4in6 / 6in4 packets decapsulated.
    pub const IPIP: u32 = 0;
    /// GUE packets decapsulated.
    pub const GUE: u32 = 1;
    /// Fragmented outer packets passed undecapsulated.
    pub const FRAGMENT: u32 = 2;
    /// Second-hop candidates forwarded to the previous owner.
    pub const SECOND_HOP_FORWARDED: u32 = 3;
    /// Second-hop candidates (and packets that took their second hop)
    /// delivered locally: a socket exists, or a SYN.
    pub const SECOND_HOP_DELIVERED: u32 = 4;
    /// Packets that already took their second hop and found no socket
    /// here either: delivered (never forwarded again).
    pub const SECOND_HOP_LOOP_REFUSED: u32 = 5;
    /// Bad second-hop input: malformed or truncated header, previous owner
    /// not a peer (dropped), VIP not configured here (delivered).
    pub const SECOND_HOP_INVALID: u32 = 6;
    /// Second-hop forwards that found no route to the previous owner (dropped).
    pub const SECOND_HOP_NO_ROUTE: u32 = 7;
    /// Number of counters.
    pub const COUNT: u32 = 8;
}

// The markers fit their fields (20-bit flow label, 5-bit GUE Hlen).
const _: () = assert!(IPIP_LABEL_CANDIDATE < 1 << 20 && IPIP_LABEL_HOPPED < 1 << 20);
const _: () = assert!(GUE_HLEN_V6 < 32);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain old data with explicit padding.
unsafe impl aya::Pod for HopKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_key_layout() {
        assert_eq!(core::mem::size_of::<HopKey>(), 36);
    }
}
