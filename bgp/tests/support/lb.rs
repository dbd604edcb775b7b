//! Our speaker running inside a load-balancer namespace, as the node daemon would.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use edgelb_bgp::{
    BgpSpeaker, DesiredRoutes, GracefulRestartConfig, PeerConfig, PeerSnapshot, PeerState,
    RouteAttributes, SpeakerConfig,
};

use testbed::runtime::NamespaceRuntime;
use testbed::wait::assert_eventually;

use super::lab::Lab;

pub const LB_ASN: u32 = 65010;
pub const ROUTER_ASN: u32 = 65000;

/// Speaker config for load balancer `i` (1-based) of a [`Lab`].
pub fn config(i: u8, hold: u16, graceful_restart: Option<GracefulRestartConfig>) -> SpeakerConfig {
    SpeakerConfig {
        local_asn: LB_ASN,
        router_id: Ipv4Addr::new(10, 0, i, 2),
        listen: None,
        graceful_restart,
        peers: vec![PeerConfig {
            hold_time_secs: hold,
            // The session is IPv4; IPv6 VIPs need an IPv6 next hop on the same link.
            next_hop_v6: Some(Ipv6Addr::new(0xfd00, 0, u16::from(i), 0, 0, 0, 0, 2)),
            connect_retry_min: Duration::from_millis(100),
            connect_retry_max: Duration::from_secs(1),
            ..PeerConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, i, 1)), ROUTER_ASN)
        }],
    }
}

pub fn routes(entries: &[(&str, RouteAttributes)]) -> DesiredRoutes {
    let mut d = DesiredRoutes::new();
    for (p, a) in entries {
        d.insert(p.parse().expect("prefix"), a.clone())
            .expect("valid route");
    }
    d
}

/// One speaker in its namespace.
pub struct Lb {
    rt: NamespaceRuntime,
    speaker: Option<BgpSpeaker>,
}

impl Lb {
    pub fn start(lab: &Lab, i: u8, config: SpeakerConfig) -> Lb {
        let rt = NamespaceRuntime::new(&lab.lbs[usize::from(i) - 1]).expect("runtime in namespace");
        let speaker = rt.run(BgpSpeaker::start(config)).expect("speaker starts");
        Lb {
            rt,
            speaker: Some(speaker),
        }
    }

    fn speaker(&self) -> &BgpSpeaker {
        self.speaker.as_ref().expect("speaker running")
    }

    pub fn set(&self, routes: DesiredRoutes) {
        self.speaker().set_desired(routes);
    }

    pub fn peer(&self) -> PeerSnapshot {
        self.speaker().peers().remove(0)
    }

    pub fn wait_established(&self) {
        assert_eventually(Duration::from_secs(20), "session Established", || {
            self.peer().state == PeerState::Established
        });
    }

    /// Cease / Administrative Shutdown to every peer.
    pub fn shutdown(mut self) {
        if let Some(s) = self.speaker.take() {
            self.rt.run(s.shutdown());
        }
    }

    /// Like `kill -9` of the daemon: connections close, nothing is said.
    pub fn kill(mut self) {
        let speaker = self.speaker.take();
        self.rt.kill();
        // The tasks are gone; dropping the handle only flips a channel.
        drop(speaker);
    }
}

/// The stand-alone `edgelb-bgp-speaker` binary running as its own process
/// in a load-balancer namespace: a real daemon to kill.
pub struct SpeakerProcess {
    child: std::process::Child,
    pub config_path: String,
}

impl SpeakerProcess {
    /// Writes `config` (TOML) to the lab dir and starts the binary on it.
    pub fn start(lab: &Lab, i: u8, config: &str) -> SpeakerProcess {
        let config_path = lab.path(&format!("speaker{i}.toml"));
        std::fs::write(&config_path, config).expect("write speaker config");
        let log = std::fs::File::create(lab.path(&format!("speaker{i}.log"))).expect("log");
        let child = lab.lbs[usize::from(i) - 1]
            .command(env!("CARGO_BIN_EXE_edgelb-bgp-speaker"))
            .args(["--config", &config_path])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start speaker binary");
        SpeakerProcess { child, config_path }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed: {}", std::io::Error::last_os_error());
    }

    /// Rewrites the config and sends SIGHUP (routes are reloaded).
    pub fn reload(&self, config: &str) {
        std::fs::write(&self.config_path, config).expect("rewrite config");
        self.signal(libc::SIGHUP);
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "speaker ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SpeakerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
