//! SipHash-2-4 (Aumasson & Bernstein), the hash behind every backend's
//! permutation and behind [`Table::fingerprint`](crate::Table::fingerprint).
//!
//! It is implemented here rather than taken from `std` because the standard
//! library makes no promise that its hashers stay the same across releases,
//! and every EdgeLB node must compute bit-identical tables whatever toolchain
//! built it. The output is checked against the reference test vectors.

/// A streaming SipHash-2-4 hasher with a 128-bit key.
///
/// Feeding the same bytes in any split over [`write`](Self::write) calls gives
/// the same [`finish`](Self::finish) as one call with all of them.
#[derive(Clone, Debug)]
pub struct SipHasher24 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    /// Bytes not yet absorbed (fewer than 8), little-endian in the low bits.
    tail: u64,
    /// How many bytes `tail` holds.
    ntail: usize,
    /// Total bytes written, mod 256 (only the low byte enters the hash).
    length: usize,
}

impl SipHasher24 {
    /// A hasher keyed with `(k0, k1)`: the key's first and last 8 bytes read
    /// as little-endian words.
    pub const fn new(k0: u64, k1: u64) -> Self {
        Self {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }

    /// A hasher keyed with a 16-byte key, as in the reference implementation.
    pub fn with_key(key: [u8; 16]) -> Self {
        let (a, b) = key.split_at(8);
        Self::new(read_u64(a), read_u64(b))
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13);
        self.v1 ^= self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17);
        self.v1 ^= self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn absorb(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    /// Feeds `bytes` to the hash.
    pub fn write(&mut self, mut bytes: &[u8]) {
        self.length = self.length.wrapping_add(bytes.len());
        if self.ntail > 0 {
            let take = (8 - self.ntail).min(bytes.len());
            for (i, &b) in bytes[..take].iter().enumerate() {
                self.tail |= u64::from(b) << (8 * (self.ntail + i));
            }
            self.ntail += take;
            bytes = &bytes[take..];
            if self.ntail < 8 {
                return;
            }
            let m = self.tail;
            self.absorb(m);
            self.tail = 0;
            self.ntail = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.absorb(read_u64(w));
        }
        for (i, &b) in words.remainder().iter().enumerate() {
            self.tail |= u64::from(b) << (8 * i);
        }
        self.ntail = words.remainder().len();
    }

    /// Feeds a `u32` as its 4 little-endian bytes.
    pub fn write_u32(&mut self, v: u32) {
        self.write(&v.to_le_bytes());
    }

    /// Feeds a `u64` as its 8 little-endian bytes.
    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    /// The 64-bit hash of everything written so far (the hasher is not consumed).
    pub fn finish(&self) -> u64 {
        let mut s = self.clone();
        let b = ((s.length as u64 & 0xff) << 56) | s.tail;
        s.absorb(b);
        s.v2 ^= 0xff;
        for _ in 0..4 {
            s.round();
        }
        s.v0 ^ s.v1 ^ s.v2 ^ s.v3
    }
}

/// SipHash-2-4 of `data` under the key `(k0, k1)`.
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut h = SipHasher24::new(k0, k1);
    h.write(data);
    h.finish()
}

fn read_u64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key 00 01 .. 0f, as in the reference vectors.
    fn ref_key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn reference_vectors() {
        // From the SipHash paper (appendix A) and the reference vectors.h:
        // the message is 00 01 .. (n-1).
        let cases: [(usize, u64); 3] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (15, 0xa129_ca61_49be_45e5),
        ];
        for (n, want) in cases {
            let msg: Vec<u8> = (0..n as u8).collect();
            let mut h = SipHasher24::with_key(ref_key());
            h.write(&msg);
            assert_eq!(h.finish(), want, "message length {n}");
        }
    }

    /// std's (deprecated, but still SipHash-2-4) hasher is an independent
    /// implementation to compare every length against.
    #[test]
    #[allow(deprecated)]
    fn matches_std_siphasher_for_all_lengths() {
        use std::hash::Hasher;
        let msg: Vec<u8> = (0..=255u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(11))
            .collect();
        for (k0, k1) in [
            (0, 0),
            (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908),
            (u64::MAX, 42),
        ] {
            for n in 0..msg.len() {
                let mut s = std::hash::SipHasher::new_with_keys(k0, k1);
                s.write(&msg[..n]);
                assert_eq!(siphash24(k0, k1, &msg[..n]), s.finish(), "n={n}");
            }
        }
    }

    #[test]
    fn streaming_equals_one_shot_for_every_split() {
        let msg: Vec<u8> = (0..40u8).collect();
        let whole = siphash24(1, 2, &msg);
        for a in 0..=msg.len() {
            for b in a..=msg.len() {
                let mut h = SipHasher24::new(1, 2);
                h.write(&msg[..a]);
                h.write(&msg[a..b]);
                h.write(&msg[b..]);
                assert_eq!(h.finish(), whole, "split at {a}, {b}");
            }
        }
    }

    #[test]
    fn finish_does_not_consume() {
        let mut h = SipHasher24::new(3, 4);
        h.write(b"abc");
        let first = h.finish();
        assert_eq!(h.finish(), first);
        h.write(b"def");
        assert_eq!(h.finish(), siphash24(3, 4, b"abcdef"));
    }
}
