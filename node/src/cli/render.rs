//! Human-readable tables for `lbctl` answers (`--json` prints the answer as is).

use std::fmt::Write as _;

use edgelb_consensus::{BackendState, Encapsulation, Vip};

use crate::admin::protocol::{ClusterStatus, LookupResult, MemberInfo, StatsReport};

/// Formats rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.len());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let _ = write!(l, "{:<w$}  ", c, w = widths[i]);
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn encap(e: &Encapsulation) -> String {
    match e {
        Encapsulation::IpIp => "ipip".into(),
        Encapsulation::Gue { port } => format!("gue:{port}"),
    }
}

fn state(s: BackendState) -> &'static str {
    match s {
        BackendState::Active => "active",
        BackendState::Draining => "draining",
        BackendState::Down => "down",
    }
}

/// `lbctl vip list`.
pub fn vips(version: u64, vips: &[Vip]) -> String {
    let rows: Vec<Vec<String>> = vips
        .iter()
        .map(|v| {
            let mut flags = Vec::new();
            if v.flags.hash_without_source_port {
                flags.push("no-sport");
            }
            if v.flags.hash_dst_port_only {
                flags.push("dport-only");
            }
            let active = v
                .backends
                .values()
                .filter(|b| b.state == BackendState::Active)
                .count();
            vec![
                v.key.to_string(),
                encap(&v.encapsulation),
                if flags.is_empty() {
                    "-".into()
                } else {
                    flags.join(",")
                },
                format!("{active}/{}", v.backends.len()),
            ]
        })
        .collect();
    format!(
        "table version {version}\n{}",
        table(&["VIP", "ENCAP", "HASH", "ACTIVE/BACKENDS"], &rows)
    )
}

/// `lbctl backend list`.
pub fn backends(vip: &Vip) -> String {
    let total: u64 = vip
        .backends
        .values()
        .filter(|b| b.state == BackendState::Active)
        .map(|b| u64::from(b.weight))
        .sum();
    let rows: Vec<Vec<String>> = vip
        .backends
        .values()
        .map(|b| {
            let share = if b.state == BackendState::Active && total > 0 {
                format!("{:.1}%", 100.0 * b.weight as f64 / total as f64)
            } else {
                "0.0%".into()
            };
            vec![
                b.address.to_string(),
                b.weight.to_string(),
                state(b.state).into(),
                share,
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        vip.key,
        table(&["BACKEND", "WEIGHT", "STATE", "SHARE"], &rows)
    )
}

/// `lbctl status`.
pub fn status(s: &ClusterStatus) -> String {
    let rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|(id, r)| match r {
            Ok(r) => {
                let xdp = r
                    .xdp
                    .iter()
                    .map(|(i, m)| format!("{i}:{m}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let established = r
                    .bgp_peers
                    .iter()
                    .filter(|p| p.state == "Established")
                    .count();
                vec![
                    id.to_string(),
                    r.role.clone(),
                    r.term.to_string(),
                    r.applied_index.map_or("-".into(), |i| i.to_string()),
                    r.table_version.to_string(),
                    r.table_digest.clone(),
                    if xdp.is_empty() { "-".into() } else { xdp },
                    format!("{established}/{}", r.bgp_peers.len()),
                    if r.announcing {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                ]
            }
            Err(e) => vec![id.to_string(), format!("unreachable: {e}")],
        })
        .collect();
    let digests: std::collections::BTreeSet<&str> = s
        .nodes
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|r| r.table_digest.as_str())
        .collect();
    let agreement = if digests.len() == 1 {
        "all reachable nodes agree"
    } else {
        "NODES DISAGREE"
    };
    format!(
        "leader {}  table version {}  digests: {agreement}\n{}",
        s.leader.map_or("none".into(), |l| l.to_string()),
        s.version,
        table(
            &[
                "NODE",
                "ROLE",
                "TERM",
                "APPLIED",
                "VERSION",
                "DIGEST",
                "XDP",
                "BGP-UP",
                "ANNOUNCING"
            ],
            &rows
        )
    )
}

/// `lbctl node list`.
pub fn nodes(nodes: &[MemberInfo]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let admin = n.admin.map_or_else(|| "-".to_owned(), |a| a.to_string());
            vec![
                n.id.to_string(),
                n.addr.clone(),
                if n.voter { "voter" } else { "learner" }.into(),
                admin,
            ]
        })
        .collect();
    table(&["NODE", "ADDRESS", "ROLE", "ADMIN"], &rows)
}

/// `lbctl stats`: rates between two samples `secs` apart.
pub fn stats(before: &StatsReport, after: &StatsReport, secs: f64) -> String {
    let rate = |a: u64, b: u64| format!("{:.1}", b.saturating_sub(a) as f64 / secs);
    let vip_rows: Vec<Vec<String>> = after
        .vips
        .iter()
        .map(|(k, p, b)| {
            let (p0, b0) = before
                .vips
                .iter()
                .find(|(k0, _, _)| k0 == k)
                .map_or((0, 0), |(_, p, b)| (*p, *b));
            vec![k.to_string(), rate(p0, *p), rate(b0, *b), p.to_string()]
        })
        .collect();
    let backend_rows: Vec<Vec<String>> = after
        .backends
        .iter()
        .map(|(a, p, b)| {
            let (p0, b0) = before
                .backends
                .iter()
                .find(|(a0, _, _)| a0 == a)
                .map_or((0, 0), |(_, p, b)| (*p, *b));
            vec![a.to_string(), rate(p0, *p), rate(b0, *b), p.to_string()]
        })
        .collect();
    let drop_rows: Vec<Vec<String>> = after
        .drops
        .iter()
        .map(|(r, n)| vec![r.clone(), n.to_string()])
        .collect();
    let cache_rows: Vec<Vec<String>> = after
        .cache
        .iter()
        .map(|(e, n)| {
            let n0 = before
                .cache
                .iter()
                .find(|(e0, _)| e0 == e)
                .map_or(0, |(_, n)| *n);
            vec![e.clone(), rate(n0, *n), n.to_string()]
        })
        .collect();
    format!(
        "{}\n{}\n{}\n{}",
        table(&["VIP", "PKT/S", "BYTES/S", "PACKETS"], &vip_rows),
        table(&["BACKEND", "PKT/S", "BYTES/S", "PACKETS"], &backend_rows),
        table(&["DROP REASON", "PACKETS"], &drop_rows),
        table(&["CACHE EVENT", "PER S", "COUNT"], &cache_rows)
    )
}

/// `lbctl lookup`.
pub fn lookup(r: &LookupResult) -> String {
    // Both owners when the flow moved within the second-hop window: a
    // non-SYN packet missing the cache goes to `backend` carrying `previous`.
    let previous = r
        .previous_backend
        .map_or(String::new(), |p| format!("  previous {p} (second hop)"));
    format!(
        "vip {}  hash {:#010x}  slot {}  backend {}{previous}\n",
        r.vip,
        r.hash,
        r.slot,
        r.backend
            .map_or("none (no usable backend: dropped)".into(), |b| b
                .to_string())
    )
}

/// `lbctl apply --dry-run` (and what `apply` did): every change, then the
/// share of each affected VIP's Maglev slots that moves.
pub fn plan(p: &crate::desired::Plan) -> String {
    if p.commands.is_empty() {
        return format!(
            "no changes: the cluster matches (table version {})\n",
            p.from_version
        );
    }
    let rows: Vec<Vec<String>> = p
        .changes
        .iter()
        .map(|c| {
            vec![
                c.vip.map_or("(settings)".into(), |v| v.to_string()),
                c.backend.map_or("-".into(), |b| b.to_string()),
                c.change.into(),
                format!("{} → {}", c.old, c.new),
            ]
        })
        .collect();
    let moved: Vec<Vec<String>> = p
        .moved
        .iter()
        .map(|(k, share)| vec![k.to_string(), format!("{:.1}%", 100.0 * share)])
        .collect();
    format!(
        "plan from table version {}: {} changes in one batch\n{}\n{}",
        p.from_version,
        p.changes.len(),
        table(&["VIP", "BACKEND", "CHANGE", "OLD → NEW"], &rows),
        table(&["VIP", "SLOTS MOVED"], &moved)
    )
}

/// `lbctl --json apply`: the plan, and the table `version` after it (the
/// plan's own version for a dry run or when there is nothing to do).
pub fn plan_json(p: &crate::desired::Plan, dry_run: bool, version: u64) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = p
        .changes
        .iter()
        .map(|c| {
            serde_json::json!({
                "vip": c.vip.map(|v| v.to_string()),
                "backend": c.backend,
                "change": c.change,
                "old": c.old,
                "new": c.new,
            })
        })
        .collect();
    let moved: std::collections::BTreeMap<String, f64> =
        p.moved.iter().map(|(k, s)| (k.to_string(), *s)).collect();
    serde_json::json!({
        "from_version": p.from_version,
        "dry_run": dry_run,
        "changes": changes,
        "moved": moved,
        "version": version,
    })
}
