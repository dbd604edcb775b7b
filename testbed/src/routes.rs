//! The kernel's routes as a namespace sees them: one prefix's route and its
//! ECMP next hops. To wait for a route, poll these with
//! [`crate::wait::wait_for`]: callers differ in whether a failing `ip` is
//! an error or "no route yet".

use crate::command::Result;
use crate::namespace::Namespace;

/// `ip route show <prefix>` in `ns` (IPv6 when the prefix has a colon);
/// empty when there is no such route.
pub fn kernel_route(ns: &Namespace, prefix: &str) -> Result<String> {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    ns.ip_stdout([family, "route", "show", prefix])
}

/// The next hops (`via` addresses) in `ip route` output, sorted.
pub fn next_hops_of(route: &str) -> Vec<String> {
    let mut hops: Vec<String> = route
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    hops.sort();
    hops
}

/// The sorted next hops of the kernel route for `prefix` in `ns`; empty when
/// there is no route.
pub fn kernel_next_hops(ns: &Namespace, prefix: &str) -> Result<Vec<String>> {
    kernel_route(ns, prefix).map(|r| next_hops_of(&r))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::wait::wait_for;

    #[test]
    fn next_hops_are_read_from_ecmp_output() {
        let route = "192.0.2.10 proto bgp metric 20 \n\
                     \tnexthop via 10.0.2.2 dev r2 weight 1 \n\
                     \tnexthop via 10.0.1.2 dev r1 weight 1 \n";
        assert_eq!(next_hops_of(route), ["10.0.1.2", "10.0.2.2"]);
        assert_eq!(
            next_hops_of("192.0.2.10 via 10.0.1.2 dev r1 proto bgp"),
            ["10.0.1.2"]
        );
        assert!(next_hops_of("").is_empty());
    }

    #[test]
    fn a_route_added_in_a_namespace_is_seen_and_awaited() {
        let ns = Namespace::unique("rt").unwrap();
        crate::namespace::veth_pair(&ns, "d0", &ns, "d1").unwrap();
        ns.add_address("d0", "10.9.0.1/24").unwrap();
        ns.link_up("d0").unwrap();
        ns.link_up("d1").unwrap();
        assert!(kernel_route(&ns, "198.51.100.0/24").unwrap().is_empty());
        ns.ip(["route", "add", "198.51.100.0/24", "via", "10.9.0.2"])
            .unwrap();
        let hops = wait_for(
            "the route",
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                let hops = kernel_next_hops(&ns, "198.51.100.0/24").unwrap_or_default();
                (hops.len() == 1).then_some(hops)
            },
        )
        .unwrap();
        assert_eq!(hops, ["10.9.0.2"]);
    }
}
