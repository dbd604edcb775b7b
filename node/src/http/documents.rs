//! The JSON documents the API answers with. The state document is the
//! desired-state file's form (`lbctl export`, see `crate::desired`) as
//! JSON, plus the table version it was read at; status and stats are the
//! admin protocol's reports with their tuples turned into named fields.

use edgelb_consensus::{ClusterSettings, ConnectionSettings, Vip};
use serde_json::{json, Map, Value};

use crate::{
    admin::protocol::{ClusterStatus, StatsReport},
    desired::{self, DesiredState},
};

/// `GET /v1/state`: `{"version", "settings", "connection", "vips"}`: the
/// document `lbctl export` writes ([`desired::render`], the one renderer,
/// so the two cannot drift), as JSON, plus the table version it was read
/// at.
pub fn state(
    version: u64,
    settings: &ClusterSettings,
    connection: &ConnectionSettings,
    vips: Vec<Vip>,
) -> Result<Value, String> {
    let text = desired::render(&DesiredState {
        settings: Some(*settings),
        connection: Some(*connection),
        vips: vips.into_iter().map(|v| (v.key, v)).collect(),
    });
    let document: toml::Value =
        toml::from_str(&text).map_err(|e| format!("rendering the state: {e}"))?;
    let mut out = serde_json::to_value(document).map_err(|e| e.to_string())?;
    out["version"] = version.into();
    Ok(out)
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
