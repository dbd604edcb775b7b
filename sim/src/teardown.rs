//! Tearing down what a run created when it is interrupted: a signal ends
//! the process without running the guards' drops.

use std::process::Command;

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
    testbed::namespace::remove_own();
    for m in MOUNTS.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
        if let Some(dir) = m.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// On SIGINT or SIGTERM, tears down everything this process created and
/// exits (130). Call first thing in `main`, before any thread starts, so
/// every thread inherits the blocked signals (testbed's process guards
/// clear the mask again for the daemons they start).
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
