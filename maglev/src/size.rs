//! The table size `M`: [`TableSize`].

use crate::Error;

/// The number of slots `M` of a Maglev table: a prime in
/// [`TableSize::MIN`]`..=`[`TableSize::MAX`].
///
/// `M` must be prime so that every skip in `1..M` walks all `M` slots, and it
/// should be much larger than the number of backends (the Maglev paper uses
/// `M` > 100 × backends), since each backend's share of the table can differ
/// from its ideal share by a slot or so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableSize(u32);

impl TableSize {
    /// The smallest size accepted.
    pub const MIN: u32 = 2;
    /// The largest size accepted: the largest prime below 2^24 (a table of
    /// this size takes 64 MiB of `u32` entries).
    pub const MAX: u32 = 16_777_213;
    /// The paper's size, and EdgeLB's default: 65,537 slots (256 KiB).
    pub const DEFAULT: TableSize = TableSize(65_537);

    /// `m` if it is a prime in range.
    pub fn new(m: u32) -> Result<Self, Error> {
        if !(Self::MIN..=Self::MAX).contains(&m) {
            return Err(Error::SizeOutOfRange(m));
        }
        if !is_prime(m) {
            return Err(Error::SizeNotPrime(m));
        }
        Ok(TableSize(m))
    }

    /// The smallest valid size that is at least `n`.
    pub fn at_least(n: u32) -> Result<Self, Error> {
        if n > Self::MAX {
            return Err(Error::SizeOutOfRange(n));
        }
        let mut m = n.max(Self::MIN);
        while !is_prime(m) {
            m += 1; // cannot pass MAX, which is prime
        }
        Ok(TableSize(m))
    }

    /// `M`.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for TableSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl From<TableSize> for u32 {
    fn from(s: TableSize) -> u32 {
        s.0
    }
}

impl TryFrom<u32> for TableSize {
    type Error = Error;
    fn try_from(m: u32) -> Result<Self, Error> {
        Self::new(m)
    }
}

/// Trial division; `n` < 2^24 needs divisors up to 4096 only.
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primality() {
        let small: Vec<u32> = (0..60).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            small,
            [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
        );
        assert!(is_prime(65_537));
        assert!(is_prime(TableSize::MAX));
        assert!(!is_prime(65_535));
        assert!(!is_prime(4093 * 4091));
        // MAX is the largest prime below 2^24.
        assert!(((TableSize::MAX + 1)..(1 << 24)).all(|n| !is_prime(n)));
    }

    #[test]
    fn new_checks_range_and_primality() {
        assert_eq!(TableSize::new(65_537).unwrap().get(), 65_537);
        assert_eq!(TableSize::new(2).unwrap().get(), 2);
        assert_eq!(TableSize::new(0), Err(Error::SizeOutOfRange(0)));
        assert_eq!(TableSize::new(1), Err(Error::SizeOutOfRange(1)));
        assert_eq!(TableSize::new(65_536), Err(Error::SizeNotPrime(65_536)));
        assert_eq!(TableSize::new(1 << 24), Err(Error::SizeOutOfRange(1 << 24)));
        assert_eq!(TableSize::try_from(251).map(u32::from), Ok(251));
        assert_eq!(TableSize::default(), TableSize::DEFAULT);
        assert_eq!(
            TableSize::new(TableSize::DEFAULT.get()),
            Ok(TableSize::DEFAULT)
        );
    }

    #[test]
    fn at_least_rounds_up_to_a_prime() {
        assert_eq!(TableSize::at_least(0).unwrap().get(), 2);
        assert_eq!(TableSize::at_least(65_536).unwrap().get(), 65_537);
        assert_eq!(TableSize::at_least(65_537).unwrap().get(), 65_537);
        assert_eq!(TableSize::at_least(100_000).unwrap().get(), 100_003);
        assert_eq!(
            TableSize::at_least(TableSize::MAX).unwrap().get(),
            TableSize::MAX
        );
        assert_eq!(
            TableSize::at_least(TableSize::MAX + 1),
            Err(Error::SizeOutOfRange(TableSize::MAX + 1))
        );
    }
}
