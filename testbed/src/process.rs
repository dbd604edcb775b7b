//! Child processes that are stopped (SIGTERM, then SIGKILL after a grace
//! period) when their guard drops, with their output in a file.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::command::{describe, Error, Result};

/// How long [`ProcessGuard`]'s drop waits after SIGTERM before SIGKILL.
pub const DROP_GRACE: Duration = Duration::from_secs(2);

/// A child process, stopped when the guard drops.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Option<Child>,
    command: String,
}

impl ProcessGuard {
    /// Starts `cmd` as is, stdin closed (build it with
    /// [`crate::Namespace::command`] to run it in a namespace, and set its
    /// stdout/stderr as needed).
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        let command = describe(&cmd);
        clear_signal_mask(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
        Ok(Self {
            child: Some(child),
            command,
        })
    }

    /// Starts `cmd` with stdout and stderr both appended to `log` (created
    /// or truncated first).
    pub fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: log.to_owned(),
            source,
        };
        let out = std::fs::File::create(log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        Self::spawn(cmd)
    }

    /// The process id (of the `ip netns exec` wrapper, which execs the
    /// program, so the program's own pid); `None` once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Whether the process has exited (or was stopped through the guard).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Sends `signal` to the process, if it is still ours.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// Sends SIGTERM and waits up to `grace` for exit, then SIGKILLs; reaps it.
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

    /// SIGKILLs the process at once and reaps it, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop(DROP_GRACE);
    }
}

/// Gives the child an empty signal mask. The mask survives exec, and a
/// parent that blocks SIGINT/SIGTERM to handle them on one thread (as the
/// simulation does) would otherwise start daemons that never see SIGTERM.
fn clear_signal_mask(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes a system
    // call on a local, zeroed plain-data set.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::other("clearing the signal mask"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_stops_the_process_and_logs_land_in_the_file() {
        let dir = std::env::temp_dir().join(format!("testbed-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sh.log");
        let mut c = Command::new("sh");
        c.args(["-c", "echo started; exec sleep 30"]);
        let mut p = ProcessGuard::spawn_logged(c, &log).unwrap();
        let pid = p.pid().unwrap() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
            assert!(Instant::now() < deadline, "no output");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!p.has_exited());
        drop(p);
        // SAFETY: signal 0 only checks whether the pid exists.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "still running");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "started\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kill_reaps_at_once() {
        let mut c = Command::new("sleep");
        c.arg("30");
        let mut p = ProcessGuard::spawn(c).unwrap();
        p.kill();
        assert!(p.has_exited() && p.pid().is_none());
    }
}
