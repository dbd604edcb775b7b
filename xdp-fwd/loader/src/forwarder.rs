//! The [`Forwarder`]: load or adopt, attach, program, read counters.
use std::{
    collections::{BTreeSet, HashMap},
    ffi::CString,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, DevMapHash, HashMap as BpfHashMap, PerCpuArray, PerCpuValues},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
        Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use xdp_fwd_common::{
    addr_words, capacity, flow_hash, maglev_slot, map_name, port_raw, stats::stat, words_addr,
    AddrKey, Backend, FlowKey, Settings, Traffic, VipKey, VipMeta, NO_BACKEND,
};

use crate::{
    model::{ForwarderSettings, Vip, VipOptions},
    registry::BackendRegistry,
    stats::Stats,
    test_run::{self, TestRunOutput},
    Error, Result, PASS_PROGRAM_NAME, PROGRAM_NAME, PROGRAM_OBJECT,
};

/// A RING half that stopped being live is rewritten only after this long, so
/// a packet that read the old half index just before the flip has finished
/// (XDP runs to completion in microseconds).
const HALF_REUSE_GRACE: Duration = Duration::from_millis(20);

/// Maps pinned for hot restart (all of them: state and counters survive).
const PINNED_MAPS: [&str; 10] = [
    map_name::SETTINGS,
    map_name::VIPS,
    map_name::VIP_ADDRS,
    map_name::RING,
    map_name::BACKENDS,
    map_name::FLOWS,
    map_name::STATS,
    map_name::VIP_STATS,
    map_name::BACKEND_STATS,
    map_name::TX_PORTS,
];

/// Map capacities (node-local, fixed at load time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// VIPs.
    pub vips: u32,
    /// Distinct backend addresses.
    pub backends: u32,
    /// Largest Maglev table (slots) accepted by [`Forwarder::set_table`].
    pub table_size: u32,
    /// Connection-table entries per CPU.
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

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) XDP: the production mode.
    Driver,
    /// Generic (SKB) XDP, for development on NICs without driver support.
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// Userspace shadow of one VIP.
#[derive(Debug)]
struct VipState {
    meta: VipMeta,
    /// Backend addresses of the live table, by table index.
    backends: Vec<IpAddr>,
    /// What each RING half holds (backend ids), if known.
    halves: [Option<Vec<u32>>; 2],
    /// When the inactive half stopped being live.
    flipped_at: Option<Instant>,
}

/// How an attachment is held.
#[derive(Debug)]
struct Attachment {
    /// The link owned by this process's program object, if any.
    link: Option<XdpLinkId>,
    /// Pinned link path (hot restart keeps the program attached).
    pin: Option<PathBuf>,
}

/// The loaded forwarder and the userspace view of its maps.
pub struct Forwarder {
    ebpf: Ebpf,
    options: LoadOptions,
    vips: HashMap<Vip, VipState>,
    free_vip_indices: BTreeSet<u32>,
    backends: BackendRegistry,
    attachments: HashMap<String, Attachment>,
    adopted: bool,
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
        let ring = u64::from(cap.vips) * 2 * u64::from(cap.table_size);
        let ring = u32::try_from(ring)
            .map_err(|_| Error::Invalid(format!("RING of {ring} slots is too large")))?;

        let pin_paths: Vec<(&'static str, PathBuf)> = match &options.pin_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
                PINNED_MAPS.iter().map(|n| (*n, dir.join(n))).collect()
            }
            None => Vec::new(),
        };
        let adopted = pin_paths.iter().any(|(_, p)| p.exists());

        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(map_name::VIPS, cap.vips)
            .map_max_entries(map_name::VIP_ADDRS, cap.vips)
            .map_max_entries(map_name::VIP_STATS, cap.vips)
            .map_max_entries(map_name::RING, ring)
            .map_max_entries(map_name::BACKENDS, cap.backends)
            .map_max_entries(map_name::BACKEND_STATS, cap.backends)
            .map_max_entries(map_name::NEXT_HOPS, cap.backends)
            .map_max_entries(map_name::FLOWS, cap.flows);
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT)?;
        for name in [PROGRAM_NAME, PASS_PROGRAM_NAME] {
            xdp_program(&mut ebpf, name)?.load()?;
        }
        let mut fwd = Self {
            ebpf,
            free_vip_indices: (0..cap.vips).collect(),
            backends: BackendRegistry::new(cap.backends),
            vips: HashMap::new(),
            attachments: HashMap::new(),
            options,
            adopted,
        };
        if adopted {
            fwd.recover()?;
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

    // ----- attach / detach -------------------------------------------------

    /// Attaches the forwarder to `interface` and allows redirects to it.
    ///
    /// With a pin directory the link is pinned there; if a previous process
    /// left one for this interface, the new program replaces the old one
    /// atomically in that link (no packet sees no program).
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<()> {
        let ifindex = if_index(interface)?;
        let pin = self.options.pin_dir.as_ref().map(|d| d.join(format!("link_{interface}")));
        let prog = xdp_program(&mut self.ebpf, PROGRAM_NAME)?;
        let attachment = match pin {
            Some(path) if path.exists() => {
                let fd_link: FdLink = PinnedLink::from_pin(&path)?.into();
                let link = XdpLink::try_from(fd_link)?;
                let id = prog.attach_to_link(link)?;
                Attachment { link: Some(id), pin: Some(path) }
            }
            Some(path) => {
                let id = prog.attach_to_if_index(ifindex, mode.xdp_mode())?;
                let link = prog.take_link(id)?;
                let fd_link = FdLink::try_from(link)?;
                // Dropping the returned handle closes our fd; the pin keeps
                // the program attached.
                fd_link.pin(&path)?;
                Attachment { link: None, pin: Some(path) }
            }
            None => {
                let id = prog.attach_to_if_index(ifindex, mode.xdp_mode())?;
                Attachment { link: Some(id), pin: None }
            }
        };
        self.attachments.insert(interface.to_string(), attachment);
        self.add_tx_port(interface)
    }

    /// Detaches from `interface` (and removes its pinned link).
    pub fn detach(&mut self, interface: &str) -> Result<()> {
        let pinned = self.options.pin_dir.as_ref().map(|d| d.join(format!("link_{interface}")));
        let (link, pin) = match self.attachments.remove(interface) {
            Some(a) => (a.link, a.pin),
            None => (None, None),
        };
        let prog = xdp_program(&mut self.ebpf, PROGRAM_NAME)?;
        if let Some(id) = link {
            prog.detach(id)?;
        }
        // A link pinned by an earlier process is detached too.
        if let Some(path) = pin.or(pinned) {
            if path.exists() {
                // Unpinning drops the last reference: the program detaches.
                let link = PinnedLink::from_pin(&path)?;
                link.unpin().map_err(|e| Error::Io(format!("unpinning {}", path.display()), e))?;
            }
        }
        Ok(())
    }

    /// Lets the program redirect (XDP_REDIRECT) to `interface`.
    pub fn add_tx_port(&mut self, interface: &str) -> Result<()> {
        let ifindex = if_index(interface)?;
        let mut ports = DevMapHash::try_from(self.map_mut(map_name::TX_PORTS)?)?;
        ports.insert(ifindex, ifindex, None, 0)?;
        Ok(())
    }

    /// Removes every pinned map and link of `pin_dir` (a full stop, as
    /// opposed to a restart). Programs attached through those links detach.
    pub fn remove_pins(pin_dir: &Path) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(pin_dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            std::fs::remove_file(&path)
                .map_err(|e| Error::Io(format!("removing {}", path.display()), e))?;
        }
        let _ = std::fs::remove_dir(pin_dir);
        Ok(())
    }

    // ----- settings and VIPs -----------------------------------------------

    /// Writes the data-plane settings.
    pub fn set_settings(&mut self, settings: &ForwarderSettings) -> Result<()> {
        let value = settings.to_map(self.options.capacity.table_size)?;
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
    pub fn set_vip(&mut self, vip: Vip, options: VipOptions) -> Result<()> {
        let flags = options.flags();
        let encap = options.encap.code();
        let meta = if let Some(state) = self.vips.get(&vip) {
            VipMeta { flags, encap, ..state.meta }
        } else {
            let index =
                self.free_vip_indices.first().copied().ok_or(Error::Capacity("VIPs"))?;
            self.zero_traffic(map_name::VIP_STATS, index)?;
            VipMeta { flags, index, table_size: 0, active_half: 0, encap, _pad: [0; 2] }
        };
        self.write_vip(&vip, meta)?;
        if let Some(state) = self.vips.get_mut(&vip) {
            state.meta = meta;
            return Ok(());
        }
        self.free_vip_indices.remove(&meta.index);
        let state = VipState { meta, backends: Vec::new(), halves: [None, None], flipped_at: None };
        self.vips.insert(vip, state);
        self.sync_addr_refs(vip.addr)
    }

    /// Removes a VIP and releases its backends; absent VIPs are fine.
    pub fn remove_vip(&mut self, vip: &Vip) -> Result<()> {
        let Some(state) = self.vips.remove(vip) else {
            return Ok(());
        };
        let mut vips: BpfHashMap<_, VipKey, VipMeta> =
            BpfHashMap::try_from(self.map_mut(map_name::VIPS)?)?;
        match vips.remove(&vip.key()) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.sync_addr_refs(vip.addr)?;
        self.release_backends(&state.backends)?;
        self.free_vip_indices.insert(state.meta.index);
        Ok(())
    }

    /// The VIPs configured, with their options.
    pub fn vips(&self) -> Vec<(Vip, VipOptions)> {
        let mut v: Vec<_> = self
            .vips
            .iter()
            .map(|(vip, s)| (*vip, VipOptions::from_meta(s.meta.flags, s.meta.encap)))
            .collect();
        v.sort_by_key(|(vip, _)| *vip);
        v
    }

    /// Installs a complete Maglev table for `vip`, atomically.
    ///
    /// `backends[i]` is the address of backend `i`; `slots[s]` is the index
    /// (into `backends`) owning slot `s`, or [`NO_BACKEND`]. `slots` may be
    /// empty (no usable backend: the VIP's packets drop). The table is
    /// written into the VIP's inactive RING half (only slots that differ
    /// from what that half holds), then one map update makes it live.
    /// Returns the number of slots written.
    pub fn set_table(&mut self, vip: &Vip, backends: &[IpAddr], slots: &[u32]) -> Result<usize> {
        let max = self.options.capacity.table_size as usize;
        if slots.len() > max {
            return Err(Error::Invalid(format!(
                "table of {} slots exceeds the capacity of {max}",
                slots.len()
            )));
        }
        if let Some(bad) = slots.iter().find(|&&s| s != NO_BACKEND && s as usize >= backends.len())
        {
            return Err(Error::Invalid(format!(
                "slot refers to backend {bad} of {}",
                backends.len()
            )));
        }
        let unique: BTreeSet<&IpAddr> = backends.iter().collect();
        if unique.len() != backends.len() {
            return Err(Error::Invalid("duplicate backend address".into()));
        }
        let (meta, old_backends, shadow, flipped_at) = {
            let state = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?;
            let inactive = (1 - (state.meta.active_half & 1)) as usize;
            (state.meta, state.backends.clone(), state.halves[inactive].clone(), state.flipped_at)
        };

        let ids = self.acquire_backends(backends)?;
        let table: Vec<u32> = slots
            .iter()
            .map(|&s| if s == NO_BACKEND { NO_BACKEND } else { ids[s as usize] })
            .collect();

        let half = 1 - (meta.active_half & 1);
        if let Some(t) = flipped_at {
            if let Some(wait) = HALF_REUSE_GRACE.checked_sub(t.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let stride = self.options.capacity.table_size;
        let base = (meta.index * 2 + u32::from(half)) * stride;
        let write_result = (|| -> Result<usize> {
            let mut ring: Array<_, u32> = Array::try_from(self.map_mut(map_name::RING)?)?;
            let mut written = 0;
            for (i, &id) in table.iter().enumerate() {
                let known = shadow.as_ref().and_then(|s| s.get(i)).copied();
                if known != Some(id) {
                    ring.set(base + i as u32, id, 0)?;
                    written += 1;
                }
            }
            Ok(written)
        })();
        let written = match write_result {
            Ok(n) => n,
            Err(e) => {
            // Nothing went live; give back what was taken.
            self.release_backends(backends)?;
            if let Some(s) = self.vips.get_mut(vip) {
                s.halves[half as usize] = None;
            }
            return Err(e);
            }
        };
        let new_meta = VipMeta { table_size: table.len() as u32, active_half: half, ..meta };
        self.write_vip(vip, new_meta)?;

        if let Some(state) = self.vips.get_mut(vip) {
            state.meta = new_meta;
            state.backends = backends.to_vec();
            state.halves[half as usize] = Some(table);
            state.flipped_at = Some(Instant::now());
        }
        self.release_backends(&old_backends)?;
        Ok(written)
    }

    /// The backend `vip`'s live table gives a flow, as the program computes
    /// it for a new flow (`lbctl lookup`). Established flows may differ:
    /// they keep their connection-table entry.
    pub fn backend_for(&self, vip: &Vip, src: IpAddr, sport: u16) -> Result<Option<IpAddr>> {
        let state = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?;
        let settings = self.settings()?;
        let key = flow_key(src, vip.addr, sport, vip.port, vip.proto.number());
        let hash = flow_hash(&key, settings.hash_seed, state.meta.flags);
        let active = state.meta.active_half as usize & 1;
        let Some(table) = &state.halves[active] else {
            return Ok(None);
        };
        let slot = maglev_slot(hash, table.len() as u32) as usize;
        let Some(&id) = table.get(slot) else {
            return Ok(None);
        };
        Ok(self.backends.iter().find(|(_, i)| *i == id).map(|(a, _)| a))
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
            s.vips.insert(*vip, sum_traffic(&vip_stats.get(&state.meta.index, 0)?));
        }
        let backend_stats: PerCpuArray<_, Traffic> =
            PerCpuArray::try_from(self.map(map_name::BACKEND_STATS)?)?;
        for (addr, id) in self.backends.iter() {
            s.backends.insert(addr, sum_traffic(&backend_stats.get(&id, 0)?));
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
        let prog = self.ebpf.program(PROGRAM_NAME).ok_or(Error::Missing("XDP program"))?;
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

    fn write_vip(&mut self, vip: &Vip, meta: VipMeta) -> Result<()> {
        let mut vips: BpfHashMap<_, VipKey, VipMeta> =
            BpfHashMap::try_from(self.map_mut(map_name::VIPS)?)?;
        vips.insert(vip.key(), meta, 0)?;
        Ok(())
    }

    /// Writes the number of VIPs on `addr` into VIP_ADDRS (removing the
    /// entry at zero).
    fn sync_addr_refs(&mut self, addr: IpAddr) -> Result<()> {
        let count = self.vips.keys().filter(|v| v.addr == addr).count() as u32;
        let (words, family) = addr_words(addr);
        let key = AddrKey { addr: words, family, _pad: [0; 3] };
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

    fn acquire_backends(&mut self, addrs: &[IpAddr]) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(addrs.len());
        for (n, addr) in addrs.iter().enumerate() {
            let acquired = match self.backends.acquire(*addr) {
                Ok(a) => a,
                Err(e) => {
                    self.release_backends(&addrs[..n])?;
                    return Err(e);
                }
            };
            if acquired.fresh {
                let (words, family) = addr_words(*addr);
                let entry =
                    Backend { addr: words, generation: acquired.generation, family, _pad: [0; 3] };
                let mut map: Array<_, Backend> =
                    Array::try_from(self.map_mut(map_name::BACKENDS)?)?;
                map.set(acquired.id, entry, 0)?;
                self.zero_traffic(map_name::BACKEND_STATS, acquired.id)?;
            }
            ids.push(acquired.id);
        }
        Ok(ids)
    }

    fn release_backends(&mut self, addrs: &[IpAddr]) -> Result<()> {
        for addr in addrs {
            if let Some(id) = self.backends.release(addr) {
                self.clear_backend(id)?;
            }
        }
        Ok(())
    }

    /// Marks a backend id unused (keeping its generation).
    fn clear_backend(&mut self, id: u32) -> Result<()> {
        let mut map: Array<_, Backend> = Array::try_from(self.map_mut(map_name::BACKENDS)?)?;
        let old = map.get(&id, 0)?;
        map.set(id, Backend { addr: [0; 4], family: 0, ..old }, 0)?;
        Ok(())
    }

    fn zero_traffic(&mut self, name: &'static str, index: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(p, e)| Error::Io(p.to_string(), e))?;
        let zeros = PerCpuValues::try_from(vec![Traffic::default(); cpus])
            .map_err(|e| Error::Io("per-CPU values".into(), e))?;
        let mut map: PerCpuArray<_, Traffic> = PerCpuArray::try_from(self.map_mut(name)?)?;
        map.set(index, zeros, 0)?;
        Ok(())
    }

    /// Rebuilds the userspace view from adopted maps (hot restart).
    fn recover(&mut self) -> Result<()> {
        let settings = self.settings()?;
        if settings.ring_stride != self.options.capacity.table_size {
            return Err(Error::Invalid(format!(
                "pinned maps use a table capacity of {}, this process {}",
                settings.ring_stride, self.options.capacity.table_size
            )));
        }
        let backends: Vec<Backend> = {
            let map: Array<_, Backend> = Array::try_from(self.map(map_name::BACKENDS)?)?;
            map.iter().collect::<std::result::Result<_, _>>()?
        };
        for (id, b) in backends.iter().enumerate() {
            if b.family == 0 {
                self.backends.restore_generation(id as u32, b.generation);
            } else {
                self.backends.restore(words_addr(b.addr, b.family), id as u32, b.generation);
            }
        }
        let entries: Vec<(VipKey, VipMeta)> = {
            let map: BpfHashMap<_, VipKey, VipMeta> =
                BpfHashMap::try_from(self.map(map_name::VIPS)?)?;
            map.iter().collect::<std::result::Result<_, _>>()?
        };
        let by_id: HashMap<u32, IpAddr> = self.backends.iter().map(|(a, i)| (i, a)).collect();
        for (key, meta) in entries {
            let Some(vip) = Vip::from_key(&key) else { continue };
            let stride = settings.ring_stride;
            let base = (meta.index * 2 + u32::from(meta.active_half & 1)) * stride;
            let table: Vec<u32> = {
                let ring: Array<_, u32> = Array::try_from(self.map(map_name::RING)?)?;
                (0..meta.table_size).map(|i| ring.get(&(base + i), 0)).collect::<std::result::Result<_, _>>()?
            };
            let mut used: Vec<IpAddr> = Vec::new();
            for id in table.iter().collect::<BTreeSet<_>>() {
                if let Some(addr) = by_id.get(id) {
                    used.push(*addr);
                    self.backends.add_ref(addr);
                }
            }
            let mut halves = [None, None];
            halves[meta.active_half as usize & 1] = Some(table);
            self.free_vip_indices.remove(&meta.index);
            self.vips.insert(
                vip,
                VipState { meta, backends: used, halves, flipped_at: Some(Instant::now()) },
            );
        }
        for (_, id) in self.backends.drain_unreferenced() {
            self.clear_backend(id)?;
        }
        Ok(())
    }
}

/// A loaded XDP_PASS program with minimal maps, for the peer end of a veth
/// the forwarder transmits on (driver-mode XDP_TX/REDIRECT frames are only
/// delivered to a veth whose peer has an XDP program).
pub struct PassProgram {
    ebpf: Ebpf,
}

impl PassProgram {
    /// Loads the pass program (the object's maps are created at size 1).
    pub fn load() -> Result<Self> {
        let mut loader = EbpfLoader::new();
        for name in [
            map_name::VIPS,
            map_name::VIP_ADDRS,
            map_name::VIP_STATS,
            map_name::RING,
            map_name::BACKENDS,
            map_name::BACKEND_STATS,
            map_name::FLOWS,
            map_name::NEXT_HOPS,
        ] {
            loader.map_max_entries(name, 1);
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT)?;
        xdp_program(&mut ebpf, PASS_PROGRAM_NAME)?.load()?;
        Ok(Self { ebpf })
    }

    /// Attaches to `interface` (of the calling thread's namespace) until dropped.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<()> {
        let ifindex = if_index(interface)?;
        xdp_program(&mut self.ebpf, PASS_PROGRAM_NAME)?
            .attach_to_if_index(ifindex, mode.xdp_mode())?;
        Ok(())
    }
}

/// The flow key of a tuple (the connection-table key and hash input).
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

fn if_index(interface: &str) -> Result<u32> {
    let name =
        CString::new(interface).map_err(|_| Error::UnknownInterface(interface.to_string()))?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(Error::UnknownInterface(interface.to_string()));
    }
    Ok(index)
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    let prog = ebpf.program_mut(name).ok_or(Error::Missing("XDP program"))?;
    Ok(prog.try_into()?)
}
