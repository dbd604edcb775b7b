//! Second hop, backend side: a packet carrying its flow's previous owner is
//! delivered here when this host has a socket for the flow (or it is a SYN),
//! else forwarded once to the previous owner, marked as having taken its
//! second hop. Bad input is counted and never forwarded. The rules, in
//! order, are in FORWARDER.md ("Second hop").
use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_tuple, xdp_action, BPF_F_CURRENT_NETNS, BPF_TCP_LISTEN},
    helpers::{
        bpf_xdp_adjust_head,
        generated::{bpf_sk_lookup_udp, bpf_sk_release, bpf_skc_lookup_tcp},
    },
    programs::XdpContext,
};
use xdp_fwd_common::{
    family,
    second_hop::{self as wire, decap_stat as stat, HopKey},
};

use crate::{
    count,
    packet::*,
    route::{self, Route},
    strip, SECOND_HOP,
};

/// A second-hop record as parsed from the frame.
pub struct Form {
    /// GUE variant 0 (else the IP-in-IP form's middle header).
    gue: bool,
    /// The record is EdgeLB's but malformed or truncated (dropped).
    valid: bool,
    /// Bytes between the outer IP header and the original packet.
    hop_len: usize,
    /// The previous owner (after the second hop: this host).
    prev: [u32; 4],
    /// Family of the previous owner (and of the headers of both hops).
    v6: bool,
    /// The packet already took its second hop.
    hopped: bool,
    /// The original packet is IPv6.
    inner_v6: bool,
    /// IP-in-IP after its second hop: the HOPPED marker is in the outer
    /// header and no middle header follows.
    outer_marked: bool,
}

impl Form {
    #[inline(always)]
    fn malformed() -> Self {
        Form {
            gue: false,
            valid: false,
            hop_len: 0,
            prev: [0; 4],
            v6: false,
            hopped: false,
            inner_v6: false,
            outer_marked: false,
        }
    }
}

/// The IP-in-IP form: a middle header of family `proto` (4 or 41) marked
/// as a candidate and itself carrying IP, or (`outer_hopped`) an outer
/// header marked HOPPED. `None`: plain IP-in-IP (a client's own packet
/// never carries IP-in-IP: VIPs are TCP/UDP).
#[inline(always)]
pub fn ipip_form(
    ctx: &XdpContext,
    l3_len: usize,
    proto: u8,
    outer_hopped: bool,
    outer_dst: &[u32; 4],
    outer_v6: bool,
) -> Option<Form> {
    let at = ETH_HLEN + l3_len;
    if outer_hopped {
        return Some(Form {
            gue: false,
            valid: true,
            hop_len: 0,
            prev: [0; 4],
            v6: false,
            hopped: true,
            inner_v6: proto == IPPROTO_IPV6,
            outer_marked: true,
        });
    }
    if proto == IPPROTO_IPIP {
        let ip = ptr_at(ctx, at, IPV4_HLEN)?;
        // SAFETY: 20 bytes checked.
        let (ver_ihl, id, frag, next) = unsafe { (*ip, be16(ip, 4), be16(ip, 6), *ip.add(9)) };
        if !matches!(id, wire::IPIP_ID_CANDIDATE | wire::IPIP_ID_HOPPED) || !carries_ip(next) {
            return None;
        }
        // HOPPED belongs in the outer header (the second hop removes the
        // first outer header): in a middle header it is malformed.
        if ver_ihl != 0x45 || frag & 0x3fff != 0 || id == wire::IPIP_ID_HOPPED || outer_v6 {
            return Some(Form::malformed());
        }
        // The middle header is from this host (the outer destination): a
        // second hop sends it as it is, so another source would be spoofed.
        // SAFETY: 20 bytes checked.
        if unsafe { word(ip, 12) } != outer_dst[0] {
            return Some(Form::malformed());
        }
        // SAFETY: as above.
        let prev = unsafe { [word(ip, 16), 0, 0, 0] };
        return Some(Form {
            gue: false,
            valid: true,
            hop_len: IPV4_HLEN,
            prev,
            v6: false,
            hopped: false,
            inner_v6: next == IPPROTO_IPV6,
            outer_marked: false,
        });
    }
    let ip = ptr_at(ctx, at, IPV6_HLEN)?;
    // SAFETY: 40 bytes checked.
    let (b0, b1, b2, b3, next) = unsafe { (*ip, *ip.add(1), *ip.add(2), *ip.add(3), *ip.add(6)) };
    let label = ((b1 as u32 & 0x0f) << 16) | (b2 as u32) << 8 | b3 as u32;
    if !matches!(label, wire::IPIP_LABEL_CANDIDATE | wire::IPIP_LABEL_HOPPED) || !carries_ip(next) {
        return None;
    }
    if b0 >> 4 != 6 || label == wire::IPIP_LABEL_HOPPED || !outer_v6 {
        return Some(Form::malformed());
    }
    // As for IPv4: the middle source must be the outer destination.
    // SAFETY: 40 bytes checked.
    let src = unsafe { [word(ip, 8), word(ip, 12), word(ip, 16), word(ip, 20)] };
    if src != *outer_dst {
        return Some(Form::malformed());
    }
    // SAFETY: as above.
    let prev = unsafe { [word(ip, 24), word(ip, 28), word(ip, 32), word(ip, 36)] };
    Some(Form {
        gue: false,
        valid: true,
        hop_len: IPV6_HLEN,
        prev,
        v6: true,
        hopped: false,
        inner_v6: next == IPPROTO_IPV6,
        outer_marked: false,
    })
}

#[inline(always)]
fn carries_ip(proto: u8) -> bool {
    proto == IPPROTO_IPIP || proto == IPPROTO_IPV6
}

/// The GUE form: variant 0 with EdgeLB's private data. `None`: not ours
/// (no magic, or too short to tell): passed untouched, as before.
#[inline(always)]
pub fn gue_form(ctx: &XdpContext, l3_len: usize, outer_v6: bool) -> Option<Form> {
    let at = ETH_HLEN + l3_len + UDP_HLEN;
    let g = ptr_at(ctx, at, wire::GUE_FIXED_LEN)?;
    // SAFETY: 8 bytes checked.
    let (b0, proto, flags, magic, hop_flags, fam, zero) = unsafe {
        (
            *g,
            *g.add(1),
            be16(g, 2),
            *g.add(4),
            *g.add(5),
            *g.add(6),
            *g.add(7),
        )
    };
    if magic != wire::GUE_MAGIC {
        return None;
    }
    let hlen = b0 & 0x1f;
    let v6 = fam == family::V6;
    let well_formed = b0 & 0xe0 == 0
        && flags == 0
        && carries_ip(proto)
        && (fam == family::V4 || v6)
        && hlen == if v6 { wire::GUE_HLEN_V6 } else { wire::GUE_HLEN_V4 }
        && hop_flags & !wire::GUE_FLAG_HOPPED == 0
        && zero == 0
        // Rewritten in place: the outer header has no options, and its
        // family is the previous owner's.
        && (if outer_v6 { l3_len == IPV6_HLEN } else { l3_len == IPV4_HLEN })
        && outer_v6 == v6;
    if !well_formed {
        return Some(Form::malformed());
    }
    let prev = if v6 {
        let Some(a) = ptr_at(ctx, at + wire::GUE_FIXED_LEN, 16) else {
            return Some(Form::malformed());
        };
        // SAFETY: 16 bytes checked.
        unsafe { [word(a, 0), word(a, 4), word(a, 8), word(a, 12)] }
    } else {
        let Some(a) = ptr_at(ctx, at + wire::GUE_FIXED_LEN, 4) else {
            return Some(Form::malformed());
        };
        // SAFETY: 4 bytes checked.
        unsafe { [word(a, 0), 0, 0, 0] }
    };
    Some(Form {
        gue: true,
        valid: true,
        hop_len: UDP_HLEN + 4 + hlen as usize * 4,
        prev,
        v6,
        hopped: hop_flags & wire::GUE_FLAG_HOPPED != 0,
        inner_v6: proto == IPPROTO_IPV6,
        outer_marked: false,
    })
}

/// The original packet's flow, as a socket lookup wants it.
struct Flow {
    /// `struct bpf_sock_tuple`: addresses and raw ports (IPv4: 12 bytes,
    /// IPv6: 36).
    tuple: [u32; 9],
    v6: bool,
    tcp: bool,
    /// A TCP SYN without ACK (a new connection).
    syn: bool,
    /// Destination (the VIP) address words.
    vip: [u32; 4],
}

/// Parses the original packet at `at`: IPv4 (no fragment) or IPv6 without
/// extension headers, carrying a complete TCP or UDP header. `None`:
/// anything else (a record around it is malformed: the forwarder only
/// marks TCP and UDP).
#[inline(always)]
fn inner_flow(ctx: &XdpContext, at: usize, v6: bool) -> Option<Flow> {
    let mut t = [0u32; 9];
    let mut vip = [0u32; 4];
    let (proto, l4) = if v6 {
        let ip = ptr_at(ctx, at, IPV6_HLEN)?;
        // SAFETY: 40 bytes checked.
        unsafe {
            if *ip >> 4 != 6 {
                return None;
            }
            let mut i = 0;
            while i < 4 {
                t[i] = word(ip, 8 + i * 4);
                t[4 + i] = word(ip, 24 + i * 4);
                vip[i] = t[4 + i];
                i += 1;
            }
            (*ip.add(6), at + IPV6_HLEN)
        }
    } else {
        let ip = ptr_at(ctx, at, IPV4_HLEN)?;
        // SAFETY: 20 bytes checked.
        unsafe {
            let ver_ihl = *ip;
            let ihl = (ver_ihl & 0x0f) as usize * 4;
            if ver_ihl >> 4 != 4 || ihl < IPV4_HLEN || be16(ip, 6) & 0x3fff != 0 {
                return None;
            }
            t[0] = word(ip, 12);
            t[1] = word(ip, 16);
            vip[0] = t[1];
            (*ip.add(9), at + ihl)
        }
    };
    let tcp = proto == IPPROTO_TCP;
    if !tcp && proto != IPPROTO_UDP {
        return None;
    }
    let l4p = ptr_at(ctx, l4, if tcp { 20 } else { UDP_HLEN })?;
    // SAFETY: the transport header checked; ports are kept raw.
    let (ports, flags) = unsafe { (word(l4p, 0), if tcp { *l4p.add(13) } else { 0 }) };
    t[if v6 { 8 } else { 2 }] = ports;
    Some(Flow {
        tuple: t,
        v6,
        tcp,
        syn: tcp && flags & 0x12 == 0x02,
        vip,
    })
}

/// Whether this host has a socket for `flow`: TCP, any socket that is not
/// a listener (established, a handshake in progress, or TIME_WAIT: the
/// connection was this host's); UDP, any socket at all.
#[inline(always)]
fn has_socket(ctx: &XdpContext, flow: &mut Flow) -> bool {
    let size = if flow.v6 { 36 } else { 12 };
    let tuple = flow.tuple.as_mut_ptr() as *mut bpf_sock_tuple;
    if flow.tcp {
        tcp_socket(ctx, tuple, size)
    } else {
        udp_socket(ctx, tuple, size)
    }
}

/// `bpf_skc_lookup_tcp`: a non-listening socket for the tuple. Its own
/// function (not inlined): the verifier refuses one load instruction used
/// on both a sock_common and a sock pointer, which LLVM would otherwise
/// share with [`udp_socket`].
#[inline(never)]
fn tcp_socket(ctx: &XdpContext, tuple: *mut bpf_sock_tuple, size: u32) -> bool {
    // SAFETY: the tuple is `size` valid bytes on the caller's stack; the
    // returned socket is released before returning.
    unsafe {
        let sk = bpf_skc_lookup_tcp(
            ctx.ctx as *mut _,
            tuple,
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        );
        if sk.is_null() {
            return false;
        }
        let state = core::ptr::read_volatile(&(*sk).state);
        bpf_sk_release(sk as *mut _);
        state != BPF_TCP_LISTEN
    }
}

/// `bpf_sk_lookup_udp`: any socket for the tuple.
#[inline(never)]
fn udp_socket(ctx: &XdpContext, tuple: *mut bpf_sock_tuple, size: u32) -> bool {
    // SAFETY: as in `tcp_socket`.
    unsafe {
        let sk: *mut bpf_sock = bpf_sk_lookup_udp(
            ctx.ctx as *mut _,
            tuple,
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        );
        if sk.is_null() {
            return false;
        }
        bpf_sk_release(sk as *mut _);
        true
    }
}

/// Whether `key` is in the SECOND_HOP map.
#[inline(always)]
fn configured(key: &HopKey) -> bool {
    // SAFETY: only presence is tested.
    unsafe { SECOND_HOP.get(key) }.is_some()
}

/// Decides a frame carrying a second-hop record (outer IP header of
/// `l3_len` bytes).
#[inline(always)]
pub fn handle(ctx: &XdpContext, form: Form, l3_len: usize) -> u32 {
    if !form.valid {
        return invalid_drop();
    }
    let strip_len = l3_len + form.hop_len;
    let inner_ethertype = if form.inner_v6 { ETH_P_IPV6 } else { ETH_P_IP };
    let decap_counter = if form.gue { stat::GUE } else { stat::IPIP };
    let Some(mut flow) = inner_flow(ctx, ETH_HLEN + strip_len, form.inner_v6) else {
        // An outer marker alone is weak evidence (an IPv6 outer flow label
        // may equal it by chance): no TCP/UDP flow, plain IP-in-IP.
        if form.outer_marked {
            return strip(ctx, strip_len, inner_ethertype, decap_counter);
        }
        return invalid_drop();
    };
    let vip_family = if flow.v6 { family::V6 } else { family::V4 };
    let mut key = HopKey {
        vip: flow.vip,
        peer: [0; 4],
        vip_family,
        peer_family: 0,
        _pad: [0; 2],
    };
    // Not configured here: what an old decap does in effect.
    if !configured(&key) {
        count(stat::SECOND_HOP_INVALID);
        return strip(ctx, strip_len, inner_ethertype, decap_counter);
    }
    // Never a second second hop.
    if form.hopped {
        if flow.syn || has_socket(ctx, &mut flow) {
            count(stat::SECOND_HOP_DELIVERED);
        } else {
            count(stat::SECOND_HOP_LOOP_REFUSED);
        }
        return strip(ctx, strip_len, inner_ethertype, decap_counter);
    }
    key.peer = form.prev;
    key.peer_family = if form.v6 { family::V6 } else { family::V4 };
    if !configured(&key) {
        return invalid_drop();
    }
    if flow.syn || has_socket(ctx, &mut flow) {
        count(stat::SECOND_HOP_DELIVERED);
        return strip(ctx, strip_len, inner_ethertype, decap_counter);
    }
    if form.gue {
        forward_gue(ctx, &form, l3_len)
    } else {
        forward_ipip(ctx, &form, l3_len)
    }
}

#[inline(always)]
fn invalid_drop() -> u32 {
    count(stat::SECOND_HOP_INVALID);
    xdp_action::XDP_DROP
}

/// GUE form: rewritten in place: outer source = this host (the old outer
/// destination), destination = the previous owner, TTL reset, the HOPPED
/// flag set, checksums updated.
#[inline(always)]
fn forward_gue(ctx: &XdpContext, form: &Form, l3_len: usize) -> u32 {
    let v6 = form.v6;
    let ip_len = if v6 { IPV6_HLEN } else { IPV4_HLEN };
    // Outer IP, UDP and the GUE fixed part.
    let Some(p) = ptr_at(ctx, ETH_HLEN, ip_len + UDP_HLEN + wire::GUE_FIXED_LEN) else {
        return invalid_drop();
    };
    if l3_len != ip_len {
        return invalid_drop();
    }
    let (src_at, words) = if v6 { (8, 4) } else { (12, 1) };
    let dst_at = src_at + words * 4;
    let mut old_src = [0u32; 4];
    let mut here = [0u32; 4];
    // SAFETY: the outer IP header is within the checked range.
    unsafe {
        let mut i = 0;
        while i < words {
            old_src[i] = word(p, src_at + i * 4);
            here[i] = word(p, dst_at + i * 4);
            i += 1;
        }
    }
    let next = route::lookup(ctx, v6, IPPROTO_UDP, &here, &form.prev);
    if let Route::Unreachable = next {
        count(stat::SECOND_HOP_NO_ROUTE);
        return xdp_action::XDP_DROP;
    }
    let udp = ip_len;
    let gue = ip_len + UDP_HLEN;
    // SAFETY: offsets within the checked range (v6: 40 + 16; v4: 20 + 16).
    unsafe {
        let check = be16(p, udp + 6);
        let old_flags = be16(p, gue + 4);
        let new_flags = old_flags | wire::GUE_FLAG_HOPPED as u16;
        let mut i = 0;
        while i < words {
            put_word(p, src_at + i * 4, here[i]);
            put_word(p, dst_at + i * 4, form.prev[i]);
            i += 1;
        }
        *p.add(gue + 5) = new_flags as u8;
        // A zero UDP checksum (none: IPv4, or an IPv6 tunnel in RFC 6935
        // zero-checksum mode, as the forwarder sends for an inner IPv4 UDP
        // datagram without checksum) stays zero; else RFC 1624 updates.
        if check != 0 {
            let acc = (!check) as u32
                + (!fold(addr_sum(&old_src, words))) as u32
                + addr_sum(&form.prev, words)
                + (!old_flags) as u32
                + new_flags as u32;
            let c = !fold(acc);
            let c = if c == 0 { 0xffff } else { c };
            *p.add(udp + 6) = (c >> 8) as u8;
            *p.add(udp + 7) = c as u8;
        }
        if v6 {
            *p.add(7) = wire::TTL;
        } else {
            *p.add(8) = wire::TTL;
            ipv4_checksum(p);
        }
    }
    transmit(ctx, next, None)
}

/// IP-in-IP form: the outer header goes; the middle header (from this host
/// to the previous owner) becomes the outer one, marked HOPPED, TTL reset.
#[inline(always)]
fn forward_ipip(ctx: &XdpContext, form: &Form, l3_len: usize) -> u32 {
    let v6 = form.v6;
    let at = ETH_HLEN + l3_len;
    let inner_proto = if form.inner_v6 {
        IPPROTO_IPV6
    } else {
        IPPROTO_IPIP
    };
    let mut src = [0u32; 4];
    if v6 {
        let Some(m) = ptr_at(ctx, at, IPV6_HLEN) else {
            return invalid_drop();
        };
        // SAFETY: 40 bytes checked.
        unsafe { src = [word(m, 8), word(m, 12), word(m, 16), word(m, 20)] };
    } else {
        let Some(m) = ptr_at(ctx, at, IPV4_HLEN) else {
            return invalid_drop();
        };
        // SAFETY: 20 bytes checked.
        unsafe { src[0] = word(m, 12) };
    }
    let next = route::lookup(ctx, v6, inner_proto, &src, &form.prev);
    if let Route::Unreachable = next {
        count(stat::SECOND_HOP_NO_ROUTE);
        return xdp_action::XDP_DROP;
    }
    if v6 {
        let Some(m) = ptr_at(ctx, at, IPV6_HLEN) else {
            return invalid_drop();
        };
        let label = wire::IPIP_LABEL_HOPPED;
        // SAFETY: 40 bytes checked.
        unsafe {
            *m.add(1) = (*m.add(1) & 0xf0) | (label >> 16) as u8;
            *m.add(2) = (label >> 8) as u8;
            *m.add(3) = label as u8;
            *m.add(7) = wire::TTL;
        }
    } else {
        let Some(m) = ptr_at(ctx, at, IPV4_HLEN) else {
            return invalid_drop();
        };
        // SAFETY: 20 bytes checked.
        unsafe {
            *m.add(4) = (wire::IPIP_ID_HOPPED >> 8) as u8;
            *m.add(5) = wire::IPIP_ID_HOPPED as u8;
            *m.add(8) = wire::TTL;
            ipv4_checksum(m);
        }
    }
    // Drop the outer header, keeping the Ethernet header in front.
    let ethertype = if v6 { ETH_P_IPV6 } else { ETH_P_IP };
    transmit(ctx, next, Some((l3_len, ethertype)))
}

/// Recomputes the checksum of the 20-byte IPv4 header at `ip`.
///
/// # Safety
/// 20 bytes at `ip` must be within a range checked by `ptr_at`.
#[inline(always)]
unsafe fn ipv4_checksum(ip: *mut u8) {
    unsafe {
        *ip.add(10) = 0;
        *ip.add(11) = 0;
        let c = !fold(sum16(ip, IPV4_HLEN));
        *ip.add(10) = (c >> 8) as u8;
        *ip.add(11) = c as u8;
    }
}

/// Writes the next hop's MACs (and, for the IP-in-IP form, removes the
/// outer `strip.0` bytes with the new EtherType `strip.1`), counts the
/// forward and sends. Without a neighbour the kernel forwards the frame.
#[inline(always)]
fn transmit(ctx: &XdpContext, next: Route, strip: Option<(usize, u16)>) -> u32 {
    let Some(eth) = ptr_at(ctx, 0, ETH_HLEN) else {
        return xdp_action::XDP_DROP;
    };
    let mut macs = [0u8; 12];
    // SAFETY: 14 bytes checked.
    unsafe { core::ptr::copy_nonoverlapping(eth, macs.as_mut_ptr(), 12) };
    let mut ethertype = None;
    if let Some((len, et)) = strip {
        // SAFETY: helper call on our own context.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, len as i32) } != 0 {
            return invalid_drop();
        }
        ethertype = Some(et);
    }
    if let Route::Next(m, _) = &next {
        macs = *m;
    }
    let Some(eth) = ptr_at(ctx, 0, ETH_HLEN) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: 14 bytes checked after any head move.
    unsafe {
        core::ptr::copy_nonoverlapping(macs.as_ptr(), eth, 12);
        if let Some(et) = ethertype {
            let b = et.to_be_bytes();
            *eth.add(12) = b[0];
            *eth.add(13) = b[1];
        }
    }
    count(stat::SECOND_HOP_FORWARDED);
    match next {
        Route::Next(_, ifindex) => route::send(ctx, ifindex),
        _ => xdp_action::XDP_PASS,
    }
}
