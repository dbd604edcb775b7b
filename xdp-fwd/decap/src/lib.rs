//! Backend-side XDP decapsulator for EdgeLB: strips the IPIP / IP6IP6 / GUE
//! header the load balancer added, so the backend's stack sees the client's
//! original packet to the VIP (held on loopback) and answers it directly.
//!
//! Use it where the kernel has no IPIP/FOU tunnel devices, or for speed.

pub mod model;

use aya::{
    maps::{Array, MapError, PerCpuArray},
    programs::{xdp::XdpLinkId, ProgramError, TestRun, TestRunOptions, Xdp, XdpMode},
    Ebpf, EbpfError,
};

/// The compiled decap program (bpfel ELF), embedded at build time.
pub static PROGRAM_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xdp-decap"));

/// Name of the XDP entry point.
pub const PROGRAM_NAME: &str = "xdp_decap";

/// Errors from loading or attaching the decapsulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be loaded.
    #[error("loading the decap object: {0}")]
    Load(#[from] EbpfError),
    /// Verifier, attach or test-run failure.
    #[error("decap program: {0}")]
    Program(#[from] ProgramError),
    /// A map operation failed.
    #[error("decap map: {0}")]
    Map(#[from] MapError),
    /// Something the object must contain is missing.
    #[error("the decap object has no {0}")]
    Missing(&'static str),
}

/// Packets decapsulated and left alone, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecapStats {
    /// IPIP / IP6IP6 / 4in6 / 6in4 packets decapsulated.
    pub ipip: u64,
    /// GUE packets decapsulated.
    pub gue: u64,
    /// Fragmented outer packets passed to the stack undecapsulated.
    pub fragments: u64,
}

/// A loaded decap program.
pub struct Decapper {
    ebpf: Ebpf,
}

impl Decapper {
    /// Loads the program; `gue_port` is the GUE destination port (0 disables GUE).
    pub fn load(gue_port: u16) -> Result<Self, Error> {
        let mut ebpf = Ebpf::load(PROGRAM_OBJECT)?;
        program(&mut ebpf)?.load()?;
        let map = ebpf
            .map_mut("DECAP_CONFIG")
            .ok_or(Error::Missing("DECAP_CONFIG map"))?;
        let mut config: Array<_, u32> = Array::try_from(map)?;
        config.set(0, u32::from(gue_port), 0)?;
        Ok(Self { ebpf })
    }

    /// Attaches to `interface` (driver mode in production).
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<XdpLinkId, Error> {
        Ok(program(&mut self.ebpf)?.attach(interface, mode)?)
    }

    /// Counters summed over CPUs.
    pub fn stats(&self) -> Result<DecapStats, Error> {
        let map = self
            .ebpf
            .map("DECAP_STATS")
            .ok_or(Error::Missing("DECAP_STATS map"))?;
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let sum = |i: u32| -> Result<u64, Error> { Ok(stats.get(&i, 0)?.iter().sum()) };
        Ok(DecapStats {
            ipip: sum(0)?,
            gue: sum(1)?,
            fragments: sum(2)?,
        })
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN): verdict and output.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>), Error> {
        let mut out = vec![0u8; frame.len() + 64];
        let res = program(&mut self.ebpf)?.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })?;
        out.truncate(res.data_size_out as usize);
        Ok((res.return_value, out))
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, Error> {
    let prog = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or(Error::Missing("xdp_decap program"))?;
    prog.try_into().map_err(Error::Program)
}
