//! BPF_PROG_TEST_RUN of the loaded programs (fixtures and benchmarks).
use std::time::Duration;

use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};

use crate::{Error, Result};

/// Outcome of one BPF_PROG_TEST_RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The XDP verdict (see [`crate::verdict`]).
    pub verdict: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// Kernel-measured run time per repeat.
    pub duration: Duration,
}

/// Runs program `name` on `frame`; `ingress_ifindex` 0 lets the kernel use
/// loopback, otherwise the frame appears to arrive on that interface (of the
/// calling thread's network namespace), which is what `bpf_fib_lookup` sees.
pub(crate) fn run(
    ebpf: &mut Ebpf,
    name: &'static str,
    frame: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
) -> Result<TestRunOutput> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(Error::Missing("XDP program"))?
        .try_into()?;
    // Room for the encapsulation headers the program may push.
    let mut out = vec![0u8; frame.len() + 256];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let words = [0u32, frame.len() as u32, 0, ingress_ifindex, 0, 0];
    let ctx: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let res = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: if ingress_ifindex == 0 {
            None
        } else {
            Some(&ctx)
        },
        repeat: repeat.max(1),
        ..TestRunOptions::new()
    })?;
    out.truncate(res.data_size_out as usize);
    Ok(TestRunOutput {
        verdict: res.return_value,
        frame: out,
        duration: res.duration,
    })
}
