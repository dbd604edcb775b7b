//! Helpers shared by the daemon tests: running `lbctl` and scraping
//! `/metrics` inside the namespace cluster of `edgelb-sim`.

#![allow(dead_code)] // each test binary uses its own subset

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::Output,
    time::Duration,
};

use edgelb_sim::cluster::{
    in_namespace, lb_addr, Cluster, ClusterSpec, CLIENT_ADDR, METRICS_PORT, VIP,
};
use testbed::wait::wait_for;

/// One `lbctl` run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `lbctl` against node `i`.
pub fn lbctl(cluster: &Cluster, i: usize, args: &[&str]) -> Run {
    cluster.lbctl(i, args).expect("running lbctl").into()
}

/// Runs `lbctl` against node `i` and returns its output, failing the test
/// unless it exits 0.
pub fn ok(cluster: &Cluster, i: usize, args: &[&str]) -> String {
    let r = lbctl(cluster, i, args);
    assert_eq!(r.code, Some(0), "lbctl {args:?} failed: {r:?}");
    assert!(r.stderr.is_empty(), "lbctl {args:?} wrote to stderr: {r:?}");
    r.stdout
}

/// `ok` with `--json`, parsed.
pub fn ok_json(cluster: &Cluster, i: usize, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(cluster, i, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("lbctl {all:?}: not JSON ({e}): {out}"))
}

/// Runs `lbctl` expecting failure: a non-zero exit, nothing on stdout and a
/// message containing `needle` on stderr.
pub fn fails(cluster: &Cluster, i: usize, args: &[&str], needle: &str) -> Run {
    let r = lbctl(cluster, i, args);
    assert!(
        matches!(r.code, Some(c) if c != 0),
        "lbctl {args:?} should fail: {r:?}"
    );
    assert!(
        r.stdout.trim().is_empty(),
        "lbctl {args:?} printed a result: {r:?}"
    );
    assert!(
        r.stderr.contains(needle),
        "lbctl {args:?}: stderr lacks `{needle}`: {r:?}"
    );
    r
}

/// GETs `/metrics` of node `i` from the client namespace.
pub fn scrape(cluster: &Cluster, i: usize) -> anyhow::Result<String> {
    let addr = SocketAddr::from((lb_addr(i), METRICS_PORT));
    in_namespace(cluster.client.name(), move || -> anyhow::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        anyhow::ensure!(
            body.starts_with("HTTP/1.1 200"),
            "scrape of {addr}: {}",
            body.lines().next().unwrap_or("")
        );
        Ok(body)
    })?
}

/// One sample of a Prometheus text exposition: `(labels, value)` for every
/// series of `family` whose labels contain every `key="value"` in `want`.
pub fn samples(text: &str, family: &str, want: &[(&str, &str)]) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if name != family {
                return None;
            }
            if !want
                .iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
            {
                return None;
            }
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The metric family names in a Prometheus text exposition.
pub fn families(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// How often the daemon tests poll (testbed::wait::wait_for).
pub const POLL: Duration = Duration::from_millis(100);

/// A default cluster with `backends` backend hosts, once every daemon has
/// registered its admin address (each registration is a version of its
/// own) and all nodes have converged; with the table version then, so a
/// test can count the versions it makes.
pub fn settled_cluster(backends: usize) -> (Cluster, u64) {
    let cluster = Cluster::start(ClusterSpec {
        backends,
        ..ClusterSpec::default()
    })
    .expect("cluster up");
    let registered = wait_for("admin addresses", Duration::from_secs(30), POLL, || {
        let nodes = ok_json(&cluster, 1, &["node", "list"]);
        let all = nodes["nodes"]
            .as_array()?
            .iter()
            .all(|n| !n["admin"].is_null());
        all.then_some(())
    });
    assert!(registered.is_ok(), "{}", cluster.log_tails(20));
    cluster
        .converge(Duration::from_secs(30))
        .expect("converged");
    let v0 = cluster.current_version().expect("version");
    (cluster, v0)
}

/// A default cluster (drain period 1 s) serving the sim's VIP with every
/// backend at weight 100, converged and announced by all three nodes.
pub fn serving_cluster() -> Cluster {
    let cluster = Cluster::start(ClusterSpec {
        drain_secs: 1,
        ..ClusterSpec::default()
    })
    .expect("cluster up");
    cluster.configure_vip(100).expect("VIP configured");
    cluster
        .converge(Duration::from_secs(20))
        .expect("converged");
    cluster
        .wait_for_ecmp(3, Duration::from_secs(30))
        .expect("ECMP over 3 nodes");
    cluster
}

/// Sends the client's traffic to the VIP through LB node `i` only, whatever
/// the router's routes say (a policy route: as a router's flow cache or a
/// slow peer would keep using a node).
pub fn pin_client_to_node(cluster: &Cluster, i: usize) {
    let hop = lb_addr(i).to_string();
    let vip = format!("{VIP}/32");
    let route = ["route", "add", &vip, "via", &hop, "table", "100"];
    cluster.router.ip(route).expect("policy route");
    let (client, vip) = (CLIENT_ADDR.to_string(), VIP.to_string());
    let rule = [
        "rule", "add", "from", &client, "to", &vip, "lookup", "100", "priority", "100",
    ];
    cluster.router.ip(rule).expect("policy rule");
}

/// Every node's programmed table version, once they all agree on a digest
/// at `version` or later; fails unless each is exactly `version`. Returns
/// the digest.
pub fn all_at(cluster: &Cluster, version: u64) -> String {
    let digest = cluster
        .wait_for_agreement(version, Duration::from_secs(30))
        .expect("agreement");
    let s = cluster.status().expect("status");
    for n in s["nodes"].as_array().expect("nodes") {
        assert_eq!(
            n[1]["Ok"]["table_version"].as_u64(),
            Some(version),
            "a node is not at exactly version {version}: {s}"
        );
        assert_eq!(n[1]["Ok"]["table_digest"].as_str(), Some(digest.as_str()));
    }
    digest
}

/// The shipped Grafana dashboard, parsed.
pub fn dashboard() -> serde_json::Value {
    let text = include_str!("../../../deploy/grafana/edgelb.json");
    serde_json::from_str(text).expect("deploy/grafana/edgelb.json is valid JSON")
}

/// Every PromQL expression of the dashboard's panels.
pub fn dashboard_exprs(d: &serde_json::Value) -> Vec<String> {
    d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

/// The `edgelb_*` metric names the dashboard's expressions use.
pub fn dashboard_metrics(d: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for expr in dashboard_exprs(d) {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("edgelb_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// Opens `n` TCP connections to the VIP from the client (each sends a line
/// and expects a backend's answer); how many got an answer.
pub fn tcp_round_trips(cluster: &Cluster, n: usize) -> usize {
    use std::io::{BufRead, BufReader, Write};
    let vip = cluster.vip_tcp();
    in_namespace(cluster.client.name(), move || {
        (0..n)
            .filter(|k| {
                let Ok(mut s) = std::net::TcpStream::connect_timeout(&vip, Duration::from_secs(2))
                else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if writeln!(s, "hello {k}").is_err() {
                    return false;
                }
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with('b')
            })
            .count()
    })
    .unwrap_or(0)
}
