//! Network namespaces, a router-and-load-balancers topology, and a tokio
//! runtime whose sockets live inside a namespace. Everything is removed on
//! drop, also when a test fails.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs a command; panics with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = output(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn output(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A network namespace with a unique name; deleted (with every process
/// still in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "bgpt-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a command inside the namespace; panics on failure.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a command inside the namespace; returns its output whatever the status.
    pub fn exec_output(&self, cmd: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, cmd];
        all.extend_from_slice(args);
        output("ip", &all)
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    }

    /// A command prefix that runs `cmd` in this namespace (for spawning daemons).
    pub fn command(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, cmd]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Daemons the test started should already be gone; make sure.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain kill(2) on a pid that lives in our own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// One router namespace linked to `n` load-balancer namespaces.
///
/// Link i (1-based): router `r<i>` 10.0.<i>.1/24 + fd00:0:<i>::1/64,
/// load balancer `eth0` 10.0.<i>.2/24 + fd00:0:<i>::2/64.
pub struct Lab {
    pub lbs: Vec<Netns>,
    pub router: Netns,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new(n: usize) -> Lab {
        let router = Netns::new("r");
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        router.sysctl("net.ipv6.fib_multipath_hash_policy", "1");
        router.sysctl("net.ipv4.ip_forward", "1");
        let mut lbs = Vec::new();
        for i in 1..=n {
            let lb = Netns::new(&format!("lb{i}"));
            let rif = format!("r{i}");
            run(
                "ip",
                &[
                    "link",
                    "add",
                    "name",
                    &rif,
                    "netns",
                    &router.name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &lb.name,
                ],
            );
            router.ip(&["addr", "add", &format!("10.0.{i}.1/24"), "dev", &rif]);
            router.ip(&[
                "addr",
                "add",
                &format!("fd00:0:{i}::1/64"),
                "dev",
                &rif,
                "nodad",
            ]);
            router.ip(&["link", "set", &rif, "up"]);
            lb.ip(&["addr", "add", &format!("10.0.{i}.2/24"), "dev", "eth0"]);
            lb.ip(&[
                "addr",
                "add",
                &format!("fd00:0:{i}::2/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            lb.ip(&["link", "set", "eth0", "up"]);
            lbs.push(lb);
        }
        let dir = tempfile::Builder::new()
            .prefix("edgelb-bgp-lab")
            .tempdir()
            .expect("tempdir");
        // Router daemons drop privileges to their own users and write here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        Lab { lbs, router, dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_string_lossy().into_owned()
    }

    /// Routes for `prefix` in the router's kernel table (`ip route show`).
    pub fn kernel_route(&self, prefix: &str) -> String {
        let family = if prefix.contains(':') { "-6" } else { "-4" };
        self.router.ip(&[family, "route", "show", prefix])
    }

    /// Next hops of the kernel route for `prefix`, sorted.
    pub fn kernel_next_hops(&self, prefix: &str) -> Vec<String> {
        let route = self.kernel_route(prefix);
        let mut hops: Vec<String> = route
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        hops.sort();
        hops
    }
}

/// A multi-threaded tokio runtime whose threads live in a namespace, so
/// every socket its tasks open belongs there. Stands in for the node daemon.
pub struct NsRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl NsRuntime {
    pub fn new(ns: &Netns) -> NsRuntime {
        let path = format!("/run/netns/{}", ns.name);
        let rt = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on this thread only, with a valid namespace fd.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns failed: {}", std::io::Error::last_os_error());
            // Worker threads are created from this thread and inherit its namespace.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime")
        })
        .join()
        .expect("runtime thread");
        NsRuntime { rt: Some(rt) }
    }

    /// Runs `f` on the namespace's worker thread and waits for it.
    pub fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime alive");
        rt.block_on(rt.spawn(f)).expect("task panicked")
    }

    /// Abandons every task and socket at once, like a killed process: the
    /// kernel closes the connections, no NOTIFICATION is sent.
    pub fn kill(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
