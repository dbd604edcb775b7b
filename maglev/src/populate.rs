//! Filling the slots (steps 4 and 5 of the algorithm): [`populate`].
//!
//! This is the hot path of a build. The turn order is produced a window of
//! rounds at a time by a counting sort (no heap), and each turn walks its
//! backend's permutation with one add and one conditional subtract per probe
//! against a bitset of taken slots, so the probes touch `M / 8` bytes rather
//! than the `4 M` bytes of the entries.

use crate::NO_BACKEND;

/// About how many turns one window of rounds holds: small enough that the
/// window's turn list stays in L1 while it is probed.
const WINDOW_TURNS: u64 = 4096;

/// A backend's place in its permutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Walk {
    /// The next slot of its permutation to look at: starts at `offset`.
    pub pos: u32,
    /// `skip`, in `1..m`.
    pub skip: u32,
}

impl Walk {
    /// The walk of a backend with no slots to take.
    pub const IDLE: Walk = Walk { pos: 0, skip: 0 };

    /// The walk from `offset` by `skip` (`offset < m`, `0 < skip < m`).
    pub fn new(m: u32, offset: u32, skip: u32) -> Self {
        debug_assert!(offset < m && 0 < skip && skip < m);
        Walk { pos: offset, skip }
    }
}

/// The rounds of one backend's turns, one after the other: with `Q` the
/// largest slot count and `q` this backend's, turn `k` (1-based) falls in
/// round `floor((k - 1) * Q / q) + 1`. Stepped with Bresenham's integer
/// recurrence (no division per turn): `(k - 1) * Q = (round - 1) * q + err`,
/// `0 <= err < q`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    /// Round of the next turn; meaningless once `left` is 0.
    round: u32,
    err: u32,
    /// `Q / q` and `Q % q`.
    step: u32,
    extra: u32,
    q: u32,
    /// Turns not yet taken.
    left: u32,
}

impl Clock {
    fn new(q: u32, q_max: u32) -> Self {
        if q == 0 {
            return Clock {
                round: 0,
                err: 0,
                step: 0,
                extra: 0,
                q: 0,
                left: 0,
            };
        }
        Clock {
            round: 1,
            err: 0,
            step: q_max / q,
            extra: q_max % q,
            q,
            left: q,
        }
    }

    /// True if its next turn falls before round `end`.
    #[inline(always)]
    fn due_before(&self, end: u32) -> bool {
        self.left > 0 && self.round < end
    }

    #[inline(always)]
    fn advance(&mut self) {
        self.left -= 1;
        // k Q = (round - 1 + step) q + (err + extra), and err + extra < 2 q.
        self.round += self.step;
        self.err += self.extra;
        if self.err >= self.q {
            self.err -= self.q;
            self.round += 1;
        }
    }
}

/// Rounds per window: about [`WINDOW_TURNS`] turns, as rounds hold `M / Q`
/// turns on average.
fn window_rounds(m: u32, q_max: u32) -> u32 {
    (WINDOW_TURNS * u64::from(q_max) / u64::from(m)).clamp(1, u64::from(q_max)) as u32
}

/// Fills `entries` (all [`NO_BACKEND`] on entry, `m` of them) from each
/// backend's walk and slot count (`quotas`, summing to `m` or all 0): turns
/// in order of round then index; on its turn a backend takes the first free
/// slot of its permutation. Returns the bytes it allocated for its own
/// scratch (capacities of its vectors), for
/// [`Table::build_scratch_bytes`](crate::Table::build_scratch_bytes).
pub(crate) fn populate(m: u32, walks: &mut [Walk], quotas: &[u32], entries: &mut [u32]) -> usize {
    debug_assert_eq!(entries.len(), m as usize);
    debug_assert!(entries.iter().all(|&e| e == NO_BACKEND));
    let q_max = quotas.iter().copied().max().unwrap_or(0);
    if q_max == 0 {
        return 0;
    }
    let window = window_rounds(m, q_max);
    let mut clocks: Vec<Clock> = quotas.iter().map(|&q| Clock::new(q, q_max)).collect();
    let mut taken = vec![0u64; (m as usize).div_ceil(64)];
    let mut starts = vec![0u32; window as usize + 1];
    // Grown to the largest window's turn count.
    let mut turns: Vec<u32> = Vec::new();

    let mut first = 1u32; // rounds are 1-based
    while first <= q_max {
        let end = first.saturating_add(window).min(q_max + 1);
        let width = (end - first) as usize;
        // Counting sort of the window's turns by round; backends are visited
        // in index order, so each round's turns come out in index order.
        starts[..=width].fill(0);
        for &c in &clocks {
            let mut c = c;
            while c.due_before(end) {
                starts[(c.round - first) as usize + 1] += 1;
                c.advance();
            }
        }
        for r in 1..=width {
            starts[r] += starts[r - 1];
        }
        let count = starts[width] as usize;
        if turns.len() < count {
            turns.reserve_exact(count - turns.len());
            turns.resize(count, 0);
        }
        for (i, c) in clocks.iter_mut().enumerate() {
            while c.due_before(end) {
                let at = &mut starts[(c.round - first) as usize];
                turns[*at as usize] = i as u32;
                *at += 1;
                c.advance();
            }
        }
        take_turns(m, &turns[..count], walks, &mut taken, entries);
        first = end;
    }
    debug_assert!(clocks.iter().all(|c| c.left == 0));
    clocks.capacity() * std::mem::size_of::<Clock>()
        + taken.capacity() * std::mem::size_of::<u64>()
        + starts.capacity() * std::mem::size_of::<u32>()
        + turns.capacity() * std::mem::size_of::<u32>()
}

/// Each backend of `turns` in turn takes the first free slot of its walk.
#[inline(never)]
fn take_turns(m: u32, turns: &[u32], walks: &mut [Walk], taken: &mut [u64], entries: &mut [u32]) {
    /// `x mod m` for `x < 2 m`: a compare and a conditional move.
    #[inline(always)]
    fn wrap(x: u32, m: u32) -> u32 {
        if x >= m {
            x - m
        } else {
            x
        }
    }
    #[inline(always)]
    fn is_free(taken: &[u64], slot: u32) -> bool {
        taken[(slot / 64) as usize] & (1u64 << (slot % 64)) == 0
    }
    #[inline(always)]
    fn take(taken: &mut [u64], entries: &mut [u32], slot: u32, i: u32) {
        taken[(slot / 64) as usize] |= 1u64 << (slot % 64);
        entries[slot as usize] = i;
    }

    for &i in turns {
        let w = &mut walks[i as usize];
        // Locals, so the probe loop runs in registers.
        let (mut pos, skip) = (w.pos, w.skip);
        // A prime m and 0 < skip < m make the walk visit every slot, and a
        // turn is only taken while a slot is free, so this ends.
        loop {
            let slot = pos;
            pos = wrap(pos + skip, m);
            if is_free(taken, slot) {
                take(taken, entries, slot, i);
                break;
            }
        }
        w.pos = pos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_rounds_are_floor_k_minus_1_q_max_over_q_plus_1() {
        for q_max in 1..60u32 {
            for q in 1..=q_max {
                let mut c = Clock::new(q, q_max);
                for k in 1..=q {
                    assert_eq!(c.round, (k - 1) * q_max / q + 1, "q={q} Q={q_max} k={k}");
                    assert!(c.due_before(q_max + 1));
                    c.advance();
                }
                assert!(!c.due_before(u32::MAX));
            }
        }
        assert!(!Clock::new(0, 5).due_before(u32::MAX));
    }

    #[test]
    fn every_slot_is_taken_in_any_window_size() {
        // Few slots, many backends: windows of one round holding n turns.
        let m = 101;
        let quotas: Vec<u32> = (0..50).map(|i| if i < 1 { 52 } else { 1 }).collect();
        let mut walks: Vec<Walk> = (0..50)
            .map(|i| Walk::new(m, i * 2 % m, i % (m - 1) + 1))
            .collect();
        let mut entries = vec![NO_BACKEND; m as usize];
        let bytes = populate(m, &mut walks, &quotas, &mut entries);
        assert!(bytes > 0);
        let mut counts = vec![0u32; 50];
        for &e in &entries {
            counts[e as usize] += 1;
        }
        assert_eq!(counts, quotas);
    }
}
