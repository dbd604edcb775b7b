//! Steps 2-5: VIP lookup, connection table, flow hash and Maglev table.
use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use xdp_fwd_common::{
    flow_hash, maglev_slot, proto, stats::stat, AddrKey, Backend, FlowEntry, FlowKey, Settings,
    VipKey, VipMeta, NO_BACKEND,
};

use crate::maps::{count, BACKENDS, FLOWS, RING, VIPS, VIP_ADDRS};

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

/// Picks the backend: an established flow keeps its connection-table entry;
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
    let now = if is_udp {
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        0
    };
    if !new_flow {
        if let Some(chosen) = lru_lookup(flow, settings, is_udp, now) {
            count(stat::LRU_HIT);
            return Ok(chosen);
        }
    }
    count(stat::LRU_MISS);
    let hash = flow_hash(flow, settings.hash_seed, vip.flags);
    let id = table_lookup(vip, settings, hash).ok_or(stat::DROP_NO_BACKEND)?;
    let backend = live_backend(id).ok_or(stat::DROP_NO_BACKEND)?;
    let entry = FlowEntry {
        backend: id,
        generation: backend.generation,
        hash,
        _pad: 0,
        last_seen_ns: now,
    };
    // A full table evicts its least recently used entry; failure only costs
    // stickiness, never the packet.
    let _ = FLOWS.insert(flow, entry, 0);
    Ok(Chosen { id, backend, hash })
}

#[inline(always)]
fn lru_lookup(flow: &FlowKey, settings: &Settings, is_udp: bool, now: u64) -> Option<Chosen> {
    let entry = FLOWS.get_ptr_mut(flow)?;
    // SAFETY: per-CPU LRU value; only this CPU writes it.
    let e = unsafe { *entry };
    let backend = live_backend(e.backend)?;
    // The id was handed to another backend since (the flow's backend is
    // gone), or this CPU's value is the zeroed one the kernel leaves when
    // another CPU inserted the flow: generations start at 1, so 0 never
    // matches.
    if backend.generation != e.generation {
        return None;
    }
    if is_udp {
        if now.wrapping_sub(e.last_seen_ns) > settings.udp_timeout_ns {
            count(stat::LRU_UDP_EXPIRED);
            return None;
        }
        unsafe { (*entry).last_seen_ns = now };
    }
    Some(Chosen { id: e.backend, backend, hash: e.hash })
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
