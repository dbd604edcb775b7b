//! Real routers (GoBGP, FRR, BIRD) started by the test inside a namespace,
//! with every file under the lab's temp dir; killed on drop.

use std::process::{Child, Stdio};
use std::time::Duration;

use super::netns::{wait_until, Lab, Netns};

/// A daemon process; killed (SIGKILL) and reaped on drop.
pub struct Daemon {
    pub name: &'static str,
    child: Child,
}

impl Daemon {
    fn spawn(name: &'static str, ns: &Netns, lab: &Lab, cmd: &str, args: &[&str]) -> Daemon {
        let log = std::fs::File::create(lab.path(&format!("{name}.out"))).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = ns
            .command(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd}: {e}"));
        Daemon { name, child }
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// gobgpd in the router namespace.
pub struct GoBgp<'a> {
    lab: &'a Lab,
    _daemon: Daemon,
}

impl<'a> GoBgp<'a> {
    pub fn start(lab: &'a Lab, config_toml: &str) -> GoBgp<'a> {
        let conf = lab.path("gobgpd.toml");
        std::fs::write(&conf, config_toml).expect("write config");
        let daemon = Daemon::spawn(
            "gobgpd",
            &lab.router,
            lab,
            "gobgpd",
            &[
                "-f",
                &conf,
                "-t",
                "toml",
                "-p",
                "--api-hosts",
                "127.0.0.1:50051",
                "--pprof-disable",
            ],
        );
        let g = GoBgp {
            lab,
            _daemon: daemon,
        };
        wait_until(Duration::from_secs(10), "gobgpd API", || {
            g.try_cli(&["global"]).is_some()
        });
        g
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let mut all = vec!["-u", "127.0.0.1", "-p", "50051"];
        all.extend_from_slice(args);
        let out = self.lab.router.exec_output("gobgp", &all);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `gobgp <args>`; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("gobgp {args:?} failed"))
    }
}

/// FRR zebra + bgpd in the router namespace.
pub struct Frr<'a> {
    lab: &'a Lab,
    bgpd: Option<Daemon>,
    _zebra: Daemon,
}

impl<'a> Frr<'a> {
    pub fn start(lab: &'a Lab, bgpd_conf: &str) -> Frr<'a> {
        let zconf = lab.path("zebra.conf");
        let bconf = lab.path("bgpd.conf");
        std::fs::write(&zconf, "hostname router\n").expect("write zebra.conf");
        std::fs::write(&bconf, bgpd_conf).expect("write bgpd.conf");
        let dir = lab.path("");
        let zsock = lab.path("zserv.api");
        let common = |pid: String, conf: &str| -> Vec<String> {
            vec![
                "-u".into(),
                "frr".into(),
                "-g".into(),
                "frr".into(),
                "-i".into(),
                pid,
                "-z".into(),
                zsock.clone(),
                "--vty_socket".into(),
                dir.clone(),
                "-f".into(),
                conf.to_string(),
                "-P".into(),
                "0".into(),
            ]
        };
        let zargs = common(lab.path("zebra.pid"), &zconf);
        let zargs: Vec<&str> = zargs.iter().map(String::as_str).collect();
        let zebra = Daemon::spawn("zebra", &lab.router, lab, "/usr/lib/frr/zebra", &zargs);
        wait_until(Duration::from_secs(10), "zebra socket", || {
            std::path::Path::new(&zsock).exists()
        });
        let bargs = common(lab.path("bgpd.pid"), &bconf);
        let bargs: Vec<&str> = bargs.iter().map(String::as_str).collect();
        let bgpd = Daemon::spawn("bgpd", &lab.router, lab, "/usr/lib/frr/bgpd", &bargs);
        let frr = Frr {
            lab,
            bgpd: Some(bgpd),
            _zebra: zebra,
        };
        wait_until(Duration::from_secs(10), "bgpd vty", || {
            frr.try_vtysh("show bgp summary").is_some()
        });
        frr
    }

    fn try_vtysh(&self, command: &str) -> Option<String> {
        let dir = self.lab.path("");
        let out = self
            .lab
            .router
            .exec_output("vtysh", &["--vty_socket", &dir, "-c", command]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `vtysh -c <command>`; panics on failure.
    pub fn vtysh(&self, command: &str) -> String {
        self.try_vtysh(command)
            .unwrap_or_else(|| panic!("vtysh {command:?} failed"))
    }

    /// Kills bgpd only (zebra keeps the kernel routes until it learns bgpd is gone).
    pub fn kill_bgpd(&mut self) {
        self.bgpd.take();
    }
}

/// BIRD 2 in the router namespace.
pub struct Bird<'a> {
    lab: &'a Lab,
    _daemon: Daemon,
}

impl<'a> Bird<'a> {
    pub fn start(lab: &'a Lab, conf: &str) -> Bird<'a> {
        let path = lab.path("bird.conf");
        std::fs::write(&path, conf).expect("write bird.conf");
        let sock = lab.path("bird.ctl");
        let pid = lab.path("bird.pid");
        let daemon = Daemon::spawn(
            "bird",
            &lab.router,
            lab,
            "bird",
            &["-f", "-c", &path, "-s", &sock, "-P", &pid],
        );
        let b = Bird {
            lab,
            _daemon: daemon,
        };
        wait_until(Duration::from_secs(10), "bird control socket", || {
            b.try_birdc("show status").is_some()
        });
        b
    }

    fn try_birdc(&self, command: &str) -> Option<String> {
        let sock = self.lab.path("bird.ctl");
        let mut args = vec!["-s", &sock];
        args.extend(command.split_whitespace());
        let out = self.lab.router.exec_output("birdc", &args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `birdc <command>`; panics on failure.
    pub fn birdc(&self, command: &str) -> String {
        self.try_birdc(command)
            .unwrap_or_else(|| panic!("birdc {command:?} failed"))
    }
}
