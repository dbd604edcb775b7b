//! Helpers shared by the integration tests: a seeded PRNG and a reference
//! implementation of the table, written straight from the crate docs.
#![allow(dead_code)]

use maglev::{siphash24, NO_BACKEND};

/// The seeded generator (SplitMix64) every test of the workspace uses.
#[allow(unused_imports)] // not every test binary draws numbers
pub use testbed::fuzz::Rng;

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

/// Step 3 of the crate docs, done the slow, obvious way: exact fractions in
/// `u128`, the leftover slots handed out one at a time to the largest
/// remaining remainder (lowest index on ties).
pub fn reference_counts(m: u32, weights: &[u32]) -> Vec<u32> {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut counts: Vec<u32> = weights
        .iter()
        .map(|&w| (u128::from(m) * u128::from(w) / total) as u32)
        .collect();
    let mut rem: Vec<Option<u128>> = weights
        .iter()
        .map(|&w| Some(u128::from(m) * u128::from(w) % total))
        .collect();
    let given: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    for _ in given..u64::from(m) {
        let mut best: Option<usize> = None;
        for i in 0..weights.len() {
            if let Some(r) = rem[i] {
                if best.is_none_or(|b| r > rem[b].unwrap()) {
                    best = Some(i);
                }
            }
        }
        let b = best.unwrap();
        counts[b] += 1;
        rem[b] = None;
    }
    counts
}

/// The table as the crate docs define it, done the slow, obvious way: the
/// whole permutation matrix of the Maglev paper, and a per-round credit scan
/// for the turns (each backend's credit starts at `W - 1`; each round every
/// backend adds its weight to it, and takes a turn, spending `W`, when it
/// reaches `W` and the backend has not yet taken its count: `ceil(r w / W)`
/// turns by the end of round `r`). `backends` are (canonical key bytes,
/// weight, active) in any order; the result holds indices into them sorted
/// by key bytes.
pub fn reference_entries(m: u32, backends: &[(Vec<u8>, u32, bool)]) -> Vec<u32> {
    let mut sorted = backends.to_vec();
    sorted.sort();
    let m = m as usize;
    let (ok0, ok1) = key("EdgeLB-Maglev-of");
    let (sk0, sk1) = key("EdgeLB-Maglev-sk");
    let permutation: Vec<Vec<usize>> = sorted
        .iter()
        .map(|(bytes, _, _)| {
            let offset = (siphash24(ok0, ok1, bytes) % m as u64) as usize;
            let skip = (siphash24(sk0, sk1, bytes) % (m as u64 - 1)) as usize + 1;
            (0..m).map(|j| (offset + j * skip) % m).collect()
        })
        .collect();
    let weights: Vec<u32> = sorted
        .iter()
        .map(|&(_, w, active)| if active { w } else { 0 })
        .collect();
    let counts = reference_counts(m as u32, &weights);
    let mut entries = vec![NO_BACKEND; m];
    // The largest weight among backends that get slots.
    let w_max = (0..sorted.len())
        .filter(|&i| counts[i] > 0)
        .map(|i| u64::from(weights[i]))
        .max()
        .unwrap_or(0);
    let mut next = vec![0usize; sorted.len()];
    let mut taken = vec![0u32; sorted.len()];
    let mut credit = vec![w_max.saturating_sub(1); sorted.len()];
    let mut filled = 0;
    let mut rounds = 0;
    while filled < m && w_max > 0 {
        rounds += 1;
        assert!(rounds <= m + 1, "more rounds than the docs allow");
        for i in 0..sorted.len() {
            credit[i] += u64::from(weights[i]);
            if credit[i] < w_max || taken[i] == counts[i] {
                continue;
            }
            credit[i] -= w_max;
            let mut c = permutation[i][next[i]];
            while entries[c] != NO_BACKEND {
                next[i] += 1;
                c = permutation[i][next[i]];
            }
            entries[c] = i as u32;
            next[i] += 1;
            taken[i] += 1;
            filled += 1;
        }
    }
    assert_eq!(taken, counts);
    entries
}
