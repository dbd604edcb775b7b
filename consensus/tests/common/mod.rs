//! Test harness: real `ConsensusNode`s in this process, on 127.0.0.1 with
//! ephemeral ports and data directories in a temp dir. Every node is
//! reached through a small TCP proxy owned by the harness, so a test can cut
//! the links between chosen nodes (a network partition) and heal them.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgelb_consensus::wire::channel::announced_node_id;
use edgelb_consensus::{
    Backend, BackendState, ClusterSecret, ClusterState, Command, ConsensusConfig, ConsensusNode,
    Encapsulation, NodeId, Protocol, Role, VipFlags, VipKey,
};
use testbed::wait::wait_for_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Table version once the bootstrap membership is applied (recording the
/// voter set is itself a change to the replicated state).
pub const B: u64 = 1;

pub const SECRET: &[u8] = b"edgelb-test-cluster-secret-0001";

/// Raft timing used by tests: generous, as the machine is shared.
pub fn test_config(id: NodeId, dir: PathBuf, advertise: SocketAddr) -> ConsensusConfig {
    let mut c = ConsensusConfig::new(
        id,
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        dir,
        ClusterSecret::new(SECRET.to_vec()).expect("secret"),
    );
    c.advertise_addr = Some(advertise.to_string());
    c.timeouts.heartbeat = Duration::from_millis(100);
    c.timeouts.election_min = Duration::from_millis(400);
    c.timeouts.election_max = Duration::from_millis(800);
    c.timeouts.client = Duration::from_secs(8);
    c
}

/// Links cut by the test: (from, to) pairs whose connections are refused.
#[derive(Clone)]
pub struct Links {
    blocked: Arc<Mutex<HashSet<(NodeId, NodeId)>>>,
    /// Bumped whenever `blocked` grows, to wake open connections.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    /// Open proxied connections: id -> (from, to).
    live: Arc<Mutex<HashMap<u64, (NodeId, NodeId)>>>,
    next_conn: Arc<AtomicU64>,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            blocked: Default::default(),
            generation: Arc::new(tokio::sync::watch::channel(0).0),
            live: Default::default(),
            next_conn: Default::default(),
        }
    }
}

/// Removes a connection from the live set when its task ends.
struct LiveGuard(Links, u64);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.lock().unwrap().remove(&self.1);
    }
}

impl Links {
    /// Cuts every link between `a` and the nodes in `others`, both ways,
    /// and returns once every open connection on those links is closed.
    pub async fn isolate(&self, a: NodeId, others: &[NodeId]) {
        {
            let mut blocked = self.blocked.lock().unwrap();
            for &b in others {
                blocked.insert((a, b));
                blocked.insert((b, a));
            }
        }
        self.generation.send_modify(|g| *g += 1);
        let closed = wait_for_async(
            "proxied connections to close",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                let blocked = self.blocked.lock().unwrap();
                let open = self
                    .live
                    .lock()
                    .unwrap()
                    .values()
                    .any(|pair| blocked.contains(pair));
                std::future::ready((!open).then_some(()))
            },
        )
        .await;
        assert!(closed.is_ok(), "proxied connections did not close");
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.blocked.lock().unwrap().clear();
    }

    fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.lock().unwrap().contains(&(from, to))
    }
}

/// Forwards connections to node `to`, refusing those from blocked peers
/// (identified by the node id announced in the handshake's first frame).
async fn run_proxy(
    listener: TcpListener,
    to: NodeId,
    target: Arc<Mutex<Option<SocketAddr>>>,
    links: Links,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        let links2 = links.clone();
        tokio::spawn(async move {
            let mut prefix = [0u8; 4];
            let Ok(Ok(_)) = timeout(Duration::from_secs(2), inbound.read_exact(&mut prefix)).await
            else {
                return;
            };
            let len = u32::from_be_bytes(prefix) as usize;
            if len > 256 {
                return;
            }
            let mut body = vec![0u8; len];
            let Ok(Ok(_)) = timeout(Duration::from_secs(2), inbound.read_exact(&mut body)).await
            else {
                return;
            };
            let Ok(from) = announced_node_id(&body) else {
                return;
            };
            let conn = links2.next_conn.fetch_add(1, Ordering::Relaxed);
            let mut generation = links2.generation.subscribe();
            links2.live.lock().unwrap().insert(conn, (from, to));
            let _guard = LiveGuard(links2.clone(), conn);
            if links2.is_blocked(from, to) {
                return;
            }
            let Some(addr) = *target.lock().unwrap() else {
                return;
            };
            let Ok(mut outbound) = TcpStream::connect(addr).await else {
                return;
            };
            let _ = outbound.set_nodelay(true);
            let _ = inbound.set_nodelay(true);
            if outbound.write_all(&prefix).await.is_err()
                || outbound.write_all(&body).await.is_err()
            {
                return;
            }
            // Open connections are cut (both streams dropped) as soon as
            // their link is blocked.
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = async {
                    while !links2.is_blocked(from, to) {
                        if generation.changed().await.is_err() {
                            break;
                        }
                    }
                } => {}
            }
        });
    }
}

pub struct Member {
    pub node: Option<ConsensusNode>,
    pub dir: PathBuf,
    pub proxy_addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    proxy: tokio::task::JoinHandle<()>,
}

pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub members: BTreeMap<NodeId, Member>,
    pub links: Links,
    tune: fn(&mut ConsensusConfig),
    /// Given to every node's config at (re)start when set.
    pub initial_members: BTreeMap<NodeId, String>,
}

fn no_tuning(_: &mut ConsensusConfig) {}

impl Cluster {
    pub fn empty(tune: Option<fn(&mut ConsensusConfig)>) -> Self {
        Cluster {
            tmp: tempfile::tempdir().expect("tempdir"),
            members: BTreeMap::new(),
            links: Links::default(),
            tune: tune.unwrap_or(no_tuning),
            initial_members: BTreeMap::new(),
        }
    }

    /// Starts `n` nodes (ids 1..=n), initializes them as voters and waits
    /// for a leader.
    pub async fn start(n: u64, tune: Option<fn(&mut ConsensusConfig)>) -> Self {
        let mut c = Cluster::empty(tune);
        for id in 1..=n {
            c.add_member(id).await;
        }
        let members = c
            .members
            .iter()
            .map(|(id, m)| (*id, m.proxy_addr.to_string()))
            .collect();
        c.node(1).initialize(members).await.expect("initialize");
        c.leader(Duration::from_secs(20)).await;
        for id in 1..=n {
            c.wait_version(id, B, Duration::from_secs(20)).await;
        }
        c
    }

    /// Starts `n` nodes that all bootstrap the cluster from their config
    /// (`initial_members`), as daemons started from one config file would.
    pub async fn start_bootstrapped(n: u64) -> Self {
        let mut c = Cluster::empty(None);
        for id in 1..=n {
            c.add_proxy(id).await;
        }
        c.initial_members = c
            .members
            .iter()
            .map(|(id, m)| (*id, m.proxy_addr.to_string()))
            .collect();
        for id in 1..=n {
            c.restart(id).await;
        }
        c.leader(Duration::from_secs(20)).await;
        c
    }

    /// Creates the proxy and data dir of node `id` and starts it (not yet a
    /// cluster member).
    pub async fn add_member(&mut self, id: NodeId) -> &ConsensusNode {
        self.add_proxy(id).await;
        self.restart(id).await;
        self.node(id)
    }

    /// Creates the proxy and data dir of node `id` without starting it.
    pub async fn add_proxy(&mut self, id: NodeId) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind proxy");
        let proxy_addr = listener.local_addr().expect("proxy addr");
        let target = Arc::new(Mutex::new(None));
        let proxy = tokio::spawn(run_proxy(listener, id, target.clone(), self.links.clone()));
        let dir = self.tmp.path().join(format!("node-{id}"));
        self.members.insert(
            id,
            Member {
                node: None,
                dir,
                proxy_addr,
                target,
                proxy,
            },
        );
    }

    /// Starts node `id` again from its data directory.
    pub async fn restart(&mut self, id: NodeId) {
        let m = self.members.get_mut(&id).expect("member");
        assert!(m.node.is_none(), "node {id} is running");
        let mut config = test_config(id, m.dir.clone(), m.proxy_addr);
        config.initial_members = self.initial_members.clone();
        (self.tune)(&mut config);
        let node = ConsensusNode::start(config).await.expect("start node");
        *m.target.lock().unwrap() = Some(node.local_addr());
        m.node = Some(node);
    }

    /// Stops node `id` (its data directory stays).
    pub async fn kill(&mut self, id: NodeId) {
        let m = self.members.get_mut(&id).expect("member");
        *m.target.lock().unwrap() = None;
        let node = m.node.take().expect("node running");
        timeout(Duration::from_secs(10), node.shutdown())
            .await
            .expect("shutdown in time")
            .expect("shutdown");
    }

    pub fn node(&self, id: NodeId) -> &ConsensusNode {
        self.members[&id].node.as_ref().expect("node running")
    }

    pub fn live(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, m)| m.node.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Waits until one live node is leader and every live node in `among`
    /// (default: all live nodes) agrees on it.
    pub async fn leader_among(&self, among: &[NodeId], limit: Duration) -> NodeId {
        let mut views: Vec<Option<NodeId>> = Vec::new();
        let agreed = wait_for_async("an agreed leader", limit, Duration::from_millis(20), || {
            views = among
                .iter()
                .map(|id| self.node(*id).status().leader)
                .collect();
            let leader = match views.first() {
                Some(Some(l))
                    if views.iter().all(|v| *v == Some(*l))
                        && among.contains(l)
                        && self.node(*l).status().role == Role::Leader =>
                {
                    Some(*l)
                }
                _ => None,
            };
            std::future::ready(leader)
        })
        .await;
        match agreed {
            Ok(l) => l,
            Err(_) => panic!("no agreed leader within {limit:?}: {views:?}"),
        }
    }

    pub async fn leader(&self, limit: Duration) -> NodeId {
        let live = self.live();
        self.leader_among(&live, limit).await
    }

    /// Waits until node `id` has applied table version `version`.
    pub async fn wait_version(
        &self,
        id: NodeId,
        version: u64,
        limit: Duration,
    ) -> Arc<ClusterState> {
        let mut rx = self.node(id).subscribe();
        let result = timeout(limit, async {
            loop {
                let s = rx.borrow_and_update().clone();
                if s.version >= version {
                    return s;
                }
                rx.changed().await.expect("state channel open");
            }
        })
        .await;
        match result {
            Ok(s) => s,
            Err(_) => panic!(
                "node {id} did not reach version {version} within {limit:?} (at {})",
                self.node(id).state().version
            ),
        }
    }

    pub async fn shutdown(mut self) {
        for id in self.live() {
            self.kill(id).await;
        }
        for m in self.members.values() {
            m.proxy.abort();
        }
    }
}

pub fn vip() -> VipKey {
    VipKey {
        address: "192.0.2.1".parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
    }
}

pub fn add_vip() -> Command {
    Command::AddVip {
        key: vip(),
        flags: VipFlags::default(),
        encapsulation: Encapsulation::IpIp,
    }
}

/// The i-th distinct backend address (10.0.x.y).
pub fn backend_addr(i: u32) -> std::net::IpAddr {
    std::net::IpAddr::from(Ipv4Addr::from(0x0a00_0000u32 + 1 + i))
}

pub fn add_backend(i: u32) -> Command {
    Command::AddBackend {
        vip: vip(),
        backend: Backend {
            address: backend_addr(i),
            weight: 1 + (i % 100),
            state: BackendState::Active,
        },
    }
}

/// Mirror of the handshake's first message (the real one is private to the
/// channel), so a test can speak the protocol by hand.
#[derive(serde::Serialize)]
pub struct HandshakeHello {
    /// Protocol magic.
    pub magic: [u8; 4],
    /// Protocol version.
    pub version: u16,
    /// The sender's node id.
    pub node_id: u64,
    /// The sender's fresh nonce.
    pub nonce: [u8; 32],
}
