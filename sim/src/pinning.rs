//! The one CPU the whole simulation runs on, and pinning threads and child
//! processes to it.
//!
//! On a real NIC, receive-side scaling hashes each flow to one queue, so
//! one CPU sees all of a flow's packets, and the forwarder's per-CPU
//! connection table relies on that. On veth a packet is processed on the
//! CPU that sent it (or wherever the receiving queue's poll already runs),
//! so processes and threads spread over CPUs would spread a flow's packets
//! too, and a table change would move its stray packets. Running every sim
//! process and traffic thread on one CPU gives flows the stable CPU a NIC
//! gives them.

use std::process::Command;

/// The CPU the whole simulation runs on: the first this process may use.
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

/// Pins the calling thread (and so every process it starts) to [`sim_cpu`].
pub fn pin_to_sim_cpu() -> std::io::Result<()> {
    let Some(cpu) = sim_cpu() else { return Ok(()) };
    set_affinity(cpu)
}

/// Makes `cmd`'s process run on [`sim_cpu`] (set between fork and exec).
pub fn pin_child_to_sim_cpu(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let Some(cpu) = sim_cpu() else { return };
    // SAFETY: the closure runs between fork and exec and only makes a system
    // call on a local, zeroed plain-data set.
    unsafe {
        cmd.pre_exec(move || set_affinity(cpu));
    }
}

/// Runs `f` on a fresh thread pinned to [`sim_cpu`] and waits for it, so
/// processes `f` starts inherit the pinning.
pub fn on_sim_cpu<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> std::io::Result<T> {
            pin_to_sim_cpu()?;
            Ok(f())
        })
        .join()
        .map_err(|_| std::io::Error::other("sim CPU thread panicked"))?
    })
}

fn set_affinity(cpu: usize) -> std::io::Result<()> {
    testbed::cpu::pin_current_thread(cpu)
}
