//! A multi-threaded tokio runtime whose threads live in a namespace, so
//! every socket its tasks open belongs there: a stand-in for a daemon
//! process without starting one.

use std::future::Future;

use crate::namespace::Namespace;

/// A tokio runtime (one worker thread) inside a namespace; its tasks are
/// abandoned when it drops.
pub struct NamespaceRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl NamespaceRuntime {
    /// Builds the runtime from a thread that first enters `ns`; its worker
    /// threads are created from there and inherit the namespace.
    pub fn new(ns: &Namespace) -> std::io::Result<NamespaceRuntime> {
        let path = ns.path();
        let rt = std::thread::spawn(move || {
            crate::namespace::enter_current_thread(&path)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        })
        .join()
        .map_err(|_| std::io::Error::other("runtime thread panicked"))??;
        Ok(NamespaceRuntime { rt: Some(rt) })
    }

    /// Runs `f` on the namespace's worker thread and waits for it; panics
    /// if the task panicked (so a test's assertion inside fails the test).
    pub fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime alive");
        match rt.block_on(rt.spawn(f)) {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task cancelled: {e}"),
        }
    }

    /// Abandons every task and socket at once, like a killed process: the
    /// kernel closes the connections, nothing is said on them first.
    pub fn kill(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for NamespaceRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_see_the_namespace_network() {
        let ns = Namespace::unique("rtm").unwrap();
        let rt = NamespaceRuntime::new(&ns).unwrap();
        // Only loopback exists there, so this interface list has one entry.
        let n = rt.run(async {
            std::fs::read_to_string("/proc/thread-self/net/dev")
                .unwrap()
                .lines()
                .count()
        });
        assert_eq!(n, 3, "header (2 lines) + lo");
        rt.kill();
    }
}
