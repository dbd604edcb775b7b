//! Cluster behaviour with real nodes over real TCP sockets on loopback and
//! real data directories.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use edgelb_consensus::{Command, CommandError, ConsensusError, Role};
use tokio::time::{sleep, timeout, Instant};

const LONG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader() {
    let cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    let mut leaders = 0;
    for id in 1..=3 {
        let s = cluster.node(id).status();
        assert_eq!(s.voters, BTreeSet::from([1, 2, 3]));
        assert_eq!(s.leader, Some(leader));
        if s.role == Role::Leader {
            leaders += 1;
        }
    }
    assert_eq!(leaders, 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_follower_is_applied_everywhere_and_bad_writes_change_nothing() {
    let cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    let r1 = cluster
        .node(follower)
        .write(add_vip())
        .await
        .expect("add vip");
    let r2 = cluster
        .node(follower)
        .write(add_backend(0))
        .await
        .expect("add backend");
    assert_eq!((r1.version, r2.version), (B + 1, B + 2));
    assert!(r2.log_index > r1.log_index);
    for id in 1..=3 {
        let s = cluster.wait_version(id, B + 2, LONG).await;
        assert_eq!(s.vips[&vip()].backends[&backend_addr(0)].weight, 1);
    }

    // Rejected at the leader: clear error, no version bump, no log entry.
    let last_log = cluster.node(leader).status().last_log_index;
    let err = cluster.node(follower).write(add_vip()).await.unwrap_err();
    assert!(
        matches!(err, ConsensusError::Rejected(CommandError::DuplicateVip(_))),
        "{err}"
    );
    let err = cluster
        .node(follower)
        .write(add_backend(0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConsensusError::Rejected(CommandError::DuplicateBackend { .. })
        ),
        "{err}"
    );
    let err = cluster
        .node(leader)
        .write(Command::SetBackendWeight {
            vip: vip(),
            address: backend_addr(0),
            weight: 70_000,
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ConsensusError::Rejected(CommandError::WeightOutOfRange(70_000))
    ));
    let err = cluster
        .node(follower)
        .write(Command::RemoveBackend {
            vip: vip(),
            address: backend_addr(9),
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ConsensusError::Rejected(CommandError::UnknownBackend { .. })
    ));
    let err = cluster
        .node(follower)
        .write(Command::AddBackend {
            vip: vip(),
            backend: edgelb_consensus::Backend {
                address: "224.0.0.5".parse().unwrap(),
                weight: 1,
                state: edgelb_consensus::BackendState::Active,
            },
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConsensusError::Rejected(CommandError::BadAddress { .. })
        ),
        "{err}"
    );
    assert_eq!(cluster.node(leader).status().last_log_index, last_log);
    let current = cluster.node(follower).read_current().await.expect("read");
    assert_eq!(current.version, B + 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_current_on_a_follower_sees_every_acknowledged_write() {
    let cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    let followers: Vec<_> = (1..=3).filter(|id| *id != leader).collect();
    cluster.node(leader).write(add_vip()).await.unwrap();
    for i in 0..20 {
        let receipt = cluster
            .node(followers[0])
            .write(add_backend(i))
            .await
            .unwrap();
        // Read on the *other* follower right after the ack.
        let state = cluster.node(followers[1]).read_current().await.unwrap();
        assert!(state.version >= receipt.version);
        assert!(state.vips[&vip()].backends.contains_key(&backend_addr(i)));
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_increasing_versions_ending_at_the_latest() {
    let cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut rx = cluster.node(follower).subscribe();
    let collector = tokio::spawn(async move {
        let mut seen = vec![rx.borrow_and_update().version];
        while seen.last() != Some(&(B + 31)) {
            if timeout(LONG, rx.changed()).await.is_err() {
                break;
            }
            seen.push(rx.borrow_and_update().version);
        }
        seen
    });
    cluster.node(leader).write(add_vip()).await.unwrap();
    for i in 0..30 {
        cluster.node(leader).write(add_backend(i)).await.unwrap();
    }
    let seen = collector.await.unwrap();
    assert_eq!(seen.first(), Some(&B));
    assert_eq!(seen.last(), Some(&(B + 31)), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(
        *cluster.node(follower).state(),
        *cluster.node(leader).state()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_a_new_one_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, None).await;
    let old_leader = cluster.leader(LONG).await;
    let writer_node = (1..=3).find(|id| *id != old_leader).unwrap();
    cluster.node(writer_node).write(add_vip()).await.unwrap();

    // A writer keeps writing through a surviving node while the leader dies.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let writes = 400u32;
    let writer = {
        let node = cluster
            .members
            .get_mut(&writer_node)
            .unwrap()
            .node
            .take()
            .unwrap();
        tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..writes {
                match node.write(add_backend(i)).await {
                    Ok(_) => acked_tx.send(i).unwrap(),
                    Err(_) => failed += 1,
                }
            }
            (node, failed)
        })
    };
    // Let some writes through, then kill the leader mid-stream.
    let mut acked = Vec::new();
    while acked.len() < 50 {
        acked.push(timeout(LONG, acked_rx.recv()).await.unwrap().unwrap());
    }
    let killed_at = Instant::now();
    cluster.kill(old_leader).await;
    let (node, failed) = timeout(Duration::from_secs(120), writer)
        .await
        .unwrap()
        .unwrap();
    cluster.members.get_mut(&writer_node).unwrap().node = Some(node);
    while let Ok(i) = acked_rx.try_recv() {
        acked.push(i);
    }
    let survivors: Vec<_> = (1..=3).filter(|id| *id != old_leader).collect();
    let new_leader = cluster.leader_among(&survivors, LONG).await;
    assert_ne!(new_leader, old_leader);
    eprintln!(
        "acked {} of {writes}, failed {failed}, writer done {:?} after the kill",
        acked.len(),
        killed_at.elapsed()
    );
    assert!(acked.len() > 50, "writes must resume after failover");

    for id in &survivors {
        let state = cluster.node(*id).read_current().await.unwrap();
        let backends = &state.vips[&vip()].backends;
        for i in &acked {
            assert!(
                backends.contains_key(&backend_addr(*i)),
                "acknowledged write {i} lost on node {id}"
            );
        }
    }
    // The old leader comes back, follows, and has every acknowledged write.
    cluster.restart(old_leader).await;
    let v = cluster
        .node(new_leader)
        .read_current()
        .await
        .unwrap()
        .version;
    let state = cluster.wait_version(old_leader, v, LONG).await;
    for i in &acked {
        assert!(state.vips[&vip()].backends.contains_key(&backend_addr(*i)));
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_state_and_catches_up() {
    let mut cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.node(leader).write(add_vip()).await.unwrap();
    for i in 0..10 {
        cluster.node(leader).write(add_backend(i)).await.unwrap();
    }
    cluster.wait_version(follower, B + 11, LONG).await;
    let term_before = cluster.node(follower).status().term;
    let last_log_before = cluster.node(follower).status().last_log_index;
    cluster.kill(follower).await;

    for i in 10..40 {
        cluster.node(leader).write(add_backend(i)).await.unwrap();
    }
    cluster.restart(follower).await;
    assert!(cluster.node(follower).is_initialized().await.unwrap());
    // The table is back from disk at once, before hearing from anyone.
    assert!(cluster.node(follower).state().version >= B + 11);
    // Vote, log and membership too, once the Raft core reports metrics.
    let deadline = Instant::now() + LONG;
    let status = loop {
        let s = cluster.node(follower).status();
        if s.last_log_index.is_some() {
            break s;
        }
        assert!(Instant::now() < deadline);
        sleep(Duration::from_millis(5)).await;
    };
    assert!(status.term >= term_before, "{status:?}");
    assert!(status.last_log_index >= last_log_before, "{status:?}");
    assert_eq!(status.voters, BTreeSet::from([1, 2, 3]));
    let state = cluster.wait_version(follower, B + 41, LONG).await;
    assert_eq!(*state, *cluster.node(leader).state());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_restarts_from_disk() {
    let mut cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    cluster.node(leader).write(add_vip()).await.unwrap();
    for i in 0..5 {
        cluster.node(leader).write(add_backend(i)).await.unwrap();
    }
    for id in 1..=3 {
        cluster.wait_version(id, B + 6, LONG).await;
    }
    let before = cluster.node(leader).state();
    for id in 1..=3 {
        cluster.kill(id).await;
    }
    for id in 1..=3 {
        cluster.restart(id).await;
        assert_eq!(
            *cluster.node(id).state(),
            *before,
            "node {id} state after restart"
        );
    }
    let leader = cluster.leader(LONG).await;
    let r = cluster.node(leader).write(add_backend(5)).await.unwrap();
    assert_eq!(r.version, B + 7);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_cannot_commit_or_read() {
    fn short_client_timeout(c: &mut edgelb_consensus::ConsensusConfig) {
        c.timeouts.client = Duration::from_secs(3);
    }
    let cluster = Cluster::start(3, Some(short_client_timeout)).await;
    let old_leader = cluster.leader(LONG).await;
    cluster.node(old_leader).write(add_vip()).await.unwrap();
    let majority: Vec<_> = (1..=3).filter(|id| *id != old_leader).collect();

    cluster.links.isolate(old_leader, &majority).await;
    // The isolated leader cannot commit, whatever it believes.
    let err = cluster
        .node(old_leader)
        .write(add_backend(100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConsensusError::Indeterminate(_) | ConsensusError::NoLeader(_)
        ),
        "{err}"
    );
    assert!(cluster.node(old_leader).read_current().await.is_err());
    // The majority elects a leader and keeps committing.
    let new_leader = cluster.leader_among(&majority, LONG).await;
    for i in 0..5 {
        cluster
            .node(new_leader)
            .write(add_backend(i))
            .await
            .unwrap();
    }
    assert_eq!(cluster.node(old_leader).state().version, B + 1);

    cluster.links.heal();
    let v = cluster
        .node(new_leader)
        .read_current()
        .await
        .unwrap()
        .version;
    assert_eq!(v, B + 6);
    let state = cluster.wait_version(old_leader, v, LONG).await;
    assert_eq!(*state, *cluster.node(new_leader).state());
    assert!(!state.vips[&vip()].backends.contains_key(&backend_addr(100)));
    // Give the stale entry a chance to resurface; it must not.
    sleep(Duration::from_millis(500)).await;
    for id in 1..=3 {
        let s = cluster.node(id).read_current().await.unwrap();
        assert_eq!(s.version, B + 6);
        assert!(!s.vips[&vip()].backends.contains_key(&backend_addr(100)));
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_is_sent_a_snapshot() {
    fn snapshot_often(c: &mut edgelb_consensus::ConsensusConfig) {
        c.snapshot_every = 20;
        c.logs_kept_after_snapshot = 0;
    }
    let mut cluster = Cluster::start(3, Some(snapshot_often)).await;
    let leader = cluster.leader(LONG).await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    cluster.node(leader).write(add_vip()).await.unwrap();
    cluster.wait_version(lagging, B + 1, LONG).await;
    let lagging_last_log = cluster.node(lagging).status().last_log_index.unwrap();
    cluster.kill(lagging).await;

    for i in 0..100 {
        cluster.node(leader).write(add_backend(i)).await.unwrap();
    }
    // The leader compacted its log past everything the lagging node has, so
    // only a snapshot can bring it up to date.
    let deadline = Instant::now() + LONG;
    loop {
        let s = cluster.node(leader).status();
        if s.purged_index.is_some_and(|i| i > lagging_last_log + 50) {
            break;
        }
        assert!(Instant::now() < deadline, "leader never snapshotted: {s:?}");
        sleep(Duration::from_millis(20)).await;
    }
    cluster.restart(lagging).await;
    let state = cluster.wait_version(lagging, B + 101, LONG).await;
    assert_eq!(state.vips[&vip()].backends.len(), 100);
    let s = cluster.node(lagging).status();
    let snap = s.snapshot_index.expect("lagging node holds a snapshot");
    assert!(snap > lagging_last_log + 50, "snapshot at {snap}");
    // The compacted leader itself restarts from snapshot + remaining log.
    cluster.kill(leader).await;
    cluster.restart(leader).await;
    assert_eq!(
        cluster.node(leader).state().vips[&vip()].backends.len(),
        100
    );
    cluster.leader(LONG).await;
    // And a learner that joins late is also brought up by snapshot, then
    // promoted to voter.
    cluster.add_member(4).await;
    let addr = cluster.members[&4].proxy_addr.to_string();
    cluster.node(leader).add_learner(4, addr).await.unwrap();
    let state = cluster.wait_version(4, B + 101, LONG).await;
    assert_eq!(*state, *cluster.node(leader).state());
    assert!(cluster.node(4).status().snapshot_index.is_some());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_at_runtime() {
    let mut cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.node(leader).write(add_vip()).await.unwrap();

    // Add node 4 as a learner through a follower (forwarded), then promote.
    cluster.add_member(4).await;
    assert!(!cluster.node(4).is_initialized().await.unwrap());
    let addr = cluster.members[&4].proxy_addr.to_string();
    cluster.node(follower).add_learner(4, addr).await.unwrap();
    cluster.wait_version(4, 1, LONG).await;
    let s = cluster.node(leader).status();
    assert!(s.learners.contains(&4) && !s.voters.contains(&4));
    assert_eq!(cluster.node(4).status().role, Role::Learner);

    // Promoting a node that is not a learner is refused and changes nothing.
    let err = cluster.node(follower).promote_voter(42).await.unwrap_err();
    assert!(matches!(err, ConsensusError::Membership(_)), "{err}");
    assert_eq!(
        cluster.node(leader).status().voters,
        BTreeSet::from([1, 2, 3])
    );
    cluster.node(follower).promote_voter(4).await.unwrap();
    let s = cluster.node(leader).status();
    assert_eq!(s.voters, BTreeSet::from([1, 2, 3, 4]));
    cluster.node(4).write(add_backend(1)).await.unwrap();

    // Remove the old leader; the rest carry on without it.
    cluster.node(follower).remove_node(leader).await.unwrap();
    let rest: Vec<_> = (1..=4).filter(|id| *id != leader).collect();
    let new_leader = cluster.leader_among(&rest, LONG).await;
    let s = cluster.node(new_leader).status();
    assert_eq!(s.voters, rest.iter().copied().collect());
    assert!(!s.nodes.contains_key(&leader));
    let r = cluster.node(4).write(add_backend(2)).await.unwrap();
    for id in &rest {
        cluster.wait_version(*id, r.version, LONG).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_goes_down_when_a_quorum_of_nodes_observes_it_down() {
    let cluster = Cluster::start(3, None).await;
    cluster.node(1).write(add_vip()).await.unwrap();
    cluster.node(1).write(add_backend(0)).await.unwrap();
    let b = backend_addr(0);
    let report = |observer, healthy| Command::ReportHealth {
        observer,
        vip: vip(),
        backend: b,
        healthy,
    };
    // Each node reports its own observation through itself (forwarded).
    cluster.node(1).write(report(1, false)).await.unwrap();
    let r = cluster.node(2).write(report(2, true)).await.unwrap();
    for id in 1..=3 {
        let s = cluster.wait_version(id, r.version, LONG).await;
        assert_eq!(
            s.effective_state(&vip(), &b),
            Some(edgelb_consensus::BackendState::Active)
        );
    }
    let r = cluster.node(3).write(report(3, false)).await.unwrap();
    for id in 1..=3 {
        let s = cluster.wait_version(id, r.version, LONG).await;
        assert!(s.is_health_down(&vip(), &b), "node {id}");
        assert_eq!(
            s.effective_state(&vip(), &b),
            Some(edgelb_consensus::BackendState::Down)
        );
    }
    // A node outside the voter set cannot report.
    let err = cluster.node(2).write(report(7, false)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConsensusError::Rejected(CommandError::UnknownObserver(7))
        ),
        "{err}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_bootstraps_from_the_same_config_and_restarts_with_it() {
    let mut cluster = Cluster::start_bootstrapped(3).await;
    let leader = cluster.leader(LONG).await;
    for id in 1..=3 {
        assert_eq!(cluster.node(id).status().voters, BTreeSet::from([1, 2, 3]));
    }
    let r = cluster.node(leader).write(add_vip()).await.unwrap();
    // A restart with the same config keeps the cluster (no re-bootstrap).
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(follower).await;
    cluster.restart(follower).await;
    let s = cluster.wait_version(follower, r.version, LONG).await;
    assert!(s.vips.contains_key(&vip()));
    let r2 = cluster.node(follower).write(add_backend(0)).await.unwrap();
    assert_eq!(r2.version, r.version + 1);
    cluster.shutdown().await;
}
