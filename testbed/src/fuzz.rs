//! What fuzz targets share: the case budget and runtime of the proptest
//! properties, and the seeded generator, environment knobs and hex frames
//! of the differential fuzz tests.

/// Cases a property runs when `PROPTEST_CASES` is not set: small enough for
/// a plain `cargo test`; `scripts/test.sh` raises it to a million.
pub const DEFAULT_CASES: u32 = 2048;

/// Cases per property: `PROPTEST_CASES` if it is a number, else
/// [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// One current-thread tokio runtime for all cases of a process's properties:
/// building one per case would cost more than the case itself.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread tokio runtime builds without I/O drivers")
    })
}

/// The generator of the differential fuzz targets: splitmix64, small, fast
/// and the same sequence on every machine, so a seed replays its frames.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with `percent` % probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of `xs` (not empty).
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Shuffles `v` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The seed of a differential fuzz run: `EDGELB_FUZZ_SEED` (decimal or
/// `0x` hex) if set, else `default`. Panics on a value that is no number,
/// so a mistyped replay never silently runs the default sequence.
pub fn seed(default: u64) -> u64 {
    env_u64("EDGELB_FUZZ_SEED").unwrap_or(default)
}

/// The frame count of a differential fuzz run: `EDGELB_FUZZ_FRAMES` if set,
/// else `default`. Panics on a value that is no number.
pub fn frames(default: u64) -> u64 {
    env_u64("EDGELB_FUZZ_FRAMES").unwrap_or(default)
}

/// The one frame to replay alone: `EDGELB_FUZZ_FRAME` (hex, as the failure
/// messages print it) if set. Panics on a value that is no hex.
pub fn replay_frame() -> Option<Vec<u8>> {
    let v = std::env::var("EDGELB_FUZZ_FRAME").ok()?;
    Some(unhex(v.trim()).unwrap_or_else(|| panic!("EDGELB_FUZZ_FRAME={v}: not hex")))
}

/// `b` as lower-case hex, the form [`replay_frame`] reads back.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64's published first outputs for seed 0 (Vigna's reference
    /// code): a change of algorithm would change every stored seed's frames.
    #[test]
    fn rng_is_splitmix64() {
        let mut r = Rng::new(0);
        assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let b = [0u8, 0x7f, 0xff, 0x10];
        assert_eq!(unhex(&hex(&b)).as_deref(), Some(&b[..]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
