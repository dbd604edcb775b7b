//! What the scenarios that change the table and move flows between LB nodes
//! (`rehash-after-change`, `join-after-change`) share: their starting
//! cluster, and their second-hop counters per step (candidates the LB
//! nodes sent, and what the backends' decapsulators did with them, as
//! deltas over one step).
//!
//! The nodes' counters die with a killed daemon and may restart from 0
//! with a restarted one, so each node's growth is taken reading by
//! reading (a victim's just before it is killed). The backends never
//! restart; they write their counters every half second, so a step's last
//! half second can show in the next step.

use serde_json::{json, Value};

use std::time::Duration;

use crate::cluster::{backend_addr, Cluster, ClusterSpec, VIP, VIP_TCP_PORT};

/// The start of both scenarios: a cluster shaped by `spec` with `backends`
/// backend hosts and second-hop handling, serving the TCP VIP from all but
/// the last backend (the one the scenarios add), the second-hop window at
/// `window_secs`, every running node converged.
pub fn second_hop_cluster(
    spec: ClusterSpec,
    backends: usize,
    window_secs: u32,
) -> anyhow::Result<Cluster> {
    let cluster = Cluster::start(ClusterSpec {
        backends,
        second_hop: true,
        ..spec
    })?;
    let vip = format!("{VIP}:{VIP_TCP_PORT}/tcp");
    cluster.lbctl_any(&["vip", "add", &vip])?;
    for j in 1..backends {
        cluster.lbctl_any(&["backend", "add", &vip, &backend_addr(j).to_string()])?;
    }
    let window = window_secs.to_string();
    cluster.lbctl_any(&[
        "settings",
        "connection",
        "--second-hop-window-secs",
        &window,
    ])?;
    cluster.converge(Duration::from_secs(20))?;
    Ok(cluster)
}

/// The decapsulator counters summed over the backends, in [`StepCounts`]
/// order.
const BACKEND_COUNTERS: [&str; 5] = [
    "second_hop_forwarded",
    "second_hop_delivered",
    "second_hop_loop_refused",
    "second_hop_invalid",
    "second_hop_no_route",
];

/// One step's second-hop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCounts {
    /// Candidates the LB nodes sent (`second_hop_sent`).
    pub sent: u64,
    /// Packets backends forwarded to the previous owner (second hops taken).
    pub forwarded: u64,
    /// Candidates backends delivered themselves.
    pub delivered: u64,
    /// Second hops refused as loops.
    pub refused: u64,
    /// Invalid second-hop headers.
    pub invalid: u64,
    /// Second hops with no route to the previous owner.
    pub no_route: u64,
}

impl StepCounts {
    /// The counters as JSON fields (named like the counters).
    pub fn json(&self) -> Value {
        json!({
            "second_hop_sent": self.sent, "second_hop_forwarded": self.forwarded,
            "second_hop_delivered": self.delivered, "second_hop_loop_refused": self.refused,
            "second_hop_invalid": self.invalid, "second_hop_no_route": self.no_route,
        })
    }
}

/// Readings carried from step to step.
pub struct Tally {
    /// Backends of the cluster.
    backends: usize,
    /// Each LB node's last `second_hop_sent` reading (index: node - 1).
    node_sent: Vec<u64>,
    /// Candidates sent in the running step so far.
    sent: u64,
    /// Backend counter sums when the running step began.
    backend_start: [u64; 5],
}

impl Tally {
    /// Starts counting: reads every running node and every backend.
    pub fn start(cluster: &Cluster, backends: usize) -> Self {
        let mut tally = Self {
            backends,
            node_sent: vec![0; cluster.lbs.len()],
            sent: 0,
            backend_start: backend_sums(cluster, backends),
        };
        for i in 1..=cluster.lbs.len() {
            tally.read_node(cluster, i);
        }
        tally.sent = 0;
        tally
    }

    /// Adds LB node `i`'s candidates since its last reading to the running
    /// step (nothing if it is not running or cannot be read). A reading
    /// below the last one is a restarted daemon counting from 0 again.
    pub fn read_node(&mut self, cluster: &Cluster, i: usize) {
        if cluster.lbs[i - 1].process.is_none() {
            return;
        }
        let Some(now) = sent(cluster, i) else {
            return;
        };
        let last = self.node_sent[i - 1];
        self.sent += if now >= last { now - last } else { now };
        self.node_sent[i - 1] = now;
    }

    /// Ends the running step (reading every running node and the backends)
    /// and starts the next; returns the ended step's counters.
    pub fn end_step(&mut self, cluster: &Cluster) -> StepCounts {
        for i in 1..=cluster.lbs.len() {
            self.read_node(cluster, i);
        }
        let now = backend_sums(cluster, self.backends);
        let d: Vec<u64> = now
            .iter()
            .zip(self.backend_start)
            .map(|(n, s)| n.saturating_sub(s))
            .collect();
        self.backend_start = now;
        let counts = StepCounts {
            sent: self.sent,
            forwarded: d[0],
            delivered: d[1],
            refused: d[2],
            invalid: d[3],
            no_route: d[4],
        };
        self.sent = 0;
        counts
    }
}

/// The [`BACKEND_COUNTERS`] summed over the backends (a backend whose file
/// cannot be read counts 0).
fn backend_sums(cluster: &Cluster, backends: usize) -> [u64; 5] {
    let stats: Vec<Value> = (1..=backends)
        .filter_map(|j| cluster.decap_stats(j).ok())
        .collect();
    BACKEND_COUNTERS.map(|name| stats.iter().filter_map(|v| v[name].as_u64()).sum())
}

/// `second_hop_sent` of LB node `i`, if it can be read.
fn sent(cluster: &Cluster, i: usize) -> Option<u64> {
    let v = cluster.stats_json(i).ok()?;
    let cache = v["after"]["cache"].as_array()?;
    Some(
        cache
            .iter()
            .filter(|x| x[0].as_str() == Some("second_hop_sent"))
            .filter_map(|x| x[1].as_u64())
            .sum(),
    )
}

/// One step of a run: what it did, when it began, its counters.
pub struct Step {
    /// What the step did (the table's STEP column).
    pub label: &'static str,
    /// When it began (just before its table change).
    pub start: std::time::Instant,
    /// Its counters.
    pub counts: StepCounts,
}

/// Column headers of a run's rows (see [`run_report`]).
pub const HEADER: [&str; 8] = [
    "SECOND HOP",
    "STEP",
    "CONNECTIONS",
    "BROKEN",
    "CANDIDATES SENT",
    "SECOND HOPS TAKEN",
    "LOOPS REFUSED",
    "INVALID",
];

/// One run's report: a row per step, each broken connection counted in
/// the step it was last seen working in (see
/// [`ConnectionOutcome::last_ok`](crate::traffic::ConnectionOutcome));
/// `data` has the run's totals and `steps`, each with its counters and the
/// first reasons its connections broke for.
pub fn run_report(
    name: &'static str,
    window_secs: u32,
    steps: &[Step],
    outcomes: &[crate::traffic::ConnectionOutcome],
    round_trips: u64,
) -> super::Report {
    let mode = if window_secs == 0 {
        "off (window 0)".to_owned()
    } else {
        format!("on (window {window_secs} s)")
    };
    let mut rows = Vec::new();
    let mut data_steps = Vec::new();
    for (k, step) in steps.iter().enumerate() {
        let end = steps.get(k + 1).map(|s| s.start);
        let broke: Vec<_> = super::broken_between(outcomes, step.start, end).collect();
        let c = step.counts;
        rows.push(vec![
            mode.clone(),
            step.label.to_owned(),
            outcomes.len().to_string(),
            broke.len().to_string(),
            c.sent.to_string(),
            c.forwarded.to_string(),
            c.refused.to_string(),
            c.invalid.to_string(),
        ]);
        let mut s = c.json();
        s["step"] = json!(step.label);
        s["broken"] = json!(broke.len());
        s["reasons"] = json!(broke
            .iter()
            .filter_map(|o| o.broken.clone())
            .take(5)
            .collect::<Vec<_>>());
        data_steps.push(s);
    }
    let total = super::broken(outcomes);
    // Broken before the first step began (or never connected): no step's.
    let attributed: usize = data_steps
        .iter()
        .filter_map(|s| s["broken"].as_u64())
        .sum::<u64>() as usize;
    super::Report {
        name,
        header: HEADER.to_vec(),
        rows,
        data: json!({
            "window_secs": window_secs, "connections": outcomes.len(), "broken": total,
            "broken_before_steps": total - attributed,
            "reasons": super::broken_reasons(outcomes, 5),
            "round_trips": round_trips, "steps": data_steps,
        }),
    }
}
