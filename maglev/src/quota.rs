//! How many slots each backend gets (step 3 of the algorithm): [`quotas`].

/// The slot count of each backend: the largest-remainder (Hamilton)
/// apportionment of `m` slots to `weights`.
///
/// Backend `i`'s ideal share is `m * w_i / S` (`S` = the sum of the weights).
/// Each gets the floor of its share, and the slots left over (fewer than the
/// number of backends) go one each to the backends with the largest
/// remainders `m * w_i mod S`, ties to the lower index. All in exact integer
/// arithmetic, so every platform agrees. Each count is less than one slot away
/// from its ideal share, and equal weights get counts that differ by at most
/// one.
///
/// `weights` holds 0 for backends that get no slots; the counts sum to `m`
/// unless every weight is 0 (then they are all 0). Callers keep the number of
/// non-zero weights at or below `m` (< 2^24), so `S` < 2^56 and `m * w` < 2^56.
pub(crate) fn quotas(m: u32, weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let mut quotas = vec![0u32; weights.len()];
    if total == 0 {
        return quotas;
    }
    let m64 = u64::from(m);
    let mut given = 0u64;
    for (q, &w) in quotas.iter_mut().zip(weights) {
        let floor = m64 * u64::from(w) / total;
        *q = floor as u32; // at most m
        given += floor;
    }
    let left = (m64 - given) as usize;
    if left > 0 {
        // (remainder, index) of every backend with a fractional share.
        let mut rest: Vec<(u64, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (m64 * u64::from(w) % total, i as u32))
            .filter(|&(r, _)| r > 0)
            .collect();
        // Largest remainder first, then lowest index.
        rest.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in &rest[..left] {
            quotas[i as usize] += 1;
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_floors_plus_largest_remainders() {
        assert_eq!(quotas(10, &[1, 1, 1]), [4, 3, 3]);
        assert_eq!(quotas(10, &[0, 1, 1, 1]), [0, 4, 3, 3]);
        assert_eq!(quotas(7, &[1, 2]), [2, 5]); // 2.33, 4.67
        assert_eq!(quotas(5, &[3, 3, 1]), [2, 2, 1]); // 2.14, 2.14, 0.71
        assert_eq!(quotas(5, &[0, 0]), [0, 0]);
        assert_eq!(quotas(5, &[]), Vec::<u32>::new());
        assert_eq!(quotas(65_537, &[u32::MAX, 1]), [65_537, 0]);
        assert_eq!(quotas(65_537, &[u32::MAX, u32::MAX]), [32_769, 32_768]);
    }

    #[test]
    fn counts_sum_to_m_and_stay_within_a_slot() {
        let weights: Vec<u32> = (0..500u32).map(|i| i * 7919 % 1000).collect();
        let q = quotas(65_537, &weights);
        assert_eq!(q.iter().map(|&q| u64::from(q)).sum::<u64>(), 65_537);
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        for (&q, &w) in q.iter().zip(&weights) {
            let ideal = 65_537.0 * f64::from(w) / total;
            assert!((f64::from(q) - ideal).abs() < 1.0, "{q} vs {ideal}");
        }
    }
}
