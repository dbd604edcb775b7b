//! Adj-RIB-Out of one session: what the peer has from us, and the UPDATEs
//! that move it to the desired set.
//!
//! Over 500 lines because its unit tests live here (from `mod tests` on,
//! ~210 lines): they check the UPDATE packing rules directly.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netgauze_bgp_pkt::community::Community;
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4Path, As4PathSegment, AsPath, AsPathSegmentType, Communities,
    LocalPreference, MpReach, MpUnreach, MultiExitDiscriminator, NextHop, Origin, PathAttribute,
    PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;

use crate::config::AS_TRANS;
use crate::route::{DesiredRoutes, RouteAttributes};
use crate::wire::MAX_MESSAGE_LEN;

/// How routes are encoded for one peer; fixed once the session is established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEncoding {
    /// Our ASN.
    pub local_asn: u32,
    /// iBGP: no own-AS in AS_PATH (unless prepending), LOCAL_PREF included.
    pub ibgp: bool,
    /// The peer understands 4-byte AS_PATH (RFC 6793).
    pub asn4: bool,
    /// Next hop for IPv4 routes; `None` makes them unsendable to this peer.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes; `None` makes them unsendable to this peer.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// IPv4 unicast negotiated.
    pub ipv4_unicast: bool,
    /// IPv6 unicast negotiated.
    pub ipv6_unicast: bool,
}

impl PeerEncoding {
    /// Whether this peer can receive `prefix` at all.
    pub fn can_send(&self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(_) => self.ipv4_unicast && self.next_hop_v4.is_some(),
            IpNet::V6(_) => self.ipv6_unicast && self.next_hop_v6.is_some(),
        }
    }

    fn attr(
        optional: bool,
        transitive: bool,
        extended: bool,
        value: PathAttributeValue,
    ) -> PathAttribute {
        // The flags are constants chosen per attribute type below; netgauze only
        // rejects combinations RFC 4271 forbids, which the unit tests cover.
        PathAttribute::from(optional, transitive, false, extended, value)
            .unwrap_or_else(|(value, err)| panic!("bad flags for {value:?}: {err:?}"))
    }

    /// ORIGIN, AS_PATH (+ AS4_PATH for 2-byte peers), MED, LOCAL_PREF, COMMUNITIES.
    fn common_attributes(&self, attrs: &RouteAttributes) -> Vec<PathAttribute> {
        let mut out = vec![Self::attr(
            false,
            true,
            false,
            PathAttributeValue::Origin(Origin::IGP),
        )];
        let own = usize::from(attrs.as_path_prepend) + usize::from(!self.ibgp);
        let path4 = vec![self.local_asn; own];
        if self.asn4 {
            let segments = if path4.is_empty() {
                vec![]
            } else {
                vec![As4PathSegment::new(AsPathSegmentType::AsSequence, path4)]
            };
            out.push(Self::attr(
                false,
                true,
                true,
                PathAttributeValue::AsPath(AsPath::As4PathSegments(segments.into())),
            ));
        } else {
            let as2 = u16::try_from(self.local_asn).unwrap_or(AS_TRANS as u16);
            let segments = if path4.is_empty() {
                vec![]
            } else {
                vec![As2PathSegment::new(
                    AsPathSegmentType::AsSequence,
                    vec![as2; own],
                )]
            };
            out.push(Self::attr(
                false,
                true,
                true,
                PathAttributeValue::AsPath(AsPath::As2PathSegments(segments.into())),
            ));
            if self.local_asn > u32::from(u16::MAX) && !path4.is_empty() {
                // RFC 6793: carry the real path for 4-byte-aware routers further on.
                let segment = As4PathSegment::new(AsPathSegmentType::AsSequence, path4);
                out.push(Self::attr(
                    true,
                    true,
                    true,
                    PathAttributeValue::As4Path(As4Path::new(vec![segment])),
                ));
            }
        }
        if let Some(med) = attrs.med {
            out.push(Self::attr(
                true,
                false,
                false,
                PathAttributeValue::MultiExitDiscriminator(MultiExitDiscriminator::new(med)),
            ));
        }
        if self.ibgp {
            out.push(Self::attr(
                false,
                true,
                false,
                PathAttributeValue::LocalPreference(LocalPreference::new(
                    attrs.local_pref.unwrap_or(100),
                )),
            ));
        }
        if !attrs.communities.is_empty() {
            let communities: Vec<Community> = attrs
                .communities
                .iter()
                .map(|c| Community::new(*c))
                .collect();
            out.push(Self::attr(
                true,
                true,
                true,
                PathAttributeValue::Communities(Communities::new(communities)),
            ));
        }
        out
    }

    /// UPDATEs announcing `prefixes` (all of `family`) with `attrs`, split
    /// so every message fits in 4096 bytes. Empty if the family has no next hop.
    fn announce(
        &self,
        family: AddressType,
        attrs: &RouteAttributes,
        prefixes: &[IpNet],
    ) -> Vec<BgpUpdateMessage> {
        let mut common = self.common_attributes(attrs);
        match (family, self.next_hop_v4, self.next_hop_v6) {
            (AddressType::Ipv4Unicast, Some(nh), _) => {
                common.push(Self::attr(
                    false,
                    true,
                    false,
                    PathAttributeValue::NextHop(NextHop::new(nh)),
                ));
                chunked(prefixes, |chunk| {
                    BgpUpdateMessage::new(vec![], common.clone(), split_families(chunk).0)
                })
            }
            (AddressType::Ipv6Unicast, _, Some(nh)) => chunked(prefixes, |chunk| {
                let reach = MpReach::Ipv6Unicast {
                    next_hop_global: nh,
                    next_hop_local: None,
                    nlri: split_families(chunk).1.into(),
                };
                let mut attributes = common.clone();
                attributes.push(Self::attr(
                    true,
                    false,
                    true,
                    PathAttributeValue::MpReach(reach),
                ));
                BgpUpdateMessage::new(vec![], attributes, vec![])
            }),
            // can_send() keeps such prefixes out of the Adj-RIB-Out.
            _ => vec![],
        }
    }

    /// UPDATEs withdrawing `prefixes` (all of one family).
    fn withdraw(&self, prefixes: &[IpNet]) -> Vec<BgpUpdateMessage> {
        chunked(prefixes, |chunk| {
            let (v4, v6) = split_families(chunk);
            if !v4.is_empty() {
                BgpUpdateMessage::new(v4, vec![], vec![])
            } else {
                let unreach = MpUnreach::Ipv6Unicast { nlri: v6.into() };
                BgpUpdateMessage::new(
                    vec![],
                    vec![Self::attr(
                        true,
                        false,
                        true,
                        PathAttributeValue::MpUnreach(unreach),
                    )],
                    vec![],
                )
            }
        })
    }
}

/// The End-of-RIB marker of a family (RFC 4724 section 2).
pub fn end_of_rib(family: AddressType) -> BgpUpdateMessage {
    match family {
        AddressType::Ipv6Unicast => {
            let unreach = MpUnreach::Ipv6Unicast { nlri: Box::new([]) };
            BgpUpdateMessage::new(
                vec![],
                vec![PeerEncoding::attr(
                    true,
                    false,
                    true,
                    PathAttributeValue::MpUnreach(unreach),
                )],
                vec![],
            )
        }
        _ => BgpUpdateMessage::new(vec![], vec![], vec![]),
    }
}

fn split_families(prefixes: &[IpNet]) -> (Vec<Ipv4UnicastAddress>, Vec<Ipv6UnicastAddress>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in prefixes {
        match p {
            // DesiredRoutes::insert rejected what from_net would refuse.
            IpNet::V4(n) => {
                if let Ok(u) = Ipv4Unicast::from_net(*n) {
                    v4.push(Ipv4UnicastAddress::new_no_path_id(u));
                }
            }
            IpNet::V6(n) => {
                if let Ok(u) = Ipv6Unicast::from_net(*n) {
                    v6.push(Ipv6UnicastAddress::new(None, u));
                }
            }
        }
    }
    (v4, v6)
}

/// Encoded size of one prefix in NLRI: length octet plus the significant bytes.
fn nlri_len(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

/// Splits `prefixes` into as few messages as fit in [`MAX_MESSAGE_LEN`].
fn chunked(
    prefixes: &[IpNet],
    build: impl Fn(&[IpNet]) -> BgpUpdateMessage,
) -> Vec<BgpUpdateMessage> {
    if prefixes.is_empty() {
        return vec![];
    }
    let base = BgpMessage::Update(build(&prefixes[..0])).len();
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = base;
    for (i, p) in prefixes.iter().enumerate() {
        if size + nlri_len(p) > MAX_MESSAGE_LEN && i > start {
            out.push(build(&prefixes[start..i]));
            start = i;
            size = base;
        }
        size += nlri_len(p);
    }
    out.push(build(&prefixes[start..]));
    out
}

fn family_of(prefix: &IpNet) -> AddressType {
    match prefix {
        IpNet::V4(_) => AddressType::Ipv4Unicast,
        IpNet::V6(_) => AddressType::Ipv6Unicast,
    }
}

/// Routes one peer currently holds from us.
#[derive(Debug, Default, Clone)]
pub struct AdjRibOut {
    announced: BTreeMap<IpNet, RouteAttributes>,
}

impl AdjRibOut {
    /// Number of prefixes the peer has from us.
    pub fn len(&self) -> usize {
        self.announced.len()
    }

    /// True when the peer has nothing from us.
    pub fn is_empty(&self) -> bool {
        self.announced.is_empty()
    }

    /// Whether `prefix` is announced.
    pub fn contains(&self, prefix: &IpNet) -> bool {
        self.announced.contains_key(prefix)
    }

    /// UPDATEs taking the peer from what it has to `desired`; records the result.
    /// Withdrawals come first so a shrinking set never overshoots.
    pub fn converge(
        &mut self,
        desired: &DesiredRoutes,
        enc: &PeerEncoding,
    ) -> Vec<BgpUpdateMessage> {
        let mut out = Vec::new();
        let gone: Vec<IpNet> = self
            .announced
            .keys()
            .filter(|p| desired.get(p).is_none())
            .copied()
            .collect();
        for family in [AddressType::Ipv4Unicast, AddressType::Ipv6Unicast] {
            let of_family: Vec<IpNet> = gone
                .iter()
                .filter(|p| family_of(p) == family)
                .copied()
                .collect();
            out.extend(enc.withdraw(&of_family));
        }
        for p in &gone {
            self.announced.remove(p);
        }
        let mut by_attrs: BTreeMap<(bool, &RouteAttributes), Vec<IpNet>> = BTreeMap::new();
        for (prefix, attrs) in desired.iter() {
            if enc.can_send(prefix) && self.announced.get(prefix) != Some(attrs) {
                let is_v6 = matches!(prefix, IpNet::V6(_));
                by_attrs.entry((is_v6, attrs)).or_default().push(*prefix);
            }
        }
        for ((is_v6, attrs), prefixes) in by_attrs {
            let family = if is_v6 {
                AddressType::Ipv6Unicast
            } else {
                AddressType::Ipv4Unicast
            };
            out.extend(enc.announce(family, attrs, &prefixes));
            for p in prefixes {
                self.announced.insert(p, attrs.clone());
            }
        }
        out
    }

    /// UPDATEs re-sending everything announced in `family` (answer to ROUTE-REFRESH).
    pub fn resend(&self, family: AddressType, enc: &PeerEncoding) -> Vec<BgpUpdateMessage> {
        let mut by_attrs: BTreeMap<&RouteAttributes, Vec<IpNet>> = BTreeMap::new();
        for (prefix, attrs) in &self.announced {
            if family_of(prefix) == family {
                by_attrs.entry(attrs).or_default().push(*prefix);
            }
        }
        by_attrs
            .into_iter()
            .flat_map(|(attrs, prefixes)| enc.announce(family, attrs, &prefixes))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode};

    fn enc() -> PeerEncoding {
        PeerEncoding {
            local_asn: 65010,
            ibgp: false,
            asn4: true,
            next_hop_v4: Some(Ipv4Addr::new(10, 1, 0, 2)),
            next_hop_v6: Some("fd00:1::2".parse().unwrap()),
            ipv4_unicast: true,
            ipv6_unicast: true,
        }
    }

    fn hex(msg: BgpUpdateMessage) -> String {
        encode(&BgpMessage::Update(msg))
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn desired(entries: &[(&str, RouteAttributes)]) -> DesiredRoutes {
        let mut d = DesiredRoutes::new();
        for (p, a) in entries {
            d.insert(p.parse().unwrap(), a.clone()).unwrap();
        }
        d
    }

    /// Golden vectors: the wire form of an announce and a withdraw.
    #[test]
    fn update_encoding_is_pinned() {
        let attrs = RouteAttributes {
            communities: vec![0xfdf2_0064],
            med: Some(50),
            as_path_prepend: 1,
            local_pref: None,
        };
        let mut rib = AdjRibOut::default();
        let msgs = rib.converge(&desired(&[("192.0.2.10/32", attrs)]), &enc());
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            hex(msgs[0].clone()),
            // ORIGIN IGP; AS_PATH [65010 65010]; MED 50; COMMUNITIES 65010:100;
            // NEXT_HOP 10.1.0.2; NLRI 192.0.2.10/32.
            "ffffffffffffffffffffffffffffffff0044020000002840010100500200\
             0a02020000fdf20000fdf280040400000032d0080004fdf200644003040a01\
             000220c000020a"
        );
        let msgs = rib.converge(&DesiredRoutes::new(), &enc());
        assert_eq!(
            hex(msgs[0].clone()),
            "ffffffffffffffffffffffffffffffff001c02000520c000020a0000"
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn converge_sends_only_differences() {
        let mut rib = AdjRibOut::default();
        let a = RouteAttributes::default();
        let d1 = desired(&[
            ("192.0.2.1/32", a.clone()),
            ("192.0.2.2/32", a.clone()),
            ("2001:db8::1/128", a.clone()),
        ]);
        assert_eq!(rib.converge(&d1, &enc()).len(), 2, "one UPDATE per family");
        assert!(rib.converge(&d1, &enc()).is_empty(), "nothing changed");
        let drained = RouteAttributes {
            as_path_prepend: 3,
            ..a.clone()
        };
        let d2 = desired(&[("192.0.2.1/32", drained), ("192.0.2.2/32", a.clone())]);
        let msgs = rib.converge(&d2, &enc());
        // Withdraw of the IPv6 VIP, then the re-announce of 192.0.2.1 with the longer path.
        assert_eq!(msgs.len(), 2);
        assert_eq!(rib.len(), 2);
        assert!(!rib.contains(&"2001:db8::1/128".parse().unwrap()));
    }

    #[test]
    fn large_sets_split_into_valid_messages() {
        large_set_round_trip(&enc(), (3000, 3000));
        // Without an IPv6 next hop only IPv4 goes out, still in valid sizes.
        large_set_round_trip(
            &PeerEncoding {
                next_hop_v6: None,
                ..enc()
            },
            (3000, 0),
        );
        let tagged = RouteAttributes {
            communities: (0..200).collect(),
            as_path_prepend: 32,
            med: Some(1),
            local_pref: None,
        };
        let mut d = DesiredRoutes::new();
        for i in 0..2000u32 {
            d.insert(
                IpNet::new(Ipv4Addr::from(0x0a00_0000 + i).into(), 32).unwrap(),
                tagged.clone(),
            )
            .unwrap();
        }
        for m in AdjRibOut::default().converge(&d, &enc()) {
            assert!(encode(&BgpMessage::Update(m)).unwrap().len() <= MAX_MESSAGE_LEN);
        }
    }

    fn large_set_round_trip(enc: &PeerEncoding, expect: (usize, usize)) {
        let mut d = DesiredRoutes::new();
        for i in 0..3000u32 {
            let v4 = Ipv4Addr::from(0x0a00_0000 + i);
            d.insert(
                IpNet::new(v4.into(), 32).unwrap(),
                RouteAttributes::default(),
            )
            .unwrap();
            let v6 = Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i));
            d.insert(
                IpNet::new(v6.into(), 128).unwrap(),
                RouteAttributes::default(),
            )
            .unwrap();
        }
        let mut rib = AdjRibOut::default();
        let msgs = rib.converge(&d, enc);
        let mut ctx = crate::wire::parsing_context();
        let mut v4 = 0;
        let mut v6 = 0;
        for m in &msgs {
            let bytes = encode(&BgpMessage::Update(m.clone())).unwrap();
            assert!(bytes.len() <= MAX_MESSAGE_LEN);
            let BgpMessage::Update(back) = decode(&bytes, &mut ctx).unwrap() else {
                panic!("not an update")
            };
            v4 += back.nlri().len();
            for a in back.path_attributes() {
                if let PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) = a.value() {
                    v6 += nlri.len();
                }
            }
        }
        assert_eq!((v4, v6), expect);
        assert_eq!(
            rib.resend(AddressType::Ipv6Unicast, enc).len(),
            msgs.iter().filter(|m| m.nlri().is_empty()).count()
        );
    }

    #[test]
    fn ibgp_and_two_byte_peers_get_the_right_as_path() {
        let ibgp = PeerEncoding {
            ibgp: true,
            ..enc()
        };
        let msgs = AdjRibOut::default().converge(
            &desired(&[("192.0.2.1/32", RouteAttributes::default())]),
            &ibgp,
        );
        let attrs = msgs[0].path_attributes();
        assert!(attrs
            .iter()
            .any(|a| matches!(a.value(), PathAttributeValue::LocalPreference(_))));
        assert!(attrs.iter().any(|a| matches!(a.value(), PathAttributeValue::AsPath(AsPath::As4PathSegments(s)) if s.is_empty())));

        let two_byte = PeerEncoding {
            asn4: false,
            local_asn: 4_200_000_000,
            ..enc()
        };
        let msgs = AdjRibOut::default().converge(
            &desired(&[("192.0.2.1/32", RouteAttributes::default())]),
            &two_byte,
        );
        let attrs = msgs[0].path_attributes();
        assert!(attrs
            .iter()
            .any(|a| matches!(a.value(), PathAttributeValue::As4Path(_))));
        assert!(attrs.iter().any(|a| matches!(a.value(), PathAttributeValue::AsPath(AsPath::As2PathSegments(s)) if s[0].as_numbers() == [AS_TRANS as u16])));
    }

    #[test]
    fn unsendable_family_is_skipped() {
        let v4_only = PeerEncoding {
            next_hop_v6: None,
            ..enc()
        };
        let mut rib = AdjRibOut::default();
        let msgs = rib.converge(
            &desired(&[("2001:db8::1/128", RouteAttributes::default())]),
            &v4_only,
        );
        assert!(msgs.is_empty());
        assert!(rib.is_empty());
    }

    #[test]
    fn end_of_rib_markers_are_recognised() {
        assert_eq!(
            end_of_rib(AddressType::Ipv4Unicast).end_of_rib(),
            Some(AddressType::Ipv4Unicast)
        );
        assert_eq!(
            end_of_rib(AddressType::Ipv6Unicast).end_of_rib(),
            Some(AddressType::Ipv6Unicast)
        );
    }
}
