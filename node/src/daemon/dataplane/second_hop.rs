//! Second-hop windows: for how long each entry of a VIP's history of
//! previous tables takes part in the programmed previous table. The history
//! is replicated (`ClusterState::history`); each entry's window is timed by
//! this node alone, from the moment it first saw that entry (the apply of
//! the change, or, after a restart or a join, the install: a slightly longer
//! window there is harmless).
//!
//! Pure bookkeeping (no maps, the clock is passed in), so the data plane asks
//! it what to program and when to look again.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use edgelb_consensus::{ClusterState, PreviousTable, VipKey};

/// Every VIP's history entries this node has seen: per VIP,
/// `PreviousTable::since_version` -> when this node first saw it.
#[derive(Debug, Default)]
pub struct Windows {
    opened: BTreeMap<VipKey, BTreeMap<u64, Instant>>,
    length: Duration,
}

impl Windows {
    /// Takes in a new applied state at `now`: opens a window for every
    /// history entry not seen before, forgets entries (and VIPs) no longer
    /// in the history, and takes the cluster's current window length.
    pub fn observe(&mut self, state: &ClusterState, now: Instant) {
        self.length = Duration::from_secs(u64::from(state.connection.second_hop_window_secs));
        self.opened.retain(|k, _| state.history.contains_key(k));
        for (key, history) in &state.history {
            let seen = self.opened.entry(*key).or_default();
            seen.retain(|since, _| history.iter().any(|p| p.since_version == *since));
            for previous in history {
                seen.entry(previous.since_version).or_insert(now);
            }
        }
    }

    /// The entries of `key`'s history whose window is open at `now`, newest
    /// first (none when the window length is 0).
    pub fn open_entries<'a>(
        &self,
        state: &'a ClusterState,
        key: &VipKey,
        now: Instant,
    ) -> Vec<&'a PreviousTable> {
        state.history.get(key).map_or_else(Vec::new, |history| {
            history
                .iter()
                .filter(|p| self.is_open(key, p.since_version, now))
                .collect()
        })
    }

    /// Whether the window of `key`'s history entry `since_version` is still
    /// open at `now`.
    pub fn is_open(&self, key: &VipKey, since_version: u64, now: Instant) -> bool {
        self.opened
            .get(key)
            .and_then(|seen| seen.get(&since_version))
            .is_some_and(|opened| now < *opened + self.length)
    }

    /// When the next open window closes, if one is still open at `now`.
    pub fn next_close(&self, now: Instant) -> Option<Instant> {
        self.opened
            .values()
            .flat_map(|seen| seen.values())
            .map(|opened| *opened + self.length)
            .filter(|close| *close > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgelb_consensus::{
        Backend, BackendState, Command, ConnectionSettings, Encapsulation, FloodAdmission,
        Protocol, VipFlags,
    };

    fn key() -> VipKey {
        VipKey {
            address: "192.0.2.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn add(state: &mut ClusterState, address: &str) {
        state
            .apply(&Command::AddBackend {
                vip: key(),
                backend: Backend {
                    address: address.parse().unwrap(),
                    weight: 1,
                    state: BackendState::Active,
                },
            })
            .unwrap();
    }

    fn state(window: u32) -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(&Command::AddVip {
            key: key(),
            flags: VipFlags::default(),
            encapsulation: Encapsulation::IpIp,
        })
        .unwrap();
        s.apply(&Command::SetConnectionSettings(ConnectionSettings {
            second_hop_window_secs: window,
            flood_threshold: FloodAdmission::NodeConfig,
        }))
        .unwrap();
        add(&mut s, "10.0.0.1");
        add(&mut s, "10.0.0.2");
        s
    }

    fn open_versions(w: &Windows, s: &ClusterState, now: Instant) -> Vec<u64> {
        w.open_entries(s, &key(), now)
            .iter()
            .map(|p| p.since_version)
            .collect()
    }

    #[test]
    fn a_window_opens_at_the_change_and_closes_after_its_length() {
        let s = state(60);
        let newest = s.history[&key()][0].since_version;
        let t0 = Instant::now();
        let mut w = Windows::default();
        w.observe(&s, t0);
        // Both entries are new to this node: both open now.
        assert_eq!(open_versions(&w, &s, t0), vec![newest, newest - 1]);
        assert_eq!(w.next_close(t0), Some(t0 + Duration::from_secs(60)));
        let later = t0 + Duration::from_secs(59);
        // Seeing the same state again does not reopen them.
        w.observe(&s, later);
        assert_eq!(open_versions(&w, &s, later).len(), 2);
        let closed = t0 + Duration::from_secs(60);
        assert!(open_versions(&w, &s, closed).is_empty());
        assert_eq!(w.next_close(closed), None);
        // A new change opens a window for its entry only.
        let mut s2 = s.clone();
        add(&mut s2, "10.0.0.3");
        w.observe(&s2, closed);
        let v3 = s2.history[&key()][0].since_version;
        assert_eq!(open_versions(&w, &s2, closed), vec![v3]);
        assert_eq!(w.next_close(closed), Some(closed + Duration::from_secs(60)));
    }

    /// Two changes 20 s apart: the older entry's window closes 20 s before
    /// the newer one's, one at a time.
    #[test]
    fn windows_close_one_entry_at_a_time() {
        let mut s = state(60);
        let t0 = Instant::now();
        let mut w = Windows::default();
        w.observe(&s, t0);
        let t1 = t0 + Duration::from_secs(70);
        add(&mut s, "10.0.0.3");
        w.observe(&s, t1);
        let first = s.history[&key()][0].since_version;
        let t2 = t1 + Duration::from_secs(20);
        add(&mut s, "10.0.0.4");
        w.observe(&s, t2);
        let second = s.history[&key()][0].since_version;
        assert_eq!(open_versions(&w, &s, t2), vec![second, first]);
        assert_eq!(w.next_close(t2), Some(t1 + Duration::from_secs(60)));
        let t3 = t1 + Duration::from_secs(60);
        assert_eq!(open_versions(&w, &s, t3), vec![second]);
        assert_eq!(w.next_close(t3), Some(t2 + Duration::from_secs(60)));
        let t4 = t2 + Duration::from_secs(60);
        assert!(open_versions(&w, &s, t4).is_empty());
        assert_eq!(w.next_close(t4), None);
    }

    #[test]
    fn a_zero_window_never_programs_a_previous_table() {
        let s = state(0);
        let t0 = Instant::now();
        let mut w = Windows::default();
        w.observe(&s, t0);
        assert!(w.open_entries(&s, &key(), t0).is_empty());
        assert_eq!(w.next_close(t0), None);
    }

    #[test]
    fn shortening_the_window_closes_it_early() {
        let s = state(600);
        let t0 = Instant::now();
        let mut w = Windows::default();
        w.observe(&s, t0);
        let mut s2 = s.clone();
        s2.apply(&Command::SetConnectionSettings(ConnectionSettings {
            second_hop_window_secs: 5,
            flood_threshold: FloodAdmission::NodeConfig,
        }))
        .unwrap();
        let t1 = t0 + Duration::from_secs(10);
        w.observe(&s2, t1);
        assert!(w.open_entries(&s2, &key(), t1).is_empty());
        // A removed VIP's windows are forgotten.
        let mut s3 = s2.clone();
        s3.apply(&Command::RemoveVip { key: key() }).unwrap();
        w.observe(&s3, t1);
        assert!(w.opened.is_empty());
    }

    /// Entries dropped from the bounded history are forgotten.
    #[test]
    fn entries_leaving_the_history_are_forgotten() {
        let mut s = state(60);
        let t0 = Instant::now();
        let mut w = Windows::default();
        for n in 3..10 {
            add(&mut s, &format!("10.0.0.{n}"));
            w.observe(&s, t0);
        }
        let kept: Vec<u64> = s.history[&key()].iter().map(|p| p.since_version).collect();
        assert_eq!(kept.len(), edgelb_consensus::PREVIOUS_HISTORY_LEN);
        let mut seen: Vec<u64> = w.opened[&key()].keys().copied().collect();
        seen.reverse();
        assert_eq!(seen, kept);
    }
}
