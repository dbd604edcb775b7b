//! Filling the slots (steps 4 and 5 of the algorithm): [`populate`].
//!
//! This is the hot path of a build. The turn order is produced a window of
//! rounds at a time by a counting sort (no heap), and each turn walks its
//! backend's permutation with one add and one conditional subtract per probe
//! against a bitset of taken slots, so the probes touch `M / 8` bytes rather
//! than the `4 M` bytes of the entries.

use crate::NO_BACKEND;

/// About how many turns one window of rounds holds: small enough that the
/// window's turn lists (48 KiB) stay in cache between being sorted and
/// being taken, large enough that the per-window visit of every backend's
/// clock costs little (4x larger was no faster, 4x smaller slower).
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

/// The rounds of one backend's turns, one after the other: with `W` the
/// largest pace (weight) and `w` this backend's, turn `k` (1-based) falls in
/// round `floor((k - 1) * W / w) + 1`, for `k` up to its slot count `q`.
/// Stepped with Bresenham's integer recurrence (no division per turn):
/// `(k - 1) * W = (round - 1) * w + err`, `0 <= err < w`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    /// Round of the next turn; meaningless once `left` is 0.
    round: u64,
    err: u64,
    /// `W / w` and `W % w`.
    step: u64,
    extra: u64,
    w: u64,
    /// Turns not yet taken.
    left: u32,
}

impl Clock {
    fn new(q: u32, w: u32, w_max: u32) -> Self {
        if q == 0 || w == 0 {
            return Clock {
                round: 0,
                err: 0,
                step: 0,
                extra: 0,
                w: 0,
                left: 0,
            };
        }
        let (w, w_max) = (u64::from(w), u64::from(w_max));
        Clock {
            round: 1,
            err: 0,
            step: w_max / w,
            extra: w_max % w,
            w,
            left: q,
        }
    }

    /// The round of its last turn (0 if it has none).
    fn last_round(q: u32, w: u32, w_max: u32) -> u64 {
        if q == 0 || w == 0 {
            return 0;
        }
        // q < 2^24 and w_max < 2^32: the product fits in u64.
        u64::from(q - 1) * u64::from(w_max) / u64::from(w) + 1
    }

    /// True if its next turn falls before round `end`.
    #[inline(always)]
    fn due_before(&self, end: u64) -> bool {
        self.left > 0 && self.round < end
    }

    #[inline(always)]
    fn advance(&mut self) {
        self.left -= 1;
        // k W = (round - 1 + step) w + (err + extra), and err + extra < 2 w.
        self.round += self.step;
        self.err += self.extra;
        if self.err >= self.w {
            self.err -= self.w;
            self.round += 1;
        }
    }
}

/// Fills `entries` (all [`NO_BACKEND`] on entry, `m` of them) from each
/// backend's walk, slot count (`quotas`, summing to `m` or all 0) and pace
/// (`paces`, > 0 where the count is): turns in order of round then index;
/// on its turn a backend takes the first free slot of its permutation.
/// Returns the bytes it allocated for its own scratch (capacities of its
/// vectors), for [`Table::build_scratch_bytes`](crate::Table::build_scratch_bytes).
pub(crate) fn populate(
    m: u32,
    walks: &mut [Walk],
    quotas: &[u32],
    paces: &[u32],
    entries: &mut [u32],
) -> usize {
    debug_assert_eq!(entries.len(), m as usize);
    debug_assert!(entries.iter().all(|&e| e == NO_BACKEND));
    let w_max = quotas
        .iter()
        .zip(paces)
        .filter(|&(&q, _)| q > 0)
        .map(|(_, &w)| w)
        .max()
        .unwrap_or(0);
    // The last round with a turn: at most m + 1, as q - 1 <= m w / S.
    let rounds = quotas
        .iter()
        .zip(paces)
        .map(|(&q, &w)| Clock::last_round(q, w, w_max))
        .max()
        .unwrap_or(0);
    if rounds == 0 {
        return 0;
    }
    // Rounds per window: about WINDOW_TURNS turns, as rounds hold m / rounds
    // turns on average.
    let window = (WINDOW_TURNS * rounds / u64::from(m)).clamp(1, rounds);
    let mut clocks: Vec<Clock> = quotas
        .iter()
        .zip(paces)
        .map(|(&q, &w)| Clock::new(q, w, w_max))
        .collect();
    let mut taken = vec![0u64; (m as usize).div_ceil(64)];
    let mut starts = vec![0u32; window as usize + 1];
    // The window's turns, unsorted and sorted; grown to the largest window.
    let mut pending: Vec<u64> = Vec::new();
    let mut turns: Vec<u32> = Vec::new();

    let mut first = 1u64; // rounds are 1-based
    while first <= rounds {
        let end = (first + window).min(rounds + 1);
        let width = (end - first) as usize;
        // Counting sort of the window's turns by round: list them (round in
        // the high half, backend in the low) and count them per round, then
        // place them. Backends are visited in index order, so each round's
        // turns come out in index order.
        starts[..=width].fill(0);
        pending.clear();
        for (i, c) in clocks.iter_mut().enumerate() {
            while c.due_before(end) {
                let r = (c.round - first) as usize;
                starts[r + 1] += 1;
                pending.push((r as u64) << 32 | i as u64);
                c.advance();
            }
        }
        for r in 1..=width {
            starts[r] += starts[r - 1];
        }
        let count = pending.len();
        if turns.len() < count {
            turns.reserve_exact(count - turns.len());
            turns.resize(count, 0);
        }
        for &turn in &pending {
            let at = &mut starts[(turn >> 32) as usize];
            turns[*at as usize] = turn as u32;
            *at += 1;
        }
        take_turns(m, &turns[..count], walks, &mut taken, entries);
        first = end;
    }
    debug_assert!(clocks.iter().all(|c| c.left == 0));
    clocks.capacity() * std::mem::size_of::<Clock>()
        + taken.capacity() * std::mem::size_of::<u64>()
        + starts.capacity() * std::mem::size_of::<u32>()
        + pending.capacity() * std::mem::size_of::<u64>()
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
    fn clock_rounds_are_floor_k_minus_1_w_max_over_w_plus_1() {
        for w_max in 1..60u32 {
            for w in 1..=w_max {
                for q in [1, 7, 60] {
                    let mut c = Clock::new(q, w, w_max);
                    for k in 1..=q {
                        let want = u64::from((k - 1) * w_max / w + 1);
                        assert_eq!(c.round, want, "q={q} w={w} W={w_max} k={k}");
                        assert!(c.due_before(want + 1) && !c.due_before(want));
                        if k == q {
                            assert_eq!(Clock::last_round(q, w, w_max), want);
                        }
                        c.advance();
                    }
                    assert!(!c.due_before(u64::MAX));
                }
            }
        }
        assert!(!Clock::new(0, 5, 5).due_before(u64::MAX));
        assert_eq!(Clock::last_round(0, 5, 5), 0);
        // Extreme paces: rounds beyond u32 do not overflow.
        let mut c = Clock::new(3, 1, u32::MAX);
        c.advance();
        assert_eq!(c.round, u64::from(u32::MAX) + 1);
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
        let bytes = populate(m, &mut walks, &quotas, &quotas, &mut entries);
        assert!(bytes > 0);
        let mut counts = vec![0u32; 50];
        for &e in &entries {
            counts[e as usize] += 1;
        }
        assert_eq!(counts, quotas);
    }
}
