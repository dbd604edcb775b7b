//! Second-hop windows: for how long each VIP's previous table stays
//! programmed. The previous table is replicated (`ClusterState::previous`);
//! the window is timed by this node alone, from the moment it first saw that
//! previous table (the apply of the change, or, after a restart or a join,
//! the install: a slightly longer window there is harmless).
//!
//! Pure bookkeeping (no maps, the clock is passed in), so the data plane asks
//! it what to program and when to look again.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use edgelb_consensus::{ClusterState, PreviousTable, VipKey};

/// One VIP's open window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// `PreviousTable::since_version` of the previous table it is for.
    since_version: u64,
    /// When this node first saw that previous table.
    opened: Instant,
}

/// Every VIP's window, keyed like the replicated previous tables.
#[derive(Debug, Default)]
pub struct Windows {
    open: BTreeMap<VipKey, Window>,
    length: Duration,
}

impl Windows {
    /// Takes in a new applied state at `now`: opens a window for every
    /// previous table not seen before, forgets VIPs without one, and takes
    /// the cluster's current window length.
    pub fn observe(&mut self, state: &ClusterState, now: Instant) {
        self.length = Duration::from_secs(u64::from(state.connection.second_hop_window_secs));
        self.open.retain(|k, _| state.previous.contains_key(k));
        for (key, previous) in &state.previous {
            let seen = self.open.get(key).map(|w| w.since_version);
            if seen != Some(previous.since_version) {
                let window = Window {
                    since_version: previous.since_version,
                    opened: now,
                };
                self.open.insert(*key, window);
            }
        }
    }

    /// The previous table to program for `key` at `now`: the replicated one
    /// while its window is open (never when the window length is 0).
    pub fn previous<'a>(
        &self,
        state: &'a ClusterState,
        key: &VipKey,
        now: Instant,
    ) -> Option<&'a PreviousTable> {
        let previous = state.previous.get(key)?;
        self.is_open(key, previous.since_version, now)
            .then_some(previous)
    }

    /// Whether the window of `key`'s previous table `since_version` is
    /// still open at `now`.
    pub fn is_open(&self, key: &VipKey, since_version: u64, now: Instant) -> bool {
        self.open
            .get(key)
            .is_some_and(|w| w.since_version == since_version && now < w.opened + self.length)
    }

    /// When the next open window closes, if one is still open at `now`.
    pub fn next_close(&self, now: Instant) -> Option<Instant> {
        self.open
            .values()
            .map(|w| w.opened + self.length)
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

    #[test]
    fn a_window_opens_at_the_change_and_closes_after_its_length() {
        let s = state(60);
        let t0 = Instant::now();
        let mut w = Windows::default();
        w.observe(&s, t0);
        assert!(w.previous(&s, &key(), t0).is_some());
        assert_eq!(w.next_close(t0), Some(t0 + Duration::from_secs(60)));
        let later = t0 + Duration::from_secs(59);
        // Seeing the same state again does not reopen it.
        w.observe(&s, later);
        assert!(w.previous(&s, &key(), later).is_some());
        let closed = t0 + Duration::from_secs(60);
        assert!(w.previous(&s, &key(), closed).is_none());
        assert_eq!(w.next_close(closed), None);
        // A new change opens a new window.
        let mut s2 = s.clone();
        add(&mut s2, "10.0.0.3");
        w.observe(&s2, closed);
        assert!(w.previous(&s2, &key(), closed).is_some());
        assert_eq!(w.next_close(closed), Some(closed + Duration::from_secs(60)));
    }

    #[test]
    fn a_zero_window_never_programs_a_previous_table() {
        let s = state(0);
        let t0 = Instant::now();
        let mut w = Windows::default();
        w.observe(&s, t0);
        assert!(w.previous(&s, &key(), t0).is_none());
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
        assert!(w.previous(&s2, &key(), t1).is_none());
        // A removed VIP's window is forgotten.
        let mut s3 = s2.clone();
        s3.apply(&Command::RemoveVip { key: key() }).unwrap();
        w.observe(&s3, t1);
        assert!(w.open.is_empty());
    }
}
