//! Cache admission under flood: this CPU's new-flow rate window (policy
//! and constants in `xdp_fwd_common::flood`). Touched by new flows only,
//! never by established ones; a per-CPU element, so no atomics.
use xdp_fwd_common::{stats::stat, Settings};

use crate::maps::{count, FLOOD};

/// Counts one new flow on this CPU and tells whether the CPU is in flood
/// mode. A window that has ended is judged first: flood mode ends with a
/// whole window at or below the threshold (also one that passed without any
/// new flow: the window judged ended two or more windows ago); it begins as
/// soon as the current window passes the threshold.
#[inline(always)]
pub fn new_flow(settings: &Settings, now_jiffies: u32) -> bool {
    let Some(w) = FLOOD.get_ptr_mut(0) else {
        return false;
    };
    let window = settings.flood_window_jiffies;
    // SAFETY: this CPU's element; nothing else runs on this CPU meanwhile.
    unsafe {
        let elapsed = now_jiffies.wrapping_sub((*w).start);
        if elapsed >= window {
            let quiet = (*w).new_flows <= settings.flood_window_flows
                || elapsed >= window.saturating_mul(2);
            if (*w).flooded != 0 && quiet {
                (*w).flooded = 0;
                count(stat::FLOOD_LEFT);
            }
            (*w).start = now_jiffies;
            (*w).new_flows = 0;
        }
        (*w).new_flows = (*w).new_flows.saturating_add(1);
        if (*w).flooded == 0 && (*w).new_flows > settings.flood_window_flows {
            (*w).flooded = 1;
            count(stat::FLOOD_ENTERED);
        }
        (*w).flooded != 0
    }
}
