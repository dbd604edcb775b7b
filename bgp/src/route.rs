//! The routes the node daemon wants announced: prefixes and their attributes.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Attributes attached to one announced prefix.
///
/// The next hop is not here: it is always "self", chosen per peer and per
/// address family (see [`crate::PeerConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteAttributes {
    /// Standard communities (RFC 1997), as `asn << 16 | value`.
    #[serde(default)]
    pub communities: Vec<u32>,
    /// MULTI_EXIT_DISC, when set.
    #[serde(default)]
    pub med: Option<u32>,
    /// Extra copies of our ASN in AS_PATH; raising it drains traffic away
    /// from this node before the prefix is withdrawn.
    #[serde(default)]
    pub as_path_prepend: u8,
    /// LOCAL_PREF sent to iBGP peers (ignored on eBGP); 100 when `None`.
    #[serde(default)]
    pub local_pref: Option<u32>,
}

/// A prefix the speaker was asked to announce that it cannot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Host bits set: `10.0.0.1/24` is ambiguous, `10.0.0.0/24` is not.
    #[error("prefix {0} has host bits set")]
    HostBitsSet(IpNet),
    /// Multicast, broadcast and unspecified addresses are not unicast VIPs.
    #[error("prefix {0} is not a unicast prefix")]
    NotUnicast(IpNet),
    /// Attributes that could not fit in one UPDATE message.
    #[error("prefix {prefix}: {what} exceeds {limit}")]
    AttributesTooLarge {
        /// The prefix.
        prefix: IpNet,
        /// Which attribute.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// Most communities per route (keeps every UPDATE under 4096 bytes).
pub const MAX_COMMUNITIES: usize = 256;
/// Most AS-path prepends per route.
pub const MAX_PREPEND: u8 = 32;

/// The full set of routes the speaker converges every peer to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredRoutes {
    routes: BTreeMap<IpNet, RouteAttributes>,
}

impl DesiredRoutes {
    /// An empty set: converging to it withdraws everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a prefix: a VIP (/32, /128) or an aggregate.
    pub fn insert(&mut self, prefix: IpNet, attributes: RouteAttributes) -> Result<(), RouteError> {
        if prefix.trunc() != prefix {
            return Err(RouteError::HostBitsSet(prefix));
        }
        let addr = prefix.addr();
        let bad = addr.is_multicast()
            || addr.is_unspecified() && prefix.prefix_len() == prefix.max_prefix_len()
            || matches!(prefix, IpNet::V4(n) if n.addr().is_broadcast());
        if bad {
            return Err(RouteError::NotUnicast(prefix));
        }
        if attributes.communities.len() > MAX_COMMUNITIES {
            return Err(RouteError::AttributesTooLarge {
                prefix,
                what: "communities",
                limit: MAX_COMMUNITIES,
            });
        }
        if attributes.as_path_prepend > MAX_PREPEND {
            return Err(RouteError::AttributesTooLarge {
                prefix,
                what: "AS-path prepend",
                limit: MAX_PREPEND.into(),
            });
        }
        self.routes.insert(prefix, attributes);
        Ok(())
    }

    /// Removes a prefix; returns whether it was present.
    pub fn remove(&mut self, prefix: &IpNet) -> bool {
        self.routes.remove(prefix).is_some()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when nothing is to be announced.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Attributes of one prefix.
    pub fn get(&self, prefix: &IpNet) -> Option<&RouteAttributes> {
        self.routes.get(prefix)
    }

    /// A copy with every route's AS path prepended `extra` more times (capped
    /// at [`MAX_PREPEND`]): announcing it first makes routers prefer other
    /// nodes, so a node can drain before it withdraws.
    pub fn drained(&self, extra: u8) -> DesiredRoutes {
        let routes = self
            .routes
            .iter()
            .map(|(prefix, attrs)| {
                let mut attrs = attrs.clone();
                attrs.as_path_prepend =
                    attrs.as_path_prepend.saturating_add(extra).min(MAX_PREPEND);
                (*prefix, attrs)
            })
            .collect();
        DesiredRoutes { routes }
    }

    /// All prefixes in a stable order (IPv4 before IPv6, then by address and length).
    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &RouteAttributes)> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_vips_and_aggregates() {
        let mut d = DesiredRoutes::new();
        d.insert("192.0.2.10/32".parse().unwrap(), RouteAttributes::default())
            .unwrap();
        d.insert(
            "2001:db8::10/128".parse().unwrap(),
            RouteAttributes::default(),
        )
        .unwrap();
        d.insert(
            "198.51.100.0/24".parse().unwrap(),
            RouteAttributes::default(),
        )
        .unwrap();
        assert_eq!(d.len(), 3);
        assert!(d.remove(&"198.51.100.0/24".parse().unwrap()));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn drained_prepends_every_route() {
        let mut d = DesiredRoutes::new();
        let p: IpNet = "192.0.2.10/32".parse().unwrap();
        let q: IpNet = "192.0.2.11/32".parse().unwrap();
        d.insert(p, RouteAttributes::default()).unwrap();
        d.insert(
            q,
            RouteAttributes {
                as_path_prepend: 31,
                ..Default::default()
            },
        )
        .unwrap();
        let drained = d.drained(3);
        assert_eq!(drained.get(&p).unwrap().as_path_prepend, 3);
        assert_eq!(drained.get(&q).unwrap().as_path_prepend, MAX_PREPEND);
        assert_eq!(d.get(&p).unwrap().as_path_prepend, 0, "original untouched");
    }

    #[test]
    fn rejects_non_unicast_and_host_bits() {
        let mut d = DesiredRoutes::new();
        let p: IpNet = "198.51.100.1/24".parse().unwrap();
        assert_eq!(
            d.insert(p, RouteAttributes::default()),
            Err(RouteError::HostBitsSet(p))
        );
        let p: IpNet = "224.0.0.1/32".parse().unwrap();
        assert_eq!(
            d.insert(p, RouteAttributes::default()),
            Err(RouteError::NotUnicast(p))
        );
        let p: IpNet = "255.255.255.255/32".parse().unwrap();
        assert_eq!(
            d.insert(p, RouteAttributes::default()),
            Err(RouteError::NotUnicast(p))
        );
        assert!(d.is_empty());
    }
}
