//! The router's view of the cluster: the VIP's ECMP next hops, and Raft
//! partitions made with policy rules in the router.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::bail;
use testbed::{routes, wait::wait_for};

use super::{lb_addr, Cluster, VIP, VIP_TCP_PORT};

impl Cluster {
    /// Waits until the router has an ECMP route to the VIP through exactly
    /// `nodes` next hops; returns them.
    pub fn wait_for_ecmp(&self, nodes: usize, limit: Duration) -> anyhow::Result<Vec<String>> {
        let every = Duration::from_millis(50);
        match self.poll_next_hops("ECMP to the VIP", limit, every, |h| h.len() == nodes)? {
            Ok(hops) => Ok(hops),
            Err(hops) => bail!(
                "router has next hops {hops:?} for {VIP}, wanted {nodes}\n{}\n{}",
                self.router_view(),
                self.log_tails(15)
            ),
        }
    }

    /// What the router's FRR holds for the VIP and its sessions (for
    /// failure messages).
    fn router_view(&self) -> String {
        let vip = format!("{VIP}/32");
        [
            format!("show bgp ipv4 unicast {VIP}/32"),
            "show bgp summary".to_owned(),
            format!("show ip route {VIP}/32"),
        ]
        .iter()
        .map(|c| match self.frr.vtysh(c) {
            Ok(out) => format!("--- router: {c} ---\n{out}"),
            Err(e) => format!("--- router: {c}: {e} ---\n"),
        })
        .chain(
            [vec!["-d", "route", "show", &vip], vec!["nexthop", "show"]]
                .into_iter()
                .map(|args| match self.router.ip_stdout(args.clone()) {
                    Ok(out) => format!("--- router: ip {} ---\n{out}", args.join(" ")),
                    Err(e) => format!("--- router: ip {}: {e} ---\n", args.join(" ")),
                }),
        )
        .collect()
    }

    /// The router's kernel next hops for the VIP.
    pub fn vip_next_hops(&self) -> anyhow::Result<Vec<String>> {
        let mut hops = routes::kernel_next_hops(&self.router, &format!("{VIP}/32"))?;
        hops.dedup();
        Ok(hops)
    }

    /// Waits until the router's next hops for the VIP satisfy `f`; returns
    /// the time it took.
    pub fn wait_next_hops(
        &self,
        limit: Duration,
        f: impl Fn(&[String]) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let every = Duration::from_millis(20);
        if let Err(hops) = self.poll_next_hops("next hops", limit, every, f)? {
            bail!("router next hops {hops:?} did not change as expected within {limit:?}");
        }
        Ok(start.elapsed())
    }

    /// Reads the VIP's next hops every `every` until `want` accepts them:
    /// `Ok(Ok(hops))` then, `Ok(Err(last hops seen))` after `limit`, and
    /// `Err` at once if reading them fails (that is not "no route yet").
    fn poll_next_hops(
        &self,
        what: &str,
        limit: Duration,
        every: Duration,
        want: impl Fn(&[String]) -> bool,
    ) -> anyhow::Result<Result<Vec<String>, Vec<String>>> {
        let mut hops = Vec::new();
        let mut failed = None;
        let found = wait_for(what, limit, every, || {
            match self.vip_next_hops() {
                Ok(h) => hops = h,
                Err(e) => {
                    failed = Some(e);
                    return Some(());
                }
            }
            want(&hops).then_some(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(match found {
            Ok(()) => Ok(hops),
            Err(_) => Err(hops),
        })
    }

    /// Cuts LB node `i` off from the other nodes' Raft traffic (policy
    /// rules in the router; its BGP session and client traffic keep going).
    pub fn partition(&self, i: usize) -> anyhow::Result<()> {
        self.blackhole_rules(i, "add")
    }

    /// Undoes [`Cluster::partition`].
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        self.blackhole_rules(i, "del")
    }

    /// Adds or deletes (`action`) the router's blackhole rules between LB
    /// node `i` and every other LB node, in both directions.
    fn blackhole_rules(&self, i: usize, action: &str) -> anyhow::Result<()> {
        for k in (1..=self.lbs.len()).filter(|k| *k != i) {
            for (from, to) in [(lb_addr(k), lb_addr(i)), (lb_addr(i), lb_addr(k))] {
                self.router.ip([
                    "rule",
                    action,
                    "from",
                    &from.to_string(),
                    "to",
                    &to.to_string(),
                    "blackhole",
                ])?;
            }
        }
        Ok(())
    }

    /// The socket address of the VIP's TCP service.
    pub fn vip_tcp(&self) -> SocketAddr {
        SocketAddr::from((VIP, VIP_TCP_PORT))
    }

    /// Opens `count` long-lived connections from the client namespace to the
    /// VIP's TCP service, each sending a line every `period`.
    pub fn long_lived(
        &self,
        count: usize,
        period: std::time::Duration,
    ) -> crate::traffic::LongLived {
        crate::traffic::LongLived::start(self.client.name(), self.vip_tcp(), count, period)
    }
}
