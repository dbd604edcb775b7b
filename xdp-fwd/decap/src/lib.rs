//! Backend-side XDP decapsulator for EdgeLB: strips the IPIP / IP6IP6 / GUE
//! header the load balancer added, so the backend's stack sees the client's
//! original packet to the VIP (held on loopback) and answers it directly.
//!
//! Use it where the kernel has no IPIP/FOU tunnel devices, or for speed.
//!
//! Second hop: for VIPs enabled with [`Decapper::set_second_hop`], a packet
//! carrying its flow's previous owner is delivered here if this host has a
//! socket for the flow, else forwarded once to that owner (see
//! xdp-fwd/FORWARDER.md, "Second hop").

use std::net::IpAddr;

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapError, PerCpuArray},
    programs::{xdp::XdpLinkId, ProgramError, TestRun, TestRunOptions, Xdp, XdpMode},
    Ebpf, EbpfError,
};
use xdp_fwd_common::{
    addr_words,
    second_hop::{decap_map, decap_stat, HopKey},
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
    /// A request that cannot be applied (nothing was changed).
    #[error("invalid second-hop configuration: {0}")]
    Invalid(String),
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
    /// Second-hop candidates forwarded to their previous owner.
    pub second_hop_forwarded: u64,
    /// Second-hop candidates, and packets after their second hop, delivered
    /// here (a socket exists, or a SYN).
    pub second_hop_delivered: u64,
    /// Packets after their second hop without a socket here either:
    /// delivered, never forwarded again.
    pub second_hop_loop_refused: u64,
    /// Bad second-hop input: malformed or truncated record, previous owner
    /// not a peer of the VIP (dropped), VIP not configured (delivered).
    pub second_hop_invalid: u64,
    /// Second hops dropped for want of a route to the previous owner.
    pub second_hop_no_route: u64,
}

/// A loaded decap program.
pub struct Decapper {
    ebpf: Ebpf,
    /// Peers written per second-hop VIP (to remove them again).
    second_hop: std::collections::HashMap<IpAddr, Vec<IpAddr>>,
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
        Ok(Self {
            ebpf,
            second_hop: std::collections::HashMap::new(),
        })
    }

    /// Enables second-hop handling for `vip` on this host, with the other
    /// backends of that VIP (`peers`) as the only addresses a packet may be
    /// forwarded to. Replaces an earlier peer set of `vip`.
    pub fn set_second_hop(&mut self, vip: IpAddr, peers: &[IpAddr]) -> Result<(), Error> {
        if let Some(p) = peers.iter().find(|p| **p == vip) {
            return Err(Error::Invalid(format!("peer {p} is the VIP itself")));
        }
        let mut unique = peers.to_vec();
        unique.sort();
        unique.dedup();
        let capacity = xdp_fwd_common::second_hop::SECOND_HOP_ENTRIES as usize;
        let others: usize = self
            .second_hop
            .iter()
            .filter(|(v, _)| **v != vip)
            .map(|(_, p)| p.len() + 1)
            .sum();
        if others + unique.len() + 1 > capacity {
            return Err(Error::Invalid(format!(
                "{} peers for {vip}: the map holds {capacity} entries over all VIPs",
                unique.len()
            )));
        }
        let old = self.second_hop.get(&vip).cloned().unwrap_or_default();
        let mut map = self.hop_map()?;
        // Peers first, then the VIP's own entry: a packet never sees the VIP
        // enabled without its peers.
        for p in &unique {
            map.insert(hop_key(vip, Some(*p)), 1, 0)?;
        }
        map.insert(hop_key(vip, None), 1, 0)?;
        for p in old.iter().filter(|p| !unique.contains(p)) {
            remove_key(&mut map, &hop_key(vip, Some(*p)))?;
        }
        self.second_hop.insert(vip, unique);
        Ok(())
    }

    /// Disables second-hop handling for `vip` (absent VIPs are fine).
    pub fn clear_second_hop(&mut self, vip: IpAddr) -> Result<(), Error> {
        let old = self.second_hop.get(&vip).cloned().unwrap_or_default();
        let mut map = self.hop_map()?;
        remove_key(&mut map, &hop_key(vip, None))?;
        for p in &old {
            remove_key(&mut map, &hop_key(vip, Some(*p)))?;
        }
        self.second_hop.remove(&vip);
        Ok(())
    }

    fn hop_map(&mut self) -> Result<BpfHashMap<&mut aya::maps::MapData, HopKey, u32>, Error> {
        let map = self
            .ebpf
            .map_mut(decap_map::SECOND_HOP)
            .ok_or(Error::Missing("SECOND_HOP map"))?;
        Ok(BpfHashMap::try_from(map)?)
    }

    /// Attaches to `interface` (driver mode in production).
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<XdpLinkId, Error> {
        Ok(program(&mut self.ebpf)?.attach(interface, mode)?)
    }

    /// Counters summed over CPUs.
    pub fn stats(&self) -> Result<DecapStats, Error> {
        let map = self
            .ebpf
            .map(decap_map::STATS)
            .ok_or(Error::Missing("DECAP_STATS map"))?;
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let sum = |i: u32| -> Result<u64, Error> { Ok(stats.get(&i, 0)?.iter().sum()) };
        Ok(DecapStats {
            ipip: sum(decap_stat::IPIP)?,
            gue: sum(decap_stat::GUE)?,
            fragments: sum(decap_stat::FRAGMENT)?,
            second_hop_forwarded: sum(decap_stat::SECOND_HOP_FORWARDED)?,
            second_hop_delivered: sum(decap_stat::SECOND_HOP_DELIVERED)?,
            second_hop_loop_refused: sum(decap_stat::SECOND_HOP_LOOP_REFUSED)?,
            second_hop_invalid: sum(decap_stat::SECOND_HOP_INVALID)?,
            second_hop_no_route: sum(decap_stat::SECOND_HOP_NO_ROUTE)?,
        })
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN): verdict and output.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>), Error> {
        self.test_run_on(frame, 0)
    }

    /// As [`Decapper::test_run`], the frame arriving on interface
    /// `ingress_ifindex` of the calling thread's namespace (0: loopback),
    /// which is what the route lookup of a second hop sees. Socket lookups
    /// see the calling thread's namespace.
    pub fn test_run_on(
        &mut self,
        frame: &[u8],
        ingress_ifindex: u32,
    ) -> Result<(u32, Vec<u8>), Error> {
        let mut out = vec![0u8; frame.len() + 64];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let words = [0u32, frame.len() as u32, 0, ingress_ifindex, 0, 0];
        let ctx: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let res = program(&mut self.ebpf)?.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: if ingress_ifindex == 0 {
                None
            } else {
                Some(&ctx)
            },
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

/// The SECOND_HOP key of `vip`'s own entry (`peer` None) or of a peer.
fn hop_key(vip: IpAddr, peer: Option<IpAddr>) -> HopKey {
    let (vip_words, vip_family) = addr_words(vip);
    let (peer_words, peer_family) = peer.map_or(([0; 4], 0), addr_words);
    HopKey {
        vip: vip_words,
        peer: peer_words,
        vip_family,
        peer_family,
        _pad: [0; 2],
    }
}

/// Removes `key`; an absent key is fine.
fn remove_key(
    map: &mut BpfHashMap<&mut aya::maps::MapData, HopKey, u32>,
    key: &HopKey,
) -> Result<(), Error> {
    match map.remove(key) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
