//! The JSON documents the API answers with. The state document is the
//! desired-state file's form (`lbctl export`, see `crate::desired`) as
//! JSON, plus the table version it was read at; status and stats are the
//! admin protocol's reports with their tuples turned into named fields.

use edgelb_consensus::{ClusterSettings, Encapsulation, Vip};
use serde_json::{json, Map, Value};

use crate::{
    admin::protocol::{ClusterStatus, StatsReport},
    desired::state_name,
};

/// `GET /v1/state`: `{"version", "settings", "vips"}`, with every field the
/// desired-state file has, written out as `lbctl export` writes it (VIPs by
/// key, backends by address, defaults included).
pub fn state(version: u64, settings: &ClusterSettings, vips: &[Vip]) -> Value {
    let mut sorted: Vec<&Vip> = vips.iter().collect();
    sorted.sort_by_key(|v| v.key);
    let vips: Vec<Value> = sorted
        .into_iter()
        .map(|vip| {
            let mut entry = Map::new();
            entry.insert("vip".into(), vip.key.to_string().into());
            match vip.encapsulation {
                Encapsulation::IpIp => {
                    entry.insert("encap".into(), "ipip".into());
                }
                Encapsulation::Gue { port } => {
                    entry.insert("encap".into(), "gue".into());
                    entry.insert("gue_port".into(), port.into());
                }
            }
            entry.insert(
                "hash_no_source_port".into(),
                vip.flags.hash_without_source_port.into(),
            );
            entry.insert(
                "hash_dst_port_only".into(),
                vip.flags.hash_dst_port_only.into(),
            );
            // `Vip::backends` is keyed by address: already in address order.
            let backends: Vec<Value> = vip
                .backends
                .values()
                .map(|b| {
                    json!({
                        "address": b.address.to_string(),
                        "weight": b.weight,
                        "state": state_name(b.state),
                    })
                })
                .collect();
            entry.insert("backends".into(), backends.into());
            Value::Object(entry)
        })
        .collect();
    json!({
        "version": version,
        "settings": { "hash_seed": settings.hash_seed, "table_size": settings.table_size },
        "vips": vips,
    })
}

/// `GET /v1/status`: `{"leader", "version", "nodes": [{"id", "report"} or
/// {"id", "error"}]}`; a report's `xdp` is `[{"interface", "mode"}]`.
pub fn status(s: &ClusterStatus) -> Value {
    let nodes: Vec<Value> = s
        .nodes
        .iter()
        .map(|(id, report)| match report {
            Ok(r) => {
                let mut report = serde_json::to_value(r).unwrap_or(Value::Null);
                report["xdp"] = r
                    .xdp
                    .iter()
                    .map(|(interface, mode)| json!({ "interface": interface, "mode": mode }))
                    .collect();
                json!({ "id": id, "report": report })
            }
            Err(e) => json!({ "id": id, "error": e }),
        })
        .collect();
    json!({ "leader": s.leader, "version": s.version, "nodes": nodes })
}

/// `GET /v1/stats`: this node's counters, `{"vips": [{"vip", "packets",
/// "bytes"}], "backends": [{"address", "packets", "bytes"}], "drops":
/// {NAME: N}, "cache": {NAME: N}}` (and any further field of the report
/// as the admin protocol serializes it).
pub fn stats(r: &StatsReport) -> Value {
    let named = |pairs: &[(String, u64)]| -> Value {
        pairs
            .iter()
            .map(|(name, n)| (name.clone(), Value::from(*n)))
            .collect::<Map<_, _>>()
            .into()
    };
    let mut out = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    out["vips"] = r
        .vips
        .iter()
        .map(|(key, packets, bytes)| {
            json!({ "vip": key.to_string(), "packets": packets, "bytes": bytes })
        })
        .collect();
    out["backends"] = r
        .backends
        .iter()
        .map(|(address, packets, bytes)| {
            json!({ "address": address.to_string(), "packets": packets, "bytes": bytes })
        })
        .collect();
    out["drops"] = named(&r.drops);
    out["cache"] = named(&r.cache);
    out
}
