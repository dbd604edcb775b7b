//! Configuration of the sim's router (FRR's bgpd); testbed starts FRR itself.

/// bgpd configuration of the sim's router: passive eBGP to every LB node
/// (AS `lb_asn`), ECMP over all of them, nothing sent back to them.
pub fn router_config(
    router_asn: u32,
    router_id: &str,
    lb_asn: u32,
    neighbors: &[String],
) -> String {
    let mut c = format!(
        "hostname sim-router\n\
         route-map DENY-ALL deny 10\n\
         route-map ACCEPT permit 10\n\
         router bgp {router_asn}\n \
         bgp router-id {router_id}\n \
         no bgp ebgp-requires-policy\n \
         bgp bestpath as-path multipath-relax\n \
         bgp graceful-restart\n \
         neighbor LB peer-group\n \
         neighbor LB remote-as {lb_asn}\n \
         neighbor LB passive\n \
         neighbor LB timers 1 3\n \
         neighbor LB timers connect 1\n"
    );
    for n in neighbors {
        c.push_str(&format!(" neighbor {n} peer-group LB\n"));
    }
    c.push_str(
        " address-family ipv4 unicast\n  \
         maximum-paths 64\n  \
         neighbor LB route-map ACCEPT in\n  \
         neighbor LB route-map DENY-ALL out\n \
         exit-address-family\n",
    );
    c
}
