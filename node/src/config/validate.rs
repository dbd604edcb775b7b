//! The rules each configuration field must satisfy beyond its type.

use std::net::IpAddr;

use super::{parse_aggregate, parse_community, Config};

impl Config {
    /// Checks every field's range; the error names the first bad field
    /// (dotted path) and what is wrong with it.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, msg: &str| Err((field.to_owned(), msg.to_owned()));
        if self.node.id == 0 {
            return bad("node.id", "must be at least 1");
        }
        let c = &self.cluster;
        if c.election_timeout_ms < 50 || c.election_timeout_ms > 60_000 {
            return bad("cluster.election_timeout_ms", "must be within 50..=60000");
        }
        if c.heartbeat_ms == 0 || c.heartbeat_ms * 2 > c.election_timeout_ms {
            return bad(
                "cluster.heartbeat_ms",
                "must be at least 1 and at most half of election_timeout_ms",
            );
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, m) in c.initial_members.iter().enumerate() {
            if m.id == 0 || !ids.insert(m.id) {
                return Err((
                    format!("cluster.initial_members[{i}].id"),
                    "must be unique and at least 1".into(),
                ));
            }
        }
        if !c.initial_members.is_empty() && !ids.contains(&self.node.id) {
            return bad(
                "cluster.initial_members",
                "must include this node's own id (node.id)",
            );
        }
        let x = &self.xdp;
        if x.interfaces.is_empty() {
            return bad("xdp.interfaces", "must name at least one interface");
        }
        for (i, name) in x.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err((
                    format!("xdp.interfaces[{i}]"),
                    format!("`{name}` is not a valid interface name"),
                ));
            }
        }
        if let Err(e) = self.encap_source_v4() {
            return bad("xdp.encap_source_v4", &e);
        }
        if let Err(e) = self.encap_source_v6() {
            return bad("xdp.encap_source_v6", &e);
        }
        if x.conn_table_size < 1024 || x.conn_table_size > (1 << 26) {
            return bad("xdp.conn_table_size", "must be within 1024..=67108864");
        }
        if x.udp_flow_timeout_secs == 0 {
            return bad("xdp.udp_flow_timeout_secs", "must be at least 1");
        }
        if let Err(e) = x.flood_threshold.threshold() {
            return bad("xdp.flood_threshold", &e);
        }
        let b = &self.bgp;
        if b.local_asn == 0 || b.local_asn == 23456 {
            return bad("bgp.local_asn", "0 and 23456 (AS_TRANS) are reserved");
        }
        for (i, comm) in b.communities.iter().enumerate() {
            if parse_community(comm).is_none() {
                return Err((
                    format!("bgp.communities[{i}]"),
                    format!("`{comm}` is not ASN:value with both parts in 0..=65535"),
                ));
            }
        }
        if b.as_path_prepend > 10 {
            return bad("bgp.as_path_prepend", "must be within 0..=10");
        }
        for (i, agg) in b.aggregates.iter().enumerate() {
            if let Err(e) = parse_aggregate(agg) {
                return Err((format!("bgp.aggregates[{i}]"), e));
            }
        }
        if b.graceful_restart_secs > 4095 {
            return bad(
                "bgp.graceful_restart_secs",
                "must be within 0..=4095 (RFC 4724)",
            );
        }
        if b.peers.is_empty() {
            return bad("bgp.peers", "must list at least one peer");
        }
        for (i, p) in b.peers.iter().enumerate() {
            let f = |name: &str| format!("bgp.peers[{i}].{name}");
            if p.remote_asn == 0 || p.remote_asn == 23456 {
                return Err((
                    f("remote_asn"),
                    "0 and 23456 (AS_TRANS) are reserved".into(),
                ));
            }
            if p.port == 0 {
                return Err((f("port"), "must be at least 1".into()));
            }
            if p.hold_time_secs != 0 && p.hold_time_secs < 3 {
                return Err((
                    f("hold_time_secs"),
                    "must be 0 or at least 3 (RFC 4271)".into(),
                ));
            }
            if matches!(p.next_hop_v4, Some(IpAddr::V6(_))) {
                return Err((f("next_hop_v4"), "must be an IPv4 address".into()));
            }
            if matches!(p.next_hop_v6, Some(IpAddr::V4(_))) {
                return Err((f("next_hop_v6"), "must be an IPv6 address".into()));
            }
        }
        let h = &self.health;
        if h.interval_ms < 10 {
            return bad("health.interval_ms", "must be at least 10");
        }
        if h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
            return bad(
                "health.timeout_ms",
                "must be at least 1 and at most interval_ms",
            );
        }
        if h.rise == 0 {
            return bad("health.rise", "must be at least 1");
        }
        if h.fall == 0 {
            return bad("health.fall", "must be at least 1");
        }
        if !h.http_path.starts_with('/') || h.http_path.contains(['\r', '\n', ' ']) {
            return bad(
                "health.http_path",
                "must start with `/` and contain no spaces or line breaks",
            );
        }
        if !(100..=599).contains(&h.http_expect_status) {
            return bad("health.http_expect_status", "must be within 100..=599");
        }
        if self.drain.prepend_secs > 3600 {
            return bad("drain.prepend_secs", "must be at most 3600");
        }
        if !(1..=10).contains(&self.drain.prepend_count) {
            return bad("drain.prepend_count", "must be within 1..=10");
        }
        let max_body = crate::admin::frame::MAX_FRAME;
        if !(1024..=max_body).contains(&self.http.max_body_bytes) {
            return Err((
                "http.max_body_bytes".into(),
                format!("must be within 1024..={max_body}"),
            ));
        }
        if self.drain.period_secs > 3600 {
            return bad("drain.period_secs", "must be at most 3600");
        }
        Ok(())
    }
}
