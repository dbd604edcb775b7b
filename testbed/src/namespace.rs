//! Network namespaces with unique names, deleted with everything inside
//! when their guard drops (also on panic), and veth pairs between them.

use std::{
    ffi::OsStr,
    os::fd::AsRawFd,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::command::{run, run_command, stdout, Error, Result};
use crate::process::ProcessGuard;

/// Prefix of every namespace named by [`unique_stem`]: `elb<pid>x<n>...`.
pub const NAME_PREFIX: &str = "elb";

/// A name stem unique to this process and call: `elb<pid>x<n>`. Short, so
/// suffixes still fit; the pid lets [`sweep_stale`] find a dead run's leftovers.
pub fn unique_stem() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}x{n}", std::process::id())
}

/// A network namespace, deleted (with every process still in it and its
/// veth ends) on drop.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        if name.is_empty() || name.len() > 64 || name.contains(['/', ' ']) {
            return Err(Error::BadName(name.to_owned()));
        }
        run("ip", ["netns", "add", name])?;
        // From here on the guard owns it: a failure below still deletes it.
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a namespace named [`unique_stem`] followed by `tag`.
    pub fn unique(tag: &str) -> Result<Self> {
        Self::create(&format!("{}{tag}", unique_stem()))
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its file under `/run/netns`, for `setns(2)`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command that runs `program` inside this namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace to completion; a non-zero
    /// exit is an error.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program);
        cmd.args(args);
        run_command(&mut cmd)
    }

    /// Like [`Namespace::exec`], returning what it printed on stdout.
    pub fn exec_stdout<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec(program, args).map(|o| stdout(&o))
    }

    /// Runs `ip -n <ns> args`.
    pub fn ip<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        run_command(&mut cmd)
    }

    /// Like [`Namespace::ip`], returning what it printed on stdout.
    pub fn ip_stdout<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ip(args).map(|o| stdout(&o))
    }

    /// Sets a sysctl inside the namespace, e.g. `net.ipv4.ip_forward`, `1`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", ["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Adds `cidr` (e.g. `10.0.1.1/24`, `fd00::1/64`) to `dev`; IPv6
    /// addresses skip duplicate address detection so they work at once.
    pub fn add_address(&self, dev: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(args)?;
        Ok(())
    }

    /// Sets `dev` up.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(["link", "set", dev, "up"])?;
        Ok(())
    }

    /// Starts `cmd`'s program, arguments, environment and working directory
    /// inside the namespace; it is stopped when the guard drops. Stdio and
    /// `pre_exec` hooks of `cmd` are not carried over: build the command with
    /// [`Namespace::command`] and use [`ProcessGuard::spawn`] for those.
    pub fn spawn(&self, cmd: Command) -> Result<ProcessGuard> {
        let mut wrapped = self.command(&cmd.get_program().to_string_lossy());
        wrapped.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        ProcessGuard::spawn(wrapped)
    }

    /// Moves the calling thread into this namespace (`setns(2)`): every
    /// socket it opens from then on, and every thread it starts, lives here.
    pub fn enter_current_thread(&self) -> std::io::Result<()> {
        enter_current_thread(&self.path())
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter_current_thread(path: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: setns on this thread only, with a namespace fd we hold open.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Namespace {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

/// Kills everything still running in namespace `name`, then deletes it
/// (which deletes its veth ends too). Errors are ignored: this is cleanup.
fn delete(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain kill(2) of a pid that lives in our namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Creates a veth pair with one end in each namespace (both down, no address).
pub fn veth_pair(a: &Namespace, a_if: &str, b: &Namespace, b_if: &str) -> Result<()> {
    for n in [a_if, b_if] {
        if n.is_empty() || n.len() > 15 {
            return Err(Error::BadName(n.to_owned()));
        }
    }
    run(
        "ip",
        [
            "link",
            "add",
            a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ],
    )?;
    Ok(())
}

/// Turns off checksum and segmentation offloads on `dev` in `ns`. Needed on
/// every veth that carries traffic through native XDP: an XDP frame has no
/// "checksum still to be done" state, so a partial checksum would arrive broken.
pub fn disable_offloads(ns: &Namespace, dev: &str) -> Result<()> {
    ns.exec(
        "ethtool",
        [
            "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
        ],
    )?;
    Ok(())
}

/// Names of the namespaces that currently exist.
fn existing() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Deletes every namespace this process named with [`unique_stem`] (for a
/// signal handler, where the guards will not run).
pub fn remove_own() {
    let own = format!("{NAME_PREFIX}{}x", std::process::id());
    for name in existing() {
        if name.starts_with(&own) {
            delete(&name);
        }
    }
}

/// Deletes namespaces named by [`unique_stem`] in earlier runs whose process
/// is gone (a run killed by SIGKILL cannot clean up after itself).
pub fn sweep_stale() {
    for name in existing() {
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            delete(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_talk_over_veth_and_vanish_on_drop() {
        let stem = unique_stem();
        let (na, nb) = (format!("{stem}a"), format!("{stem}b"));
        {
            let a = Namespace::create(&na).unwrap();
            let b = Namespace::create(&nb).unwrap();
            veth_pair(&a, "eth0", &b, "eth0").unwrap();
            a.add_address("eth0", "192.0.2.1/24").unwrap();
            b.add_address("eth0", "192.0.2.2/24").unwrap();
            a.link_up("eth0").unwrap();
            b.link_up("eth0").unwrap();
            a.exec("ping", ["-c", "1", "-W", "2", "192.0.2.2"]).unwrap();
            let sleeper = {
                let mut c = Command::new("sleep");
                c.arg("30");
                b.spawn(c).unwrap()
            };
            assert!(sleeper.pid().is_some());
        }
        let list = existing();
        assert!(
            !list.contains(&na) && !list.contains(&nb),
            "left behind: {list:?}"
        );
    }

    #[test]
    fn a_panicking_test_still_removes_its_namespace() {
        let name = format!("{}p", unique_stem());
        let n = name.clone();
        let r = std::thread::spawn(move || {
            let _ns = Namespace::create(&n).unwrap();
            panic!("test failure");
        })
        .join();
        assert!(r.is_err());
        assert!(!existing().contains(&name));
    }

    #[test]
    fn failing_commands_report_their_stderr() {
        let ns = Namespace::unique("e").unwrap();
        let e = ns
            .ip(["link", "set", "nosuchdev", "up"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuchdev"), "{e}");
        assert!(matches!(
            veth_pair(&ns, "x234567890123456", &ns, "y"),
            Err(Error::BadName(_))
        ));
        assert!(matches!(
            Namespace::create("bad name"),
            Err(Error::BadName(_))
        ));
    }
}
