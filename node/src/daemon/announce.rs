//! When this node announces its VIPs, and which routes.
//!
//! A node announces only while it can forward correctly: its forwarder is
//! attached and programmed with the cluster's current table, and it is in
//! touch with a Raft leader. Otherwise routers must send its share of flows
//! to other nodes, so it withdraws.

use std::{collections::BTreeSet, net::IpAddr};

use edgelb_bgp::{DesiredRoutes, IpNet, RouteAttributes};

/// What the announce decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The forwarder is attached to every configured interface.
    pub attached: bool,
    /// Table version programmed into the data plane.
    pub programmed_version: u64,
    /// Table version of the latest applied state.
    pub applied_version: u64,
    /// A leader is known and (for a leader) a quorum acknowledged it recently.
    pub in_cluster: bool,
    /// Log entries known committed but not yet applied here.
    pub apply_lag: u64,
    /// SIGTERM or an operator drain is in progress.
    pub draining: bool,
}

/// Why a node does not announce (for logs, metrics and `lbctl status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// The forwarder is not attached.
    Detached,
    /// The data plane lags the applied state.
    TablesBehind,
    /// No leader, or this leader lost its quorum.
    NoCluster,
    /// Applied state lags the commit index.
    ApplyLag,
    /// Draining or shutting down.
    Draining,
}

impl Readiness {
    /// `Ok` when the node should announce, or the first reason it should not.
    pub fn decide(&self) -> Result<(), Withheld> {
        if self.draining {
            Err(Withheld::Draining)
        } else if !self.attached {
            Err(Withheld::Detached)
        } else if !self.in_cluster {
            Err(Withheld::NoCluster)
        } else if self.apply_lag > 0 {
            Err(Withheld::ApplyLag)
        } else if self.programmed_version != self.applied_version {
            Err(Withheld::TablesBehind)
        } else {
            Ok(())
        }
    }
}

/// How long a node that announces keeps announcing while its applied state
/// or data plane catches up with a change in flight. Every committed write
/// puts each node briefly behind (applying, then programming the maps);
/// withdrawing for that would flap the routes on every write, and routers
/// re-hashing flows to other nodes break established connections. A node
/// still behind after this long is stuck, and withdraws.
pub const CATCH_UP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Tells a transient lag (keep the current announcement) from a stuck node.
#[derive(Debug, Default)]
pub struct CatchUp {
    behind_since: Option<std::time::Instant>,
}

impl CatchUp {
    /// Whether to keep the current announcement unchanged although
    /// `verdict` says withhold: the node announces now, is only behind
    /// (`TablesBehind`, `ApplyLag`), and has been for less than `grace`.
    pub fn hold(&mut self, announcing: bool, verdict: &Result<(), Withheld>, now: std::time::Instant, grace: std::time::Duration) -> bool {
        match verdict {
            Err(Withheld::TablesBehind | Withheld::ApplyLag) if announcing => {
                let since = *self.behind_since.get_or_insert(now);
                now.duration_since(since) < grace
            }
            _ => {
                self.behind_since = None;
                false
            }
        }
    }
}

/// Routes for a set of VIP addresses: a host route per distinct address
/// (several VIPs may share one address on different ports).
pub fn vip_routes(addresses: impl IntoIterator<Item = IpAddr>, attributes: &RouteAttributes) -> DesiredRoutes {
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

    fn ready() -> Readiness {
        Readiness {
            attached: true,
            programmed_version: 7,
            applied_version: 7,
            in_cluster: true,
            apply_lag: 0,
            draining: false,
        }
    }

    #[test]
    fn announces_only_when_everything_is_in_order() {
        assert_eq!(ready().decide(), Ok(()));
        assert_eq!(Readiness { draining: true, ..ready() }.decide(), Err(Withheld::Draining));
        assert_eq!(Readiness { attached: false, ..ready() }.decide(), Err(Withheld::Detached));
        assert_eq!(Readiness { in_cluster: false, ..ready() }.decide(), Err(Withheld::NoCluster));
        assert_eq!(Readiness { apply_lag: 3, ..ready() }.decide(), Err(Withheld::ApplyLag));
        assert_eq!(Readiness { programmed_version: 6, ..ready() }.decide(), Err(Withheld::TablesBehind));
    }

    #[test]
    fn a_node_catching_up_keeps_announcing_for_a_while_only() {
        use std::time::{Duration, Instant};
        let (grace, t0) = (Duration::from_secs(3), Instant::now());
        let mut c = CatchUp::default();
        let behind = Err(Withheld::TablesBehind);
        assert!(c.hold(true, &behind, t0, grace));
        assert!(c.hold(true, &Err(Withheld::ApplyLag), t0 + Duration::from_secs(2), grace));
        assert!(!c.hold(true, &behind, t0 + Duration::from_secs(3), grace), "stuck: withdraw");
        // Caught up: the clock starts again at the next lag.
        assert!(!c.hold(true, &Ok(()), t0 + Duration::from_secs(4), grace));
        assert!(c.hold(true, &behind, t0 + Duration::from_secs(10), grace));
        // Not announcing, or a real reason: never held.
        assert!(!CatchUp::default().hold(false, &behind, t0, grace));
        assert!(!CatchUp::default().hold(true, &Err(Withheld::NoCluster), t0, grace));
        assert!(!CatchUp::default().hold(true, &Err(Withheld::Draining), t0, grace));
    }

    #[test]
    fn one_host_route_per_address() {
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "2001:db8::10".parse().unwrap();
        let routes = vip_routes([a, a, b], &RouteAttributes::default());
        let prefixes: Vec<String> = routes.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(prefixes, ["198.18.0.10/32", "2001:db8::10/128"]);
    }
}
