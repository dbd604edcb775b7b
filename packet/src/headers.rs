//! Single headers, for building the frames a tunnel or a forwarder is
//! expected to produce (outer headers around an existing packet).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{checksum, frame::ETH_P_8021Q};

/// An Ethernet header, with an 802.1Q tag if `vlan` is set.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(18);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&src);
    if let Some(id) = vlan {
        h.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
        h.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    h.extend_from_slice(&ethertype.to_be_bytes());
    h
}

/// Fields of an IPv4 header without options.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Header {
    /// Source.
    pub src: Ipv4Addr,
    /// Destination.
    pub dst: Ipv4Addr,
    /// Protocol of the payload.
    pub proto: u8,
    /// Type of service.
    pub tos: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub id: u16,
    /// Don't-fragment bit.
    pub dont_fragment: bool,
}

impl Ipv4Header {
    /// The 20 header bytes for a payload of `payload_len`, checksum filled in.
    pub fn bytes(&self, payload_len: usize) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        if self.dont_fragment {
            h[6] = 0x40;
        }
        h[8] = self.ttl;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::internet(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }
}

/// Fields of an IPv6 header without extension headers.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Header {
    /// Source.
    pub src: Ipv6Addr,
    /// Destination.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Header {
    /// The 40 header bytes for a payload of `payload_len`.
    pub fn bytes(&self, payload_len: usize) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        let w0: u32 =
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xfffff);
        h[0..4].copy_from_slice(&w0.to_be_bytes());
        h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        h[6] = self.next;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        h
    }
}

/// A UDP datagram (header + `payload`) from `src` to `dst` with its full
/// checksum computed over the payload.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&(len as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            checksum::pseudo_v4(s.octets(), t.octets(), 17, len as u16)
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            checksum::pseudo_v6(s.octets(), t.octets(), 17, len as u32)
        }
        _ => panic!("udp: source and destination families differ"),
    };
    let mut c = checksum::finish(checksum::sum(pseudo, &d));
    if c == 0 {
        c = 0xffff;
    }
    d[6..8].copy_from_slice(&c.to_be_bytes());
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksums_to_zero() {
        let h = Ipv4Header {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 4,
            tos: 0x2e,
            ttl: 64,
            id: 0,
            dont_fragment: true,
        }
        .bytes(100);
        assert_eq!(checksum::internet(&h), 0);
        assert_eq!(&h[2..4], &120u16.to_be_bytes());
    }

    #[test]
    fn ipv6_header_packs_class_and_label() {
        let h = Ipv6Header {
            src: "::1".parse().unwrap(),
            dst: "::2".parse().unwrap(),
            next: 41,
            traffic_class: 0xb8,
            flow_label: 0xabcde,
            hop_limit: 64,
        }
        .bytes(8);
        assert_eq!(&h[0..4], &[0x6b, 0x8a, 0xbc, 0xde]);
        assert_eq!(&h[4..8], &[0, 8, 41, 64]);
    }

    #[test]
    fn udp_checksum_verifies() {
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let u = udp(s.into(), d.into(), 1, 2, b"hello");
        let pseudo = checksum::pseudo_v6(s.octets(), d.octets(), 17, u.len() as u32);
        assert_eq!(checksum::finish(checksum::sum(pseudo, &u)), 0);
    }
}
