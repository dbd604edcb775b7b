//! `lbctl` against a real 3-node cluster: three `lbnode` daemons in network
//! namespaces with XDP attached in driver mode, an FRR router peering with
//! each over BGP, and XDP-decapsulating backends (edgelb-sim's topology).
//! Every subcommand in human and JSON form, its errors, and a Prometheus
//! scrape checked for real values.
//!
//! Needs root and the workspace binaries:
//! `cargo build --release -p edgelb-node -p edgelb-sim` first.

mod support;

use std::{net::UdpSocket, time::Duration};

use edgelb_sim::cluster::{
    backend_addr, in_namespace, lb_addr, lb_router_addr, Cluster, ClusterSpec, CLIENT_ADDR, VIP,
    VIP_UDP_PORT,
};
use support::{fails, families, ok, ok_json, samples, scrape, POLL};
use testbed::wait::wait_for;

const TCP_VIP: &str = "192.0.2.10:80/tcp";
const UDP_VIP: &str = "192.0.2.10:53/udp";

/// The backend (by address) that answers a UDP query from `CLIENT_ADDR:sport`.
fn udp_answer(cluster: &Cluster, sport: u16) -> Option<String> {
    in_namespace(cluster.client.name(), move || {
        let s = UdpSocket::bind((CLIENT_ADDR, sport)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        // A few tries: the first packet may race the router's ARP.
        for _ in 0..3 {
            s.send_to(b"who", (VIP, VIP_UDP_PORT)).ok()?;
            let mut buf = [0u8; 256];
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                let name = String::from_utf8_lossy(&buf[..n])
                    .split_whitespace()
                    .next()?
                    .to_owned();
                let j: usize = name.strip_prefix('b')?.parse().ok()?;
                return Some(backend_addr(j).to_string());
            }
        }
        None
    })
    .ok()
    .flatten()
}

#[test]
fn lbctl_round_trips_against_a_real_cluster() {
    let mut cluster = Cluster::start(ClusterSpec {
        drain_secs: 1,
        ..ClusterSpec::default()
    })
    .expect("cluster up");
    let b: Vec<String> = (1..=4).map(|j| backend_addr(j).to_string()).collect();

    // --- status, before any VIP (once the freshly started cluster has
    // elected its first leader).
    let elected = wait_for("elected", Duration::from_secs(20), POLL, || {
        ok_json(&cluster, 2, &["status"])["leader"].as_u64()
    })
    .ok();
    assert!(
        elected.is_some(),
        "no leader elected\n{}",
        cluster.log_tails(20)
    );
    let human = ok(&cluster, 1, &["status"]);
    assert!(
        human.contains("digests: all reachable nodes agree"),
        "{human}"
    );
    for col in [
        "NODE",
        "ROLE",
        "TERM",
        "APPLIED",
        "VERSION",
        "DIGEST",
        "XDP",
        "BGP-UP",
        "ANNOUNCING",
    ] {
        assert!(human.contains(col), "status lacks {col}: {human}");
    }
    assert_eq!(
        human.matches("eth0:driver").count(),
        3,
        "every node reports XDP in driver mode: {human}"
    );
    let s = ok_json(&cluster, 2, &["status"]);
    assert!(s["leader"].as_u64().is_some(), "{s}");
    let nodes = s["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{s}");
    for n in nodes {
        let r = &n[1]["Ok"];
        assert_eq!(r["xdp"][0][0], "eth0", "{s}");
        assert_eq!(r["xdp"][0][1], "driver", "{s}");
    }

    // --- vip add / list / remove.
    let out = ok(&cluster, 1, &["vip", "add", TCP_VIP]);
    assert!(out.starts_with("ok: applied at table version "), "{out}");
    let w = ok_json(&cluster, 2, &["vip", "add", UDP_VIP]);
    assert_eq!(w["kind"], "written", "{w}");
    let v1 = w["version"].as_u64().expect("version");
    fails(&cluster, 3, &["vip", "add", TCP_VIP], "exists");
    ok(
        &cluster,
        3,
        &[
            "vip",
            "add",
            "192.0.2.99:8080/tcp",
            "--encap",
            "gue",
            "--hash-no-source-port",
        ],
    );
    let list = ok(&cluster, 1, &["vip", "list"]);
    assert!(
        list.contains("VIP") && list.contains("ENCAP") && list.contains("ACTIVE/BACKENDS"),
        "{list}"
    );
    assert!(
        list.contains("192.0.2.99:8080/tcp")
            && list.contains("gue:6080")
            && list.contains("no-sport"),
        "{list}"
    );
    let j = ok_json(&cluster, 2, &["vip", "list"]);
    assert_eq!(j["kind"], "vips", "{j}");
    assert_eq!(j["vips"].as_array().map(Vec::len), Some(3), "{j}");
    assert!(j["version"].as_u64().unwrap() > v1, "{j}");
    ok(&cluster, 2, &["vip", "remove", "192.0.2.99:8080/tcp"]);
    let list = ok(&cluster, 3, &["vip", "list"]);
    assert!(!list.contains("192.0.2.99"), "{list}");

    // --- backend add / list / set-weight / drain / undrain / down / remove.
    for (k, addr) in b.iter().enumerate() {
        let node = 1 + k % 3;
        ok(&cluster, node, &["backend", "add", TCP_VIP, addr]);
        ok_json(
            &cluster,
            node,
            &["backend", "add", UDP_VIP, addr, "--weight", "100"],
        );
    }
    let bl = ok(&cluster, 2, &["backend", "list", TCP_VIP]);
    for col in ["BACKEND", "WEIGHT", "STATE", "SHARE"] {
        assert!(bl.contains(col), "{bl}");
    }
    assert_eq!(bl.matches("25.0%").count(), 4, "{bl}");
    ok(
        &cluster,
        1,
        &["backend", "set-weight", TCP_VIP, &b[0], "200"],
    );
    ok(&cluster, 2, &["backend", "drain", TCP_VIP, &b[1]]);
    ok(&cluster, 3, &["backend", "down", TCP_VIP, &b[2]]);
    let bj = ok_json(&cluster, 1, &["backend", "list", TCP_VIP]);
    let text = bj.to_string();
    assert!(text.contains("200"), "weight 200 in {bj}");
    let bl = ok(&cluster, 1, &["backend", "list", TCP_VIP]);
    assert!(bl.contains("draining") && bl.contains("down"), "{bl}");
    // Active: b1 (200) and b4 (100) -> 66.7% / 33.3%.
    assert!(bl.contains("66.7%") && bl.contains("33.3%"), "{bl}");
    ok(&cluster, 2, &["backend", "undrain", TCP_VIP, &b[1]]);
    ok(&cluster, 3, &["backend", "undrain", TCP_VIP, &b[2]]);
    ok(
        &cluster,
        1,
        &["backend", "set-weight", TCP_VIP, &b[0], "100"],
    );
    let bl = ok(&cluster, 1, &["backend", "list", TCP_VIP]);
    assert_eq!(bl.matches("active").count(), 4, "{bl}");
    ok(&cluster, 1, &["backend", "add", TCP_VIP, "10.102.9.2"]);
    ok(&cluster, 2, &["backend", "remove", TCP_VIP, "10.102.9.2"]);
    assert!(!ok(&cluster, 3, &["backend", "list", TCP_VIP]).contains("10.102.9.2"));

    // --- errors: unknown VIP, bad weight, bad addresses, bad arguments.
    fails(
        &cluster,
        1,
        &["backend", "list", "192.0.2.77:80/tcp"],
        "unknown VIP",
    );
    fails(
        &cluster,
        1,
        &["backend", "add", "192.0.2.77:80/tcp", &b[0]],
        "192.0.2.77",
    );
    fails(
        &cluster,
        2,
        &["vip", "remove", "192.0.2.77:80/tcp"],
        "192.0.2.77",
    );
    fails(
        &cluster,
        3,
        &["backend", "set-weight", TCP_VIP, "10.102.77.2", "5"],
        "10.102.77.2",
    );
    fails(
        &cluster,
        1,
        &["backend", "set-weight", TCP_VIP, &b[0], "0"],
        "weight",
    );
    fails(
        &cluster,
        1,
        &["backend", "set-weight", TCP_VIP, &b[0], "70000"],
        "weight",
    );
    fails(
        &cluster,
        1,
        &["backend", "set-weight", TCP_VIP, &b[0], "heavy"],
        "heavy",
    );
    fails(
        &cluster,
        1,
        &["backend", "add", TCP_VIP, "10.102.1"],
        "10.102.1",
    );
    fails(&cluster, 1, &["vip", "add", "192.0.2.10:80/sctp"], "sctp");
    fails(
        &cluster,
        1,
        &["vip", "add", "192.0.2.300:80/tcp"],
        "bad VIP",
    );
    fails(
        &cluster,
        1,
        &["lookup", TCP_VIP, "--from", "10.100.0.2"],
        "bad --from",
    );
    fails(
        &cluster,
        1,
        &["lookup", TCP_VIP, "--from", "[2001:db8::1]:5"],
        "different address families",
    );
    fails(
        &cluster,
        1,
        &["node", "add", "9", "10.101.9.2"],
        "bad node address",
    );
    fails(&cluster, 1, &["stats", "--interval", "0"], "--interval");
    fails(&cluster, 1, &["vip", "frobnicate"], "frobnicate");
    // Nothing of that changed the state.
    assert_eq!(
        ok_json(&cluster, 1, &["vip", "list"])["vips"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // --- unreachable node, wrong token.
    let r = support::Run::from(
        cluster
            .client
            .command(
                &edgelb_sim::cluster::find_binary("lbctl")
                    .unwrap()
                    .to_string_lossy(),
            )
            .args(["--node", "127.0.0.1:1", "--token-file"])
            .arg(&cluster.token_file)
            .arg("status")
            .output()
            .unwrap(),
    );
    assert!(
        matches!(r.code, Some(c) if c != 0) && r.stderr.contains("127.0.0.1:1"),
        "{r:?}"
    );
    let bad_token = cluster.dir().join("wrong.token");
    std::fs::write(&bad_token, "not-the-token-0123456789").unwrap();
    let r = support::Run::from(
        cluster
            .client
            .command(
                &edgelb_sim::cluster::find_binary("lbctl")
                    .unwrap()
                    .to_string_lossy(),
            )
            .args(["--node", &format!("{}:7100", lb_addr(1)), "--token-file"])
            .arg(&bad_token)
            .args(["vip", "list"])
            .output()
            .unwrap(),
    );
    assert!(
        matches!(r.code, Some(c) if c != 0) && !r.stderr.is_empty() && r.stdout.is_empty(),
        "{r:?}"
    );

    // --- the data plane follows: every node programmed, the router has ECMP.
    cluster
        .converge(Duration::from_secs(20))
        .expect("nodes converge");
    cluster
        .wait_for_ecmp(3, Duration::from_secs(30))
        .expect("ECMP over the three nodes");

    // --- configuration changes do not flap the routes: every node keeps
    // announcing while it programs each new table.
    let watcher = {
        let router = cluster.router.name().to_owned();
        std::thread::spawn(move || {
            let mut fewest = usize::MAX;
            let deadline = std::time::Instant::now() + Duration::from_secs(8);
            while std::time::Instant::now() < deadline {
                let out = std::process::Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &router,
                        "ip",
                        "-4",
                        "route",
                        "show",
                        &format!("{VIP}/32"),
                    ])
                    .output()
                    .expect("ip route");
                fewest = fewest.min(
                    String::from_utf8_lossy(&out.stdout)
                        .matches(" via ")
                        .count(),
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            fewest
        })
    };
    for k in 0..12u32 {
        ok(
            &cluster,
            1 + (k as usize) % 3,
            &[
                "backend",
                "set-weight",
                TCP_VIP,
                &b[3],
                &(100 + k).to_string(),
            ],
        );
    }
    let fewest = watcher.join().expect("watcher");
    assert_eq!(
        fewest,
        3,
        "the router lost next hops while the VIP's backends were reweighted\n{}",
        cluster.log_tails(10)
    );
    cluster
        .converge(Duration::from_secs(20))
        .expect("nodes converge");

    // --- lookup agrees with where packets actually go.
    let mut agreed = 0;
    for sport in [40001u16, 40002, 40003, 40004, 40005, 40006] {
        let from = format!("{CLIENT_ADDR}:{sport}");
        let l = ok_json(
            &cluster,
            1 + usize::from(sport % 3),
            &["lookup", UDP_VIP, "--from", &from],
        );
        assert_eq!(l["kind"], "lookup", "{l}");
        let predicted = l["backend"].as_str().expect("a backend").to_owned();
        let human = ok(&cluster, 1, &["lookup", UDP_VIP, "--from", &from]);
        assert!(
            human.contains(&format!("backend {predicted}")),
            "{human} vs {l}"
        );
        let served = udp_answer(&cluster, sport).expect("the VIP answers");
        assert_eq!(
            served, predicted,
            "lookup for {from} predicted {predicted}, {served} answered"
        );
        agreed += 1;
    }
    assert_eq!(agreed, 6);

    // --- stats: human and JSON, with the traffic just sent.
    let st = ok(&cluster, 1, &["stats", "--interval", "0.2"]);
    for col in [
        "PKT/S",
        "BYTES/S",
        "DROP REASON",
        "CACHE EVENT",
        "flood_not_cached",
        "lru_evicted_established",
        TCP_VIP,
        UDP_VIP,
    ] {
        assert!(st.contains(col), "stats lacks {col}: {st}");
    }
    let total: u64 = (1..=3)
        .map(|i| {
            let v = ok_json(&cluster, i, &["stats", "--interval", "0.1"]);
            v["after"]["vips"]
                .as_array()
                .expect("vips")
                .iter()
                .map(|x| x[1].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .sum();
    assert!(
        total >= 6,
        "the nodes together forwarded the 6 queries: {total}"
    );

    // --- metrics: every family with real values.
    let status = ok_json(&cluster, 1, &["status"]);
    let version = status["version"].as_u64().unwrap();
    let digest = status["nodes"][0][1]["Ok"]["table_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let leader = status["leader"].as_u64().unwrap();
    let mut exported = std::collections::BTreeSet::new();
    for i in 1..=3 {
        // Counters are exported once a second: wait for the latest round.
        let text = wait_for("text", Duration::from_secs(10), POLL, || {
            let t = scrape(&cluster, i).ok()?;
            let v = samples(&t, "edgelb_table_version", &[]);
            let healthy = samples(&t, "edgelb_health_check_up", &[])
                .iter()
                .filter(|(_, v)| *v == 1.0)
                .count();
            let peer = lb_router_addr(i).to_string();
            let announced = samples(&t, "edgelb_bgp_prefixes_announced", &[("peer", &peer)])
                .first()
                .map(|s| s.1);
            (v.first().map(|s| s.1) == Some(version as f64)
                && healthy == 8
                && announced == Some(1.0))
            .then_some(t)
        })
        .ok()
        .unwrap_or_else(|| {
            panic!("node {i}: metrics never showed version {version} and 8 healthy backends")
        });
        let fams = families(&text);
        exported.extend(fams.iter().cloned());
        for f in [
            "edgelb_vip_packets_total",
            "edgelb_vip_bytes_total",
            "edgelb_backend_packets_total",
            "edgelb_backend_bytes_total",
            "edgelb_xdp_events_total",
            "edgelb_table_version",
            "edgelb_table_digest_info",
            "edgelb_raft_term",
            "edgelb_raft_leader",
            "edgelb_raft_is_leader",
            "edgelb_raft_commit_index",
            "edgelb_raft_applied_index",
            "edgelb_bgp_announcing",
            "edgelb_bgp_session_established",
            "edgelb_bgp_prefixes_announced",
            "edgelb_health_check_up",
        ] {
            assert!(fams.contains(f), "node {i} lacks {f}:\n{text}");
        }
        let current: Vec<_> = samples(&text, "edgelb_table_digest_info", &[])
            .into_iter()
            .filter(|s| s.1 == 1.0)
            .collect();
        assert_eq!(
            current.len(),
            1,
            "node {i}: one current digest: {current:?}"
        );
        assert!(
            current[0].0.contains(&digest),
            "node {i}: {current:?} vs {digest}"
        );
        assert!(samples(&text, "edgelb_raft_term", &[])[0].1 >= 1.0);
        assert_eq!(
            samples(&text, "edgelb_raft_leader", &[])[0].1,
            leader as f64,
            "node {i}"
        );
        assert!(samples(&text, "edgelb_raft_commit_index", &[])[0].1 >= 1.0);
        assert!(samples(&text, "edgelb_raft_applied_index", &[])[0].1 >= 1.0);
        let peer = lb_router_addr(i).to_string();
        assert_eq!(
            samples(&text, "edgelb_bgp_session_established", &[("peer", &peer)])[0].1,
            1.0,
            "node {i}"
        );
        let bgp_lines: Vec<&str> = text.lines().filter(|l| l.contains("bgp")).collect();
        assert_eq!(
            samples(&text, "edgelb_bgp_prefixes_announced", &[("peer", &peer)])[0].1,
            1.0,
            "node {i}: {bgp_lines:#?}"
        );
        assert_eq!(
            samples(&text, "edgelb_bgp_announcing", &[])[0].1,
            1.0,
            "node {i}"
        );
        for reason in [
            "drop_no_backend",
            "drop_fib",
            "lru_hit",
            "lru_miss",
            "lru_evicted_established",
            "flood_entered",
            "flood_left",
            "flood_not_cached",
            "second_hop_sent",
        ] {
            assert_eq!(
                samples(&text, "edgelb_xdp_events_total", &[("event", reason)]).len(),
                1,
                "{reason}"
            );
        }
    }
    // Every metric the shipped Grafana dashboard queries is exported.
    for m in support::dashboard_metrics(&support::dashboard()) {
        assert!(
            exported.contains(&m),
            "deploy/grafana/edgelb.json uses {m}, which no node exports: {exported:?}"
        );
    }

    // The 6 queries (one packet each) show in the per-VIP counters, summed
    // over the nodes ECMP spread them to (exported once a second).
    let forwarded_packets = wait_for("forwarded packets", Duration::from_secs(10), POLL, || {
        let mut sum = 0.0;
        for i in 1..=3 {
            let t = scrape(&cluster, i).ok()?;
            sum += samples(&t, "edgelb_vip_packets_total", &[("vip", UDP_VIP)])
                .iter()
                .map(|s| s.1)
                .sum::<f64>();
        }
        (sum >= 6.0).then_some(sum)
    })
    .ok();
    assert!(
        forwarded_packets.is_some(),
        "VIP packet counters never reached 6 across the nodes"
    );

    // --- node list, then a real membership round trip of node 3.
    let nl = ok(&cluster, 1, &["node", "list"]);
    assert_eq!(nl.matches("voter").count(), 3, "{nl}");
    let nj = ok_json(&cluster, 2, &["node", "list"]);
    assert_eq!(nj["nodes"].as_array().map(Vec::len), Some(3), "{nj}");
    // Every daemon registered its admin address through Raft (what `status`
    // uses to reach nodes that joined after the cluster began).
    let registered = wait_for("registered", Duration::from_secs(20), POLL, || {
        let nj = ok_json(&cluster, 2, &["node", "list"]);
        let all = nj["nodes"].as_array()?.iter().all(|m| {
            let id = m["id"].as_u64().unwrap_or(0) as usize;
            m["admin"] == format!("{}:{}", lb_addr(id), edgelb_sim::cluster::ADMIN_PORT)
        });
        all.then_some(nj)
    })
    .ok();
    assert!(registered.is_some(), "admin addresses not registered: {nj}");
    fails(
        &cluster,
        1,
        &["node", "remove", "9"],
        "node 9 is not a member",
    );

    // Node 3 leaves (stopped, removed) and comes back as a fresh member
    // (empty data dir, added through lbctl: learner, caught up, voter).
    assert!(cluster.stop_lb(3, Duration::from_secs(20)), "node 3 stops");
    let out = ok(&cluster, 1, &["node", "remove", "3"]);
    assert!(out.starts_with("ok"), "{out}");
    let nl = ok(&cluster, 2, &["node", "list"]);
    assert_eq!(nl.matches("voter").count(), 2, "{nl}");
    assert!(!nl.contains(&lb_addr(3).to_string()), "{nl}");
    std::fs::remove_dir_all(cluster.dir().join("lb3-data")).expect("wipe node 3's Raft data");
    cluster.restart_lb(3).expect("node 3 starts");
    let raft3 = format!("{}:7000", lb_addr(3));
    let added = wait_for("added", Duration::from_secs(30), POLL, || {
        let r = support::lbctl(&cluster, 1, &["--json", "node", "add", "3", &raft3]);
        (r.code == Some(0))
            .then(|| serde_json::from_str::<serde_json::Value>(&r.stdout).expect("JSON"))
    })
    .ok()
    .unwrap_or_else(|| panic!("node add 3 never succeeded\n{}", cluster.log_tails(20)));
    assert_eq!(added["kind"], "written", "{added}");
    let nj = ok_json(&cluster, 1, &["node", "list"]);
    let members = nj["nodes"].as_array().expect("nodes");
    assert_eq!(members.len(), 3, "{nj}");
    assert!(members.iter().all(|m| m["voter"] == true), "{nj}");
    // It caught up: same table digest everywhere, and it announces again.
    cluster
        .converge(Duration::from_secs(20))
        .expect("node 3 has the current table");
    cluster
        .wait_for_ecmp(3, Duration::from_secs(30))
        .expect("node 3 announces again");
}
