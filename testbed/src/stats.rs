//! Summary statistics for benches: median, percentiles, interquartile mean.
//! All take unsorted samples and leave them untouched.

use std::time::Duration;

/// Median of `values` (mean of the middle two for an even count); 0 if empty.
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// The `p`th percentile (0..=100) of `values`, linearly interpolated between
/// the two nearest ranks; 0 if empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let v = sorted(values);
    let rank = (p / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Mean of the middle half of `values` (samples between the 25th and 75th
/// percentile ranks, both included): robust to outliers at either end; 0 if empty.
pub fn interquartile_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let v = sorted(values);
    let (lo, hi) = (v.len() / 4, v.len() - v.len() / 4);
    let mid = &v[lo..hi.max(lo + 1)];
    mid.iter().sum::<f64>() / mid.len() as f64
}

/// The sample at the nearest rank to quantile `q` (0.0..=1.0) of `values`,
/// no interpolation: rank `round((len - 1) * q)` of the sorted samples.
/// `None` if empty. Works on anything ordered, e.g. [`Duration`] or `u64`.
pub fn nearest_rank<T: Ord + Copy>(values: &[T], q: f64) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
    v.get(i).copied()
}

/// The upper median of `values`: the sample at index `len / 2` once sorted
/// (for an even count, the higher of the middle two). `None` if empty.
pub fn upper_median<T: Ord + Copy>(values: &[T]) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// `d` in milliseconds, for printing bench figures.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 100.0), 5.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.0), 1.0);
        assert!((percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 90.0) - 4.6).abs() < 1e-9);
        assert_eq!(percentile(&[5.0, 1.0], 250.0), 5.0);
    }

    #[test]
    fn interquartile_mean_ignores_the_tails() {
        assert_eq!(interquartile_mean(&[]), 0.0);
        assert_eq!(interquartile_mean(&[7.0]), 7.0);
        assert_eq!(interquartile_mean(&[100.0, 2.0, 3.0, -50.0]), 2.5);
        assert_eq!(
            interquartile_mean(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 1000.0]),
            4.5
        );
    }

    #[test]
    fn ranks_of_ordered_samples() {
        let ms = |n| Duration::from_millis(n);
        let v = [ms(5), ms(1), ms(4), ms(2), ms(3)];
        assert_eq!(nearest_rank(&v, 0.5), Some(ms(3)));
        assert_eq!(nearest_rank(&v, 0.99), Some(ms(5)));
        assert_eq!(nearest_rank(&v, 0.0), Some(ms(1)));
        assert_eq!(nearest_rank::<u64>(&[], 0.5), None);
        assert_eq!(upper_median(&[4u64, 1, 3, 2]), Some(3));
        assert_eq!(upper_median(&[ms(2)]), Some(ms(2)));
        assert_eq!(upper_median::<u64>(&[]), None);
        assert_eq!(millis(ms(1500)), 1500.0);
    }
}
