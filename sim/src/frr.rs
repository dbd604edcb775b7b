//! A real FRR router (zebra + bgpd) inside a namespace, every file under a
//! temp dir of the run; both daemons are killed when it drops.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::netns::{Namespace, NetnsError, ProcessGuard};

/// A running FRR instance.
pub struct Frr {
    dir: PathBuf,
    ns_name: String,
    bgpd: Option<ProcessGuard>,
    _zebra: ProcessGuard,
}

/// Errors starting FRR.
#[derive(Debug, thiserror::Error)]
pub enum FrrError {
    /// Writing its files failed.
    #[error("FRR files in {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A daemon could not be started.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A daemon did not come up in time.
    #[error("FRR {0} did not come up within 10 s; see {1}")]
    Timeout(&'static str, PathBuf),
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Frr {
    /// Starts zebra and bgpd in `ns` with `bgpd_conf`, files under `dir`
    /// (which must be writable by the `frr` user).
    pub fn start(ns: &Namespace, dir: &Path, bgpd_conf: &str) -> Result<Self, FrrError> {
        let io = |e| FrrError::Io(dir.to_owned(), e);
        fs::create_dir_all(dir).map_err(io)?;
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .map_err(io)?;
        let zconf = dir.join("zebra.conf");
        let bconf = dir.join("bgpd.conf");
        fs::write(&zconf, "hostname sim-router\n").map_err(io)?;
        fs::write(&bconf, bgpd_conf).map_err(io)?;
        let zsock = dir.join("zserv.api");
        let daemon = |name: &str, conf: &Path| -> Result<ProcessGuard, FrrError> {
            let log = fs::File::create(dir.join(format!("{name}.log"))).map_err(io)?;
            let log2 = log.try_clone().map_err(io)?;
            let mut cmd = ns.command(&format!("/usr/lib/frr/{name}"));
            cmd.args(["-u", "frr", "-g", "frr", "-P", "0"])
                .arg("-i")
                .arg(dir.join(format!("{name}.pid")))
                .arg("-z")
                .arg(&zsock)
                .arg("--vty_socket")
                .arg(dir)
                .arg("-f")
                .arg(conf)
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2));
            Ok(ProcessGuard::spawn(cmd)?)
        };
        let zebra = daemon("zebra", &zconf)?;
        if !wait_for(Duration::from_secs(10), || zsock.exists()) {
            return Err(FrrError::Timeout("zebra", dir.join("zebra.log")));
        }
        let bgpd = daemon("bgpd", &bconf)?;
        let frr = Self {
            dir: dir.to_owned(),
            ns_name: ns.name().to_owned(),
            bgpd: Some(bgpd),
            _zebra: zebra,
        };
        if !wait_for(Duration::from_secs(10), || {
            frr.vtysh("show bgp summary").is_some()
        }) {
            return Err(FrrError::Timeout("bgpd", dir.join("bgpd.log")));
        }
        Ok(frr)
    }

    /// Runs `vtysh -c command`; `None` if it failed.
    pub fn vtysh(&self, command: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "vtysh", "--vty_socket"])
            .arg(&self.dir)
            .args(["-c", command])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills bgpd (zebra stays), as a router crash would.
    pub fn kill_bgpd(&mut self) {
        self.bgpd.take();
    }
}

/// bgpd configuration of the sim's router: passive eBGP to every LB node
/// (AS `lb_asn`), ECMP over all of them, nothing sent back to them.
pub fn router_config(
    router_asn: u32,
    router_id: &str,
    lb_asn: u32,
    neighbors: &[String],
) -> String {
    let mut c = format!(
        "hostname sim-router\n\
         route-map DENY-ALL deny 10\n\
         route-map ACCEPT permit 10\n\
         router bgp {router_asn}\n \
         bgp router-id {router_id}\n \
         no bgp ebgp-requires-policy\n \
         bgp bestpath as-path multipath-relax\n \
         bgp graceful-restart\n \
         neighbor LB peer-group\n \
         neighbor LB remote-as {lb_asn}\n \
         neighbor LB passive\n \
         neighbor LB timers 1 3\n \
         neighbor LB timers connect 1\n"
    );
    for n in neighbors {
        c.push_str(&format!(" neighbor {n} peer-group LB\n"));
    }
    c.push_str(
        " address-family ipv4 unicast\n  \
         maximum-paths 64\n  \
         neighbor LB route-map ACCEPT in\n  \
         neighbor LB route-map DENY-ALL out\n \
         exit-address-family\n",
    );
    c
}
