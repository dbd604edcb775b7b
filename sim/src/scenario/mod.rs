//! The simulation's scenarios. Each brings up its own cluster, acts on it
//! under traffic, and returns a [`Report`]: a short table for people and
//! JSON for scripts and tests.

pub mod backend_changes;
pub mod balance;
pub mod join_after_change;
pub mod leader_kill;
pub mod node_drain;
pub mod node_failure;
pub mod partition;
pub mod rehash_after_change;
pub mod second_hop_tally;
pub mod syn_flood;

use serde_json::{json, Value};

/// A scenario's result.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name.
    pub name: &'static str,
    /// Column headers.
    pub header: Vec<&'static str>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
    /// Machine-readable figures (what the tests assert on).
    pub data: Value,
}

impl Report {
    /// Two runs of one scenario (a feature on, then off) as one table, the
    /// rows side by side, `data` = `{"runs": [on, off]}`.
    pub fn on_and_off(on: Report, off: Report) -> Report {
        let mut rows = on.rows;
        rows.extend(off.rows);
        Report {
            name: on.name,
            header: on.header,
            rows,
            data: serde_json::json!({ "runs": [on.data, off.data] }),
        }
    }

    /// The table as text.
    pub fn table(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.len());
                }
            }
        }
        let fmt = |cells: Vec<&str>| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = format!(
            "== {} ==\n{}\n",
            self.name,
            fmt(self.header.clone()).trim_end()
        );
        for r in &self.rows {
            out.push_str(fmt(r.iter().map(String::as_str).collect()).trim_end());
            out.push('\n');
        }
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        json!({ "scenario": self.name, "header": self.header, "rows": self.rows, "data": self.data })
    }
}

/// Counts broken connections in a set of outcomes.
pub fn broken(outcomes: &[crate::traffic::ConnectionOutcome]) -> usize {
    outcomes.iter().filter(|o| o.broken.is_some()).count()
}

/// Why the first `n` broken connections broke (for reports and test messages).
pub fn broken_reasons(outcomes: &[crate::traffic::ConnectionOutcome], n: usize) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| o.broken.clone())
        .take(n)
        .collect()
}

/// The broken connections among `outcomes` last seen working within
/// `[from, to)` (`to` None: open-ended): the ones that broke in that step.
pub fn broken_between(
    outcomes: &[crate::traffic::ConnectionOutcome],
    from: std::time::Instant,
    to: Option<std::time::Instant>,
) -> impl Iterator<Item = &crate::traffic::ConnectionOutcome> {
    outcomes.iter().filter(move |o| {
        o.broken.is_some()
            && o.last_ok
                .is_some_and(|t| t >= from && to.is_none_or(|to| t < to))
    })
}
