//! Cache admission under a flood of new flows: the constants, the per-CPU
//! rate window and the conversions userspace makes (policy in FORWARDER.md,
//! "Admission under flood").
//!
//! Each CPU counts the new flows it sees (packets that miss the connection
//! cache and go by the Maglev table) in windows of [`FLOOD_WINDOW_MS`]. A
//! CPU whose count passes [`crate::Settings::flood_window_flows`] is in
//! flood mode until a window ends at or below it; in flood mode a new flow
//! never takes the way of an established entry (one that has seen a packet
//! after the one that cached it).

/// Length of a rate window: short enough that flood mode starts within a
/// tenth of a second, long enough that a window holds many flows at any
/// threshold worth setting (so the count is not noise).
pub const FLOOD_WINDOW_MS: u32 = 100;

/// Windows per second ([`FLOOD_WINDOW_MS`] into a second).
pub const FLOOD_WINDOWS_PER_SEC: u32 = 1000 / FLOOD_WINDOW_MS;

/// The default threshold turns a CPU's whole cache over in this many
/// seconds: below it, a connection with a packet at least this often keeps
/// its entry under plain LRU; above it, flood mode protects it.
pub const DEFAULT_TURNOVER_SECS: u32 = 10;

/// Largest threshold accepted, new flows per second per CPU: far above
/// what one CPU can forward (a few million packets per second), so a larger
/// value is a mistake, not a setting.
pub const MAX_FLOOD_RATE: u32 = 100_000_000;

/// [`crate::Settings::flood_window_flows`] that never triggers flood mode
/// (admission control off).
pub const FLOOD_OFF: u32 = u32::MAX;

/// Values of [`crate::ConnEntry::state`].
pub mod conn_state {
    /// Cached by its first packet; nothing seen since (a flood SYN stays so).
    pub const NEW: u8 = 0;
    /// Has seen a packet after the one that cached it: never evicted by a
    /// new flow in flood mode.
    pub const ESTABLISHED: u8 = 1;
}

/// This CPU's rate window: the value of the per-CPU FLOOD map (one
/// element). Starts zeroed, which reads as an ended window, not in flood.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodWindow {
    /// Low 32 bits of `bpf_jiffies64` when the window began.
    pub start: u32,
    /// New flows counted in the window (saturating).
    pub new_flows: u32,
    /// 1 while in flood mode, else 0.
    pub flooded: u32,
    /// Always zero.
    pub _pad: u32,
}

/// The default threshold, new flows per second per CPU, for a cache of
/// `entries_per_cpu` ways per CPU: the rate that turns the whole cache
/// over in [`DEFAULT_TURNOVER_SECS`] (at least 1).
pub fn default_flood_rate(entries_per_cpu: u64) -> u32 {
    let rate = entries_per_cpu / u64::from(DEFAULT_TURNOVER_SECS);
    rate.clamp(1, u64::from(MAX_FLOOD_RATE)) as u32
}

/// [`crate::Settings::flood_window_flows`] for a threshold of
/// `per_sec` new flows per second per CPU (rounded up, at least 1).
pub fn window_flows(per_sec: u32) -> u32 {
    per_sec.div_ceil(FLOOD_WINDOWS_PER_SEC).max(1)
}

/// [`crate::Settings::flood_window_jiffies`] at a kernel tick rate of `hz`
/// (at least one tick).
pub fn window_jiffies(hz: u32) -> u32 {
    (u64::from(hz) * u64::from(FLOOD_WINDOW_MS) / 1000).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(core::mem::size_of::<FloodWindow>(), 16);
        assert_eq!(default_flood_rate(65536), 6553);
        assert_eq!(default_flood_rate(4), 1);
        assert_eq!(window_flows(6553), 656);
        assert_eq!(window_flows(1), 1);
        assert_eq!(window_jiffies(250), 25);
        assert_eq!(window_jiffies(1000), 100);
        assert_eq!(window_jiffies(5), 1);
    }
}
