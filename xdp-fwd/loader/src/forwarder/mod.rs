//! The [`Forwarder`]: load or adopt, program settings and VIPs, read
//! counters. Attaching, tables and hot restart (pins) are in submodules.

mod attach;
mod map_mmap;
mod pins;
mod ring_map;
mod table;
mod vip_filter;

pub use attach::{AttachMode, PassProgram};

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
    time::Instant,
};

use attach::Attachment;
use aya::{
    maps::{Array, HashMap as BpfHashMap, PerCpuArray, PerCpuValues},
    programs::{ProgramError, Xdp},
    Ebpf, EbpfLoader,
};
use ring_map::RingMapping;
use xdp_fwd_common::{
    addr_words, capacity, conn::MAX_CONN_SETS, conn_sets, map_name, port_raw, stats::stat, AddrKey,
    FlowKey, Settings, Traffic, VipEpoch, VipMapKey, VipMeta, CONN_WAYS,
};

use crate::{
    config::{vip_map_key, ForwarderSettings, VipOptions},
    registry::BackendRegistry,
    stats::Stats,
    test_run::{self, TestRunOutput},
    Error, Result, VipKey, PASS_PROGRAM_NAME, PROGRAM_NAME, PROGRAM_OBJECT,
};

/// Map capacities (node-local, fixed at load time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// VIPs (at most 65536).
    pub vips: u32,
    /// Distinct backend addresses.
    pub backends: u32,
    /// Largest Maglev table (slots) accepted by [`Forwarder::set_table`].
    pub table_size: u32,
    /// Connection-cache entries (flows) per CPU: rounded up so that
    /// `flows / CONN_WAYS` is a power of two (64 bytes each per CPU).
    pub flows: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            vips: capacity::VIPS,
            backends: capacity::BACKENDS,
            table_size: capacity::TABLE,
            flows: capacity::FLOWS,
        }
    }
}

/// How to load the forwarder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Directory on a BPF filesystem for the maps and links. If it holds the
    /// maps of a previous process, they are adopted with their contents (hot
    /// restart). `None`: nothing pinned, everything goes when dropped.
    pub pin_dir: Option<PathBuf>,
    /// Map sizes.
    pub capacity: Capacity,
}

/// Userspace shadow of one VIP.
#[derive(Debug)]
struct VipState {
    meta: VipMeta,
    /// Backend addresses of the live table, by table index.
    backends: Vec<IpAddr>,
    /// Backend addresses of the previous table (second hop), referenced
    /// until it is dropped; empty when there is none.
    prev_backends: Vec<IpAddr>,
    /// What each RING half holds (backend ids), if known.
    halves: [Option<Vec<u32>>; 2],
    /// When the inactive half stopped being live.
    flipped_at: Option<Instant>,
}

/// The loaded forwarder and the userspace view of its maps.
pub struct Forwarder {
    ebpf: Ebpf,
    options: LoadOptions,
    vips: HashMap<VipKey, VipState>,
    free_vip_indices: BTreeSet<u32>,
    backends: BackendRegistry,
    attachments: HashMap<String, Attachment>,
    adopted: bool,
    /// Sets of the connection cache (from `Capacity::flows`).
    conn_sets: u32,
    /// Last epoch given to a VIP index (see `VipEpoch`).
    last_vip_epoch: u32,
    /// The VIP_FILTER words as written (see `vip_filter`).
    vip_filter: Vec<u64>,
    /// The RING values, mapped: tables are written through it.
    ring: RingMapping,
}

impl Forwarder {
    /// Loads with default capacities and nothing pinned (tests, tools).
    pub fn load() -> Result<Self> {
        Self::load_with(LoadOptions::default())
    }

    /// Loads the program and creates its maps, or adopts the maps pinned in
    /// `options.pin_dir` by a previous process (their contents, VIPs,
    /// tables and connection table included, are kept).
    pub fn load_with(options: LoadOptions) -> Result<Self> {
        let cap = options.capacity;
        if cap.vips == 0 || cap.backends == 0 || cap.table_size == 0 || cap.flows == 0 {
            return Err(Error::Invalid("capacities must be non-zero".into()));
        }
        // A cache entry keeps its VIP's index in 16 bits (one cache line).
        if cap.vips > 1 << 16 {
            return Err(Error::Invalid(format!(
                "{} VIPs: at most 65536 (connection-cache entries hold 16-bit VIP indices)",
                cap.vips
            )));
        }
        let ring = u64::from(cap.vips) * 2 * u64::from(cap.table_size);
        let ring = u32::try_from(ring)
            .map_err(|_| Error::Invalid(format!("RING of {ring} slots is too large")))?;
        let conn_sets = conn_sets(cap.flows).ok_or_else(|| {
            Error::Invalid(format!(
                "a connection cache of {} flows is too large (at most {})",
                cap.flows,
                u64::from(MAX_CONN_SETS) * CONN_WAYS as u64
            ))
        })?;
        // One slice of sets per possible CPU (the program indexes by CPU).
        let cpus = possible_cpus()?;
        let conn_cache_sets = u32::try_from(cpus as u64 * u64::from(conn_sets)).map_err(|_| {
            Error::Invalid(format!(
                "a connection cache of {} flows on each of {cpus} CPUs is too large",
                cap.flows
            ))
        })?;

        let pin_paths = match &options.pin_dir {
            Some(dir) => pins::map_pins(dir)?,
            None => Vec::new(),
        };
        let adopted = pin_paths.iter().any(|(_, p)| p.exists());
        let sizes = [
            (map_name::VIPS, cap.vips),
            (map_name::VIP_EPOCHS, cap.vips),
            (map_name::VIP_ADDRS, cap.vips),
            (map_name::VIP_STATS, cap.vips),
            (map_name::RING, ring),
            (map_name::BACKENDS, cap.backends),
            (map_name::BACKEND_STATS, cap.backends),
            (map_name::CONN_CACHE, conn_cache_sets),
            (map_name::CONN_PREV, conn_cache_sets),
        ];
        if adopted {
            pins::check_pinned_maps(&pin_paths, &sizes)?;
        }

        let mut loader = EbpfLoader::new();
        for (name, size) in sizes {
            loader.map_max_entries(name, size);
        }
        loader.map_max_entries(map_name::NEXT_HOPS, cap.backends);
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT)?;
        for name in [PROGRAM_NAME, PASS_PROGRAM_NAME] {
            load_program(&mut ebpf, name)?;
        }
        let ring = RingMapping::new(
            ebpf.map(map_name::RING)
                .ok_or(Error::Missing(map_name::RING))?,
            ring,
        )?;
        let mut fwd = Self {
            ring,
            ebpf,
            free_vip_indices: (0..cap.vips).collect(),
            backends: BackendRegistry::new(cap.backends),
            vips: HashMap::new(),
            attachments: HashMap::new(),
            options,
            adopted,
            conn_sets,
            last_vip_epoch: 0,
            vip_filter: vec![0; vip_filter::WORDS],
        };
        if adopted {
            fwd.vip_filter = fwd.read_filter()?;
            fwd.recover()?;
            fwd.filter_sync()?;
        } else {
            fwd.set_settings(&ForwarderSettings::default())?;
        }
        Ok(fwd)
    }

    /// Whether this process adopted pinned maps of a previous one.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The capacities the maps were created with.
    pub fn capacity(&self) -> Capacity {
        self.options.capacity
    }

    // ----- settings and VIPs -----------------------------------------------

    /// Writes the data-plane settings.
    pub fn set_settings(&mut self, settings: &ForwarderSettings) -> Result<()> {
        let value = settings.to_map(self.options.capacity.table_size, self.conn_sets)?;
        let mut map: Array<_, Settings> = Array::try_from(self.map_mut(map_name::SETTINGS)?)?;
        map.set(0, value, 0)?;
        Ok(())
    }

    /// The settings in the map (cluster seed, encapsulation, sources...).
    pub fn settings(&self) -> Result<Settings> {
        let map: Array<_, Settings> = Array::try_from(self.map(map_name::SETTINGS)?)?;
        Ok(map.get(&0, 0)?)
    }

    /// Adds a VIP, or updates the options of an existing one (its table is
    /// kept). A new VIP has no table: its packets drop until
    /// [`Forwarder::set_table`].
    pub fn set_vip(&mut self, vip: VipKey, options: VipOptions) -> Result<()> {
        let flags = options.flags();
        let encap = options.encap.code();
        let meta = if let Some(state) = self.vips.get(&vip) {
            VipMeta {
                flags,
                encap,
                ..state.meta
            }
        } else {
            let index = self
                .free_vip_indices
                .first()
                .copied()
                .ok_or(Error::Capacity("VIPs"))?;
            self.zero_traffic(map_name::VIP_STATS, index)?;
            VipMeta {
                flags,
                index,
                table_size: 0,
                active_half: 0,
                encap,
                _pad: [0; 2],
                prev_table_size: 0,
            }
        };
        // The program must find the VIP once it is written.
        self.filter_add(vip.address)?;
        self.write_vip(&vip, meta)?;
        // Cached flows of the index stop skipping the VIP lookup: they see
        // the new options (or, for a reused index, do not see another VIP's).
        self.new_vip_epoch(meta.index, meta.encap)?;
        if let Some(state) = self.vips.get_mut(&vip) {
            state.meta = meta;
            return Ok(());
        }
        self.free_vip_indices.remove(&meta.index);
        let state = VipState {
            meta,
            backends: Vec::new(),
            prev_backends: Vec::new(),
            halves: [None, None],
            flipped_at: None,
        };
        self.vips.insert(vip, state);
        // An exact-port VIP takes flows a port-0 VIP of its address had:
        // their cached entries must look the VIP up again.
        let siblings: Vec<(u32, u8)> = self
            .vips
            .iter()
            .filter(|(v, _)| v.address == vip.address && v.protocol == vip.protocol && **v != vip)
            .map(|(_, s)| (s.meta.index, s.meta.encap))
            .collect();
        for (index, encap) in siblings {
            self.new_vip_epoch(index, encap)?;
        }
        self.sync_addr_refs(vip.address)
    }

    /// Removes a VIP and releases its backends; absent VIPs are fine.
    pub fn remove_vip(&mut self, vip: &VipKey) -> Result<()> {
        let Some(state) = self.vips.remove(vip) else {
            return Ok(());
        };
        let mut vips: BpfHashMap<_, VipMapKey, VipMeta> =
            BpfHashMap::try_from(self.map_mut(map_name::VIPS)?)?;
        match vips.remove(&vip_map_key(vip)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.clear_vip_epoch(state.meta.index)?;
        self.sync_addr_refs(vip.address)?;
        self.filter_sync()?;
        self.release_backends(&state.backends)?;
        self.release_backends(&state.prev_backends)?;
        self.free_vip_indices.insert(state.meta.index);
        Ok(())
    }

    /// The VIPs configured, with their options.
    pub fn vips(&self) -> Vec<(VipKey, VipOptions)> {
        let mut v: Vec<_> = self
            .vips
            .iter()
            .map(|(vip, s)| (*vip, VipOptions::from_meta(s.meta.flags, s.meta.encap)))
            .collect();
        v.sort_by_key(|(vip, _)| *vip);
        v
    }

    // ----- counters ----------------------------------------------------------

    /// All counters, summed over CPUs.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        let global: PerCpuArray<_, u64> = PerCpuArray::try_from(self.map(map_name::STATS)?)?;
        for (i, c) in s.counters.iter_mut().enumerate() {
            *c = global.get(&(i as u32), 0)?.iter().sum();
        }
        let vip_stats: PerCpuArray<_, Traffic> =
            PerCpuArray::try_from(self.map(map_name::VIP_STATS)?)?;
        for (vip, state) in &self.vips {
            s.vips
                .insert(*vip, sum_traffic(&vip_stats.get(&state.meta.index, 0)?));
        }
        let backend_stats: PerCpuArray<_, Traffic> =
            PerCpuArray::try_from(self.map(map_name::BACKEND_STATS)?)?;
        for (addr, id) in self.backends.iter() {
            s.backends
                .insert(addr, sum_traffic(&backend_stats.get(&id, 0)?));
        }
        Ok(s)
    }

    /// One global counter (a [`xdp_fwd_common::stats::stat`] index).
    pub fn counter(&self, index: u32) -> Result<u64> {
        if index >= stat::COUNT {
            return Ok(0);
        }
        let global: PerCpuArray<_, u64> = PerCpuArray::try_from(self.map(map_name::STATS)?)?;
        Ok(global.get(&index, 0)?.iter().sum())
    }

    // ----- connection cache ----------------------------------------------------

    /// Empties the connection cache on every CPU (an operator's flush, and
    /// the differential fuzz's fixed starting point): each flow's next
    /// packet goes by the current table and is cached again. The map is
    /// mmapable, so this is one write of zeros, not a syscall per set.
    pub fn clear_conn_cache(&mut self) -> Result<()> {
        let sets = possible_cpus()? * self.conn_sets as usize;
        let len = sets * std::mem::size_of::<xdp_fwd_common::ConnSet>();
        let mapping =
            map_mmap::MapMmap::new(self.map(map_name::CONN_CACHE)?, "CONN_CACHE array", len)?;
        // SAFETY: `len` bytes lie within the mapping (which rounds up to
        // pages); zero is a valid (empty) ConnSet; unmapped on drop.
        debug_assert!(len <= mapping.len());
        unsafe { std::ptr::write_bytes(mapping.as_ptr(), 0, len) };
        Ok(())
    }

    // ----- test runs ---------------------------------------------------------

    /// Runs the forwarder once on `frame` (BPF_PROG_TEST_RUN, arriving on
    /// loopback).
    pub fn test_run(&mut self, frame: &[u8]) -> Result<TestRunOutput> {
        test_run::run(&mut self.ebpf, PROGRAM_NAME, frame, 0, 1)
    }

    /// Runs the forwarder on `frame` arriving on interface `ingress_ifindex`
    /// of the calling thread's namespace, `repeat` times (the kernel reuses
    /// one buffer; the output is the last run's).
    pub fn test_run_on(
        &mut self,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<TestRunOutput> {
        test_run::run(&mut self.ebpf, PROGRAM_NAME, frame, ingress_ifindex, repeat)
    }

    /// Runs the trivial XDP_PASS program (the benchmark floor).
    pub fn test_run_pass(&mut self, frame: &[u8], repeat: u32) -> Result<TestRunOutput> {
        test_run::run(&mut self.ebpf, PASS_PROGRAM_NAME, frame, 0, repeat)
    }

    /// Size of the loaded forwarding program: (verified bytecode bytes,
    /// JIT-compiled machine code bytes).
    pub fn program_size(&self) -> Result<(u32, u32)> {
        let prog = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(Error::Missing("XDP program"))?;
        let info = prog.info()?;
        Ok((info.size_translated().unwrap_or(0), info.size_jitted()))
    }

    // ----- internals -----------------------------------------------------------

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).ok_or(Error::Missing(name))
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).ok_or(Error::Missing(name))
    }

    fn write_vip(&mut self, vip: &VipKey, meta: VipMeta) -> Result<()> {
        let mut vips: BpfHashMap<_, VipMapKey, VipMeta> =
            BpfHashMap::try_from(self.map_mut(map_name::VIPS)?)?;
        vips.insert(vip_map_key(vip), meta, 0)?;
        Ok(())
    }

    /// Gives VIP `index` a fresh epoch (never 0).
    fn new_vip_epoch(&mut self, index: u32, encap: u8) -> Result<()> {
        self.last_vip_epoch = self.last_vip_epoch.checked_add(1).unwrap_or(1);
        let value = VipEpoch {
            epoch: self.last_vip_epoch,
            encap,
            _pad: [0; 3],
        };
        let mut map: Array<_, VipEpoch> = Array::try_from(self.map_mut(map_name::VIP_EPOCHS)?)?;
        map.set(index, value, 0)?;
        Ok(())
    }

    /// Epoch 0 for a removed VIP's index: no cached flow matches it.
    fn clear_vip_epoch(&mut self, index: u32) -> Result<()> {
        let mut map: Array<_, VipEpoch> = Array::try_from(self.map_mut(map_name::VIP_EPOCHS)?)?;
        map.set(index, VipEpoch::default(), 0)?;
        Ok(())
    }

    /// Writes the number of VIPs on `addr` into VIP_ADDRS (removing the
    /// entry at zero).
    fn sync_addr_refs(&mut self, addr: IpAddr) -> Result<()> {
        let count = self.vips.keys().filter(|v| v.address == addr).count() as u32;
        let (words, family) = addr_words(addr);
        let key = AddrKey {
            addr: words,
            family,
            _pad: [0; 3],
        };
        let mut addrs: BpfHashMap<_, AddrKey, u32> =
            BpfHashMap::try_from(self.map_mut(map_name::VIP_ADDRS)?)?;
        if count > 0 {
            addrs.insert(key, count, 0)?;
        } else {
            match addrs.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn zero_traffic(&mut self, name: &'static str, index: u32) -> Result<()> {
        let cpus = possible_cpus()?;
        let zeros = PerCpuValues::try_from(vec![Traffic::default(); cpus])
            .map_err(|e| Error::Io("per-CPU values".into(), e))?;
        let mut map: PerCpuArray<_, Traffic> = PerCpuArray::try_from(self.map_mut(name)?)?;
        map.set(index, zeros, 0)?;
        Ok(())
    }
}

/// Number of possible CPUs: the per-CPU maps' value count, and the slices
/// of the CPU-indexed connection cache.
fn possible_cpus() -> Result<usize> {
    aya::util::nr_cpus().map_err(|(what, e)| Error::Io(format!("reading {what}"), e))
}

/// The flow key of a tuple (the connection-cache key and hash input).
pub fn flow_key(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: addr_words(src).0,
        dst: addr_words(dst).0,
        sport: port_raw(sport),
        dport: port_raw(dport),
        proto,
        _pad: [0; 3],
    }
}

fn sum_traffic(per_cpu: &[Traffic]) -> Traffic {
    per_cpu.iter().fold(Traffic::default(), |a, t| Traffic {
        packets: a.packets + t.packets,
        bytes: a.bytes + t.bytes,
    })
}

/// Loads (verifies) program `name`. The verifier gives up with EAGAIN when a
/// signal arrives during verification; like libbpf, retry a few times.
fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<()> {
    const ATTEMPTS: usize = 5;
    let prog = xdp_program(ebpf, name)?;
    for attempt in 1..=ATTEMPTS {
        match prog.load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < ATTEMPTS => {}
            other => return Ok(other?),
        }
    }
    Ok(())
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    let prog = ebpf
        .program_mut(name)
        .ok_or(Error::Missing("XDP program"))?;
    Ok(prog.try_into()?)
}
