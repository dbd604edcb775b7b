//! The promise ECMP relies on: whichever load-balancer node a flow reaches,
//! it is sent to the same backend.
//!
//! Three real Raft nodes (edgelb-consensus over loopback TCP) replicate one
//! backend table. Each node drives its own XDP forwarder through the node
//! daemon's `DataPlane` (the code `lbnode` runs: applied state → Maglev
//! tables → BPF maps). The same flows, run through each node's real XDP
//! program with BPF_PROG_TEST_RUN, must leave every node as the same frame,
//! encapsulated to the backend `lbctl lookup` names. The table digest and a
//! sample of flow → backend choices are pinned by a golden file, so a change
//! to any hash, seed fold, encoding or sort order on the way fails here.
//!
//! Needs root (BPF, network namespaces).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr, TcpListener},
    path::Path,
    time::{Duration, Instant},
};

use edgelb_consensus::{
    Backend, BackendState, ClusterSecret, ClusterSettings, Command, ConsensusConfig, ConsensusNode,
    Encapsulation, NodeId, Protocol, VipFlags, VipKey,
};
use edgelb_node::{
    daemon::dataplane::{DataPlane, LocalSettings},
    tables::digest_hex,
};
use edgelb_sim::cluster::in_namespace;
use packet_builder::{tcp_flags, FrameBuilder, L4};
use testbed::{
    namespace::{unique_stem, veth_pair},
    wait::wait_for_async,
    Namespace,
};
use xdp_fwd::{Capacity, Forwarder, LoadOptions};

const GOLDEN: &str = "golden/same_backend_on_every_node.txt";
const NODES: u64 = 3;
const TABLE_SIZE: u32 = 4099;
const FLOWS: u16 = 300;
/// XDP_TX: the forwarder sends the encapsulated frame back out of `fwd0`.
const XDP_TX: u32 = 3;

fn v4_vip() -> VipKey {
    VipKey {
        address: "192.0.2.10".parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
    }
}

fn v6_vip() -> VipKey {
    VipKey {
        address: "2001:db8::10".parse().unwrap(),
        port: 53,
        protocol: Protocol::Udp,
    }
}

fn backend(address: &str, weight: u32) -> Backend {
    Backend {
        address: address.parse().unwrap(),
        weight,
        state: BackendState::Active,
    }
}

/// The replicated table: two VIPs (IPv4 TCP, IPv6 UDP), weighted backends,
/// one of them draining.
fn commands() -> Vec<Command> {
    let mut c = vec![Command::SetSettings(ClusterSettings {
        hash_seed: 0x0123_4567_89ab_cdef,
        table_size: TABLE_SIZE,
    })];
    for key in [v4_vip(), v6_vip()] {
        c.push(Command::AddVip {
            key,
            flags: VipFlags::default(),
            encapsulation: Encapsulation::IpIp,
        });
    }
    for (addr, weight) in [
        ("10.102.1.2", 100),
        ("10.102.2.2", 100),
        ("10.102.3.2", 200),
        ("10.102.4.2", 50),
        ("10.102.5.2", 100),
    ] {
        c.push(Command::AddBackend {
            vip: v4_vip(),
            backend: backend(addr, weight),
        });
    }
    for (addr, weight) in [("fd00:102::1", 1), ("fd00:102::2", 2), ("fd00:102::3", 1)] {
        c.push(Command::AddBackend {
            vip: v6_vip(),
            backend: backend(addr, weight),
        });
    }
    c.push(Command::SetBackendState {
        vip: v4_vip(),
        address: "10.102.4.2".parse().unwrap(),
        state: BackendState::Draining,
    });
    c
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local addr")
}

/// Starts three voters bootstrapping one cluster from the same member map.
async fn start_cluster(dir: &Path) -> Vec<ConsensusNode> {
    let addrs: BTreeMap<NodeId, SocketAddr> = (1..=NODES).map(|id| (id, free_addr())).collect();
    let members: BTreeMap<NodeId, String> =
        addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
    let mut nodes = Vec::new();
    for (id, addr) in &addrs {
        let secret =
            ClusterSecret::new(b"edgelb-cross-crate-test-secret-01".to_vec()).expect("secret");
        let mut config = ConsensusConfig::new(*id, *addr, dir.join(format!("node{id}")), secret);
        config.timeouts.election_min = Duration::from_millis(400);
        config.timeouts.election_max = Duration::from_millis(800);
        config.timeouts.client = Duration::from_secs(10);
        config.initial_members = members.clone();
        nodes.push(
            ConsensusNode::start(config)
                .await
                .expect("start consensus node"),
        );
    }
    nodes
}

/// Writes `commands` through `via` (a follower or the leader; writes are
/// forwarded) and returns the last version, retrying while no leader is known.
async fn write_all(via: &ConsensusNode, commands: Vec<Command>) -> u64 {
    let mut version = 0;
    for command in commands {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match via.write(command.clone()).await {
                Ok(receipt) => {
                    version = receipt.version;
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("write {command:?} not yet accepted: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("write {command:?} failed: {e}"),
            }
        }
    }
    version
}

/// Waits until every node has applied `version`, and returns each node's state.
async fn applied_everywhere(
    nodes: &[ConsensusNode],
    version: u64,
) -> Vec<edgelb_consensus::ClusterState> {
    let mut versions = Vec::new();
    let applied = wait_for_async(
        "every node to apply the version",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let states: Vec<_> = nodes.iter().map(|n| (*n.state()).clone()).collect();
            versions = states.iter().map(|s| s.version).collect::<Vec<_>>();
            let done = states.iter().all(|s| s.version >= version);
            std::future::ready(done.then_some(states))
        },
    )
    .await;
    applied.unwrap_or_else(|_| panic!("not applied everywhere: {versions:?}"))
}

fn data_plane() -> DataPlane {
    let forwarder = Forwarder::load_with(LoadOptions {
        pin_dir: None,
        capacity: Capacity {
            vips: 8,
            backends: 64,
            table_size: TABLE_SIZE,
            flows: 4096,
        },
    })
    .expect("load the XDP forwarder");
    DataPlane::new(
        forwarder,
        LocalSettings {
            source_v4: ("10.101.0.0".parse().unwrap(), 24),
            source_v6: ("fd00:101::".parse().unwrap(), 112),
            udp_timeout: Duration::from_secs(30),
            flood_threshold: xdp_fwd::FloodThreshold::FromCapacity,
        },
    )
}

/// A namespace where `fwd0` routes the backend prefixes through a gateway
/// with a permanent neighbour entry, so the program's `bpf_fib_lookup`
/// resolves next hops as it does on a real node.
fn route_lab() -> Namespace {
    let ns = Namespace::create(&unique_stem()).expect("namespace");
    ns.sysctl("net.ipv4.conf.all.forwarding", "1").unwrap();
    ns.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    veth_pair(&ns, "fwd0", &ns, "gw0").expect("veth");
    for args in [
        &["link", "set", "fwd0", "up"][..],
        &["link", "set", "gw0", "up"],
        &["addr", "add", "10.210.0.1/24", "dev", "fwd0"],
        &[
            "-6",
            "addr",
            "add",
            "fd00:210::1/64",
            "dev",
            "fwd0",
            "nodad",
        ],
        &[
            "neigh",
            "add",
            "10.210.0.2",
            "lladdr",
            "02:00:00:00:00:bb",
            "dev",
            "fwd0",
            "nud",
            "permanent",
        ],
        &[
            "-6",
            "neigh",
            "add",
            "fd00:210::2",
            "lladdr",
            "02:00:00:00:00:bb",
            "dev",
            "fwd0",
            "nud",
            "permanent",
        ],
        &[
            "route",
            "add",
            "10.102.0.0/16",
            "via",
            "10.210.0.2",
            "dev",
            "fwd0",
        ],
        &[
            "-6",
            "route",
            "add",
            "fd00:102::/64",
            "via",
            "fd00:210::2",
            "dev",
            "fwd0",
        ],
    ] {
        ns.ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    }
    ns
}

/// One test flow: a TCP SYN to the IPv4 VIP or a UDP datagram to the IPv6 VIP.
#[derive(Debug, Clone, Copy)]
struct Flow {
    vip: VipKey,
    src: IpAddr,
    sport: u16,
}

fn flows() -> Vec<Flow> {
    (0..FLOWS)
        .flat_map(|i| {
            let v4 = Flow {
                vip: v4_vip(),
                src: format!("198.51.100.{}", i % 250 + 1).parse().unwrap(),
                sport: 1024 + i * 7,
            };
            let v6 = Flow {
                vip: v6_vip(),
                src: format!("2001:db8:ff::{:x}", i + 1).parse().unwrap(),
                sport: 2048 + i * 11,
            };
            [v4, v6]
        })
        .collect()
}

fn frame(flow: &Flow) -> Vec<u8> {
    let l4 = match flow.vip.protocol {
        Protocol::Tcp => L4::Tcp {
            sport: flow.sport,
            dport: flow.vip.port,
            flags: tcp_flags::SYN,
        },
        Protocol::Udp => L4::Udp {
            sport: flow.sport,
            dport: flow.vip.port,
        },
    };
    FrameBuilder::new(flow.src, flow.vip.address, l4).build()
}

/// Outer destination of an IPIP / IP6IP6 frame.
fn outer_dst(frame: &[u8]) -> IpAddr {
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => IpAddr::from(<[u8; 4]>::try_from(&frame[30..34]).unwrap()),
        0x86dd => IpAddr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap()),
        other => panic!("not an IP frame: ethertype {other:#06x}"),
    }
}

/// Runs every flow through every node's forwarder and returns, per flow, the
/// backend all nodes chose (asserting they agree byte for byte, and agree
/// with `DataPlane::lookup`, the `lbctl lookup` path).
fn choices(ns: &Namespace, planes: Vec<DataPlane>) -> (Vec<DataPlane>, Vec<IpAddr>) {
    in_namespace(ns.name(), move || {
        let mut planes = planes;
        let ifindex = {
            let dev = std::ffi::CString::new("fwd0").unwrap();
            // SAFETY: a valid NUL-terminated name.
            unsafe { libc::if_nametoindex(dev.as_ptr()) }
        };
        assert_ne!(ifindex, 0, "fwd0 has no ifindex");
        let mut chosen = Vec::new();
        for flow in flows() {
            let input = frame(&flow);
            let mut outputs = Vec::new();
            for (n, plane) in planes.iter_mut().enumerate() {
                let out = plane
                    .test_run_on(&input, ifindex, 1)
                    .expect("BPF_PROG_TEST_RUN");
                assert_eq!(
                    out.verdict,
                    XDP_TX,
                    "node {} did not forward {flow:?}",
                    n + 1
                );
                let looked_up = plane
                    .lookup(&flow.vip, flow.src, flow.sport)
                    .expect("lookup")
                    .backend;
                assert_eq!(
                    looked_up,
                    Some(outer_dst(&out.frame)),
                    "node {}: lookup disagrees with the program for {flow:?}",
                    n + 1
                );
                outputs.push(out.frame);
            }
            for (n, o) in outputs.iter().enumerate().skip(1) {
                assert_eq!(
                    o,
                    &outputs[0],
                    "node {} and node 1 sent {flow:?} differently",
                    n + 1
                );
            }
            chosen.push(outer_dst(&outputs[0]));
        }
        (planes, chosen)
    })
    .expect("namespace thread")
}

/// The pinned values: table digest and the first flows' backends.
fn golden_text(digest: &str, chosen: &[IpAddr]) -> String {
    let mut s = format!("# Written by tests/tests/same_backend_on_every_node.rs (EDGELB_BLESS=1 rewrites it).\ndigest {digest}\n");
    for (flow, backend) in flows().iter().zip(chosen).take(24) {
        s.push_str(&format!(
            "{} {} {} -> {}\n",
            flow.vip, flow.src, flow.sport, backend
        ));
    }
    s
}

#[test]
fn every_node_sends_a_flow_to_the_same_backend() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let nodes = runtime.block_on(start_cluster(dir.path()));
    let version = runtime.block_on(write_all(&nodes[2], commands()));
    let states = runtime.block_on(applied_everywhere(&nodes, version));

    let ns = route_lab();
    let mut planes: Vec<DataPlane> = (0..NODES).map(|_| data_plane()).collect();
    let mut digests = BTreeSet::new();
    for (plane, state) in planes.iter_mut().zip(&states) {
        digests.insert(digest_hex(
            plane.apply(state).expect("program the forwarder").digest,
        ));
    }
    assert_eq!(
        digests.len(),
        1,
        "nodes computed different tables: {digests:?}"
    );
    let digest = digests.into_iter().next().unwrap();

    let (mut planes, chosen) = choices(&ns, planes);
    let drained: IpAddr = "10.102.4.2".parse().unwrap();
    assert!(
        !chosen.contains(&drained),
        "a draining backend got a new flow"
    );
    let used: BTreeSet<IpAddr> = chosen.iter().copied().collect();
    assert_eq!(
        used.len(),
        4 + 3,
        "every active backend gets new flows: {used:?}"
    );

    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    let text = golden_text(&digest, &chosen);
    if std::env::var_os("EDGELB_BLESS").is_some() {
        std::fs::write(&golden_path, &text).expect("write golden file");
    }
    let golden =
        std::fs::read_to_string(&golden_path).expect("golden file (EDGELB_BLESS=1 writes it)");
    assert_eq!(
        text, golden,
        "tables or flow choices changed: a cross-node, cross-version change"
    );

    // A change through Raft: add a backend and reweight another. Every node
    // reprograms only what changed and they still agree; Maglev moves only a
    // small share of flows.
    let change = vec![
        Command::AddBackend {
            vip: v4_vip(),
            backend: backend("10.102.6.2", 100),
        },
        Command::SetBackendWeight {
            vip: v4_vip(),
            address: "10.102.3.2".parse().unwrap(),
            weight: 100,
        },
    ];
    let version = runtime.block_on(write_all(&nodes[0], change));
    let states = runtime.block_on(applied_everywhere(&nodes, version));
    let mut digests = BTreeSet::new();
    for (plane, state) in planes.iter_mut().zip(&states) {
        digests.insert(digest_hex(plane.apply(state).expect("reprogram").digest));
    }
    assert_eq!(
        digests.len(),
        1,
        "nodes disagree after the change: {digests:?}"
    );
    assert!(
        !digests.contains(&digest),
        "the digest did not change with the table"
    );
    let (_planes, after) = choices(&ns, planes);
    let v4_moved = chosen
        .iter()
        .zip(&after)
        .step_by(2)
        .filter(|(a, b)| a != b)
        .count();
    let v6_moved = chosen
        .iter()
        .zip(&after)
        .skip(1)
        .step_by(2)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(v6_moved, 0, "flows of an unchanged VIP moved");
    // New share of 10.102.6.2 is 100/500 = 20%, and 10.102.3.2 gives up a
    // third of its 40%: about a third of the flows may move, not more.
    assert!(
        v4_moved > 0 && (v4_moved as f64) < 0.45 * f64::from(FLOWS),
        "{v4_moved} of {FLOWS} IPv4 flows moved"
    );

    runtime.block_on(async {
        for node in nodes {
            let _ = node.shutdown().await;
        }
    });
}
