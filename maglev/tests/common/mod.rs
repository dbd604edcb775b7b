//! Helpers shared by the integration tests: a seeded PRNG and a reference
//! implementation of the table, written straight from the crate docs.
#![allow(dead_code)]

use maglev::{siphash24, NO_BACKEND};

/// SplitMix64: a small, seeded, platform-independent PRNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), near enough for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// `n` distinct backend names.
pub fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("backend-{i}")).collect()
}

fn key(s: &str) -> (u64, u64) {
    let b = s.as_bytes();
    (
        u64::from_le_bytes(b[..8].try_into().unwrap()),
        u64::from_le_bytes(b[8..].try_into().unwrap()),
    )
}

/// The table as the crate docs define it, done the slow, obvious way: the
/// whole permutation matrix of the Maglev paper, and Katran's per-round credit
/// scan for the weights. `backends` are (canonical key bytes, weight) in any
/// order; the result holds indices into them sorted by key bytes.
pub fn reference_entries(m: u32, backends: &[(Vec<u8>, u32)]) -> Vec<u32> {
    let mut sorted = backends.to_vec();
    sorted.sort();
    let m = m as usize;
    let (ok0, ok1) = key("EdgeLB-Maglev-of");
    let (sk0, sk1) = key("EdgeLB-Maglev-sk");
    let permutation: Vec<Vec<usize>> = sorted
        .iter()
        .map(|(bytes, _)| {
            let offset = (siphash24(ok0, ok1, bytes) % m as u64) as usize;
            let skip = (siphash24(sk0, sk1, bytes) % (m as u64 - 1)) as usize + 1;
            (0..m).map(|j| (offset + j * skip) % m).collect()
        })
        .collect();
    let mut entries = vec![NO_BACKEND; m];
    let max = sorted.iter().map(|b| u64::from(b.1)).max().unwrap_or(0);
    if max == 0 {
        return entries;
    }
    let mut next = vec![0usize; sorted.len()];
    let mut credit = vec![0u64; sorted.len()];
    let mut filled = 0;
    'rounds: loop {
        for i in 0..sorted.len() {
            credit[i] += u64::from(sorted[i].1);
            if credit[i] < max {
                continue;
            }
            credit[i] -= max;
            let mut c = permutation[i][next[i]];
            while entries[c] != NO_BACKEND {
                next[i] += 1;
                c = permutation[i][next[i]];
            }
            entries[c] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'rounds;
            }
        }
    }
    entries
}
