//! Peer authentication and hostile input against live nodes over real TCP.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use edgelb_consensus::encoding::encode;
use edgelb_consensus::wire::channel::{ChannelError, SecureChannel, MAGIC, PROTOCOL_VERSION};
use edgelb_consensus::wire::message::{Request, Response};
use edgelb_consensus::{ClusterSecret, ConsensusConfig, ConsensusNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

const LONG: Duration = Duration::from_secs(20);
const IO: Duration = Duration::from_secs(5);

fn wrong_secret() -> ClusterSecret {
    ClusterSecret::new(b"not-the-cluster-secret-at-all!!".to_vec()).unwrap()
}

fn right_secret() -> ClusterSecret {
    ClusterSecret::new(SECRET.to_vec()).unwrap()
}

async fn write_frame(stream: &mut TcpStream, body: &[u8]) {
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
}

/// Reads until the peer closes; returns what was received (bounded).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(IO, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                assert!(got.len() < 1 << 20, "server keeps talking");
            }
            Err(_) => panic!("server did not close the connection within {IO:?}"),
        }
    }
}

/// The cluster still works: same leader, and a write commits.
async fn assert_healthy(cluster: &Cluster, leader: u64, term: u64, version: u64) {
    assert_eq!(cluster.leader(LONG).await, leader);
    assert_eq!(cluster.node(leader).status().term, term);
    let r = cluster
        .node(leader)
        .write(add_backend(version as u32))
        .await
        .unwrap();
    assert_eq!(r.version, version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_secret_is_refused() {
    let cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    cluster.node(leader).write(add_vip()).await.unwrap();
    let term = cluster.node(leader).status().term;
    let addr = cluster.node(leader).local_addr();

    // 1. A client with the wrong secret detects the server's proof is not
    //    for its secret, and vice versa.
    let err = SecureChannel::connect(addr, 99, &wrong_secret(), 1 << 20, IO)
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::AuthFailed(_)), "{err}");

    // 2. A client that ignores the server's proof and answers with a forged
    //    one is disconnected before it can send any request.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let hello = HandshakeHello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        node_id: 2,
        nonce: [7; 32],
    };
    write_frame(&mut raw, &encode(&hello).unwrap()).await;
    let mut prefix = [0u8; 4];
    timeout(IO, raw.read_exact(&mut prefix))
        .await
        .unwrap()
        .unwrap();
    let mut challenge = vec![0u8; u32::from_be_bytes(prefix) as usize];
    timeout(IO, raw.read_exact(&mut challenge))
        .await
        .unwrap()
        .unwrap();
    write_frame(&mut raw, &encode(&[0x42u8; 32]).unwrap()).await;
    let request = encode(&Request::ReadIndex).unwrap();
    let mut forged = request.clone();
    forged.extend_from_slice(&[0u8; 32]);
    let _ = raw.write_all(&(forged.len() as u32).to_be_bytes()).await;
    let _ = raw.write_all(&forged).await;
    assert!(
        read_until_closed(&mut raw).await.is_empty(),
        "no answer to an unauthenticated peer"
    );

    // 3. A whole node configured with the wrong secret, believing it shares a
    //    cluster with the leader, can never win a vote nor disturb the term.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ConsensusConfig::new(
        9,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        tmp.path().join("rogue"),
        wrong_secret(),
    );
    config.timeouts = test_config(9, tmp.path().into(), addr).timeouts;
    config.timeouts.client = Duration::from_secs(2);
    let rogue = ConsensusNode::start(config).await.unwrap();
    let members = [
        (9, rogue.local_addr().to_string()),
        (leader, addr.to_string()),
    ]
    .into_iter()
    .collect();
    rogue.initialize(members).await.unwrap();
    // Several election timeouts of campaigning.
    sleep(Duration::from_secs(3)).await;
    assert!(rogue.status().term > 1, "the rogue node did campaign");
    assert_eq!(rogue.status().leader, None);
    assert!(rogue.read_current().await.is_err());
    assert!(rogue.write(add_backend(500)).await.is_err());
    rogue.shutdown().await.unwrap();

    assert_healthy(&cluster, leader, term, B + 1).await;
    assert!(!cluster.node(leader).state().vips[&vip()]
        .backends
        .contains_key(&backend_addr(500)));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_frames_are_rejected_without_harm() {
    let cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    cluster.node(leader).write(add_vip()).await.unwrap();
    let term = cluster.node(leader).status().term;
    let victims: Vec<SocketAddr> = (1..=3).map(|id| cluster.node(id).local_addr()).collect();

    for addr in &victims {
        // Length prefix far beyond the frame limit.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
            .await
            .unwrap();
        assert!(read_until_closed(&mut s).await.is_empty());

        // Zero-length frame.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 0, 0, 0]).await.unwrap();
        assert!(read_until_closed(&mut s).await.is_empty());

        // Truncated frame: announces 100 bytes, sends 10, then hangs up.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 0, 0, 100]).await.unwrap();
        s.write_all(&[1; 10]).await.unwrap();
        s.shutdown().await.unwrap();
        assert!(read_until_closed(&mut s).await.is_empty());

        // Truncated length prefix.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 0]).await.unwrap();
        s.shutdown().await.unwrap();
        assert!(read_until_closed(&mut s).await.is_empty());

        // Garbage handshake of a plausible size, and a wrong magic.
        let mut s = TcpStream::connect(addr).await.unwrap();
        write_frame(&mut s, &[0xa5; 47]).await;
        assert!(read_until_closed(&mut s).await.is_empty());
        let mut s = TcpStream::connect(addr).await.unwrap();
        let hello = HandshakeHello {
            magic: *b"HTTP",
            version: PROTOCOL_VERSION,
            node_id: 1,
            nonce: [0; 32],
        };
        write_frame(&mut s, &encode(&hello).unwrap()).await;
        assert!(read_until_closed(&mut s).await.is_empty());

        // Authenticated peers that send undecodable messages are dropped too:
        // a wrong message type (trailing bytes), an unknown variant, and a
        // frame above the receiver's limit.
        let mut c = SecureChannel::connect(*addr, 77, &right_secret(), 64 << 20, IO)
            .await
            .unwrap();
        c.send(&Response::ReadIndex(Ok(Some(5)))).await.unwrap();
        assert!(c.recv::<Response>().await.is_err());
        let mut c = SecureChannel::connect(*addr, 77, &right_secret(), 64 << 20, IO)
            .await
            .unwrap();
        c.send(&1_000u32).await.unwrap();
        assert!(c.recv::<Response>().await.is_err());
        let mut c = SecureChannel::connect(*addr, 77, &right_secret(), 64 << 20, IO)
            .await
            .unwrap();
        let _ = c.send(&vec![0u8; 20 << 20]).await;
        assert!(c.recv::<Response>().await.is_err());

        // A well-formed authenticated request still gets an answer.
        let mut c = SecureChannel::connect(*addr, 77, &right_secret(), 1 << 20, IO)
            .await
            .unwrap();
        let r: Response = c.call(&Request::ReadIndex, IO).await.unwrap();
        assert!(matches!(r, Response::ReadIndex(_)));
    }
    assert_healthy(&cluster, leader, term, B + 1).await;
    cluster.shutdown().await;
}

/// What a garbage peer must not change on a node.
fn raft_and_table(node: &ConsensusNode) -> impl PartialEq + std::fmt::Debug {
    let s = node.status();
    (
        s.term,
        s.leader,
        s.last_log_index,
        s.committed_index,
        s.applied_index,
        s.table_version,
        s.voters,
        node.state(),
    )
}

/// Garbage from peers, generated from a fixed seed so a failure replays:
/// before the handshake (random bodies of a hello's size, oversized and
/// empty frames) and after it (correctly tagged frames whose message does
/// not decode). Every such connection is dropped and counted by the node it
/// reached; the Raft state and the table stay as they were; and the same
/// nodes still answer a valid request and commit a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_peers_are_dropped_counted_and_change_nothing() {
    use rand::{Rng, SeedableRng};
    const PER_NODE: u64 = 40;
    let cluster = Cluster::start(3, None).await;
    let leader = cluster.leader(LONG).await;
    cluster.node(leader).write(add_vip()).await.unwrap();
    for id in 1..=3 {
        cluster.wait_version(id, B + 1, LONG).await;
    }
    // Raft's metrics trail the applied table: wait until every node reports
    // the leader's last log entry applied, so "before" is a settled state.
    let last = cluster.node(leader).status().last_log_index;
    for id in 1..=3 {
        let node = cluster.node(id);
        testbed::wait::wait_for_async(
            &format!("node {id} to report {last:?} applied"),
            LONG,
            testbed::wait::DEFAULT_POLL,
            || async { (node.status().applied_index == last).then_some(()) },
        )
        .await
        .unwrap();
    }
    let term = cluster.node(leader).status().term;
    let before: Vec<_> = (1..=3).map(|id| raft_and_table(cluster.node(id))).collect();
    let rejected: Vec<u64> = (1..=3)
        .map(|id| cluster.node(id).rejected_peers())
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);

    for id in 1..=3 {
        let addr = cluster.node(id).local_addr();
        for i in 0..PER_NODE {
            let mut s = TcpStream::connect(addr).await.unwrap();
            match i % 4 {
                // A frame of a hello's size full of random bytes.
                0 => {
                    let mut body = vec![0u8; rng.gen_range(1..=256)];
                    rng.fill(&mut body[..]);
                    write_frame(&mut s, &body).await;
                }
                // A length prefix above the handshake's limit.
                1 => {
                    let len: u32 = rng.gen_range(257..=u32::MAX);
                    s.write_all(&len.to_be_bytes()).await.unwrap();
                    s.write_all(&[0x5a; 16]).await.unwrap();
                }
                // An empty frame.
                2 => s.write_all(&[0; 4]).await.unwrap(),
                // Authenticated, then a message that does not decode: a byte
                // string of 7..=250 bytes reads as request variant 7..=250,
                // and `Request` has 7 variants.
                _ => {
                    drop(s);
                    let mut c = SecureChannel::connect(addr, 77, &right_secret(), 1 << 20, IO)
                        .await
                        .unwrap();
                    let mut junk = vec![0u8; rng.gen_range(7..=250)];
                    rng.fill(&mut junk[..]);
                    c.send(&junk).await.unwrap();
                    assert!(c.recv::<Response>().await.is_err(), "garbage got an answer");
                    continue;
                }
            }
            assert!(
                read_until_closed(&mut s).await.is_empty(),
                "node {id} answered garbage #{i}"
            );
        }
    }

    for id in 1..=3u64 {
        let want = rejected[id as usize - 1] + PER_NODE;
        let node = cluster.node(id);
        testbed::wait::wait_for_async(
            &format!("node {id} to count {PER_NODE} rejected peers"),
            IO,
            testbed::wait::DEFAULT_POLL,
            || async { (node.rejected_peers() == want).then_some(()) },
        )
        .await
        .unwrap_or_else(|e| panic!("{e} (counted {})", node.rejected_peers()));
    }
    let after: Vec<_> = (1..=3).map(|id| raft_and_table(cluster.node(id))).collect();
    assert_eq!(before, after, "garbage changed Raft or table state");

    // A valid request on every node that got the garbage, then a write.
    for id in 1..=3 {
        let mut c = SecureChannel::connect(
            cluster.node(id).local_addr(),
            77,
            &right_secret(),
            1 << 20,
            IO,
        )
        .await
        .unwrap();
        let r: Response = c.call(&Request::ReadIndex, IO).await.unwrap();
        assert!(matches!(r, Response::ReadIndex(_)), "node {id}: {r:?}");
    }
    assert_healthy(&cluster, leader, term, B + 1).await;
    cluster.shutdown().await;
}
