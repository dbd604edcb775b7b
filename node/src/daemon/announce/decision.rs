//! Whether this node should announce its VIPs right now.
//!
//! A node announces only while it can forward correctly: its forwarder is
//! attached and programmed with the cluster's current table, and it is in
//! touch with a Raft leader. Otherwise routers must send its share of flows
//! to other nodes, so it withdraws. Pure functions of a [`Readiness`]
//! sample, so every rule is unit-tested here without a daemon.

use std::time::{Duration, Instant};

use edgelb_consensus::{NodeStatus, Role};

/// How long a node may trail the applied state without progress (see
/// [`SyncClock`]) before it withdraws. Programming takes milliseconds and
/// the old table keeps forwarding meanwhile; withdrawing on every
/// configuration change would flap every node's routes at once.
pub const SYNC_GRACE: Duration = Duration::from_secs(2);

/// What the announce decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The forwarder is attached to every configured interface.
    pub attached: bool,
    /// Table version programmed into the data plane.
    pub programmed_version: u64,
    /// Table version of the latest applied state.
    pub applied_version: u64,
    /// A leader is known and (for a leader) a quorum acknowledged it recently.
    pub in_cluster: bool,
    /// Log entries known committed but not yet applied here.
    pub apply_lag: u64,
    /// Index of the last log entry applied here (progress, see [`SyncClock`]).
    pub applied_index: u64,
    /// SIGTERM or an operator drain is in progress.
    pub draining: bool,
    /// How long the node has been out of sync (apply lag or tables behind)
    /// without progress; zero while in sync ([`SyncClock`]).
    pub out_of_sync_for: Duration,
    /// Programming the latest applied state into the data plane failed.
    pub programming_failed: bool,
}

/// Why a node does not announce (for logs, metrics and `lbctl status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// The forwarder is not attached.
    Detached,
    /// The data plane lags the applied state.
    TablesBehind,
    /// No leader, or this leader lost its quorum.
    NoCluster,
    /// Applied state lags the commit index.
    ApplyLag,
    /// Draining or shutting down.
    Draining,
}

impl Readiness {
    /// Whether committed log entries wait to be applied here.
    pub fn log_behind(&self) -> bool {
        self.apply_lag > 0
    }

    /// Whether the data plane holds another table version than the applied
    /// state.
    pub fn tables_behind(&self) -> bool {
        self.programmed_version != self.applied_version
    }

    /// `Ok` when the node should announce, or the first reason it should not.
    pub fn decide(&self) -> Result<(), Withheld> {
        if self.draining {
            Err(Withheld::Draining)
        } else if !self.attached {
            Err(Withheld::Detached)
        } else if !self.in_cluster {
            Err(Withheld::NoCluster)
        } else if self.programming_failed
            || (self.programmed_version == 0 && self.applied_version != 0)
        {
            // A failed or never-done programming is no transient.
            Err(Withheld::TablesBehind)
        } else if self.out_of_sync_for <= SYNC_GRACE {
            Ok(())
        } else if self.log_behind() {
            Err(Withheld::ApplyLag)
        } else if self.tables_behind() {
            Err(Withheld::TablesBehind)
        } else {
            Ok(())
        }
    }
}

/// Measures [`Readiness::out_of_sync_for`]: how long the node has trailed
/// without progress. Under a stream of writes a healthy node trails by a
/// moment at almost every sample (each new version takes milliseconds to
/// apply and program), so "continuously out of sync" would withdraw it; what
/// marks a stuck node is that the version it programs (or the log index it
/// applies) stops moving.
#[derive(Debug, Default)]
pub struct SyncClock {
    /// Since when the tables have trailed at this programmed version.
    tables: Option<(Instant, u64)>,
    /// Since when the log has trailed at this applied index.
    log: Option<(Instant, u64)>,
}

impl SyncClock {
    /// The out-of-sync time of `ready` observed at `now`.
    pub fn observe(&mut self, ready: &Readiness, now: Instant) -> Duration {
        let tables = stalled(
            &mut self.tables,
            ready.tables_behind(),
            ready.programmed_version,
            now,
        );
        let log = stalled(&mut self.log, ready.log_behind(), ready.applied_index, now);
        tables.max(log)
    }
}

/// How long `mark` has stood still while `behind`; restarts on any move.
fn stalled(since: &mut Option<(Instant, u64)>, behind: bool, mark: u64, now: Instant) -> Duration {
    if !behind {
        *since = None;
        return Duration::ZERO;
    }
    match *since {
        Some((t, m)) if m == mark => now.saturating_duration_since(t),
        _ => {
            *since = Some((now, mark));
            Duration::ZERO
        }
    }
}

/// Whether this node is part of a working cluster: it knows a leader and,
/// when it is that leader, a quorum acknowledged it within `quorum_ack_bound`.
///
/// A leader cut off from the other voters keeps its role (Raft has no
/// step-down on silence), while the majority elects a new leader after an
/// election timeout; a bound of the maximum election timeout makes the old
/// leader withdraw about when the new one takes over.
pub fn in_cluster(status: &NodeStatus, quorum_ack_bound: Duration) -> bool {
    match status.role {
        Role::Leader => {
            let bound = u64::try_from(quorum_ack_bound.as_millis()).unwrap_or(u64::MAX);
            // No acknowledgement yet (a brand-new leader) counts as not yet
            // confirmed: the first heartbeat round settles it.
            status.leader == Some(status.id)
                && status
                    .millis_since_quorum_ack
                    .is_some_and(|age| age <= bound)
        }
        Role::Follower | Role::Learner => status.leader.is_some(),
        Role::Candidate | Role::Shutdown => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Readiness {
        Readiness {
            attached: true,
            programmed_version: 7,
            applied_version: 7,
            in_cluster: true,
            apply_lag: 0,
            applied_index: 20,
            draining: false,
            out_of_sync_for: Duration::ZERO,
            programming_failed: false,
        }
    }

    #[test]
    fn announces_only_when_everything_is_in_order() {
        assert_eq!(ready().decide(), Ok(()));
        assert_eq!(
            Readiness {
                draining: true,
                ..ready()
            }
            .decide(),
            Err(Withheld::Draining)
        );
        assert_eq!(
            Readiness {
                attached: false,
                ..ready()
            }
            .decide(),
            Err(Withheld::Detached)
        );
        assert_eq!(
            Readiness {
                in_cluster: false,
                ..ready()
            }
            .decide(),
            Err(Withheld::NoCluster)
        );
        let long = SYNC_GRACE + Duration::from_millis(1);
        assert_eq!(
            Readiness {
                apply_lag: 3,
                out_of_sync_for: long,
                ..ready()
            }
            .decide(),
            Err(Withheld::ApplyLag)
        );
        assert_eq!(
            Readiness {
                programmed_version: 6,
                out_of_sync_for: long,
                ..ready()
            }
            .decide(),
            Err(Withheld::TablesBehind)
        );
        assert_eq!(
            Readiness {
                programming_failed: true,
                ..ready()
            }
            .decide(),
            Err(Withheld::TablesBehind)
        );
        assert_eq!(
            Readiness {
                programmed_version: 0,
                ..ready()
            }
            .decide(),
            Err(Withheld::TablesBehind)
        );
    }

    #[test]
    fn a_new_table_being_programmed_does_not_flap_the_routes() {
        let fresh = Readiness {
            programmed_version: 6,
            apply_lag: 1,
            out_of_sync_for: Duration::from_millis(30),
            ..ready()
        };
        assert!(fresh.log_behind() && fresh.tables_behind());
        assert_eq!(fresh.decide(), Ok(()));
        assert_eq!(
            Readiness {
                out_of_sync_for: SYNC_GRACE,
                ..fresh.clone()
            }
            .decide(),
            Ok(())
        );
        assert!(!ready().log_behind() && !ready().tables_behind());
        // Nothing applied yet and nothing programmed: in sync, nothing to announce wrongly.
        assert_eq!(
            Readiness {
                programmed_version: 0,
                applied_version: 0,
                ..ready()
            }
            .decide(),
            Ok(())
        );
    }

    #[test]
    fn trailing_counts_only_while_nothing_moves() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut clock = SyncClock::default();
        // A stream of writes: each sample trails, but by a newer version.
        for (i, ms) in (0..50u64).map(|i| (i, i * 100)) {
            let r = Readiness {
                programmed_version: 100 + i,
                applied_version: 101 + i,
                ..ready()
            };
            assert_eq!(clock.observe(&r, at(ms)), Duration::ZERO, "sample {i}");
        }
        // Programming stops at version 149 (first seen at 4900 ms) while
        // writes go on: the time counts from there.
        let stuck = Readiness {
            programmed_version: 149,
            applied_version: 151,
            ..ready()
        };
        assert_eq!(clock.observe(&stuck, at(5000)), Duration::from_millis(100));
        assert_eq!(clock.observe(&stuck, at(7500)), Duration::from_millis(2600));
        assert_eq!(
            Readiness {
                out_of_sync_for: clock.observe(&stuck, at(7500)),
                ..stuck.clone()
            }
            .decide(),
            Err(Withheld::TablesBehind)
        );
        // An apply lag that does not shrink while the index stands still counts too.
        let mut clock = SyncClock::default();
        let lag = Readiness {
            apply_lag: 4,
            applied_index: 30,
            ..ready()
        };
        clock.observe(&lag, at(0));
        assert_eq!(
            clock.observe(
                &Readiness {
                    applied_index: 31,
                    ..lag.clone()
                },
                at(1500)
            ),
            Duration::ZERO
        );
        assert_eq!(
            clock.observe(
                &Readiness {
                    applied_index: 31,
                    ..lag.clone()
                },
                at(4000)
            ),
            Duration::from_millis(2500)
        );
        // In sync resets both.
        assert_eq!(clock.observe(&ready(), at(4100)), Duration::ZERO);
    }

    fn status(role: Role, leader: Option<u64>, ack: Option<u64>) -> NodeStatus {
        NodeStatus {
            id: 1,
            role,
            term: 3,
            leader,
            last_log_index: Some(10),
            committed_index: Some(10),
            applied_index: Some(10),
            snapshot_index: None,
            purged_index: None,
            voters: [1, 2, 3].into(),
            learners: Default::default(),
            nodes: Default::default(),
            table_version: 4,
            millis_since_quorum_ack: ack,
        }
    }

    #[test]
    fn a_leader_without_recent_quorum_acks_is_out_of_the_cluster() {
        let bound = Duration::from_millis(1000);
        assert!(in_cluster(&status(Role::Leader, Some(1), Some(80)), bound));
        assert!(in_cluster(
            &status(Role::Leader, Some(1), Some(1000)),
            bound
        ));
        assert!(
            !in_cluster(&status(Role::Leader, Some(1), Some(1001)), bound),
            "partitioned leader"
        );
        assert!(
            !in_cluster(&status(Role::Leader, Some(1), None), bound),
            "never acknowledged"
        );
        assert!(
            !in_cluster(&status(Role::Leader, Some(2), Some(10)), bound),
            "stale leader id"
        );
    }

    #[test]
    fn followers_need_a_known_leader() {
        let bound = Duration::from_millis(1000);
        assert!(in_cluster(&status(Role::Follower, Some(2), None), bound));
        assert!(in_cluster(&status(Role::Learner, Some(2), None), bound));
        assert!(!in_cluster(&status(Role::Follower, None, None), bound));
        assert!(!in_cluster(&status(Role::Candidate, Some(2), None), bound));
        assert!(!in_cluster(&status(Role::Shutdown, Some(2), None), bound));
    }
}
