//! Real routers started inside a namespace: FRR (zebra + bgpd), BIRD 2 and
//! GoBGP. Every file a daemon writes (configuration, pid, sockets, its
//! stdout/stderr as `<daemon>.out`) stays under the caller's directory, and
//! each daemon is stopped when its guard drops. `start` returns only once
//! the daemon answers its control CLI.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::command::{run_command, stdout, Error, Result};
use crate::namespace::Namespace;
use crate::process::ProcessGuard;
use crate::wait::wait_for;

/// How long a daemon gets to answer its CLI after starting.
pub const START_LIMIT: Duration = Duration::from_secs(10);

/// How often a starting daemon's CLI is tried.
const START_POLL: Duration = Duration::from_millis(20);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` and opens it to everyone: the daemons drop privileges to
/// their own users and still write their pid files and sockets there.
fn prepare_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).map_err(io(dir))
}

fn write(path: PathBuf, text: &str) -> Result<PathBuf> {
    fs::write(&path, text).map_err(io(&path))?;
    Ok(path)
}

/// Runs a control CLI in namespace `ns`; its stdout, or the failure.
fn cli(ns: &str, program: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::null());
    run_command(&mut cmd).map(|o| stdout(&o))
}

/// Starts `program args` in `ns` with its output in `<dir>/<name>.out`.
fn daemon(
    ns: &Namespace,
    dir: &Path,
    name: &str,
    program: &str,
    args: &[&std::ffi::OsStr],
) -> Result<ProcessGuard> {
    let mut cmd = ns.command(program);
    cmd.args(args);
    ProcessGuard::spawn_logged(cmd, &dir.join(format!("{name}.out")))
}

/// Waits for `ready`, naming the daemon and its output file on timeout.
fn await_start(name: &str, dir: &Path, mut ready: impl FnMut() -> bool) -> Result<()> {
    let what = format!(
        "{name} to answer (see {})",
        dir.join(format!("{name}.out")).display()
    );
    wait_for(&what, START_LIMIT, START_POLL, || ready().then_some(()))?;
    Ok(())
}

/// FRR's zebra and bgpd, started the way both the bgp tests and the
/// simulation need: as user `frr`, no vty TCP port, zebra's API socket and
/// the vty sockets under the caller's directory.
#[derive(Debug)]
pub struct Frr {
    dir: PathBuf,
    ns: String,
    bgpd: Option<ProcessGuard>,
    _zebra: ProcessGuard,
}

impl Frr {
    /// Writes `zebra.conf` (just `hostname`) and `bgpd.conf` into `dir`,
    /// starts zebra, waits for its API socket, starts bgpd, and waits until
    /// `vtysh` answers `show bgp summary`.
    pub fn start(ns: &Namespace, dir: &Path, hostname: &str, bgpd_conf: &str) -> Result<Frr> {
        prepare_dir(dir)?;
        let zconf = write(dir.join("zebra.conf"), &format!("hostname {hostname}\n"))?;
        let bconf = write(dir.join("bgpd.conf"), bgpd_conf)?;
        let zsock = dir.join("zserv.api");
        let start = |name: &str, conf: &Path| {
            let pid = dir.join(format!("{name}.pid"));
            let args: [&std::ffi::OsStr; 14] = [
                "-u".as_ref(),
                "frr".as_ref(),
                "-g".as_ref(),
                "frr".as_ref(),
                "-i".as_ref(),
                pid.as_os_str(),
                "-z".as_ref(),
                zsock.as_os_str(),
                "--vty_socket".as_ref(),
                dir.as_os_str(),
                "-f".as_ref(),
                conf.as_os_str(),
                "-P".as_ref(),
                "0".as_ref(),
            ];
            daemon(ns, dir, name, &format!("/usr/lib/frr/{name}"), &args)
        };
        let zebra = start("zebra", &zconf)?;
        await_start("zebra", dir, || zsock.exists())?;
        let bgpd = start("bgpd", &bconf)?;
        let frr = Frr {
            dir: dir.to_owned(),
            ns: ns.name().to_owned(),
            bgpd: Some(bgpd),
            _zebra: zebra,
        };
        await_start("bgpd", dir, || frr.vtysh("show bgp summary").is_ok())?;
        Ok(frr)
    }

    /// `vtysh -c <command>` against this instance; its output.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        cli(
            &self.ns,
            "vtysh",
            &[
                "--vty_socket".as_ref(),
                self.dir.as_os_str(),
                "-c".as_ref(),
                command.as_ref(),
            ],
        )
    }

    /// SIGKILLs bgpd only, as a crash would; zebra stays and keeps the
    /// kernel routes until it notices bgpd is gone.
    pub fn kill_bgpd(&mut self) {
        if let Some(mut bgpd) = self.bgpd.take() {
            bgpd.kill();
        }
    }
}

/// BIRD 2 in the foreground, its control socket and pid file under the
/// caller's directory.
#[derive(Debug)]
pub struct Bird {
    sock: PathBuf,
    ns: String,
    _daemon: ProcessGuard,
}

impl Bird {
    /// Writes `bird.conf` into `dir`, starts bird and waits until `birdc`
    /// answers `show status`.
    pub fn start(ns: &Namespace, dir: &Path, conf: &str) -> Result<Bird> {
        prepare_dir(dir)?;
        let path = write(dir.join("bird.conf"), conf)?;
        let sock = dir.join("bird.ctl");
        let pid = dir.join("bird.pid");
        let args: [&std::ffi::OsStr; 7] = [
            "-f".as_ref(),
            "-c".as_ref(),
            path.as_os_str(),
            "-s".as_ref(),
            sock.as_os_str(),
            "-P".as_ref(),
            pid.as_os_str(),
        ];
        let daemon = daemon(ns, dir, "bird", "bird", &args)?;
        let bird = Bird {
            sock,
            ns: ns.name().to_owned(),
            _daemon: daemon,
        };
        await_start("bird", dir, || bird.birdc("show status").is_ok())?;
        Ok(bird)
    }

    /// `birdc <command>` (split on whitespace) against this instance.
    pub fn birdc(&self, command: &str) -> Result<String> {
        let mut args: Vec<&std::ffi::OsStr> = vec!["-s".as_ref(), self.sock.as_os_str()];
        args.extend(command.split_whitespace().map(std::ffi::OsStr::new));
        cli(&self.ns, "birdc", &args)
    }
}

/// gobgpd with a TOML configuration, its gRPC API on 127.0.0.1:50051 of
/// its namespace (so one per namespace), profiling off.
#[derive(Debug)]
pub struct GoBgp {
    ns: String,
    _daemon: ProcessGuard,
}

impl GoBgp {
    /// Writes `gobgpd.toml` into `dir`, starts gobgpd and waits until
    /// `gobgp global` answers.
    pub fn start(ns: &Namespace, dir: &Path, config_toml: &str) -> Result<GoBgp> {
        prepare_dir(dir)?;
        let conf = write(dir.join("gobgpd.toml"), config_toml)?;
        let args: [&std::ffi::OsStr; 8] = [
            "-f".as_ref(),
            conf.as_os_str(),
            "-t".as_ref(),
            "toml".as_ref(),
            "-p".as_ref(),
            "--api-hosts".as_ref(),
            "127.0.0.1:50051".as_ref(),
            "--pprof-disable".as_ref(),
        ];
        let daemon = daemon(ns, dir, "gobgpd", "gobgpd", &args)?;
        let g = GoBgp {
            ns: ns.name().to_owned(),
            _daemon: daemon,
        };
        await_start("gobgpd", dir, || g.cli(&["global"]).is_ok())?;
        Ok(g)
    }

    /// `gobgp <args>` against this instance.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut all: Vec<&std::ffi::OsStr> = ["-u", "127.0.0.1", "-p", "50051"]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect();
        all.extend(args.iter().map(std::ffi::OsStr::new));
        cli(&self.ns, "gobgp", &all)
    }
}
