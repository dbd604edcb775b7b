//! Steps 2-3: the set-associative connection cache, one slice of sets per
//! CPU (layout and policy in `xdp_fwd_common::conn`). Lookup and insert are
//! plain loads and stores into this CPU's slice of CONN_CACHE: no map helper.
use aya_ebpf::helpers::generated::bpf_get_smp_processor_id;
use xdp_fwd_common::{
    conn_index, flood::conn_state, proto, ConnEntry, ConnSet, FlowKey, PrevRef, Settings, CONN_WAYS,
};

use crate::maps::{CONN_CACHE, CONN_PREV};

/// This CPU's set for `flow`; `None` only if the settings' mask does not
/// fit the map (then nothing is cached).
#[inline(always)]
pub fn set_of(flow: &FlowKey, settings: &Settings) -> Option<*mut ConnSet> {
    CONN_CACHE.get_ptr_mut(set_index(flow, settings))
}

/// Index of this CPU's set for `flow` (in CONN_CACHE and CONN_PREV).
#[inline(always)]
fn set_index(flow: &FlowKey, settings: &Settings) -> u32 {
    // SAFETY: helper without arguments; the verifier inlines it to a
    // per-CPU load.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let mask = settings.conn_set_mask;
    let set = conn_index(flow, settings.hash_seed) & mask;
    cpu.wrapping_mul(mask.wrapping_add(1)).wrapping_add(set)
}

/// The CONN_PREV slot of `flow`'s way in `set` (its set from [`set_of`]):
/// where a second-hop flow's previous owner is kept. Recomputes the index
/// and probes the set again rather than widening [`find`]'s result: only
/// flows flagged `has_prev` pay it, the fast path of the others is as it was.
#[inline(always)]
pub fn prev_ref(flow: &FlowKey, settings: &Settings, set: *mut ConnSet) -> Option<*mut PrevRef> {
    let mut found = CONN_WAYS;
    for way in 0..CONN_WAYS {
        // SAFETY: `set` is a valid map value; `way` is in bounds.
        if same_flow(unsafe { &(*set).ways[way].key }, flow) {
            found = way;
            break;
        }
    }
    if found >= CONN_WAYS {
        return None;
    }
    let prev = CONN_PREV.get_ptr_mut(set_index(flow, settings))?;
    // SAFETY: a valid map value; `found` is in bounds.
    Some(unsafe { core::ptr::addr_of_mut!((*prev).ways[found]) })
}

/// The way of `set` holding `flow`, if any (empty ways never match: a
/// real key has a non-zero protocol).
#[inline(always)]
pub fn find(set: *mut ConnSet, flow: &FlowKey) -> Option<*mut ConnEntry> {
    for way in 0..CONN_WAYS {
        // SAFETY: `set` is a valid map value; `way` is in bounds.
        let entry = unsafe { core::ptr::addr_of_mut!((*set).ways[way]) };
        if same_flow(unsafe { &(*entry).key }, flow) {
            return Some(entry);
        }
    }
    None
}

/// The way a new flow takes: an empty one, else the one idle longest
/// (jiffies since its last packet; ties go to the lowest way). In flood
/// mode (`flooded`) established ways are not candidates unless they are
/// expired UDP flows: `None` when every way is a live established flow
/// (then the new flow is not cached).
///
/// Written as one score per way (0 = protected, else idle time + 1) rather
/// than a branch on `flooded`: that kept the loop from being duplicated,
/// which overflowed the program's 512-byte stack.
#[inline(always)]
pub fn victim(
    set: *mut ConnSet,
    now_jiffies: u32,
    flooded: bool,
    udp_timeout_jiffies: u64,
) -> Option<*mut ConnEntry> {
    let protect = flooded as u32;
    let mut chosen = 0;
    let mut best = 0u32;
    for way in 0..CONN_WAYS {
        // SAFETY: as in `find`.
        let entry = unsafe { &(*set).ways[way] };
        let age = if entry.generation == 0 {
            u32::MAX
        } else {
            now_jiffies.wrapping_sub(entry.touched)
        };
        let score = if protect & kept_in_flood(entry, age, udp_timeout_jiffies) != 0 {
            0
        } else {
            age.saturating_add(1)
        };
        if way == 0 || score > best {
            chosen = way;
            best = score;
        }
    }
    if best == 0 {
        return None;
    }
    // SAFETY: as in `find`.
    Some(unsafe { core::ptr::addr_of_mut!((*set).ways[chosen]) })
}

/// 1 if a flood-mode new flow may not take `entry`'s way: a live
/// established connection (not empty, seen a packet after the one that
/// cached it, not a UDP flow idle past its timeout). Its way is never
/// taken, so a flood cannot move it to another backend on a table change;
/// a way that never saw a second packet (a flood SYN's, typically) can go.
#[inline(always)]
fn kept_in_flood(entry: &ConnEntry, age: u32, udp_timeout_jiffies: u64) -> u32 {
    let live = entry.generation != 0;
    let established = entry.state == conn_state::ESTABLISHED;
    let expired = entry.key.proto == proto::UDP && u64::from(age) > udp_timeout_jiffies;
    (live & established & !expired) as u32
}

/// Full-key comparison in five 64-bit words (`FlowKey` is 8-aligned and 40
/// bytes). The first word (start of the source address) alone tells most
/// flows of a set apart, so it is compared first; the rest without branches.
#[inline(always)]
fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    let a = a as *const FlowKey as *const u64;
    let b = b as *const FlowKey as *const u64;
    // SAFETY: both point to 40 readable, 8-aligned bytes.
    if unsafe { *a != *b } {
        return false;
    }
    let mut diff = 0u64;
    for i in 1..5 {
        // SAFETY: as above.
        diff |= unsafe { *a.add(i) ^ *b.add(i) };
    }
    diff == 0
}
