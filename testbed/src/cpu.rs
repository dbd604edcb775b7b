//! CPU pinning (`sched_setaffinity(2)`) for tests, benches and the sim:
//! the forwarder's connection cache has one slice per CPU, so traffic that
//! must meet its own cache entries runs on one CPU.

/// Pins thread or process `pid` (0: the calling thread) to `cpu` alone.
pub fn pin_to_cpu(pid: libc::pid_t, cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it (it
    // ignores CPUs past CPU_SETSIZE); the kernel only reads the set.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to `cpu` alone.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    pin_to_cpu(0, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_runs_on_its_cpu() {
        std::thread::spawn(|| {
            pin_current_thread(0).unwrap();
            // SAFETY: sched_getcpu has no preconditions.
            assert_eq!(unsafe { libc::sched_getcpu() }, 0);
        })
        .join()
        .unwrap();
    }
}
