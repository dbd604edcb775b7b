//! The typed configuration the forwarder is programmed with.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use vip_key::{Protocol, VipKey};
use xdp_fwd_common::{
    addr_words, encap, flood, port_raw, proto, vip_flags, Settings, VipMapKey, CONN_WAYS,
};

use crate::{Error, Result};

/// The IP protocol number of a VIP's protocol (the map key's and the flow
/// key's `proto`).
pub fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => proto::TCP,
        Protocol::Udp => proto::UDP,
    }
}

/// The protocol of an IP protocol number, if it is one a VIP can have.
fn protocol_from_number(n: u8) -> Option<Protocol> {
    match n {
        proto::TCP => Some(Protocol::Tcp),
        proto::UDP => Some(Protocol::Udp),
        _ => None,
    }
}

/// The VIPS map key of a VIP.
pub(crate) fn vip_map_key(vip: &VipKey) -> VipMapKey {
    let (addr, family) = addr_words(vip.address);
    VipMapKey {
        addr,
        port: port_raw(vip.port),
        proto: protocol_number(vip.protocol),
        family,
    }
}

/// The VIP a VIPS map key describes, if the key is well formed.
pub(crate) fn vip_from_map_key(key: &VipMapKey) -> Option<VipKey> {
    let protocol = protocol_from_number(key.proto)?;
    let address = xdp_fwd_common::words_addr(key.addr, key.family);
    Some(VipKey {
        address,
        port: port_raw(key.port),
        protocol,
    })
}

/// Encapsulation towards backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Encap {
    /// Whatever [`ForwarderSettings::default_encap`] says (per-VIP only).
    #[default]
    Default,
    /// IP-in-IP: IPIP, IP6IP6, IPv4-in-IPv6 or IPv6-in-IPv4 by family.
    IpIp,
    /// GUE variant 1: outer IP + UDP (source port = flow entropy) + inner IP.
    Gue,
}

impl Encap {
    pub(crate) fn code(self) -> u8 {
        match self {
            Encap::Default => encap::DEFAULT,
            Encap::IpIp => encap::IPIP,
            Encap::Gue => encap::GUE,
        }
    }

    pub(crate) fn from_code(c: u8) -> Self {
        match c {
            encap::IPIP => Encap::IpIp,
            encap::GUE => Encap::Gue,
            _ => Encap::Default,
        }
    }
}

/// Which fields of the 5-tuple the flow hash uses for a VIP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HashFields {
    /// Source and destination address and port, protocol.
    #[default]
    FiveTuple,
    /// Without the source port: one client sticks to one backend.
    NoSourcePort,
    /// Destination address, port and protocol only.
    DestinationPortOnly,
}

/// Per-VIP options (replicated state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipOptions {
    /// Flow hash inputs.
    pub hash: HashFields,
    /// Encapsulation ([`Encap::Default`] = the global choice).
    pub encap: Encap,
}

impl VipOptions {
    pub(crate) fn flags(&self) -> u32 {
        match self.hash {
            HashFields::FiveTuple => 0,
            HashFields::NoSourcePort => vip_flags::HASH_NO_SRC_PORT,
            HashFields::DestinationPortOnly => vip_flags::HASH_DST_PORT_ONLY,
        }
    }

    pub(crate) fn from_meta(flags: u32, encap: u8) -> Self {
        let hash = if flags & vip_flags::HASH_DST_PORT_ONLY != 0 {
            HashFields::DestinationPortOnly
        } else if flags & vip_flags::HASH_NO_SRC_PORT != 0 {
            HashFields::NoSourcePort
        } else {
            HashFields::FiveTuple
        };
        Self {
            hash,
            encap: Encap::from_code(encap),
        }
    }
}

/// When a CPU counts as flooded by new flows (cache admission, see
/// [`xdp_fwd_common::flood`] and FORWARDER.md, "Admission under flood").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FloodThreshold {
    /// Sized from the cache: the rate that turns a CPU's whole cache over in
    /// [`xdp_fwd_common::flood::DEFAULT_TURNOVER_SECS`] seconds.
    #[default]
    FromCapacity,
    /// New flows per second per CPU, in `1..=MAX_FLOOD_RATE`.
    PerSecond(u32),
    /// Never: new flows always evict by LRU (what the cache did before).
    Off,
}

impl FloodThreshold {
    /// The threshold as a rate window's flow count for a cache of
    /// `entries_per_cpu` ways per CPU; `Err` names the setting if the rate
    /// is 0 or above [`MAX_FLOOD_RATE`](xdp_fwd_common::flood::MAX_FLOOD_RATE).
    pub fn window_flows(self, entries_per_cpu: u64) -> Result<u32> {
        match self {
            FloodThreshold::FromCapacity => Ok(flood::window_flows(flood::default_flood_rate(
                entries_per_cpu,
            ))),
            FloodThreshold::PerSecond(rate) => {
                check_flood_rate(u64::from(rate))?;
                Ok(flood::window_flows(rate))
            }
            FloodThreshold::Off => Ok(flood::FLOOD_OFF),
        }
    }
}

/// Checks a flood threshold (new flows per second per CPU) from any source:
/// `Err` names the field and the accepted range.
pub fn check_flood_rate(rate: u64) -> Result<u32> {
    if rate == 0 || rate > u64::from(flood::MAX_FLOOD_RATE) {
        return Err(Error::Invalid(format!(
            "flood_threshold {rate}: must be within 1..={} new flows per second per CPU",
            flood::MAX_FLOOD_RATE
        )));
    }
    Ok(rate as u32)
}

/// Settings of the data plane: the cluster-wide ones (seed, default
/// encapsulation, GUE port) and the node-local ones (outer sources, UDP
/// flow timeout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwarderSettings {
    /// Flow hash seed, the same on every node.
    pub hash_seed: u32,
    /// Encapsulation of VIPs that do not choose one ([`Encap::Default`] is
    /// taken as [`Encap::IpIp`]).
    pub default_encap: Encap,
    /// GUE destination port on the backends.
    pub gue_port: u16,
    /// UDP flows idle longer than this are re-hashed.
    pub udp_timeout: Duration,
    /// Outer IPv4 source prefix; the host bits carry flow entropy.
    pub source_v4: (Ipv4Addr, u8),
    /// Outer IPv6 source prefix (at least /96); the host bits carry entropy.
    pub source_v6: (Ipv6Addr, u8),
    /// New-flow rate above which a CPU's cache admits new flows only into
    /// ways of no established connection.
    pub flood_threshold: FloodThreshold,
}

impl Default for ForwarderSettings {
    fn default() -> Self {
        Self {
            hash_seed: 0,
            default_encap: Encap::IpIp,
            gue_port: 6080,
            udp_timeout: Duration::from_secs(30),
            source_v4: (Ipv4Addr::new(172, 16, 0, 0), 16),
            source_v6: (Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 96),
            flood_threshold: FloodThreshold::FromCapacity,
        }
    }
}

impl ForwarderSettings {
    /// The SETTINGS map value; `ring_stride` is the loader's table capacity,
    /// `conn_sets` the number of connection-cache sets (a power of two).
    pub(crate) fn to_map(&self, ring_stride: u32, conn_sets: u32) -> Result<Settings> {
        let (v4, v4_len) = self.source_v4;
        let (v6, v6_len) = self.source_v6;
        if v4_len > 32 {
            return Err(Error::Invalid(format!(
                "IPv4 source prefix length {v4_len} > 32"
            )));
        }
        if !(96..=128).contains(&v6_len) {
            return Err(Error::Invalid(format!(
                "IPv6 source prefix length {v6_len}: must be 96..=128 (entropy goes in the last 32 bits)"
            )));
        }
        // Host-bit masks in address-word form (network byte order in memory).
        let host_v4 = if v4_len == 32 { 0 } else { u32::MAX >> v4_len };
        let host_v6 = if v6_len == 128 {
            0
        } else {
            u32::MAX >> (v6_len - 96)
        };
        let entries_per_cpu = u64::from(conn_sets) * CONN_WAYS as u64;
        let flood_window_flows = self.flood_threshold.window_flows(entries_per_cpu)?;
        let hz = crate::kernel_hz::kernel_hz();
        let encap = match self.default_encap {
            Encap::Default => Encap::IpIp,
            e => e,
        };
        Ok(Settings {
            hash_seed: self.hash_seed,
            ring_stride,
            udp_timeout_jiffies: crate::kernel_hz::duration_to_jiffies(self.udp_timeout, hz),
            default_encap: encap.code(),
            _pad: 0,
            gue_port: port_raw(self.gue_port),
            src_v4: addr_words(IpAddr::V4(v4)).0[0],
            src_v4_hash_mask: u32::from_le_bytes(host_v4.to_be_bytes()),
            src_v6: addr_words(IpAddr::V6(v6)).0,
            src_v6_hash_mask: u32::from_le_bytes(host_v6.to_be_bytes()),
            conn_set_mask: conn_sets.wrapping_sub(1),
            flood_window_flows,
            flood_window_jiffies: flood::window_jiffies(hz),
            _pad2: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_key_round_trips() {
        for v in [
            VipKey::new("203.0.113.7".parse().unwrap(), 80, Protocol::Tcp),
            VipKey::new("2001:db8::7".parse().unwrap(), 0, Protocol::Udp),
        ] {
            assert_eq!(vip_from_map_key(&vip_map_key(&v)), Some(v));
        }
    }

    #[test]
    fn source_masks_cover_host_bits() {
        let s = ForwarderSettings {
            source_v4: ("10.1.0.0".parse().unwrap(), 16),
            source_v6: ("fd00::".parse().unwrap(), 112),
            ..Default::default()
        };
        let m = s.to_map(7, 1).unwrap();
        assert_eq!(m.src_v4_hash_mask.to_le_bytes(), [0, 0, 0xff, 0xff]);
        assert_eq!(m.src_v6_hash_mask.to_le_bytes(), [0, 0, 0xff, 0xff]);
        assert_eq!(m.src_v4.to_le_bytes(), [10, 1, 0, 0]);
        let bad = ForwarderSettings {
            source_v6: ("fd00::".parse().unwrap(), 64),
            ..s
        };
        assert!(bad.to_map(7, 1).is_err());
    }
}
