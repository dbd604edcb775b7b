//! Scenario 4: backend add / drain / weight change / remove under long-lived
//! connections; counts established connections broken by each change.
//! Target: zero for add, drain and weight change (the connection tables
//! keep established flows); a removed backend's connections end.

use std::time::Duration;

use serde_json::json;

use super::{broken, Report};
use crate::cluster::{backend_addr, Cluster, ClusterSpec, VIP};

/// Runs the scenario with `connections` long-lived connections per step.
pub fn run(connections: usize) -> anyhow::Result<Report> {
    // Five backends exist; the VIP starts with the first four.
    let cluster = Cluster::start(ClusterSpec {
        backends: 5,
        ..Default::default()
    })?;
    let vip = format!("{VIP}:80/tcp");
    cluster.lbctl_any(&["vip", "add", &vip])?;
    for j in 1..=4 {
        cluster.lbctl_any(&[
            "backend",
            "add",
            &vip,
            &backend_addr(j).to_string(),
            "--weight",
            "100",
        ])?;
    }
    cluster.converge(Duration::from_secs(20))?;
    cluster.wait_for_ecmp(3, Duration::from_secs(30))?;

    let b5 = backend_addr(5).to_string();
    let b1 = backend_addr(1).to_string();
    let b2 = backend_addr(2).to_string();
    let steps: Vec<(&str, Vec<String>)> = vec![
        (
            "add backend b5",
            vec![
                "backend".into(),
                "add".into(),
                vip.clone(),
                b5.clone(),
                "--weight".into(),
                "100".into(),
            ],
        ),
        (
            "weight b5 100 -> 300",
            vec![
                "backend".into(),
                "set-weight".into(),
                vip.clone(),
                b5.clone(),
                "300".into(),
            ],
        ),
        (
            "drain backend b1",
            vec!["backend".into(), "drain".into(), vip.clone(), b1],
        ),
        (
            "remove backend b2",
            vec!["backend".into(), "remove".into(), vip.clone(), b2],
        ),
    ];
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for (label, args) in steps {
        let traffic = cluster.long_lived(connections, Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(1500));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.lbctl_any(&args)?;
        let digest = cluster.converge(Duration::from_secs(20))?;
        std::thread::sleep(Duration::from_secs(2));
        let outcomes = traffic.finish()?;
        let b = broken(&outcomes);
        let on_removed = outcomes
            .iter()
            .filter(|o| o.backend.as_deref() == Some("b2"))
            .count();
        rows.push(vec![
            label.to_owned(),
            outcomes.len().to_string(),
            b.to_string(),
            on_removed.to_string(),
            digest.clone(),
        ]);
        data.push(json!({"step": label, "connections": outcomes.len(), "broken": b,
                         "on_removed_backend": on_removed,
                         "reasons": outcomes.iter().filter_map(|o| o.broken.as_ref().map(|r| format!("{}: {r}", o.backend.as_deref().unwrap_or("-")))).take(5).collect::<Vec<_>>()}));
    }
    Ok(Report {
        name: "backend changes under traffic",
        header: vec!["CHANGE", "CONNECTIONS", "BROKEN", "ON b2", "DIGEST AFTER"],
        rows,
        data: json!({ "steps": data }),
    })
}
