//! End-to-end: the real cluster in namespaces (FRR router with ECMP, three
//! lbnode daemons with XDP in driver mode, four XDP-decapsulating backends),
//! configured through the real CLI, carrying real client traffic.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{TcpStream, UdpSocket},
    time::Duration,
};

use edgelb_sim::cluster::{in_namespace, Cluster, ClusterSpec, CLIENT_ADDR, VIP, VIP_UDP_PORT};

/// Opens `n` TCP connections to the VIP from the client and returns, per
/// backend name, how many connections it served.
fn tcp_spread(cluster: &Cluster, n: usize) -> BTreeMap<String, usize> {
    let vip = cluster.vip_tcp();
    in_namespace(cluster.client.name(), move || {
        let mut seen = BTreeMap::new();
        for k in 0..n {
            let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3))
                .expect("connect to the VIP");
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            writeln!(s, "hello {k}").unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).expect("answer");
            let name = line.split_whitespace().next().unwrap_or("").to_owned();
            *seen.entry(name).or_insert(0) += 1;
        }
        seen
    })
    .unwrap()
}

#[test]
fn cluster_serves_tcp_and_udp_through_every_node() {
    let cluster = Cluster::start(ClusterSpec::default()).expect("cluster up");
    cluster
        .configure_vip(100)
        .expect("configure VIP through lbctl");
    let digest = cluster
        .converge(Duration::from_secs(20))
        .expect("digests agree at the current version");
    assert_eq!(digest.len(), 16);
    let hops = cluster
        .wait_for_ecmp(3, Duration::from_secs(30))
        .expect("router ECMP over 3 nodes");
    assert_eq!(hops.len(), 3);

    let spread = tcp_spread(&cluster, 200);
    assert_eq!(spread.values().sum::<usize>(), 200);
    assert_eq!(spread.len(), 4, "every backend serves: {spread:?}");
    for (b, n) in &spread {
        assert!(*n >= 20, "backend {b} got only {n} of 200: {spread:?}");
    }

    let udp_answers = in_namespace(cluster.client.name(), || {
        let mut names = BTreeMap::new();
        for k in 0..50u32 {
            let s = UdpSocket::bind((CLIENT_ADDR, 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(format!("q{k}").as_bytes(), (VIP, VIP_UDP_PORT))
                .unwrap();
            let mut buf = [0u8; 256];
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                assert_eq!(
                    from,
                    (VIP, VIP_UDP_PORT).into(),
                    "DSR answer comes from the VIP"
                );
                let name = String::from_utf8_lossy(&buf[..n])
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                *names.entry(name).or_insert(0) += 1;
            }
        }
        names
    })
    .unwrap();
    assert_eq!(udp_answers.values().sum::<usize>(), 50, "{udp_answers:?}");

    // Every node forwarded some of it (ECMP spreads the flows over the nodes).
    let stats: Vec<String> = (1..=3)
        .map(|i| {
            String::from_utf8_lossy(
                &cluster
                    .lbctl(i, &["--json", "stats", "--interval", "0.1"])
                    .unwrap()
                    .stdout,
            )
            .into_owned()
        })
        .collect();
    for (i, s) in stats.iter().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(s).unwrap_or_else(|e| panic!("node {}: {e}: {s}", i + 1));
        let packets: u64 = v["after"]["vips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[1].as_u64().unwrap())
            .sum();
        assert!(packets > 0, "node {} forwarded nothing: {s}", i + 1);
    }

    // A table size no node's maps can hold would withdraw every node's
    // routes: the admin API refuses it before it reaches the log.
    let out = cluster
        .lbctl(
            1,
            &[
                "settings",
                "set",
                "--hash-seed",
                "7",
                "--table-size",
                "131071",
            ],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("refused") && err.contains("131071"),
        "{err}"
    );
    assert_eq!(
        cluster
            .converge(Duration::from_secs(10))
            .expect("still agreed"),
        digest,
        "the refused write changed the table"
    );
}
