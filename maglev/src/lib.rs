//! Deterministic, weighted Maglev lookup tables.
//!
//! A Maglev table (Eisenbud et al., *Maglev: A Fast and Reliable Software
//! Network Load Balancer*, NSDI 2016) maps every flow hash to a backend so that
//! the backends share the flows in proportion to their weights, and a change to
//! the backend set moves few flows that did not have to move. EdgeLB's XDP
//! forwarder reads the table from a BPF array map: slot `flow_hash % M` holds the
//! index of the flow's backend.
//!
//! Every EdgeLB node builds its tables from the Raft-replicated backend set, and
//! all of them must come out bit-identical, so that a flow that ECMP moves to
//! another node still reaches the same backend. This crate is therefore pure
//! (no I/O, no randomness, no dependence on the platform, the toolchain or the
//! order the backends are given in), and the algorithm below is a fixed format,
//! versioned by [`ALGORITHM_VERSION`].
//!
//! ```
//! use maglev::{Table, TableSize};
//! use std::net::SocketAddr;
//!
//! let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
//! let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
//! let table = Table::build(TableSize::DEFAULT, [(a, 1), (b, 3)]).unwrap();
//!
//! // b has three times a's weight, so three times a's slots (give or take one).
//! let (sa, sb) = (table.backends()[0].slots(), table.backends()[1].slots());
//! assert!((sb as i64 - 3 * sa as i64).abs() <= 4);
//! assert_eq!(sa + sb, 65_537);
//!
//! // Any flow hash picks a backend; the same hash always picks the same one.
//! let backend = table.lookup(0x1234_5678_9abc_def0).unwrap();
//! assert!(*backend == a || *backend == b);
//! ```
//!
//! # The algorithm (version 1)
//!
//! Input: a prime table size `M` ([`TableSize`]) and a set of backends, each a
//! key ([`BackendKey`], encoded to canonical bytes) and a `u32` weight.
//!
//! 1. The backends are sorted by their canonical bytes (lexicographically); a
//!    backend's *index* is its position in that order, and is what the table's
//!    entries hold. Two backends with the same bytes are an error. Backends of
//!    weight 0 keep their index (so draining a backend does not renumber the
//!    others) but get no slots.
//! 2. Each backend `i` of weight > 0 has a permutation of the slots:
//!    `offset = siphash(OFFSET_KEY, bytes) % M`,
//!    `skip = siphash(SKIP_KEY, bytes) % (M - 1) + 1`, and its `j`-th preferred
//!    slot is `(offset + j * skip) % M` (`j` = 0, 1, ...). SipHash is
//!    SipHash-2-4, the keys are the little-endian words of the ASCII strings
//!    `"EdgeLB-Maglev-of"` and `"EdgeLB-Maglev-sk"`.
//! 3. Turns: with `W` the largest weight, backend `i` of weight `w` takes its
//!    `k`-th turn (`k` = 1, 2, ...) in round `ceil(k * W / w)`. Turns are taken
//!    in order of round, and within a round in order of index. This is the
//!    weighted round robin of Katran's Maglev v2: each round every backend adds
//!    its weight to a credit and takes a turn (spending `W`) when the credit
//!    reaches `W`.
//! 4. On its turn a backend takes the first slot of its permutation that is
//!    still free (skipping the ones it has already looked at). Turns go on until
//!    all `M` slots are taken.
//!
//! A table with no backend of weight > 0 has every slot [`NO_BACKEND`]. More
//! backends of weight > 0 than slots is an error.
//!
//! A turn is one slot and only the last round is cut short, so each backend's
//! slot count is close to its ideal share `M * w / Σw`: it is fewer by less
//! than `1 + w / W`, and more by less than `1 + w / w̄` (`w̄` the mean weight
//! of the backends of weight > 0), which is at most `1 + N` for `N` such
//! backends. With equal weights the counts differ from each other by at most
//! one. Keep `M` well above `N` and these slots do not matter.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod key;
mod siphash;
mod size;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

pub use key::BackendKey;
pub use siphash::{siphash24, SipHasher24};
pub use size::TableSize;

/// Version of the table format: the algorithm, its hash keys and the
/// [`BackendKey`] encodings. Nodes whose versions differ build different tables.
pub const ALGORITHM_VERSION: u32 = 1;

/// The entry of a slot that has no backend (only in tables with no backend of
/// weight > 0).
pub const NO_BACKEND: u32 = u32::MAX;

/// `(k0, k1)` of a SipHash key given as 16 ASCII bytes.
const fn sip_key(s: &[u8; 16]) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        a[i] = s[i];
        b[i] = s[i + 8];
        i += 1;
    }
    (u64::from_le_bytes(a), u64::from_le_bytes(b))
}

const OFFSET_KEY: (u64, u64) = sip_key(b"EdgeLB-Maglev-of");
const SKIP_KEY: (u64, u64) = sip_key(b"EdgeLB-Maglev-sk");
const FINGERPRINT_KEY: (u64, u64) = sip_key(b"EdgeLB-Maglev-fp");

/// Why a table could not be built or compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The table size is not prime.
    SizeNotPrime(u32),
    /// The table size is outside [`TableSize::MIN`]`..=`[`TableSize::MAX`].
    SizeOutOfRange(u32),
    /// Two backends have the same canonical key bytes (given here).
    DuplicateBackend(Vec<u8>),
    /// More backends (of weight > 0, or in all) than the table can index.
    TooManyBackends {
        /// How many backends there were.
        backends: usize,
        /// How many the table can take.
        limit: usize,
    },
    /// Two tables of different sizes were compared.
    SizeMismatch {
        /// Size of the table compared.
        left: u32,
        /// Size of the table it was compared with.
        right: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::SizeNotPrime(m) => write!(f, "Maglev table size {m} is not prime"),
            Error::SizeOutOfRange(m) => write!(
                f,
                "Maglev table size {m} is outside {}..={}",
                TableSize::MIN,
                TableSize::MAX
            ),
            Error::DuplicateBackend(key) => {
                write!(f, "two backends have the same key (bytes {key:02x?})")
            }
            Error::TooManyBackends { backends, limit } => {
                write!(
                    f,
                    "{backends} backends, but the table takes at most {limit}"
                )
            }
            Error::SizeMismatch { left, right } => {
                write!(
                    f,
                    "cannot compare Maglev tables of sizes {left} and {right}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// One backend of a [`Table`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend<K> {
    key: K,
    key_bytes: Vec<u8>,
    weight: u32,
    slots: u32,
}

impl<K> Backend<K> {
    /// The key it was given as.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Its canonical key bytes ([`BackendKey::key_bytes`]).
    pub fn key_bytes(&self) -> &[u8] {
        &self.key_bytes
    }

    /// Its weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// How many slots of the table it holds.
    pub fn slots(&self) -> u32 {
        self.slots
    }
}

/// A built Maglev table: `M` slots, each holding the index of a backend in
/// [`Table::backends`] (or [`NO_BACKEND`] if there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table<K> {
    size: TableSize,
    backends: Vec<Backend<K>>,
    entries: Vec<u32>,
}

impl<K: BackendKey> Table<K> {
    /// Builds the table of `size` slots for `backends`, given as
    /// `(key, weight)` in any order. See the [crate docs](crate) for the
    /// algorithm and [`Error`] for what is refused.
    pub fn build<I>(size: TableSize, backends: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, u32)>,
    {
        let mut backends: Vec<Backend<K>> = backends
            .into_iter()
            .map(|(key, weight)| Backend {
                key_bytes: key.key_bytes(),
                key,
                weight,
                slots: 0,
            })
            .collect();
        backends.sort_unstable_by(|a, b| a.key_bytes.cmp(&b.key_bytes));
        if let Some(pair) = backends
            .windows(2)
            .find(|p| p[0].key_bytes == p[1].key_bytes)
        {
            return Err(Error::DuplicateBackend(pair[0].key_bytes.clone()));
        }
        // Every index must fit an entry and differ from NO_BACKEND.
        let limit = NO_BACKEND as usize;
        if backends.len() > limit {
            return Err(Error::TooManyBackends {
                backends: backends.len(),
                limit,
            });
        }
        let active = backends.iter().filter(|b| b.weight > 0).count();
        let limit = size.get() as usize;
        if active > limit {
            return Err(Error::TooManyBackends {
                backends: active,
                limit,
            });
        }

        let entries = populate(size.get(), &backends);
        for &e in &entries {
            if e != NO_BACKEND {
                backends[e as usize].slots += 1;
            }
        }
        Ok(Table {
            size,
            backends,
            entries,
        })
    }
}

impl<K> Table<K> {
    /// The number of slots `M`.
    pub fn size(&self) -> TableSize {
        self.size
    }

    /// The `M` entries: what the forwarder's BPF array map holds, slot by slot.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The entries with each backend index replaced by `id(backend)`, which is
    /// called once per backend in index order; [`NO_BACKEND`] stays as it is.
    /// For a forwarder whose map holds its own backend ids rather than this
    /// table's indices.
    pub fn entries_with(&self, id: impl FnMut(&Backend<K>) -> u32) -> Vec<u32> {
        let ids: Vec<u32> = self.backends.iter().map(id).collect();
        self.entries
            .iter()
            .map(|&e| {
                if e == NO_BACKEND {
                    NO_BACKEND
                } else {
                    ids[e as usize]
                }
            })
            .collect()
    }

    /// All backends given, weight 0 included, sorted by key bytes: an entry
    /// `i` means `backends()[i]`.
    pub fn backends(&self) -> &[Backend<K>] {
        &self.backends
    }

    /// True if no slot has a backend (no backend of weight > 0 was given).
    pub fn is_empty(&self) -> bool {
        self.entries[0] == NO_BACKEND
    }

    /// The slot a flow hash falls in: `hash % M`.
    pub fn slot_of(&self, hash: u64) -> usize {
        (hash % u64::from(self.size.get())) as usize
    }

    /// The index of the backend for a flow hash, or `None` if the table is empty.
    pub fn lookup_index(&self, hash: u64) -> Option<u32> {
        let e = self.entries[self.slot_of(hash)];
        (e != NO_BACKEND).then_some(e)
    }

    /// The backend for a flow hash, or `None` if the table is empty.
    pub fn lookup(&self, hash: u64) -> Option<&K> {
        self.lookup_index(hash)
            .map(|i| &self.backends[i as usize].key)
    }

    /// How many slots send their flows to a different backend in `other`
    /// (backends are matched by key bytes, not by index, since indices shift
    /// when backends come and go). Both tables must be of the same size.
    pub fn changed_slots<L>(&self, other: &Table<L>) -> Result<usize, Error> {
        if self.size != other.size {
            return Err(Error::SizeMismatch {
                left: self.size.get(),
                right: other.size.get(),
            });
        }
        // Where each of our backends sits in `other`, if anywhere.
        let map: Vec<Option<u32>> = self
            .backends
            .iter()
            .map(|b| {
                other
                    .backends
                    .binary_search_by(|o| o.key_bytes.as_slice().cmp(&b.key_bytes))
                    .ok()
                    .map(|j| j as u32)
            })
            .collect();
        let changed = self
            .entries
            .iter()
            .zip(&other.entries)
            .filter(|&(&a, &b)| {
                let a = if a == NO_BACKEND {
                    Some(NO_BACKEND)
                } else {
                    map[a as usize]
                };
                a != Some(b)
            })
            .count();
        Ok(changed)
    }

    /// A 64-bit digest of the table (format version, size, backends with their
    /// weights, and every entry), for nodes to check cheaply that they built
    /// the same table. Equal tables have equal fingerprints on every platform.
    pub fn fingerprint(&self) -> u64 {
        let mut h = SipHasher24::new(FINGERPRINT_KEY.0, FINGERPRINT_KEY.1);
        h.write_u32(ALGORITHM_VERSION);
        h.write_u32(self.size.get());
        h.write_u64(self.backends.len() as u64);
        for b in &self.backends {
            h.write_u64(b.key_bytes.len() as u64);
            h.write(&b.key_bytes);
            h.write_u32(b.weight);
        }
        let mut buf = Vec::with_capacity(4 * 1024);
        for chunk in self.entries.chunks(1024) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|e| e.to_le_bytes()));
            h.write(&buf);
        }
        h.finish()
    }
}

/// Fills the `m` entries for `backends` (already sorted, free of duplicates,
/// with at most `m` of weight > 0): steps 2 to 4 of the crate docs.
fn populate<K>(m: u32, backends: &[Backend<K>]) -> Vec<u32> {
    let mut entries = vec![NO_BACKEND; m as usize];
    let Some(max_weight) = backends
        .iter()
        .map(|b| u64::from(b.weight))
        .max()
        .filter(|&w| w > 0)
    else {
        return entries;
    };

    struct Walker {
        /// The next slot of its permutation to look at.
        pos: u32,
        skip: u32,
        weight: u64,
        /// Turns taken so far.
        turns: u64,
    }
    impl Walker {
        /// The round of its next turn: `ceil((turns + 1) * W / weight)`.
        fn next_round(&self, max_weight: u64) -> u64 {
            ((self.turns + 1) * max_weight).div_ceil(self.weight)
        }
    }

    let mut walkers: Vec<Walker> = backends
        .iter()
        .map(|b| Walker {
            pos: (siphash24(OFFSET_KEY.0, OFFSET_KEY.1, &b.key_bytes) % u64::from(m)) as u32,
            // m >= TableSize::MIN = 2, so m - 1 > 0.
            skip: (siphash24(SKIP_KEY.0, SKIP_KEY.1, &b.key_bytes) % u64::from(m - 1)) as u32 + 1,
            weight: u64::from(b.weight),
            turns: 0,
        })
        .collect();

    // Turns in order of (round, index). Rounds stay below M * 2^32 < 2^56.
    let mut queue: BinaryHeap<Reverse<(u64, u32)>> = walkers
        .iter()
        .enumerate()
        .filter(|(_, w)| w.weight > 0)
        .map(|(i, w)| Reverse((w.next_round(max_weight), i as u32)))
        .collect();

    // Which slots are taken, one bit each: the probes below touch this (8 KiB
    // for the default size, so it stays in L1) rather than the entries.
    let mut taken = vec![0u64; (m as usize).div_ceil(64)];
    let mut free = m;
    while free > 0 {
        let Reverse((_, i)) = queue
            .pop()
            .expect("a backend of weight > 0 is always queued");
        let w = &mut walkers[i as usize];
        // A prime M and 0 < skip < M make the walk visit every slot, so a free
        // one is found while any is left.
        loop {
            let slot = w.pos as usize;
            w.pos += w.skip;
            if w.pos >= m {
                w.pos -= m;
            }
            let (word, bit) = (slot / 64, 1u64 << (slot % 64));
            if taken[word] & bit == 0 {
                taken[word] |= bit;
                entries[slot] = i;
                break;
            }
        }
        free -= 1;
        w.turns += 1;
        let next = w.next_round(max_weight);
        queue.push(Reverse((next, i)));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_are_the_documented_strings() {
        assert_eq!(OFFSET_KEY.0.to_le_bytes(), *b"EdgeLB-M");
        assert_eq!(OFFSET_KEY.1.to_le_bytes(), *b"aglev-of");
        assert_eq!(SKIP_KEY.1.to_le_bytes(), *b"aglev-sk");
        assert_eq!(FINGERPRINT_KEY.1.to_le_bytes(), *b"aglev-fp");
    }

    #[test]
    fn smallest_table_works() {
        let t = Table::build(TableSize::new(2).unwrap(), [("a", 1), ("b", 1)]).unwrap();
        let mut e = t.entries().to_vec();
        e.sort();
        assert_eq!(e, [0, 1]);
        let t = Table::build(TableSize::new(2).unwrap(), [("a", 1)]).unwrap();
        assert_eq!(t.entries(), [0, 0]);
    }

    #[test]
    fn errors_display() {
        let cases = [
            (Error::SizeNotPrime(4), "Maglev table size 4 is not prime"),
            (
                Error::SizeOutOfRange(1),
                "Maglev table size 1 is outside 2..=16777213",
            ),
            (
                Error::DuplicateBackend(vec![1, 0xab]),
                "two backends have the same key (bytes [01, ab])",
            ),
            (
                Error::TooManyBackends {
                    backends: 4,
                    limit: 3,
                },
                "4 backends, but the table takes at most 3",
            ),
            (
                Error::SizeMismatch { left: 3, right: 5 },
                "cannot compare Maglev tables of sizes 3 and 5",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }
}
