//! The kernel's tick rate (CONFIG_HZ), so durations can be given to the
//! program in jiffies: reading `bpf_jiffies64` is an inlined load, while a
//! clock helper is a call on every packet.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

/// Tick rates Linux is built with (x86 offers 100, 250, 300 and 1000).
const KNOWN_HZ: [u32; 4] = [100, 250, 300, 1000];

/// Assumed when the rate cannot be measured: the highest, so timeouts given
/// in jiffies come out longer, never shorter, than asked.
const FALLBACK_HZ: u32 = 1000;

/// How long the jiffies counter is watched.
const SAMPLE: Duration = Duration::from_millis(100);

/// The kernel's HZ, measured once per process from the `jiffies:` line of
/// `/proc/timer_list` over [`SAMPLE`], rounded to the nearest known rate.
pub fn kernel_hz() -> u32 {
    static HZ: OnceLock<u32> = OnceLock::new();
    *HZ.get_or_init(|| measure().unwrap_or(FALLBACK_HZ))
}

/// Whole jiffies in `d` at `hz` ticks per second, rounded up.
pub fn duration_to_jiffies(d: Duration, hz: u32) -> u64 {
    let ticks = d
        .as_nanos()
        .saturating_mul(u128::from(hz))
        .div_ceil(1_000_000_000);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

fn measure() -> Option<u32> {
    let (t0, j0) = sample()?;
    std::thread::sleep(SAMPLE);
    let (t1, j1) = sample()?;
    let rate = j1.checked_sub(j0)? as f64 / (t1 - t0).as_secs_f64();
    nearest_known(rate)
}

fn sample() -> Option<(Instant, u64)> {
    let text = std::fs::read_to_string("/proc/timer_list").ok()?;
    let now = Instant::now();
    Some((now, parse_jiffies(&text)?))
}

/// The value of the first `jiffies: N` line.
fn parse_jiffies(timer_list: &str) -> Option<u64> {
    timer_list
        .lines()
        .find_map(|l| l.strip_prefix("jiffies:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The known rate closest to `rate` (by ratio), if any is within 20%.
fn nearest_known(rate: f64) -> Option<u32> {
    KNOWN_HZ
        .into_iter()
        .map(|hz| (hz, (rate / f64::from(hz)).ln().abs()))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|&(_, distance)| distance < 0.2)
        .map(|(hz, _)| hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_global_jiffies_line() {
        let text = "Timer List Version: v0.10\n  .idle_jiffies   : 12\njiffies: 4295092150\n";
        assert_eq!(parse_jiffies(text), Some(4_295_092_150));
        assert_eq!(parse_jiffies("no such line"), None);
    }

    #[test]
    fn rates_round_to_known_hz() {
        assert_eq!(nearest_known(247.0), Some(250));
        assert_eq!(nearest_known(990.0), Some(1000));
        assert_eq!(nearest_known(103.0), Some(100));
        assert_eq!(nearest_known(5.0), None);
    }

    #[test]
    fn durations_round_up_to_whole_ticks() {
        assert_eq!(duration_to_jiffies(Duration::ZERO, 250), 0);
        assert_eq!(duration_to_jiffies(Duration::from_millis(1), 250), 1);
        assert_eq!(duration_to_jiffies(Duration::from_secs(30), 250), 7500);
        assert_eq!(duration_to_jiffies(Duration::MAX, 1000), u64::MAX);
    }

    #[test]
    fn this_kernel_has_a_known_rate() {
        assert!(KNOWN_HZ.contains(&kernel_hz()));
    }
}
