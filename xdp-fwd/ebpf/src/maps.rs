//! The program's maps. Capacities here are defaults; the loader resizes the
//! big ones at load time (node-local settings).
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, DevMapHash, HashMap, PerCpuArray},
};
use xdp_fwd_common::{
    capacity, stats::stat, AddrKey, BackendEntry, ConnPrevSet, ConnSet, FloodWindow, NextHop,
    Settings, Traffic, VipEpoch, VipMapKey, VipMeta, VIP_FILTER_BITS,
};

/// Cluster and node settings, one element.
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// VIPs by (address, port, protocol).
#[map]
pub static VIPS: HashMap<VipMapKey, VipMeta> = HashMap::with_max_entries(capacity::VIPS, 0);

/// Per VIP index: epoch and encapsulation, for connection-cache hits.
#[map]
pub static VIP_EPOCHS: Array<VipEpoch> = Array::with_max_entries(capacity::VIPS, 0);

/// Bitmap of addresses that may carry a VIP (see `vip_filter_bit`), tested
/// before any VIP hash lookup.
#[map]
pub static VIP_FILTER: Array<u64> = Array::with_max_entries(VIP_FILTER_BITS / 64, 0);

/// Addresses carrying at least one VIP (ICMP echo and fragment policy).
#[map]
pub static VIP_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(capacity::VIPS, 0);

/// Maglev slots (backend ids), two halves per VIP; see `VipMeta`.
/// Mmapable so the loader writes a table half with plain stores rather than
/// a syscall per slot; lookups are still inlined by the verifier.
#[map]
pub static RING: Array<u32> =
    Array::with_max_entries(capacity::VIPS * 2 * capacity::TABLE, BPF_F_MMAPABLE);

/// Backends by id.
#[map]
pub static BACKENDS: Array<BackendEntry> = Array::with_max_entries(capacity::BACKENDS, 0);

/// Set-associative connection cache (see `conn`): one slice of sets per
/// CPU, CPU-major. A plain array indexed by CPU rather than a per-CPU
/// array: the set's address is computed, not loaded from the per-CPU
/// array's pointer table, which took a dependent (and in a cold run, a
/// missing) load off every probe. Mmapable only for the layout: the kernel
/// then starts the values on a page boundary (else 56 bytes into a cache
/// line), so each 64-byte way is exactly one cache line. The loader sizes
/// it; this default is one set.
#[map]
pub static CONN_CACHE: Array<ConnSet> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Previous owners of second-hop flows, same indices as CONN_CACHE (see
/// `ConnPrevSet`); read only for ways flagged `has_prev`. The loader sizes it.
#[map]
pub static CONN_PREV: Array<ConnPrevSet> = Array::with_max_entries(1, 0);

/// This CPU's new-flow rate window (cache admission under flood).
#[map]
pub static FLOOD: PerCpuArray<FloodWindow> = PerCpuArray::with_max_entries(1, 0);

/// Global counters.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Traffic per VIP index.
#[map]
pub static VIP_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(capacity::VIPS, 0);

/// Traffic per backend id.
#[map]
pub static BACKEND_STATS: PerCpuArray<Traffic> =
    PerCpuArray::with_max_entries(capacity::BACKENDS, 0);

/// Interfaces the program may redirect to, keyed by ifindex.
#[map]
pub static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(capacity::TX_PORTS, 0);

/// Per-CPU route lookup cache per backend id.
#[map]
pub static NEXT_HOPS: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(capacity::BACKENDS, 0);

/// Adds one to a global counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot; nothing else runs on this CPU meanwhile.
        unsafe { *c += 1 };
    }
}

/// Adds a packet of `bytes` to a traffic counter.
#[inline(always)]
pub fn count_traffic(map: &PerCpuArray<Traffic>, index: u32, bytes: u64) {
    if let Some(t) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, as above.
        unsafe {
            (*t).packets += 1;
            (*t).bytes += bytes;
        }
    }
}
