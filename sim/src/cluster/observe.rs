//! Watching the cluster through the nodes' status: the Raft leader, the
//! table version and digest every node reports, and the daemons' logs.

use std::{fs, path::PathBuf, time::Duration};

use anyhow::{anyhow, bail};

use testbed::wait::wait_for;

use super::Cluster;

impl Cluster {
    /// `lbctl --json status` parsed.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(
            &self.lbctl_any(&["--json", "status"])?,
        )?)
    }

    /// Node `i`'s counters, `lbctl --json stats` over a 0.1 s interval.
    pub fn stats_json(&self, i: usize) -> anyhow::Result<serde_json::Value> {
        let o = self.lbctl(i, &["--json", "stats", "--interval", "0.1"])?;
        serde_json::from_slice(&o.stdout).map_err(|e| {
            anyhow!(
                "node {i} stats: {e}: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    pub(super) fn wait_for_leader(&self, limit: Duration) -> anyhow::Result<()> {
        let mut last = String::new();
        let leader = wait_for("a Raft leader", limit, Duration::from_millis(200), || {
            match self.status() {
                Ok(s) if !s["leader"].is_null() => return Some(()),
                Ok(s) => last = s.to_string(),
                Err(e) => last = e.to_string(),
            }
            None
        });
        if leader.is_err() {
            bail!(
                "no Raft leader within {limit:?}: {last}\n{}",
                self.log_tails(15)
            )
        }
        Ok(())
    }

    /// The last `lines` lines of every daemon log of the run, for failures.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for p in names {
            let text = fs::read_to_string(&p).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ---\n", p.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until every running node reports the same table digest at
    /// version >= `min_version`; returns the digest.
    pub fn wait_for_agreement(&self, min_version: u64, limit: Duration) -> anyhow::Result<String> {
        let mut last = String::new();
        let agreed = wait_for(
            "one table digest",
            limit,
            Duration::from_millis(100),
            || {
                let s = self.status().ok()?;
                let reports: Vec<&serde_json::Value> = s["nodes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n[1].get("Ok")).collect())
                    .unwrap_or_default();
                let running = self.lbs.iter().filter(|n| n.process.is_some()).count();
                let digests: std::collections::BTreeSet<String> = reports
                    .iter()
                    .map(|r| r["table_digest"].as_str().unwrap_or("").to_owned())
                    .collect();
                let versions_ok = reports
                    .iter()
                    .all(|r| r["table_version"].as_u64().unwrap_or(0) >= min_version);
                if reports.len() >= running && digests.len() == 1 && versions_ok {
                    return Some(digests.into_iter().next().unwrap_or_default());
                }
                last = s.to_string();
                None
            },
        );
        agreed.or_else(|_| {
            bail!(
                "nodes did not agree on one table digest within {limit:?}: {last}\n{}",
                self.log_tails(15)
            )
        })
    }

    /// The table version at the leader now (a linearizable read).
    pub fn current_version(&self) -> anyhow::Result<u64> {
        let v: serde_json::Value =
            serde_json::from_str(&self.lbctl_any(&["--json", "vip", "list"])?)?;
        v["version"]
            .as_u64()
            .ok_or_else(|| anyhow!("no version in {v}"))
    }

    /// Waits until every running node has programmed the leader's current
    /// table and they all report the same digest; returns it.
    pub fn converge(&self, limit: Duration) -> anyhow::Result<String> {
        let version = self.current_version()?;
        self.wait_for_agreement(version, limit)
    }

    /// The current Raft leader's node index.
    pub fn leader(&self) -> anyhow::Result<usize> {
        let s = self.status()?;
        s["leader"]
            .as_u64()
            .map(|l| l as usize)
            .ok_or_else(|| anyhow!("no leader: {s}"))
    }
}
