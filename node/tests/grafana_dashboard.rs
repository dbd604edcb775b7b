//! The shipped Grafana dashboard (deploy/grafana/edgelb.json) is well formed.
//! That every metric it queries is one the daemon exports is checked against
//! a real scrape in `daemon_cli.rs`.

mod support;

use std::collections::BTreeSet;

#[test]
fn dashboard_is_well_formed() {
    let d = support::dashboard();
    assert_eq!(d["uid"], "edgelb");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["datasource", "instance"]);
    let mut ids = BTreeSet::new();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 15, "{}", panels.len());
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("numeric id")),
            "duplicate panel id in {title}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "{title}: gridPos {g}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds unique");
        for t in targets {
            let e = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: target without expr"));
            for (open, close) in [('(', ')'), ('{', '}'), ('[', ']')] {
                assert_eq!(
                    e.matches(open).count(),
                    e.matches(close).count(),
                    "{title}: unbalanced {open}{close} in {e}"
                );
            }
            assert!(e.contains("edgelb_"), "{title}: {e}");
            assert!(
                e.contains("$instance"),
                "{title}: follows the node selector: {e}"
            );
        }
    }
}

#[test]
fn dashboard_covers_every_metric_family_of_the_issue() {
    let used = support::dashboard_metrics(&support::dashboard());
    for family in [
        "edgelb_vip_packets_total",
        "edgelb_vip_bytes_total",
        "edgelb_backend_packets_total",
        "edgelb_xdp_events_total",
        "edgelb_table_version",
        "edgelb_table_digest_info",
        "edgelb_raft_term",
        "edgelb_raft_leader",
        "edgelb_raft_commit_index",
        "edgelb_raft_applied_index",
        "edgelb_bgp_session_established",
        "edgelb_bgp_prefixes_announced",
        "edgelb_bgp_announcing",
        "edgelb_health_check_up",
    ] {
        assert!(
            used.contains(family),
            "the dashboard does not show {family}"
        );
    }
}
