//! A builder for test frames: Ethernet, optional 802.1Q tag, IPv4 or IPv6, TCP or UDP.

use std::net::IpAddr;

use crate::checksum;

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;

/// Transport layer of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    /// A TCP segment with the given flags byte (SYN = 0x02, ACK = 0x10).
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flags byte (see [`tcp_flags`]).
        flags: u8,
    },
    /// A UDP datagram.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// An ICMP (IPv4) or ICMPv6 (IPv6) message.
    Icmp {
        /// Type.
        kind: u8,
        /// Code.
        code: u8,
        /// The four "rest of header" bytes (echo id/sequence, PTB MTU, ...).
        rest: [u8; 4],
    },
}

/// Fragmentation of the IP packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Offset in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification (IPv6 adds a fragment header carrying it).
    pub id: u32,
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Builds one Ethernet frame; addresses must be of the same family.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// IPv4 ToS / IPv6 traffic class.
    pub tos: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Transport header.
    pub l4: L4,
    /// Payload after the transport header.
    pub payload: Vec<u8>,
    /// IPv4 options (padded to a multiple of 4 bytes by the caller).
    pub ipv4_options: Vec<u8>,
    /// IPv4 don't-fragment bit (set by default).
    pub dont_fragment: bool,
    /// Fragment fields; IPv6 gets a fragment header when set.
    pub fragment: Option<Fragment>,
}

impl FrameBuilder {
    /// A frame from `src` to `dst` with `l4`, default MACs and a small payload.
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        Self {
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            vlan: None,
            src,
            dst,
            tos: 0,
            ttl: 64,
            l4,
            payload: b"edgelb".to_vec(),
            ipv4_options: Vec::new(),
            dont_fragment: true,
            fragment: None,
        }
    }

    /// Sets the MAC addresses.
    pub fn macs(mut self, dst: [u8; 6], src: [u8; 6]) -> Self {
        self.dst_mac = dst;
        self.src_mac = src;
        self
    }

    /// Adds IPv4 options; `options.len()` must be a multiple of 4, at most 40.
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "bad IPv4 options length"
        );
        self.ipv4_options = options.to_vec();
        self
    }

    /// Makes the packet a fragment.
    pub fn fragment(mut self, fragment: Fragment) -> Self {
        self.fragment = Some(fragment);
        self
    }

    /// Sets TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Tags the frame with an 802.1Q VLAN id.
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    /// Sets ToS / traffic class.
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }

    /// The transport segment (header + payload) with its checksum filled in.
    fn l4_segment(&self) -> (u8, Vec<u8>) {
        let (proto, mut seg) = match self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes()); // sequence number
                h[12] = 5 << 4; // data offset: 5 words
                h[13] = flags;
                h[14..16].copy_from_slice(&64240u16.to_be_bytes()); // window
                (6u8, h)
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                let len = (8 + self.payload.len()) as u16;
                h[4..6].copy_from_slice(&len.to_be_bytes());
                (17u8, h)
            }
            L4::Icmp { kind, code, rest } => {
                let mut h = vec![kind, code, 0, 0];
                h.extend_from_slice(&rest);
                (if self.src.is_ipv4() { 1u8 } else { 58u8 }, h)
            }
        };
        seg.extend_from_slice(&self.payload);
        let pseudo = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                checksum::pseudo_v4(s.octets(), d.octets(), proto, seg.len() as u16)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                checksum::pseudo_v6(s.octets(), d.octets(), proto, seg.len() as u32)
            }
            _ => panic!("FrameBuilder: source and destination families differ"),
        };
        // ICMP (IPv4) has no pseudo-header.
        let pseudo = if proto == 1 { 0 } else { pseudo };
        let mut c = checksum::finish(checksum::sum(pseudo, &seg));
        if proto == 17 && c == 0 {
            c = 0xffff; // UDP: zero means "no checksum"
        }
        let at = match proto {
            6 => 16,
            17 => 6,
            _ => 2,
        };
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        (proto, seg)
    }

    /// The IP packet (header + transport segment).
    pub fn ip_packet(&self) -> Vec<u8> {
        let (proto, seg) = self.l4_segment();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let hlen = 20 + self.ipv4_options.len();
                let mut h = vec![0u8; 20];
                h[0] = 0x40 | (hlen / 4) as u8;
                h[1] = self.tos;
                h[2..4].copy_from_slice(&((hlen + seg.len()) as u16).to_be_bytes());
                let frag = self.fragment.unwrap_or_default();
                h[4..6].copy_from_slice(&(frag.id as u16).to_be_bytes());
                let mut flags_offset = frag.offset & 0x1fff;
                if self.dont_fragment {
                    flags_offset |= 0x4000;
                }
                if frag.more {
                    flags_offset |= 0x2000;
                }
                h[6..8].copy_from_slice(&flags_offset.to_be_bytes());
                h[8] = self.ttl;
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                h.extend_from_slice(&self.ipv4_options);
                let c = checksum::internet(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                h.extend_from_slice(&seg);
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut h = vec![0u8; 40];
                h[0] = 0x60 | (self.tos >> 4);
                h[1] = self.tos << 4;
                h[7] = self.ttl;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                if let Some(frag) = self.fragment {
                    // Fragment header: next header, reserved, offset/flags, id.
                    h[6] = 44;
                    h.push(proto);
                    h.push(0);
                    let mut off = (frag.offset & 0x1fff) << 3;
                    if frag.more {
                        off |= 1;
                    }
                    h.extend_from_slice(&off.to_be_bytes());
                    h.extend_from_slice(&frag.id.to_be_bytes());
                } else {
                    h[6] = proto;
                }
                let payload_len = (h.len() - 40 + seg.len()) as u16;
                h[4..6].copy_from_slice(&payload_len.to_be_bytes());
                h.extend_from_slice(&seg);
                h
            }
            _ => panic!("FrameBuilder: source and destination families differ"),
        }
    }

    /// The whole Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.payload.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        if let Some(id) = self.vlan {
            f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            f.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        let ethertype = if self.src.is_ipv4() {
            ETH_P_IP
        } else {
            ETH_P_IPV6
        };
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&self.ip_packet());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_udp_frame_has_valid_checksums() {
        let f = FrameBuilder::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            L4::Udp {
                sport: 1000,
                dport: 53,
            },
        )
        .build();
        assert_eq!(f.len(), 14 + 20 + 8 + 6);
        assert_eq!(checksum::internet(&f[14..34]), 0);
        let pseudo = checksum::pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 14);
        assert_eq!(checksum::finish(checksum::sum(pseudo, &f[34..])), 0);
    }

    #[test]
    fn ipv6_tcp_frame_has_valid_checksum() {
        let src: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
        let f = FrameBuilder::new(
            src.into(),
            dst.into(),
            L4::Tcp {
                sport: 1,
                dport: 80,
                flags: 2,
            },
        )
        .vlan(7)
        .build();
        assert_eq!(&f[12..14], &ETH_P_8021Q.to_be_bytes());
        let seg = &f[18 + 40..];
        let pseudo = checksum::pseudo_v6(src.octets(), dst.octets(), 6, seg.len() as u32);
        assert_eq!(checksum::finish(checksum::sum(pseudo, seg)), 0);
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn icmp_checksums_verify() {
        let f = FrameBuilder::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            L4::Icmp {
                kind: 8,
                code: 0,
                rest: [0, 1, 0, 2],
            },
        )
        .build();
        assert_eq!(f[23], 1);
        assert_eq!(checksum::internet(&f[34..]), 0);
        let s: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
        let f = FrameBuilder::new(
            s.into(),
            d.into(),
            L4::Icmp {
                kind: 128,
                code: 0,
                rest: [0; 4],
            },
        )
        .build();
        let seg = &f[54..];
        let pseudo = checksum::pseudo_v6(s.octets(), d.octets(), 58, seg.len() as u32);
        assert_eq!(checksum::finish(checksum::sum(pseudo, seg)), 0);
    }

    #[test]
    fn options_and_fragments() {
        let f = FrameBuilder::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            L4::Udp { sport: 1, dport: 2 },
        )
        .ipv4_options(&[1, 1, 1, 0])
        .fragment(Fragment {
            offset: 0,
            more: true,
            id: 9,
        })
        .build();
        assert_eq!(f[14], 0x46);
        assert_eq!(checksum::internet(&f[14..38]), 0);
        assert_eq!(&f[20..22], &[0x60, 0x00], "DF and MF");
        let s: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let f = FrameBuilder::new(s.into(), s.into(), L4::Udp { sport: 1, dport: 2 })
            .fragment(Fragment {
                offset: 1,
                more: false,
                id: 7,
            })
            .build();
        assert_eq!(f[20], 44);
        assert_eq!(f[54], 17);
        assert_eq!(&f[56..58], &[0, 8]);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]) as usize, f.len() - 54);
    }
}
