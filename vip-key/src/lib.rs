//! The identity of a VIP: address, port and protocol.
//!
//! One definition for every layer: the replicated table (`edgelb-consensus`)
//! keys its VIPs with [`VipKey`], and the forwarder's loader (`xdp-fwd`)
//! takes the same type and turns it into its BPF map key. Plain data, no
//! I/O. The serde encoding is part of the Raft log format: fields and
//! variants keep their order (pinned by the golden tests below and in
//! `edgelb-consensus`).

#![warn(missing_docs)]

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Transport protocol a VIP listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
        }
    }
}

/// Identity of a VIP: address, port and protocol. Port 0 means all ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VipKey {
    /// The virtual address announced by BGP.
    pub address: IpAddr,
    /// Destination port; 0 matches every port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
}

impl VipKey {
    /// A VIP key (the same as the struct literal, shorter at call sites).
    pub const fn new(address: IpAddr, port: u16, protocol: Protocol) -> Self {
        Self {
            address,
            port,
            protocol,
        }
    }
}

impl fmt::Display for VipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{}:{}/{}", a, self.port, self.protocol),
            IpAddr::V6(a) => write!(f, "[{}]:{}/{}", a, self.port, self.protocol),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn vip_key_display() {
        let k = VipKey {
            address: "2001:db8::1".parse().unwrap(),
            port: 443,
            protocol: Protocol::Tcp,
        };
        assert_eq!(k.to_string(), "[2001:db8::1]:443/tcp");
        let k = VipKey::new("192.0.2.10".parse().unwrap(), 0, Protocol::Udp);
        assert_eq!(k.to_string(), "192.0.2.10:0/udp");
    }

    /// The bytes `edgelb-consensus`'s golden command test expects for these
    /// keys (bincode 2, standard configuration): the crate must stay a
    /// drop-in replacement for its former definitions.
    #[test]
    fn golden_encoding() {
        let config = bincode::config::standard();
        let cases = [
            (
                VipKey::new("192.0.2.10".parse().unwrap(), 80, Protocol::Tcp),
                "00c000020a".to_string() + "50" + "00",
            ),
            (
                VipKey::new("2001:db8::1".parse().unwrap(), 443, Protocol::Udp),
                "01".to_string() + "20010db8000000000000000000000001" + "fbbb01" + "01",
            ),
        ];
        for (key, expected) in cases {
            let bytes = bincode::serde::encode_to_vec(key, config).unwrap();
            assert_eq!(hex(&bytes), expected, "{key}");
            let (back, used): (VipKey, usize) =
                bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!((back, used), (key, bytes.len()));
        }
    }
}
