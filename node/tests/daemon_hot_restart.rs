//! Hot restart (SIGUSR2) of a real `lbnode`: the process exits leaving XDP
//! attached and its maps pinned, traffic keeps being forwarded by the node
//! while no daemon runs, the next process adopts the pins, and the FRR
//! router (graceful-restart helper) keeps the node's route throughout.
//!
//! Needs root and `cargo build --release -p edgelb-node -p edgelb-sim`.

mod support;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use edgelb_sim::cluster::{lb_addr, VIP};
use support::POLL;
use testbed::wait::wait_for;

/// The log without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn sigusr2_restart_keeps_forwarding_and_the_route() {
    let mut cluster = support::serving_cluster();
    let hop = lb_addr(3).to_string();

    // Send the client's traffic through node 3 only, to see its forwarding.
    support::pin_client_to_node(&cluster, 3);
    assert_eq!(
        support::tcp_round_trips(&cluster, 5),
        5,
        "served through node 3"
    );

    // Watch the router's next hops for the whole restart.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (router, done, hop) = (cluster.router.name().to_owned(), done.clone(), hop.clone());
        std::thread::spawn(move || {
            let mut missing = 0u32;
            let deadline = Instant::now() + Duration::from_secs(90);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
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
                if !String::from_utf8_lossy(&out.stdout).contains(&format!("via {hop} ")) {
                    missing += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            missing
        })
    };

    let pid = cluster.lbs[2]
        .process
        .as_ref()
        .and_then(|p| p.pid())
        .expect("node 3 runs");
    // SAFETY: kill(2) on the sim's child process.
    unsafe { libc::kill(pid as i32, libc::SIGUSR2) };
    let exited = wait_for("exited", Duration::from_secs(15), POLL, || {
        cluster.lbs[2]
            .process
            .as_mut()
            .is_some_and(|p| p.has_exited())
            .then_some(())
    })
    .ok();
    assert!(
        exited.is_some(),
        "lbnode exits on SIGUSR2\n{}",
        cluster.log_tails(20)
    );

    // The session ended without a NOTIFICATION: the router holds the route
    // as stale (graceful restart) instead of withdrawing it.
    let stale = wait_for("stale", Duration::from_secs(5), POLL, || {
        let route = cluster
            .frr
            .vtysh(&format!("show bgp ipv4 unicast {VIP}/32"))
            .ok()?;
        route.contains("(stale)").then_some(route)
    })
    .ok();
    assert!(
        stale.is_some(),
        "router keeps node 3's route as stale\n{}",
        cluster.log_tails(20)
    );
    let neighbor = cluster
        .frr
        .vtysh(&format!("show bgp neighbor {hop}"))
        .unwrap_or_default();
    assert!(
        !neighbor.contains("Cease"),
        "no Cease on a hot restart: {neighbor}"
    );
    // No daemon: XDP still attached, maps pinned, packets still forwarded.
    let link = cluster.lbs[2]
        .ns
        .ip(["-d", "link", "show", "eth0"])
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(link.contains("prog/xdp"), "XDP stays attached: {link}");
    let config = std::fs::read_to_string(&cluster.lbs[2].config).unwrap();
    let pin_dir = config
        .lines()
        .find_map(|l| l.strip_prefix("pin_dir = \""))
        .map(|p| p.trim_end_matches('"').to_owned());
    let pin_dir = std::path::PathBuf::from(pin_dir.expect("pin_dir"));
    assert!(
        std::fs::read_dir(&pin_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false),
        "maps stay pinned"
    );
    assert_eq!(
        support::tcp_round_trips(&cluster, 10),
        10,
        "node 3 forwards with no daemon running"
    );

    // The next process adopts the pins and takes over.
    cluster.lbs[2].process = None;
    cluster.restart_lb(3).expect("restart node 3");
    let log = cluster.dir().join("lb3.log");
    let adopted = wait_for("adopted", Duration::from_secs(20), POLL, || {
        strip_ansi(&std::fs::read_to_string(&log).ok()?)
            .contains("adopted=true")
            .then_some(())
    })
    .ok();
    assert!(
        adopted.is_some(),
        "the new process adopts the pinned maps\n{}",
        cluster.log_tails(20)
    );
    cluster
        .converge(Duration::from_secs(20))
        .expect("node 3 back in sync");
    let announced = wait_for("announced", Duration::from_secs(20), POLL, || {
        let v = support::ok_json(&cluster, 3, &["status"]);
        let me = v["nodes"].as_array()?.iter().find(|n| n[0] == 3)?.clone();
        (me[1]["Ok"]["announcing"] == true).then_some(())
    })
    .ok();
    assert!(
        announced.is_some(),
        "node 3 announces again\n{}",
        cluster.log_tails(20)
    );
    // Its End-of-RIB, sent once it had its table, makes the path current again.
    let fresh = wait_for("fresh", Duration::from_secs(20), POLL, || {
        let route = cluster
            .frr
            .vtysh(&format!("show bgp ipv4 unicast {VIP}/32"))
            .ok()?;
        (!route.contains("(stale)")).then_some(())
    })
    .ok();
    assert!(
        fresh.is_some(),
        "route still stale after the restart\n{}",
        cluster.log_tails(20)
    );
    assert_eq!(
        support::tcp_round_trips(&cluster, 10),
        10,
        "node 3 forwards after the restart"
    );

    done.store(true, Ordering::SeqCst);
    let missing = watcher.join().expect("watcher");
    assert_eq!(
        missing,
        0,
        "the router dropped node 3's route during the restart\n{}",
        cluster.log_tails(20)
    );
}
