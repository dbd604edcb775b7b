//! A reference model of the decap program, in plain Rust, written from its
//! rules (FORWARDER.md, "Backend decap" and "Second hop", backend rule),
//! for the differential fuzz (`tests/diff_fuzz.rs`): the verdict, the
//! output frame and the counters that change, for any frame.
//!
//! Second hop is modelled in full (rules 1-8): the VIPs configured for it
//! and their peers, the host's sockets and its routes to the peers are
//! inputs ([`SecondHop`]); the model never asks the kernel.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
    /// The second-hop rule that decided the frame (`None`: no record).
    pub rule: Option<HopRule>,
}

/// Which second-hop rule decided a frame (for coverage counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HopRule {
    /// Rules 2-3: malformed record or original packet, dropped.
    Malformed,
    /// Rule 4: the VIP is not configured here, delivered.
    Unconfigured,
    /// Rule 5: already hopped, a SYN or a socket here: delivered.
    HoppedDelivered,
    /// Rule 5: already hopped, no socket here either: delivered (loop refused).
    LoopRefused,
    /// Rule 6: the previous owner is not a peer of the VIP, dropped.
    UnknownPeer,
    /// Rule 7: a TCP SYN, delivered.
    DeliveredSyn,
    /// Rule 7: a socket exists here, delivered.
    DeliveredSocket,
    /// Rule 8: forwarded to the previous owner (resolved neighbour).
    Forwarded,
    /// Rule 8: rewritten and passed to the kernel (no neighbour entry).
    ForwardedNoNeighbour,
    /// Rule 8: no route to the previous owner, dropped.
    NoRoute,
}

/// Where the route lookup towards a previous owner leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTo {
    /// A resolved neighbour: destination and source MACs, and the verdict
    /// (XDP_TX out of the ingress interface, else XDP_REDIRECT).
    Next {
        /// Next hop's MAC.
        dst_mac: [u8; 6],
        /// The egress interface's MAC.
        src_mac: [u8; 6],
        /// XDP_TX (3) or XDP_REDIRECT (4).
        verdict: u32,
    },
    /// A route whose neighbour is not resolved: passed to the kernel.
    NoNeighbour,
}

/// A route of the host: `prefix`/`len` leads to `to`. Addresses no route
/// covers are unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Network address.
    pub prefix: IpAddr,
    /// Prefix length.
    pub len: u8,
    /// Where it leads.
    pub to: RouteTo,
}

/// The host's second-hop state, as inputs: configured VIPs with their
/// peers, its sockets, its routes.
#[derive(Clone, Debug, Default)]
pub struct SecondHop {
    /// VIPs configured for second hop and their peers.
    pub vips: Vec<(IpAddr, Vec<IpAddr>)>,
    /// TCP sockets that are not listeners: (local, remote).
    pub tcp_connected: Vec<(SocketAddr, SocketAddr)>,
    /// UDP sockets bound to a specific address (unconnected).
    pub udp_bound: Vec<SocketAddr>,
    /// Routes (longest prefix wins).
    pub routes: Vec<Route>,
}

impl SecondHop {
    fn peers(&self, vip: IpAddr) -> Option<&[IpAddr]> {
        self.vips
            .iter()
            .find(|(v, _)| *v == vip)
            .map(|(_, p)| p.as_slice())
    }

    /// TCP: a non-listening socket whose local end is the destination and
    /// remote end the source; UDP: a socket bound to the destination.
    fn has_socket(&self, flow: &Flow) -> bool {
        let local = SocketAddr::new(flow.dst, flow.dport);
        if flow.tcp {
            let remote = SocketAddr::new(flow.src, flow.sport);
            self.tcp_connected.contains(&(local, remote))
        } else {
            self.udp_bound.contains(&local)
        }
    }

    fn route(&self, dst: IpAddr) -> Option<RouteTo> {
        self.routes
            .iter()
            .filter(|r| in_prefix(dst, r.prefix, r.len))
            .max_by_key(|r| r.len)
            .map(|r| r.to)
    }
}

fn in_prefix(a: IpAddr, prefix: IpAddr, len: u8) -> bool {
    let (a, p, bits) = match (a, prefix) {
        (IpAddr::V4(a), IpAddr::V4(p)) => (
            u128::from(u32::from(a)) << 96,
            u128::from(u32::from(p)) << 96,
            32,
        ),
        (IpAddr::V6(a), IpAddr::V6(p)) => (u128::from(a), u128::from(p), 128),
        _ => return false,
    };
    let len = u32::from(len).min(bits);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    a & mask == p & mask
}

/// The original packet's flow.
struct Flow {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    tcp: bool,
    /// SYN set, ACK clear.
    syn: bool,
}

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// TTL / hop limit of a second hop.
const HOP_TTL: u8 = 64;

/// What the outer headers are: (length to strip, inner EtherType, GUE?).
enum Outer {
    /// One layer.
    Plain(usize, u16, bool),
    /// A second-hop record and the original packet; `None` when the record
    /// or the original packet is malformed (dropped).
    Hop(Option<Record>),
}

/// A well-formed second-hop record and where its original packet is.
struct Record {
    /// GUE form (else IP-in-IP).
    gue: bool,
    /// The outer IP header's length.
    l3_len: usize,
    /// Bytes from the outer IP header's end to the original packet.
    hop_len: usize,
    /// The original packet is IPv6.
    inner_v6: bool,
    /// The previous owner (`None`: marked HOPPED in the outer header).
    prev: Option<IpAddr>,
    /// HOPPED: the packet took its second hop.
    hopped: bool,
    /// The original packet's flow.
    flow: Flow,
}

/// A form's record before its original packet is checked: (bytes to the
/// original packet after the outer header, original IPv6?, previous owner,
/// hopped).
type Form = (usize, bool, Option<IpAddr>, bool);

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn addr(f: &[u8], at: usize, v6: bool) -> IpAddr {
    if v6 {
        let mut o = [0u8; 16];
        o.copy_from_slice(&f[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]))
    }
}

/// The IP-in-IP form's middle header at `at` (IPv4 if the outer protocol
/// is 4): `None` if not marked (plain IP-in-IP); else the record (`None`:
/// malformed).
fn ipip_form(f: &[u8], at: usize, proto: u8, outer_v6: bool) -> Option<Option<Form>> {
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
        // From this host: the middle source is the outer destination.
        if outer_v6 || f[at + 12..at + 16] != f[14 + 16..14 + 20] {
            return Some(None);
        }
        Some(Some((20, next == 41, Some(addr(f, at + 16, false)), false)))
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
        if !outer_v6 || f[at + 8..at + 24] != f[14 + 24..14 + 40] {
            return Some(None);
        }
        Some(Some((40, next == 41, Some(addr(f, at + 24, true)), false)))
    }
}

/// The GUE form (variant 0 with EdgeLB's private data) at `g` (the GUE
/// header): `None` if not EdgeLB's (passed); else the record (`None`:
/// malformed).
fn gue_form(f: &[u8], g: usize, l3_len: usize, outer_v6: bool) -> Option<Option<Form>> {
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
    Some(Some((
        8 + 4 + hlen * 4,
        proto == 41,
        Some(addr(f, g + 8, v6)),
        f[g + 5] & 0x01 != 0,
    )))
}

/// The original packet at `at` if it is one the forwarder marks: IPv4
/// (IHL >= 5, not a fragment) or IPv6 of the announced family, carrying a
/// complete TCP or UDP header.
fn original(f: &[u8], at: usize, v6: bool) -> Option<Flow> {
    let (proto, l4, src, dst) = if v6 {
        if f.len() < at + 40 || f[at] >> 4 != 6 {
            return None;
        }
        (
            f[at + 6],
            at + 40,
            addr(f, at + 8, true),
            addr(f, at + 24, true),
        )
    } else {
        if f.len() < at + 20 || f[at] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(f[at] & 0x0f) * 4;
        if ihl < 20 || be16(f, at + 6) & 0x3fff != 0 {
            return None;
        }
        (
            f[at + 9],
            at + ihl,
            addr(f, at + 12, false),
            addr(f, at + 16, false),
        )
    };
    let tcp = match proto {
        6 if f.len() >= l4 + 20 => true,
        17 if f.len() >= l4 + 8 => false,
        _ => return None,
    };
    Some(Flow {
        src,
        dst,
        sport: be16(f, l4),
        dport: be16(f, l4 + 2),
        tcp,
        syn: tcp && f[l4 + 13] & 0x12 == 0x02,
    })
}

/// A second-hop record found by a form, checked with its original packet.
fn hop(form: Option<Form>, f: &[u8], l3_len: usize, gue: bool) -> Outer {
    let Some((hop_len, inner_v6, prev, hopped)) = form else {
        return Outer::Hop(None);
    };
    let Some(flow) = original(f, 14 + l3_len + hop_len, inner_v6) else {
        return Outer::Hop(None);
    };
    Outer::Hop(Some(Record {
        gue,
        l3_len,
        hop_len,
        inner_v6,
        prev,
        hopped,
        flow,
    }))
}

/// One's-complement sum of the big-endian 16-bit words of `b` (even length).
fn sum16(b: &[u8]) -> u32 {
    b.chunks(2).map(|w| u32::from(be16(w, 0))).sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The IPv4 header checksum of the 20-byte header at `at`, recomputed.
fn ipv4_checksum(o: &mut [u8], at: usize) {
    o[at + 10] = 0;
    o[at + 11] = 0;
    let c = !fold(sum16(&o[at..at + 20]));
    o[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
}

/// The decap program's rules, configured with the GUE port (0 = no GUE)
/// and the host's second-hop state.
#[derive(Clone, Debug, Default)]
pub struct DecapModel {
    /// GUE destination port.
    pub gue_port: u16,
    /// Second-hop configuration, sockets and routes.
    pub second_hop: SecondHop,
}

impl DecapModel {
    /// The outcome of `frame`.
    pub fn step(&self, f: &[u8]) -> DecapOutcome {
        let mut out = DecapOutcome {
            verdict: XDP_PASS,
            frame: f.to_vec(),
            stats: DecapStats::default(),
            rule: None,
        };
        let (outer_len, inner_ethertype, gue) = match self.outer(f, &mut out.stats) {
            None => return out,
            Some(Outer::Plain(len, et, gue)) => (len, et, gue),
            Some(Outer::Hop(Some(r))) => {
                if !self.second_hop_rules(f, &r, &mut out) {
                    return out;
                }
                let et = if r.inner_v6 { 0x86dd } else { 0x0800 };
                (r.l3_len + r.hop_len, et, r.gue)
            }
            Some(Outer::Hop(None)) => {
                out.stats.second_hop_invalid += 1;
                out.verdict = XDP_DROP;
                out.rule = Some(HopRule::Malformed);
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

    /// Rules 4-8 for a well-formed record: `true` when the frame is to be
    /// stripped and delivered, else `out` holds the verdict and frame.
    fn second_hop_rules(&self, f: &[u8], r: &Record, out: &mut DecapOutcome) -> bool {
        let flow = &r.flow;
        let hop = &self.second_hop;
        // Rule 4: the VIP is not configured for second hop here.
        let Some(peers) = hop.peers(flow.dst) else {
            out.stats.second_hop_invalid += 1;
            out.rule = Some(HopRule::Unconfigured);
            return true;
        };
        let here = flow.syn || hop.has_socket(flow);
        // Rule 5: never a second second hop.
        if r.hopped {
            if here {
                out.stats.second_hop_delivered += 1;
                out.rule = Some(HopRule::HoppedDelivered);
            } else {
                out.stats.second_hop_loop_refused += 1;
                out.rule = Some(HopRule::LoopRefused);
            }
            return true;
        }
        // Rule 6: a previous owner that is not a peer of the VIP.
        let prev = match r.prev {
            Some(p) if peers.contains(&p) => p,
            _ => {
                out.stats.second_hop_invalid += 1;
                out.verdict = XDP_DROP;
                out.rule = Some(HopRule::UnknownPeer);
                return false;
            }
        };
        // Rule 7: delivered here.
        if here {
            out.stats.second_hop_delivered += 1;
            out.rule = Some(if flow.syn {
                HopRule::DeliveredSyn
            } else {
                HopRule::DeliveredSocket
            });
            return true;
        }
        // Rule 8: forwarded to the previous owner.
        let Some(to) = hop.route(prev) else {
            out.stats.second_hop_no_route += 1;
            out.verdict = XDP_DROP;
            out.rule = Some(HopRule::NoRoute);
            return false;
        };
        let mut o = if r.gue {
            forwarded_gue(f, r, prev)
        } else {
            forwarded_ipip(f, r)
        };
        out.stats.second_hop_forwarded += 1;
        match to {
            RouteTo::Next {
                dst_mac,
                src_mac,
                verdict,
            } => {
                o[..6].copy_from_slice(&dst_mac);
                o[6..12].copy_from_slice(&src_mac);
                out.verdict = verdict;
                out.rule = Some(HopRule::Forwarded);
            }
            RouteTo::NoNeighbour => {
                out.verdict = XDP_PASS;
                out.rule = Some(HopRule::ForwardedNoNeighbour);
            }
        }
        out.frame = o;
        false
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
                    return Some(
                        match hop(Some((0, proto == 41, None, true)), f, l3_len, false) {
                            Outer::Hop(None) => Outer::Plain(l3_len, inner, false),
                            record => record,
                        },
                    );
                }
                if let Some(form) = ipip_form(f, 14 + l3_len, proto, ethertype == 0x86dd) {
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

/// The GUE form after its second hop (MACs not yet set): outer source =
/// the old outer destination, destination = `prev`, TTL 64, HOPPED set,
/// IPv4 checksum recomputed, a non-zero UDP checksum updated (RFC 1624).
fn forwarded_gue(f: &[u8], r: &Record, prev: IpAddr) -> Vec<u8> {
    let mut o = f.to_vec();
    let v6 = r.l3_len == 40;
    let (src_at, alen) = if v6 { (14 + 8, 16) } else { (14 + 12, 4) };
    let dst_at = src_at + alen;
    let udp = 14 + r.l3_len;
    let flags_at = udp + 8 + 4;
    let old_src = o[src_at..src_at + alen].to_vec();
    let old_flags = be16(&o, flags_at);
    let new_flags = old_flags | 0x0001;
    let prev_bytes: Vec<u8> = match prev {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    o.copy_within(dst_at..dst_at + alen, src_at);
    o[dst_at..dst_at + alen].copy_from_slice(&prev_bytes);
    o[flags_at..flags_at + 2].copy_from_slice(&new_flags.to_be_bytes());
    let check = be16(&o, udp + 6);
    if check != 0 {
        // HC' = ~(~HC + ~m + m') over the changed words: the old source
        // is gone, the previous owner is new, the flags word changed (the
        // old destination only moved).
        let removed: u32 = old_src
            .chunks(2)
            .map(|w| u32::from(!be16(w, 0)))
            .sum::<u32>()
            + u32::from(!old_flags);
        let added = sum16(&prev_bytes) + u32::from(new_flags);
        let c = !fold(u32::from(!check) + removed + added);
        let c = if c == 0 { 0xffff } else { c };
        o[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
    }
    if v6 {
        o[14 + 7] = HOP_TTL;
    } else {
        o[14 + 8] = HOP_TTL;
        ipv4_checksum(&mut o, 14);
    }
    o
}

/// The IP-in-IP form after its second hop (MACs not yet set): the outer
/// header removed, the middle header now outer, marked HOPPED, TTL 64.
fn forwarded_ipip(f: &[u8], r: &Record) -> Vec<u8> {
    let middle = 14 + r.l3_len;
    let v6 = r.hop_len == 40;
    let mut o = f[..12].to_vec();
    o.extend_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    o.extend_from_slice(&f[middle..]);
    if v6 {
        o[15] = (o[15] & 0xf0) | 0x0e;
        o[16] = 0x55;
        o[17] = 0xe1;
        o[14 + 7] = HOP_TTL;
    } else {
        o[14 + 4..14 + 6].copy_from_slice(&0xe55fu16.to_be_bytes());
        o[14 + 8] = HOP_TTL;
        ipv4_checksum(&mut o, 14);
    }
    o
}
