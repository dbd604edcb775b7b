//! The frames the model emits: the encapsulation towards a backend
//! (FORWARDER.md, step 5) and the in-place ICMP echo reply. Checksums are
//! one's-complement sums of big-endian 16-bit words.
use std::net::IpAddr;

use super::parse::Packet;
use crate::ForwarderSettings;

/// Bytes the encapsulation adds towards `backend`, with a previous owner
/// (`second_hop`: GUE variant 0 header and private data, or a middle IP
/// header) or without.
pub(crate) fn overhead(backend: IpAddr, gue: bool, second_hop: bool) -> usize {
    let ip = if backend.is_ipv4() { 20 } else { 40 };
    let hop = match (second_hop, gue) {
        (false, _) => 0,
        (true, true) => 8 + if backend.is_ipv4() { 4 } else { 16 },
        (true, false) => ip,
    };
    ip + if gue { 8 } else { 0 } + hop
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn sum_words(acc: u32, b: &[u8]) -> u32 {
    b.chunks(2).fold(acc, |a, c| {
        a + u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
    })
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Outer source: the configured prefix, host bits from the hash's bytes
/// (little-endian order) over the last 32 bits of the address.
fn outer_source(s: &ForwarderSettings, backend: IpAddr, hash: u32) -> Vec<u8> {
    let (mut a, len, at) = match backend {
        IpAddr::V4(_) => (s.source_v4.0.octets().to_vec(), s.source_v4.1, 0),
        IpAddr::V6(_) => (s.source_v6.0.octets().to_vec(), s.source_v6.1 - 96, 12),
    };
    let host: u32 = if len >= 32 { 0 } else { u32::MAX >> len };
    let m = host.to_be_bytes();
    let h = hash.to_le_bytes();
    for i in 0..4 {
        a[at + i] = (a[at + i] & !m[i]) | (h[i] & m[i]);
    }
    a
}

/// The one's-complement sum of a valid inner packet, known from its
/// headers (its transport checksum cancels the payload); `None` for an
/// IPv4 UDP datagram without checksum.
fn inner_sum(f: &[u8], p: &Packet) -> Option<u32> {
    let l4_len = (p.ip_len - (p.l4_off - p.l3)) as u32;
    let src = addr_bytes(p.src);
    let dst = addr_bytes(p.dst);
    let pseudo = sum_words(sum_words(0, &src), &dst) + u32::from(p.proto) + l4_len;
    let segment = u32::from(!fold(pseudo));
    if p.src.is_ipv4() {
        // A valid IPv4 header sums to zero; so does an ICMP message.
        match p.proto {
            1 => Some(0),
            17 if f[p.l4_off + 6] == 0 && f[p.l4_off + 7] == 0 => None,
            _ => Some(segment),
        }
    } else {
        // The IPv6 header has no checksum: its words count.
        Some(sum_words(0, &f[p.l3..p.l3 + 40]) + segment)
    }
}

/// `frame` encapsulated towards `backend` with Ethernet addresses `macs`
/// (destination, source), carrying `prev` (second hop) if given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encapsulate(
    f: &[u8],
    p: &Packet,
    s: &ForwarderSettings,
    backend: IpAddr,
    hash: u32,
    gue: bool,
    prev: Option<IpAddr>,
    macs: [u8; 12],
) -> Vec<u8> {
    let inner_v4 = p.src.is_ipv4();
    let l3 = p.l3;
    let tos = if inner_v4 {
        f[l3 + 1]
    } else {
        (f[l3] << 4) | (f[l3 + 1] >> 4)
    };
    let src = outer_source(s, backend, hash);
    let dst = addr_bytes(backend);
    let inner_proto = if inner_v4 { 4 } else { 41 };
    let backend_proto = if backend.is_ipv4() { 4 } else { 41 };
    let proto = match (gue, prev) {
        (true, _) => 17,
        // The middle header, of the backend's family, follows.
        (false, Some(_)) => backend_proto,
        (false, None) => inner_proto,
    };
    // DF copied from an IPv4 inner header, set for IPv6.
    let df = !inner_v4 || f[l3 + 6] & 0x40 != 0;
    // The GUE variant 0 header with the previous owner, or the middle IP
    // header from the backend to the previous owner.
    let hop: Vec<u8> = match prev {
        None => Vec::new(),
        Some(prev) if gue => {
            let v6 = prev.is_ipv6();
            let mut g = vec![if v6 { 5 } else { 2 }, inner_proto, 0, 0, 0xe5, 0];
            g.extend_from_slice(&[if v6 { 6 } else { 4 }, 0]);
            g.extend_from_slice(&addr_bytes(prev));
            g
        }
        Some(prev) => ip_header(
            backend,
            prev,
            inner_proto,
            tos,
            p.ip_len,
            df,
            0xe55e,
            0xe55e0,
        ),
    };
    let inner_len = p.ip_len + hop.len();
    let mut out = macs.to_vec();
    if l3 == 18 {
        out.extend_from_slice(&[0x81, 0x00, f[14], f[15]]);
    }
    out.extend_from_slice(if backend.is_ipv4() {
        &[0x08, 0x00]
    } else {
        &[0x86, 0xdd]
    });
    let outer_src = match backend {
        IpAddr::V4(_) => IpAddr::from(<[u8; 4]>::try_from(&src[..]).expect("4 bytes")),
        IpAddr::V6(_) => IpAddr::from(<[u8; 16]>::try_from(&src[..]).expect("16 bytes")),
    };
    let payload_len = inner_len + if gue { 8 } else { 0 };
    out.extend_from_slice(&ip_header(
        outer_src,
        backend,
        proto,
        tos,
        payload_len,
        df,
        0,
        hash & 0xfffff,
    ));
    if gue {
        let sport = ((hash & 0x3fff) | 0xc000) as u16;
        let udp_len = (inner_len + 8) as u16;
        let check = match inner_sum(f, p) {
            None => 0,
            Some(inner) => {
                let sum = sum_words(sum_words(sum_words(inner, &hop), &src), &dst)
                    + 17
                    + 2 * u32::from(udp_len)
                    + u32::from(sport)
                    + u32::from(s.gue_port);
                match !fold(sum) {
                    0 => 0xffff,
                    c => c,
                }
            }
        };
        for w in [sport, s.gue_port, udp_len, check] {
            out.extend_from_slice(&w.to_be_bytes());
        }
    }
    out.extend_from_slice(&hop);
    out.extend_from_slice(&f[l3..]);
    out
}

/// An IP header from `src` to `dst` carrying `payload` bytes of `proto`:
/// IPv4 with `id`, DF as `df`, TTL 64 and its checksum; IPv6 with `label`,
/// hop limit 64. ToS / traffic class `tos`.
#[allow(clippy::too_many_arguments)]
fn ip_header(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    tos: u8,
    payload: usize,
    df: bool,
    id: u16,
    label: u32,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(40);
    if dst.is_ipv4() {
        h.extend_from_slice(&[0x45, tos]);
        h.extend_from_slice(&((payload + 20) as u16).to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&[if df { 0x40 } else { 0 }, 0, 64, proto, 0, 0]);
        h.extend_from_slice(&addr_bytes(src));
        h.extend_from_slice(&addr_bytes(dst));
        let c = !fold(sum_words(0, &h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        h.extend_from_slice(&[
            0x60 | (tos >> 4),
            ((tos & 0x0f) << 4) | (label >> 16) as u8,
            (label >> 8) as u8,
            label as u8,
        ]);
        h.extend_from_slice(&(payload as u16).to_be_bytes());
        h.extend_from_slice(&[proto, 64]);
        h.extend_from_slice(&addr_bytes(src));
        h.extend_from_slice(&addr_bytes(dst));
    }
    h
}

/// RFC 1624: the checksum after a covered 16-bit word went from `old` to `new`.
fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The echo reply written in place: MACs and addresses swapped, TTL / hop
/// limit 64, type echo reply, checksums updated incrementally.
pub(crate) fn echo_reply(f: &[u8], p: &Packet) -> Vec<u8> {
    let mut o = f.to_vec();
    o[..6].copy_from_slice(&f[6..12]);
    o[6..12].copy_from_slice(&f[..6]);
    let (l3, l4) = (p.l3, p.l4_off);
    if p.src.is_ipv4() {
        o[l3 + 12..l3 + 16].copy_from_slice(&f[l3 + 16..l3 + 20]);
        o[l3 + 16..l3 + 20].copy_from_slice(&f[l3 + 12..l3 + 16]);
        let old = be16(f, l3 + 8);
        let new = (64 << 8) | (old & 0xff);
        put16(&mut o, l3 + 8, new);
        put16(&mut o, l3 + 10, replace16(be16(f, l3 + 10), old, new));
        let old = be16(f, l4);
        let new = old & 0xff; // type 0: echo reply
        put16(&mut o, l4, new);
        put16(&mut o, l4 + 2, replace16(be16(f, l4 + 2), old, new));
    } else {
        o[l3 + 7] = 64;
        o[l3 + 8..l3 + 24].copy_from_slice(&f[l3 + 24..l3 + 40]);
        o[l3 + 24..l3 + 40].copy_from_slice(&f[l3 + 8..l3 + 24]);
        let old = be16(f, l4);
        let new = (129 << 8) | (old & 0xff);
        put16(&mut o, l4, new);
        put16(&mut o, l4 + 2, replace16(be16(f, l4 + 2), old, new));
    }
    o
}
