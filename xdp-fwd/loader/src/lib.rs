//! Userspace side of EdgeLB's XDP forwarder: loads the eBPF program built by
//! `build.rs`, attaches it to interfaces, and offers a typed API over its maps.
//!
//! Only the node's applied-state pipeline should call the map-writing methods:
//! data flows Raft log -> applied state -> Maglev tables -> these maps.

use std::net::IpAddr;

use aya::{
    maps::{HashMap, MapError, PerCpuArray},
    programs::{xdp::XdpLinkId, ProgramError, TestRun, TestRunOptions, Xdp, XdpMode},
    Ebpf, EbpfError,
};
pub use xdp_fwd_common as common;
use xdp_fwd_common::{drop_reason, family, VipKey, VipMeta};

/// The compiled eBPF object (bpfel ELF), embedded at build time.
pub static PROGRAM_OBJECT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/xdp-fwd"));

/// Name of the XDP entry point in [`PROGRAM_OBJECT`].
pub const PROGRAM_NAME: &str = "xdp_fwd";

/// Errors from loading, attaching or programming the forwarder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be parsed or its maps created.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    /// The verifier rejected the program, or attach/test-run failed.
    #[error("eBPF program: {0}")]
    Program(#[from] ProgramError),
    /// A map operation failed.
    #[error("eBPF map: {0}")]
    Map(#[from] MapError),
    /// A map or program the object must contain is missing.
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// L4 protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

/// Builds the map key of a VIP; `port` 0 means all ports.
pub fn vip_key(addr: IpAddr, port: u16, proto: Protocol) -> VipKey {
    let (addr, fam) = match addr {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], family::V4),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], family::V6)
        }
    };
    VipKey { addr, port: port.to_be(), proto: proto.number(), family: fam }
}

/// Outcome of one BPF_PROG_TEST_RUN of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The XDP verdict (`XDP_PASS` = 2, `XDP_DROP` = 1, `XDP_TX` = 3, ...).
    pub verdict: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// Kernel-measured run time, averaged over the repeats.
    pub duration: std::time::Duration,
}

/// XDP verdict numbers (`enum xdp_action`).
pub mod verdict {
    /// XDP_ABORTED.
    pub const ABORTED: u32 = 0;
    /// XDP_DROP.
    pub const DROP: u32 = 1;
    /// XDP_PASS.
    pub const PASS: u32 = 2;
    /// XDP_TX.
    pub const TX: u32 = 3;
    /// XDP_REDIRECT.
    pub const REDIRECT: u32 = 4;
}

/// A loaded (verified) forwarder program and its maps.
pub struct Forwarder {
    ebpf: Ebpf,
}

impl Forwarder {
    /// Loads the embedded object and has the verifier check the program.
    pub fn load() -> Result<Self> {
        let mut ebpf = Ebpf::load(PROGRAM_OBJECT)?;
        xdp_program(&mut ebpf)?.load()?;
        Ok(Self { ebpf })
    }

    /// Attaches the program to `interface`; `mode` should be
    /// [`XdpMode::Driver`] in production ([`XdpMode::Skb`] is for development).
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<XdpLinkId> {
        Ok(xdp_program(&mut self.ebpf)?.attach(interface, mode)?)
    }

    /// Adds or replaces a VIP.
    pub fn set_vip(&mut self, key: VipKey, meta: VipMeta) -> Result<()> {
        let map = self.ebpf.map_mut("VIPS").ok_or(Error::Missing("VIPS map"))?;
        let mut vips: HashMap<_, VipKey, VipMeta> = HashMap::try_from(map)?;
        vips.insert(key, meta, 0)?;
        Ok(())
    }

    /// Removes a VIP; removing an absent VIP is not an error.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        let map = self.ebpf.map_mut("VIPS").ok_or(Error::Missing("VIPS map"))?;
        let mut vips: HashMap<_, VipKey, VipMeta> = HashMap::try_from(map)?;
        match vips.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Drops counted for `reason` (a `drop_reason::*`), summed over CPUs.
    pub fn drop_count(&self, reason: u32) -> Result<u64> {
        if reason >= drop_reason::COUNT {
            return Ok(0);
        }
        let map = self.ebpf.map("DROPS").ok_or(Error::Missing("DROPS map"))?;
        let drops: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(drops.get(&reason, 0)?.iter().sum())
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<TestRunOutput> {
        self.test_run_repeat(frame, 1)
    }

    /// Runs the program `repeat` times on `frame` (the kernel reuses the same
    /// buffer for every repeat) and returns the last output.
    pub fn test_run_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<TestRunOutput> {
        // Room for encapsulation headers the program may push.
        let mut out = vec![0u8; frame.len() + 256];
        let prog = xdp_program(&mut self.ebpf)?;
        let res = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: repeat.max(1),
            ..TestRunOptions::new()
        })?;
        out.truncate(res.data_size_out as usize);
        Ok(TestRunOutput { verdict: res.return_value, frame: out, duration: res.duration })
    }
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let prog = ebpf.program_mut(PROGRAM_NAME).ok_or(Error::Missing("xdp_fwd program"))?;
    prog.try_into().map_err(|e: ProgramError| Error::Program(e))
}
