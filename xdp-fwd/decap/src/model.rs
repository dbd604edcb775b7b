//! A reference model of the decap program, in plain Rust, written from its
//! rules (FORWARDER.md, "Backend decap" and "Second hop", backend rule),
//! for the differential fuzz (`tests/diff_fuzz.rs`): the verdict, the
//! output frame and the counters that change, for any frame.
//!
//! Second hop is modelled with no VIP configured for it on the host (rules
//! 1-4: recognition, malformed records and original packets dropped, the
//! rest stripped and delivered as an old decap would): the socket lookups
//! and forwarding of rules 5-8 need configured VIPs and live sockets.
use crate::DecapStats;

/// The model's result for one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecapOutcome {
    /// XDP verdict (always XDP_PASS: 2).
    pub verdict: u32,
    /// The frame handed to the stack.
    pub frame: Vec<u8>,
    /// Counter increments.
    pub stats: DecapStats,
}

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// What the outer headers are: (length to strip, inner EtherType, GUE?).
enum Outer {
    /// One layer.
    Plain(usize, u16, bool),
    /// A second-hop record and the original packet; `None` when the record
    /// or the original packet is malformed (dropped).
    Hop(Option<(usize, u16, bool)>),
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// The IP-in-IP form's middle header at `at` (IPv4 if the outer protocol
/// is 4): `None` if not marked (plain IP-in-IP); else its length and the
/// original packet's family (`None`: malformed).
fn ipip_form(f: &[u8], at: usize, proto: u8) -> Option<Option<(usize, bool)>> {
    if proto == 4 {
        if f.len() < at + 20 || !matches!(be16(f, at + 4), 0xe55e | 0xe55f) {
            return None;
        }
        let next = f[at + 9];
        if !matches!(next, 4 | 41) {
            return None;
        }
        // HOPPED belongs in the outer header (the second hop removes the
        // first outer header): in a middle header it is malformed.
        if f[at] != 0x45 || be16(f, at + 6) & 0x3fff != 0 || be16(f, at + 4) == 0xe55f {
            return Some(None);
        }
        Some(Some((20, next == 41)))
    } else {
        if f.len() < at + 40 {
            return None;
        }
        let label = (u32::from(f[at + 1] & 0x0f) << 16) | u32::from(be16(f, at + 2));
        let next = f[at + 6];
        if !matches!(label, 0xe55e0 | 0xe55e1) || !matches!(next, 4 | 41) {
            return None;
        }
        if f[at] >> 4 != 6 || label == 0xe55e1 {
            return Some(None);
        }
        Some(Some((40, next == 41)))
    }
}

/// The GUE form (variant 0 with EdgeLB's private data) at `g` (the GUE
/// header): `None` if not EdgeLB's (passed); else the bytes from the UDP
/// header to the original packet and its family (`None`: malformed).
fn gue_form(f: &[u8], g: usize, l3_len: usize, outer_v6: bool) -> Option<Option<(usize, bool)>> {
    if f.len() < g + 8 || f[g + 4] != 0xe5 {
        return None;
    }
    let (b0, proto, fam) = (f[g], f[g + 1], f[g + 6]);
    let v6 = fam == 6;
    let hlen = usize::from(b0 & 0x1f);
    let well_formed = b0 & 0xe0 == 0
        && be16(f, g + 2) == 0
        && matches!(proto, 4 | 41)
        && matches!(fam, 4 | 6)
        && hlen == if v6 { 5 } else { 2 }
        && f[g + 5] & !0x01 == 0
        && f[g + 7] == 0
        && l3_len == if outer_v6 { 40 } else { 20 }
        && outer_v6 == v6
        && f.len() >= g + 8 + if v6 { 16 } else { 4 };
    if !well_formed {
        return Some(None);
    }
    Some(Some((8 + 4 + hlen * 4, proto == 41)))
}

/// Whether the original packet at `at` is one the forwarder marks: IPv4
/// (IHL >= 5, not a fragment) or IPv6 of the announced family, carrying a
/// complete TCP or UDP header.
fn original_ok(f: &[u8], at: usize, v6: bool) -> bool {
    let (proto, l4) = if v6 {
        if f.len() < at + 40 || f[at] >> 4 != 6 {
            return false;
        }
        (f[at + 6], at + 40)
    } else {
        if f.len() < at + 20 || f[at] >> 4 != 4 {
            return false;
        }
        let ihl = usize::from(f[at] & 0x0f) * 4;
        if ihl < 20 || be16(f, at + 6) & 0x3fff != 0 {
            return false;
        }
        (f[at + 9], at + ihl)
    };
    match proto {
        6 => f.len() >= l4 + 20,
        17 => f.len() >= l4 + 8,
        _ => false,
    }
}

/// A second-hop record found by `form`, checked with its original packet.
fn hop(form: Option<(usize, bool)>, f: &[u8], l3_len: usize, gue: bool) -> Outer {
    let Some((hop_len, inner_v6)) = form else {
        return Outer::Hop(None);
    };
    let strip = l3_len + hop_len;
    if !original_ok(f, 14 + strip, inner_v6) {
        return Outer::Hop(None);
    }
    Outer::Hop(Some((strip, if inner_v6 { 0x86dd } else { 0x0800 }, gue)))
}

/// The decap program's rules, configured with the GUE port (0 = no GUE).
#[derive(Clone, Copy, Debug)]
pub struct DecapModel {
    /// GUE destination port.
    pub gue_port: u16,
}

impl DecapModel {
    /// The outcome of `frame`.
    pub fn step(&self, f: &[u8]) -> DecapOutcome {
        let mut out = DecapOutcome {
            verdict: XDP_PASS,
            frame: f.to_vec(),
            stats: DecapStats::default(),
        };
        let (outer_len, inner_ethertype, gue) = match self.outer(f, &mut out.stats) {
            None => return out,
            Some(Outer::Plain(len, et, gue)) => (len, et, gue),
            Some(Outer::Hop(Some((len, et, gue)))) => {
                // Rule 4: the VIP is not configured for second hop here.
                out.stats.second_hop_invalid += 1;
                (len, et, gue)
            }
            Some(Outer::Hop(None)) => {
                out.stats.second_hop_invalid += 1;
                out.verdict = XDP_DROP;
                return out;
            }
        };
        // The stripped frame must still hold an Ethernet header, else the
        // head cannot move and the frame passes as it came.
        if f.len() < outer_len + 14 {
            return out;
        }
        let mut o = f[..12].to_vec();
        o.extend_from_slice(&inner_ethertype.to_be_bytes());
        o.extend_from_slice(&f[14 + outer_len..]);
        out.frame = o;
        if gue {
            out.stats.gue += 1;
        } else {
            out.stats.ipip += 1;
        }
        out
    }

    /// The outer headers of an encapsulated frame for us; counts a
    /// fragmented outer packet.
    fn outer(&self, f: &[u8], stats: &mut DecapStats) -> Option<Outer> {
        if f.len() < 14 {
            return None;
        }
        let ethertype = u16::from_be_bytes([f[12], f[13]]);
        // IP-in-IP after its second hop: the HOPPED marker in the outer
        // header (IPv4 ID, IPv6 flow label), no middle header.
        let outer_hopped = match ethertype {
            0x0800 => f.len() >= 20 && be16(f, 18) == 0xe55f,
            0x86dd => {
                f.len() >= 18 && (u32::from(f[15] & 0x0f) << 16) | u32::from(be16(f, 16)) == 0xe55e1
            }
            _ => false,
        };
        let (l3_len, proto) = match ethertype {
            0x0800 => {
                if f.len() < 34 {
                    return None;
                }
                let ihl = usize::from(f[14] & 0x0f) * 4;
                if f[14] >> 4 != 4 || ihl < 20 {
                    return None;
                }
                let proto = f[23];
                if u16::from_be_bytes([f[20], f[21]]) & 0x3fff != 0 {
                    if matches!(proto, 4 | 41 | 17) {
                        stats.fragments += 1;
                    }
                    return None;
                }
                (ihl, proto)
            }
            0x86dd => {
                if f.len() < 54 {
                    return None;
                }
                (40, f[20])
            }
            _ => return None,
        };
        match proto {
            4 | 41 => {
                let inner = if proto == 4 { 0x0800 } else { 0x86dd };
                if outer_hopped {
                    // Marked only by its outer header: without a TCP/UDP
                    // original packet, plain IP-in-IP.
                    return Some(match hop(Some((0, proto == 41)), f, l3_len, false) {
                        Outer::Hop(None) => Outer::Plain(l3_len, inner, false),
                        record => record,
                    });
                }
                if let Some(form) = ipip_form(f, 14 + l3_len, proto) {
                    return Some(hop(form, f, l3_len, false));
                }
                Some(Outer::Plain(l3_len, inner, false))
            }
            17 => {
                let udp = 14 + l3_len;
                if f.len() < udp + 9 || self.gue_port == 0 {
                    return None;
                }
                if u16::from_be_bytes([f[udp + 2], f[udp + 3]]) != self.gue_port {
                    return None;
                }
                if f[udp + 8] >> 6 == 0 {
                    let form = gue_form(f, udp + 8, l3_len, ethertype == 0x86dd)?;
                    return Some(hop(form, f, l3_len, true));
                }
                let inner = match f[udp + 8] >> 4 {
                    4 => 0x0800,
                    6 => 0x86dd,
                    _ => return None,
                };
                Some(Outer::Plain(l3_len + 8, inner, true))
            }
            _ => None,
        }
    }
}
