//! Crash test with real processes: a 3-node cluster of `consensus-node`
//! processes on loopback; the leader process is SIGKILLed in the middle of a
//! stream of writes. Every acknowledged write must survive, on the
//! survivors and on the killed node once restarted from its data directory.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use common::{add_backend, add_vip, backend_addr, vip, SECRET};
use edgelb_consensus::wire::channel::SecureChannel;
use edgelb_consensus::wire::message::{ForwardError, Request, Response};
use edgelb_consensus::{ClusterSecret, ClusterState, Command, NodeId};
use tokio::time::{sleep, Instant};

const IO: Duration = Duration::from_secs(5);
const CLIENT_ID: NodeId = 1_000;

/// Kills its processes when dropped, so a failing test leaves none behind.
struct Processes(BTreeMap<NodeId, Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.0.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> SocketAddr {
    // Bound then released: a small window for reuse by someone else, which
    // would only make this test fail, not pass wrongly.
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap()
}

fn spawn(
    id: NodeId,
    addr: SocketAddr,
    dir: &Path,
    secret: &Path,
    init: Option<&BTreeMap<NodeId, SocketAddr>>,
) -> Child {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_consensus-node"));
    cmd.arg("--id")
        .arg(id.to_string())
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(dir.join(format!("node-{id}")))
        .arg("--secret-file")
        .arg(secret)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (m, a) in init.into_iter().flatten() {
        cmd.arg("--init").arg(format!("{m}={a}"));
    }
    cmd.spawn().expect("spawn consensus-node")
}

/// A client speaking the peer protocol, as an operator tool would.
struct Client {
    secret: ClusterSecret,
    addrs: BTreeMap<NodeId, SocketAddr>,
}

impl Client {
    async fn call(&self, id: NodeId, request: &Request) -> Option<Response> {
        let mut c = SecureChannel::connect(self.addrs[&id], CLIENT_ID, &self.secret, 1 << 24, IO)
            .await
            .ok()?;
        c.call(request, IO).await.ok()
    }

    /// The node that answers a read-index request as leader.
    async fn leader(&self, among: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for id in among {
                if let Some(Response::ReadIndex(Ok(_))) = self.call(*id, &Request::ReadIndex).await
                {
                    return *id;
                }
            }
            assert!(Instant::now() < deadline, "no leader among {among:?}");
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a write to the leader (following hints). `true` only when the
    /// leader acknowledged it.
    async fn write(&self, command: &Command, among: &[NodeId]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut target = among[0];
        while Instant::now() < deadline {
            let mut c = match SecureChannel::connect(
                self.addrs[&target],
                CLIENT_ID,
                &self.secret,
                1 << 24,
                IO,
            )
            .await
            {
                Ok(c) => c,
                Err(_) => {
                    // Certainly not delivered: try another node.
                    let i = among.iter().position(|id| *id == target).unwrap_or(0);
                    target = among[(i + 1) % among.len()];
                    sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            match c.call(&Request::Write(command.clone()), IO).await {
                Ok(Response::Write(Ok(_))) => return true,
                Ok(Response::Write(Err(ForwardError::NotLeader { leader }))) => {
                    match leader.and_then(|(id, _)| among.contains(&id).then_some(id)) {
                        Some(id) => target = id,
                        None => {
                            let i = among.iter().position(|id| *id == target).unwrap_or(0);
                            target = among[(i + 1) % among.len()];
                            sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                // Sent but no verdict: not acknowledged; do not resend.
                _ => return false,
            }
        }
        false
    }

    async fn read(&self, id: NodeId) -> Option<ClusterState> {
        match self.call(id, &Request::ReadState).await {
            Some(Response::ReadState(Ok(state))) => Some(*state),
            _ => None,
        }
    }

    /// Reads node `id` until `check` holds, bounded.
    async fn read_until(&self, id: NodeId, check: impl Fn(&ClusterState) -> bool) -> ClusterState {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.read(id).await {
                if check(&s) {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} never satisfied the check"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_process_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let secret_path: PathBuf = tmp.path().join("secret");
    std::fs::write(&secret_path, SECRET).unwrap();
    let addrs: BTreeMap<NodeId, SocketAddr> = (1..=3).map(|id| (id, free_port())).collect();
    let mut procs = Processes(BTreeMap::new());
    for (id, addr) in &addrs {
        let init = (*id == 1).then_some(&addrs);
        procs
            .0
            .insert(*id, spawn(*id, *addr, tmp.path(), &secret_path, init));
    }
    let client = Client {
        secret: ClusterSecret::new(SECRET.to_vec()).unwrap(),
        addrs: addrs.clone(),
    };
    let all = [1, 2, 3];
    let leader = client.leader(&all).await;
    assert!(client.write(&add_vip(), &all).await);

    // Writes stream from a separate task while the leader is killed, so the
    // kill can land in the middle of a write.
    let client = std::sync::Arc::new(client);
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let client = client.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut unacked = 0;
            for i in 0..300u32 {
                if client.write(&add_backend(i), &all).await {
                    acked.push(i);
                } else {
                    unacked += 1;
                }
                progress.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
            }
            (acked, unacked)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(std::sync::atomic::Ordering::Relaxed) < 60 {
        assert!(Instant::now() < deadline, "writes too slow");
        sleep(Duration::from_millis(1)).await;
    }
    let mut child = procs.0.remove(&leader).unwrap();
    child.kill().unwrap(); // SIGKILL: no shutdown path runs.
    child.wait().unwrap();
    let (acked, unacked) = tokio::time::timeout(Duration::from_secs(240), writer)
        .await
        .expect("writer finished")
        .unwrap();
    let survivors: Vec<NodeId> = all.iter().copied().filter(|id| *id != leader).collect();
    eprintln!(
        "acknowledged {} of 300 writes ({unacked} without verdict)",
        acked.len()
    );
    assert!(acked.len() > 60, "writes resumed after the kill");

    let has_all = |s: &ClusterState| {
        s.vips.get(&vip()).is_some_and(|v| {
            acked
                .iter()
                .all(|i| v.backends.contains_key(&backend_addr(*i)))
        })
    };
    for id in &survivors {
        client.read_until(*id, has_all).await;
    }
    // The killed node restarts from its data directory and catches up.
    procs.0.insert(
        leader,
        spawn(leader, addrs[&leader], tmp.path(), &secret_path, None),
    );
    let restarted = client.read_until(leader, has_all).await;
    let reference = client.read(survivors[0]).await.unwrap();
    assert_eq!(restarted.vips, reference.vips);
}
