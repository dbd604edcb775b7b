//! Network namespaces, veth pairs and processes inside them, each removed
//! when its guard drops.

use std::{
    ffi::OsStr,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Prefix of every namespace this crate creates: `elb<pid>x<n>...`.
pub const NAME_PREFIX: &str = "elb";

/// Errors from setting up or using the simulation's namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not be started at all.
    #[error("running `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A name does not fit the kernel's limits.
    #[error("name `{0}` is invalid (interface names are at most 15 bytes)")]
    BadName(String),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, NetnsError>;

/// A unique name stem for this process: `elb<pid>x<n>`, short enough to leave
/// room for interface suffixes.
pub fn unique_stem() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}x{n}", std::process::id())
}

/// Runs a command to completion; a non-zero exit is an error.
pub fn run<I, S>(program: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(&mut cmd)
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run_command(cmd: &mut Command) -> Result<Output> {
    let command = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// A network namespace, deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        if name.is_empty() || name.len() > 64 || name.contains(['/', ' ']) {
            return Err(NetnsError::BadName(name.to_owned()));
        }
        run("ip", ["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that will run inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace to completion.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program);
        cmd.args(args);
        run_command(&mut cmd)
    }

    /// Runs `ip args` inside the namespace.
    pub fn ip<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        run_command(&mut cmd)
    }

    /// Sets a sysctl inside the namespace, e.g. `net.ipv4.ip_forward`, `1`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", ["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Starts a long-running process inside the namespace; it is killed when
    /// the returned guard drops.
    pub fn spawn(&self, mut cmd: Command) -> Result<ProcessGuard> {
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
        let command = describe(&wrapped);
        prepare_child(&mut wrapped);
        // Drop the original's configuration; the wrapper replaces it.
        let _ = cmd.stdin(Stdio::null());
        let child = wrapped
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| NetnsError::Spawn {
                command: command.clone(),
                source,
            })?;
        Ok(ProcessGuard {
            child: Some(child),
            command,
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Kill anything still running inside, then delete the namespace (which
        // also deletes its veth ends).
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain kill(2) of a pid that lives in our namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Creates a veth pair with one end in each namespace (both down, no address).
pub fn veth_pair(a: &Namespace, a_if: &str, b: &Namespace, b_if: &str) -> Result<()> {
    for n in [a_if, b_if] {
        if n.is_empty() || n.len() > 15 {
            return Err(NetnsError::BadName(n.to_owned()));
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

/// Gives the child an empty signal mask. The mask survives exec, and
/// [`teardown_on_signals`] blocks SIGINT and SIGTERM in this process, so
/// without this a daemon started here would never see its SIGTERM.
/// Also runs the child on the sim's CPU (see [`pin_to_sim_cpu`]).
fn prepare_child(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let cpu = sim_cpu();
    // SAFETY: the closure runs between fork and exec and only makes system
    // calls on local, zeroed plain-data sets.
    unsafe {
        cmd.pre_exec(move || {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::other("clearing the signal mask"));
            }
            if let Some(cpu) = cpu {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The CPU the whole simulation runs on: the first this process may use.
///
/// On a real NIC, receive-side scaling hashes each flow to one queue, so
/// one CPU sees all of a flow's packets, and the forwarder's per-CPU
/// connection table relies on that. On veth a packet is processed on the
/// CPU that sent it (or wherever the receiving queue's poll already runs),
/// so processes and threads spread over CPUs would spread a flow's packets
/// too, and a table change would move its stray packets. Running every sim
/// process and traffic thread on one CPU gives flows the stable CPU a NIC
/// gives them.
pub fn sim_cpu() -> Option<usize> {
    static CPU: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *CPU.get_or_init(|| {
        // SAFETY: cpu_set_t is plain data filled by the kernel.
        unsafe {
            let mut allowed: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0
            {
                return None;
            }
            (0..libc::CPU_SETSIZE as usize).find(|c| libc::CPU_ISSET(*c, &allowed))
        }
    })
}

/// Pins the calling thread to [`sim_cpu`].
pub fn pin_to_sim_cpu() -> std::io::Result<()> {
    let Some(cpu) = sim_cpu() else { return Ok(()) };
    // SAFETY: plain-data cpu set; 0 is the calling thread.
    unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A child process killed (SIGTERM, then SIGKILL) when the guard drops.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Option<Child>,
    command: String,
}

impl ProcessGuard {
    /// Starts `cmd` as is (build it with [`Namespace::command`] to run it in a
    /// namespace, and set its stdio as needed).
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        let command = describe(&cmd);
        prepare_child(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| NetnsError::Spawn {
                command: command.clone(),
                source,
            })?;
        Ok(Self {
            child: Some(child),
            command,
        })
    }

    /// The process id (of the `ip netns exec` wrapper, which execs the program).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// Sends SIGTERM and waits up to `grace` for exit, then SIGKILLs.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Mount points this process created (removed by the signal teardown).
static MOUNTS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Records a mount point for [`teardown_on_signals`].
pub fn register_mount(path: &std::path::Path) {
    MOUNTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.to_owned());
}

/// Removes every namespace (killing what runs inside) and mount this
/// process created.
pub fn teardown_own() {
    let own = format!("{NAME_PREFIX}{}x", std::process::id());
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&own) {
                drop(Namespace {
                    name: name.to_owned(),
                });
            }
        }
    }
    for m in MOUNTS.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
        if let Some(dir) = m.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// On SIGINT or SIGTERM, tears down everything this process created and
/// exits (130). Call first thing in `main`, before any thread starts, so
/// every thread inherits the blocked signals.
pub fn teardown_on_signals() {
    // SAFETY: plain signal-mask manipulation on a zeroed sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            eprintln!("edgelb-sim: signal {sig}: tearing down");
            teardown_own();
            std::process::exit(130);
        });
    }
}

/// Deletes namespaces left by earlier runs of this crate whose process is gone
/// (a run killed by SIGKILL cannot clean up after itself).
pub fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
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
            drop(Namespace {
                name: name.to_owned(),
            });
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
            a.ip(["addr", "add", "192.0.2.1/24", "dev", "eth0"])
                .unwrap();
            b.ip(["addr", "add", "192.0.2.2/24", "dev", "eth0"])
                .unwrap();
            a.ip(["link", "set", "eth0", "up"]).unwrap();
            b.ip(["link", "set", "eth0", "up"]).unwrap();
            a.exec("ping", ["-c", "1", "-W", "2", "192.0.2.2"]).unwrap();
            let sleeper = {
                let mut c = Command::new("sleep");
                c.arg("30");
                b.spawn(c).unwrap()
            };
            assert!(sleeper.pid().is_some());
        }
        let list = run("ip", ["netns", "list"]).unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(
            !list.contains(&na) && !list.contains(&nb),
            "left behind: {list}"
        );
    }

    #[test]
    fn failing_commands_report_their_stderr() {
        let ns = Namespace::create(&format!("{}e", unique_stem())).unwrap();
        let e = ns
            .ip(["link", "set", "nosuchdev", "up"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuchdev"), "{e}");
        assert!(matches!(
            veth_pair(&ns, "x234567890123456", &ns, "y"),
            Err(NetnsError::BadName(_))
        ));
    }
}
