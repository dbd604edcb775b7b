//! Speaker and peer configuration, validated before any session starts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The well-known BGP port.
pub const BGP_PORT: u16 = 179;

/// Hold time we offer when the configuration does not say (RFC 4271 suggests 90 s).
pub const DEFAULT_HOLD_TIME_SECS: u16 = 90;

/// Configuration of the whole speaker: who we are and whom we talk to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerConfig {
    /// Our autonomous system number (4 bytes, RFC 6793).
    pub local_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Where to accept passive sessions; `None` means no listener
    /// (then every peer must be active).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Graceful restart (RFC 4724) parameters; `None` disables the capability.
    #[serde(default)]
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// The upstream routers.
    pub peers: Vec<PeerConfig>,
}

/// Graceful restart capability (RFC 4724) as advertised in our OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GracefulRestartConfig {
    /// How long (seconds, at most 4095) routers keep our routes after the
    /// session drops without a NOTIFICATION.
    pub restart_time_secs: u16,
    /// Set the Restart State bit: the node daemon has just restarted and the
    /// routers should keep our stale routes until we send End-of-RIB.
    #[serde(default)]
    pub restarting: bool,
}

/// Who opens the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PeerMode {
    /// We connect to the peer (with backoff) and reject its connections.
    #[default]
    Active,
    /// We only accept the peer's connection on the speaker's listener.
    Passive,
    /// Both: we connect with backoff and accept on the listener; when both
    /// connections meet, RFC 4271 collision detection keeps one.
    Both,
}

/// One upstream router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerConfig {
    /// The router's address.
    pub address: IpAddr,
    /// The router's TCP port for active connections (179 unless a test says otherwise).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The router's ASN; equal to `local_asn` makes this an iBGP session.
    pub remote_asn: u32,
    /// Hold time we offer (0 disables keepalives, otherwise at least 3 s).
    #[serde(default = "default_hold_time")]
    pub hold_time_secs: u16,
    /// Active or passive.
    #[serde(default)]
    pub mode: PeerMode,
    /// Source address for active connections; the kernel picks when `None`.
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    /// Next hop for IPv4 routes; `None` means the session's local address
    /// when it is IPv4 (next-hop self).
    #[serde(default)]
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes; `None` means the session's local address
    /// when it is IPv6 (next-hop self).
    #[serde(default)]
    pub next_hop_v6: Option<Ipv6Addr>,
    /// First delay between failed connection attempts; doubles up to `connect_retry_max`.
    #[serde(default = "default_retry_min", with = "duration_millis")]
    pub connect_retry_min: Duration,
    /// Longest delay between connection attempts.
    #[serde(default = "default_retry_max", with = "duration_millis")]
    pub connect_retry_max: Duration,
}

fn default_port() -> u16 {
    BGP_PORT
}
fn default_hold_time() -> u16 {
    DEFAULT_HOLD_TIME_SECS
}
fn default_retry_min() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}

mod duration_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl PeerConfig {
    /// A peer with default timers: active, port 179, hold time 90 s.
    pub fn new(address: IpAddr, remote_asn: u32) -> Self {
        PeerConfig {
            address,
            port: BGP_PORT,
            remote_asn,
            hold_time_secs: DEFAULT_HOLD_TIME_SECS,
            mode: PeerMode::Active,
            local_address: None,
            next_hop_v4: None,
            next_hop_v6: None,
            connect_retry_min: default_retry_min(),
            connect_retry_max: default_retry_max(),
        }
    }
}

/// A configuration the speaker refuses to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// ASN 0 is reserved (RFC 7607) and AS_TRANS is not a real ASN (RFC 6793).
    #[error("ASN {0} is reserved and cannot be used")]
    ReservedAsn(u32),
    /// The router id must be a non-zero unicast address.
    #[error("router id {0} is not usable as a BGP identifier")]
    BadRouterId(Ipv4Addr),
    /// Hold time 1 and 2 are forbidden by RFC 4271.
    #[error("peer {peer}: hold time {hold} s must be 0 or at least 3")]
    BadHoldTime {
        /// The peer address.
        peer: IpAddr,
        /// The rejected value.
        hold: u16,
    },
    /// Two peers with the same address cannot be told apart on accept.
    #[error("peer {0} is configured twice")]
    DuplicatePeer(IpAddr),
    /// A passive (or both-ways) peer needs somewhere to connect to.
    #[error("peer {0} accepts connections but the speaker has no listen address")]
    PassiveWithoutListener(IpAddr),
    /// RFC 4724 gives the restart time 12 bits.
    #[error("graceful restart time {0} s exceeds 4095")]
    RestartTimeTooLong(u16),
    /// Backoff bounds in the wrong order or zero.
    #[error("peer {0}: connect retry bounds must satisfy 0 < min <= max")]
    BadRetry(IpAddr),
}

/// AS_TRANS (RFC 6793): stands in for a 4-byte ASN in 2-byte fields.
pub const AS_TRANS: u32 = 23456;

impl SpeakerConfig {
    /// Checks the configuration; the speaker only starts from a valid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for asn in std::iter::once(self.local_asn).chain(self.peers.iter().map(|p| p.remote_asn)) {
            if asn == 0 || asn == AS_TRANS || asn == u32::MAX {
                return Err(ConfigError::ReservedAsn(asn));
            }
        }
        let id = self.router_id;
        if id.is_unspecified() || id.is_broadcast() || id.is_multicast() {
            return Err(ConfigError::BadRouterId(id));
        }
        if let Some(gr) = &self.graceful_restart {
            if gr.restart_time_secs > 4095 {
                return Err(ConfigError::RestartTimeTooLong(gr.restart_time_secs));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for peer in &self.peers {
            if !seen.insert(peer.address) {
                return Err(ConfigError::DuplicatePeer(peer.address));
            }
            if peer.hold_time_secs == 1 || peer.hold_time_secs == 2 {
                return Err(ConfigError::BadHoldTime {
                    peer: peer.address,
                    hold: peer.hold_time_secs,
                });
            }
            if peer.mode != PeerMode::Active && self.listen.is_none() {
                return Err(ConfigError::PassiveWithoutListener(peer.address));
            }
            if peer.connect_retry_min.is_zero() || peer.connect_retry_min > peer.connect_retry_max {
                return Err(ConfigError::BadRetry(peer.address));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SpeakerConfig {
        SpeakerConfig {
            local_asn: 65001,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            listen: None,
            graceful_restart: None,
            peers: vec![PeerConfig::new("10.0.0.2".parse().unwrap(), 65000)],
        }
    }

    #[test]
    fn valid_config_passes() {
        assert_eq!(base().validate(), Ok(()));
    }

    #[test]
    fn parses_from_toml_with_defaults() {
        let text = r#"
            local_asn = 65010
            router_id = "10.0.1.2"
            graceful_restart = { restart_time_secs = 120 }
            [[peers]]
            address = "10.0.1.1"
            remote_asn = 65000
            next_hop_v6 = "fd00:0:1::2"
            [[peers]]
            address = "10.0.2.1"
            remote_asn = 65010
            port = 1790
            hold_time_secs = 9
            mode = "active"
            connect_retry_min = 100
            connect_retry_max = 2000
        "#;
        let c: SpeakerConfig = toml::from_str(text).unwrap();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.peers[0].port, BGP_PORT);
        assert_eq!(c.peers[0].hold_time_secs, DEFAULT_HOLD_TIME_SECS);
        assert_eq!(c.peers[0].mode, PeerMode::Active);
        assert_eq!(c.peers[1].connect_retry_max, Duration::from_secs(2));
        assert_eq!(c.graceful_restart.map(|g| g.restarting), Some(false));
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = base();
        c.local_asn = 0;
        assert_eq!(c.validate(), Err(ConfigError::ReservedAsn(0)));
        let mut c = base();
        c.peers[0].remote_asn = AS_TRANS;
        assert_eq!(c.validate(), Err(ConfigError::ReservedAsn(AS_TRANS)));
        let mut c = base();
        c.router_id = Ipv4Addr::UNSPECIFIED;
        assert!(matches!(c.validate(), Err(ConfigError::BadRouterId(_))));
        let mut c = base();
        c.peers[0].hold_time_secs = 2;
        assert!(matches!(c.validate(), Err(ConfigError::BadHoldTime { .. })));
        let mut c = base();
        c.peers.push(c.peers[0].clone());
        assert!(matches!(c.validate(), Err(ConfigError::DuplicatePeer(_))));
        for mode in [PeerMode::Passive, PeerMode::Both] {
            let mut c = base();
            c.peers[0].mode = mode;
            assert!(matches!(
                c.validate(),
                Err(ConfigError::PassiveWithoutListener(_))
            ));
        }
        let mut c = base();
        c.graceful_restart = Some(GracefulRestartConfig {
            restart_time_secs: 5000,
            restarting: false,
        });
        assert_eq!(c.validate(), Err(ConfigError::RestartTimeTooLong(5000)));
    }
}
