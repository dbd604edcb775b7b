//! Steps 2-3: VIP lookup; backend from the connection cache, else from the
//! flow hash and the Maglev table.
use aya_ebpf::helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use xdp_fwd_common::{
    flow_hash, maglev_slot, proto, stats::stat, AddrKey, Backend, ConnEntry, FlowKey, Settings,
    VipKey, VipMeta, NO_BACKEND,
};

use crate::{
    conn,
    maps::{count, BACKENDS, RING, VIPS, VIP_ADDRS},
};

/// The VIP of (`addr`, `port`, `protocol`): exact port first, then port 0.
#[inline(always)]
pub fn vip_lookup(addr: [u32; 4], port: u16, protocol: u8, fam: u8) -> Option<VipMeta> {
    let key = VipKey {
        addr,
        port,
        proto: protocol,
        family: fam,
    };
    // SAFETY: the value is copied out at once.
    if let Some(meta) = unsafe { VIPS.get(key) } {
        return Some(*meta);
    }
    let any_port = VipKey { port: 0, ..key };
    unsafe { VIPS.get(any_port) }.copied()
}

/// Whether `addr` carries any VIP.
#[inline(always)]
pub fn is_vip_address(addr: [u32; 4], fam: u8) -> bool {
    let key = AddrKey {
        addr,
        family: fam,
        _pad: [0; 3],
    };
    // SAFETY: only presence is tested.
    unsafe { VIP_ADDRS.get(key) }.is_some()
}

/// The backend a flow goes to and the flow's hash.
pub struct Chosen {
    /// Backend id (index of BACKENDS and BACKEND_STATS).
    pub id: u32,
    /// The backend.
    pub backend: Backend,
    /// Flow hash (encapsulation entropy).
    pub hash: u32,
}

/// Picks the backend: an established flow keeps its connection-cache entry;
/// a new flow (TCP SYN, or no usable entry) goes by the VIP's current Maglev
/// table and is remembered. `Err` carries the drop counter.
#[inline(always)]
pub fn select_backend(
    flow: &FlowKey,
    vip: &VipMeta,
    settings: &Settings,
    new_flow: bool,
) -> Result<Chosen, u32> {
    let is_udp = flow.proto == proto::UDP;
    // Only UDP entries expire, so only UDP pays for the clock (the coarse
    // one: tick resolution is plenty for timeouts of seconds).
    let now_ns = if is_udp {
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        0
    };
    // SAFETY: no arguments; the verifier inlines it to a load.
    let now_jiffies = unsafe { bpf_jiffies64() } as u32;
    let set = conn::set_of(flow, settings);
    let way = set.and_then(|s| conn::find(s, flow));
    if let (Some(entry), false) = (way, new_flow) {
        if let Some(chosen) = cached_choice(entry, settings, is_udp, now_ns) {
            // SAFETY: this CPU's copy of the map value.
            unsafe {
                (*entry).touched = now_jiffies;
                (*entry).udp_seen_ns = now_ns;
            }
            count(stat::LRU_HIT);
            return Ok(chosen);
        }
    }
    count(stat::LRU_MISS);
    let hash = flow_hash(flow, settings.hash_seed, vip.flags);
    let id = table_lookup(vip, settings, hash).ok_or(stat::DROP_NO_BACKEND)?;
    let backend = live_backend(id).ok_or(stat::DROP_NO_BACKEND)?;
    if let Some(set) = set {
        // The flow's own way if it has one (SYN on a reused tuple, stale or
        // expired entry), else an empty or the least recently used way.
        let slot = way.unwrap_or_else(|| {
            let v = conn::victim(set, now_jiffies);
            // SAFETY: as above.
            if unsafe { (*v).generation } != 0 {
                count(stat::LRU_EVICTED);
            }
            v
        });
        // SAFETY: as above.
        unsafe {
            *slot = ConnEntry {
                key: *flow,
                backend: id,
                generation: backend.generation,
                hash,
                touched: now_jiffies,
                udp_seen_ns: now_ns,
            }
        };
    }
    Ok(Chosen { id, backend, hash })
}

/// The backend of a cached entry, if it may still be used: its backend id
/// was not handed to another backend since (generation), and a UDP entry
/// has not timed out.
#[inline(always)]
fn cached_choice(
    entry: *mut ConnEntry,
    settings: &Settings,
    is_udp: bool,
    now_ns: u64,
) -> Option<Chosen> {
    // SAFETY: this CPU's copy of the map value.
    let (id, generation, hash, seen) = unsafe {
        (
            (*entry).backend,
            (*entry).generation,
            (*entry).hash,
            (*entry).udp_seen_ns,
        )
    };
    let backend = live_backend(id)?;
    if backend.generation != generation {
        return None;
    }
    if is_udp && now_ns.wrapping_sub(seen) > settings.udp_timeout_ns {
        count(stat::LRU_UDP_EXPIRED);
        return None;
    }
    Some(Chosen { id, backend, hash })
}

/// The backend id in the VIP's live Maglev table for `hash`.
#[inline(always)]
fn table_lookup(vip: &VipMeta, settings: &Settings, hash: u32) -> Option<u32> {
    let stride = settings.ring_stride;
    if vip.table_size == 0 || vip.table_size > stride {
        return None;
    }
    let row = vip.index * 2 + (vip.active_half & 1) as u32;
    let slot = row * stride + maglev_slot(hash, vip.table_size);
    let id = *RING.get(slot)?;
    if id == NO_BACKEND {
        return None;
    }
    Some(id)
}

#[inline(always)]
fn live_backend(id: u32) -> Option<Backend> {
    let b = *BACKENDS.get(id)?;
    if b.family == 0 {
        return None;
    }
    Some(b)
}
