//! The OPEN exchange: what we offer, and what a peer's OPEN leaves us with.

use std::net::Ipv4Addr;

use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::notification::{BgpNotificationMessage, OpenMessageError};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_iana::address_family::AddressType;

use crate::config::{GracefulRestartConfig, AS_TRANS};

/// What we put in our OPEN to one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalOpen {
    /// Our ASN.
    pub local_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The hold time we offer.
    pub hold_time_secs: u16,
    /// Graceful restart, when enabled.
    pub graceful_restart: Option<GracefulRestartConfig>,
}

/// Session parameters both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's ASN (from its 4-byte AS capability when present).
    pub peer_asn: u32,
    /// The peer's BGP identifier.
    pub peer_router_id: Ipv4Addr,
    /// min(ours, theirs); 0 means no hold timer and no keepalives.
    pub hold_time_secs: u16,
    /// Both sides speak 4-byte AS numbers (RFC 6793).
    pub asn4: bool,
    /// IPv4 unicast routes may be sent.
    pub ipv4_unicast: bool,
    /// IPv6 unicast routes may be sent.
    pub ipv6_unicast: bool,
    /// The peer may send ROUTE-REFRESH (RFC 2918).
    pub route_refresh: bool,
    /// The peer advertised graceful restart (RFC 4724).
    pub peer_graceful_restart: bool,
}

impl Negotiated {
    /// Seconds between our keepalives: a third of the hold time (RFC 4271 suggestion).
    pub fn keepalive_secs(&self) -> u16 {
        self.hold_time_secs / 3
    }

    /// Whether routes of this family may be sent.
    pub fn family_enabled(&self, family: AddressType) -> bool {
        match family {
            AddressType::Ipv4Unicast => self.ipv4_unicast,
            AddressType::Ipv6Unicast => self.ipv6_unicast,
            _ => false,
        }
    }
}

/// The address families we announce.
pub const FAMILIES: [AddressType; 2] = [AddressType::Ipv4Unicast, AddressType::Ipv6Unicast];

/// Builds our OPEN: 4-byte ASN, multiprotocol IPv4/IPv6 unicast, route
/// refresh and, when configured, graceful restart.
pub fn build_open(local: &LocalOpen) -> BgpOpenMessage {
    let my_as = u16::try_from(local.local_asn).unwrap_or(AS_TRANS as u16);
    let mut caps = vec![
        BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
            AddressType::Ipv4Unicast,
        )),
        BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
            AddressType::Ipv6Unicast,
        )),
        BgpCapability::RouteRefresh,
        BgpCapability::FourOctetAs(FourOctetAsCapability::new(local.local_asn)),
    ];
    if let Some(gr) = &local.graceful_restart {
        // Forwarding state is preserved: the data plane keeps serving VIPs
        // while the daemon restarts.
        let families: Vec<_> = FAMILIES
            .iter()
            .map(|f| GracefulRestartAddressFamily::new(true, *f))
            .collect();
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(gr.restarting, false, gr.restart_time_secs, families),
        ));
    }
    BgpOpenMessage::new(
        my_as,
        local.hold_time_secs,
        local.router_id,
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    )
}

fn open_error(err: OpenMessageError) -> BgpNotificationMessage {
    BgpNotificationMessage::OpenMessageError(err)
}

/// Checks the peer's OPEN against what we expect (RFC 4271 section 6.2)
/// and computes the session parameters.
pub fn negotiate(
    local: &LocalOpen,
    expected_peer_asn: u32,
    open: &BgpOpenMessage,
) -> Result<Negotiated, BgpNotificationMessage> {
    let caps = open.capabilities();
    let asn4 = caps
        .iter()
        .any(|c| matches!(c, BgpCapability::FourOctetAs(_)));
    let peer_asn = open.my_asn4();
    if peer_asn != expected_peer_asn {
        return Err(open_error(OpenMessageError::BadPeerAs {
            value: open.my_as().to_be_bytes().into(),
        }));
    }
    let id = open.bgp_id();
    let ibgp = expected_peer_asn == local.local_asn;
    if id.is_unspecified()
        || id.is_multicast()
        || id.is_broadcast()
        || (ibgp && id == local.router_id)
    {
        return Err(open_error(OpenMessageError::BadBgpIdentifier {
            value: id.octets().into(),
        }));
    }
    let peer_hold = open.hold_time();
    if peer_hold == 1 || peer_hold == 2 {
        return Err(open_error(OpenMessageError::UnacceptableHoldTime {
            value: peer_hold.to_be_bytes().into(),
        }));
    }
    let mp: Vec<AddressType> = caps
        .iter()
        .filter_map(|c| match c {
            BgpCapability::MultiProtocolExtensions(m) => Some(m.address_type()),
            _ => None,
        })
        .collect();
    // RFC 4760: a peer without any multiprotocol capability speaks IPv4 unicast only.
    let (ipv4_unicast, ipv6_unicast) = if mp.is_empty() {
        (true, false)
    } else {
        (
            mp.contains(&AddressType::Ipv4Unicast),
            mp.contains(&AddressType::Ipv6Unicast),
        )
    };
    Ok(Negotiated {
        peer_asn,
        peer_router_id: id,
        hold_time_secs: local.hold_time_secs.min(peer_hold),
        asn4,
        ipv4_unicast,
        ipv6_unicast,
        route_refresh: caps.iter().any(|c| {
            matches!(
                c,
                BgpCapability::RouteRefresh | BgpCapability::EnhancedRouteRefresh
            )
        }),
        peer_graceful_restart: caps
            .iter()
            .any(|c| matches!(c, BgpCapability::GracefulRestartCapability(_))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode, NotificationCode};
    use netgauze_bgp_pkt::BgpMessage;

    fn local() -> LocalOpen {
        LocalOpen {
            local_asn: 4_200_000_001,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time_secs: 9,
            graceful_restart: Some(GracefulRestartConfig {
                restart_time_secs: 120,
                restarting: true,
            }),
        }
    }

    fn peer_open(asn: u32, hold: u16, caps: Vec<BgpCapability>) -> BgpOpenMessage {
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS as u16);
        let mut caps = caps;
        caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)));
        BgpOpenMessage::new(
            my_as,
            hold,
            Ipv4Addr::new(192, 0, 2, 9),
            vec![BgpOpenMessageParameter::new_capabilities(caps)],
        )
    }

    /// Golden vector: the exact bytes of our OPEN must not drift.
    #[test]
    fn open_encoding_is_pinned() {
        let bytes = encode(&BgpMessage::Open(build_open(&local()))).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            // Marker, length 63, OPEN, version 4, AS_TRANS, hold 9, 192.0.2.1, then
            // capabilities: MP IPv4/unicast, MP IPv6/unicast, route refresh,
            // 4-byte ASN 4200000001, graceful restart (R bit, 120 s, F bit per family).
            "ffffffffffffffffffffffffffffffff003f01045ba00009c0000201220220\
             01040001000101040002000102004104fa56ea01400a80780001018000020180"
        );
    }

    #[test]
    fn negotiates_min_hold_and_families() {
        let open = peer_open(
            65000,
            180,
            vec![BgpCapability::MultiProtocolExtensions(
                MultiProtocolExtensionsCapability::new(AddressType::Ipv6Unicast),
            )],
        );
        let n = negotiate(&local(), 65000, &open).unwrap();
        assert_eq!(n.hold_time_secs, 9);
        assert_eq!(n.keepalive_secs(), 3);
        assert!(n.asn4 && n.ipv6_unicast && !n.ipv4_unicast && !n.route_refresh);
        let plain = peer_open(65000, 0, vec![BgpCapability::RouteRefresh]);
        let n = negotiate(&local(), 65000, &plain).unwrap();
        assert_eq!(n.hold_time_secs, 0);
        assert!(n.ipv4_unicast && !n.ipv6_unicast && n.route_refresh);
    }

    #[test]
    fn rejects_bad_open_with_right_subcode() {
        let code = |r: Result<Negotiated, BgpNotificationMessage>| {
            let c = NotificationCode::of(&r.expect_err("must fail"));
            (c.code, c.subcode)
        };
        assert_eq!(
            code(negotiate(&local(), 65001, &peer_open(65000, 90, vec![]))),
            (2, 2)
        );
        assert_eq!(
            code(negotiate(&local(), 65000, &peer_open(65000, 2, vec![]))),
            (2, 6)
        );
        let zero_id = BgpOpenMessage::new(65000, 90, Ipv4Addr::UNSPECIFIED, vec![]);
        assert_eq!(code(negotiate(&local(), 65000, &zero_id)), (2, 3));
    }
}
