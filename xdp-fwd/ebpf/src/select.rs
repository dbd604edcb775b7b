//! Steps 2-3: VIP lookup; backend from the connection cache, else from the
//! flow hash and the Maglev table.
use aya_ebpf::helpers::generated::bpf_jiffies64;
use xdp_fwd_common::{
    flood::conn_state, flow_hash, maglev_slot, proto, stats::stat, vip_filter_bit, AddrKey,
    BackendEntry, ConnEntry, ConnSet, FlowKey, PrevRef, Settings, VipMapKey, VipMeta, NO_BACKEND,
};

use crate::{
    conn, flood,
    maps::{count, BACKENDS, RING, VIPS, VIP_ADDRS, VIP_EPOCHS, VIP_FILTER},
};

/// Whether `addr` may carry a VIP: its bit in VIP_FILTER (an array read
/// the verifier inlines). `false` is certain; `true` needs the exact lookup.
#[inline(always)]
fn maybe_vip_address(addr: &[u32; 4], fam: u8) -> bool {
    let bit = vip_filter_bit(addr, fam);
    match VIP_FILTER.get(bit / 64) {
        Some(word) => (*word >> (bit % 64)) & 1 != 0,
        None => true,
    }
}

/// The VIP of (`addr`, `port`, `protocol`): exact port first, then port 0.
#[inline(always)]
pub fn vip_lookup(addr: [u32; 4], port: u16, protocol: u8, fam: u8) -> Option<VipMeta> {
    if !maybe_vip_address(&addr, fam) {
        return None;
    }
    let key = VipMapKey {
        addr,
        port,
        proto: protocol,
        family: fam,
    };
    // SAFETY: the value is copied out at once.
    if let Some(meta) = unsafe { VIPS.get(key) } {
        return Some(*meta);
    }
    let any_port = VipMapKey { port: 0, ..key };
    unsafe { VIPS.get(any_port) }.copied()
}

/// Whether `addr` carries any VIP.
#[inline(always)]
pub fn is_vip_address(addr: [u32; 4], fam: u8) -> bool {
    if !maybe_vip_address(&addr, fam) {
        return false;
    }
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
    pub backend: BackendEntry,
    /// Flow hash (encapsulation entropy).
    pub hash: u32,
}

/// The VIP a forwarded packet is counted and encapsulated for.
#[derive(Clone, Copy)]
pub struct VipRef {
    /// [`VipMeta::index`].
    pub index: u32,
    /// [`VipMeta::encap`].
    pub encap: u8,
}

/// The clock an entry is aged with, read once per packet.
#[derive(Clone, Copy)]
struct AgeClock {
    /// Low 32 bits of jiffies: LRU order within a set and UDP expiry (a
    /// tick is plenty for timeouts of seconds, and reading jiffies is an
    /// inlined load where a clock helper would be a call).
    jiffies: u32,
    /// UDP: entries expire.
    is_udp: bool,
}

impl AgeClock {
    #[inline(always)]
    fn now(is_udp: bool) -> Self {
        AgeClock {
            // SAFETY: helper without arguments; the verifier inlines it to a load.
            jiffies: unsafe { bpf_jiffies64() } as u32,
            is_udp,
        }
    }
}

/// Established-flow shortcut, tried before the VIP lookup: the cached
/// backend and VIP of `flow`, if its entry is usable and its VIP has not
/// changed since (same [`VipEpoch`](xdp_fwd_common::VipEpoch)), and the
/// previous owner the entry carries, if any (second hop). `None` sends the
/// packet the long way (VIP lookup, then [`select_backend`]), which also
/// counts the reason.
#[inline(always)]
pub fn cached_flow(flow: &FlowKey, settings: &Settings) -> Option<(Chosen, VipRef, PrevOwner)> {
    let set = conn::set_of(flow, settings)?;
    let entry = conn::find(set, flow)?;
    // SAFETY: this CPU's slice of the map; only this CPU uses it.
    let (vip_index, vip_epoch) = unsafe { (u32::from((*entry).vip_index), (*entry).vip_epoch) };
    let vip = VIP_EPOCHS.get(vip_index)?;
    if vip.epoch != vip_epoch || vip_epoch == 0 {
        return None;
    }
    let clock = AgeClock::now(flow.proto == proto::UDP);
    let chosen = cached_backend(entry)?;
    if expired(entry, settings, clock) {
        return None;
    }
    touch(entry, clock);
    count(stat::LRU_HIT);
    // Issue 14: the one extra test of the fast path, a byte of the line
    // already read; only second-hop flows go further.
    // SAFETY: as above.
    let prev = if unsafe { (*entry).has_prev } != 0 {
        carried_owner(flow, settings, set)
    } else {
        None
    };
    Some((
        chosen,
        VipRef {
            index: vip_index,
            encap: vip.encap,
        },
        prev,
    ))
}

/// The previous owner a flagged entry of `flow` (in `set`) carries, if its
/// backend id still has the generation it had when the flow was cached (an
/// id given to another backend since is never used: the packet goes plain
/// to the current owner).
#[inline(always)]
fn carried_owner(flow: &FlowKey, settings: &Settings, set: *mut ConnSet) -> PrevOwner {
    let slot = conn::prev_ref(flow, settings, set)?;
    // SAFETY: this CPU's slice of the map; only this CPU uses it.
    let PrevRef {
        backend,
        generation,
    } = unsafe { *slot };
    let prev = live_backend(backend)?;
    if prev.generation != generation {
        return None;
    }
    Some(prev.addr)
}

/// Address words of the previous owner a second-hop candidate carries
/// (see [`previous_owner`]); `None`: a plain packet.
pub type PrevOwner = Option<[u32; 4]>;

/// Picks the backend of a packet to `vip`: an established flow keeps its
/// connection-cache entry; a new flow (TCP SYN, or no usable entry) goes by
/// the VIP's current Maglev table and is remembered. With `second_hop` (a
/// non-SYN TCP or UDP packet), a miss whose slot had another owner in the
/// VIP's previous table carries that owner and is cached with it (current
/// owner + previous owner's id and generation): every later hit carries it
/// too, whatever the tables do afterwards, until the entry is evicted or a
/// SYN of the tuple replaces it. A hit carries its entry's previous owner
/// only with `second_hop` (ICMP errors never do). `Err` carries the drop
/// counter.
#[inline(always)]
pub fn select_backend(
    flow: &FlowKey,
    vip: &VipMeta,
    settings: &Settings,
    new_flow: bool,
    second_hop: bool,
) -> Result<(Chosen, PrevOwner), u32> {
    let clock = AgeClock::now(flow.proto == proto::UDP);
    let vip_epoch = VIP_EPOCHS.get(vip.index).map_or(0, |e| e.epoch);
    let set = conn::set_of(flow, settings);
    // A SYN looks for its tuple's way only after the Maglev lookup, so the
    // memory latencies of its cold cache set and table slot overlap.
    let way = if new_flow {
        None
    } else {
        set.and_then(|s| conn::find(s, flow))
    };
    if let Some(entry) = way {
        if let Some(chosen) = cached_backend(entry) {
            if !expired(entry, settings, clock) {
                touch(entry, clock);
                // SAFETY: this CPU's slice of the map; only this CPU uses it.
                let has_prev = unsafe {
                    (*entry).vip_index = vip.index as u16;
                    (*entry).vip_epoch = vip_epoch;
                    (*entry).has_prev
                };
                count(stat::LRU_HIT);
                let prev = match set {
                    Some(set) if second_hop && has_prev != 0 => carried_owner(flow, settings, set),
                    _ => None,
                };
                return Ok((chosen, prev));
            }
            count(stat::LRU_UDP_EXPIRED);
        }
    }
    count(stat::LRU_MISS);
    let hash = flow_hash(flow, settings.hash_seed, vip.flags);
    let id = table_lookup(vip, settings, hash).ok_or(stat::DROP_NO_BACKEND)?;
    let backend = live_backend(id).ok_or(stat::DROP_NO_BACKEND)?;
    let prev = if second_hop && !new_flow {
        previous_owner(vip, settings, hash, id, &backend)
    } else {
        None
    };
    if let Some(set) = set {
        let flooded = flood::new_flow(settings, clock.jiffies);
        // The flow's own way if it has one (SYN on a reused tuple, stale or
        // expired entry), else the way admission gives it, if any.
        let way = if new_flow { conn::find(set, flow) } else { way };
        let slot = match way {
            Some(own) => Some(own),
            None => admit(set, clock.jiffies, flooded, settings),
        };
        if let Some(slot) = slot {
            // SAFETY: as above.
            unsafe {
                *slot = ConnEntry {
                    key: *flow,
                    backend: id,
                    generation: backend.generation,
                    hash,
                    touched: clock.jiffies,
                    vip_index: vip.index as u16,
                    state: conn_state::NEW,
                    has_prev: prev.is_some() as u8,
                    vip_epoch,
                }
            };
            // The flow keeps its previous owner from now on (issue 14).
            if let Some((_, prev_ref)) = prev {
                if let Some(p) = conn::prev_ref(flow, settings, set) {
                    // SAFETY: as above.
                    unsafe { *p = prev_ref };
                }
            }
        }
    }
    Ok((Chosen { id, backend, hash }, prev.map(|(addr, _)| addr)))
}

/// The owner of `hash`'s slot in the VIP's previous table (the inactive
/// RING half), if the VIP has one and that owner is a live backend other
/// than `current`, of the same family (the decap program rewrites the
/// outer header in place, so both hops share a family): its address, and
/// its id and generation for the connection cache.
#[inline(always)]
fn previous_owner(
    vip: &VipMeta,
    settings: &Settings,
    hash: u32,
    current: u32,
    current_backend: &BackendEntry,
) -> Option<([u32; 4], PrevRef)> {
    let size = vip.prev_table_size;
    let stride = settings.ring_stride;
    if size == 0 || size > stride {
        return None;
    }
    let row = vip.index * 2 + (1 - (vip.active_half & 1)) as u32;
    let id = *RING.get(row * stride + maglev_slot(hash, size))?;
    if id == NO_BACKEND || id == current {
        return None;
    }
    let prev = live_backend(id)?;
    if prev.family != current_backend.family {
        return None;
    }
    Some((
        prev.addr,
        PrevRef {
            backend: id,
            generation: prev.generation,
        },
    ))
}

/// The backend of a cached entry, if its id was not handed to another
/// backend since (generations start at 1, so an empty way never matches).
#[inline(always)]
fn cached_backend(entry: *mut ConnEntry) -> Option<Chosen> {
    // SAFETY: this CPU's slice of the map; only this CPU uses it.
    let (id, generation, hash) = unsafe { ((*entry).backend, (*entry).generation, (*entry).hash) };
    let backend = live_backend(id)?;
    if backend.generation != generation {
        return None;
    }
    Some(Chosen { id, backend, hash })
}

/// Whether a UDP entry has been idle longer than the UDP timeout.
#[inline(always)]
fn expired(entry: *mut ConnEntry, settings: &Settings, clock: AgeClock) -> bool {
    if !clock.is_udp {
        return false;
    }
    // SAFETY: as above.
    let touched = unsafe { (*entry).touched };
    u64::from(clock.jiffies.wrapping_sub(touched)) > settings.udp_timeout_jiffies
}

/// Marks a used entry: LRU order, for UDP the expiry clock, and that the
/// flow has seen traffic after the packet that cached it (flood-mode
/// admission spares it). Unconditional stores to the line just read.
#[inline(always)]
fn touch(entry: *mut ConnEntry, clock: AgeClock) {
    // SAFETY: this CPU's slice of the map; only this CPU uses it.
    unsafe {
        (*entry).touched = clock.jiffies;
        (*entry).state = conn_state::ESTABLISHED;
    }
}

/// The way a new flow without one of its own takes ([`conn::victim`]),
/// counting what it displaces; `None` (counted) when flood mode leaves no
/// way: the flow is forwarded by the table, uncached.
#[inline(always)]
fn admit(
    set: *mut ConnSet,
    now_jiffies: u32,
    flooded: bool,
    settings: &Settings,
) -> Option<*mut ConnEntry> {
    let Some(v) = conn::victim(set, now_jiffies, flooded, settings.udp_timeout_jiffies) else {
        count(stat::FLOOD_NOT_CACHED);
        return None;
    };
    // SAFETY: this CPU's slice of the map; only this CPU uses it.
    let (generation, state) = unsafe { ((*v).generation, (*v).state) };
    if generation != 0 {
        count(stat::LRU_EVICTED);
        if state == conn_state::ESTABLISHED {
            count(stat::LRU_EVICTED_ESTABLISHED);
        }
    }
    Some(v)
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
fn live_backend(id: u32) -> Option<BackendEntry> {
    let b = *BACKENDS.get(id)?;
    if b.family == 0 {
        return None;
    }
    Some(b)
}
