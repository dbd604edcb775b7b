//! SIGTERM on a real `lbnode` observed from its real BGP peer (FRR in the
//! router namespace): the VIP route is withdrawn at the router while the node
//! keeps forwarding for the drain period, then the session ends with Cease,
//! the process exits 0, XDP is detached and the pinned maps are removed.
//!
//! Needs root and `cargo build --release -p edgelb-node -p edgelb-sim`.

mod support;

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use edgelb_sim::cluster::{find_binary, lb_addr, Cluster};
use support::{ok_json, POLL};
use testbed::wait::wait_for;

/// Kills the child if the test fails before it exits on its own.
struct OwnedDaemon(Child);

impl Drop for OwnedDaemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

const DRAIN_SECS: u64 = 6;

/// Packets node `i` forwarded to the TCP VIP so far.
fn forwarded(cluster: &Cluster, i: usize) -> u64 {
    let v = ok_json(cluster, i, &["stats", "--interval", "0.1"]);
    v["after"]["vips"]
        .as_array()
        .expect("vips")
        .iter()
        .map(|x| x[1].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn sigterm_withdraws_then_drains_then_ceases_and_detaches() {
    let mut cluster = support::serving_cluster();

    // Take node 3 over so this test owns its exit status: stop the sim's
    // process, then start the same node again with a longer drain period.
    assert!(cluster.stop_lb(3, Duration::from_secs(20)), "node 3 stops");
    let node3 = &cluster.lbs[2];
    let config = std::fs::read_to_string(&node3.config).unwrap();
    let pin_dir = config
        .lines()
        .find_map(|l| l.strip_prefix("pin_dir = \""))
        .map(|p| std::path::PathBuf::from(p.trim_end_matches('"')))
        .expect("pin_dir in the sim config");
    let config = config.replace("period_secs = 1", &format!("period_secs = {DRAIN_SECS}"));
    assert!(config.contains(&format!("period_secs = {DRAIN_SECS}")));
    std::fs::write(&node3.config, config).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cluster.dir().join("lb3.log"))
        .unwrap();
    let mut cmd = node3
        .ns
        .command(&find_binary("lbnode").unwrap().to_string_lossy());
    cmd.arg("--config")
        .arg(&node3.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut daemon = OwnedDaemon(cmd.spawn().expect("spawn lbnode"));
    let hop = lb_addr(3).to_string();
    cluster
        .wait_next_hops(Duration::from_secs(30), |h| h.len() == 3)
        .unwrap_or_else(|e| panic!("node 3 announces again: {e}\n{}", cluster.log_tails(20)));
    assert!(pin_dir.exists(), "maps pinned at {}", pin_dir.display());
    // `ip -j`: "xdp": {"mode": 1} is XDP_ATTACHED_DRV (2 would be generic).
    let xdp = cluster.lbs[2]
        .ns
        .ip(["-j", "link", "show", "eth0"])
        .unwrap();
    let link: serde_json::Value = serde_json::from_slice(&xdp.stdout).expect("ip -j output");
    assert_eq!(
        link[0]["xdp"]["mode"], 1,
        "XDP attached in driver mode: {link}"
    );

    // Existing flows keep reaching node 3 after its route is gone (as a
    // router's flow cache or a slow peer would): pin the client's traffic
    // to it with a policy route.
    support::pin_client_to_node(&cluster, 3);
    assert_eq!(
        support::tcp_round_trips(&cluster, 10),
        10,
        "served through node 3 before SIGTERM"
    );
    let before = forwarded(&cluster, 3);
    assert!(before > 0, "node 3 forwarded the connections");

    // SIGTERM.
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };

    // 1. The router loses the route through node 3, the session stays up.
    let took = cluster
        .wait_next_hops(Duration::from_secs(5), |h| {
            h.len() == 2 && !h.contains(&hop)
        })
        .unwrap_or_else(|e| panic!("withdrawal at the router: {e}\n{}", cluster.log_tails(20)));
    let neighbor = cluster
        .frr
        .vtysh(&format!("show bgp neighbor {hop} json"))
        .expect("vtysh");
    assert!(
        neighbor.contains("\"bgpState\":\"Established\""),
        "session still up while draining: {neighbor}"
    );
    assert!(
        took < Duration::from_secs(DRAIN_SECS),
        "withdrawn ({took:?}) before the drain ends"
    );

    // 2. The node still forwards during the drain period.
    assert_eq!(
        support::tcp_round_trips(&cluster, 10),
        10,
        "served through node 3 while draining"
    );
    let during = forwarded(&cluster, 3);
    assert!(
        during > before,
        "node 3 forwarded while draining ({before} -> {during})"
    );
    assert!(
        matches!(daemon.0.try_wait(), Ok(None)),
        "still running inside the drain period"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(DRAIN_SECS),
        "checks ran inside the drain period"
    );

    // 3. Exit 0 after the drain period.
    let status = wait_for("status", Duration::from_secs(DRAIN_SECS + 15), POLL, || {
        daemon.0.try_wait().ok().flatten()
    })
    .ok()
    .unwrap_or_else(|| panic!("lbnode did not exit\n{}", cluster.log_tails(20)));
    let ran = sent.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status\n{}",
        cluster.log_tails(20)
    );
    assert!(
        ran >= Duration::from_secs(DRAIN_SECS),
        "exited after {ran:?}, before the drain period ended"
    );

    // 4. The session ended with Cease (not a hold-timer expiry).
    let text = wait_for("text", Duration::from_secs(5), POLL, || {
        let t = cluster
            .frr
            .vtysh(&format!("show bgp neighbor {hop}"))
            .ok()?;
        (!t.contains("BGP state = Established")).then_some(t)
    })
    .expect("session down at the router");
    assert!(text.contains("Cease"), "router saw a Cease: {text}");
    assert!(!text.contains("Hold Timer Expired"), "{text}");

    // 5. XDP detached, pins removed.
    let link = cluster.lbs[2].ns.ip(["link", "show", "eth0"]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("xdp"), "XDP still attached: {link}");
    assert!(
        !pin_dir.exists()
            || std::fs::read_dir(&pin_dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(true),
        "pins left in {}",
        pin_dir.display()
    );
    // With the route gone and the node detached, nothing serves the pinned
    // path any more: proof the earlier answers really went through node 3.
    assert_eq!(
        support::tcp_round_trips(&cluster, 2),
        0,
        "node 3 no longer forwards after exiting"
    );
}
