//! What this node says to its routers: the speaker's configuration, the
//! path attributes of its routes, and the routes a ready node announces.
//!
//! Everything here is computed from the configuration file and the VIP
//! addresses; the decision *whether* to announce lives in
//! [`super::decision`].

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use edgelb_bgp::{
    DesiredRoutes, GracefulRestartConfig, IpNet, PeerConfig, RouteAttributes, SpeakerConfig,
};

use crate::config::{parse_aggregate, parse_community, Config};

/// The speaker's configuration. `restarting`: this process adopted a running
/// data plane (hot restart), so routers are asked to keep our routes until
/// we send End-of-RIB (RFC 4724 Restart State).
pub fn speaker_config(config: &Config, restarting: bool) -> SpeakerConfig {
    let peers = config
        .bgp
        .peers
        .iter()
        .map(|p| {
            let mut peer = PeerConfig::new(p.address, p.remote_asn);
            peer.port = p.port;
            peer.hold_time_secs = p.hold_time_secs;
            peer.next_hop_v4 = match p.next_hop_v4 {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            };
            peer.next_hop_v6 = match p.next_hop_v6 {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            };
            peer.connect_retry_min = Duration::from_millis(200);
            peer.connect_retry_max = Duration::from_secs(5);
            peer
        })
        .collect();
    SpeakerConfig {
        local_asn: config.bgp.local_asn,
        router_id: config.bgp.router_id,
        listen: None,
        graceful_restart: (config.bgp.graceful_restart_secs > 0).then_some(GracefulRestartConfig {
            restart_time_secs: config.bgp.graceful_restart_secs,
            restarting,
        }),
        peers,
    }
}

/// The two attribute sets a node announces with.
#[derive(Debug, Clone)]
pub struct AnnouncedAttributes {
    /// In normal operation: the configured communities, MED and prepend.
    pub normal: RouteAttributes,
    /// While draining with `drain.prepend_secs`: `drain.prepend_count` more
    /// copies of the local ASN, so routers prefer the other nodes' paths.
    pub prepended: RouteAttributes,
}

impl AnnouncedAttributes {
    /// Both sets from the configuration.
    pub fn from_config(config: &Config) -> Self {
        let normal = route_attributes(config);
        let mut prepended = normal.clone();
        prepended.as_path_prepend = prepended
            .as_path_prepend
            .saturating_add(config.drain.prepend_count);
        Self { normal, prepended }
    }

    /// The set for a decision that is (or is not) prepended.
    pub fn get(&self, prepended: bool) -> &RouteAttributes {
        if prepended {
            &self.prepended
        } else {
            &self.normal
        }
    }
}

/// The configured path attributes (communities already validated with the
/// config; one that does not parse is left out).
fn route_attributes(config: &Config) -> RouteAttributes {
    RouteAttributes {
        communities: config
            .bgp
            .communities
            .iter()
            .filter_map(|c| parse_community(c))
            .collect(),
        med: config.bgp.med,
        as_path_prepend: config.bgp.as_path_prepend,
        ..RouteAttributes::default()
    }
}

/// What a ready node announces: a host route per VIP address plus the
/// configured aggregates, all with `attributes`.
pub fn announced_routes(
    config: &Config,
    vips: &[IpAddr],
    attributes: &RouteAttributes,
) -> DesiredRoutes {
    let mut routes = vip_routes(vips.iter().copied(), attributes);
    // Validated with the config; a prefix the speaker still refuses is logged.
    for net in config
        .bgp
        .aggregates
        .iter()
        .filter_map(|a| parse_aggregate(a).ok())
    {
        if let Err(e) = routes.insert(net, attributes.clone()) {
            tracing::warn!(aggregate = %net, error = %e, "aggregate cannot be announced");
        }
    }
    routes
}

/// Routes for a set of VIP addresses: a host route per distinct address
/// (several VIPs may share one address on different ports).
pub fn vip_routes(
    addresses: impl IntoIterator<Item = IpAddr>,
    attributes: &RouteAttributes,
) -> DesiredRoutes {
    let unique: BTreeSet<IpAddr> = addresses.into_iter().collect();
    let mut routes = DesiredRoutes::new();
    for addr in unique {
        let prefix = IpNet::from(addr);
        // A host route never has host bits set; a bad address is skipped
        // rather than taking every other route down with it.
        if let Err(e) = routes.insert(prefix, attributes.clone()) {
            tracing::warn!(%addr, error = %e, "VIP cannot be announced");
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_route_per_address() {
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "2001:db8::10".parse().unwrap();
        let routes = vip_routes([a, a, b], &RouteAttributes::default());
        let prefixes: Vec<String> = routes.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(prefixes, ["198.18.0.10/32", "2001:db8::10/128"]);
    }
}
