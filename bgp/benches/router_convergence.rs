//! End-to-end timings (run as root; needs FRR):
//!   CARGO_TARGET_DIR=/work/main/target-bgp cargo bench -p edgelb-bgp --bench router_convergence
//!
//! 1. withdraw call -> route gone from FRR's kernel table (`ip monitor route`
//!    timestamps the netlink delete), next to announce call -> route installed,
//!    and withdraw call -> withdraw UPDATE at a loopback peer (our own share);
//! 2. speaker start -> 1000 prefixes converged to one peer: to an in-process
//!    loopback peer (End-of-RIB received) and to FRR (1000 routes in the kernel).
//!
//! Prints medians; no assertions on time.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgelb_bgp::{BgpSpeaker, DesiredRoutes, IpNet, PeerConfig, RouteAttributes, SpeakerConfig};
use support::fake_peer::{listen, FakePeer};
use support::lab::Lab;
use support::lb::{self, Lb};
use testbed::stats::upper_median;
use testbed::wait::assert_eventually;

const ROUNDS: usize = 21;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn prefixes(n: u32) -> DesiredRoutes {
    let mut d = DesiredRoutes::new();
    for i in 0..n {
        let ip = Ipv4Addr::from(0xc633_0000u32 + i); // 198.51.0.0 + i
        d.insert(
            IpNet::new(IpAddr::V4(ip), 32).expect("prefix"),
            RouteAttributes::default(),
        )
        .expect("route");
    }
    d
}

/// Netlink route events of the router namespace, each with its arrival time.
struct RouteMonitor {
    child: Child,
    rx: mpsc::Receiver<(Instant, String)>,
}

impl RouteMonitor {
    fn start(lab: &Lab) -> RouteMonitor {
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "ip",
                "-n",
                lab.router.name(),
                "-4",
                "monitor",
                "route",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("ip monitor");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        RouteMonitor { child, rx }
    }

    fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Time of the first event line satisfying `f`.
    fn wait(&self, f: impl Fn(&str) -> bool) -> Instant {
        loop {
            let (t, line) = self
                .rx
                .recv_timeout(Duration::from_secs(20))
                .expect("route event");
            if f(&line) {
                return t;
            }
        }
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn frr_config(lab: &Lab) -> String {
    format!(
        "hostname router\nlog file {}\n!\nroute-map DENY-ALL deny 10\n!\nrouter bgp 65000\n bgp router-id 10.0.0.254\n\
         \x20no bgp ebgp-requires-policy\n neighbor 10.0.1.2 remote-as 65010\n neighbor 10.0.1.2 passive\n\
         \x20address-family ipv4 unicast\n  neighbor 10.0.1.2 route-map DENY-ALL out\n exit-address-family\n",
        lab.path("bgpd.log")
    )
}

fn withdraw_and_announce_to_frr_kernel() -> (Duration, Duration) {
    let lab = Lab::new(1);
    let _frr = lab.frr(&frr_config(&lab));
    let lb1 = Lb::start(&lab, 1, lb::config(1, 9, None));
    let vip = lb::routes(&[("192.0.2.10/32", RouteAttributes::default())]);
    lb1.set(vip.clone());
    lb1.wait_established();
    assert_eventually(Duration::from_secs(20), "route installed", || {
        !lab.kernel_route("192.0.2.10").is_empty()
    });
    let monitor = RouteMonitor::start(&lab);
    std::thread::sleep(Duration::from_millis(200));
    let mut withdraws = Vec::new();
    let mut announces = Vec::new();
    for _ in 0..ROUNDS {
        monitor.drain();
        let t0 = Instant::now();
        lb1.set(DesiredRoutes::new());
        let t1 = monitor.wait(|l| l.starts_with("Deleted 192.0.2.10 "));
        withdraws.push(t1 - t0);
        std::thread::sleep(Duration::from_millis(50));
        monitor.drain();
        let t0 = Instant::now();
        lb1.set(vip.clone());
        let t1 = monitor.wait(|l| l.starts_with("192.0.2.10 "));
        announces.push(t1 - t0);
        std::thread::sleep(Duration::from_millis(50));
    }
    lb1.shutdown();
    (
        upper_median(&withdraws).expect("rounds"),
        upper_median(&announces).expect("rounds"),
    )
}

fn converge_1000_to_frr_kernel() -> Duration {
    let lab = Lab::new(1);
    let _frr = lab.frr(&frr_config(&lab));
    let mut runs = Vec::new();
    for _ in 0..5 {
        assert_eventually(Duration::from_secs(30), "table empty", || {
            lab.router
                .ip_stdout(["-4", "route", "show", "proto", "bgp"])
                .expect("ip route")
                .is_empty()
        });
        let t0 = Instant::now();
        let lb1 = Lb::start(&lab, 1, lb::config(1, 9, None));
        lb1.set(prefixes(1000));
        assert_eventually(Duration::from_secs(60), "1000 routes in kernel", || {
            lab.router
                .ip_stdout(["-4", "route", "show", "proto", "bgp"])
                .expect("ip route")
                .lines()
                .count()
                == 1000
        });
        runs.push(t0.elapsed());
        lb1.shutdown();
    }
    upper_median(&runs).expect("rounds")
}

fn converge_1000_to_loopback_peer() -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut runs = Vec::new();
        for _ in 0..ROUNDS {
            let ip = Ipv4Addr::LOCALHOST;
            let (listener, port) = listen(ip).await;
            let config = SpeakerConfig {
                local_asn: 65010,
                router_id: Ipv4Addr::new(10, 0, 0, 2),
                listen: None,
                graceful_restart: None,
                peers: vec![PeerConfig {
                    port,
                    ..PeerConfig::new(IpAddr::V4(ip), 65000)
                }],
            };
            let t0 = Instant::now();
            let speaker = BgpSpeaker::start(config).await.expect("start");
            speaker.set_desired(prefixes(1000));
            let mut peer = FakePeer::accept(&listener).await;
            peer.establish(65000, 90, Ipv4Addr::new(10, 0, 0, 1)).await;
            // Only IPv4 routes: End-of-RIB for both families ends the table.
            let got = peer.initial_table(2).await;
            runs.push(t0.elapsed());
            assert_eq!(got.len(), 1000);
            speaker.shutdown().await;
        }
        upper_median(&runs).expect("rounds")
    })
}

/// withdraw call -> withdraw UPDATE read by an in-process loopback peer:
/// the speaker's own share of the end-to-end withdraw latency.
fn withdraw_to_loopback_peer() -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ip = Ipv4Addr::LOCALHOST;
        let (listener, port) = listen(ip).await;
        let config = SpeakerConfig {
            local_asn: 65010,
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            listen: None,
            graceful_restart: None,
            peers: vec![PeerConfig {
                port,
                ..PeerConfig::new(IpAddr::V4(ip), 65000)
            }],
        };
        let speaker = BgpSpeaker::start(config).await.expect("start");
        let vip = lb::routes(&[("192.0.2.10/32", RouteAttributes::default())]);
        speaker.set_desired(vip.clone());
        let mut peer = FakePeer::accept(&listener).await;
        peer.establish(65000, 90, Ipv4Addr::new(10, 0, 0, 1)).await;
        peer.initial_table(2).await;
        let mut runs = Vec::new();
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            speaker.set_desired(DesiredRoutes::new());
            let (_, withdrawn) = support::fake_peer::update_prefixes(
                &peer.recv_non_keepalive().await.expect("update"),
            );
            runs.push(t0.elapsed());
            assert_eq!(withdrawn, ["192.0.2.10/32"]);
            speaker.set_desired(vip.clone());
            peer.recv_non_keepalive().await.expect("update");
        }
        speaker.shutdown().await;
        upper_median(&runs).expect("rounds")
    })
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let loopback = converge_1000_to_loopback_peer();
    println!(
        "establish + converge 1000 prefixes, loopback peer: median {:.2} ms ({ROUNDS} runs)",
        ms(loopback)
    );
    let wd_loop = withdraw_to_loopback_peer();
    println!(
        "withdraw call -> withdraw UPDATE at loopback peer: median {:.3} ms ({ROUNDS} runs)",
        ms(wd_loop)
    );
    let frr_1000 = converge_1000_to_frr_kernel();
    println!(
        "establish + converge 1000 prefixes, FRR kernel table: median {:.1} ms (5 runs)",
        ms(frr_1000)
    );
    let (withdraw, announce) = withdraw_and_announce_to_frr_kernel();
    println!(
        "withdraw call -> route gone from FRR kernel: median {:.2} ms ({ROUNDS} runs)",
        ms(withdraw)
    );
    println!(
        "announce call -> route in FRR kernel:        median {:.2} ms ({ROUNDS} runs)",
        ms(announce)
    );
    println!(
        "ratios: withdraw/announce {:.2}; FRR-kernel/loopback withdraw {:.0}; FRR-kernel/loopback for 1000 prefixes {:.1}",
        withdraw.as_secs_f64() / announce.as_secs_f64(),
        withdraw.as_secs_f64() / wd_loop.as_secs_f64(),
        frr_1000.as_secs_f64() / loopback.as_secs_f64()
    );
}
