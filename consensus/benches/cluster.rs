//! Loopback benchmark of a 3-node cluster: commit latency (leader and
//! forwarded), write throughput (sequential and concurrent) and leader
//! failover time. Prints a Markdown report.
//!
//! Run: `cargo bench -p edgelb-consensus --bench cluster`
//! (`EDGELB_BENCH_QUICK=1` for a short smoke run).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgelb_consensus::{
    Backend, BackendState, ClusterSecret, Command, ConsensusConfig, ConsensusNode, Encapsulation,
    NodeId, Protocol, Role, VipFlags, VipKey,
};
use testbed::stats::nearest_rank;

const HEARTBEAT: Duration = Duration::from_millis(50);
const ELECTION_MIN: Duration = Duration::from_millis(150);
const ELECTION_MAX: Duration = Duration::from_millis(300);

fn vip() -> VipKey {
    VipKey {
        address: "192.0.2.1".parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
    }
}

fn set_weight(i: u64) -> Command {
    Command::SetBackendWeight {
        vip: vip(),
        address: "10.0.0.1".parse().unwrap(),
        weight: 1 + (i % 65_535) as u32,
    }
}

fn config(id: NodeId, dir: &std::path::Path, listen: SocketAddr) -> ConsensusConfig {
    let mut c = ConsensusConfig::new(
        id,
        listen,
        dir.join(format!("node-{id}")),
        ClusterSecret::new(b"benchmark-cluster-secret".to_vec()).unwrap(),
    );
    c.timeouts.heartbeat = HEARTBEAT;
    c.timeouts.election_min = ELECTION_MIN;
    c.timeouts.election_max = ELECTION_MAX;
    c.timeouts.client = Duration::from_secs(10);
    c
}

struct Bench {
    dir: tempfile::TempDir,
    addrs: BTreeMap<NodeId, SocketAddr>,
    nodes: BTreeMap<NodeId, Arc<ConsensusNode>>,
}

impl Bench {
    async fn start() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for id in 1..=3 {
            let node =
                ConsensusNode::start(config(id, dir.path(), (Ipv4Addr::LOCALHOST, 0).into()))
                    .await
                    .unwrap();
            addrs.insert(id, node.local_addr());
            nodes.insert(id, Arc::new(node));
        }
        let members = addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
        nodes[&1].initialize(members).await.unwrap();
        let b = Bench { dir, addrs, nodes };
        b.leader().await;
        b
    }

    async fn leader(&self) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (id, n) in &self.nodes {
                if n.status().role == Role::Leader {
                    return *id;
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn kill(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).unwrap();
        let node = Arc::try_unwrap(node).ok().expect("sole owner");
        node.shutdown().await.unwrap();
    }

    async fn restart(&mut self, id: NodeId) {
        let node = ConsensusNode::start(config(id, self.dir.path(), self.addrs[&id]))
            .await
            .unwrap();
        self.nodes.insert(id, Arc::new(node));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn latencies(node: &ConsensusNode, n: u64, offset: u64) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        node.write(set_weight(offset + i)).await.unwrap();
        v.push(t.elapsed());
    }
    v.sort();
    v
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("EDGELB_BENCH_QUICK").is_some();
    let (n_lat, n_conc, writers, rounds) = if quick {
        (100, 200, 8, 2)
    } else {
        (2_000, 4_000, 32, 7)
    };

    let mut b = Bench::start().await;
    let leader = b.leader().await;
    let follower = *b.nodes.keys().find(|id| **id != leader).unwrap();
    let ln = b.nodes[&leader].clone();
    ln.write(Command::AddVip {
        key: vip(),
        flags: VipFlags::default(),
        encapsulation: Encapsulation::IpIp,
    })
    .await
    .unwrap();
    ln.write(Command::AddBackend {
        vip: vip(),
        backend: Backend {
            address: "10.0.0.1".parse().unwrap(),
            weight: 1,
            state: BackendState::Active,
        },
    })
    .await
    .unwrap();
    latencies(&ln, 100, 0).await; // warm-up

    let t = Instant::now();
    let at_leader = latencies(&ln, n_lat, 1_000).await;
    let seq_elapsed = t.elapsed();
    let fwd = latencies(&b.nodes[&follower], n_lat, 50_000).await;

    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let node = b.nodes[&if w % 2 == 0 { leader } else { follower }].clone();
        let per = n_conc / writers;
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                node.write(set_weight(w * 1_000 + i)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let conc_elapsed = t.elapsed();
    drop(ln);

    let seq_rate = n_lat as f64 / seq_elapsed.as_secs_f64();
    let conc_rate = (n_conc / writers * writers) as f64 / conc_elapsed.as_secs_f64();

    // Failover: kill the leader, then time until a write through a survivor
    // is committed (the write itself waits for and finds the new leader).
    let mut failovers = Vec::new();
    let mut kills = Vec::new();
    for r in 0..rounds {
        let old = b.leader().await;
        let survivor = b.nodes[b.nodes.keys().find(|id| **id != old).unwrap()].clone();
        let t = Instant::now();
        b.kill(old).await;
        kills.push(t.elapsed());
        survivor.write(set_weight(90_000 + r)).await.unwrap();
        failovers.push(t.elapsed());
        drop(survivor);
        b.restart(old).await;
        // Let the restarted node catch up before the next round.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    failovers.sort();
    kills.sort();

    let med_leader = nearest_rank(&at_leader, 0.5).expect("samples");
    let med_fwd = nearest_rank(&fwd, 0.5).expect("samples");
    println!("## edgelb-consensus: 3-node cluster on loopback\n");
    println!(
        "Timeouts: heartbeat {} , election {}..{}. Each write is fsynced (redb) on every node before it counts.\n",
        ms(HEARTBEAT),
        ms(ELECTION_MIN),
        ms(ELECTION_MAX)
    );
    println!("| figure | value |\n|---|---|");
    println!(
        "| commit latency at leader, median ({n_lat} sequential writes) | {} |",
        ms(med_leader)
    );
    println!(
        "| commit latency at leader, p99 | {} |",
        ms(nearest_rank(&at_leader, 0.99).expect("samples"))
    );
    println!(
        "| commit latency via follower (forwarded), median | {} |",
        ms(med_fwd)
    );
    println!(
        "| commit latency via follower (forwarded), p99 | {} |",
        ms(nearest_rank(&fwd, 0.99).expect("samples"))
    );
    println!("| sequential writes/s (1 writer at leader) | {seq_rate:.0} |");
    println!("| concurrent writes/s ({writers} writers, half via follower) | {conc_rate:.0} |");
    println!(
        "| leader failover, kill to first commit, median of {rounds} | {} |",
        ms(nearest_rank(&failovers, 0.5).expect("samples"))
    );
    println!(
        "| leader failover, min / max | {} / {} |",
        ms(failovers[0]),
        ms(failovers[failovers.len() - 1])
    );
    println!("\nRatios (same run): forwarded/leader median latency = {:.2}x; concurrent/sequential throughput = {:.2}x",
        med_fwd.as_secs_f64() / med_leader.as_secs_f64(),
        conc_rate / seq_rate
    );
    println!(
        "Of the failover time, stopping the old leader (closing its sockets) took a median of {}.",
        ms(nearest_rank(&kills, 0.5).expect("samples"))
    );
    println!(
        "Failover samples: {:?}",
        failovers.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );

    let ids: Vec<_> = b.nodes.keys().copied().collect();
    for id in ids {
        b.kill(id).await;
    }
}
