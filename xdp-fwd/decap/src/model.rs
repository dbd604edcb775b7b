//! A reference model of the decap program, in plain Rust, written from its
//! rules (FORWARDER.md, "Backend decap"), for the differential fuzz
//! (`tests/diff_fuzz.rs`): the verdict, the output frame and the counters
//! that change, for any frame.
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

const XDP_PASS: u32 = 2;

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
        let Some((outer_len, inner_ethertype, gue)) = self.outer(f, &mut out.stats) else {
            return out;
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

    /// (outer header length, inner EtherType, GUE?) of an encapsulated
    /// frame for us; counts a fragmented outer packet.
    fn outer(&self, f: &[u8], stats: &mut DecapStats) -> Option<(usize, u16, bool)> {
        if f.len() < 14 {
            return None;
        }
        let (l3_len, proto) = match u16::from_be_bytes([f[12], f[13]]) {
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
            4 => Some((l3_len, 0x0800, false)),
            41 => Some((l3_len, 0x86dd, false)),
            17 => {
                let udp = 14 + l3_len;
                if f.len() < udp + 9 || self.gue_port == 0 {
                    return None;
                }
                if u16::from_be_bytes([f[udp + 2], f[udp + 3]]) != self.gue_port {
                    return None;
                }
                let inner = match f[udp + 8] >> 4 {
                    4 => 0x0800,
                    6 => 0x86dd,
                    _ => return None,
                };
                Some((l3_len + 8, inner, true))
            }
            _ => None,
        }
    }
}
