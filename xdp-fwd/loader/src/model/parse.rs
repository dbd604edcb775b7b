//! The model's frame parser (FORWARDER.md, "Packet path" step 1 and the
//! "Policies" table): every header the forwarder reads must lie inside the
//! frame and inside the IP packet its length fields describe.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The transport part of a parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L4 {
    /// TCP or UDP: ports, and whether it is a SYN without ACK.
    Flow { sport: u16, dport: u16, syn: bool },
    /// ICMP (in IPv4) or ICMPv6 (in IPv6).
    Icmp { kind: u8, code: u8 },
    /// Anything else (passed).
    Other,
}

/// What the packet path needs of a frame.
#[derive(Clone, Debug)]
pub(crate) struct Packet {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the transport header.
    pub l4_off: usize,
    /// IP total length (header included).
    pub ip_len: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Protocol / next header.
    pub proto: u8,
    pub fragment: bool,
    pub ext_header: bool,
    pub ipv4_options: bool,
    pub l4: L4,
}

impl Packet {
    /// End of the IP packet in the frame.
    pub fn end(&self) -> usize {
        self.l3 + self.ip_len
    }
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn v4_at(f: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]))
}

fn v6_at(f: &[u8], at: usize) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&f[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(o))
}

/// Parses `frame`; `None` = not IP, truncated or inconsistent lengths
/// (passed untouched).
pub(crate) fn parse(f: &[u8]) -> Option<Packet> {
    if f.len() < 14 {
        return None;
    }
    let (mut ethertype, mut l3) = (be16(f, 12), 14);
    if ethertype == 0x8100 {
        if f.len() < 18 {
            return None;
        }
        ethertype = be16(f, 16);
        l3 = 18;
    }
    let mut p = match ethertype {
        0x0800 => ipv4(f, l3)?,
        0x86dd => ipv6(f, l3)?,
        _ => return None,
    };
    if p.end() > f.len() {
        return None;
    }
    if p.fragment || p.ext_header {
        return Some(p);
    }
    let v4 = p.src.is_ipv4();
    let room = p.end() - p.l4_off;
    let o = p.l4_off;
    p.l4 = match (p.proto, v4) {
        (6, _) => {
            if room < 20 {
                return None;
            }
            L4::Flow {
                sport: be16(f, o),
                dport: be16(f, o + 2),
                syn: f[o + 13] & 0x12 == 0x02,
            }
        }
        (17, _) => {
            if room < 8 {
                return None;
            }
            L4::Flow {
                sport: be16(f, o),
                dport: be16(f, o + 2),
                syn: false,
            }
        }
        (1, true) | (58, false) => {
            if room < 8 {
                return None;
            }
            L4::Icmp {
                kind: f[o],
                code: f[o + 1],
            }
        }
        _ => L4::Other,
    };
    Some(p)
}

fn ipv4(f: &[u8], l3: usize) -> Option<Packet> {
    if f.len() < l3 + 20 || f[l3] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(f[l3] & 0x0f) * 4;
    let tot_len = usize::from(be16(f, l3 + 2));
    if ihl < 20 || tot_len < ihl {
        return None;
    }
    Some(Packet {
        l3,
        l4_off: l3 + ihl,
        ip_len: tot_len,
        src: v4_at(f, l3 + 12),
        dst: v4_at(f, l3 + 16),
        proto: f[l3 + 9],
        fragment: be16(f, l3 + 6) & 0x3fff != 0,
        ext_header: false,
        ipv4_options: ihl > 20,
        l4: L4::Other,
    })
}

fn ipv6(f: &[u8], l3: usize) -> Option<Packet> {
    if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
        return None;
    }
    let ip_len = usize::from(be16(f, l3 + 4)) + 40;
    if ip_len > 0xffff {
        return None;
    }
    let next = f[l3 + 6];
    Some(Packet {
        l3,
        l4_off: l3 + 40,
        ip_len,
        src: v6_at(f, l3 + 8),
        dst: v6_at(f, l3 + 24),
        proto: next,
        fragment: next == 44,
        // Hop-by-hop, routing, destination options, AH, mobility, HIP, shim6.
        ext_header: matches!(next, 0 | 43 | 60 | 51 | 135 | 139 | 140),
        ipv4_options: false,
        l4: L4::Other,
    })
}

/// The packet an ICMP error quotes (its addresses, protocol and ports).
pub(crate) struct Quoted {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// The quote of an ICMP frag-needed / ICMPv6 packet-too-big: an IP header
/// of the packet's own family and the first 4 bytes after it (the ports),
/// all inside the ICMP packet.
pub(crate) fn quoted(f: &[u8], p: &Packet) -> Option<Quoted> {
    let q = p.l4_off + 8;
    let end = p.end();
    if p.src.is_ipv4() {
        if q + 20 > end || f[q] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(f[q] & 0x0f) * 4;
        if ihl < 20 || q + ihl + 4 > end {
            return None;
        }
        Some(Quoted {
            src: v4_at(f, q + 12),
            dst: v4_at(f, q + 16),
            proto: f[q + 9],
            sport: be16(f, q + ihl),
            dport: be16(f, q + ihl + 2),
        })
    } else {
        if q + 44 > end || f[q] >> 4 != 6 {
            return None;
        }
        Some(Quoted {
            src: v6_at(f, q + 8),
            dst: v6_at(f, q + 24),
            proto: f[q + 6],
            sport: be16(f, q + 40),
            dport: be16(f, q + 42),
        })
    }
}
